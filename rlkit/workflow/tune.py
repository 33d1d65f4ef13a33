"""The ``rlkit tune`` command: search hyperparameters with Optuna.

``rlkit tune x.yaml --trials 50`` reads the search space from the experiment file's ``tune:``
section, which only this command accepts (it is stripped before the experiment is validated)::

    tune:
      metric: eval/return_mean      # maximised; or final_eval_return_mean
      params:
        algorithm.optimizer.lr: {log_uniform: [1.0e-4, 3.0e-3]}
        algorithm.n_steps: {choice: [16, 32, 64]}
        algorithm.gamma: {uniform: [0.95, 0.999]}
        algorithm.n_epochs: {int: [4, 20]}

Every key of ``params`` is a config key path, checked by validating the experiment with the
distribution's low (or first) value set there; a mistake is a :class:`ConfigError` naming
``tune.params.<path>``. ``eval/return_mean`` is the best evaluation return of the trial's run,
``final_eval_return_mean`` the return of its last evaluation.

Each trial samples the parameters, applies them like ``--set`` overrides and trains a
:class:`~rlkit.loop.Trainer` in this process (``OUT/trial-<n>``), with a lifecycle plugin that
reports each evaluation's return to the trial. When the pruner says the trial should stop, the
plugin does not raise (a hook's exception is the plugin's failure, reported and ignored under
``train.plugin_errors: warn``): it sets the trainer's stop flag, the same one Ctrl-C sets, so
the run finishes its step, writes its checkpoint and ``summary.json`` and ends; the objective
then writes ``trial.json`` (``"state": "pruned"``) in the run directory and raises
``optuna.TrialPruned``. Ctrl-C stops the running trial the same way; Optuna marks it failed
and the finished trials stay in the storage, so the same command continues the study until
it holds ``--trials`` completed or pruned trials.

``--jobs N`` starts N worker processes (this command with one job each) on one shared
storage (``OUT/study.db`` unless ``--storage`` names one); the trainer's signal handling is
per process, which threads could not give. Optuna and torch are imported only when the
command runs.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from rlkit.hookspecs import hookimpl
from rlkit.validation import ConfigError
from rlkit.workflow import positive_int

if TYPE_CHECKING:
    import optuna

    from rlkit.plugins import Plugins
    from rlkit.specs import EvalResult, RunInfo

__all__ = ["Param", "SearchSpace", "parse_search_space", "tune"]

METRICS = ("eval/return_mean", "final_eval_return_mean")
"""What a trial's objective can be (both maximised)."""
KINDS = ("uniform", "log_uniform", "int", "choice")
"""The distributions a ``tune.params`` entry can name."""
BEST_YAML, TRIALS_CSV, IMPORTANCE_PNG = "best.yaml", "trials.csv", "param_importances.png"

TUNE_HELP = """\
Search hyperparameters with Optuna. The search space is the experiment file's tune: section
(metric, params: {KEY.PATH: {uniform|log_uniform|int: [LOW, HIGH]} or {choice: [...]}}).
Each trial trains in OUT/trial-<n>, reports its evaluations for pruning, and the study ends
with OUT/best.yaml (a runnable experiment), OUT/trials.csv, OUT/param_importances.png and a
table of the best trials. With --storage (or --jobs > 1: OUT/study.db) the study is kept, and
the same command continues it up to --trials in all. See docs/guide.md ("Tuning").

examples:
  rlkit tune experiments/cartpole_tune.yaml --trials 50
  rlkit tune x.yaml --trials 50 --storage sqlite:///study.db --study ppo-lr --jobs 2
"""


