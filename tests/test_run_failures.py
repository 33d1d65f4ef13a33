"""How runs end: resuming a run that reached its target or spent its budget, progress off a
terminal, and runs that end with an error -- an env error, a plugin hook, a failing final
evaluation, Ctrl-C twice, a full disk, a model gone NaN -- which keep what they can and say so.
"""

from __future__ import annotations

import errno
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import torch
from rich.console import Console

from rlkit import checkpoint as ckpt
from rlkit.config import Experiment, load_experiment, resolve
from rlkit.errors import PluginError, RunError
from rlkit.failures import DiskFullError
from rlkit.hookspecs import hookimpl
from rlkit.logger import RunLogger
from rlkit.loop import Trainer
from rlkit.plugins import Plugins
from rlkit.testing import assert_state_equal, experiment_for

PARAMS = {"n_steps": 16, "batch_size": 32, "n_epochs": 1}


class FlakyCartPole(gym.Wrapper):
    """CartPole whose ``step`` raises ``FAIL["error"]`` at its ``FAIL["at"]``-th step."""

    FAIL: dict[str, Any] = {"at": None, "error": ValueError("the simulator lost its state")}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(gym.make("CartPole-v1", **kwargs))
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps == self.FAIL["at"]:
            raise self.FAIL["error"]
        return self.env.step(action)


if "test/FlakyCartPole-v0" not in gym.registry:
    gym.register("test/FlakyCartPole-v0", entry_point=FlakyCartPole)


@pytest.fixture(autouse=True)
def no_failures():
    default = dict(FlakyCartPole.FAIL)
    yield
    FlakyCartPole.FAIL.update(default)


def experiment(plugins: Plugins, tmp_path: Path, steps: int = 1024, *,
               eval_: dict[str, Any] | None = None, **train: Any) -> Experiment:
    exp = experiment_for("ppo", env_id="test/FlakyCartPole-v0", plugins=plugins, params=PARAMS,
                         steps=steps, workdir=tmp_path)
    data = exp.to_data()
    data["train"].update(train)
    data["eval"] = {"every": 0, "episodes": 2, **(eval_ or {})}
    return resolve(data, plugins)


def summary_of(run: Path) -> dict[str, Any]:
    return json.loads((run / "summary.json").read_text())


def latest(run: Path) -> dict[str, Any]:
    return ckpt.load(run / "checkpoints" / "latest.pt")


# --- resume: target reached, budget spent --------------------------------------------------

def test_a_run_that_reached_its_target_resumes_to_its_budget_and_a_spent_one_is_refused(
        plugins, tmp_path):
    from rlkit.cli import main

    run = tmp_path / "run"
    # Every evaluation reaches a target of 1: the first run stops at its first evaluation.
    exp = experiment(plugins, tmp_path, 1024, eval_={"every": 256, "target_return": 1.0})
    first = Trainer(exp, plugins, run_dir=run, progress=False).run()
    assert first["status"] == "target_reached" and first["env_steps"] == 256

    resumed = Trainer.resume(run, plugins, progress=False).run(max_steps=512)
    assert resumed["status"] == "paused" and resumed["env_steps"] == 512  # not stopped at 256+
    assert summary_of(run)["env_steps"] == 512 and latest(run)["trainer"]["env_steps"] == 512
    assert summary_of(run)["target_reached"] is True

    assert main(["train", "--resume", str(run), "--no-progress"], plugins=plugins) == 0
    final = summary_of(run)
    assert final["env_steps"] == 1024 and final["status"] == "finished"
    assert latest(run)["trainer"]["env_steps"] == 1024 and (run / "curves.png").exists()

    with pytest.raises(RunError) as info:
        Trainer.resume(run, plugins, progress=False)
    message = str(info.value)
    assert "already finished" in message and "fine-tun" not in message
    assert f"rlkit eval {run}" in message
    # the command it suggests exists and accepts that config
    suggested = re.search(r"rlkit train (\S+) --set (\S+)\)", message)
    assert suggested, message
    again = load_experiment(suggested.group(1), plugins, [suggested.group(2)])
    assert again.train.total_steps == 2048


