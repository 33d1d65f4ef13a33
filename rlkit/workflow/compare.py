"""The ``rlkit compare`` command: run experiments over seeds and compare them with statistics.

``rlkit compare a.yaml b.yaml --seeds 5 --jobs 2`` trains every experiment with ``train.seed``
0..N-1, each trial an ordinary ``rlkit train`` run directory (``OUT/<name>/seed<S>``) in its
own process, and reports per experiment: the mean and IQM of the final evaluation return with
95% stratified-bootstrap confidence intervals (:mod:`rlkit.workflow.stats`), the probability
of improvement between every pair, env steps and wall time to ``eval.target_return`` and the
peak memory (resident set size) of the trials. It writes ``compare.csv``, ``trials.csv`` and
``compare.png`` (evaluation return against env steps, mean with a 95% bootstrap band).

A trial that crashes is reported with its run directory and its error line; the others still
finish and the statistics use the runs that finished (the table says how many).

``--backend ray`` runs each trial as a Ray task (one CPU, no retries) on this machine or a Ray
cluster; the task runs the same ``rlkit train`` subprocess as the default ``processes``
backend, so run directories, logs, peak memory and crash reports are the same. On a cluster of
several machines ``--out`` must be on a filesystem every node sees: the workers write the run
directories, and the driver reads them back.

Nothing heavy (torch, matplotlib) is imported until the command runs, and torch never in this
process: the trials train in subprocesses.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rlkit.workflow import positive_int

__all__ = ["BACKENDS", "ExperimentResult", "Trial", "compare", "run_trial", "summarise"]

BACKENDS = ("processes", "ray")
"""Where the trials run: subprocesses of this process, or Ray tasks (each starting the same
subprocess) on this machine or a Ray cluster."""

FINISHED = ("finished", "target_reached")
"""The ``summary.json`` statuses of a trial that ran to its end."""
CSV_NAME = "compare.csv"
TRIALS_CSV_NAME = "trials.csv"
PNG_NAME = "compare.png"

COMPARE_HELP = """\
Train every experiment over seeds (train.seed = 0..N-1), each trial a normal run directory
OUT/<name>/seed<S> trained in its own process, then report per experiment the mean and IQM of
the final evaluation return with 95% bootstrap confidence intervals, the probability of
improvement between each pair, env steps and wall time to eval.target_return, and peak memory.
Writes OUT/compare.csv, OUT/trials.csv and OUT/compare.png. A crashed trial is reported and
the others finish. See docs/guide.md ("Comparing experiments").

--backend ray runs each trial as a Ray task (1 CPU) on a local Ray or, with --ray-address, on
a Ray cluster (pip install "rlkit[ray]"). On a cluster of several machines OUT must be on a
filesystem that every node sees (NFS or similar): the nodes write the run directories there.

examples:
  rlkit compare experiments/cartpole.yaml experiments/cartpole_dqn.yaml --seeds 5 --jobs 2
  rlkit compare a.yaml b.yaml --seeds 3 --budget 20000 --out runs/ab --set eval.every=2000
  rlkit compare a.yaml b.yaml --seeds 10 --backend ray --ray-address auto --out /shared/ab
"""


@dataclass(kw_only=True)
class Trial:
    """One run of one experiment with one seed, and what became of it."""

    experiment: str
    config: Path
    seed: int
    run_dir: Path
    returncode: int | None = None
    status: str = "not run"
    error: str | None = None
    final_return: float | None = None
    steps_to_target: int | None = None
    wall_time_to_target_s: float | None = None
    wall_time_s: float | None = None
    peak_rss_mib: float | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)
    """``(env step, eval/return_mean)`` from the run's ``scalars.csv``."""

    @property
    def ok(self) -> bool:
        """Whether the trial ran to its end with a final evaluation."""
        return self.status in FINISHED and self.final_return is not None


@dataclass(kw_only=True)
class ExperimentResult:
    """The statistics of one experiment over the trials that finished."""

    name: str
    config: str
    trials: int
    finished: int
    mean: float | None
    mean_ci: tuple[float, float] | None
    iqm: float | None
    iqm_ci: tuple[float, float] | None
    target_return: float | None
    reached: int
    steps_to_target: float | None
    wall_time_to_target_s: float | None
    wall_time_s: float | None
    peak_rss_mib: float | None


