"""rlkit plugin: the ``rlkit export``, ``rlkit prune`` and ``rlkit distill`` commands (entry
point ``deploy``).

``rlkit export RUN_DIR_OR_CHECKPOINT --format onnx|torchscript [--quantize int8] [-o FILE]``
writes the trained agent's policy as a standalone file (:mod:`rlkit.deploy.export`).
``rlkit prune RUN --amount 0.5 --finetune-steps 20000`` prunes its acting network and
fine-tunes it in a new run (:mod:`rlkit.deploy.compress`); ``rlkit distill TEACHER_RUN
--student student.yaml`` trains a smaller student on its actions (:mod:`rlkit.deploy.distill`).
Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rlkit.hookspecs import hookimpl

EXPORT_HELP = """\
Write a trained agent's policy as a standalone file: ONNX (run it with onnxruntime and numpy
alone) or TorchScript (torch.jit.load). Observation preprocessing (float conversion, uint8
image scaling, NormalizeObservation statistics) and action post-processing (argmax, clipping,
tanh rescaling) are inside the graph; a recurrent policy takes (obs, state) and returns
(action, next_state). --quantize int8 quantizes the fully connected layers' weights.
Default output: RUN_DIR/policy.onnx (policy.torchscript.pt; policy.int8.onnx quantized), or
<checkpoint>.policy.onnx beside a checkpoint file. ONNX needs pip install -e ".[onnx]".

examples:
  rlkit export runs/ppo-CartPole-v1-20260101-120000 --format onnx
  rlkit export runs/my-run --format onnx --quantize int8 -o policy.int8.onnx
  rlkit export runs/my-run/checkpoints/step_000000050000.pt --format torchscript
