"""rlkit compare: the statistics against hand computations, an end-to-end comparison of two
tiny experiments, and a crashed trial reported while the others finish."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import yaml

from rlkit.cli import main
from rlkit.workflow import stats

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--budget", "2000", "--set", "eval.every=1000", "--set", "eval.episodes=5"]


# --- statistics -----------------------------------------------------------------------------

def test_iqm_drops_a_quarter_of_the_runs_from_each_end():
    assert stats.iqm([8, 1, 7, 2, 6, 3, 5, 4]) == pytest.approx((3 + 4 + 5 + 6) / 4)
    # n = 5: floor(5 / 4) = 1 dropped from each end
    assert stats.iqm([100, 1, 2, 3, -50]) == pytest.approx((1 + 2 + 3) / 3)
    assert stats.iqm([1.0, 2.0, 10.0]) == pytest.approx(13.0 / 3)  # n < 4: the mean


def test_mean_is_the_plain_mean():
    assert stats.mean([1, 2, 3, 10]) == pytest.approx(4.0)


def test_probability_of_improvement_counts_pairs_and_half_ties():
    # pairs (x, y): (1,0) win, (1,1) tie, (1,2) loss, (3,0) (3,1) (3,2) wins -> (4 + 0.5) / 6
    assert stats.probability_of_improvement([1, 3], [0, 1, 2]) == pytest.approx(4.5 / 6)
    assert stats.probability_of_improvement([0, 1, 2], [1, 3]) == pytest.approx(1.5 / 6)
    assert stats.probability_of_improvement([5, 5], [5]) == pytest.approx(0.5)


def test_bootstrap_ci_contains_the_estimate_and_repeats_with_its_seed():
    scores = [12.31, 15.07, 9.93, 30.52, 22.18, 18.64, 11.45]
    for statistic, point in (("mean", stats.mean(scores)), ("iqm", stats.iqm(scores))):
        low, high = stats.bootstrap_ci(scores, statistic, seed=3)
        assert low <= point <= high
        assert (low, high) == stats.bootstrap_ci(scores, statistic, seed=3)
    assert stats.bootstrap_ci(scores, seed=3) != stats.bootstrap_ci(scores, seed=4)
    low, high = stats.probability_of_improvement_ci(scores, [10.0, 14.0, 16.0], seed=1)
    assert low <= stats.probability_of_improvement(scores, [10.0, 14.0, 16.0]) <= high
    assert (low, high) == stats.probability_of_improvement_ci(scores, [10.0, 14.0, 16.0],
                                                             seed=1)


def test_statistics_refuse_empty_input_and_unknown_names():
    with pytest.raises(ValueError, match="non-empty"):
        stats.mean([])
    with pytest.raises(ValueError, match="median"):
        stats.bootstrap_ci([1.0], "median")


# --- the command ----------------------------------------------------------------------------

def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_compare_two_experiments_writes_the_csv_and_the_plot(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", str(ROOT / "experiments/cartpole.yaml"),
                 str(ROOT / "experiments/cartpole_dqn.yaml"), "--seeds", "2", "--jobs", "2",
                 "--out", str(out), *TINY])
    assert code == 0, capsys.readouterr()
    rows = {r["experiment"]: r for r in _rows(out / "compare.csv")}
    assert set(rows) == {"cartpole", "cartpole_dqn"}
    for row in rows.values():
        assert row["finished"] == "2" and row["trials"] == "2"
        assert float(row["mean_ci_low"]) <= float(row["mean"]) <= float(row["mean_ci_high"])
        assert float(row["peak_rss_mib_max"]) > 10
    p = float(rows["cartpole"]["p_improvement_over_cartpole_dqn"])
    assert p + float(rows["cartpole_dqn"]["p_improvement_over_cartpole"]) == pytest.approx(1)
    for seed in (0, 1):  # every trial a normal run directory
        assert (out / "cartpole" / f"seed{seed}" / "summary.json").is_file()
        assert (out / "cartpole_dqn" / f"seed{seed}" / "scalars.csv").is_file()
    assert (out / "compare.png").stat().st_size > 1000
    assert "probability of improvement" in capsys.readouterr().out
    # trials run seed by seed, the experiments in turn
    assert [(r["experiment"], r["seed"]) for r in _rows(out / "trials.csv")] == [
        ("cartpole", "0"), ("cartpole_dqn", "0"), ("cartpole", "1"), ("cartpole_dqn", "1")]


@pytest.mark.parametrize(("command", "flag"), [("compare", "--seeds"), ("compare", "--jobs"),
                                               ("tune", "--trials"), ("recommend", "--steps")])
@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_counts_below_one_or_not_whole_numbers_are_refused(command, flag, value, capsys):
    target = "CartPole-v1" if command == "recommend" else str(ROOT / "experiments/cartpole.yaml")
    with pytest.raises(SystemExit) as info:
        main([command, target, flag, value])
    assert info.value.code == 2
    assert f"{flag}: expected a positive integer, got '{value}'" in capsys.readouterr().err


RAISING_ENV = """
import gymnasium as gym
from gymnasium.envs.classic_control import CartPoleEnv


