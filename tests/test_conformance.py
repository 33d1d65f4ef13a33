"""rlkit.testing's conformance checks over every algorithm rlkit ships.

Each algorithm runs the same checks a third-party plugin runs on its own: a smoke run through
the trainer, a save/load round trip through ``torch.load(weights_only=True)``, same-seed
determinism, exact resume, and episode starts (evaluation leaves the training state alone,
``begin_episodes`` resets exactly the envs it names). Algorithms that take recurrent backbones
run them with ``lstm``/``gru`` too, and algorithms for discrete actions on ``Discrete(3, start=-1)``
(:func:`rlkit.testing.shifted_actions_env`). Settings are small so that the whole file stays fast.
"""

from __future__ import annotations

from typing import Any

import pytest

from rlkit.testing import (
    check_determinism,
    check_episode_starts,
    check_exact_resume,
    check_save_load,
    check_smoke,
    experiment_for,
    shifted_actions_env,
)

FROZEN_LAKE = {"id": "FrozenLake-v1", "num_envs": 2, "kwargs": {"is_slippery": False}}
SHIFTED = shifted_actions_env(-1)  # Acrobot-v1 with Discrete(3, start=-1) actions
MINATAR_CNN = {"name": "cnn", "channels": [8], "kernel_sizes": [3], "strides": [1],
               "hidden_sizes": [32]}

