"""scalars.csv mirrors what goes to TensorBoard; curves.png draws it."""

from __future__ import annotations

from pathlib import Path

import yaml

from rlkit.logger import RunLogger
from rlkit.plots import plot_run, read_scalars


def log(run_dir: Path, rows: dict[int, dict[str, float]], purge_step: int | None = None) -> None:
    logger = RunLogger(run_dir, 1000, progress=False, purge_step=purge_step)
    for step, metrics in rows.items():
        logger.scalars(metrics, step)
    logger.close()


def test_scalars_csv_mirrors_the_logged_scalars(tmp_path):
    log(tmp_path, {10: {"rollout/ep_return_mean": 1.5, "train/loss": 2}, 20: {"train/loss": 0.25}})
    assert read_scalars(tmp_path) == {"rollout/ep_return_mean": [(10, 1.5)],
                                      "train/loss": [(10, 2.0), (20, 0.25)]}
    assert (tmp_path / "scalars.csv").read_text().splitlines()[0] == "step,tag,value"


def test_resume_drops_the_rows_written_after_the_checkpoint(tmp_path):
    log(tmp_path, {10: {"a": 1.0}, 20: {"a": 2.0}, 30: {"a": 3.0}})
    log(tmp_path, {25: {"a": 2.5}}, purge_step=20)  # resumed from a checkpoint at step 20
    assert read_scalars(tmp_path) == {"a": [(10, 1.0), (20, 2.0), (25, 2.5)]}


def test_a_row_cut_short_by_a_crash_is_dropped_on_resume(tmp_path):
    log(tmp_path, {10: {"a": 1.0}, 20: {"a": 2.0}})
    with (tmp_path / "scalars.csv").open("a") as f:
        f.write("30,a")  # the process died mid-row
    assert read_scalars(tmp_path) == {"a": [(10, 1.0), (20, 2.0)]}  # readable as it is
    log(tmp_path, {25: {"a": 2.5}}, purge_step=20)
    assert read_scalars(tmp_path) == {"a": [(10, 1.0), (20, 2.0), (25, 2.5)]}


def test_a_run_without_returns_has_no_plot(tmp_path):
    log(tmp_path, {10: {"train/loss": 1.0}})
    assert plot_run(tmp_path) is None
    assert not (tmp_path / "curves.png").exists()
    assert plot_run(tmp_path / "missing") is None


def test_curves_png_is_written_atomically_with_the_target(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({
        "algorithm": {"name": "ppo"}, "env": {"id": "CartPole-v1"},
        "eval": {"target_return": 475}}))
    log(tmp_path, {1000 * i: {"rollout/ep_return_mean": 20.0 * i, "eval/return_mean": 40.0 * i,
                              "eval/return_std": 5.0} for i in range(1, 8)})
    path = plot_run(tmp_path)
    assert path == tmp_path / "curves.png"
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    assert not list(tmp_path.glob("*.tmp"))
