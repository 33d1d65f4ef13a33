"""Every experiment file validates, explains itself at the top, and runs a few steps."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gymnasium
import pytest
import yaml

from rlkit import load_experiment
from rlkit.loop import Trainer

FILES = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.yaml"))


def test_the_documented_experiments_exist():
    names = {f.name for f in FILES}
    assert {"cartpole.yaml", "cartpole_dqn.yaml", "frozenlake_qlearning.yaml",
            "taxi_sarsa.yaml", "cartpole_gpu.yaml", "pendulum_gpu.yaml", "pendulum_ddpg.yaml",
            "pendulum_td3.yaml", "pendulum_td3_gpu.yaml", "mountaincar_continuous_td3.yaml",
            "halfcheetah_td3.yaml", "cartpole_a2c.yaml", "cartpole_a3c.yaml",
            "cartpole_a3c_ray.yaml"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_experiment_explains_itself_validates_and_runs(path, plugins, tmp_path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# "), f"{path.name} should start with a comment explaining it"
    data = yaml.safe_load(path.read_text())
    env = data.get("env", {})
    if data["algorithm"].get("backend") == "ray" and importlib.util.find_spec("ray") is None:
        pytest.skip(f"{path.name} needs Ray (pip install 'rlkit[ray]')")
    for module in env.get("imports", []):
        if importlib.util.find_spec(module) is None:  # an optional extra, such as minigrid
            pytest.skip(f"{path.name} needs {module!r} (not installed)")
    if _is_mujoco(env.get("id", "")) and importlib.util.find_spec("mujoco") is None:
        pytest.skip(f"{path.name} needs MuJoCo (pip install 'rlkit[mujoco]')")
    experiment = load_experiment(path, plugins, [
        "train.total_steps=64", "train.device=cpu", "eval.every=0", "eval.episodes=1",
        "env.num_envs=4", f"run.dir={tmp_path}"])
    summary = Trainer(experiment, plugins, run_dir=tmp_path / "run", progress=False).run()
    assert summary["status"] in ("finished", "target_reached")


def _is_mujoco(env_id: str) -> bool:
    """Whether gymnasium registers ``env_id`` from its MuJoCo environments (an optional extra)."""
    spec = gymnasium.registry.get(env_id)
    entry = spec.entry_point if spec is not None else ""
    return isinstance(entry, str) and entry.startswith("gymnasium.envs.mujoco")