def _names(configs: list[Path]) -> list[str]:
    """A distinct name per experiment file: its stem, numbered where stems repeat."""
    names: list[str] = []
    for path in configs:
        name, k = path.stem, 2
        while name in names:
            name, k = f"{path.stem}-{k}", k + 1
        names.append(name)
    return names


def _peak_rss_mib(usage: Any) -> float:
    """``ru_maxrss`` in MiB (kilobytes on Linux, bytes on macOS)."""
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return float(usage.ru_maxrss) / scale


def run_trial(trial: Trial, *, budget: int | None = None,
              overrides: list[str] | tuple[str, ...] = ()) -> Trial:
    """Train ``trial`` with ``rlkit train`` in a subprocess (its output in
    ``<run_dir>.log``), measure the subprocess's peak RSS, and read back its results."""
    command = [sys.executable, "-m", "rlkit.cli", "train", str(trial.config),
               "--seed", str(trial.seed), "--run-dir", str(trial.run_dir), "--no-progress"]
    if budget is not None:
        command += ["--set", f"train.total_steps={budget}"]
    for override in overrides:
        command += ["--set", override]
    log = trial.run_dir.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = trial.returncode = os.waitstatus_to_exitcode(status)
    trial.peak_rss_mib = _peak_rss_mib(usage)
    _read_results(trial, log)
    return trial


