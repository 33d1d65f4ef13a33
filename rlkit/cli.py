"""The ``rlkit`` command line.

Each invocation of :func:`main` builds one plugin session (or uses the one it is given), so
plugins can add commands through the ``register_commands(cli)`` hook. Problems with the user's
input (config, plugin, checkpoint) are printed as one clear message, without a traceback, and
exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlkit.errors import CheckpointError, PluginError, RunError
from rlkit.validation import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from rlkit.loop import Trainer
    from rlkit.plugins import Plugins, Provider

# What a user can fix: printed as one line, exit status 2. Nothing here imports torch, so
# ``rlkit --help`` and ``rlkit plugins`` never do (see benchmarks/startup.py).
USER_ERRORS = (ConfigError, PluginError, CheckpointError, RunError)

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

MAIN_HELP = """\
rlkit trains, evaluates and inspects reinforcement-learning agents.

Start here:
  rlkit train experiments/cartpole.yaml        train PPO on CartPole-v1 to a return of 475
  rlkit eval runs/<run-dir> --episodes 20       evaluate the trained agent
  rlkit plugins                                 list algorithms, backbones, envs, exploration
  tensorboard --logdir runs                     watch the curves

Every command has its own --help.
"""

TRAIN_HELP = """\
Train the agent an experiment file describes.

The run directory (runs/<algorithm>-<env>-<date> by default) receives the resolved config,
a manifest of versions, TensorBoard events (also as scalars.csv), checkpoints, summary.json
and curves.png (training and evaluation returns against env steps).

examples:
  rlkit train experiments/cartpole.yaml
  rlkit train experiments/cartpole.yaml --seed 3 --set algorithm.optimizer.lr=1e-3
  rlkit train experiments/cartpole_dqn.yaml --set train.total_steps=20000 --device cpu
  rlkit train --resume runs/ppo-CartPole-v1-20260101-120000   # continue after Ctrl-C,
                                                              # a crash or an early stop

Ctrl-C (or SIGTERM) finishes the current step, writes a checkpoint and stops; --resume then
continues exactly where it stopped.
"""

EVAL_HELP = """\
Evaluate a trained agent: mean ± std of the return over N episodes.

examples:
  rlkit eval runs/ppo-CartPole-v1-20260101-120000 --episodes 20
  rlkit eval runs/my-run/checkpoints/step_000000050000.pt --stochastic
"""


class CommandRegistry:
    """What ``register_commands(cli)`` receives: ``cli.add(name, help=..., configure=...,
    run=...)``.

    ``provider`` says who is adding commands at the moment (rlkit itself, then each plugin in
    turn), so that a command defined twice is reported with both providers.
    """

    def __init__(self, subparsers: Any, provider: str = "rlkit",
                 plugins: Plugins | None = None) -> None:
        self._subparsers = subparsers
        self.provider = provider
        self.plugins = plugins
        """The plugin session the command line runs with (for commands that train or load)."""
        self.commands: dict[str, Callable[[argparse.Namespace], int]] = {}
        self.providers: dict[str, str] = {}

    def add(
        self,
        name: str,
        *,
        help: str,
        configure: Callable[[argparse.ArgumentParser], None] | None = None,
        run: Callable[[argparse.Namespace], int],
        description: str | None = None,
    ) -> argparse.ArgumentParser:
        if name in self.commands:
            raise PluginError(
                f"the command {name!r} is defined twice, by {self.providers[name]} and by "
                f"{self.provider}. Uninstall one of them, or leave one out with RLKIT_PLUGINS."
            )
        parser = self._subparsers.add_parser(
            name, help=help, description=description or help,
            formatter_class=argparse.RawDescriptionHelpFormatter)
        if configure is not None:
            configure(parser)
        self.commands[name] = run
        self.providers[name] = self.provider
        return parser


def _configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="experiment YAML file, e.g. "
                        "experiments/cartpole.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY.PATH=VALUE",
                        help="override a config value (repeatable); the value is read as YAML")
    parser.add_argument("--seed", type=int, help="shorthand for --set train.seed=N")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (train.device)")
    parser.add_argument("--run-dir", type=Path, help="write the run here instead of "
                        "run.dir/<generated name>")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue an interrupted, crashed or early-stopped run from its "
                        "latest checkpoint")
    parser.add_argument("--trust-config", action="store_true",
                        help="let the config stored in the run import the modules and use the "
                        "wrappers it names, even those neither gymnasium nor a plugin provides "
                        "(only for runs you trust)")
    parser.add_argument("--no-progress", action="store_true", help="no live progress bar")


def _plot(run_dir: Path) -> Path | None:
    """The run's learning curves as a PNG; a run still finishes when plotting fails."""
    from rlkit.plots import plot_run

    try:
        return plot_run(run_dir)
    except Exception as exc:  # a plot is a convenience: never lose the summary over it
        print(f"warning: could not draw {run_dir / 'curves.png'}: {exc}", file=sys.stderr)
        return None


