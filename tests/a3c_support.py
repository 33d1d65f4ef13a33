"""An env for the A3C tests, imported by the worker processes and actors (``env.imports``)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

ENV_ID = "rlkit-test/A3CFaulty-v0"


class FaultyCartPole(gym.Wrapper[np.ndarray, int, np.ndarray, int]):
    """CartPole that fails at its ``fail_after``-th step -- ``raise`` (ValueError), ``hang``
    (sleeps for hours) or ``die`` (``os._exit``) -- once, if ``marker`` names a file that is
    created at the failure (so a restarted worker runs on), or every time otherwise."""

    def __init__(self, mode: str = "raise", fail_after: int = 50,
                 marker: str | None = None) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.mode, self.fail_after, self.marker = mode, fail_after, marker
        self.steps = 0

    def step(self, action: int) -> Any:
        self.steps += 1
        if self.steps == self.fail_after and not (self.marker and Path(self.marker).exists()):
            if self.marker:
                Path(self.marker).touch()
            if self.mode == "raise":
                raise ValueError("the physics exploded")
            if self.mode == "hang":
                time.sleep(10_000)
            if self.mode == "die":
                os._exit(3)
        return self.env.step(action)


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=FaultyCartPole, max_episode_steps=500)
