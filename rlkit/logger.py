"""Run output: TensorBoard scalars (also in ``scalars.csv``), a rich progress bar and the final
summary table.

Metric namespaces are stable: ``rollout/`` (episodes while training), ``train/`` (what the
algorithm's update returned), ``eval/`` (deterministic evaluation) and ``time/``.
``scalars.csv`` holds the same scalars in long form, ``step,tag,value``, for pandas, a
spreadsheet or :mod:`rlkit.plots` without TensorBoard.
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table


class RunLogger:
    """Writes scalars to TensorBoard and shows progress on the console.

    :param run_dir: where the event files go.
    :param total_steps: the run's budget, for the progress bar.
    :param progress: show a live progress bar (only on a terminal).
    :param purge_step: on resume, drop events written after this step by the interrupted run.
    """

    CSV_NAME = "scalars.csv"

    def __init__(
        self,
        run_dir: Path,
        total_steps: int,
        *,
        progress: bool = True,
        purge_step: int | None = None,
        console: Console | None = None,
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)
        self._csv_file = _open_scalars_csv(run_dir / self.CSV_NAME, purge_step)
        self._csv = csv.writer(self._csv_file)
        self.console = console or Console(stderr=True)
        self.total_steps = total_steps
        self.last_return: float | None = None
        self.last_eval: float | None = None
        self._progress: Progress | None = None
        if progress and self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]training"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("env steps"),
                TextColumn("return {task.fields[ret]}"),
                TextColumn("eval {task.fields[eval]}"),
                TextColumn("{task.fields[sps]} steps/s"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._task = self._progress.add_task("train", total=total_steps, ret="-", eval="-",
                                                 sps="-")
            self._progress.start()

    def text(self, tag: str, text: str) -> None:
        self.writer.add_text(tag, text, 0)

    def scalars(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
            self._csv.writerow((step, key, repr(float(value))))

    def advance(self, step: int, steps_per_second: float) -> None:
        if self._progress is None:
            return
        ret = "-" if self.last_return is None else f"{self.last_return:.1f}"
        ev = "-" if self.last_eval is None else f"{self.last_eval:.1f}"
        self._progress.update(self._task, completed=min(step, self.total_steps), ret=ret, eval=ev,
                              sps=f"{steps_per_second:,.0f}")

    def message(self, text: str) -> None:
        self.console.print(text)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.writer.flush()
        self.writer.close()
        self._csv_file.close()


def _open_scalars_csv(path: Path, purge_step: int | None) -> Any:
    """Open ``scalars.csv`` for appending. On resume, rows the interrupted run wrote after its
    checkpoint (step > ``purge_step``) are dropped first, as TensorBoard's ``purge_step``
    hides its events."""
    if purge_step is not None and path.exists():
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        kept = [row for row in rows[1:] if _row_step(row) <= purge_step]
        with path.open("w", newline="") as f:
            csv.writer(f).writerows([["step", "tag", "value"], *kept])
    new = not path.exists()
    f = path.open("a", newline="", buffering=1 << 16)  # RunLogger.close() closes it
    if new:
        csv.writer(f).writerow(("step", "tag", "value"))
    return f


def summary_table(summary: Mapping[str, Any]) -> Table:
    """The table printed at the end of a run."""
    table = Table(title="rlkit run summary", show_header=False, title_style="bold")
    table.add_column("", style="bold", no_wrap=True)
    table.add_column("", overflow="fold")  # a long run directory wraps instead of being cut
    mean, std = summary.get("final_eval_return_mean"), summary.get("final_eval_return_std")
    if mean is not None:
        episodes = summary.get("final_eval_episodes", "?")
        table.add_row("final eval return", f"{mean:.2f} ± {std:.2f}  ({episodes} episodes)")
    target = summary.get("target_return")
    if target is not None:
        reached = "yes" if summary.get("target_reached") else "no"
        table.add_row("target return", f"{target:g} (reached: {reached})")
    table.add_row("env steps", f"{summary.get('env_steps', 0):,}")
    table.add_row("wall time", f"{summary.get('wall_time_s', 0.0):.1f} s")
    table.add_row("status", str(summary.get("status", "?")))
    table.add_row("run directory", str(summary.get("run_dir", "")))
    return table


def print_summary(summary: Mapping[str, Any], console: Console | None = None, *,
                  plot: Path | None = None) -> None:
    console = console or Console(file=sys.stdout)
    console.print(summary_table(summary))
    if plot is not None:
        console.print(f"curves: {plot}", soft_wrap=True, markup=False, highlight=False)
    run_dir = summary.get("run_dir")
    if run_dir:  # whole, unwrapped lines that can be copied
        console.print(f"next: rlkit eval {run_dir}", soft_wrap=True, markup=False,
                      highlight=False)
        console.print(f"      tensorboard --logdir {run_dir}", soft_wrap=True, markup=False,
                      highlight=False)


def _row_step(row: list[str]) -> float:
    """A row's step; a row cut short by a crash (or any malformed one) counts as after the
    checkpoint, so it is dropped."""
    try:
        return int(row[0]) if len(row) == 3 else math.inf
    except ValueError:
        return math.inf

