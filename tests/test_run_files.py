"""A run directory's files after crashes and damage: every scalar up to a checkpoint survives
kill -9, a damaged ``latest.pt`` falls back to an intact ``step_*.pt``, damaged fields and
files are one-line errors naming the file, temporary files are cleaned up."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from rlkit import checkpoint as ckpt
from rlkit.cli import main
from rlkit.loop import Trainer, load_agent
from rlkit.plots import read_scalars
from rlkit.plugins import Plugins
from rlkit.testing import experiment_for
from rlkit.validation import ConfigError

PARAMS = {"n_steps": 16, "batch_size": 32, "n_epochs": 1}


def make_run(tmp_path: Path, plugins: Plugins) -> Path:
    """A paused PPO run (CartPole, 256 of 512 env steps): ``latest.pt`` and ``step_*.pt`` at
    env steps 192 and 256."""
    exp = experiment_for("ppo", env_id="CartPole-v1", plugins=plugins, params=PARAMS,
                         steps=512, workdir=tmp_path,
                         backbone={"name": "mlp", "hidden_sizes": [32, 32]})
    exp = dataclasses.replace(exp, train=dataclasses.replace(exp.train, checkpoint_every=64))
    run = tmp_path / "run"
    assert Trainer(exp, plugins, run_dir=run, progress=False).run(max_steps=256)[
        "status"] == "paused"
    return run


def checkpoints(run: Path) -> dict[str, Path]:
    return {p.name: p for p in (run / "checkpoints").glob("*.pt")}


def rlkit(plugins: Plugins, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(args), plugins=plugins)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out + err


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_weight_byte(path: Path) -> None:
    """Flip one bit inside the storage of the first layer's weights."""
    weights = ckpt.load(path)["agent"]["model"]["actor_body.body.0.weight"]
    data = bytearray(path.read_bytes())
    at = bytes(data).index(weights.numpy().tobytes()) + 37
    data[at] ^= 0x01
    path.write_bytes(data)


def edit(path: Path, change: Any) -> None:
    """Rewrite a checkpoint with ``change(state)`` applied, with a valid checksum (as a buggy
    or foreign writer would): only the structural checks can catch it."""
    state = ckpt.load(path)
    change(state)
    ckpt.save_atomic({k: v for k, v in state.items() if k != "format_version"}, path)


# --- scalars.csv and checkpoints ---------------------------------------------------------


def test_every_scalar_up_to_a_checkpoint_is_on_disk_before_the_checkpoint(
        plugins, tmp_path, monkeypatch):
    seen: list[tuple[int, set[int]]] = []
    real_save = ckpt.save_atomic

    def save(state, path):
        on_disk = read_scalars(tmp_path / "run").get("time/elapsed_s", [])
        seen.append((state["trainer"]["env_steps"], {step for step, _ in on_disk}))
        return real_save(state, path)

    monkeypatch.setattr(ckpt, "save_atomic", save)
    make_run(tmp_path, plugins)
    assert [step for step, _ in seen] == [64, 128, 192, 256, 256]
    for step, logged in seen:  # logging runs every 64 env steps (train.log_every)
        assert set(range(64, step + 1, 64)) <= logged, f"checkpoint at {step}: rows missing"


EXPERIMENT = textwrap.dedent("""
    algorithm: {name: ppo, n_steps: 16, batch_size: 32, n_epochs: 1}
    backbone: {name: mlp, hidden_sizes: [32, 32]}
    env: {id: CartPole-v1, num_envs: 4}
    train: {total_steps: 1000000, seed: 3, log_every: 64, checkpoint_every: 512,
            torch_threads: 1}
    eval: {every: 0}
""")


@pytest.mark.slow
def test_kill_9_after_a_checkpoint_then_resume_keeps_every_row_up_to_it(plugins, tmp_path):
    (tmp_path / "exp.yaml").write_text(EXPERIMENT)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rlkit.cli", "train", "exp.yaml", "--run-dir",
                             "run", "--no-progress"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not list((run / "checkpoints").glob("step_*.pt")) and proc.poll() is None:
            assert time.time() < deadline, "no checkpoint within 60 s"
            time.sleep(0.005)
        assert proc.poll() is None, proc.communicate()[1]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    step = ckpt.load(run / "checkpoints" / "latest.pt")["trainer"]["env_steps"]
    expected = set(range(64, step + 1, 64))
    on_disk = {s for s, _ in read_scalars(run)["time/elapsed_s"]}
    assert expected <= on_disk  # durable at the kill, not only after a clean close
    resumed = Trainer.resume(run, plugins, progress=False)
    resumed.run(max_steps=step + 128)
    rows = read_scalars(run)["time/elapsed_s"]
    assert [s for s, _ in rows] == sorted(expected | {step + 64, step + 128})


# --- falling back to an intact checkpoint ------------------------------------------------