def test_resume_rewrites_the_summary_and_curves_of_a_run_that_reached_its_target(
        plugins, tmp_path, capsys):
    from rlkit.cli import main

    config = tmp_path / "exp.yaml"
    data = experiment(plugins, tmp_path, 768, eval_={"every": 256,
                                                     "target_return": 1.0}).to_data()
    config.write_text(json.dumps(data))  # JSON is YAML
    run = tmp_path / "run"
    assert main(["train", str(config), "--run-dir", str(run), "--no-progress"],
                plugins=plugins) == 0
    assert summary_of(run)["status"] == "target_reached"
    curves = (run / "curves.png").stat().st_mtime_ns
    assert main(["train", "--resume", str(run), "--no-progress"], plugins=plugins) == 0
    assert summary_of(run)["env_steps"] == 768
    assert (run / "curves.png").stat().st_mtime_ns > curves
    assert main(["train", "--resume", str(run), "--no-progress"], plugins=plugins) == 2
    err = capsys.readouterr().err
    assert "already finished" in err and "fine-tun" not in err and "Traceback" not in err


# --- progress -----------------------------------------------------------------------------

def test_off_a_terminal_progress_is_a_line_every_tenth_and_every_evaluation(plugins, tmp_path):
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    exp = experiment(plugins, tmp_path, 2000, eval_={"every": 1000}, log_every=50)
    summary = Trainer(exp, plugins, run_dir=tmp_path / "run", progress=True,
                      console=console).run()
    lines = out.getvalue().splitlines()
    progress = [line for line in lines if line.startswith("training ")]
    evals = [line for line in lines if line.startswith("evaluation at ")]
    # 40 log points, but one line per tenth of the budget (the final one included)
    assert [int(re.match(r"training ([\d,]+)/", p).group(1).replace(",", ""))
            for p in progress] == list(range(200, 2001, 200))
    assert len(evals) == 2 and "2,000 env steps" in evals[-1]
    assert f"eval {summary['final_eval_return_mean']:.1f}" in progress[-1]
    assert "2,000/2,000 env steps (100%)" in progress[-1]


def test_off_a_terminal_a_line_comes_at_least_every_few_seconds(tmp_path):
    out = io.StringIO()
    logger = RunLogger(tmp_path, 1_000_000, console=Console(file=out, force_terminal=False))
    logger.advance(10, 5.0)
    assert out.getvalue() == ""  # far from a tenth of the budget, and no time has passed
    logger.LINE_SECONDS = 0.0
    logger.advance(20, 5.0)
    logger.close()
    assert out.getvalue().startswith("training 20/1,000,000 env steps (0%)")


def test_the_progress_bar_ends_on_the_final_step_and_evaluation(plugins, tmp_path):
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200)
    # 500 steps with log_every 64: the last log is at 448; the only evaluation is the final one
    exp = experiment(plugins, tmp_path, 500, log_every=64)
    summary = Trainer(exp, plugins, run_dir=tmp_path / "run", progress=True,
                      console=console).run()
    frames = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue()).split("\r")
    last = [f for f in frames if "training" in f][-1]
    assert "500/500" in last, last
    assert f"eval {summary['final_eval_return_mean']:.1f}" in last, last


# --- crashes ------------------------------------------------------------------------------

def test_an_env_error_without_checkpoints_still_leaves_a_resumable_run(plugins, tmp_path):
    run = tmp_path / "run"
    FlakyCartPole.FAIL["at"] = 150  # step 150 of each of the 2 envs: env step ~300
    trainer = Trainer(experiment(plugins, tmp_path, 1024), plugins, run_dir=run,
                      progress=False)
    with pytest.raises(ValueError, match="lost its state"):
        trainer.run()
    summary = summary_of(run)
    assert summary["status"] == "crashed" and summary["env_steps"] == 298
    assert "ValueError: the simulator lost its state" in summary["error"]
    assert "middle of a step" in summary["error"] and "\n" not in summary["error"]
    assert (run / "crash.log").read_text().startswith("Traceback")
    state = latest(run)
    assert state["status"] == "crashed" and state["exact"] is False
    assert state["trainer"]["env_steps"] == 298

    FlakyCartPole.FAIL["at"] = None
    with pytest.warns(RuntimeWarning, match="after a crash in the middle of a step"):
        resumed = Trainer.resume(run, plugins, progress=False)
    assert resumed.run()["status"] == "finished"
    assert summary_of(run)["env_steps"] == 1024