@dataclass(frozen=True)
class Param:
    """One searched config key: ``kind`` is a name in :data:`KINDS`; ``values`` is
    ``(low, high)`` for a range, the choices for ``choice``."""

    path: str
    kind: str
    values: tuple[Any, ...]

    @property
    def first(self) -> Any:
        """The value that checks the key path: the low end or the first choice."""
        return self.values[0]

    def suggest(self, trial: optuna.Trial) -> Any:
        """Sample this parameter for ``trial``."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.path, list(self.values))
        low, high = self.values
        if self.kind == "int":
            return trial.suggest_int(self.path, low, high)
        return trial.suggest_float(self.path, float(low), float(high),
                                   log=self.kind == "log_uniform")


@dataclass(frozen=True)
class SearchSpace:
    """The ``tune:`` section: the metric to maximise and the parameters."""

    metric: str
    params: tuple[Param, ...]

    @property
    def choices_only(self) -> bool:
        """Whether every parameter is a ``choice`` (what the grid sampler needs)."""
        return all(p.kind == "choice" for p in self.params)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _param(path: str, spec: Any) -> Param:
    where = f"tune.params.{path}"
    example = "e.g. {log_uniform: [1.0e-4, 3.0e-3]} or {choice: [16, 32, 64]}"
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise ConfigError(f"{where}: expected a mapping with one distribution, {example}.",
                          key=where)
    (kind, values), = spec.items()
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown distribution {kind!r}; use one of "
                          f"{', '.join(KINDS)}, {example}.", key=where)
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}.{kind}: expected a non-empty list, {example}.",
                          key=f"{where}.{kind}")
    if kind == "choice":
        bad = [v for v in values if v is not None and not isinstance(v, (bool, int, float, str))]
        if bad:
            raise ConfigError(f"{where}.choice: choices must be numbers, strings, booleans "
                              f"or null, got {bad[0]!r}.", key=f"{where}.choice")
        return Param(path, kind, tuple(values))
    if len(values) != 2 or not all(_number(v) for v in values):
        raise ConfigError(f"{where}.{kind}: expected [LOW, HIGH], two finite numbers, "
                          f"got {values!r}.", key=f"{where}.{kind}")
    low, high = values
    if kind == "int" and not all(isinstance(v, int) for v in values):
        raise ConfigError(f"{where}.int: expected two integers, got {values!r}; use uniform "
                          f"for a real-valued range.", key=f"{where}.int")
    if low >= high:
        raise ConfigError(f"{where}.{kind}: the bounds are inverted or equal ({low} >= {high}); "
                          f"write [LOW, HIGH] with LOW < HIGH.", key=f"{where}.{kind}")
    if kind == "log_uniform" and low <= 0:
        raise ConfigError(f"{where}.log_uniform: LOW must be positive (got {low}); use "
                          f"uniform for a range that includes 0.", key=f"{where}.log_uniform")
    return Param(path, kind, (low, high))


def parse_search_space(section: Any) -> SearchSpace:
    """Validate a ``tune:`` section's shape (not yet whether its key paths exist: see
    :func:`check_search_space`).

    :raises ConfigError: naming ``tune.<key>`` or ``tune.params.<path>``.
    """
    if not isinstance(section, Mapping):
        raise ConfigError("tune: expected a mapping with metric and params.", key="tune")
    unknown = [k for k in section if k not in ("metric", "params")]
    if unknown:
        raise ConfigError(f"tune.{unknown[0]}: unknown key; tune takes metric and params.",
                          key=f"tune.{unknown[0]}")
    metric = section.get("metric", METRICS[0])
    if metric not in METRICS:
        raise ConfigError(f"tune.metric: {metric!r} is not a metric tune can maximise; use "
                          f"{' or '.join(METRICS)}.", key="tune.metric")
    params = section.get("params")
    if not isinstance(params, Mapping) or not params:
        raise ConfigError("tune.params: expected a mapping of config key paths to "
                          "distributions, e.g. algorithm.gamma: {uniform: [0.95, 0.999]}.",
                          key="tune.params")
    return SearchSpace(metric, tuple(_param(str(path), spec) for path, spec in params.items()))


def _set(path: str, value: Any) -> str:
    """``value`` at ``path`` as a ``--set`` override (JSON is YAML: its type survives)."""
    return f"{path}={json.dumps(value)}"


def check_search_space(space: SearchSpace, data: dict[str, Any], plugins: Plugins,
                       source: str) -> None:
    """Validate the experiment with each parameter's low (or first) value set at its key path.

    :raises ConfigError: ``tune.params.<path>: ...`` with the config layer's message.
    """
    from rlkit.config import apply_overrides, resolve

    for param in space.params:
        try:
            resolve(apply_overrides(data, [_set(param.path, param.first)]), plugins, source)
        except ConfigError as exc:
            where = f"tune.params.{param.path}"
            raise ConfigError(f"{source}: {where}: {param.path} = {param.first!r} is not a "
                              f"valid setting: {exc}", key=where) from None


class _Reporter:
    """A lifecycle plugin that reports each evaluation to the trial and stops a pruned run."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.trainer: Any = None
        self.pruned_at: int | None = None
        self.returns: list[float] = []

    @hookimpl
    def evaluation_finished(self, run: RunInfo, step: int, result: EvalResult) -> None:
        self.returns.append(result.mean)
        self.trial.report(result.mean, step)
        if self.pruned_at is None and self.trial.should_prune():
            self.pruned_at = step
            # the flag Ctrl-C sets: the loop ends after this step with a checkpoint
            self.trainer.request_stop("pruned")