@pytest.mark.parametrize("damage", [truncate, flip_weight_byte])
def test_eval_falls_back_from_a_damaged_latest_to_the_newest_step_checkpoint(
        plugins, tmp_path, capsys, damage):
    run = make_run(tmp_path, plugins)
    damage(checkpoints(run)["latest.pt"])
    code, out = rlkit(plugins, capsys, "eval", str(run), "--episodes", "1", "--device", "cpu")
    assert code == 0, out
    latest = run / "checkpoints" / "latest.pt"
    newest = run / "checkpoints" / "step_000000000256.pt"
    assert f"rlkit: warning: {latest}: " in out
    assert ("cannot be loaded" if damage is truncate else "checksum mismatch") in out
    assert f"Using {newest} instead (env step 256)" in out
    assert f"({newest}): return" in out  # the result names the file it evaluated


def test_resume_falls_back_and_continues_from_the_step_checkpoint(plugins, tmp_path):
    run = make_run(tmp_path, plugins)
    files = checkpoints(run)
    for name in ("latest.pt", "step_000000000256.pt"):
        truncate(files[name])
    with pytest.warns(RuntimeWarning, match=r"latest\.pt: cannot be loaded.*step_000000000256"
                                            r"\.pt: cannot be loaded.*Using .*step_000000000192"
                                            r"\.pt instead \(env step 192\)"):
        trainer = Trainer.resume(run, plugins, progress=False)
    assert trainer.env_steps == 192
    assert trainer.run()["env_steps"] == 512
    assert ckpt.load(run / "checkpoints" / "latest.pt")["trainer"]["env_steps"] == 512


def test_an_explicit_checkpoint_file_never_falls_back(plugins, tmp_path, capsys):
    run = make_run(tmp_path, plugins)
    latest = checkpoints(run)["latest.pt"]
    truncate(latest)
    with pytest.raises(ckpt.CheckpointError, match=rf"^{latest}: cannot be loaded") as info:
        load_agent(latest, plugins)
    assert "step_0" not in str(info.value) and "run directory instead" in str(info.value)
    code, out = rlkit(plugins, capsys, "train", "--resume", str(latest), "--no-progress")
    assert code == 2 and f"rlkit: error: {latest}: cannot be loaded" in out


def test_when_no_checkpoint_loads_each_file_and_its_problem_is_listed(plugins, tmp_path,
                                                                      capsys):
    run = make_run(tmp_path, plugins)
    files = checkpoints(run)
    truncate(files["latest.pt"])
    flip_weight_byte(files["step_000000000256.pt"])
    edit(files["step_000000000192.pt"], lambda s: s.pop("agent"))
    code, out = rlkit(plugins, capsys, "eval", str(run), "--episodes", "1")
    assert code == 2
    line = out.strip().splitlines()[-1]
    assert line.startswith(f"rlkit: error: {run}: none of its 3 checkpoints loads: ")
    for name, problem in [("latest.pt", "cannot be loaded"),
                          ("step_000000000256.pt", "checksum mismatch"),
                          ("step_000000000192.pt", "agent: required field is missing")]:
        assert f"{name}: {problem}" in line


def test_temporary_files_left_by_kills_are_removed_on_resume_and_eval(plugins, tmp_path):
    run = make_run(tmp_path, plugins)
    directory = run / "checkpoints"
    leftovers = [directory / ".latest.pt.x1y2z3ab.tmp", directory / ".step_000000000256.pt.link"]
    for p in leftovers:
        p.write_bytes(b"half a checkpoint")
        os.utime(p, (time.time() - 30,) * 2)
    load_agent(run, plugins)
    assert not any(p.exists() for p in leftovers)
    leftovers[0].write_bytes(b"half a checkpoint")
    os.utime(leftovers[0], (time.time() - 30,) * 2)
    Trainer.resume(run, plugins, progress=False).run()
    assert sorted(p.name for p in directory.iterdir()) == [
        "latest.pt", "step_000000000448.pt", "step_000000000512.pt"]


def test_run_directory_temporary_files_are_removed_on_the_next_load(plugins, tmp_path):
    run = make_run(tmp_path, plugins)
    leftovers = [run / "summary.json.tmp", run / "curves.png.tmp", run / ".scalars.csv.tmp"]
    fresh = run / "manifest.json.tmp"  # a second old: perhaps being written right now
    for p in [*leftovers, fresh]:
        p.write_bytes(b"cut short")
    for p in leftovers:
        os.utime(p, (time.time() - 30,) * 2)
    load_agent(run, plugins)
    assert not any(p.exists() for p in leftovers)
    assert fresh.exists()
    assert (run / "summary.json").is_file() and (run / "config.yaml").is_file()


# --- damaged checkpoints: one line naming the file and the field -------------------------


