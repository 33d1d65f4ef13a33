"""Async env workers that hang, die or raise end the run within ``env.step_timeout`` with one
line naming the worker, instead of hanging forever or reporting a bare ``EOFError``."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from rlkit.cli import main
from rlkit.environments import EnvError, EnvOptions, make_env

pytestmark = pytest.mark.slow  # each test starts worker processes

ENV_ID = "rlkit-test/Faulty-v0"


class FaultyEnv(gym.Env[np.ndarray, int]):
    """A trivial env whose copy seeded with 1 (worker 1 after ``reset(seed=0)``) fails.

    :param mode: ``hang`` (sleeps forever), ``die`` (``os._exit(3)``), ``raise`` (ValueError)
        or ``hang_reset`` (sleeps forever in reset).
    :param after: steps it takes before failing.
    """

    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, mode: str = "hang", after: int = 0) -> None:
        self.mode, self.after = mode, after
        self.faulty, self.steps = False, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.faulty = seed == 1
        if self.faulty and self.mode == "hang_reset":
            time.sleep(10_000)
        return np.zeros(4, np.float32), {}

    def step(self, action: int):
        self.steps += 1
        if self.faulty and self.steps > self.after:
            if self.mode == "hang":
                time.sleep(10_000)
            elif self.mode == "die":
                os._exit(3)
            elif self.mode == "raise":
                raise ValueError("the physics exploded")
        return np.zeros(4, np.float32), 1.0, False, self.steps % 20 == 0, {}


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=FaultyEnv)


@pytest.fixture(autouse=True)
def deadline():
    """Fail, rather than hang the suite, if a worker's fault is not detected."""

    def expire(signum: int, frame: Any) -> None:
        raise AssertionError("the test hung: a faulty async worker was waited for forever")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def async_env(mode: str, timeout: float | None = 1.0, num_envs: int = 3):
    return make_env(EnvOptions(id=ENV_ID, num_envs=num_envs, vectorization="async",
                               kwargs={"mode": mode}, step_timeout=timeout))


def fail(env, call: str) -> tuple[str, float]:
    start = time.perf_counter()
    with pytest.raises(EnvError) as info:
        if call == "reset":
            env.reset(seed=0)
        else:
            env.reset(seed=0)
            env.step(torch.zeros(env.num_envs, dtype=torch.int64))
    elapsed = time.perf_counter() - start
    assert all(p.exitcode is not None for p in env.env.processes), "workers left running"
    env.close()  # closing again is harmless
    message = str(info.value)
    assert "\n" not in message
    return message, elapsed


def test_a_hung_worker_is_named_after_the_step_timeout():
    message, elapsed = fail(async_env("hang", timeout=1.0), "step")
    assert elapsed < 5
    assert message.startswith(f"env: async worker 1 of 3 ({ENV_ID}) did not return from step "
                              f"within 1 s (env.step_timeout)")


def test_a_worker_hung_in_reset_is_named_too():
    message, elapsed = fail(async_env("hang_reset", timeout=1.0), "reset")
    assert elapsed < 5 and "worker 1 of 3" in message and "from reset within 1 s" in message


def test_a_dead_worker_is_named_with_its_exit_status():
    message, elapsed = fail(async_env("die"), "step")
    assert elapsed < 5
    assert message.startswith(f"env: async worker 1 of 3 ({ENV_ID}) died during step "
                              f"(exited with status 3)")
    assert "EOFError" not in message


def test_a_worker_error_is_named_with_the_env_error(recwarn):
    message, _ = fail(async_env("raise"), "step")
    assert message.startswith(f"env: async worker 1 of 3 ({ENV_ID}) raised ValueError in step: "
                              f"the physics exploded.")
    assert not [w for w in recwarn if "Traceback" in str(w.message)]  # no multi-line report


def test_without_a_fault_the_timeout_changes_nothing():
    env = async_env("none", timeout=1.0, num_envs=2)
    obs = env.reset(seed=0)
    step = env.step(torch.zeros(2, dtype=torch.int64))
    env.close()
    assert obs.shape == (2, 4) and step.reward.tolist() == [1.0, 1.0]


def test_the_step_timeout_applies_to_async_envs_only():
    sync = make_env(EnvOptions(id="CartPole-v1", num_envs=2, vectorization="sync",
                               step_timeout=1.0))
    assert sync.step_timeout is None
    assert async_env("none", timeout=2.5, num_envs=1).step_timeout == 2.5


@pytest.mark.parametrize(("mode", "expected"), [
    ("hang", "did not return from step within 1 s (env.step_timeout)"),
    ("die", "died during step (exited with status 3)"),
])
def test_a_training_run_ends_with_one_line_naming_the_worker(mode, expected, plugins, capsys,
                                                             tmp_path):
    config = tmp_path / "faulty.yaml"
    config.write_text(yaml.safe_dump({
        "algorithm": {"name": "ppo", "n_steps": 16, "batch_size": 32, "n_epochs": 1},
        "backbone": {"name": "mlp", "hidden_sizes": [16]},
        "env": {"id": ENV_ID, "num_envs": 2, "vectorization": "async", "step_timeout": 1,
                "kwargs": {"mode": mode, "after": 40}},
        "train": {"total_steps": 10_000, "seed": 0},
        "eval": {"every": 0},
        "run": {"dir": str(tmp_path / "runs"), "name": "faulty"},
    }))
    start = time.perf_counter()
    code = main(["train", str(config), "--no-progress"], plugins=plugins)
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and elapsed < 15, err
    errors = [line for line in err.splitlines() if line.startswith("rlkit: error:")]
    assert len(errors) == 1, err
    assert f"env: async worker 1 of 2 ({ENV_ID}) {expected}" in errors[0], errors[0]
    # the run is kept: a crash checkpoint and the command that continues it
    run_dir = tmp_path / "runs" / "faulty"
    assert f"rlkit train --resume {run_dir}" in errors[0]
    assert (run_dir / "checkpoints" / "latest.pt").is_file()
