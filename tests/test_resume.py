"""Interrupt and resume: a run stopped by a signal and resumed in a new process ends with
exactly the parameters of an uninterrupted run (CPU, same seed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from rlkit import checkpoint as ckpt
from rlkit.plots import read_scalars
from rlkit.testing import assert_state_equal

EXPERIMENT = textwrap.dedent("""
    algorithm:
      name: ppo
      n_steps: 16
      batch_size: 32
      n_epochs: 2
      optimizer: {name: adam, lr: {kind: linear, start: 1.0e-3, end: 0.0}}
    backbone: {name: mlp, hidden_sizes: [32, 32]}
    env: {id: CartPole-v1, num_envs: 4}
    train: {total_steps: 12000, seed: 5, checkpoint_every: 1024, torch_threads: 1}
    eval: {every: 4096, episodes: 4}
""")


def rlkit(*args: str, cwd: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "rlkit.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.slow
def test_sigint_then_resume_in_new_process_equals_uninterrupted(tmp_path: Path):
    config = tmp_path / "exp.yaml"
    config.write_text(EXPERIMENT)
    full = rlkit("train", str(config), "--run-dir", "full", "--no-progress", cwd=tmp_path)
    out, err = full.communicate(timeout=300)
    assert full.returncode == 0, err

    # Interrupt a second run once its first periodic checkpoint exists.
    part = rlkit("train", str(config), "--run-dir", "part", "--no-progress", cwd=tmp_path)
    first = tmp_path / "part" / "checkpoints" / "latest.pt"
    deadline = time.time() + 120
    while not first.exists() and time.time() < deadline and part.poll() is None:
        time.sleep(0.01)
    part.send_signal(signal.SIGINT)
    out, err = part.communicate(timeout=300)
    if part.returncode == 0:
        pytest.skip("the run finished before the interrupt arrived (machine too fast)")
    assert part.returncode == 130, err
    assert "rlkit train --resume" in err
    stopped_at = ckpt.load(first)["trainer"]["env_steps"]
    assert 0 < stopped_at < 12000

    resumed = rlkit("train", "--resume", "part", "--no-progress", cwd=tmp_path)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err

    a = ckpt.load(tmp_path / "full" / "checkpoints" / "latest.pt")
    b = ckpt.load(tmp_path / "part" / "checkpoints" / "latest.pt")
    assert a["trainer"]["env_steps"] == b["trainer"]["env_steps"]
    assert_state_equal(a["agent"], b["agent"], "resumed vs uninterrupted")
    assert torch.equal(a["obs"], b["obs"])
    # scalars.csv: the rows the interrupted run wrote after its checkpoint are gone, so each
    # evaluation appears once, with the uninterrupted run's value.
    full_evals = read_scalars(tmp_path / "full")["eval/return_mean"]
    assert read_scalars(tmp_path / "part")["eval/return_mean"] == full_evals
    assert (tmp_path / "part" / "curves.png").exists()


@pytest.mark.slow
def test_resume_refuses_finished_run_and_explains(tmp_path: Path):
    config = tmp_path / "exp.yaml"
    config.write_text(EXPERIMENT.replace("total_steps: 12000", "total_steps: 256"))
    done = rlkit("train", str(config), "--run-dir", "done", "--no-progress", cwd=tmp_path)
    assert done.wait(timeout=300) == 0
    again = rlkit("train", "--resume", "done", cwd=tmp_path)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 2 and "already finished" in err and "Traceback" not in err
