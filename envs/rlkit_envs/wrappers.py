"""Gymnasium wrappers for single environments, usable from an experiment's ``env.wrappers``.

:class:`SelectObservation` keeps some components of a flat ``Box`` observation and drops the
rest -- for instance to hide velocities and make a task partially observable::

    env:
      id: CartPole-v1
      wrappers:
        - {name: rlkit_envs.wrappers:SelectObservation, kwargs: {indices: [0, 2]}}


:class:`ShiftDiscreteActions` renumbers a ``Discrete(n)`` action space to start elsewhere --
``Discrete(3, start=-1)`` for Acrobot's three torques, say -- so that an algorithm's support for
``start != 0`` can be tested (``rlkit.testing.shifted_actions_env``)::

    env:
      id: Acrobot-v1
      wrappers:
        - {name: rlkit_envs.wrappers:ShiftDiscreteActions, kwargs: {start: -1}}

rlkit's plugin system vouches for these wrappers (``register_wrappers``), so a run whose stored
config uses them resumes and evaluates without ``--trust-config``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

__all__ = ["SelectObservation", "ShiftDiscreteActions"]


class SelectObservation(gym.ObservationWrapper[NDArray[Any], Any, NDArray[Any]]):
    """Keep the components ``indices`` of a one-dimensional ``Box`` observation, in that order.

    The observation space becomes a ``Box`` of ``len(indices)`` components with the bounds and
    dtype of the kept ones. ``gymnasium.make("CartPole-v1")`` observes (cart position, cart
    velocity, pole angle, pole angular velocity); ``SelectObservation(env, indices=[0, 2])``
    observes position and angle only.

    :param env: an environment whose observation space is a one-dimensional ``Box``.
    :param indices: the components to keep (non-negative, distinct, within the observation).
    """

    def __init__(self, env: gym.Env[NDArray[Any], Any], indices: Sequence[int]) -> None:
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"SelectObservation needs a one-dimensional Box observation "
                             f"space, not {space}")
        keep = [int(i) for i in indices]
        size = space.shape[0]
        if not keep:
            raise ValueError("SelectObservation: indices is empty; keep at least one component")
        if len(set(keep)) != len(keep) or any(not 0 <= i < size for i in keep):
            raise ValueError(f"SelectObservation: indices {keep} must be distinct and each in "
                             f"[0, {size}) for the observation space {space}")
        super().__init__(env)
        self.indices = np.asarray(keep, dtype=np.intp)
        self.observation_space = gym.spaces.Box(
            low=space.low[self.indices], high=space.high[self.indices],
            dtype=space.dtype,  # type: ignore[arg-type]
        )

    def observation(self, observation: NDArray[Any]) -> NDArray[Any]:
        return np.asarray(observation)[self.indices]


class ShiftDiscreteActions(gym.ActionWrapper[Any, Any, Any]):
    """Make a ``Discrete(n)`` action space ``Discrete(n, start=start)``: the env receives
    ``action - start``.

    Each action is checked: one outside the new space raises a :class:`ValueError` instead of
    reaching the env (where ``-1`` would silently index the last action), so an agent that
    ignores ``start`` fails loudly.

    :param env: an environment whose action space is ``Discrete(n)`` (start 0).
    :param start: the first action of the new space.
    """

    def __init__(self, env: gym.Env[Any, Any], start: int) -> None:
        space = env.action_space
        if not isinstance(space, gym.spaces.Discrete) or int(space.start) != 0:
            raise ValueError(f"ShiftDiscreteActions needs a Discrete action space starting at "
                             f"0, not {space}")
        super().__init__(env)
        self.start = int(start)
        self.n = int(space.n)
        self.action_space = gym.spaces.Discrete(self.n, start=self.start)

    def action(self, action: Any) -> int:
        value = np.asarray(action)
        if (value.shape != () or value.dtype.kind not in "iu"
                or not self.start <= int(value) < self.start + self.n):
            raise ValueError(f"ShiftDiscreteActions: action {value.tolist()!r} is outside the "
                             f"action space {self.action_space}; send one of "
                             f"{self.start} .. {self.start + self.n - 1}")
        return int(value) - self.start
