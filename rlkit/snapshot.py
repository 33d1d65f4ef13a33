"""Capture and restore the state of gymnasium environments as plain data.

Exact resume needs the environments to continue where they stopped: mid-episode positions,
step counters of time limits, and every random generator. Gymnasium has no API for that, so
:func:`capture` walks the environment graph (vector env -> sub-envs -> wrappers -> unwrapped
env, plus their spaces and the helper objects of gymnasium's wrappers, such as
``NormalizeObservation``'s running statistics) and records the attributes that are plain state:
numbers, numeric numpy arrays and tensors, lists, tuples and deques of those (a frame stack) and
numpy random generators. Constants such as maps or transition tables are left alone. The
result holds only tensors and plain Python data, so a checkpoint stays loadable with
``torch.load(weights_only=True)``.

An environment that keeps state elsewhere (a physics engine's memory, a subprocess) can
provide ``state_dict()``/``load_state_dict()`` itself; those are used when present. Without
them, an attribute holding an object of another library -- a MuJoCo ``MjData``, a Box2D world,
a MiniGrid grid, a ``random.Random`` -- may be state the walk cannot capture, so
:func:`capture` raises :class:`SnapshotUnsupported` naming it rather than record part of the
state (a resume then restarts the environments, and says so). Rendering handles (``screen``,
``clock``, ``window``, ``viewer``, ...) and plain constants (dicts, strings, enums, functions)
are not state.
"""

from __future__ import annotations

import enum
import types
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
import torch

_SCALARS = (bool, int, float, str, type(None))


class SnapshotUnsupported(Exception):
    """The environment's state cannot be captured (e.g. it lives in subprocesses)."""


def capture(env: Any) -> dict[str, Any]:
    """Everything needed to put ``env`` back in its current state, keyed by attribute path."""
    if isinstance(env, gym.vector.AsyncVectorEnv):
        raise SnapshotUnsupported("async vector envs keep their state in subprocesses")
    state: dict[str, Any] = {}
    _walk(env, "", state, set(), capture_mode=True)
    return state


def restore(env: Any, state: dict[str, Any]) -> None:
    """Put ``env`` back into the state :func:`capture` recorded."""
    _walk(env, "", state, set(), capture_mode=False)


def _walk(obj: Any, prefix: str, state: dict[str, Any], seen: set[int], capture_mode: bool) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict") and not isinstance(
        obj, gym.Space
    ):
        key = f"{prefix}__state_dict__"
        if capture_mode:
            state[key] = obj.state_dict()
        elif key in state:
            obj.load_state_dict(state[key])
        return
    if isinstance(obj, gym.Space):
        key = f"{prefix}_np_random"
        rng = getattr(obj, "_np_random", None)
        if capture_mode:
            if rng is not None:
                state[key] = {"__rng__": rng.bit_generator.state}
        elif key in state:
            obj._np_random = _restore_rng(rng, state[key]["__rng__"])
        return
    for name, value in list(vars(obj).items()):
        path = f"{prefix}{name}"
        if _is_node(value) or _is_wrapper_helper(value):
            _walk(value, f"{path}.", state, seen, capture_mode)
        elif isinstance(value, (list, tuple)) and value and all(_is_node(v) for v in value):
            for i, child in enumerate(value):
                _walk(child, f"{path}.{i}.", state, seen, capture_mode)
        elif capture_mode:
            encoded = _encode(value)
            if encoded is not _SKIP:
                state[path] = encoded
            elif name not in _RENDERING and _foreign_state(value):
                raise SnapshotUnsupported(
                    f"{type(obj).__name__}.{name} holds a {type(value).__module__}."
                    f"{type(value).__qualname__}, whose state cannot be captured; give "
                    f"{type(obj).__name__} state_dict()/load_state_dict() methods to resume it "
                    f"exactly")
        elif path in state:
            setattr(obj, name, _decode(state[path], value))
    if not capture_mode:
        # Attributes recorded at capture time but not created yet on this instance (e.g. an
        # environment that was never reset holds no ``_np_random`` or ``state``).
        present = vars(obj)
        for key, data in state.items():
            if key.startswith(prefix):
                name = key[len(prefix):]
                if name and "." not in name and name not in present and not name.startswith(
                        "__"):
                    setattr(obj, name, _decode(data, None))


