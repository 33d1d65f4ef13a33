"""The trainer: run directory contents, lifecycle hooks, runners and training in slices."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import torch
import yaml

from rlkit import PLUGIN_API
from rlkit import checkpoint as ckpt
from rlkit.config import resolve
from rlkit.hookspecs import hookimpl
from rlkit.loop import Trainer
from rlkit.plugins import Plugins
from rlkit.testing import assert_state_equal, experiment_for

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
    assert manifest["plugin_api"] == PLUGIN_API  # what the run's plugins were loaded against
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


def test_the_summary_separates_evaluation_time_and_keeps_it_across_a_resume(plugins, tmp_path,
                                                                             monkeypatch):
    import rlkit.loop as loop

    real = loop.evaluate

    def slow_evaluate(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)  # each evaluation takes at least 50 ms
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", slow_evaluate)
    run = tmp_path / "run"
    first = Trainer(small(plugins, tmp_path), plugins, run_dir=run, progress=False)
    paused = first.run(max_steps=256)  # one evaluation, at 256
    assert 0.05 <= paused["eval_time_s"] < paused["wall_time_s"]
    summary = Trainer.resume(run, plugins, progress=False).run()  # one more, at 512
    assert summary["eval_time_s"] >= paused["eval_time_s"] + 0.05
    assert summary["eval_time_s"] < summary["wall_time_s"]
    saved = json.loads((run / "summary.json").read_text())
    assert saved["eval_time_s"] == summary["eval_time_s"]


def test_training_in_slices_equals_one_run(plugins, tmp_path):
    exp = small(plugins, tmp_path)
    whole = Trainer(exp, plugins, run_dir=tmp_path / "whole", progress=False)
    whole.run()
    sliced = Trainer(exp, plugins, run_dir=tmp_path / "sliced", progress=False)
    for stop in (128, 320, None):
        sliced.run(max_steps=stop)
    assert sliced.env_steps == whole.env_steps
    assert_state_equal(whole.agent.state_dict(), sliced.agent.state_dict(), "sliced vs whole")


# --- non-finite values ---------------------------------------------------------------------

class NanRewardCartPole(gym.Wrapper):
    """CartPole whose reward turns NaN after 100 steps."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(gym.make("CartPole-v1", **kwargs))
        self.steps = 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        return obs, (math.nan if self.steps > 100 else reward), terminated, truncated, info


if "test/NanRewardCartPole-v0" not in gym.registry:
    gym.register("test/NanRewardCartPole-v0", entry_point=NanRewardCartPole)


def nan_experiment(plugins: Plugins, tmp_path: Path, mode: str):
    exp = small(plugins, tmp_path)
    data = exp.to_data()
    data["env"]["id"] = "test/NanRewardCartPole-v0"
    data["train"]["nan_check"] = mode
    data["eval"] = {"every": 0}
    return resolve(data, plugins)


def test_nan_check_raise_stops_keeps_the_last_good_state_and_names_the_cause(plugins, tmp_path):
    trainer = Trainer(nan_experiment(plugins, tmp_path, "raise"), plugins,
                      run_dir=tmp_path / "run", progress=False)
    summary = trainer.run()
    assert summary["status"] == "non_finite"
    last_good = ckpt.load(tmp_path / "run" / "checkpoints" / "last_good.pt")
    for name, tensor in last_good["agent"]["model"].items():
        assert torch.isfinite(tensor).all(), name
    assert trainer.env_steps < 512


@pytest.mark.filterwarnings("ignore:non-finite value in train")
def test_nan_check_warn_names_the_env_once_and_continues(plugins, tmp_path):
    trainer = Trainer(nan_experiment(plugins, tmp_path, "warn"), plugins,
                      run_dir=tmp_path / "run", progress=False)
    with pytest.warns(RuntimeWarning, match="NanRewardCartPole.*non-finite reward") as record:
        trainer.run()
    assert sum("env/reward" in str(w.message) for w in record) == 1


# --- TensorBoard ---------------------------------------------------------------------------

def test_tensorboard_scalars_use_stable_namespaces_and_hold_the_config(plugins, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    Trainer(small(plugins, tmp_path), plugins, run_dir=tmp_path / "run", progress=False).run()
    events = EventAccumulator(str(tmp_path / "run"), size_guidance={"tensors": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for prefix in ("rollout/", "train/", "eval/", "time/"):
        assert any(t.startswith(prefix) for t in tags), (prefix, sorted(tags))
    assert tags <= {t for t in tags if t.split("/")[0] in ("rollout", "train", "eval", "time")}
    assert "eval/return_mean" in tags and "train/policy_loss" in tags
    assert any("config" in t for t in events.Tags()["tensors"])


def test_load_agent_from_a_run_directory_acts_like_the_trained_agent(plugins, tmp_path):
    from rlkit import load_agent

    trainer = Trainer(small(plugins, tmp_path), plugins, run_dir=tmp_path / "run",
                      progress=False)
    trainer.run()
    agent, experiment = load_agent(tmp_path / "run", plugins)
    assert experiment.algorithm.name == "ppo"
    obs = torch.rand(5, 4)
    assert torch.equal(agent.act(obs, explore=False), trainer.agent.act(obs, explore=False))


def test_nan_check_defers_accelerator_tensors_in_warn_mode_and_checks_cpu_ones_at_once():
    from rlkit.interfaces import NanCheck, NonFiniteError

    check = NanCheck("warn")
    meta = torch.tensor([1.0, math.nan], device="meta")  # stands in for an accelerator
    check.check("x", meta, "cause")  # no host read: only a flag is kept
    assert "x" in check._deferred and not check.warned
    with pytest.warns(RuntimeWarning, match="non-finite value in y"):
        check.check("y", torch.tensor([math.nan]), "cause")
    strict = NanCheck("raise")
    with pytest.raises(NonFiniteError, match="z.*Likely cause: because"):
        strict.check("z", torch.tensor([0.0, math.inf]), "because")
