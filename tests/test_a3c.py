"""A2C and A3C: the update against a direct implementation, learning, determinism (a2c, a3c
with one worker), the asynchronous workers' failure handling, signals and orphans.

The conformance checks (smoke, save/load, same-seed determinism, exact resume) run on both in
``test_conformance.py``; the Ray backend is tested in ``test_a3c_ray.py``.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console

from rlkit import Plugins, Trainer
from rlkit.algorithms.a3c import A2C, A2CConfig
from rlkit.config import resolve
from rlkit.environments import make_env
from rlkit.interfaces import BuildContext, EnvSpec, NanCheck, Transition
from rlkit.loop import env_options
from rlkit.runners.processes import WorkerFailed

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return Plugins.load()


def a3c_experiment(plugins: Plugins, tmp_path: Path, *, algorithm: dict[str, Any],
                   env: dict[str, Any] | None = None, steps: int = 2_000,
                   eval_: dict[str, Any] | None = None, seed: int = 0,
                   train: dict[str, Any] | None = None) -> Any:
    data = {
        "algorithm": {"name": "a3c", **algorithm},
        "backbone": {"name": "mlp", "hidden_sizes": [32, 32]},
        "env": {"id": "CartPole-v1", "num_envs": 1, **(env or {})},
        "train": {"total_steps": steps, "seed": seed, "log_every": 500, **(train or {})},
        "eval": {"every": 0, "episodes": 2, **(eval_ or {})},
        "run": {"dir": str(tmp_path)},
    }
    return resolve(data, plugins, source="<test>")


# --- the update ----------------------------------------------------------------------------


class RecordingSink:
    """Takes the optimizer's place: records the gradients instead of stepping."""

    def __init__(self) -> None:
        self.param_groups: list[dict[str, Any]] = [{"lr": 0.0}]
        self.grads: list[torch.Tensor] = []
        self.params: list[torch.nn.Parameter] = []

    def step(self) -> None:
        self.grads = [p.grad.clone() for p in self.params]  # type: ignore[union-attr]