_RENDERING = frozenset({"screen", "clock", "window", "viewer", "renderer", "surf",
                        "render_window", "mujoco_renderer", "isopen"})
"""Attribute names of rendering handles: not environment state."""

_PLAIN_MODULES = frozenset({"builtins", "numpy", "gymnasium", "torch", "collections", "enum",
                            "functools", "types"})


def _foreign_state(value: Any) -> bool:
    """Whether ``value`` (which :func:`_encode` skipped) may hold state the walk cannot
    capture: an object of a class from another library (or a sequence holding one)."""
    if value is None or callable(value) or isinstance(
            value, (type, types.ModuleType, enum.Enum, dict, set, frozenset, bytes, str,
                    np.ndarray, range)):
        return False
    if isinstance(value, (list, tuple, deque)):
        return any(_foreign_state(v) for v in value)
    return type(value).__module__.partition(".")[0] not in _PLAIN_MODULES


def _is_node(value: Any) -> bool:
    return isinstance(value, (gym.Env, gym.Wrapper, gym.vector.VectorEnv, gym.Space)) or (
        isinstance(value, gym.vector.VectorWrapper)
    )


def _is_wrapper_helper(value: Any) -> bool:
    """A state-holding object of a gymnasium wrapper (e.g. a running mean and variance)."""
    return (not isinstance(value, type) and hasattr(value, "__dict__")
            and type(value).__module__.startswith("gymnasium.wrappers"))


class _Skip:
    pass


_SKIP = _Skip()


def _encode(value: Any) -> Any:
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, np.random.Generator):
        return {"__rng__": value.bit_generator.state}
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return {"__np__": value.dtype.str, "value": value.item()}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            return _SKIP  # maps, descriptions: constants
        return {"__nd__": torch.from_numpy(np.ascontiguousarray(value).copy()),
                "dtype": value.dtype.str}
    if isinstance(value, torch.Tensor):
        return {"__tensor__": value.detach().clone()}
    if isinstance(value, (list, tuple, deque)):
        items = [_encode(v) for v in value]
        if any(i is _SKIP for i in items):
            return _SKIP
        if isinstance(value, deque):
            return {"__deque__": items, "maxlen": value.maxlen}
        return {"__seq__": "tuple" if isinstance(value, tuple) else "list", "items": items}
    return _SKIP


def _decode(data: Any, current: Any) -> Any:
    if not isinstance(data, dict):
        return data
    if "__rng__" in data:
        return _restore_rng(current, data["__rng__"])
    if "__np__" in data:
        return np.dtype(data["__np__"]).type(data["value"])
    if "__nd__" in data:
        array = data["__nd__"].numpy().astype(np.dtype(data["dtype"]), copy=True)
        if isinstance(current, np.ndarray) and current.shape == array.shape:
            current[...] = array  # keep identity: other objects may hold a view
            return current
        return array
    if "__tensor__" in data:
        if isinstance(current, torch.Tensor) and current.shape == data["__tensor__"].shape:
            current.copy_(data["__tensor__"])
            return current
        return data["__tensor__"].clone()
    if "__deque__" in data:
        items = [_decode(d, None) for d in data["__deque__"]]
        if isinstance(current, deque) and current.maxlen == data["maxlen"]:
            current.clear()  # keep identity
            current.extend(items)
            return current
        return deque(items, maxlen=data["maxlen"])
    if "__seq__" in data:
        olds = list(current) if isinstance(current, (list, tuple)) else []
        items = [_decode(d, olds[i] if i < len(olds) else None)
                 for i, d in enumerate(data["items"])]
        return tuple(items) if data["__seq__"] == "tuple" else items
    return data


def _restore_rng(current: Any, state: dict[str, Any]) -> np.random.Generator:
    rng = current if isinstance(current, np.random.Generator) else np.random.default_rng()
    if rng.bit_generator.state["bit_generator"] != state["bit_generator"]:
        bitgen = getattr(np.random, state["bit_generator"])()
        rng = np.random.Generator(bitgen)
    rng.bit_generator.state = state
    return rng
