"""rlkit plugin: the ``rlkit export`` command (entry point ``deploy``).

``rlkit export RUN_DIR_OR_CHECKPOINT --format onnx|torchscript [--quantize int8] [-o FILE]``
writes the trained agent's policy as a standalone file (:mod:`rlkit.deploy.export`). Nothing
heavy is imported until the command runs.
"""

from __future__ import annotations

import argparse
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


@hookimpl
def register_commands(cli: Any) -> None:
    session = getattr(cli, "plugins", None)
    cli.add("export", help="write a trained policy as an ONNX or TorchScript file",
            description=EXPORT_HELP, configure=_configure,
            run=lambda args: _run(args, session))