@pytest.mark.parametrize("error", [ValueError("boom"), KeyboardInterrupt()],
                         ids=["env-error", "ctrl-c-twice"])
def test_a_crash_mid_step_keeps_the_last_consistent_checkpoint_and_resumes_exactly(
        plugins, tmp_path, error):
    exp = experiment(plugins, tmp_path, 1024, checkpoint_every=256)
    whole = Trainer(exp, plugins, run_dir=tmp_path / "whole", progress=False)
    whole.run()

    run = tmp_path / "run"
    FlakyCartPole.FAIL.update(at=200, error=error)  # env step ~400, after the checkpoint at 256
    with pytest.raises(type(error)):
        Trainer(exp, plugins, run_dir=run, progress=False).run()
    summary = summary_of(run)
    assert summary["status"] == "crashed" and summary["checkpoint_step"] == 256
    assert latest(run)["trainer"]["env_steps"] == 256  # the mid-step state was not saved

    FlakyCartPole.FAIL["at"] = None
    resumed = Trainer.resume(run, plugins, progress=False)
    resumed.run()
    assert_state_equal(whole.agent.state_dict(), resumed.agent.state_dict(), "crash + resume")


class FailingHooks:
    """A plugin whose hooks raise (update_finished at a given step)."""

    def __init__(self, at_step: int | None = None, error: BaseException | None = None) -> None:
        self.at_step = at_step
        self.error = error or RuntimeError("the metrics server is down")

    @hookimpl
    def run_started(self, run):
        if self.at_step is None:
            raise RuntimeError("cannot connect")

    @hookimpl
    def update_finished(self, run, step, metrics):
        if self.at_step is None or step >= self.at_step:
            raise self.error

    @hookimpl
    def evaluation_finished(self, run, step, result):
        if self.at_step is None:
            raise RuntimeError("bad result")

    @hookimpl
    def checkpoint_saved(self, run, path, step):
        if self.at_step is None:
            raise SystemExit(3)

    @hookimpl
    def run_finished(self, run, summary):
        if self.at_step is None:
            raise RuntimeError("cannot upload")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def update_finished(self, run, step, metrics):
        self.calls.append("update_finished")

    @hookimpl
    def run_finished(self, run, summary):
        self.calls.append("run_finished")


def test_failing_plugin_hooks_are_reported_once_each_and_the_run_goes_on(tmp_path):
    recorder = Recorder()
    plugins = Plugins.load(extra=[("flaky_logger", FailingHooks()), ("recorder", recorder)],
                           autoload=False)
    exp = experiment(plugins, tmp_path, 512, eval_={"every": 128}, checkpoint_every=128)
    with pytest.warns(RuntimeWarning) as record:
        summary = Trainer(exp, plugins, run_dir=tmp_path / "run", progress=False).run()
    assert summary["status"] == "finished" and summary["env_steps"] == 512
    messages = [str(w.message) for w in record if "flaky_logger" in str(w.message)]
    hooks = sorted(re.search(r"in its (\w+) hook", m).group(1) for m in messages)
    assert hooks == ["checkpoint_saved", "evaluation_finished", "run_finished", "run_started",
                     "update_finished"], messages
    assert any("sys.exit(3)" in m for m in messages)
    assert all("plugin 'flaky_logger'" in m for m in messages)
    assert all("goes on" in m for m in messages if "run_finished" not in m)
    assert "update_finished" in recorder.calls and recorder.calls[-1] == "run_finished"
    counts = {e["hook"]: e["count"] for e in summary_of(tmp_path / "run")["plugin_errors"]}
    assert counts["update_finished"] > 1 and counts["checkpoint_saved"] == 5
    assert latest(tmp_path / "run")["status"] == "finished"


