"""experiments/minigrid_doorkey_lstm.yaml builds MiniGrid through env.imports and env.wrappers,
and recurrent PPO with a CNN encoder runs on it (skipped when the optional minigrid extra is
not installed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlkit import load_experiment
from rlkit.environments import UntrustedConfigError, untrusted_code
from rlkit.loop import Trainer, env_options

pytest.importorskip("minigrid")

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "minigrid_doorkey_lstm.yaml"


def test_the_experiment_builds_and_trains_a_few_steps(plugins, tmp_path):
    experiment = load_experiment(EXPERIMENT, plugins, [
        "train.total_steps=256", "train.device=cpu", "algorithm.n_steps=32",
        "algorithm.batch_size=64", "eval.every=128", "eval.episodes=2", "env.num_envs=4"])
    trainer = Trainer(experiment, plugins, run_dir=tmp_path / "run", progress=False)
    summary = trainer.run()
    assert summary["status"] == "finished"
    assert summary["env_steps"] == 256
    assert trainer.env.single_observation_space.shape == (7, 7, 3)  # ImgObsWrapper's image


def test_a_stored_run_of_it_needs_trust(plugins, tmp_path):
    experiment = load_experiment(EXPERIMENT, plugins, [
        "train.total_steps=64", "train.device=cpu", "algorithm.n_steps=16",
        "algorithm.batch_size=32", "eval.every=0", "env.num_envs=2"])
    # minigrid is imported by env.imports and its wrapper is not registered by a plugin
    found = untrusted_code(env_options(experiment), plugins.wrappers)
    assert found == ["env.imports[0] 'minigrid'",
                     "env.wrappers[0].name 'minigrid.wrappers:ImgObsWrapper'"]
    run_dir = tmp_path / "run"
    Trainer(experiment, plugins, run_dir=run_dir, progress=False).run(max_steps=32)
    with pytest.raises(UntrustedConfigError, match="--trust-config"):
        Trainer.resume(run_dir, plugins, progress=False)
    with pytest.warns(RuntimeWarning, match="environments restart from a reset"):
        resumed = Trainer.resume(run_dir, plugins, progress=False, trust_config=True)
    assert resumed.env.single_observation_space.shape == (7, 7, 3)
    summary = resumed.run()  # a fresh grid, not a half-restored one: minigrid runs on
    assert summary["env_steps"] == 64