def _run_train(args: argparse.Namespace, plugins: Plugins) -> int:
    from rlkit.config import load_experiment
    from rlkit.logger import print_summary
    from rlkit.loop import Trainer

    if args.resume is not None:
        if args.config or args.overrides or args.seed is not None:
            raise ConfigError("--resume continues a run with its own saved config; do not pass "
                              "a config file, --set or --seed with it.")
        trainer = Trainer.resume(args.resume, plugins, progress=not args.no_progress,
                                 device=args.device, trust_config=args.trust_config)
    else:
        if not args.config:
            raise ConfigError("rlkit train needs an experiment file (e.g. rlkit train "
                              "experiments/cartpole.yaml) or --resume RUN_DIR.")
        if args.trust_config:
            raise ConfigError("--trust-config goes with --resume RUN_DIR; an experiment file "
                              "you pass yourself is trusted already.")
        overrides = list(args.overrides)
        if args.seed is not None:
            overrides.append(f"train.seed={args.seed}")
        if args.device is not None:
            overrides.append(f"train.device={args.device}")
        experiment = load_experiment(args.config, plugins, overrides)
        try:
            trainer = Trainer(experiment, plugins, run_dir=args.run_dir,
                              progress=not args.no_progress)
        except ConfigError as exc:  # building the env: name the file (or --set) and the key
            raise experiment.locate(exc, key=exc.key or "env") from None
    trust = _trust_flag(trainer)
    try:
        summary = trainer.run()
    except BaseException as exc:
        if trainer.error is None:  # nothing was saved or described: not a crash of the run
            raise
        return _report_crash(trainer.error, trainer.run_dir, trainer.checkpoint_step, exc,
                             trust=trust)
    print_summary(summary, plot=_plot(trainer.run_dir), trust_config=bool(trust))
    if summary["status"] == "interrupted":
        print(f"Interrupted; resume with: rlkit train --resume {summary['run_dir']}{trust}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return 1 if summary["status"] == "non_finite" else 0


def _trust_flag(trainer: Trainer) -> str:
    """`` --trust-config`` where the run's config imports modules or uses wrappers that
    neither gymnasium nor a plugin provides: the commands that load the run again need it."""
    from rlkit.environments import untrusted_code
    from rlkit.loop import env_options

    found = untrusted_code(env_options(trainer.experiment), trainer.plugins.wrappers)
    return " --trust-config" if found else ""


def _report_crash(error: str, run_dir: Path, checkpoint_step: int | None,
                  exc: BaseException, *, trust: str = "") -> int:
    """One line for a run that ended with an exception (its checkpoint and summary.json are
    written): what happened, what was saved and the command that continues (with ``trust``,
    `` --trust-config`` where the run needs it); the exit status is 130 for Ctrl-C, 2 for the
    errors a user fixes (a full disk, a plugin), 1 otherwise."""
    from rlkit.failures import DiskFullError

    if not isinstance(exc, DiskFullError):  # with the disk full, drawing fails too
        _plot(run_dir)
    interrupted = isinstance(exc, KeyboardInterrupt)
    line = f"rlkit: {'interrupted' if interrupted else 'error'}: {error}"
    if checkpoint_step is not None:
        fix = "" if interrupted else "after fixing the cause, "
        line += f"; {fix}continue with: rlkit train --resume {run_dir}{trust}"
    print(line, file=sys.stderr)
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_USAGE if isinstance(exc, USER_ERRORS) else 1


def _configure_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", type=Path, help="a run directory or a checkpoint file")
    parser.add_argument("--episodes", type=int, default=20, help="episodes (default 20)")
    parser.add_argument("--seed", type=int, default=12345, help="evaluation seed")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--num-envs", type=int, help="parallel evaluation envs (default: "
                        "one per episode, at most 32)")
    parser.add_argument("--stochastic", action="store_true",
                        help="sample actions instead of acting deterministically")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--trust-config", action="store_true",
                        help="let the config stored in the run import the modules and use the "
                        "wrappers it names, even those neither gymnasium nor a plugin provides "
                        "(only for runs you trust)")