def test_plugin_errors_stop_ends_the_run_with_a_checkpoint_that_resumes_exactly(
        plugins, tmp_path):
    exp = experiment(plugins, tmp_path, 1024, plugin_errors="stop")
    whole = Trainer(exp, plugins, run_dir=tmp_path / "whole", progress=False)
    whole.run()

    failing = Plugins.load(extra=[("flaky_logger", FailingHooks(at_step=300))], autoload=False)
    run = tmp_path / "run"
    trainer = Trainer(experiment(failing, tmp_path, 1024, plugin_errors="stop"), failing,
                      run_dir=run, progress=False)
    with pytest.raises(PluginError, match="flaky_logger.*update_finished.*metrics server"):
        trainer.run()
    stopped = latest(run)
    assert stopped["status"] == "crashed" and stopped["exact"] is True
    assert 300 <= stopped["trainer"]["env_steps"] < 1024
    assert "middle of a step" not in trainer.error
    assert summary_of(run)["status"] == "crashed"

    resumed = Trainer.resume(run, plugins, progress=False)  # without the failing plugin
    resumed.run()
    assert_state_equal(whole.agent.state_dict(), resumed.agent.state_dict(), "stop + resume")


def test_ctrl_c_twice_between_steps_saves_the_current_state(tmp_path):
    plugins = Plugins.load(extra=[("impatient", FailingHooks(300, KeyboardInterrupt()))],
                           autoload=False)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        Trainer(experiment(plugins, tmp_path, 1024), plugins, run_dir=run,
                progress=False).run()
    state = latest(run)
    assert state["status"] == "crashed" and state["exact"] is True
    assert summary_of(run)["checkpoint_step"] == state["trainer"]["env_steps"] >= 300


def test_a_failing_final_evaluation_is_redone_on_resume(plugins, tmp_path, monkeypatch):
    import rlkit.loop

    run = tmp_path / "run"
    real = rlkit.loop.evaluate

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation env failed to start")

    monkeypatch.setattr(rlkit.loop, "evaluate", broken)
    with pytest.raises(RuntimeError, match="evaluation env"):
        Trainer(experiment(plugins, tmp_path, 512), plugins, run_dir=run, progress=False).run()
    assert latest(run)["status"] == "crashed" and latest(run)["trainer"]["env_steps"] == 512
    assert summary_of(run)["final_eval_return_mean"] is None

    monkeypatch.setattr(rlkit.loop, "evaluate", real)
    summary = Trainer.resume(run, plugins, progress=False).run()
    assert summary["status"] == "finished" and summary["final_eval_step"] == 512
    assert summary_of(run)["final_eval_return_mean"] is not None


