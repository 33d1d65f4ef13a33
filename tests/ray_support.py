"""An env for the Ray vector env's tests, imported by the Ray actors (``env.imports``)."""

from __future__ import annotations

import os
import time
from typing import Any

import gymnasium as gym
import numpy as np

ENV_ID = "rlkit-test/RayFaulty-v0"


class FaultyEnv(gym.Env[np.ndarray, int]):
    """A trivial env whose copy seeded with 1 (env 1 after ``reset(seed=0)``) fails in step.

    :param mode: ``raise`` (ValueError), ``hang`` (sleeps for hours), ``die`` (``os._exit``)
        or ``init`` (its constructor raises, in every copy).
    """

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, mode: str = "raise") -> None:
        if mode == "init":
            raise RuntimeError("no licence for the simulator")
        self.mode = mode
        self.faulty = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.faulty = seed == 1
        return np.zeros(2, np.float32), {}

    def step(self, action: int):
        if self.faulty:
            if self.mode == "raise":
                raise ValueError("the physics exploded")
            if self.mode == "hang":
                time.sleep(10_000)
            if self.mode == "die":
                os._exit(3)
        return np.zeros(2, np.float32), 1.0, False, False, {}


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=FaultyEnv)
