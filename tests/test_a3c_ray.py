"""A3C with ``backend: ray``: workers as Ray actors and a parameter-server actor, on a local
Ray instance (2 CPUs) shared by the Ray tests."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console

pytest.importorskip("ray")

from rlkit import Plugins, Trainer  # noqa: E402
from rlkit.config import resolve  # noqa: E402
from rlkit.runners import ray_backend  # noqa: E402
from rlkit.runners.processes import WorkerFailed  # noqa: E402

pytestmark = pytest.mark.slow  # actor processes


def experiment(plugins: Plugins, tmp_path: Path, *, steps: int, env: dict[str, Any] | None = None,
               **algorithm: Any) -> Any:
    data = {
        "algorithm": {"name": "a3c", "backend": "ray", "num_workers": 2, "worker_cpus": 0.5,
                      "worker_timeout": 30.0, **algorithm},
        "backbone": {"name": "mlp", "hidden_sizes": [32, 32]},
        "env": {"id": "CartPole-v1", **(env or {})},
        "train": {"total_steps": steps, "seed": 0, "checkpoint_every": steps // 2},
        "eval": {"every": steps // 2, "episodes": 2},
        "run": {"dir": str(tmp_path)},
    }
    return resolve(data, plugins, source="<test>")


def test_ray_workers_train_evaluate_checkpoint_and_resume(ray_instance, plugins: Plugins,
                                                         tmp_path: Path) -> None:
    trainer = Trainer(experiment(plugins, tmp_path, steps=1_000), plugins, progress=False)
    summary = trainer.run(max_steps=500)
    assert summary["status"] == "paused" and summary["env_steps"] >= 500
    saved = torch.load(trainer.run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert len(saved["agent"]["workers"]) == 2
    # the trainer's copy of the global model is the parameter server's at the hold
    resumed = Trainer.resume(trainer.run_dir, plugins, progress=False)
    for a, b in zip(resumed.agent.model.parameters(), trainer.agent.model.parameters(),
                    strict=True):
        assert torch.equal(a, b)
    summary = resumed.run()
    assert summary["status"] == "finished" and summary["env_steps"] >= 1_000
    assert summary["final_eval_return_mean"] is not None


def test_a_killed_ray_worker_is_restarted(ray_instance, plugins: Plugins, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[Any] = []
    original = ray_backend.RayDriver._create

    def create(self: Any, worker: int, state: Any, *, restarts: int) -> None:
        original(self, worker, state, restarts=restarts)
        created.append(self.actors[worker].handle)

    calls = {"n": 0}
    original_call = ray_backend.RayDriver._call

    def call(self: Any, worker: int, until: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:  # kill worker 0's actor as the run starts: its call fails
            ray_instance.kill(self.actors[0].handle, no_restart=True)
        original_call(self, worker, until)

    monkeypatch.setattr(ray_backend.RayDriver, "_create", create)
    monkeypatch.setattr(ray_backend.RayDriver, "_call", call)
    out = io.StringIO()
    trainer = Trainer(experiment(plugins, tmp_path, steps=1_500), plugins, progress=False,
                      console=Console(file=out, width=200))
    summary = trainer.run()
    assert summary["status"] == "finished"
    assert "a3c worker 0 (Ray actor) died (its Ray actor is gone" in out.getvalue()
    assert "restarted it (1 of algorithm.max_restarts: 3)" in out.getvalue()
    assert len(created) == 3


def test_a_ray_worker_that_raises_stops_the_run_naming_it(ray_instance, plugins: Plugins,
                                                          tmp_path: Path) -> None:
    env = {"id": "rlkit-test/A3CFaulty-v0", "imports": ["a3c_support"],
           "kwargs": {"mode": "raise", "fail_after": 30}}
    trainer = Trainer(experiment(plugins, tmp_path, steps=100_000, env=env,
                                 on_worker_failure="stop"), plugins, progress=False)
    with pytest.raises(WorkerFailed, match=r"a3c worker \d \(Ray actor\) raised ValueError: the "
                                           r"physics exploded"):
        trainer.run()
    saved = torch.load(trainer.run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert "model" in saved["agent"]
