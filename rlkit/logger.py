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
import os
import sys
import time
import warnings
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

from rlkit.errors import RunError

_CSV_HEADER = ("step", "tag", "value")


class RunLogger:
    """Writes scalars to TensorBoard and shows progress on the console.

    :param run_dir: where the event files go.
    :param total_steps: the run's budget, for the progress bar.
    :param progress: show progress: a live bar on a terminal, otherwise (a log file, CI) a
        compact line every tenth of the budget, every evaluation and at least every
        :attr:`LINE_SECONDS`.
    :param purge_step: on resume, drop events written after this step by the interrupted run
        (progress starts there).
    :param console: where progress goes (default: stderr).
    """

    CSV_NAME = "scalars.csv"
    LINE_SECONDS = 30.0
    """Off a terminal, a progress line at least this often (besides every tenth of the
    budget and every evaluation)."""

    def __init__(
        self,
        run_dir: Path,
        total_steps: int,
        *,
        progress: bool = True,
        purge_step: int | None = None,
        console: Console | None = None,
    ) -> None:
        from rlkit.events import EventWriter

        self.writer = EventWriter(run_dir, purge_step=purge_step)
        self._csv_file = _open_scalars_csv(run_dir / self.CSV_NAME, purge_step)
        self._csv = csv.writer(self._csv_file)
        self.console = console or Console(stderr=True)
        self.total_steps = total_steps
        self.last_return: float | None = None
        self.last_eval: float | None = None
        self._step = purge_step or 0
        self._sps = 0.0
        self._started = time.monotonic()
        self._progress: Progress | None = None
        # Not a terminal (a log file, nohup, CI): a progress line now and then instead.
        self._lines = progress and not self.console.is_terminal
        self._line_every = max(total_steps // 10, 1)
        self._next_line = (self._step // self._line_every + 1) * self._line_every
        self._last_line_time = self._started
        self._last_line_step: int | None = None
        self._last_line_eval: float | None = None
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
                                                 sps="-", completed=min(self._step, total_steps))
            self._progress.start()

    def text(self, tag: str, text: str) -> None:
        self.writer.add_text(tag, text, 0)

    def scalars(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
            self._csv.writerow((step, key, repr(float(value))))

    def advance(self, step: int, steps_per_second: float) -> None:
        """Training reached env step ``step``: move the bar, or print a progress line when
        another tenth of the budget is done or :attr:`LINE_SECONDS` have passed."""
        self._step, self._sps = step, steps_per_second
        if self._progress is not None:
            self._refresh()
        elif self._lines and step < self.total_steps and (  # the last line comes with finish()
                step >= self._next_line
                or time.monotonic() - self._last_line_time >= self.LINE_SECONDS):
            self._print_line()

    def evaluation(self, step: int, mean: float) -> None:
        """An evaluation at env step ``step`` returned ``mean``: shown at once (a line of its
        own when not on a terminal)."""
        self._step, self.last_eval = step, mean
        if self._progress is not None:
            self._refresh()
        elif self._lines:
            self.console.print(f"evaluation at {step:,} env steps: mean return {mean:.2f}",
                               markup=False, highlight=False, soft_wrap=True)

    def finish(self, step: int) -> None:
        """The run stops at env step ``step``: the bar's last frame (or the last line) shows it
        and the final evaluation."""
        self._step = step
        if self._progress is not None:
            self._refresh()
        elif self._lines and (self._last_line_step, self._last_line_eval) != (step,
                                                                             self.last_eval):
            self._print_line()

    def _refresh(self) -> None:
        assert self._progress is not None
        ret = "-" if self.last_return is None else f"{self.last_return:.1f}"
        ev = "-" if self.last_eval is None else f"{self.last_eval:.1f}"
        self._progress.update(self._task, completed=min(self._step, self.total_steps), ret=ret,
                              eval=ev, sps=f"{self._sps:,.0f}")

    def _print_line(self) -> None:
        step, total = self._step, self.total_steps
        now = time.monotonic()
        parts = [f"training {step:,}/{total:,} env steps ({100 * step / total:.0f}%)"]
        if self.last_return is not None:
            parts.append(f"return {self.last_return:.1f}")
        if self.last_eval is not None:
            parts.append(f"eval {self.last_eval:.1f}")
        if self._sps:
            parts.append(f"{self._sps:,.0f} steps/s")
        elapsed = int(now - self._started)
        parts.append(f"{elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}")
        self.console.print("  ".join(parts), markup=False, highlight=False, soft_wrap=True)
        self._last_line_time, self._last_line_step = now, step
        self._last_line_eval = self.last_eval
        self._next_line = (step // self._line_every + 1) * self._line_every

    def flush(self) -> None:
        """Make every scalar logged so far durable: ``scalars.csv`` flushed and fsync'ed, the
        event file flushed too. The trainer calls it before each checkpoint is written, so
        the rows up to a checkpoint's step exist on disk whenever the checkpoint does."""
        if self._csv_file.closed:
            return
        self._csv_file.flush()
        os.fsync(self._csv_file.fileno())
        self.writer.flush(fsync=True)

    def message(self, text: str) -> None:
        self.console.print(text)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.writer.flush()
        self.writer.close()
        self._csv_file.close()


def check_scalars_csv(path: Path) -> None:
    """Refuse a ``scalars.csv`` that cannot be the run's table (a directory, another kind of
    file, one that cannot be read and written), naming it and what to do; an absent one is
    fine (it is created)."""
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise RunError(f"{path}: is {kind}, not the run's table of scalars; move it out of the "
                       f"way (rlkit then starts a new {path.name}) and run again.")
    if not os.access(path, os.R_OK | os.W_OK):
        raise RunError(f"{path}: cannot be read and written by this user; fix its permissions "
                       f"and run again.")


def _open_scalars_csv(path: Path, purge_step: int | None) -> Any:
    """Open ``scalars.csv`` for appending. On resume, rows the interrupted run wrote after its
    checkpoint (step > ``purge_step``) are dropped first, as TensorBoard's ``purge_step``
    hides its events (see :func:`_purge_scalars_csv`)."""
    check_scalars_csv(path)
    if purge_step is not None and path.exists():
        _purge_scalars_csv(path, purge_step)
    new = not path.exists()
    # RunLogger.flush() makes the rows durable at each checkpoint; RunLogger.close() closes it
    f = path.open("a", newline="", encoding="utf-8", buffering=1 << 16)
    if new:
        csv.writer(f).writerow(_CSV_HEADER)
    return f


def _purge_scalars_csv(path: Path, purge_step: int) -> None:
    """Keep the rows up to ``purge_step``, rewriting the file atomically. A last row without
    its line end (cut short by a crash) is dropped. A damaged line elsewhere (bytes that are
    not UTF-8, not a ``step,tag,value`` row) loses nothing: the file is moved aside unchanged,
    with a warning, and its readable rows carry on in the new ``scalars.csv``."""
    lines = path.read_bytes().split(b"\n")
    kept: list[list[str]] = []
    damage: tuple[int, str] | None = None
    for number, raw in enumerate(lines[:-1], start=1):  # lines[-1]: after the last line end
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            damage = damage or (number, "bytes that are not UTF-8")
            continue
        try:
            row = next(csv.reader([text]), [])
        except csv.Error:  # a NUL byte on Python 3.10
            row = []
        if number == 1 and tuple(row) == _CSV_HEADER:
            continue
        step = _row_step(row)
        if step == math.inf:
            damage = damage or (number, "no step,tag,value row")
        elif step <= purge_step:
            kept.append(row)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([_CSV_HEADER, *kept])
        f.flush()
        os.fsync(f.fileno())
    if damage is not None:
        aside = _free_name(path.with_name(path.name + ".damaged"))
        os.replace(path, aside)
        warnings.warn(f"{path}: line {damage[0]} holds {damage[1]}; the file was moved to "
                      f"{aside.name} unchanged, and its {len(kept)} readable rows up to env "
                      f"step {purge_step:,} carry on in a new {path.name}.", RuntimeWarning,
                      stacklevel=3)
    os.replace(tmp, path)


def _free_name(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists() or candidate.is_symlink():
        candidate, n = path.with_name(f"{path.name}-{n}"), n + 1
    return candidate


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
    if summary.get("fine_tuned_from"):
        table.add_row("fine-tuned from", str(summary["fine_tuned_from"]))
    for event in summary.get("rollbacks") or []:
        did = ("restored the policy of" if event.get("kind", "restore") == "restore" else
               "the environment changed; stopped comparing with")
        table.add_row("rollback", f"at env step {event['step']:,}: return "
                      f"{event['eval_return']:.1f}, {did} env step {event['best_step']:,} "
                      f"({event['best_return']:.1f})")
    table.add_row("status", str(summary.get("status", "?")))
    table.add_row("run directory", str(summary.get("run_dir", "")))
    return table


def print_summary(summary: Mapping[str, Any], console: Console | None = None, *,
                  plot: Path | None = None, trust_config: bool = False) -> None:
    """The summary table, then the commands that go on from the run (with ``--trust-config``
    where loading the run needs it)."""
    console = console or Console(file=sys.stdout)
    console.print(summary_table(summary))
    if plot is not None:
        console.print(f"curves: {plot}", soft_wrap=True, markup=False, highlight=False)
    run_dir = summary.get("run_dir")
    if run_dir:  # whole, unwrapped lines that can be copied
        trust = " --trust-config" if trust_config else ""
        console.print(f"next: rlkit eval {run_dir}{trust}", soft_wrap=True, markup=False,
                      highlight=False)
        console.print(f"      tensorboard --logdir {run_dir}", soft_wrap=True, markup=False,
                      highlight=False)


def _row_step(row: list[str]) -> float:
    """A row's step, or infinity for anything but a ``step,tag,value`` row with an integer
    step and a number as value (a row cut short, a damaged one): such a row counts as after
    the checkpoint."""
    if len(row) != 3:
        return math.inf
    try:
        step = int(row[0])
        float(row[2])
    except ValueError:
        return math.inf
    return step