def _run_eval(args: argparse.Namespace, plugins: Plugins) -> int:
    from rlkit.environments import make_env
    from rlkit.evaluation import evaluate
    from rlkit.loop import env_options, load_agent, resolve_device

    if args.episodes < 1:
        raise ConfigError("--episodes must be at least 1")
    # a run directory: its newest checkpoint that loads (a warning names any passed over)
    agent, experiment = load_agent(args.target, plugins, device=args.device,
                                   trust_config=args.trust_config)
    path = experiment.source  # the checkpoint file used
    n = args.num_envs or min(args.episodes, 32)
    env = make_env(env_options(experiment, for_eval=True), device=resolve_device(args.device),
                   num_envs=n)
    if experiment.env.changes:  # evaluate in the world the agent was last trained in
        from rlkit.checkpoint import load_run

        _, state = load_run(path or args.target)
        step = int(state["trainer"]["env_steps"])
        for change in experiment.env.changes:
            if change.at_step <= step:
                env.apply_change(change.set)
                print(f"(env.changes up to env step {step:,} applied: {change.set})",
                      file=sys.stderr)
    result = evaluate(agent, env, episodes=args.episodes, seed=args.seed,
                      deterministic=not args.stochastic)
    env.close()
    if args.json:
        print(json.dumps({"checkpoint": str(path), "episodes": len(result.returns),
                          "return_mean": result.mean, "return_std": result.std,
                          "returns": list(result.returns)}))
    else:
        print(f"{experiment.algorithm.name} on {experiment.env.id} ({path}): "
              f"return {result.mean:.2f} ± {result.std:.2f} over {len(result.returns)} episodes")
    return 0