class RaisingCartPole(CartPoleEnv):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    def step(self, action):
        self.calls += 1
        if self.calls >= 100:
            raise RuntimeError("the simulator lost its connection")
        return super().step(action)


gym.register("RaisingCartPole-v0", entry_point=RaisingCartPole, max_episode_steps=500)
"""


@pytest.mark.slow
def test_a_crashed_trial_is_reported_and_the_others_finish(tmp_path, capsys, monkeypatch):
    broken = yaml.safe_load((ROOT / "experiments/cartpole_dqn.yaml").read_text())
    broken["env"]["id"] = "Pendulum-v1"  # dqn on continuous actions: refused at build time
    config = tmp_path / "broken.yaml"
    config.write_text(yaml.safe_dump(broken))
    raising = yaml.safe_load((ROOT / "experiments/cartpole.yaml").read_text())
    raising["env"].update(id="RaisingCartPole-v0", imports=["raising_env"])  # raises mid-run
    (tmp_path / "raising_env.py").write_text(RAISING_ENV)
    (tmp_path / "raising.yaml").write_text(yaml.safe_dump(raising))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    out = tmp_path / "cmp"
    code = main(["compare", str(ROOT / "experiments/cartpole.yaml"), str(config),
                 str(tmp_path / "raising.yaml"), "--seeds", "1", "--jobs", "2",
                 "--out", str(out), *TINY])
    assert code == 1
    printed = capsys.readouterr().out
    assert "failed" in printed and "broken seed 0" in printed
    trials = {r["experiment"]: r for r in _rows(out / "trials.csv")}
    assert trials["cartpole"]["status"] == "finished"
    assert trials["broken"]["status"] == "crashed"
    assert "dqn" in trials["broken"]["error"].lower() or "discrete" in \
        trials["broken"]["error"].lower()
    assert trials["broken"]["run_dir"].endswith("broken/seed0")
    assert trials["raising"]["status"] == "crashed"  # its summary.json says why
    assert "the simulator lost its connection" in trials["raising"]["error"]
    assert (out / "raising" / "seed0" / "summary.json").is_file()
    rows = {r["experiment"]: r for r in _rows(out / "compare.csv")}
    assert rows["cartpole"]["finished"] == "1" and rows["broken"]["finished"] == "0"
    assert rows["broken"]["mean"] == ""
    assert (out / "compare.png").is_file()


def test_compare_refuses_a_missing_file_and_a_used_out_dir(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "no such experiment file" in capsys.readouterr().err
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("")
    assert main(["compare", str(ROOT / "experiments/cartpole.yaml"), "--out", str(used)]) == 2
    assert "not empty" in capsys.readouterr().err
