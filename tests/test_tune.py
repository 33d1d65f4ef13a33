"""rlkit tune: a small study with a pruner writes its report and a runnable best.yaml; a wrong
tune: entry is a ConfigError naming it; a kept study continues up to --trials in all."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from rlkit.cli import main
from rlkit.config import load_experiment
from rlkit.loop import Trainer
from rlkit.plugins import Plugins

optuna = pytest.importorskip("optuna")

TINY = {
    "algorithm": {"name": "ppo", "n_steps": 16, "batch_size": 64, "n_epochs": 2,
                  "optimizer": {"name": "adam", "lr": 1.0e-3}},
    "env": {"id": "CartPole-v1", "num_envs": 4},
    "train": {"total_steps": 2000, "seed": 0},
    "eval": {"every": 500, "episodes": 3},
}
SPACE = {
    "metric": "eval/return_mean",
    "params": {
        "algorithm.optimizer.lr": {"log_uniform": [1.0e-4, 3.0e-3]},
        "algorithm.n_steps": {"choice": [16, 32]},
        "algorithm.gamma": {"uniform": [0.95, 0.999]},
        "algorithm.n_epochs": {"int": [1, 3]},
    },
}


def _experiment(tmp_path: Path, tune: object = None) -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump({**TINY, "tune": SPACE if tune is None else tune}))
    return path


def test_a_study_with_a_pruner_writes_best_yaml_trials_csv_and_the_plot(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["tune", str(_experiment(tmp_path)), "--trials", "3", "--pruner", "median",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["number"] for r in rows] == ["0", "1", "2"]
    assert all(r["state"] in ("complete", "pruned") for r in rows)
    assert all((out / f"trial-{k}" / "summary.json").is_file() for k in range(3))
    pruned = [r for r in rows if r["state"] == "pruned"]
    assert pruned, "seeded: the median pruner stops a weaker trial at an evaluation"
    for row in pruned:  # stopped through the trainer's stop flag, with its run files
        run = out / f"trial-{row['number']}"
        assert json.loads((run / "trial.json").read_text())["state"] == "pruned"
        assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    complete = sum(r["state"] == "complete" for r in rows)
    assert (out / "param_importances.png").is_file() == (complete >= 2)
    text = capsys.readouterr().out
    assert "best trials" in text
    best = out / "best.yaml"
    assert "tune" not in yaml.safe_load(best.read_text())
    experiment = load_experiment(best, Plugins.load(), ["train.total_steps=64",
                                                        "eval.every=64", "eval.episodes=1"])
    summary = Trainer(experiment, Plugins.load(), run_dir=tmp_path / "best-run",
                      progress=False).run()
    assert summary["status"] == "finished" and summary["env_steps"] >= 64


def test_two_completed_trials_draw_the_importance_plot(tmp_path):
    out = tmp_path / "out"
    code = main(["tune", str(_experiment(tmp_path)), "--trials", "2", "--pruner", "none",
                 "--sampler", "random", "--out", str(out)])
    assert code == 0
    assert (out / "param_importances.png").stat().st_size > 0


@pytest.mark.parametrize(("entry", "expected"), [
    ({"algorithm.lerning_rate": {"uniform": [0.1, 0.2]}},
     "tune.params.algorithm.lerning_rate"),
    ({"algorithm.gamma": {"uniform": [0.999, 0.95]}}, "tune.params.algorithm.gamma.uniform: "
                                                      "the bounds are inverted"),
    ({"algorithm.gamma": {"normal": [0.9, 0.1]}}, "tune.params.algorithm.gamma: unknown "
                                                  "distribution 'normal'"),
    ({"algorithm.optimizer.lr": {"log_uniform": [0.0, 0.1]}},
     "tune.params.algorithm.optimizer.lr.log_uniform: LOW must be positive"),
])
def test_a_bad_tune_entry_is_a_config_error_naming_it(tmp_path, capsys, entry, expected):
    path = _experiment(tmp_path, {"params": entry})
    code = main(["tune", str(path), "--trials", "1", "--out", str(tmp_path / "out")])
    assert code == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out" / "trial-0").exists()


def test_grid_needs_a_choice_only_space(tmp_path, capsys):
    code = main(["tune", str(_experiment(tmp_path)), "--trials", "1", "--sampler", "grid",
                 "--out", str(tmp_path / "out")])
    assert code == 2
    assert "--sampler grid" in capsys.readouterr().err


def test_a_kept_study_continues_up_to_trials_in_all(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = ["tune", str(_experiment(tmp_path)), "--storage", storage, "--study", "s",
               "--pruner", "none", "--out", str(tmp_path / "out")]
    assert main([*command, "--trials", "2"]) == 0
    assert main([*command, "--trials", "3"]) == 0
    study = optuna.load_study(study_name="s", storage=storage)
    assert len(study.trials) == 3
    assert sorted(p.name for p in (tmp_path / "out").glob("trial-*")) == [
        "trial-0", "trial-1", "trial-2"]


def test_jobs_run_trials_in_worker_processes_on_one_storage(tmp_path):
    out = tmp_path / "out"
    code = main(["tune", str(_experiment(tmp_path)), "--trials", "2", "--jobs", "2",
                 "--pruner", "none", "--out", str(out)])
    assert code == 0
    study = optuna.load_study(study_name="x", storage=f"sqlite:///{out / 'study.db'}")
    assert len(study.trials) >= 2
    assert (out / "best.yaml").is_file() and (out / "worker-1.log").is_file()
