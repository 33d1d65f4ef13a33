"""Standalone policy files: a trained agent's policy as ONNX or TorchScript.

:func:`export_policy` writes the network :func:`~rlkit.deploy.policy.load_policy` rebuilds --
pre- and post-processing inside the graph: the observation's conversion to float, ``uint8``
image scaling, ``NormalizeObservation`` statistics as constants, argmax for discrete actions,
clipping or DDPG's ``tanh`` rescaling to the Box -- so that a program with only onnxruntime
and numpy (or only torch) can act::

    import numpy as np, onnxruntime as ort
    session = ort.InferenceSession("runs/my-run/policy.onnx")
    action = session.run(["action"], {"obs": obs[None].astype(np.float32)})[0][0]

The graph takes a batch: input ``obs`` ``(batch, *obs_shape)`` in the observation space's
dtype (float32 for boxes and normalised observations, uint8 for images, int64 for Discrete
observations) and returns ``action`` ``(batch, *action_shape)`` (int64 for discrete actions,
float32 for boxes). A recurrent policy takes ``(obs, state)`` and returns ``(action,
next_state)``, states ``(batch, *state_shape)`` float32, zeros at an episode's start. The
file describes itself: the ONNX model's doc string and its metadata (``rlkit`` holds all of
it as JSON), or TorchScript's extra file ``rlkit_policy.json``.

``quantize="int8"`` quantizes the weights of the fully connected layers to 8-bit integers
(dynamically: activations are quantized at run time): onnxruntime's ``quantize_dynamic``
for ONNX, ``torch.ao.quantization.quantize_dynamic`` for TorchScript. Convolutions and
recurrent cores stay float. Actions then agree with the float policy's on most observations,
not all.

onnx and onnxruntime are optional (``pip install -e ".[onnx]"``) and imported only here.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from rlkit.deploy.policy import Policy, load_policy
from rlkit.errors import RunError
from rlkit.validation import ConfigError

if TYPE_CHECKING:
    import gymnasium as gym

    from rlkit.plugins import Plugins

__all__ = ["FORMATS", "QUANTIZATIONS", "default_output", "describe", "export_policy"]

FORMATS = ("onnx", "torchscript")
QUANTIZATIONS = ("int8",)
OPSET = 17
"""The ONNX opset the graphs are written in (onnxruntime 1.17 and later run it)."""

METADATA_FILE = "rlkit_policy.json"
"""The TorchScript extra file that describes the policy."""

INSTALL_HINT = 'pip install -e ".[onnx]" (or pip install "rlkit[onnx]")'


def export_policy(
    path: str | Path,
    fmt: str = "onnx",
    out: str | Path | None = None,
    quantize: str | None = None,
    *,
    plugins: Plugins | None = None,
    observation_space: gym.Space[Any] | None = None,
    action_space: gym.Space[Any] | None = None,
    trust_config: bool = False,
) -> Path:
    """Write the policy of a run directory or checkpoint as a standalone file.

    :param path: a run directory (its newest checkpoint that loads) or a checkpoint file.
    :param fmt: ``onnx`` or ``torchscript``.
    :param out: the file to write (default: :func:`default_output`); written atomically.
    :param quantize: None, or ``int8`` for dynamically quantized fully connected layers.
    :param plugins: ``observation_space``, ``action_space``, ``trust_config``: as for
        :func:`~rlkit.deploy.policy.load_policy`.
    :returns: the file written.
    :raises ConfigError: an unknown format or quantization, a table policy asked to quantize.
    :raises RunError: onnx (or onnxruntime, to quantize) not installed.
    :raises CheckpointError: no checkpoint in ``path``, or a damaged one.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"export: unknown format {fmt!r}; use one of {', '.join(FORMATS)} "
                          f"(--format onnx or --format torchscript).")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ConfigError(f"export: unknown quantization {quantize!r}; use int8, or none.")
    if fmt == "onnx":
        _require("onnx", "--format onnx")
        if quantize:
            _require("onnxruntime", "--format onnx --quantize int8")
    policy = load_policy(path, device="cpu", plugins=plugins,
                         observation_space=observation_space, action_space=action_space,
                         trust_config=trust_config)
    if quantize and policy.net.output == "table":
        raise ConfigError(f"export: the {policy.info['algorithm']!r} policy is a lookup table "
                          f"of greedy actions, with no weights to quantize; export it without "
                          f"--quantize (the table is exact and small).")
    target = Path(out) if out is not None else default_output(path, fmt, quantize)
    if target.resolve() == Path(policy.info["checkpoint"]).resolve():
        raise ConfigError(f"export: {target} is the checkpoint itself; choose another output "
                          f"file (-o FILE).")
    meta = describe(policy, fmt, quantize)
    if fmt == "onnx":
        data = _onnx_bytes(policy, meta, quantize)
    else:
        data = _torchscript_bytes(policy, meta, quantize)
    _write_atomic(target, data)
    return target


def default_output(path: str | Path, fmt: str, quantize: str | None = None) -> Path:
    """Where :func:`export_policy` writes by default: ``RUN_DIR/policy.onnx`` for a run
    directory (``policy.torchscript.pt`` for TorchScript, ``policy.int8.onnx`` quantized), and
    ``<name>.policy.onnx`` beside a checkpoint file."""
    source = Path(path)
    suffix = (f".{quantize}" if quantize else "") + (".onnx" if fmt == "onnx"
                                                      else ".torchscript.pt")
    if source.is_dir():
        run_dir = source.parent if source.name == "checkpoints" else source
        return run_dir / f"policy{suffix}"
    return source.with_name(f"{source.stem}.policy{suffix}")


