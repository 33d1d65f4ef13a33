"""The gymnasium ids of rlkit's environments, registered once, through rlkit or without it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

__all__ = ["ENVS", "EnvInfo", "register_all"]


@dataclass(frozen=True)
class EnvInfo:
    """One registered id: what :func:`gymnasium.register` needs, plus a description."""

    id: str
    vector_entry_point: str
    entry_point: str
    max_episode_steps: int
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    reward_threshold: float | None = None

    def register_kwargs(self) -> dict[str, Any]:
        return {
            "vector_entry_point": self.vector_entry_point,
            "entry_point": self.entry_point,
            "max_episode_steps": self.max_episode_steps,
            "reward_threshold": self.reward_threshold,
            "kwargs": dict(self.kwargs),
        }


ENVS: tuple[EnvInfo, ...] = (
    EnvInfo("rlkit/CartPole-v1", "rlkit_envs.cartpole:CartPole", "rlkit_envs.single:cartpole",
            500, "CartPole-v1 as a batch of tensors (gymnasium's dynamics)",
            reward_threshold=475.0),
    EnvInfo("rlkit/CartPoleNoVel-v1", "rlkit_envs.cartpole:CartPole",
            "rlkit_envs.single:cartpole", 500,
            "CartPole-v1 observing only position and angle (partially observable)",
            kwargs={"observe_velocities": False}),
    EnvInfo("rlkit/Acrobot-v1", "rlkit_envs.acrobot:Acrobot", "rlkit_envs.single:acrobot",
            500, "Acrobot-v1 as a batch of tensors (gymnasium's dynamics)",
            reward_threshold=-100.0),
    EnvInfo("rlkit/MountainCar-v0", "rlkit_envs.mountain_car:MountainCar",
            "rlkit_envs.single:mountain_car", 200,
            "MountainCar-v0 as a batch of tensors (gymnasium's dynamics)",
            reward_threshold=-110.0),
    EnvInfo("rlkit/MountainCarContinuous-v0", "rlkit_envs.mountain_car:MountainCarContinuous",
            "rlkit_envs.single:mountain_car_continuous", 999,
            "MountainCarContinuous-v0 as a batch of tensors (gymnasium's dynamics)",
            reward_threshold=90.0),
    EnvInfo("rlkit/Pendulum-v1", "rlkit_envs.pendulum:Pendulum", "rlkit_envs.single:pendulum",
            200, "Pendulum-v1 as a batch of tensors (gymnasium's dynamics)"),
    EnvInfo("rlkit/Breakout-v0", "rlkit_envs.breakout:Breakout", "rlkit_envs.single:breakout",
            1000, "MinAtar-like 10x10 Breakout with image observations (4, 10, 10)"),
)


def register_all(register: Callable[..., None] | None = None) -> None:
    """Register every id not registered yet.

    :param register: rlkit's ``register_envs`` callback (which takes a ``description``);
        ``None`` registers with :func:`gymnasium.register` directly.
    """
    for info in ENVS:
        if register is not None:
            register(info.id, description=info.description, **info.register_kwargs())
        elif info.id not in gym.registry:
            gym.register(info.id, **info.register_kwargs())
