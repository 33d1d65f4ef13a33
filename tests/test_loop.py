"""The trainer: run directory contents, lifecycle hooks, runners and training in slices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from rlkit.hookspecs import hookimpl
from rlkit.loop import Trainer
from rlkit.plugins import Plugins
from rlkit.testing import experiment_for

PARAMS = {"n_steps": 16, "batch_size": 32, "n_epochs": 1}


class Recorder:
    """A plugin that records the lifecycle hooks it sees."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    @hookimpl
    def run_started(self, run):
        self.calls.append(("run_started", run.algorithm))

    @hookimpl
    def update_finished(self, run, step, metrics):
        self.calls.append(("update_finished", step))

    @hookimpl
    def evaluation_finished(self, run, step, result):
        self.calls.append(("evaluation_finished", step))

    @hookimpl
    def checkpoint_saved(self, run, path, step):
        self.calls.append(("checkpoint_saved", Path(path).name))

    @hookimpl
    def run_finished(self, run, summary):
        self.calls.append(("run_finished", summary["status"]))


def small(plugins: Plugins, tmp_path: Path, steps: int = 512):
    exp = experiment_for("ppo", env_id="CartPole-v1", plugins=plugins, params=PARAMS,
                         steps=steps, workdir=tmp_path)
    data = exp.to_data()
    data["eval"] = {"every": 256, "episodes": 2}
    data["train"]["checkpoint_every"] = 256
    from rlkit.config import resolve

    return resolve(data, plugins)


def test_run_directory_holds_config_manifest_events_checkpoints_and_summary(plugins, tmp_path):
    trainer = Trainer(small(plugins, tmp_path), plugins, run_dir=tmp_path / "run",
                      progress=False)
    summary = trainer.run()
    run = tmp_path / "run"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["algorithm"]["name"] == "ppo" and config["algorithm"]["n_steps"] == 16
    manifest = json.loads((run / "manifest.json").read_text())
    for key in ("rlkit", "torch", "python"):
        assert key in json.dumps(manifest), key
    assert list(run.rglob("events.out.tfevents.*")), "no TensorBoard event file"
    assert (run / "checkpoints" / "latest.pt").exists()
    saved = json.loads((run / "summary.json").read_text())
    for key in ("final_eval_return_mean", "final_eval_return_std", "env_steps", "wall_time_s"):
        assert key in saved and saved[key] == summary[key]
    assert saved["env_steps"] == 512


def test_lifecycle_hooks_fire_in_order(tmp_path):
    recorder = Recorder()
    plugins = Plugins.load(extra=[("recorder", recorder)], autoload=False)
    Trainer(small(plugins, tmp_path), plugins, run_dir=tmp_path / "run", progress=False).run()
    names = [name for name, _ in recorder.calls]
    assert names[0] == "run_started" and names[-1] == "run_finished"
    assert recorder.calls[-1] == ("run_finished", "finished")
    assert "update_finished" in names
    assert [s for n, s in recorder.calls if n == "evaluation_finished"] == [256, 512]
    assert ("checkpoint_saved", "latest.pt") in recorder.calls


class LoggingRunner:
    """A runner that prepares, then delegates to the default loop."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int | None]] = []

    @hookimpl
    def register_runners(self, register):
        def run(trainer: Trainer, max_steps: int | None) -> dict[str, Any]:
            self.seen.append((trainer.experiment.algorithm.name, max_steps))
            return trainer.default_loop(max_steps)

        register("logging", run, algorithms=["ppo"], description="test runner")


def test_a_registered_runner_takes_over_the_loop(tmp_path):
    runner = LoggingRunner()
    plugins = Plugins.load(extra=[("runner", runner)], autoload=False)
    summary = Trainer(small(plugins, tmp_path), plugins, run_dir=tmp_path / "run",
                      progress=False).run(max_steps=256)
    assert runner.seen == [("ppo", 256)]
    assert summary["status"] == "paused" and summary["env_steps"] == 256


def test_training_in_slices_equals_one_run(plugins, tmp_path):
    exp = small(plugins, tmp_path)
    whole = Trainer(exp, plugins, run_dir=tmp_path / "whole", progress=False)
    whole.run()
    sliced = Trainer(exp, plugins, run_dir=tmp_path / "sliced", progress=False)
    for stop in (128, 320, None):
        sliced.run(max_steps=stop)
    from rlkit.testing import assert_state_equal

    assert sliced.env_steps == whole.env_steps
    assert_state_equal(whole.agent.state_dict(), sliced.agent.state_dict(), "sliced vs whole")
