"""``env.vectorization: ray``: envs in Ray actors give exactly the batches of one sync vector
env, train every algorithm, and an actor that raises, dies or hangs ends the run with one line
naming the rollout worker."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

ray = pytest.importorskip("ray")

import ray_support  # noqa: E402  (registers rlkit-test/RayFaulty-v0 here; the actors import it)

from rlkit import config as config_module  # noqa: E402
from rlkit.config import ConfigError, resolve  # noqa: E402
from rlkit.environments import EnvError, EnvOptions, make_env  # noqa: E402
from rlkit.loop import Trainer  # noqa: E402
from rlkit.ray_envs import RayVectorEnv, merge_infos, split  # noqa: E402
from rlkit.snapshot import SnapshotUnsupported  # noqa: E402
from rlkit.testing import experiment_for  # noqa: E402

pytestmark = pytest.mark.slow  # starts a local Ray instance and actor processes

TESTS = Path(__file__).resolve().parent
CPUS = 0.5  # four actors fit on the two CPUs the test instance has
RAY_ENV = {"num_envs": 4, "vectorization": "ray", "rollout_workers": 2,
           "rollout_worker_cpus": CPUS, "step_timeout": 30}


def ray_env(env_id: str = "CartPole-v1", num_envs: int = 3, **kwargs: Any) -> RayVectorEnv:
    kwargs.setdefault("step_timeout", 30.0)
    return RayVectorEnv(env_id, num_envs, rollout_workers=2, worker_cpus=CPUS, **kwargs)


def assert_infos_equal(got: Mapping[str, Any], expected: Mapping[str, Any], where: str) -> None:
    """Same keys, masks and values (nested dicts too), ignoring ``episode``'s wall time."""
    assert set(got) == set(expected), f"{where}: keys {sorted(got)} != {sorted(expected)}"
    for key, value in expected.items():
        if key in ("t", "_t"):
            continue
        if isinstance(value, Mapping):
            assert_infos_equal(got[key], value, f"{where}.{key}")
            continue
        assert got[key].shape == value.shape, f"{where}.{key}"
        for a, b in zip(got[key], value):
            assert (a is None and b is None) or np.array_equal(a, b), f"{where}.{key}"


def test_split_is_as_even_as_possible_with_the_first_workers_holding_more():
    assert split(5, 2) == [3, 2]
    assert split(4, 4) == [1, 1, 1, 1]
    assert split(7, 3) == [3, 2, 2]


def test_merged_infos_follow_gymnasiums_vector_conventions():
    first = {"final_obs": np.array([None, np.ones(2)], dtype=object),
             "_final_obs": np.array([False, True]),
             "episode": {"r": np.array([0.0, 9.0]), "_r": np.array([False, True])},
             "_episode": np.array([False, True])}
    merged = merge_infos([first, {}], [2, 3])
    assert merged["_final_obs"].tolist() == [False, True, False, False, False]
    assert merged["final_obs"].dtype == object and merged["final_obs"][2] is None
    assert np.array_equal(merged["final_obs"][1], np.ones(2))
    assert merged["episode"]["r"].tolist() == [0.0, 9.0, 0.0, 0.0, 0.0]
    assert merged["episode"]["_r"].tolist() == [False, True, False, False, False]
    assert merged["_episode"].tolist() == [False, True, False, False, False]


