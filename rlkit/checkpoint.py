"""Checkpoints: written atomically, loaded without running code.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python data. It is
written to a temporary file in the same directory, flushed and fsync'ed, then renamed over the
destination, so a crash at any moment leaves either the old or the new checkpoint, never a
torn one. Loading uses ``torch.load(weights_only=True)``: a checkpoint from an untrusted source
cannot execute code.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable or not an rlkit checkpoint (the message names it)."""


def save_atomic(state: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp creates 0600; use the usual mode
        with os.fdopen(fd, "wb") as f:
            torch.save({"format_version": FORMAT_VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; errors name the file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: cannot be loaded as a safe rlkit checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). It may be truncated, from another "
            f"program, or contain pickled objects, which rlkit refuses to execute."
        ) from None
    version = state.get("format_version") if isinstance(state, dict) else "?"
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not an rlkit checkpoint (format_version "
                              f"{version}).")
    return state


def find_checkpoint(path: str | Path) -> Path:
    """A run directory's latest checkpoint, or ``path`` itself if it is a file."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        latest = path / "checkpoints" / "latest.pt"
        if latest.is_file():
            return latest
        raise CheckpointError(f"{path}: no checkpoints/latest.pt in this run directory; was the "
                              f"run stopped before its first checkpoint?")
    raise CheckpointError(f"{path}: no such run directory or checkpoint file.")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