def test_a2c_gradient_is_the_advantage_actor_critic_gradient() -> None:
    """One update's gradient equals the A2C loss written out directly: n-step returns
    bootstrapped from V(s_n), cut at termination, advantages R - V, policy gradient, half
    squared value error, entropy bonus."""
    n_envs, n_steps, gamma, vf_coef, ent_coef = 3, 6, 0.9, 0.7, 0.05
    env = make_env(env_options(_cartpole_experiment()), num_envs=n_envs)
    spec = EnvSpec(observation_space=env.single_observation_space,
                   action_space=env.single_action_space, num_envs=n_envs)
    from rlkit.backbones.mlp import MLP, MLPConfig

    ctx = BuildContext(env=spec, device=torch.device("cpu"), seed=3, total_steps=10_000,
                       backbone=lambda space, recurrent=False: MLP(space,
                                                                   MLPConfig(hidden_sizes=[8])),
                       exploration=None, nan_check=NanCheck("raise"))
    config = A2CConfig(n_steps=n_steps, gamma=gamma, vf_coef=vf_coef, ent_coef=ent_coef,
                       max_grad_norm=None)
    agent = A2C(config, ctx)
    sink = RecordingSink()
    sink.params = agent.params
    agent.optimizer = sink  # type: ignore[assignment]
    obs = env.reset(seed=1)
    rows = []
    for _ in range(n_steps):
        action = agent.act(obs)
        step = env.step(action)
        agent.observe(Transition(obs, action, step.reward, step.next_obs, step.terminated,
                                 step.truncated, step.valid))
        rows.append((obs, action, step.reward, step.next_obs, step.terminated))
        obs = step.obs
    # the direct computation, on a copy of the network
    model = agent.model
    returns = model.value(rows[-1][3]).detach()
    loss = torch.zeros(())
    targets = []
    for obs_t, action_t, reward, _next_obs, terminated in reversed(rows):
        # where the episode goes on, next_obs is the next row's obs: R continues; a
        # terminated step has no future (CartPole truncates only at 500 steps)
        returns = reward + gamma * torch.where(terminated, torch.zeros_like(returns), returns)
        targets.append((obs_t, action_t, returns.clone()))
    for obs_t, action_t, ret in targets:
        out, value = model(obs_t)
        log_p = torch.log_softmax(out, -1)
        log_prob = log_p.gather(-1, action_t.long().unsqueeze(-1)).squeeze(-1)
        entropy = -(log_p.exp() * log_p).sum(-1)
        advantage = (ret - value).detach()
        loss = loss + (-(advantage * log_prob).sum() + vf_coef * 0.5 * ((value - ret) ** 2).sum()
                       - ent_coef * entropy.sum())
    loss = loss / (n_envs * n_steps)
    expected = torch.autograd.grad(loss, agent.params)
    agent.update()
    assert sink.grads, "the update did not step the optimizer"
    for got, want in zip(sink.grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def _cartpole_experiment() -> Any:
    return resolve({"algorithm": {"name": "a2c"}, "env": {"id": "CartPole-v1"},
                    "train": {"total_steps": 1}}, Plugins.load(), source="<test>")


# --- learning ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a2c_learns_cartpole(plugins: Plugins, tmp_path: Path) -> None:
    """Seed 0, 8 envs, SB3's A2C defaults: evaluation return >= 400 within 30k env steps
    (about 3 s)."""
    data = {"algorithm": {"name": "a2c"}, "env": {"id": "CartPole-v1", "num_envs": 8},
            "train": {"total_steps": 30_000, "seed": 0},
            "eval": {"every": 5_000, "episodes": 10, "target_return": 400},
            "run": {"dir": str(tmp_path)}}
    summary = Trainer(resolve(data, plugins, source="<test>"), plugins, progress=False).run()
    assert summary["best_eval_return_mean"] >= 400, summary


@pytest.mark.slow
def test_a3c_with_two_workers_learns_cartpole(plugins: Plugins, tmp_path: Path) -> None:
    """Two worker processes, one env each, n_steps 5: evaluation return >= 300 within 60k env
    steps (stops at the first evaluation reaching it). Asynchronous, so not bit-reproducible;
    the threshold leaves room for that."""
    experiment = a3c_experiment(plugins, tmp_path, algorithm={"num_workers": 2}, steps=60_000,
                                eval_={"every": 5_000, "episodes": 10, "target_return": 300})
    summary = Trainer(experiment, plugins, progress=False).run()
    assert summary["best_eval_return_mean"] >= 300, summary
    assert summary["status"] == "target_reached"


def test_a3c_workers_train_an_lstm(plugins: Plugins, tmp_path: Path) -> None:
    """A3C-LSTM: the workers run the recurrent backbone, their memory is part of the
    checkpoint, and the run evaluates with its own state."""
    data = {"algorithm": {"name": "a3c", "num_workers": 2, "n_steps": 8},
            "backbone": {"name": "lstm", "hidden_size": 16},
            "env": {"id": "rlkit/CartPoleNoVel-v1", "num_envs": 2},
            "train": {"total_steps": 1_000, "seed": 0, "checkpoint_every": 500},
            "eval": {"every": 500, "episodes": 2}, "run": {"dir": str(tmp_path)}}
    trainer = Trainer(resolve(data, plugins, source="<test>"), plugins, progress=False)
    summary = trainer.run()
    assert summary["status"] == "finished"
    states = trainer.agent.worker_states
    assert states is not None and len(states) == 2
    assert all("memory" in s["agent"] for s in states)
    saved = torch.load(trainer.run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert len(saved["agent"]["workers"]) == 2


def test_the_trainers_exploration_controller_sets_the_workers_level(plugins: Plugins,
                                                                     tmp_path: Path) -> None:
    """Workers learn with the entropy coefficient the trainer's controller gives (it sees
    every worker's returns), not one of their own."""

    class Level:
        def value(self, step: int) -> float:
            return 0.123

        def observe_returns(self, returns: Any, step: int) -> None:
            pass

        def state_dict(self) -> dict[str, Any]:
            return {}

        def load_state_dict(self, state: Any) -> None:
            pass

    data = {"algorithm": {"name": "a3c", "num_workers": 1},
            "exploration": {"name": "schedule", "value": 0.0},
            "env": {"id": "CartPole-v1"}, "train": {"total_steps": 2_000, "log_every": 100},
            "eval": {"every": 0, "episodes": 1}, "run": {"dir": str(tmp_path)}}
    trainer = Trainer(resolve(data, plugins, source="<test>"), plugins, progress=False)
    trainer.exploration = Level()  # type: ignore[assignment]
    trainer.run()
    rows = (trainer.run_dir / "scalars.csv").read_text().splitlines()
    levels = {float(line.rsplit(",", 1)[1]) for line in rows if ",train/ent_coef," in line}
    assert levels == {0.123}, levels


# --- failures ------------------------------------------------------------------------------


def faulty_env(tmp_path: Path, mode: str, *, once: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"mode": mode, "fail_after": 40}
    if once:
        kwargs["marker"] = str(tmp_path / f"failed-{mode}")
    return {"id": "rlkit-test/A3CFaulty-v0", "imports": ["a3c_support"], "kwargs": kwargs}


def test_a_worker_that_raises_stops_the_run_naming_it(plugins: Plugins,
                                                      tmp_path: Path) -> None:
    experiment = a3c_experiment(plugins, tmp_path, env=faulty_env(tmp_path, "raise", once=False),
                                algorithm={"num_workers": 2, "on_worker_failure": "stop"},
                                steps=100_000)
    trainer = Trainer(experiment, plugins, progress=False)
    start = time.monotonic()
    with pytest.raises(WorkerFailed, match=r"a3c worker \d raised ValueError: the physics "
                                           r"exploded.*on_worker_failure: stop"):
        trainer.run()
    assert time.monotonic() - start < 30
    summary = (trainer.run_dir / "summary.json").read_text()
    assert '"status": "crashed"' in summary and "a3c worker" in summary
    # the global model is not lost: the crash checkpoint holds it
    saved = torch.load(trainer.run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert "model" in saved["agent"]
    assert _children() == []


def test_a_failed_worker_is_restarted_then_the_run_finishes(plugins: Plugins,
                                                            tmp_path: Path) -> None:
    experiment = a3c_experiment(plugins, tmp_path, env=faulty_env(tmp_path, "die", once=True),
                                algorithm={"num_workers": 2, "max_restarts": 1}, steps=3_000)
    out = io.StringIO()
    trainer = Trainer(experiment, plugins, progress=False,
                      console=Console(file=out, width=200))
    summary = trainer.run()
    assert summary["status"] == "finished", summary
    assert summary["env_steps"] >= 3_000
    assert "died (exit code 3); restarted it (1 of algorithm.max_restarts: 1)" in out.getvalue()


def test_a_worker_that_keeps_failing_stops_the_run_after_max_restarts(plugins: Plugins,
                                                                      tmp_path: Path) -> None:
    experiment = a3c_experiment(plugins, tmp_path, env=faulty_env(tmp_path, "raise", once=False),
                                algorithm={"num_workers": 1, "max_restarts": 2}, steps=100_000)
    with pytest.raises(WorkerFailed, match=r"a3c worker 0 raised .*restarted 2 times already"):
        Trainer(experiment, plugins, progress=False).run()


def test_a_hung_worker_is_killed_and_reported(plugins: Plugins, tmp_path: Path) -> None:
    experiment = a3c_experiment(plugins, tmp_path, env=faulty_env(tmp_path, "hang", once=False),
                                algorithm={"num_workers": 1, "on_worker_failure": "stop",
                                           "worker_timeout": 3.0}, steps=100_000)
    start = time.monotonic()
    with pytest.raises(WorkerFailed, match=r"a3c worker 0 hung: nothing from it for 3 s"):
        Trainer(experiment, plugins, progress=False).run()
    assert time.monotonic() - start < 30
    assert _children() == []


def test_a_worker_killed_with_sigkill_is_restarted(plugins: Plugins, tmp_path: Path) -> None:
    experiment = a3c_experiment(plugins, tmp_path, algorithm={"num_workers": 2},
                                steps=30_000, eval_={"every": 10_000, "episodes": 1})
    out = io.StringIO()
    trainer = Trainer(experiment, plugins, progress=False,
                      console=Console(file=out, width=200))
    killed: list[int] = []

    def kill_one() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not killed:
            workers = _children()
            if len(workers) == 2:
                time.sleep(1.0)  # let it learn a little first
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])
            time.sleep(0.1)

    thread = threading.Thread(target=kill_one)
    thread.start()
    summary = trainer.run()
    thread.join()
    assert killed, "no worker process was found to kill"
    assert summary["status"] == "finished"
    assert "died (killed by SIGKILL); restarted it" in out.getvalue()
    assert _children() == []


def test_a3c_refuses_a_gpu_device(plugins: Plugins, tmp_path: Path) -> None:
    from rlkit.runners.a3c import run

    class FakeTrainer:
        device = torch.device("meta")
        experiment = a3c_experiment(plugins, tmp_path, algorithm={})

    with pytest.raises(Exception, match="train.device: a3c's workers share the global model"):
        run(FakeTrainer(), None)


# --- signals and orphans (a real `rlkit train` process) -----------------------------------


@pytest.mark.slow
def test_sigterm_checkpoints_and_stops_the_workers_and_sigkill_leaves_no_orphans(
        tmp_path: Path) -> None:
    config = tmp_path / "a3c.yaml"
    config.write_text(
        "env: {id: CartPole-v1}\nalgorithm: {name: a3c, num_workers: 2}\n"
        "train: {total_steps: 10000000, seed: 0}\neval: {every: 0}\n"
        f"run: {{dir: {tmp_path}, name: term}}\n")
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "rlkit.cli", "train", str(config), "--no-progress"]
    # SIGTERM: the workers hold, a checkpoint is written, everyone exits
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    workers = _wait_for_workers(proc.pid, 2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode is not None
    assert b"interrupted" in out.lower(), out.decode()[-2000:]
    assert (tmp_path / "term" / "checkpoints" / "latest.pt").exists()
    _assert_gone(workers)
    # SIGKILL: nobody writes anything, but the workers do not outlive their parent
    config.write_text(config.read_text().replace("name: term", "name: killed"))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = _wait_for_workers(proc.pid, 2)
    proc.kill()
    proc.wait(timeout=10)
    _assert_gone(workers)


def _children(parent: int | None = None) -> list[int]:
    """The A3C worker processes (spawned) among ``parent``'s children."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == parent and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            state = stat.rpartition(")")[2].split()[0]
            if state != "Z":
                found.append(int(entry.name))
    return sorted(found)


def _wait_for_workers(pid: int, n: int) -> list[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = _children(pid)
        if len(workers) >= n:
            return workers
        time.sleep(0.1)
    raise AssertionError(f"{n} worker processes did not start")


def _assert_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = [p for p in pids if Path(f"/proc/{p}").exists() and
                 Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()[0] != "Z"]
        if not alive:
            return
        time.sleep(0.1)
    raise AssertionError(f"worker processes {alive} outlived their run")


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the process checks read /proc")