@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP])
def test_batches_equal_one_sync_vector_env_step_by_step(ray_instance, mode):
    wrappers = [gym.wrappers.RecordEpisodeStatistics]
    env = ray_env(num_envs=5, autoreset_mode=mode, wrappers=wrappers)
    sync = gym.make_vec("CartPole-v1", num_envs=5, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": mode}, wrappers=wrappers)
    try:
        assert env.metadata["autoreset_mode"] == mode
        assert env.observation_space == sync.observation_space
        assert env.action_space == sync.action_space
        obs, info = env.reset(seed=7)
        expected_obs, expected_info = sync.reset(seed=7)
        assert np.array_equal(obs, expected_obs)
        assert_infos_equal(info, expected_info, "reset")
        rng = np.random.default_rng(0)
        ended = 0
        for t in range(60):  # random CartPole episodes end after about 20 steps
            actions = rng.integers(0, 2, size=5)
            got, expected = env.step(actions), sync.step(actions)
            for name, a, b in zip(("obs", "reward", "terminated", "truncated"), got, expected):
                assert a.dtype == b.dtype and np.array_equal(a, b), f"step {t}: {name}"
            assert_infos_equal(got[4], expected[4], f"step {t}")
            ended += int(np.sum(expected[2] | expected[3]))
        assert ended >= 5, "no episode ended: the test saw no final_obs or episode stats"
    finally:
        env.close()
        sync.close()


def test_make_env_gives_true_final_observations_and_no_snapshot(ray_instance):
    wrappers = (("ClipReward", {"min_reward": 0.0, "max_reward": 0.5}),)  # sent as partials
    options = {"id": "CartPole-v1", "num_envs": 5, "step_timeout": 30.0, "wrappers": wrappers}
    env = make_env(EnvOptions(**options, vectorization="ray", rollout_worker_cpus=CPUS))
    sync = make_env(EnvOptions(**options, vectorization="sync"))
    try:
        assert isinstance(env.env, RayVectorEnv) and env.step_timeout == 30.0
        assert torch.equal(env.reset(seed=1), sync.reset(seed=1))
        g = torch.Generator().manual_seed(0)
        finals = 0
        for _ in range(40):
            actions = torch.randint(0, 2, (5,), generator=g)
            got, expected = env.step(actions), sync.step(actions)
            for a, b in zip(got, expected):
                assert (a is None and b is None) or torch.equal(a, b)
            finals += int((expected.terminated | expected.truncated).sum())
            assert torch.all(got.reward == 0.5)
        assert finals > 0
        with pytest.raises(SnapshotUnsupported):
            env.state_dict()
    finally:
        env.close()
        sync.close()


@pytest.mark.parametrize(("algorithm", "params", "steps"), [
    ("ppo", {"n_steps": 16, "batch_size": 32, "n_epochs": 1}, 256),
    ("dqn", {"learning_starts": 64, "train_freq": 16, "gradient_steps": 2, "batch_size": 32,
             "target_update_interval": 50, "buffer_size": 500}, 192),
])
def test_training_runs_with_envs_in_ray_actors_and_evaluates_without_ray(
        ray_instance, plugins, tmp_path, algorithm, params, steps):
    experiment = experiment_for(algorithm, env_id="CartPole-v1", plugins=plugins,
                                params=params, env=RAY_ENV, steps=steps, workdir=tmp_path)
    trainer = Trainer(experiment, plugins, run_dir=tmp_path / "run", progress=False)
    try:
        assert isinstance(trainer.env.env, RayVectorEnv)
        assert isinstance(trainer._eval_env.env, gym.vector.SyncVectorEnv)
        summary = trainer.run()
    finally:
        trainer.env.close()
    assert summary["status"] == "finished" and summary["env_steps"] == steps
    assert np.isfinite(summary["final_eval_return_mean"])


def faulty(mode: str, step_timeout: float = 30.0) -> Any:
    env = make_env(EnvOptions(id=ray_support.ENV_ID, num_envs=3, vectorization="ray",
                              kwargs={"mode": mode}, imports=("ray_support",),
                              step_timeout=step_timeout, rollout_worker_cpus=CPUS))
    env.reset(seed=0)  # env 1, held by worker 0, is the faulty one
    return env


def assert_stopped(env: RayVectorEnv) -> None:
    """Every actor is gone within 10 s (``ray.kill`` takes effect asynchronously)."""
    deadline = time.monotonic() + 10
    for k, worker in enumerate(env.workers):
        while True:
            try:
                ray.get(worker.spaces.remote(), timeout=10)
            except ray.exceptions.RayActorError:
                break
            assert time.monotonic() < deadline, f"rollout worker {k} is still alive"
            time.sleep(0.05)


def test_an_env_that_raises_in_an_actor_names_the_worker_its_envs_and_the_error(ray_instance):
    env = faulty("raise")
    with pytest.raises(EnvError) as info:
        env.step(torch.zeros(3, dtype=torch.int64))
    assert str(info.value) == (
        "env: rollout worker 0 of 2 (envs 0-1 of rlkit-test/RayFaulty-v0) raised ValueError "
        "in step: the physics exploded. Run it with env.vectorization: sync to see the "
        "traceback.")
    assert_stopped(env.env)


def test_an_actor_that_cannot_build_its_env_is_named(ray_instance):
    # every actor fails; one or both may be named, whichever the wait saw fail first
    with pytest.raises(EnvError, match=r"rollout workers? [0-9, ]+ of 2 .* raised RuntimeError "
                                       r"while starting: no licence for the simulator"):
        faulty("init")


def test_a_killed_actor_is_named_promptly(ray_instance):
    env = ray_env()
    env.reset(seed=0)
    ray.kill(env.workers[1])  # takes effect asynchronously: a step or two may still pass
    start = time.monotonic()
    with pytest.raises(EnvError, match=r"^env: rollout worker 1 of 2 \(env 2 of CartPole-v1\) "
                                       r"died in step \(it was killed by `ray.kill`\)"):
        while time.monotonic() - start < 10:
            env.step(np.zeros(3, dtype=np.int64))
    assert time.monotonic() - start < 10, "waited for the timeout instead of seeing the death"
    assert_stopped(env)


def test_an_actor_that_hangs_ends_the_step_after_the_timeout(ray_instance):
    env = faulty("hang", step_timeout=1.0)
    start = time.monotonic()
    with pytest.raises(EnvError, match=r"^env: rollout worker 0 of 2 \(envs 0-1 of "
                                       r"rlkit-test/RayFaulty-v0\) did not answer step within "
                                       r"1 s \(env.step_timeout\)"):
        env.step(torch.zeros(3, dtype=torch.int64))
    assert time.monotonic() - start < 10
    assert_stopped(env.env)


def ray_config(**env: Any) -> dict[str, Any]:
    return {"algorithm": {"name": "ppo"}, "train": {"total_steps": 100},
            "env": {"id": "CartPole-v1", "vectorization": "ray", **env}}


def test_more_rollout_workers_than_envs_is_a_config_error(plugins):
    with pytest.raises(ConfigError) as info:
        resolve(ray_config(num_envs=2, rollout_workers=3), plugins)
    assert info.value.key == "env.rollout_workers"
    assert str(info.value).startswith("env.rollout_workers: 3 Ray actors cannot share "
                                      "env.num_envs: 2 envs")
    resolve(ray_config(num_envs=3, rollout_workers=3), plugins)  # one env each is fine


def test_ray_not_installed_is_a_config_error_naming_the_extra(plugins, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(config_module.importlib.util, "find_spec",
                        lambda name, *args: None if name == "ray" else find_spec(name, *args))
    with pytest.raises(ConfigError) as info:
        resolve(ray_config(num_envs=2), plugins)
    assert info.value.key == "env.vectorization"
    assert 'pip install -e ".[ray]"' in str(info.value)


def test_rlkit_imports_ray_only_for_vectorization_ray():
    code = ("import sys, rlkit.loop, rlkit.cli\n"
            "from rlkit.environments import EnvOptions, make_env\n"
            "make_env(EnvOptions(id='CartPole-v1', num_envs=2, vectorization='sync')).close()\n"
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "False"