def _objective(args: argparse.Namespace, data: dict[str, Any], space: SearchSpace,
               out: Path) -> Any:
    import optuna

    from rlkit.config import apply_overrides, blame, resolve
    from rlkit.loop import Trainer
    from rlkit.plugins import Plugins

    def objective(trial: optuna.Trial) -> float:
        overrides = list(args.overrides) + [_set(p.path, p.suggest(trial)) for p in space.params]
        if args.seed is not None:
            overrides.append(f"train.seed={args.seed}")
        reporter = _Reporter(trial)
        plugins = Plugins.load(extra=[(f"tune-trial-{trial.number}", reporter)])
        try:
            experiment = resolve(apply_overrides(data, overrides), plugins, str(args.config))
        except ConfigError as exc:
            raise ConfigError(blame(exc, args.config, overrides), key=exc.key) from None
        run_dir = out / f"trial-{trial.number}"
        trainer = Trainer(experiment, plugins, run_dir=run_dir, progress=False)
        reporter.trainer = trainer
        summary = trainer.run()
        pruned = reporter.pruned_at is not None and summary["status"] == "interrupted"
        if summary["status"] == "interrupted" and not pruned:
            raise KeyboardInterrupt  # Ctrl-C: Optuna marks the trial failed
        if space.metric == "final_eval_return_mean":
            value = summary["final_eval_return_mean"]
        else:
            value = max(reporter.returns) if reporter.returns else None
        state = "pruned" if pruned else "complete"
        trial.set_user_attr("run_dir", str(run_dir))
        (run_dir / "trial.json").write_text(json.dumps(
            {"trial": trial.number, "state": state, "pruned_at_step": reporter.pruned_at,
             "value": value, "params": trial.params}, indent=2) + "\n")
        if pruned:
            raise optuna.TrialPruned(f"pruned at env step {reporter.pruned_at}")
        if value is None:
            raise RuntimeError(f"trial {trial.number} ran no evaluation ({run_dir}); set "
                               f"eval.every below train.total_steps.")
        return float(value)

    return objective


