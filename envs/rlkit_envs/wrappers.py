"""Gymnasium wrappers for single environments, usable from an experiment's ``env.wrappers``.

:class:`SelectObservation` keeps some components of a flat ``Box`` observation and drops the
rest -- for instance to hide velocities and make a task partially observable::

    env:
      id: CartPole-v1
      wrappers:
        - {name: rlkit_envs.wrappers:SelectObservation, kwargs: {indices: [0, 2]}}

rlkit's plugin system vouches for these wrappers (``register_wrappers``), so a run whose stored
config uses them resumes and evaluates without ``--trust-config``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

__all__ = ["SelectObservation"]


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
