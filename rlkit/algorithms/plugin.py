"""rlkit plugin: registers the built-in algorithms (entry point ``algorithms``).

Each is named by reference (``"module:attribute"``), so listing plugins never imports torch or
an algorithm's module; the module loads when a config names the algorithm. The descriptions
are the first lines of the config dataclasses' docstrings (a test keeps them equal).
"""

from __future__ import annotations

from collections.abc import Callable

from rlkit.hookspecs import hookimpl


@hookimpl
def register_algorithms(register: Callable[..., None]) -> None:
    register("ppo", "rlkit.algorithms.ppo:PPOConfig", "rlkit.algorithms.ppo:build_ppo",
             description="Proximal Policy Optimization with a clipped surrogate objective and "
                         "GAE.")
    register("dqn", "rlkit.algorithms.dqn:DQNConfig", "rlkit.algorithms.dqn:build_dqn",
             description="Deep Q-Network with a replay buffer, a target network and "
                         "epsilon-greedy exploration.")
    register("ddpg", "rlkit.algorithms.ddpg:DDPGConfig", "rlkit.algorithms.ddpg:build_ddpg",
             description="Deep Deterministic Policy Gradient: a deterministic actor and a Q "
                         "critic, off-policy.")
    register("td3", "rlkit.algorithms.ddpg:TD3Config", "rlkit.algorithms.ddpg:build_ddpg",
             description="Twin Delayed DDPG: clipped double-Q, delayed policy updates, target "
                         "policy smoothing.")
    register("a2c", "rlkit.algorithms.a3c:A2CConfig", "rlkit.algorithms.a3c:build_a2c",
             description="Advantage actor-critic, synchronous: one gradient step per batched "
                         "n-step rollout.")
    register("a3c", "rlkit.algorithms.a3c:A3CConfig", "rlkit.algorithms.a3c:build_a2c",
             description="Asynchronous advantage actor-critic: workers apply their gradients "
                         "to a shared model.")
    register("qlearning", "rlkit.algorithms.tabular:QLearningConfig",
             "rlkit.algorithms.tabular:build_qlearning",
             description="Tabular Q-learning: off-policy one-step TD control (discrete "
                         "observations and actions).")
    register("sarsa", "rlkit.algorithms.tabular:SarsaConfig",
             "rlkit.algorithms.tabular:build_sarsa",
             description="Tabular SARSA: on-policy one-step TD control (discrete observations "
                         "and actions).")