"""


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", type=Path, help="a run directory or a checkpoint file")
    parser.add_argument("--format", dest="fmt", choices=("onnx", "torchscript"),
                        default="onnx", help="the file format (default: onnx)")
    parser.add_argument("--quantize", choices=("int8",), default=None,
                        help="dynamically quantize the fully connected layers to int8")
    parser.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                        help="the file to write (default: see above)")
    parser.add_argument("--trust-config", action="store_true",
                        help="for a checkpoint that records no spaces: build its env to read "
                        "them even if the stored config imports modules or uses wrappers "
                        "neither gymnasium nor a plugin provides (only for runs you trust)")


def _run(args: argparse.Namespace, plugins: Any) -> int:
    from rlkit.deploy.export import export_policy

    path = export_policy(args.target, args.fmt, args.output, args.quantize, plugins=plugins,
                         trust_config=args.trust_config)
    size = path.stat().st_size
    quantized = f", {args.quantize}" if args.quantize else ""
    print(f"wrote {path} ({args.fmt}{quantized}, {size / 1024:.1f} KiB)")
    return 0


PRUNE_HELP = """\
Prune a trained agent's acting network and fine-tune it briefly in a new run. The --amount
fraction of the weights of its Linear and Conv layers with the smallest magnitude (relative
to their layer's, over all layers together) become zero; the new run starts from the trained
agent (init_from) and trains --finetune-steps env steps with the zeros kept, then writes a
normal run directory (rlkit eval, rlkit export and load_policy read it) whose summary.json
reports the sparsity reached. Default run directory: <RUN>-pruned<amount %> beside RUN.

examples:
  rlkit prune runs/ppo-CartPole-v1-20260101-120000 --amount 0.5 --finetune-steps 20000
  rlkit prune runs/my-run --amount 0.8 --set algorithm.optimizer.lr=1e-4 --run-dir runs/p80
"""

DISTILL_HELP = """\
Train a smaller student to act as a trained teacher does. The student is the agent the
experiment file describes (any built-in algorithm with a feed-forward backbone, e.g. ppo
with backbone.hidden_sizes: [16]); it rolls out its own policy (with a little exploration),
the teacher labels every visited state (its greedy action, and its value where both are
actor-critics), and the student's network is fitted to these labels with its own optimizer.
The student's run directory works with rlkit eval, rlkit export and load_policy; its summary
compares the student's return with the teacher's on the same episodes.

examples:
  rlkit distill runs/ppo-CartPole-v1-20260101-120000 --student student.yaml
  rlkit distill runs/my-run --student student.yaml --steps 50000 --set train.seed=1
"""


def _configure_prune(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="the trained run directory or checkpoint")
    parser.add_argument("--amount", type=float, default=0.5,
                        help="the fraction of weights set to zero, in (0, 1) (default 0.5)")
    parser.add_argument("--finetune-steps", type=int, default=20_000, metavar="N",
                        help="env steps of the fine-tune (default 20000)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY.PATH=VALUE",
                        help="a setting of the fine-tuning run (repeatable; read as YAML)")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="the new run's directory (default: see above)")
    parser.add_argument("--no-progress", action="store_true", help="no live progress bar")


def _run_prune(args: argparse.Namespace, plugins: Any) -> int:
    from rlkit.deploy.compress import prune
    from rlkit.logger import summary_table

    result = prune(args.source, args.amount, args.finetune_steps, args.run_dir,
                   overrides=args.overrides, plugins=plugins, progress=not args.no_progress)
    table = summary_table(result.summary)
    table.add_row("sparsity", f"{result.sparsity:.1%} of the acting network's weights "
                  f"({len(result.layers)} layers; asked {result.amount:.1%})")
    _print_table(table, result.summary)
    return 0


def _configure_distill(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("teacher", type=Path, help="the teacher's run directory or checkpoint")
    parser.add_argument("--student", type=Path, required=True, metavar="FILE.yaml",
                        help="the student's experiment file (algorithm, a smaller backbone, "
                        "the teacher's env section)")
    parser.add_argument("--steps", type=int, default=None, metavar="N",
                        help="env steps of the student's rollouts (default: its "
                        "train.total_steps)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY.PATH=VALUE",
                        help="override a value of the student's file (repeatable)")
    parser.add_argument("--epsilon", type=float, default=0.05,
                        help="discrete actions: probability of a random action in the "
                        "student's rollouts (default 0.05)")
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="the supervised optimizer's learning rate (default 1e-3)")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="write the student's run here instead of run.dir/<generated name>")
    parser.add_argument("--trust-config", action="store_true",
                        help="load a teacher whose stored config imports modules or uses "
                        "wrappers neither gymnasium nor a plugin provides (only for runs you "
                        "trust)")
    parser.add_argument("--no-progress", action="store_true", help="no live progress bar")


def _run_distill(args: argparse.Namespace, plugins: Any) -> int:
    from rlkit.deploy.distill import distill
    from rlkit.logger import summary_table

    result = distill(args.teacher, args.student, args.steps, overrides=args.overrides,
                     run_dir=args.run_dir, plugins=plugins, progress=not args.no_progress,
                     epsilon=args.epsilon, lr=args.lr, trust_config=args.trust_config)
    info = result.summary["distillation"]
    table = summary_table(result.summary)
    teacher = info["teacher_eval_return_mean"]
    if teacher is not None:
        kept = "" if info["retained"] is None else f"; the student keeps {info['retained']:.1%}"
        table.add_row("teacher eval return", f"{teacher:.2f} (same episodes{kept})")
    table.add_row("parameters", f"student {result.student_parameters:,}, teacher "
                  f"{result.teacher_parameters:,} "
                  f"({result.student_parameters / max(result.teacher_parameters, 1):.1%})")
    _print_table(table, result.summary)
    return 0


def _print_table(table: Any, summary: dict[str, Any]) -> None:
    """The run's summary table with the command's rows, then the usual next commands."""
    from rich.console import Console

    console = Console(file=sys.stdout)
    console.print(table)
    run_dir = summary.get("run_dir")
    for line in (f"next: rlkit eval {run_dir}", f"      rlkit export {run_dir} --format onnx"):
        console.print(line, soft_wrap=True, markup=False, highlight=False)


@hookimpl
def register_commands(cli: Any) -> None:
    session = getattr(cli, "plugins", None)
    cli.add("export", help="write a trained policy as an ONNX or TorchScript file",
            description=EXPORT_HELP, configure=_configure,
            run=lambda args: _run(args, session))
    cli.add("prune", help="prune a trained policy's weights and fine-tune it (a new run)",
            description=PRUNE_HELP, configure=_configure_prune,
            run=lambda args: _run_prune(args, _session(session)))
    cli.add("distill", help="train a smaller student policy on a trained teacher's actions",
            description=DISTILL_HELP, configure=_configure_distill,
            run=lambda args: _run_distill(args, _session(session)))


def _session(plugins: Any) -> Any:
    if plugins is not None:
        return plugins
    from rlkit.plugins import Plugins

    return Plugins.load()
