"""What ended a run, in words: one-line descriptions of exceptions, full disks and agent
states that went non-finite.

The trainer uses these when a run stops for any reason but its budget: to name the error in
``summary.json`` and on the command line, to tell a full disk (with the space a checkpoint
needs and the space that is free) from other write errors, and to refuse to report a model
whose parameters are NaN as finished.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from rlkit.errors import CheckpointError, PluginError, RunError
from rlkit.interfaces import NonFiniteError
from rlkit.validation import ConfigError

__all__ = [
    "DiskFullError",
    "NonFiniteState",
    "describe",
    "disk_full",
    "disk_full_message",
    "format_bytes",
    "free_bytes",
    "non_finite_entries",
    "tensor_bytes",
]

MAX_LINE = 300
"""An error's description is cut to this many characters."""

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


class DiskFullError(RunError):
    """A run's file could not be written: no space left (the message names the directory, the
    space needed and the space free)."""


class NonFiniteState(NonFiniteError):
    """The agent's state itself holds NaN or infinity (not only a value seen on the way)."""


def describe(exc: BaseException) -> str:
    """``Type: first line of the message`` (only the message for rlkit's own errors, which
    are written for the user), cut to :data:`MAX_LINE` characters."""
    if isinstance(exc, KeyboardInterrupt):
        return "KeyboardInterrupt (stopped at once: Ctrl-C or SIGTERM a second time)"
    if isinstance(exc, SystemExit):
        return f"SystemExit (sys.exit({exc.code!r}) was called)"
    lines = str(exc).strip().splitlines()
    if isinstance(exc, (CheckpointError, ConfigError, PluginError, RunError)) and lines:
        line = lines[0]  # written for the user already
    else:
        line = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."


def disk_full(exc: BaseException, directory: Path, needed: int | None = None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) means the disk under
    ``directory`` is full: ``ENOSPC``/``EDQUOT``, or any write error while fewer than
    ``needed`` bytes are free (torch reports a failed write as a ``RuntimeError``)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _DISK_FULL:
            return True
        seen = seen.__cause__ or seen.__context__
    if needed is not None and isinstance(exc, (OSError, RuntimeError)):
        free = free_bytes(directory)
        return free is not None and free < needed
    return False


def disk_full_message(directory: Path, needed: int, exc: BaseException) -> str:
    """No space left: where, what a checkpoint needs and what is free, in one line."""
    free = free_bytes(directory)
    name = getattr(exc, "filename", None)
    writing = f" while writing {name}" if name else ""
    have = "" if free is None else f" and {format_bytes(free)} are free"
    return (f"no space left on the disk of {directory}{writing}: a checkpoint of this run "
            f"needs about {format_bytes(needed)}{have}")


def free_bytes(directory: Path) -> int | None:
    """Free space on the file system of ``directory`` (or of its nearest existing parent)."""
    path = Path(directory)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def tensor_bytes(state: Any) -> int:
    """Bytes of tensor data in a nested state (what a checkpoint of it needs, roughly)."""
    return sum(t.numel() * t.element_size() for _, t in _tensors(state, ""))


def non_finite_entries(state: Any, limit: int = 3) -> list[str]:
    """Key paths (``model.pi.weight``) of floating-point tensors in ``state`` that hold NaN or
    infinity; at most ``limit`` of them."""
    found: list[str] = []
    for key, tensor in _tensors(state, ""):
        if (tensor.is_floating_point() or tensor.is_complex()) and tensor.numel() and not bool(
                torch.isfinite(tensor).all()):
            found.append(key)
            if len(found) >= limit:
                break
    return found


def format_bytes(n: int) -> str:
    """``1.5 GB``, ``340 MB``, ``12 kB`` (powers of 1000, as ``df -H`` shows them)."""
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _tensors(state: Any, prefix: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(state, torch.Tensor):
        yield prefix or "<tensor>", state
    elif isinstance(state, Mapping):
        for key, value in state.items():
            yield from _tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            yield from _tensors(value, f"{prefix}[{i}]")
