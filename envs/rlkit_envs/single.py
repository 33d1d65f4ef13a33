"""One env of a batched rlkit env behind gymnasium's single-env API (numpy on the CPU).

These are the ``entry_point`` of every rlkit id, so that ``gymnasium.make`` and the ``sync`` /
``async`` vectorizers work too. They step a batch of one and return the observation the step
ended on; the time limit is left to gymnasium's ``TimeLimit`` wrapper, which ``gymnasium.make``
adds from the registered ``max_episode_steps``. For speed, use the batched env itself
(``gymnasium.make_vec(id, vectorization_mode="vector_entry_point")``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

from rlkit_envs.core import BatchedEnv

__all__ = ["SingleEnv", "acrobot", "breakout", "cartpole", "mountain_car",
           "mountain_car_continuous", "pendulum"]


class SingleEnv(gym.Env[np.ndarray, Any]):
    """A gymnasium ``Env`` over a batch of one of ``batched`` (no auto-reset, no time limit).

    :param batched: the batched env class.
    :param render_mode: only ``None`` (no rendering).
    :param kwargs: constructor arguments of ``batched`` (physical parameters).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, batched: type[BatchedEnv[Any, Any]], render_mode: str | None = None,
                 **kwargs: Any) -> None:
        if render_mode is not None:
            raise ValueError(f"{batched.__name__} does not render (render_mode={render_mode!r})")
        self.batch = batched(1, device="cpu", max_episode_steps=None, **kwargs)
        self.observation_space = self.batch.single_observation_space
        self.action_space = self.batch.single_action_space

    @property  # type: ignore[override]
    def spec(self) -> EnvSpec | None:
        """The id's spec; ``gymnasium.make`` sets it, and the batch names the env by it."""
        return self.batch.spec

    @spec.setter
    def spec(self, value: EnvSpec | None) -> None:
        self.batch.spec = value

    @property
    def settable_params(self) -> tuple[str, ...]:
        """The parameters :meth:`set_params` may change between steps (the batch's)."""
        return self.batch.settable_params

    def param_problems(self, values: dict[str, Any]) -> dict[str, str]:
        """What :meth:`set_params` would refuse in ``values``, by name (empty: nothing)."""
        return self.batch.param_problems(values)

    def set_params(self, **values: Any) -> None:
        """Change physical parameters between steps (see :meth:`BatchedEnv.set_params`)."""
        self.batch.set_params(**values)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        obs, _ = self.batch.reset(seed=seed, options=options)
        return obs[0].numpy().copy(), {}  # a copy: the batch's observation may be its state

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        _, reward, terminated, _, info = self.batch.step(np.asarray(action)[None])
        # The batch restarts a finished episode at once; report where this one ended.
        final = info["final_obs"][0].numpy().copy()
        return final, float(reward[0]), bool(terminated[0]), False, {}


def cartpole(**kwargs: Any) -> SingleEnv:
    from rlkit_envs.cartpole import CartPole

    return SingleEnv(CartPole, **kwargs)


def acrobot(**kwargs: Any) -> SingleEnv:
    from rlkit_envs.acrobot import Acrobot

    return SingleEnv(Acrobot, **kwargs)


def mountain_car(**kwargs: Any) -> SingleEnv:
    from rlkit_envs.mountain_car import MountainCar

    return SingleEnv(MountainCar, **kwargs)


def mountain_car_continuous(**kwargs: Any) -> SingleEnv:
    from rlkit_envs.mountain_car import MountainCarContinuous

    return SingleEnv(MountainCarContinuous, **kwargs)


def pendulum(**kwargs: Any) -> SingleEnv:
    from rlkit_envs.pendulum import Pendulum

    return SingleEnv(Pendulum, **kwargs)


def breakout(**kwargs: Any) -> SingleEnv:
    from rlkit_envs.breakout import Breakout

    return SingleEnv(Breakout, **kwargs)
