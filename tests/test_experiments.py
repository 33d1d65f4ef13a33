"""Every experiment file validates, explains itself at the top, and runs a few steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlkit import load_experiment
from rlkit.loop import Trainer

FILES = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.yaml"))


def test_the_documented_experiments_exist():
    names = {f.name for f in FILES}
    assert {"cartpole.yaml", "cartpole_dqn.yaml", "frozenlake_qlearning.yaml",
            "taxi_sarsa.yaml", "cartpole_gpu.yaml", "pendulum_gpu.yaml"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_experiment_explains_itself_validates_and_runs(path, plugins, tmp_path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# "), f"{path.name} should start with a comment explaining it"
    experiment = load_experiment(path, plugins, [
        "train.total_steps=64", "train.device=cpu", "eval.every=0", "eval.episodes=1",
        "env.num_envs=4", f"run.dir={tmp_path}"])
    summary = Trainer(experiment, plugins, run_dir=tmp_path / "run", progress=False).run()
    assert summary["status"] in ("finished", "target_reached")
