"""Learning curves of a run as a PNG: ``curves.png`` beside its ``scalars.csv``.

``rlkit train`` calls :func:`plot_run` when a run ends. The figure shows the return of the
training episodes (``rollout/ep_return_mean``) and of the deterministic evaluations
(``eval/return_mean`` with a band of one standard deviation) against env steps, with the
evaluation target as a dashed line. matplotlib is imported only here, after training.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from rlkit.logger import RunLogger

PNG_NAME = "curves.png"


def read_scalars(run_dir: Path | str) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` from a run's ``scalars.csv`` (empty if it has none, or
    if it is not a file). A last row cut short by a crash, and any damaged row (bytes that are
    not UTF-8, a row that is not ``step,tag,value``), is left out."""
    path = Path(run_dir) / RunLogger.CSV_NAME
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = next(csv.reader([line]))
                step, tag, value = int(row[0]), row[1], float(row[2])
            except (ValueError, IndexError, StopIteration, csv.Error):
                continue  # the header, a row cut short by a crash or a damaged one
            if "\ufffd" in tag or len(row) != 3:
                continue  # a tag with bytes that are not UTF-8: damaged
            series[tag].append((step, value))
    return {tag: sorted(points) for tag, points in series.items()}


def plot_run(run_dir: Path | str) -> Path | None:
    """Write ``run_dir/curves.png``; return its path, or ``None`` when the run logged no
    returns yet (too short to have finished an episode or an evaluation)."""
    run_dir = Path(run_dir)
    series = read_scalars(run_dir)
    rollout = series.get("rollout/ep_return_mean", [])
    evals = series.get("eval/return_mean", [])
    if not rollout and not evals:
        return None
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    fig = Figure(figsize=(7.0, 4.0), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    if rollout:
        steps, values = zip(*rollout, strict=True)
        ax.plot(steps, values, color="tab:blue", alpha=0.6, linewidth=1.2,
                label="training episodes (mean return)")
    if evals:
        steps, values = zip(*evals, strict=True)
        std = dict(series.get("eval/return_std", []))
        low = [v - std.get(s, 0.0) for s, v in evals]
        high = [v + std.get(s, 0.0) for s, v in evals]
        ax.fill_between(steps, low, high, color="tab:orange", alpha=0.2, linewidth=0)
        ax.plot(steps, values, color="tab:orange", marker="o", markersize=3, linewidth=1.8,
                label="evaluation (mean ± std)")
    config = _read_config(run_dir)
    target = (config.get("eval") or {}).get("target_return")
    if target is not None:
        ax.axhline(float(target), color="gray", linestyle="--", linewidth=1,
                   label=f"target {float(target):g}")
    algorithm = (config.get("algorithm") or {}).get("name", "?")
    env_id = (config.get("env") or {}).get("id", "?")
    ax.set_title(f"{algorithm} on {env_id}  ({run_dir.name})", fontsize=10)
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    path = run_dir / PNG_NAME
    tmp = path.with_suffix(".png.tmp")
    fig.savefig(tmp, format="png")
    tmp.replace(path)
    return path


def _read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.yaml"
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text())
    return data if isinstance(data, dict) else {}