def _read_results(trial: Trial, log: Path) -> None:
    """Fill in ``trial`` from its ``summary.json`` and ``scalars.csv`` (or, with no summary,
    the last line of its log)."""
    from rlkit.plots import read_scalars

    summary: dict[str, Any] | None = None
    try:
        summary = json.loads((trial.run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        summary = None
    if not isinstance(summary, dict):
        trial.status = "crashed"
        trial.error = _last_line(log) or f"exit status {trial.returncode}, no summary.json"
        return
    trial.status = str(summary.get("status"))
    trial.wall_time_s = summary.get("wall_time_s")
    final = summary.get("final_eval_return_mean")
    trial.final_return = None if final is None else float(final)
    if trial.status not in FINISHED:
        trial.error = summary.get("error") or _last_line(log) or f"status {trial.status}"
    elif trial.final_return is None:
        trial.error = "no evaluation was run (lower eval.every below the budget)"
    series = read_scalars(trial.run_dir)
    trial.curve = series.get("eval/return_mean", [])
    target = summary.get("target_return")
    if target is None:
        return
    step = next((s for s, v in trial.curve if v >= target), None)
    if step is None and summary.get("target_reached"):
        step = summary.get("env_steps")
    if step is None:
        return
    trial.steps_to_target = int(step)
    if summary.get("target_reached") and summary.get("env_steps") == step:
        trial.wall_time_to_target_s = trial.wall_time_s  # the run stopped at its target
    else:
        elapsed = series.get("time/elapsed_s", [])
        before = [t for s, t in elapsed if s <= step]
        after = [t for s, t in elapsed if s >= step]
        if after:  # the first elapsed time logged at or after that evaluation
            trial.wall_time_to_target_s = after[0]
        elif before:
            trial.wall_time_to_target_s = before[-1]


def _last_line(log: Path) -> str | None:
    """The last line of a trial's output that says what went wrong (or its last line)."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()
                 if line.strip()]
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith("rlkit: error:") or "Error" in line.split(":")[0]:
            return line
    return lines[-1] if lines else None


def _mean_or_none(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(name: str, config: Path, trials: list[Trial], *, seed: int = 0
              ) -> ExperimentResult:
    """The statistics of one experiment's trials (those that finished)."""
    from rlkit.workflow import stats

    done = [t for t in trials if t.ok]
    scores = [float(t.final_return) for t in done if t.final_return is not None]
    reached = [t for t in done if t.steps_to_target is not None]
    walls = [t.wall_time_to_target_s for t in reached if t.wall_time_to_target_s is not None]
    rss = [t.peak_rss_mib for t in trials if t.peak_rss_mib is not None]
    target = _target_return(trials)
    return ExperimentResult(
        name=name, config=str(config), trials=len(trials), finished=len(done),
        mean=stats.mean(scores) if scores else None,
        mean_ci=stats.bootstrap_ci(scores, "mean", seed=seed) if scores else None,
        iqm=stats.iqm(scores) if scores else None,
        iqm_ci=stats.bootstrap_ci(scores, "iqm", seed=seed) if scores else None,
        target_return=target, reached=len(reached),
        steps_to_target=_mean_or_none([float(t.steps_to_target) for t in reached
                                       if t.steps_to_target is not None]),
        wall_time_to_target_s=_mean_or_none(walls),
        wall_time_s=_mean_or_none([t.wall_time_s for t in done if t.wall_time_s is not None]),
        peak_rss_mib=max(rss) if rss else None)


def _target_return(trials: list[Trial]) -> float | None:
    for trial in trials:
        try:
            value = json.loads((trial.run_dir / "summary.json").read_text()).get("target_return")
        except (OSError, ValueError, AttributeError):
            continue
        if value is not None:
            return float(value)
    return None


def compare(configs: list[Path], *, seeds: int, out: Path, jobs: int | None = None,
            budget: int | None = None, overrides: list[str] | tuple[str, ...] = (),
            on_done: Any = None, backend: str = "processes", ray_address: str | None = None
            ) -> tuple[list[ExperimentResult], list[Trial],
                       dict[tuple[str, str], tuple[float, float, float]]]:
    """Run every experiment over ``seeds`` seeds, ``jobs`` trials at a time, and compute the
    statistics; write ``compare.csv``, ``trials.csv`` and ``compare.png`` in ``out``.

    :param jobs: trials in flight at once (default: 1 with ``processes``; the cluster's CPUs
        with ``ray``).
    :param on_done: called with each :class:`Trial` as it ends (progress reporting).
    :param backend: ``"processes"`` (subprocesses of this process) or ``"ray"`` (one Ray task
        per trial, running the same subprocess; needs the ``ray`` extra). With a Ray cluster of
        several machines, ``out`` must be on a filesystem that every node sees.
    :param ray_address: the Ray cluster to join (``"auto"``: the one running on this machine;
        default ``RAY_ADDRESS``, else a local Ray is started, with ``jobs`` CPUs when given).
        A program that called ``ray.init`` before keeps its own connection.
    :returns: the per-experiment results, every trial, and the probability of improvement
        ``{(x, y): (P(X > Y), ci_low, ci_high)}`` for each ordered pair that has finished runs.
    """
    from rlkit.workflow import stats

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    ray = _import_ray() if backend == "ray" else None
    names = _names(configs)
    # seed by seed, the experiments in turn: they meet the same conditions (other load on the
    # machine) as the comparison goes on, and one cut short has the same seeds of each
    trials = [Trial(experiment=name, config=config, seed=s, run_dir=out / name / f"seed{s}")
              for s in range(seeds) for name, config in zip(names, configs)]
    out.mkdir(parents=True, exist_ok=True)
    if ray is not None:
        _run_on_ray(ray, trials, jobs=jobs, budget=budget, overrides=overrides,
                    address=ray_address, on_done=on_done)
    else:
        with ThreadPoolExecutor(max_workers=jobs or 1) as pool:
            futures = [pool.submit(run_trial, t, budget=budget, overrides=overrides)
                       for t in trials]
            for future in futures:
                trial = future.result()
                if on_done is not None:
                    on_done(trial)
    results = [summarise(name, config, [t for t in trials if t.experiment == name])
               for name, config in zip(names, configs)]
    scores = {name: [float(t.final_return) for t in trials
                     if t.experiment == name and t.ok and t.final_return is not None]
              for name in names}
    improvement: dict[tuple[str, str], tuple[float, float, float]] = {}
    for x in names:
        for y in names:
            if x != y and scores[x] and scores[y]:
                low, high = stats.probability_of_improvement_ci(scores[x], scores[y])
                improvement[(x, y)] = (stats.probability_of_improvement(scores[x], scores[y]),
                                       low, high)
    _write_csv(out / CSV_NAME, results, improvement)
    _write_trials_csv(out / TRIALS_CSV_NAME, trials)
    plot_curves(out / PNG_NAME, names, trials)
    return results, trials, improvement


# --- the Ray backend -------------------------------------------------------------------------

RAY_MISSING = ('--backend ray needs Ray, which is not installed: pip install "rlkit[ray]" '
               '(pip install -e ".[ray]" in a checkout of rlkit), or use --backend processes.')
SHARED_FILESYSTEM = ("with --backend ray on a cluster of several machines, --out must be on a "
                     "filesystem that every node sees (NFS or similar), at the same path")
RAY_WAIT_S = 0.5
"""How long the driver waits for a task at a time (Ctrl-C is noticed between waits)."""
_IDENTITY = ("experiment", "config", "seed", "run_dir")
"""The fields of a :class:`Trial` the driver sets; a Ray task fills in all the others."""


def _import_ray() -> Any:
    """Ray, imported only for ``--backend ray``; a clear error where it is not installed."""
    from rlkit.validation import ConfigError

    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


def _ray_trial(trial: Trial, budget: int | None,
               overrides: tuple[str, ...]) -> tuple[Trial, str, bool]:
    """The Ray task: :func:`run_trial` on a worker. Returns the trial, the node it ran on and
    whether the run's ``summary.json`` exists there."""
    import ray

    run_trial(trial, budget=budget, overrides=overrides)
    return trial, ray.util.get_node_ip_address(), (trial.run_dir / "summary.json").is_file()


def _run_on_ray(ray: Any, trials: list[Trial], *, jobs: int | None, budget: int | None,
                overrides: list[str] | tuple[str, ...], address: str | None,
                on_done: Callable[[Trial], Any] | None) -> None:
    """Run ``trials`` as Ray tasks, at most ``jobs`` in flight (default: the cluster's CPUs),
    filling each in as it ends. Starts Ray unless this process is connected already, and then
    shuts it down at the end; Ctrl-C cancels the tasks still running."""
    from rlkit.validation import ConfigError

    started = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        local = {} if address is not None or jobs is None else {"num_cpus": jobs}
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR", **local)
        except Exception as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise ConfigError(f"--backend ray: cannot start or connect to {where}: "
                              f"{type(exc).__name__}: {exc}") from None
        started = True
    try:
        cap = jobs or max(1, int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(num_cpus=1, max_retries=0)(_ray_trial)
        queue = list(trials)
        running: dict[Any, Trial] = {}
        try:
            while queue or running:
                while queue and len(running) < cap:
                    trial = queue.pop(0)
                    absolute = replace(trial, config=trial.config.absolute(),
                                       run_dir=trial.run_dir.absolute())
                    running[task.remote(absolute, budget, tuple(overrides))] = trial
                ready, _ = ray.wait(list(running), num_returns=1, timeout=RAY_WAIT_S)
                for ref in ready:
                    trial = running.pop(ref)
                    _settle(ray, trial, ref)
                    if on_done is not None:
                        on_done(trial)
        except KeyboardInterrupt:
            for ref, trial in running.items():
                with contextlib.suppress(Exception):  # it ended meanwhile
                    ray.cancel(ref, force=True)
                trial.status, trial.error = "cancelled", "cancelled (Ctrl-C)"
            raise
    finally:
        if started:
            ray.shutdown()


def _settle(ray: Any, trial: Trial, ref: Any) -> None:
    """Fill in ``trial`` from its finished Ray task: a task that raised (or whose worker died)
    is a crashed trial; a run whose ``summary.json`` its node wrote but this machine cannot see
    is a failed trial that names the shared-filesystem requirement."""
    try:
        result, node, summary_written = ray.get(ref)
    except Exception as exc:
        trial.status = "crashed"
        trial.error = f"its Ray task failed: {_ray_failure(exc)}"
        return
    _take_results(trial, result, node, summary_written)


def _take_results(trial: Trial, result: Trial, node: str, summary_written: bool) -> None:
    for name in (f.name for f in fields(Trial) if f.name not in _IDENTITY):
        setattr(trial, name, getattr(result, name))
    if summary_written and not (trial.run_dir / "summary.json").is_file():
        trial.status = "not visible"
        trial.error = (f"the trial ran on the Ray node {node}, which wrote "
                       f"{result.run_dir / 'summary.json'}, but that file is not visible "
                       f"here: {SHARED_FILESYSTEM}")


def _ray_failure(exc: BaseException) -> str:
    """A Ray error as one line: a worker that died, or the task's own exception."""
    name = type(exc).__name__
    if any(word in name for word in ("WorkerCrashed", "NodeDied", "OutOfMemory",
                                     "TaskCancelled")):
        return f"{name} (its Ray worker died: killed, out of memory, or its node was lost)"
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _fmt(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def _write_csv(path: Path, results: list[ExperimentResult],
               improvement: dict[tuple[str, str], tuple[float, float, float]]) -> None:
    names = [r.name for r in results]
    header = ["experiment", "config", "trials", "finished", "mean", "mean_ci_low",
              "mean_ci_high", "iqm", "iqm_ci_low", "iqm_ci_high", "target_return", "reached",
              "steps_to_target_mean", "wall_time_to_target_s_mean", "wall_time_s_mean",
              "peak_rss_mib_max"]
    header += [f"p_improvement_over_{y}" for y in names]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for r in results:
            row: list[Any] = [r.name, r.config, r.trials, r.finished, r.mean,
                              *(r.mean_ci or (None, None)), r.iqm, *(r.iqm_ci or (None, None)),
                              r.target_return, r.reached, r.steps_to_target,
                              r.wall_time_to_target_s, r.wall_time_s, r.peak_rss_mib]
            row += [improvement.get((r.name, y), (None,))[0] for y in names]
            writer.writerow(["" if v is None else v for v in row])


def _write_trials_csv(path: Path, trials: list[Trial]) -> None:
    header = ["experiment", "seed", "status", "final_eval_return_mean", "steps_to_target",
              "wall_time_to_target_s", "wall_time_s", "peak_rss_mib", "run_dir", "error"]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for t in trials:
            row = [t.experiment, t.seed, t.status, t.final_return, t.steps_to_target,
                   t.wall_time_to_target_s, t.wall_time_s, t.peak_rss_mib, t.run_dir, t.error]
            writer.writerow(["" if v is None else v for v in row])


def plot_curves(path: Path, names: list[str], trials: list[Trial]) -> Path:
    """Evaluation return against env steps per experiment: the mean over its runs with a 95%
    bootstrap band, at each step where runs evaluated."""
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    from rlkit.workflow import stats

    fig = Figure(figsize=(7.0, 4.0), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    drawn = False
    for name in names:
        curves = [dict(t.curve) for t in trials if t.experiment == name and t.curve]
        if not curves:
            continue
        steps = sorted({s for c in curves for s in c})
        grid = np.array([[c.get(s, math.nan) for s in steps] for c in curves])
        centre, low, high = stats.bootstrap_mean_band(grid)
        line = ax.plot(steps, centre, linewidth=1.6, label=f"{name} ({len(curves)} runs)")
        ax.fill_between(steps, low, high, color=line[0].get_color(), alpha=0.2, linewidth=0)
        drawn = True
    ax.set_xlabel("env steps")
    ax.set_ylabel("evaluation return")
    ax.set_title("mean evaluation return, 95% bootstrap band")
    if drawn:
        ax.legend(loc="best", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no evaluations logged", ha="center", va="center",
                transform=ax.transAxes)
    ax.grid(alpha=0.3)
    fig.savefig(path)
    return path


# --- the command ----------------------------------------------------------------------------

def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("configs", nargs="+", type=Path, metavar="FILE.yaml",
                        help="experiment files to compare")
    parser.add_argument("--seeds", type=positive_int, default=5,
                        help="seeds per experiment: train.seed = 0..N-1 (default 5)")
    parser.add_argument("--jobs", type=positive_int, default=None,
                        help="trials trained at once, each in its own process (default 1; "
                             "with --backend ray, the Ray cluster's CPUs)")
    parser.add_argument("--budget", type=positive_int, default=None, metavar="STEPS",
                        help="env steps per trial (train.total_steps; default: each file's)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="where the trials and the report go (default runs/compare-<time>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY.PATH=VALUE",
                        help="override a config value in every experiment (repeatable)")
    parser.add_argument("--backend", choices=BACKENDS, default="processes",
                        help="where trials run: subprocesses of this command (processes, the "
                             "default) or Ray tasks of 1 CPU each (ray; pip install "
                             "\"rlkit[ray]\"); on a multi-machine Ray cluster --out must be "
                             "on a filesystem that every node sees")
    parser.add_argument("--ray-address", default=None, metavar="ADDRESS",
                        help="with --backend ray: the Ray cluster to join (auto: the one "
                             "started on this machine with ray start; default RAY_ADDRESS, "
                             "else a local Ray with --jobs CPUs)")


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from rlkit.validation import ConfigError

    missing = [str(p) for p in args.configs if not p.is_file()]
    if missing:
        raise ConfigError(f"rlkit compare: no such experiment file: {', '.join(missing)}; "
                          f"pass paths to YAML files such as experiments/cartpole.yaml.")
    if args.ray_address is not None and args.backend != "ray":
        raise ConfigError("--ray-address is for --backend ray; add --backend ray to run the "
                          "trials on that Ray cluster.")
    if args.backend == "ray":
        _import_ray()  # before anything is written
    out = args.out or Path("runs") / time.strftime("compare-%Y%m%d-%H%M%S")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out: {out} is not empty; choose another directory (runs there "
                          f"would be mixed with earlier ones).")
    console = Console()
    total = len(args.configs) * args.seeds
    count = 0

    def done(trial: Trial) -> None:
        nonlocal count
        count += 1
        what = (f"{trial.final_return:.4g}" if trial.ok and trial.final_return is not None
                else f"[red]{trial.status}[/red]")
        console.print(f"[{count}/{total}] {trial.experiment} seed {trial.seed}: {what}",
                      highlight=False)

    results, trials, improvement = compare(args.configs, seeds=args.seeds, out=out,
                                           jobs=args.jobs, budget=args.budget,
                                           overrides=args.overrides, on_done=done,
                                           backend=args.backend, ray_address=args.ray_address)
    _print(console, results, trials, improvement, out)
    return 0 if all(t.ok for t in trials) else 1


def _ci(ci: tuple[float, float] | None) -> str:
    return "" if ci is None else f"[{ci[0]:.4g}, {ci[1]:.4g}]"


def _print(console: Any, results: list[ExperimentResult], trials: list[Trial],
           improvement: dict[tuple[str, str], tuple[float, float, float]], out: Path) -> None:
    from rich import box
    from rich.table import Table

    table = Table(title="final evaluation return over seeds", box=box.SIMPLE_HEAD)
    table.add_column("experiment", no_wrap=True)
    for column in ("runs", "mean [95% CI]", "IQM [95% CI]", "reached target",
                   "steps to target", "time to target", "peak RSS"):
        table.add_column(column, overflow="fold")
    for r in results:
        reached = "" if r.target_return is None else f"{r.reached}/{r.finished} (>= " \
            f"{r.target_return:g})"
        table.add_row(r.name, f"{r.finished}/{r.trials}", f"{_fmt(r.mean)} {_ci(r.mean_ci)}",
                      f"{_fmt(r.iqm)} {_ci(r.iqm_ci)}", reached,
                      "" if r.steps_to_target is None else f"{r.steps_to_target:,.0f}",
                      "" if r.wall_time_to_target_s is None else
                      f"{r.wall_time_to_target_s:.1f} s",
                      "" if r.peak_rss_mib is None else f"{r.peak_rss_mib:,.0f} MiB")
    console.print(table)
    if improvement:
        pairs = Table(title="probability of improvement P(X > Y)", box=box.SIMPLE_HEAD)
        for column in ("X", "Y", "P(X > Y)", "95% CI"):
            pairs.add_column(column)
        for (x, y), (p, low, high) in improvement.items():
            pairs.add_row(x, y, f"{p:.3f}", f"[{low:.3f}, {high:.3f}]")
        console.print(pairs)
    for t in trials:
        if not t.ok:
            console.print(f"[red]failed[/red] {t.experiment} seed {t.seed} ({t.run_dir}): "
                          f"{t.error}", highlight=False)
    console.print(f"statistics over the runs that finished; wrote {out / CSV_NAME}, "
                  f"{out / TRIALS_CSV_NAME} and {out / PNG_NAME}", highlight=False)


def register(cli: Any) -> None:
    """Add ``rlkit compare`` to the command line (called from the ``workflow`` plugin)."""
    cli.add("compare", help="train experiments over seeds and compare them with statistics",
            description=COMPARE_HELP, configure=_configure, run=_run)