def test_a_crash_in_a_periodic_evaluation_resumes_with_that_evaluation_redone(
        plugins, tmp_path, monkeypatch):
    import rlkit.loop
    from rlkit.plots import read_scalars

    exp = experiment(plugins, tmp_path, 1024, eval_={"every": 256})
    whole = Trainer(exp, plugins, run_dir=tmp_path / "whole", progress=False)
    whole.run()

    real, calls = rlkit.loop.evaluate, []

    def second_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("evaluation env failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(rlkit.loop, "evaluate", second_fails)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError):
        Trainer(exp, plugins, run_dir=run, progress=False).run()
    assert latest(run)["trainer"]["env_steps"] == 512
    monkeypatch.setattr(rlkit.loop, "evaluate", real)
    resumed = Trainer.resume(run, plugins, progress=False)
    resumed.run()
    assert_state_equal(whole.agent.state_dict(), resumed.agent.state_dict(), "eval crash")
    evals = read_scalars(run)["eval/return_mean"]
    assert evals == read_scalars(tmp_path / "whole")["eval/return_mean"]
    assert [step for step, _ in evals] == [256, 512, 768, 1024]


# --- full disk ----------------------------------------------------------------------------

def fill_the_disk(monkeypatch, after_bytes: int = 100):
    """torch.save writes a little, then the disk is full."""
    def save(obj, f, *args, **kwargs):
        f.write(b"x" * after_bytes)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", save)


def leftovers(run: Path) -> list[Path]:
    return [p for p in run.rglob("*") if p.name.endswith((".tmp", ".link"))]


def test_a_full_disk_names_the_directory_and_the_space_needed_and_leaves_no_temporary_files(
        plugins, tmp_path, monkeypatch):
    run = tmp_path / "run"
    fill_the_disk(monkeypatch)
    with pytest.raises(DiskFullError) as info:
        Trainer(experiment(plugins, tmp_path, 1024, checkpoint_every=256), plugins,
                run_dir=run, progress=False).run()
    message = str(info.value)
    assert isinstance(info.value, RunError) and "\n" not in message
    assert f"no space left on the disk of {run / 'checkpoints'}" in message
    assert re.search(r"needs about [\d.]+ kB and [\d.]+ [kMG]?B are free", message), message
    assert "nothing was saved" in message
    assert leftovers(run) == []
    assert summary_of(run)["status"] == "crashed"


def test_a_full_disk_while_saving_the_crash_checkpoint_does_not_hide_the_crash(
        plugins, tmp_path, monkeypatch):
    run = tmp_path / "run"
    FlakyCartPole.FAIL["at"] = 100
    fill_the_disk(monkeypatch)
    with pytest.raises(ValueError, match="lost its state"):
        Trainer(experiment(plugins, tmp_path, 1024), plugins, run_dir=run,
                progress=False).run()
    error = summary_of(run)["error"]
    assert error.index("ValueError") < error.index("no checkpoint could be written")
    assert "no space left" in error and leftovers(run) == []


def test_a_full_disk_when_writing_the_summary_leaves_the_old_one_and_no_temporary_file(
        plugins, tmp_path, monkeypatch):
    run = tmp_path / "run"
    trainer = Trainer(experiment(plugins, tmp_path, 256), plugins, run_dir=run, progress=False)
    trainer.run(max_steps=128)
    before = (run / "summary.json").read_text()
    real = Path.write_text

    def write_text(self, data, *args, **kwargs):
        if self.name.endswith(".tmp"):
            real(self, data[:10], *args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(DiskFullError, match="no space left on the disk of"):
        trainer.run()
    assert (run / "summary.json").read_text() == before and leftovers(run) == []


# --- non-finite model in warn mode --------------------------------------------------------

def poison(trainer: Trainer) -> None:
    with torch.no_grad():
        next(iter(trainer.agent.model.parameters())).fill_(math.nan)  # type: ignore[attr-defined]


@pytest.mark.filterwarnings("ignore:non-finite value in train")
def test_nan_check_warn_never_reports_a_nan_model_as_finished(plugins, tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(experiment(plugins, tmp_path, 512, nan_check="warn"), plugins,
                      run_dir=run, progress=False)
    trainer.run(max_steps=256)
    poison(trainer)
    summary = trainer.run()
    assert summary["status"] == "non_finite" and summary["target_reached"] is False
    assert "NaN or infinity" in summary["error"] and "model." in summary["error"]
    saved = latest(run)  # the NaN state was not written over the last finite checkpoint
    assert saved["trainer"]["env_steps"] == 256
    for name, tensor in saved["agent"]["model"].items():
        assert torch.isfinite(tensor).all(), name


@pytest.mark.filterwarnings("ignore:non-finite value in train")
def test_nan_check_warn_stops_at_the_next_checkpoint_once_the_model_is_nan(plugins, tmp_path):
    trainer = Trainer(experiment(plugins, tmp_path, 2048, nan_check="warn",
                                 checkpoint_every=512), plugins, run_dir=tmp_path / "run",
                      progress=False)
    trainer.run(max_steps=256)
    poison(trainer)
    summary = trainer.run()
    assert summary["status"] == "non_finite" and summary["env_steps"] == 512


def test_nan_check_off_does_not_check_the_model(plugins, tmp_path):
    trainer = Trainer(experiment(plugins, tmp_path, 512, nan_check="off"), plugins,
                      run_dir=tmp_path / "run", progress=False)
    trainer.run(max_steps=256)
    poison(trainer)
    assert trainer.run()["status"] == "finished"
