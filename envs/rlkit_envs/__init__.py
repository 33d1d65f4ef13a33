"""Torch-native batched environments: state on any device, ``step`` in pure tensor code.

Importing this package registers the gymnasium ids (rlkit's plugin system registers them too)::

    import gymnasium as gym
    import rlkit_envs  # noqa: F401

    envs = gym.make_vec("rlkit/CartPole-v1", num_envs=4096,
                        vectorization_mode="vector_entry_point", device="cuda")
    obs, info = envs.reset(seed=0)

Ids (observation / action space), classes in brackets:

* ``rlkit/CartPole-v1``: (4,) / Discrete(2) [:class:`CartPole`]
* ``rlkit/CartPoleNoVel-v1``: (2,) / Discrete(2), position and angle only
  [``CartPole(observe_velocities=False)``]
* ``rlkit/Acrobot-v1``: (6,) / Discrete(3) [:class:`Acrobot`]
* ``rlkit/MountainCar-v0``: (2,) / Discrete(3) [:class:`MountainCar`]
* ``rlkit/MountainCarContinuous-v0``: (2,) / Box(-1, 1, (1,)) [:class:`MountainCarContinuous`]
* ``rlkit/Pendulum-v1``: (3,) / Box(-2, 2, (1,)) [:class:`Pendulum`]
* ``rlkit/Breakout-v0``: (4, 10, 10) images / Discrete(3) [:class:`Breakout`]
"""

from __future__ import annotations

import importlib
from typing import Any

from rlkit_envs.registration import ENVS, register_all

__all__ = [
    "ENVS",
    "Acrobot",
    "BatchedEnv",
    "Breakout",
    "CartPole",
    "MountainCar",
    "MountainCarContinuous",
    "Pendulum",
    "register_all",
]

_LAZY = {
    "Acrobot": "rlkit_envs.acrobot",
    "BatchedEnv": "rlkit_envs.core",
    "Breakout": "rlkit_envs.breakout",
    "CartPole": "rlkit_envs.cartpole",
    "MountainCar": "rlkit_envs.mountain_car",
    "MountainCarContinuous": "rlkit_envs.mountain_car",
    "Pendulum": "rlkit_envs.pendulum",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rlkit_envs' has no attribute {name!r}")


register_all()
