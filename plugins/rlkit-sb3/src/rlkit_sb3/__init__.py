"""Stable-Baselines3's algorithms as rlkit algorithms (entry point ``sb3``).

``sb3.ppo``, ``sb3.a2c``, ``sb3.dqn``, ``sb3.sac``, ``sb3.td3`` and ``sb3.ddpg`` wrap a real SB3
model: SB3 builds the networks and does the learning, rlkit's loop steps the environments.
"""

__version__ = "0.1.0"
