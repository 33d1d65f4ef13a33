"""rlkit compare --backend ray: the same trials as the process backend (same table, same final
returns per seed), a crashed trial reported while the others finish, a run directory the
driver cannot see, and a clear error where Ray is not installed."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import pytest
import yaml

from rlkit.cli import main
from rlkit.workflow import compare as compare_module
from rlkit.workflow.compare import Trial, compare

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
TINY = ["eval.every=1000", "eval.episodes=3"]
BUDGET = 2000


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def ray_module(monkeypatch):
    """Ray, for compare to start itself where no test started it before (then it must shut it
    down again); the trials' env modules (tests/ray_support.py) on the workers' path."""
    ray = pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    was_running = ray.is_initialized()
    yield ray
    assert ray.is_initialized() == was_running  # compare shuts down only the Ray it started


@pytest.mark.slow
def test_ray_trials_match_the_process_backend(ray_module, tmp_path):
    configs = [ROOT / "experiments/cartpole.yaml", ROOT / "experiments/cartpole_dqn.yaml"]
    kwargs = {"seeds": 2, "jobs": 2, "budget": BUDGET, "overrides": TINY}
    done: list[Trial] = []
    results, trials, improvement = compare(configs, out=tmp_path / "ray", backend="ray",
                                           on_done=done.append, **kwargs)
    _, local_trials, _ = compare(configs, out=tmp_path / "local", **kwargs)

    assert len(done) == 4 and all(t.ok for t in trials), [t.error for t in trials]
    assert [r.finished for r in results] == [2, 2]
    assert set(improvement) == {("cartpole", "cartpole_dqn"), ("cartpole_dqn", "cartpole")}
    returns = {(t.experiment, t.seed): t.final_return for t in trials}
    assert returns == {(t.experiment, t.seed): t.final_return for t in local_trials}
    for t in trials:  # the same run directories and log files, where the driver said
        assert t.run_dir == tmp_path / "ray" / t.experiment / f"seed{t.seed}"
        assert (t.run_dir / "summary.json").is_file() and t.run_dir.with_suffix(".log").is_file()
        assert t.peak_rss_mib is not None and t.peak_rss_mib > 10 and t.curve
    for name in ("compare.csv", "trials.csv"):
        ray_rows, local_rows = _rows(tmp_path / "ray" / name), _rows(tmp_path / "local" / name)
        assert list(ray_rows[0]) == list(local_rows[0])  # the same columns
    by_trial = {(r["experiment"], r["seed"]): r for r in _rows(tmp_path / "local/trials.csv")}
    for row in _rows(tmp_path / "ray" / "trials.csv"):
        local = by_trial[(row["experiment"], row["seed"])]
        assert row["final_eval_return_mean"] == local["final_eval_return_mean"]


@pytest.mark.slow
def test_a_crashed_ray_trial_is_reported_and_the_others_finish(ray_module, tmp_path, capsys):
    broken = yaml.safe_load((ROOT / "experiments/cartpole_dqn.yaml").read_text())
    broken["env"]["id"] = "Pendulum-v1"  # dqn on continuous actions: refused at build time
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    raising = yaml.safe_load((ROOT / "experiments/cartpole.yaml").read_text())
    # env 1 (seed 1) of tests/ray_support.py's env raises in its first step
    raising["env"].update(id="rlkit-test/RayFaulty-v0", imports=["ray_support"], num_envs=2)
    (tmp_path / "raising.yaml").write_text(yaml.safe_dump(raising))
    out = tmp_path / "cmp"
    code = main(["compare", str(ROOT / "experiments/cartpole.yaml"), str(tmp_path / "broken.yaml"),
                 str(tmp_path / "raising.yaml"), "--seeds", "1", "--jobs", "2", "--backend", "ray",
                 "--out", str(out), "--budget", str(BUDGET), *(f"--set={s}" for s in TINY)])
    assert code == 1
    printed = capsys.readouterr().out
    assert "failed" in printed and "broken seed 0" in printed and "raising seed 0" in printed
    trials = {r["experiment"]: r for r in _rows(out / "trials.csv")}
    assert trials["cartpole"]["status"] == "finished"
    assert trials["broken"]["status"] == "crashed"
    assert "discrete" in trials["broken"]["error"].lower()
    assert trials["broken"]["run_dir"].endswith("broken/seed0")
    assert trials["raising"]["status"] == "crashed"  # its summary.json says why
    assert "the physics exploded" in trials["raising"]["error"]
    rows = {r["experiment"]: r for r in _rows(out / "compare.csv")}
    assert rows["cartpole"]["finished"] == "1" and rows["broken"]["finished"] == "0"


def test_backend_ray_without_ray_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    out = tmp_path / "cmp"
    assert main(["compare", str(ROOT / "experiments/cartpole.yaml"), "--backend", "ray",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--backend ray needs Ray" in err and 'pip install "rlkit[ray]"' in err
    assert not out.exists()
    with pytest.raises(Exception, match=r'pip install "rlkit\[ray\]"'):
        compare([ROOT / "experiments/cartpole.yaml"], seeds=1, out=out, backend="ray")


def test_ray_address_needs_the_ray_backend(tmp_path, capsys):
    assert main(["compare", str(ROOT / "experiments/cartpole.yaml"), "--ray-address", "auto",
                 "--out", str(tmp_path / "cmp")]) == 2
    assert "--ray-address is for --backend ray" in capsys.readouterr().err


def test_a_run_dir_the_driver_cannot_see_names_the_shared_filesystem(tmp_path):
    """The worker wrote summary.json on its node; on the driver's machine the file is not
    there (no shared filesystem): the trial fails and says what --out needs."""
    trial = Trial(experiment="a", config=Path("a.yaml"), seed=0, run_dir=tmp_path / "a/seed0")
    result = Trial(experiment="a", config=Path("/abs/a.yaml"), seed=0,
                   run_dir=Path("/scratch/a/seed0"), returncode=0, status="finished",
                   final_return=200.0, peak_rss_mib=300.0)
    compare_module._take_results(trial, result, "10.0.0.7", summary_written=True)
    assert not trial.ok and trial.status == "not visible"
    assert "10.0.0.7" in trial.error and "filesystem that every node sees" in trial.error
    assert trial.peak_rss_mib == 300.0 and trial.run_dir == tmp_path / "a/seed0"


def test_a_ray_task_that_raises_is_a_crashed_trial(tmp_path):
    class TaskError(Exception):
        cause = OSError("No space left on device")

    class FakeRay:
        def get(self, ref):
            raise TaskError("traceback...")

    trial = Trial(experiment="a", config=Path("a.yaml"), seed=1, run_dir=tmp_path / "a/seed1")
    compare_module._settle(FakeRay(), trial, object())
    assert trial.status == "crashed" and not trial.ok
    assert trial.error == "its Ray task failed: OSError: No space left on device"
