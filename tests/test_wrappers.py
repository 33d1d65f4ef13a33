"""rlkit_envs.wrappers: SelectObservation keeps the chosen components of a flat Box
observation, works through gymnasium.make and an experiment's env.wrappers, and is vouched for
by the envs plugin (a stored config using it loads without --trust-config)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from rlkit_envs.wrappers import SelectObservation

from rlkit.config import resolve
from rlkit.environments import EnvOptions, make_env, untrusted_code
from rlkit.loop import Trainer

REFERENCE = "rlkit_envs.wrappers:SelectObservation"


def test_observation_space_keeps_the_bounds_and_dtype_of_the_kept_components():
    env = SelectObservation(gym.make("CartPole-v1"), indices=[0, 2])
    full = gym.make("CartPole-v1").observation_space
    assert isinstance(env.observation_space, gym.spaces.Box)
    assert env.observation_space.shape == (2,)
    assert env.observation_space.dtype == full.dtype
    np.testing.assert_array_equal(env.observation_space.low, full.low[[0, 2]])
    np.testing.assert_array_equal(env.observation_space.high, full.high[[0, 2]])


def test_observations_are_the_kept_components_in_the_given_order():
    wrapped = SelectObservation(gym.make("CartPole-v1"), indices=[2, 0])
    plain = gym.make("CartPole-v1")
    obs, _ = wrapped.reset(seed=3)
    full, _ = plain.reset(seed=3)
    np.testing.assert_array_equal(obs, full[[2, 0]])
    for action in (0, 1, 1, 0, 1):
        obs, reward, terminated, truncated, _ = wrapped.step(action)
        full, full_reward, *_ = plain.step(action)
        np.testing.assert_array_equal(obs, full[[2, 0]])
        assert wrapped.observation_space.contains(obs)
        assert reward == full_reward


@pytest.mark.parametrize("indices", [[], [0, 0], [4], [-1]])
def test_bad_indices_are_refused_with_the_space_named(indices):
    with pytest.raises(ValueError, match="indices|empty"):
        SelectObservation(gym.make("CartPole-v1"), indices=indices)


def test_a_non_flat_observation_space_is_refused():
    with pytest.raises(ValueError, match="one-dimensional Box"):
        SelectObservation(gym.make("FrozenLake-v1"), indices=[0])


def test_works_through_gymnasium_make_and_make_vec():
    env = gym.make("CartPole-v1", max_episode_steps=20)
    env = SelectObservation(env, indices=[1, 3])
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2,)
    vec = gym.make_vec("CartPole-v1", num_envs=3, vectorization_mode="sync",
                       wrappers=[lambda e: SelectObservation(e, indices=[0, 2])])
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (3, 2)
    assert vec.single_observation_space.shape == (2,)
    vec.close()


def test_env_wrappers_in_an_experiment_build_it():
    options = EnvOptions(id="CartPole-v1", num_envs=2,
                         wrappers=((REFERENCE, {"indices": [0, 2]}),))
    env = make_env(options)
    obs = env.reset(seed=0)
    assert tuple(obs.shape) == (2, 2)
    assert env.single_observation_space.shape == (2,)
    env.close()


def test_the_envs_plugin_vouches_for_it(plugins):
    assert REFERENCE in plugins.wrappers
    for name in (REFERENCE, "rlkit_envs.wrappers.SelectObservation"):
        options = EnvOptions(id="CartPole-v1", wrappers=((name, {"indices": [0, 2]}),))
        assert untrusted_code(options, plugins.wrappers) == []


def test_a_run_using_it_trains_and_resumes_without_trust(plugins, tmp_path):
    experiment = resolve({
        "algorithm": {"name": "ppo", "n_steps": 16, "batch_size": 32, "n_epochs": 1},
        "backbone": {"name": "mlp", "hidden_sizes": [16]},
        "env": {"id": "CartPole-v1", "num_envs": 2,
                "wrappers": [{"name": REFERENCE, "kwargs": {"indices": [0, 2]}}]},
        "train": {"total_steps": 128, "seed": 0, "log_every": 64},
        "eval": {"every": 0, "episodes": 1},
    }, plugins)
    run_dir = tmp_path / "run"
    summary = Trainer(experiment, plugins, run_dir=run_dir, progress=False).run(max_steps=64)
    assert summary["status"] == "paused"
    resumed = Trainer.resume(run_dir, plugins, progress=False)  # no trust_config
    assert resumed.run()["status"] == "finished"