def _sampler(name: str, space: SearchSpace, seed: int | None) -> Any:
    import optuna

    if name == "grid":
        if not space.choices_only:
            raise ConfigError("--sampler grid: every tune.params entry must be a choice (a "
                              "grid needs finite values); use tpe or random for ranges.")
        return optuna.samplers.GridSampler({p.path: list(p.values) for p in space.params},
                                           seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(name: str) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def tune(args: argparse.Namespace) -> int:
    """Run (or continue) the study that ``args`` describe and write its report."""
    import optuna

    from rlkit.config import read_yaml
    from rlkit.plugins import Plugins

    data = read_yaml(args.config)
    if "tune" not in data:
        raise ConfigError(f"{args.config}: no tune: section; add one with metric and params "
                          f"(see docs/guide.md, \"Tuning hyperparameters\").", key="tune")
    space = parse_search_space(data.pop("tune"))
    plugins = Plugins.load()
    check_search_space(space, data, plugins, str(args.config))
    name = args.study or Path(args.config).stem
    out = Path(args.out or f"tune-{name}")
    storage = args.storage
    if storage is None and args.jobs > 1:
        storage = f"sqlite:///{out / 'study.db'}"
    if storage is None and not args.worker and out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out: {out} is not empty; choose another directory, or pass "
                          f"--storage to continue a kept study there.")
    out.mkdir(parents=True, exist_ok=True)
    seed = args.seed if args.seed is not None else data.get("train", {}).get("seed")
    sampler_seed = None if seed is None else int(seed) + args.worker_index
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the report says what failed
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                direction="maximize",
                                sampler=_sampler(args.sampler, space, sampler_seed),
                                pruner=_pruner(args.pruner))
    if args.jobs > 1 and not args.worker:
        _run_workers(args, storage, name, out)
    else:
        # completed and pruned trials count towards --trials; one cut short by Ctrl-C does not
        done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        remaining = args.trials - len(study.get_trials(deepcopy=False, states=done))
        if remaining > 0:
            study.optimize(_objective(args, data, space, out), n_trials=remaining,
                           callbacks=[optuna.study.MaxTrialsCallback(args.trials, states=done)],
                           catch=(RuntimeError,))
    if args.worker:
        return 0
    return report(study, data, space, out, seed=seed, overrides=args.overrides)


def _run_workers(args: argparse.Namespace, storage: str, name: str, out: Path) -> None:
    """Run ``args.jobs`` copies of this command, one trial at a time each, on ``storage``."""
    procs = []
    for k in range(args.jobs):
        command = [sys.executable, "-m", "rlkit.cli", "tune", str(args.config),
                   "--trials", str(args.trials), "--sampler", args.sampler,
                   "--pruner", args.pruner, "--storage", storage, "--study", name,
                   "--out", str(out), "--worker", str(k)]
        if args.seed is not None:
            command += ["--seed", str(args.seed)]
        for item in args.overrides:
            command += ["--set", item]
        log = (out / f"worker-{k}.log").open("w")
        procs.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1"}), log))
    try:
        for proc, _ in procs:
            proc.wait()
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
            log.close()
    failed = [k for k, (proc, _) in enumerate(procs) if proc.returncode != 0]
    if failed:
        print(f"rlkit tune: worker(s) {failed} failed; see {out}/worker-<k>.log",
              file=sys.stderr)


def report(study: optuna.Study, data: dict[str, Any], space: SearchSpace, out: Path, *,
           seed: Any, overrides: Sequence[str] = ()) -> int:
    """Write ``trials.csv``, ``best.yaml`` and the importance plot; print the best trials."""
    import optuna
    from rich.console import Console
    from rich.table import Table

    from rlkit.config import apply_overrides

    console = Console()
    trials = study.trials
    names = [p.path for p in space.params]
    with (out / TRIALS_CSV).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["number", "state", "value", *names, "duration_s", "run_dir"])
        for t in trials:
            duration = None if t.duration is None else round(t.duration.total_seconds(), 3)
            writer.writerow([t.number, t.state.name.lower(), t.value,
                             *(t.params.get(n) for n in names), duration,
                             t.user_attrs.get("run_dir", "")])
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in
              optuna.trial.TrialState if any(t.state == s for t in trials)}
    console.print(f"study {study.study_name}: {len(trials)} trials "
                  f"({', '.join(f'{n} {s}' for s, n in counts.items())})", highlight=False)
    if not complete:
        console.print("no trial completed: no best.yaml; see the trials' run directories.")
        return 1
    table = Table(title=f"best trials ({space.metric}, maximised)")
    for column in ("trial", "value", *names):
        table.add_column(column)
    for t in sorted(complete, key=lambda t: t.value or -math.inf, reverse=True)[:10]:
        table.add_row(str(t.number), f"{t.value:.2f}", *(_show(t.params.get(n)) for n in names))
    console.print(table)
    best = study.best_trial
    best_data = apply_overrides(copy.deepcopy(data), [*overrides, *(
        _set(n, best.params[n]) for n in names)])
    if seed is not None:
        best_data.setdefault("train", {})["seed"] = seed
    (out / BEST_YAML).write_text(f"# best trial {best.number} of study {study.study_name} "
                                 f"({space.metric} = {best.value:.4g})\n"
                                 + yaml.safe_dump(best_data, sort_keys=False))
    console.print(f"wrote {out / BEST_YAML}; train with: rlkit train {out / BEST_YAML}",
                  highlight=False)
    _importance_plot(study, out, console, len(complete))
    return 0