@pytest.mark.parametrize("change, problem", [
    (lambda s: s.pop("agent"), "agent: required field is missing"),
    (lambda s: s.pop("trainer"), "trainer: required field is missing"),
    (lambda s: s.pop("rng"), "rng: required field is missing"),
    (lambda s: s["trainer"].update(env_steps="lots"),
     "trainer.env_steps: expected a whole number >= 0, got str 'lots'"),
    (lambda s: s["trainer"].update(env_steps=-5),
     "trainer.env_steps: expected a whole number >= 0, got int -5"),
])
def test_resume_from_a_checkpoint_with_a_bad_field_names_the_file_and_field(
        plugins, tmp_path, capsys, change, problem):
    run = make_run(tmp_path, plugins)
    latest = checkpoints(run)["latest.pt"]
    edit(latest, change)
    code, out = rlkit(plugins, capsys, "train", "--resume", str(latest), "--no-progress")
    assert code == 2
    assert out.strip().splitlines()[-1].startswith(f"rlkit: error: {latest}: {problem}")
    # Given the run directory, the intact step_000000000256.pt is used instead.
    with pytest.warns(RuntimeWarning, match=r"latest\.pt: .*Using .*step_000000000256\.pt"):
        assert Trainer.resume(run, plugins, progress=False).env_steps == 256


def test_a_tensor_of_the_wrong_shape_names_the_checkpoint_and_the_key(plugins, tmp_path,
                                                                      capsys):
    run = make_run(tmp_path, plugins)
    latest = checkpoints(run)["latest.pt"]
    edit(latest, lambda s: s["agent"]["model"].update({"actor_body.body.0.weight":
                                                       torch.zeros(64, 4)}))
    message = (rf"^{latest}: the agent's state does not fit the 'ppo' agent its config builds "
               r"\(agent\.model\.actor_body\.body\.0\.weight: shape \(64, 4\) in the "
               r"checkpoint, \(32, 4\) expected\)")
    with pytest.raises(ckpt.CheckpointError, match=message):
        load_agent(latest, plugins)
    with pytest.raises(ckpt.CheckpointError, match=message):
        Trainer.resume(latest, plugins, progress=False)
    code, out = rlkit(plugins, capsys, "eval", str(latest), "--episodes", "1")
    assert code == 2 and "agent.model.actor_body.body.0.weight" in out


def test_an_unrestorable_part_names_the_checkpoint_and_the_part(plugins, tmp_path):
    run = make_run(tmp_path, plugins)
    latest = checkpoints(run)["latest.pt"]
    edit(latest, lambda s: s["trainer"].update(episode_stats={"ep_return": torch.zeros(2)}))
    with pytest.raises(ckpt.CheckpointError,
                       match=rf"^{latest}: trainer\.episode_stats: cannot be restored"):
        Trainer.resume(latest, plugins, progress=False)


def test_errors_in_the_stored_config_name_the_checkpoint(plugins, tmp_path, capsys):
    run = make_run(tmp_path, plugins)
    latest = checkpoints(run)["latest.pt"]
    edit(latest, lambda s: s["config"]["train"].update(total_steps=-3))
    for args in (["eval", str(latest), "--episodes", "1"],
                 ["train", "--resume", str(latest), "--no-progress"]):
        code, out = rlkit(plugins, capsys, *args)
        assert code == 2
        line = out.strip().splitlines()[-1]
        assert line.startswith(f"rlkit: error: {latest}: in the config stored in this "
                               f"checkpoint: train.total_steps"), line
    with pytest.raises(ConfigError, match=rf"^{latest}: in the config stored"):
        load_agent(latest, plugins)


# --- a damaged scalars.csv -----------------------------------------------------------------


def test_resume_refuses_a_scalars_csv_that_is_a_directory_before_building(plugins, tmp_path,
                                                                          capsys):
    run = make_run(tmp_path, plugins)
    (run / "scalars.csv").unlink()
    (run / "scalars.csv").mkdir()
    code, out = rlkit(plugins, capsys, "train", "--resume", str(run), "--no-progress")
    assert code == 2
    assert out.strip().splitlines()[-1] == (
        f"rlkit: error: {run / 'scalars.csv'}: is a directory, not the run's table of "
        f"scalars; move it out of the way (rlkit then starts a new scalars.csv) and run again.")
    assert ckpt.load(run / "checkpoints" / "latest.pt")["status"] == "paused"  # untouched


def test_a_scalars_csv_with_bytes_that_are_not_utf8_is_kept_aside_and_its_rows_carried_on(
        plugins, tmp_path, capsys):
    run = make_run(tmp_path, plugins)
    path = run / "scalars.csv"
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3][:5] + b"\xff\xfe" + lines[3][5:]  # damage one early row
    damaged = b"\n".join(lines)
    path.write_bytes(damaged)
    assert read_scalars(run)  # readable as it is (the damaged row left out)
    code, out = rlkit(plugins, capsys, "train", "--resume", str(run), "--no-progress")
    assert code == 0, out
    aside = run / "scalars.csv.damaged"
    assert aside.read_bytes() == damaged  # nothing lost
    assert (f"rlkit: warning: {path}: line 4 holds bytes that are not UTF-8; the file was moved "
            f"to scalars.csv.damaged unchanged") in out
    steps = [s for s, _ in read_scalars(run)["time/elapsed_s"]]
    assert steps == list(range(64, 513, 64))  # the rows before the damage and after resume
    path.read_text(encoding="utf-8")