def _configure_plugins(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="show the settings of one algorithm, backbone "
                        "or exploration controller (e.g. ppo): every key, default and meaning")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _show_settings(name: str, plugins: Plugins, as_json: bool) -> int:
    import dataclasses

    import yaml

    from rlkit.validation import field_docs, to_data

    tables: dict[str, dict[str, tuple[Any, Provider]]] = {
        "algorithm": plugins.algorithms,
        "backbone": plugins.backbones,
        "exploration": plugins.exploration,
    }
    found = [(kind, table[name]) for kind, table in tables.items() if name in table]
    if not found:
        from rlkit.validation import hint_for

        known = sorted({n for t in tables.values() for n in t})
        raise ConfigError(f"no algorithm, backbone or exploration controller named {name!r}."
                          f"{hint_for(name, known)} Installed: {', '.join(known)}.")
    out: list[dict[str, Any]] = []
    for kind, (spec, provider) in found:
        docs = field_docs(spec.config)
        keys = []
        for f in dataclasses.fields(spec.config):
            if f.default is not dataclasses.MISSING:
                default = to_data(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                default = to_data(f.default_factory())
            else:
                default = "(required)"
            keys.append({"key": f.name, "default": default,
                         "meaning": " ".join(docs.get(f.name, "").replace("``", "`").split())})
        out.append({"kind": kind, "name": name, "description": spec.description or
                    (spec.config.__doc__ or "").strip(), "provided_by":
                    f"{provider.distribution} {provider.version}".strip(), "settings": keys})
    if as_json:
        print(json.dumps(out, indent=2))
        return 0
    from rich.table import Table

    console = _console()
    for item in out:
        table = Table(title=f"{item['kind']} {item['name']!r} ({item['provided_by']})",
                      caption=item["description"], show_lines=False)
        for col in ("key", "default", "meaning"):
            table.add_column(col, overflow="fold")
        for k in item["settings"]:
            default = k["default"]
            text = default if isinstance(default, str) else yaml.safe_dump(
                default, default_flow_style=True, sort_keys=False, width=10_000
            ).strip().removesuffix("...").strip()
            table.add_row(k["key"], text, k["meaning"])
        console.print(table)
    kind = out[0]["kind"]
    console.print(f"Set them in the experiment's [bold]{kind}:[/bold] section, or with "
                  f"--set {kind}.<key>=<value>.")
    return 0


def _run_plugins(args: argparse.Namespace, plugins: Plugins) -> int:
    if args.name:
        return _show_settings(args.name, plugins, args.json)
    tables: dict[str, dict[str, tuple[Any, Provider]]] = {
        "algorithm": plugins.algorithms,
        "backbone": plugins.backbones,
        "env": plugins.envs,
        "exploration": plugins.exploration,
        "runner": plugins.runners,
        "wrapper": plugins.wrappers,
    }
    rows = []
    for kind, registered in tables.items():
        for name, (spec, provider) in sorted(registered.items()):
            rows.append({"kind": kind, "name": name, "description": spec.description,
                         "distribution": provider.distribution, "version": provider.version,
                         "entry_point": provider.plugin})
    if args.json:
        print(json.dumps({"registered": rows, "failed": [vars(f) for f in plugins.failed]},
                         indent=2))
        return 0
    console = _console()
    _print_plugin_rows(console, rows)
    for f in plugins.failed:
        console.print(f"[red]failed to load[/red] {f.name} ({f.distribution}): {f.error}")
    return 0


def _print_plugin_rows(console: Console, rows: list[dict[str, Any]]) -> None:
    """The plugin listing: a table whose names are never cut, or, where the terminal is too
    narrow for that table, one entry per block."""
    from rich import box
    from rich.table import Table

    cells = [(r["kind"], r["name"], f"{r['distribution']} {r['version']}".strip(),
              r["description"]) for r in rows]
    fixed = [max([len(header)] + [len(c[i]) for c in cells])
             for i, header in enumerate(("kind", "name", "provided by"))]
    # three fixed columns, a description at least 30 wide, and 2 spaces between columns
    if console.width >= sum(fixed) + 30 + 2 * 3:
        table = Table(title="rlkit plugins", box=box.SIMPLE_HEAD, pad_edge=False,
                      title_justify="left")
        for header in ("kind", "name", "provided by"):
            table.add_column(header, no_wrap=True)
        table.add_column("description", overflow="fold", ratio=1)
        for cell in cells:
            table.add_row(*cell)
        console.print(table)
        return
    from rich.padding import Padding
    from rich.text import Text

    console.print("[bold]rlkit plugins[/bold]")
    kind_now = None
    for kind, name, provider, description in cells:
        if kind != kind_now:
            console.print(f"\n[bold]{kind}[/bold]")
            kind_now = kind
        console.print(Padding(Text.assemble((name, "bold"), f"  ({provider})"), (0, 0, 0, 2)))
        if description:
            console.print(Padding(Text(description), (0, 0, 0, 6)))


def _console() -> Console:
    from rich.console import Console

    return Console()


def build_parser(plugins: Plugins) -> tuple[argparse.ArgumentParser, CommandRegistry]:
    """The parser with rlkit's own commands, which run with ``plugins``, and the registry that
    plugins add their commands to."""
    from rlkit import __version__

    parser = argparse.ArgumentParser(prog="rlkit", description=MAIN_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"rlkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    registry = CommandRegistry(sub, provider=f"rlkit {__version__} (built-in command)",
                               plugins=plugins)

    def bound(run: Callable[[argparse.Namespace, Plugins], int]) -> Callable[..., int]:
        return lambda args: run(args, plugins)

    registry.add("train", help="train an agent from an experiment file",
                 description=TRAIN_HELP, configure=_configure_train, run=bound(_run_train))
    registry.add("eval", help="evaluate a run directory or checkpoint",
                 description=EVAL_HELP, configure=_configure_eval, run=bound(_run_eval))
    registry.add("plugins", help="list installed algorithms, backbones, envs, exploration",
                 configure=_configure_plugins, run=bound(_run_plugins))
    return parser, registry


def _add_plugin_commands(plugins: Plugins, registry: CommandRegistry) -> None:
    """Let each plugin add its commands, one plugin at a time so each command has a provider."""
    for provider, call in plugins.callers_by_plugin("register_commands"):
        registry.provider = str(provider)
        try:
            call(cli=registry)
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(f"{provider} failed in register_commands: {exc!r}") from exc


def main(argv: Sequence[str] | None = None, *, plugins: Plugins | None = None) -> int:
    """Run the ``rlkit`` command line and return its exit status.

    :param argv: the arguments, without the program name; default ``sys.argv[1:]``.
    :param plugins: a plugin session to use instead of loading one (programs that embed rlkit,
        tests). Without it, the installed plugins are loaded as ``Plugins.load()`` does.

    Warnings are printed as one ``rlkit: warning:`` line each while the command runs; the
    caller's warning filters and printer are restored on return. Ctrl-C at any moment ends the
    command with ``rlkit: interrupted`` and status 130, never a traceback (during training it
    first finishes the step and writes a checkpoint).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:  # needs no plugin session
        from rlkit import __version__

        print(f"rlkit {__version__}")
        return 0
    with _interrupts() as interrupted, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.showwarning = _show_warning
        try:
            from rlkit.plugins import Plugins

            session = plugins if plugins is not None else Plugins.load()
            parser, registry = build_parser(session)
            _add_plugin_commands(session, registry)
            args = parser.parse_args(argv)
            if args.command is None:
                parser.print_help()
                return EXIT_USAGE
            return registry.commands[args.command](args)
        except KeyboardInterrupt:
            print("rlkit: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except USER_ERRORS as exc:
            if interrupted:  # e.g. an import cut short by Ctrl-C, then reported as a config error
                print("rlkit: interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
            print(f"rlkit: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except Exception:
            if interrupted:
                print("rlkit: interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
            raise


class _Interrupted:
    """Whether Ctrl-C (SIGINT) arrived while the command ran; true once it has."""

    def __init__(self) -> None:
        self.seen = False

    def __bool__(self) -> bool:
        return self.seen


@contextmanager
def _interrupts() -> Iterator[_Interrupted]:
    """Note every SIGINT, then raise KeyboardInterrupt as Python's own handler does.

    An interrupt can land anywhere, in the middle of an import too, and what fails after it
    (a half-imported module) says nothing true about the user's input; the command reports the
    interrupt instead. The trainer installs its own handler while it trains (finish the step,
    checkpoint, stop) and restores this one afterwards.
    """
    interrupted = _Interrupted()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def handler(signum: int, frame: Any) -> None:
        interrupted.seen = True
        if _importing_torch(frame):
            # torch imports parts of itself from C++, which cannot unwind a Python exception
            # (the process would abort): ask again in a moment, once that import is over
            timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
            timer.daemon = True
            timer.start()
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def _importing_torch(frame: Any) -> bool:
    """Whether the main thread is running a torch module's top-level code (an import)."""
    marker = f"{os.sep}torch{os.sep}"
    while frame is not None:
        code = frame.f_code
        if code.co_name == "<module>" and marker in code.co_filename:
            return True
        frame = frame.f_back
    return False


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Warnings as one readable line, without the source line of the call."""
    print(f"rlkit: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