def describe(policy: Policy, fmt: str, quantize: str | None) -> dict[str, Any]:
    """What an exported file says about itself: its inputs and outputs (names, shapes with a
    ``batch`` dimension, dtypes), the policy's origin and the spaces."""
    example = _example(policy, 2)
    with torch.inference_mode():
        result = policy.net(*example)
    action = result[0] if isinstance(result, tuple) else result
    inputs = {"obs": {"shape": ["batch", *policy.obs_shape], "dtype": _dtype(example[0])}}
    outputs = {"action": {"shape": ["batch", *action.shape[1:]], "dtype": _dtype(action)}}
    if policy.state_shape is not None:
        state = {"shape": ["batch", *policy.state_shape], "dtype": "float32"}
        inputs["state"], outputs["next_state"] = state, dict(state)
    info = policy.info
    return {
        "format": fmt, "quantize": quantize, "inputs": inputs, "outputs": outputs,
        "recurrent": policy.recurrent,
        "state_shape": None if policy.state_shape is None else list(policy.state_shape),
        "normalized_observations": policy.net.normalized,
        "observation_space": str(policy.observation_space),
        "action_space": str(policy.action_space),
        **{k: info.get(k) for k in ("algorithm", "backbone", "env_id", "env_steps",
                                    "checkpoint", "rlkit_version")},
    }


def doc_string(meta: dict[str, Any]) -> str:
    """A few lines for people: what goes in, what comes out, where it came from."""
    def io_line(name: str, spec: dict[str, Any]) -> str:
        return f"{name}: {spec['dtype']} ({', '.join(str(d) for d in spec['shape'])})"

    lines = [f"rlkit policy: {meta['algorithm']} ({meta['backbone']}) on {meta['env_id']}, "
             f"deterministic; from {meta['checkpoint']} (env step {meta['env_steps']}).",
             "inputs: " + "; ".join(io_line(n, s) for n, s in meta["inputs"].items()),
             "outputs: " + "; ".join(io_line(n, s) for n, s in meta["outputs"].items()),
             f"observation space: {meta['observation_space']}; action space: "
             f"{meta['action_space']}."]
    if meta["recurrent"]:
        shape = ", ".join(map(str, meta["state_shape"]))
        lines.append(f"recurrent: pass a state of shape (batch, {shape}), zeros at an "
                     f"episode's start, and feed next_state back at the next step.")
    if meta["normalized_observations"]:
        lines.append("observations are normalised inside (NormalizeObservation statistics of "
                     "the run); pass them as the env produces them before that wrapper.")
    if meta["quantize"]:
        lines.append(f"{meta['quantize']}: dynamically quantized fully connected layers.")
    return "\n".join(lines)


# --- ONNX ------------------------------------------------------------------------------------


def _onnx_bytes(policy: Policy, meta: dict[str, Any], quantize: str | None) -> bytes:
    import onnx

    example = _example(policy, 2)
    names_in, names_out = list(meta["inputs"]), list(meta["outputs"])
    kwargs: dict[str, Any] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript-based exporter: no onnxscript needed
    buffer = io.BytesIO()
    with _quiet():
        torch.onnx.export(policy.net, example, buffer,  # type: ignore[arg-type]
                          input_names=names_in,
                          output_names=names_out, opset_version=OPSET,
                          dynamic_axes={n: {0: "batch"} for n in [*names_in, *names_out]},
                          **kwargs)
    model = onnx.load_from_string(buffer.getvalue())
    if quantize:
        model = _onnx_int8(model)
    model.producer_name = "rlkit"
    model.doc_string = doc_string(meta)
    del model.metadata_props[:]
    flat = {"rlkit": json.dumps(meta), "inputs": ",".join(names_in),
            "outputs": ",".join(names_out),
            "state_shape": json.dumps(meta["state_shape"]),
            **{k: str(meta[k]) for k in ("algorithm", "env_id", "observation_space",
                                         "action_space")}}
    onnx.helper.set_model_props(model, flat)
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def _onnx_int8(model: Any) -> Any:
    """``model`` with its MatMul/Gemm weights quantized to int8 by onnxruntime."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="rlkit-export-") as tmp:
        source, target = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(source))
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)  # its advice to pre-process, for every model
        try:
            with _quiet():
                quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                                 op_types_to_quantize=["MatMul", "Gemm"])
        finally:
            logging.disable(previous)
        return onnx.load(str(target))


# --- TorchScript -----------------------------------------------------------------------------


def _torchscript_bytes(policy: Policy, meta: dict[str, Any], quantize: str | None) -> bytes:
    net: nn.Module = policy.net
    if quantize:
        with _quiet():
            net = torch.ao.quantization.quantize_dynamic(copy.deepcopy(net), {nn.Linear},
                                                         dtype=torch.qint8)
    with _quiet(), torch.inference_mode(False), torch.no_grad():
        traced = torch.jit.trace(net, _example(policy, 2), check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={METADATA_FILE: json.dumps(meta)})
    return buffer.getvalue()


# --- helpers ---------------------------------------------------------------------------------


def _require(module: str, what: str) -> None:
    try:
        __import__(module)
    except ImportError as exc:
        raise RunError(f"export: {what} needs the {module} package, which is not "
                       f"installed ({exc}); install it with {INSTALL_HINT}, or use --format "
                       f"torchscript.") from None


def _example(policy: Policy, batch: int) -> tuple[Tensor, ...]:
    """Observations of ``batch`` agents drawn from the space (seeded), and zero states."""
    space = policy.observation_space
    space.seed(0)
    obs = torch.as_tensor(np.stack([np.asarray(space.sample()) for _ in range(batch)]))
    obs = obs.to(policy.device, policy.obs_dtype)
    if policy.state_shape is None:
        return (obs,)
    return obs, torch.zeros((batch, *policy.state_shape), device=policy.device)


def _dtype(tensor: Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' and tracer's notes to developers (deprecations, constant folding)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
