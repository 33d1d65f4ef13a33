"""Registers SB3's algorithms with rlkit, by reference: listing them imports neither torch
nor Stable-Baselines3."""

from __future__ import annotations

from collections.abc import Callable

from rlkit.hookspecs import hookimpl

RLKIT_PLUGIN_API = "1.0"
"""The version of rlkit's plugin API this package is written against."""

_ALGORITHMS = {
    "ppo": ("rlkit_sb3.on_policy", "PPOConfig", "PPO"),
    "a2c": ("rlkit_sb3.on_policy", "A2CConfig", "A2C"),
    "dqn": ("rlkit_sb3.off_policy", "DQNConfig", "DQN"),
    "sac": ("rlkit_sb3.off_policy", "SACConfig", "SAC"),
    "td3": ("rlkit_sb3.off_policy", "TD3Config", "TD3"),
    "ddpg": ("rlkit_sb3.off_policy", "DDPGConfig", "DDPG"),
}


@hookimpl
def register_algorithms(register: Callable[..., None]) -> None:
    for name, (module, config, label) in _ALGORITHMS.items():
        register(f"sb3.{name}", f"{module}:{config}", f"{module}:build_{name}",
                 description=f"Stable-Baselines3 {label} (SB3's own update), driven by "
                             f"rlkit's loop.")