def _show(value: Any) -> str:
    """A parameter value for the table: floats to four significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


def _importance_plot(study: optuna.Study, out: Path, console: Any, complete: int) -> None:
    if complete < 2:
        console.print(f"note: {complete} completed trial; the parameter-importance plot needs "
                      f"at least 2.")
        return
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            ax = optuna.visualization.matplotlib.plot_param_importances(study)
        figure: Any = ax.figure
        figure.savefig(out / IMPORTANCE_PNG, dpi=100, bbox_inches="tight")
        plt.close(figure)
        console.print(f"wrote {out / IMPORTANCE_PNG}", highlight=False)
    except Exception as exc:  # a plot is a convenience: the study's results stand without it
        console.print(f"note: no parameter-importance plot: {exc}")


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, metavar="FILE.yaml",
                        help="experiment file with a tune: section")
    parser.add_argument("--trials", type=positive_int, default=20,
                        help="trials in the study in all, earlier ones included (default 20)")
    parser.add_argument("--sampler", choices=("tpe", "random", "grid"), default="tpe",
                        help="tpe (default), random, or grid (choice-only spaces)")
    parser.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median",
                        help="stop unpromising trials at an evaluation (default median)")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="keep the study, e.g. sqlite:///study.db (default: in memory)")
    parser.add_argument("--study", default=None, metavar="NAME",
                        help="study name (default: the file's stem)")
    parser.add_argument("--jobs", type=positive_int, default=1,
                        help="trials at once, each worker its own process (default 1)")
    parser.add_argument("--seed", type=int, default=None,
                        help="train.seed of every trial (default: the file's)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="trial run directories and the report (default tune-<name>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY.PATH=VALUE",
                        help="override a config value in every trial (repeatable)")
    parser.add_argument("--worker", dest="worker_index", type=int, default=None,
                        help=argparse.SUPPRESS)


def _run(args: argparse.Namespace) -> int:
    try:
        import optuna  # noqa: F401 -- a missing extra is reported before anything runs
    except ImportError:
        raise ConfigError("rlkit tune needs Optuna: pip install 'rlkit[tune]'.") from None
    args.worker = args.worker_index is not None
    args.worker_index = args.worker_index or 0
    if not Path(args.config).is_file():
        raise ConfigError(f"rlkit tune: no such experiment file: {args.config}")
    try:
        return tune(args)
    except KeyboardInterrupt:
        if args.storage:
            print(f"rlkit tune: interrupted; the finished trials are kept in {args.storage}: "
                  f"run the same command to continue the study.", file=sys.stderr)
        raise


def register(cli: Any) -> None:
    """Add ``rlkit tune`` to the command line (called from the ``workflow`` plugin)."""
    cli.add("tune", help="search hyperparameters with Optuna (the file's tune: section)",
            description=TUNE_HELP, configure=_configure, run=_run)