# (algorithm, case id) -> experiment_for(...) arguments
CASES: dict[tuple[str, str], dict[str, Any]] = {
    ("ppo", "discrete"): {"env_id": "CartPole-v1", "steps": 256,
                         "params": {"n_steps": 16, "batch_size": 16, "n_epochs": 2}},
    ("ppo", "continuous"): {"env_id": "Pendulum-v1", "steps": 256,
                           "params": {"n_steps": 16, "batch_size": 16, "n_epochs": 2}},
    ("dqn", "discrete"): {"env_id": "CartPole-v1", "steps": 600,
                         "params": {"learning_starts": 64, "train_freq": 16,
                                    "gradient_steps": 4, "batch_size": 32,
                                    "target_update_interval": 50, "buffer_size": 500}},
    ("ppo", "discrete-start-1"): {"env_id": "Acrobot-v1", "env": SHIFTED, "steps": 128,
                                 "params": {"n_steps": 16, "batch_size": 16, "n_epochs": 1}},
    ("dqn", "discrete-start-1"): {"env_id": "Acrobot-v1", "env": SHIFTED, "steps": 200,
                                 "params": {"learning_starts": 32, "train_freq": 16,
                                            "gradient_steps": 2, "batch_size": 16,
                                            "target_update_interval": 50,
                                            "buffer_size": 200}},
    ("ppo", "cnn-breakout"): {"env_id": "rlkit/Breakout-v0", "steps": 256, "backbone": MINATAR_CNN,
                             "params": {"n_steps": 16, "batch_size": 16, "n_epochs": 2,
                                        "share_backbone": True}},
    ("dqn", "cnn-breakout"): {"env_id": "rlkit/Breakout-v0", "steps": 300, "backbone": MINATAR_CNN,
                             "params": {"learning_starts": 64, "train_freq": 16,
                                        "gradient_steps": 4, "batch_size": 32,
                                        "target_update_interval": 50, "buffer_size": 500}},
    ("ppo", "lstm"): {"env_id": "rlkit/CartPoleNoVel-v1", "steps": 256,
                     "backbone": {"name": "lstm", "hidden_size": 16,
                                  "encoder": {"name": "mlp", "hidden_sizes": [16]}},
                     "params": {"n_steps": 16, "seq_len": 8, "batch_size": 16, "n_epochs": 2}},
    ("ppo", "gru-shared-gymnasium"): {
        "env_id": "Pendulum-v1", "steps": 256, "backbone": {"name": "gru", "hidden_size": 16},
        "params": {"n_steps": 16, "batch_size": 32, "n_epochs": 2, "share_backbone": True}},
    ("ppo", "lstm-cnn"): {"env_id": "rlkit/Breakout-v0", "steps": 128,
                         "backbone": {"name": "lstm", "hidden_size": 16, "encoder": MINATAR_CNN},
                         "params": {"n_steps": 16, "seq_len": 4, "batch_size": 16,
                                    "n_epochs": 1}},
    ("dqn", "lstm"): {"env_id": "rlkit/CartPoleNoVel-v1", "steps": 400,
                     "backbone": {"name": "lstm", "hidden_size": 16,
                                  "encoder": {"name": "mlp", "hidden_sizes": [16]}},
                     "params": {"learning_starts": 64, "train_freq": 16, "gradient_steps": 2,
                                "batch_size": 32, "seq_len": 4, "burn_in": 2,
                                "target_update_interval": 50, "buffer_size": 400}},
    ("ddpg", "pendulum"): {"env_id": "Pendulum-v1", "steps": 300,
                          "params": {"learning_starts": 64, "batch_size": 32, "train_freq": 8,
                                     "gradient_steps": 2, "buffer_size": 500,
                                     "action_noise": "ornstein_uhlenbeck"}},
    ("td3", "torch-native"): {"env_id": "rlkit/MountainCarContinuous-v0", "steps": 300,
                             "params": {"learning_starts": 64, "batch_size": 32,
                                        "train_freq": 8, "gradient_steps": 3,
                                        "buffer_size": 500}},
    ("td3", "lstm"): {"env_id": "rlkit/Pendulum-v1", "steps": 200,
                     "backbone": {"name": "lstm", "hidden_size": 16,
                                  "encoder": {"name": "mlp", "hidden_sizes": [16]}},
                     "params": {"learning_starts": 64, "train_freq": 16, "gradient_steps": 2,
                                "batch_size": 16, "buffer_size": 200, "seq_len": 4,
                                "burn_in": 2, "critic_head_sizes": [16]}},
    ("a2c", "discrete"): {"env_id": "CartPole-v1", "steps": 200, "params": {"n_steps": 5}},
    ("a2c", "continuous"): {"env_id": "Pendulum-v1", "steps": 200, "params": {"n_steps": 5}},
    ("a2c", "gru-cnn-breakout"): {"env_id": "rlkit/Breakout-v0", "steps": 128,
                                 "backbone": {"name": "gru", "hidden_size": 16,
                                              "encoder": MINATAR_CNN},
                                 "params": {"n_steps": 8, "share_backbone": True}},
    # one worker: A3C's runs are reproducible and resume exactly (several workers are not)
    ("a3c", "one-worker"): {"env_id": "CartPole-v1", "steps": 200,
                           "params": {"n_steps": 5, "num_workers": 1}},
    ("a3c", "lstm-one-worker"): {"env_id": "rlkit/CartPoleNoVel-v1", "steps": 160,
                                "backbone": {"name": "lstm", "hidden_size": 16},
                                "params": {"n_steps": 8, "num_workers": 1}},
    ("qlearning", "frozenlake"): {"env_id": "FrozenLake-v1", "steps": 400, "env": FROZEN_LAKE},
    ("sarsa", "frozenlake"): {"env_id": "FrozenLake-v1", "steps": 400, "env": FROZEN_LAKE},
}


def test_every_builtin_algorithm_has_a_conformance_case(plugins):
    builtin = {name for name, (_, provider) in plugins.algorithms.items()
               if provider.distribution == "rlkit"}
    covered = {name for name, _ in CASES}
    assert builtin <= covered, f"add conformance cases for {sorted(builtin - covered)}"


@pytest.fixture(params=sorted(CASES), ids=lambda key: f"{key[0]}-{key[1]}")
def case(request, plugins, tmp_path):
    algorithm, _ = request.param
    args = dict(CASES[request.param])
    return experiment_for(algorithm, plugins=plugins, workdir=tmp_path, **args)


@pytest.mark.slow
def test_smoke_and_save_load(case, plugins, tmp_path):
    check_smoke(case, plugins, tmp_path)
    check_save_load(case, plugins)


@pytest.mark.slow
def test_same_seed_same_result(case, plugins, tmp_path):
    check_determinism(case, plugins, tmp_path)


@pytest.mark.slow
def test_exact_resume(case, plugins, tmp_path):
    check_exact_resume(case, plugins, tmp_path)


@pytest.mark.slow
def test_episode_starts(case, plugins):
    check_episode_starts(case, plugins)
