"""rlkit plugin: the ``rlkit finetune`` command (entry point ``finetune``).

``rlkit finetune SOURCE NEW.yaml`` is ``rlkit train NEW.yaml`` with an ``init_from`` section
pointing at SOURCE (a run directory or checkpoint): a new run, with its own directory and
counters, that starts from the trained agent's weights (:mod:`rlkit.transfer`).
"""

from __future__ import annotations

import argparse
from typing import Any

from rlkit.hookspecs import hookimpl

FINETUNE_HELP = """\
Start a new run from a trained agent: its weights (all, or only the backbones with fresh
heads), and optionally its optimizer state, replay buffer and normalisation statistics. Use
it when the environment changed (new physics, a new demand pattern) or to continue in a
harder one. The new run has its own directory, counters and budget; the trained run is left
untouched. Equivalent to an `init_from:` section in NEW.yaml.

examples:
  rlkit finetune runs/ppo-CartPole-v1-20260101-120000 experiments/cartpole_drift.yaml
  rlkit finetune runs/my-run new.yaml --transfer backbone --freeze-backbone-steps 20000
  rlkit finetune runs/my-dqn/checkpoints/latest.pt new.yaml --keep-optimizer --keep-buffer
"""


def _configure(parser: argparse.ArgumentParser) -> None:
    from rlkit.cli import _configure_train

    parser.add_argument("source", help="the trained run directory or checkpoint file")
    _configure_train(parser)
    for action in parser._actions:  # finetune starts a new run: --resume makes no sense here
        if action.dest in ("resume", "trust_config"):
            action.help = argparse.SUPPRESS
    parser.add_argument("--transfer", choices=("all", "backbone"), default=None,
                        help="all networks as trained (default), or only the backbones with "
                        "fresh heads (when the action space or head shapes differ)")
    parser.add_argument("--freeze-backbone-steps", type=int, default=None, metavar="K",
                        help="keep the transferred backbones frozen for the first K env steps")
    parser.add_argument("--keep-optimizer", action="store_true",
                        help="continue with the trained optimizer's state (needs --transfer all)")
    parser.add_argument("--keep-buffer", action="store_true",
                        help="start with the trained run's replay buffer (off-policy algorithms)")
    parser.add_argument("--reset-normalizer", action="store_true",
                        help="fresh observation/reward normalisation statistics instead of the "
                        "trained run's")


def _run(args: argparse.Namespace, plugins: Any) -> int:
    from rlkit.cli import _run_train
    from rlkit.plugins import Plugins

    if args.resume is not None or args.trust_config:
        from rlkit.validation import ConfigError

        raise ConfigError("rlkit finetune starts a new run; to continue the fine-tuning run "
                          "itself use rlkit train --resume RUN_DIR.")
    if not args.config:
        from rlkit.validation import ConfigError

        raise ConfigError("rlkit finetune needs the trained run and the new experiment file: "
                          "rlkit finetune RUN_DIR NEW.yaml")
    overrides = [f"init_from.path={_yaml_string(args.source)}"]
    if args.transfer is not None:
        overrides.append(f"init_from.transfer={args.transfer}")
    if args.freeze_backbone_steps is not None:
        overrides.append(f"init_from.freeze_backbone_steps={args.freeze_backbone_steps}")
    if args.keep_optimizer:
        overrides.append("init_from.optimizer=keep")
    if args.keep_buffer:
        overrides.append("init_from.buffer=keep")
    if args.reset_normalizer:
        overrides.append("init_from.normalizer=reset")
    args.overrides = overrides + list(args.overrides)  # the user's --set come last and win
    return _run_train(args, plugins if plugins is not None else Plugins.load())


def _yaml_string(text: str) -> str:
    """``text`` as a YAML string (--set values are read as YAML)."""
    return "'" + text.replace("'", "''") + "'"


@hookimpl
def register_commands(cli: Any) -> None:
    session = getattr(cli, "plugins", None)
    cli.add("finetune", help="start a new run from a trained agent (fine-tuning)",
            description=FINETUNE_HELP, configure=_configure,
            run=lambda args: _run(args, session))
