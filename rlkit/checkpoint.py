"""Checkpoints: written atomically, verified by checksum, loaded without running code.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python data. It is
written to a temporary file in the same directory, flushed and fsync'ed, then renamed over the
destination, so a crash at any moment leaves either the old or the new checkpoint, never a
torn one. Loading uses ``torch.load(weights_only=True)``: a checkpoint from an untrusted source
cannot execute code.

Integrity (format 2): the file holds a ``checksum`` entry, ``sha256:<hex>``, a SHA-256 over
every other entry in a canonical order -- each tensor's dtype, shape and storage bytes, each
plain value's type and value -- computed before writing and again after loading. A byte that
changed anywhere in what the file holds (a flipped bit in a weight, a buffer, a counter, the
stored config) no longer matches and the file is refused; a byte that changed in the zip
container's framing either breaks the load or changes nothing that is loaded. Format 1
checkpoints (no checksum) still load, with a warning that they cannot be verified.

A run directory's checkpoints are ``checkpoints/latest.pt`` and the periodic
``checkpoints/step_<env steps>.pt``. :func:`load_run` picks the newest one that loads, checks
that it is a complete run checkpoint, and removes the temporary files an interrupted write
left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from rlkit.errors import CheckpointError

__all__ = ["FORMAT_VERSION", "CheckpointError", "checksum", "clean_temporary_files",
           "find_checkpoint", "keep_link", "load", "load_run", "restore_agent", "restoring",
           "save_atomic", "validate_run_state", "write_json_atomic"]

FORMAT_VERSION = 2
"""1: no checksum (still loaded, with a warning); 2: a ``checksum`` entry over the rest."""

CHECKSUM_KEY = "checksum"
_TEMP_MIN_AGE_S = 1.0  # a temporary file this young may be between creation and its lock


def save_atomic(state: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename), with its
    ``format_version`` and ``checksum``. On any error -- a full disk, an interrupt -- the
    temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"format_version": FORMAT_VERSION, **state}
    payload.pop(CHECKSUM_KEY, None)
    payload[CHECKSUM_KEY] = checksum(payload)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            _lock(f.fileno())  # tells clean_temporary_files that its writer is alive
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp creates 0600; use the usual mode
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp_name, path)  # still locked: never removed between close and rename
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and verify its checksum; errors name the
    file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(
            f"{path}: cannot be loaded as a safe rlkit checkpoint ({type(exc).__name__}: "
            f"{_cut(first)}). It may be truncated, from another program, or contain pickled "
            f"objects, which rlkit refuses to execute."
        ) from None
    version = state.get("format_version", "?") if isinstance(state, dict) else "?"
    if type(version) is not int:
        raise CheckpointError(f"{path}: not an rlkit checkpoint (format_version "
                              f"{_cut(repr(version))}).")
    if version == 1:
        warnings.warn(f"{path}: written by an rlkit older than checkpoint checksums (format "
                      f"1); it loads, but damage to its contents cannot be detected.",
                      RuntimeWarning, stacklevel=2)
        return state
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer rlkit (checkpoint format {version}, "
                              f"this rlkit reads up to {FORMAT_VERSION}); upgrade rlkit.")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not an rlkit checkpoint (format_version "
                              f"{_cut(repr(version))}).")
    stored = state.get(CHECKSUM_KEY)
    if not isinstance(stored, str):
        raise CheckpointError(f"{path}: its checksum entry is missing or damaged, so its "
                              f"contents cannot be verified; the file was damaged or edited.")
    if stored != checksum(state):
        raise CheckpointError(f"{path}: checksum mismatch: its contents changed after rlkit "
                              f"wrote it (a disk, copy or memory error, or an edit).")
    return state


def checksum(state: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` over every entry of ``state`` except ``checksum``, in order: tensors by
    dtype, shape and bytes, plain values by type and value (see the module docstring)."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != CHECKSUM_KEY})
    return "sha256:" + h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    """Hash ``obj`` unambiguously: a type tag and a length before every variable-size part."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.layout != torch.strided:
            t = t.to_dense()
        t = t.resolve_conj().resolve_neg().cpu().contiguous().reshape(-1)
        _part(h, b"T", f"{t.dtype}{tuple(obj.shape)}".encode())
        data = t.view(torch.uint8).numpy()  # the storage bytes, without a copy
        h.update(data.nbytes.to_bytes(8, "little"))
        h.update(data)
    elif isinstance(obj, Mapping):
        _part(h, b"D", str(len(obj)).encode())
        for key, value in obj.items():
            _feed(h, key)
            _feed(h, value)
    elif isinstance(obj, (list, tuple)):
        _part(h, b"L" if isinstance(obj, list) else b"U", str(len(obj)).encode())
        for item in obj:
            _feed(h, item)
    elif isinstance(obj, bool) or obj is None:
        _part(h, b"N", repr(obj).encode())
    elif isinstance(obj, int):
        _part(h, b"I", str(obj).encode())
    elif isinstance(obj, float):
        _part(h, b"F", obj.hex().encode())
    elif isinstance(obj, str):
        _part(h, b"S", obj.encode("utf-8", "surrogatepass"))
    elif isinstance(obj, (bytes, bytearray)):
        _part(h, b"B", bytes(obj))
    else:  # torch.dtype, torch.device, ...: what weights_only admits has a stable repr
        _part(h, b"O", f"{type(obj).__qualname__}:{obj!r}".encode())


def _part(h: Any, tag: bytes, data: bytes) -> None:
    h.update(tag)
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


# --- run directories ---------------------------------------------------------------------


def load_run(target: str | Path, *, resume: bool = False) -> tuple[Path, dict[str, Any]]:
    """The checkpoint of a run directory (or an explicit checkpoint file) and its state.

    A run directory yields the newest checkpoint that loads -- ``checkpoints/latest.pt``, then
    ``checkpoints/step_*.pt`` newest first -- with a warning that names each file passed over
    and why; it is an error only when none loads (the message lists each file and its
    problem). An explicit file is that file or an error, never another file. Temporary files
    left by interrupted writes are removed first.

    :param resume: require everything a resume restores (trainer counters, RNG state,
        environment state), not only the config and the agent.
    :returns: the checkpoint's path and its validated state.
    """
    target = Path(target)
    if target.is_file():
        if target.parent.name == "checkpoints":
            clean_temporary_files(target.parent)
        try:
            return target, _load_run_state(target, resume)
        except CheckpointError as exc:
            hint = (" Pass the run directory instead to use its newest checkpoint that loads."
                    if target.parent.name == "checkpoints" else "")
            raise CheckpointError(f"{exc}{hint}") from None
    if not target.is_dir():
        raise CheckpointError(f"{target}: no such run directory or checkpoint file.")
    directory = target / "checkpoints"
    if not directory.is_dir() and target.name == "checkpoints":
        directory = target
    if directory.is_dir():
        clean_temporary_files(directory)
    candidates = _candidates(directory)
    if not candidates:
        raise CheckpointError(f"{target}: no checkpoints/latest.pt in this run directory; was "
                              f"the run stopped before its first checkpoint?")
    problems: list[str] = []
    for path in candidates:
        try:
            state = _load_run_state(path, resume)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        if problems:
            steps = state["trainer"]["env_steps"] if isinstance(state.get("trainer"),
                                                                Mapping) else "?"
            warnings.warn(f"{' '.join(problems)} Using {path} instead (env step {steps}), the "
                          f"newest checkpoint of this run that loads.", RuntimeWarning,
                          stacklevel=2)
        return path, state
    listing = " | ".join(problems)
    raise CheckpointError(f"{target}: none of its {len(candidates)} checkpoints loads: "
                          f"{listing}")


def _candidates(directory: Path) -> list[Path]:
    latest = directory / "latest.pt"
    periodic = sorted((p for p in directory.glob("step_*.pt") if p.is_file()), reverse=True)
    return ([latest] if latest.is_file() else []) + periodic


def _load_run_state(path: Path, resume: bool) -> dict[str, Any]:
    state = load(path)
    validate_run_state(state, path, resume=resume)
    return state


def find_checkpoint(path: str | Path) -> Path:
    """A run directory's ``checkpoints/latest.pt``, or ``path`` itself if it is a file (no
    loading, no fallback: :func:`load_run` does both)."""
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


def clean_temporary_files(directory: str | Path) -> list[Path]:
    """Remove what interrupted writes left in a checkpoint directory: ``.<name>.*.tmp`` files
    whose writer is gone (a live writer holds a lock on its file, so an evaluation beside a
    training run leaves it alone) and ``.step_*.pt.link`` files of older rlkit versions; and
    in the run directory above it, the temporary files of ``summary.json``, ``manifest.json``,
    ``curves.png`` and ``scalars.csv`` older than a second. Returns the files removed."""
    directory = Path(directory)
    removed: list[Path] = []
    now = time.time()
    for path in [*directory.glob(".*.pt.*.tmp"), *directory.glob(".step_*.pt.link")]:
        try:
            if path.suffix == ".tmp" and (now - path.stat().st_mtime < _TEMP_MIN_AGE_S
                                          or not _writer_gone(path)):
                continue
            path.unlink()
        except OSError:
            continue  # gone already, or not ours to remove: leave it
        removed.append(path)
    # the run directory's own small files (summary.json, manifest.json, curves.png,
    # scalars.csv's purge) are written whole in milliseconds under a temporary name
    run_dir = directory.parent if directory.name == "checkpoints" else None
    small = ([*run_dir.glob("*.json.tmp"), *run_dir.glob("*.png.tmp"),
              *run_dir.glob(".scalars.csv.tmp")] if run_dir is not None else [])
    for path in small:
        try:
            if now - path.stat().st_mtime < _TEMP_MIN_AGE_S:
                continue
            path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


def keep_link(latest: Path, keep: Path) -> None:
    """Make ``keep`` (a periodic ``step_*.pt``) a hard link to ``latest``, replacing a file of
    that name; no temporary name is involved, so an interrupt leaves nothing behind (at worst
    ``keep`` is missing while ``latest`` holds the same state)."""
    try:
        os.link(latest, keep)
    except FileExistsError:
        keep.unlink()
        os.link(latest, keep)


if sys.platform != "win32":
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _writer_gone(path: Path) -> bool:
        """Whether no process holds the lock a writer takes on its temporary file."""
        with path.open("rb") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            return True
else:  # pragma: no cover - no advisory locks: a writer's file is at most minutes old

    def _lock(fd: int) -> None:
        pass

    def _writer_gone(path: Path) -> bool:
        return time.time() - path.stat().st_mtime > 3600


# --- validating a run checkpoint ---------------------------------------------------------


def validate_run_state(state: Mapping[str, Any], path: str | Path, *,
                       resume: bool = False) -> None:
    """Check that ``state`` is a complete run checkpoint before anything is built from it.

    Always required: ``config`` and ``agent`` (mappings). With ``resume``, also ``trainer``
    (its counters as non-negative numbers), ``rng``, ``env`` and ``obs``. The error names the
    file and the first field that is missing or wrong.
    """
    def fail(key: str, problem: str) -> CheckpointError:
        return CheckpointError(f"{path}: {key}: {problem}; the checkpoint is damaged or was "
                               f"not written by rlkit's trainer.")

    def field(parent: Mapping[str, Any], key: str, where: str, check: Callable[[Any], bool],
              expected: str) -> Any:
        if key not in parent:
            raise fail(where, "required field is missing")
        value = parent[key]
        if not check(value):
            raise fail(where, f"expected {expected}, got {_describe(value)}")
        return value

    field(state, "config", "config", _is_mapping, "a mapping (the run's config)")
    field(state, "agent", "agent", _is_mapping, "a mapping (the agent's state)")
    if not resume:
        return
    field(state, "status", "status", lambda v: isinstance(v, str), "a string")
    t = field(state, "trainer", "trainer", _is_mapping, "a mapping (the trainer's counters)")
    field(t, "env_steps", "trainer.env_steps", _count(0), "a whole number >= 0")
    field(t, "evaluations", "trainer.evaluations", _count(0), "a whole number >= 0")
    field(t, "last_eval_step", "trainer.last_eval_step", _count(-1), "a whole number >= -1")
    field(t, "wall_time_s", "trainer.wall_time_s",
          lambda v: _is_real(v) and math.isfinite(v) and v >= 0, "a finite number >= 0")
    if "eval_time_s" in t:  # absent in checkpoints of rlkit before it was recorded
        field(t, "eval_time_s", "trainer.eval_time_s",
              lambda v: _is_real(v) and math.isfinite(v) and v >= 0, "a finite number >= 0")
    field(t, "best_eval", "trainer.best_eval", lambda v: v is None or _is_real(v),
          "a number or null")
    field(t, "last_eval", "trainer.last_eval", _is_eval_result,
          "null or [returns, lengths], two lists of numbers of the same length")
    field(t, "episode_stats", "trainer.episode_stats", _is_mapping, "a mapping")
    rng = field(state, "rng", "rng", _is_mapping, "a mapping of generator states")
    field(rng, "torch", "rng.torch", lambda v: isinstance(v, torch.Tensor), "a tensor")
    field(rng, "numpy", "rng.numpy", lambda v: isinstance(v, (list, tuple)) and len(v) == 5,
          "a list of 5 items")
    field(rng, "python", "rng.python", lambda v: isinstance(v, (list, tuple)) and len(v) == 3,
          "a list of 3 items")
    env = field(state, "env", "env", lambda v: v is None or _is_mapping(v),
                "a mapping or null")
    field(state, "obs", "obs", lambda v: isinstance(v, torch.Tensor) or (v is None and
                                                                         env is None),
          "a tensor (the observation to continue from)")


def restore_agent(agent: Any, state: Mapping[str, Any], path: str | Path,
                  algorithm: str) -> None:
    """``agent.load_state_dict(state)``; a state that does not fit is a one-line
    :class:`CheckpointError` naming the checkpoint and the first key that differs."""
    try:
        agent.load_state_dict(state)
    except Exception as exc:
        try:
            mismatch = _first_mismatch(agent.state_dict(), state, "agent")
        except Exception:
            mismatch = None
        message = str(exc).strip().splitlines()
        detail = mismatch or f"{type(exc).__name__}: {_cut(message[0]) if message else ''}"
        raise CheckpointError(f"{path}: the agent's state does not fit the {algorithm!r} agent "
                              f"its config builds ({detail}); the checkpoint is damaged or was "
                              f"written by another version of the {algorithm!r} plugin."
                              ) from None


@contextlib.contextmanager
def restoring(path: str | Path, part: str) -> Iterator[None]:
    """Restoring ``part`` of the checkpoint at ``path``: a value that does not fit (a wrong
    shape, a missing key) is a one-line :class:`CheckpointError` naming both."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        message = str(exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {_cut(message[0]) if message else ''}"
        raise CheckpointError(f"{path}: {part}: cannot be restored ({detail}); the checkpoint "
                              f"is damaged or was written by another version of rlkit."
                              ) from None


def _first_mismatch(expected: Any, got: Any, where: str) -> str | None:
    """The first place (a dotted key path) where ``got`` differs in structure, shape or dtype
    from ``expected``; ``None`` if none does."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"{where}: a tensor expected, the checkpoint holds {_describe(got)}"
        if expected.shape != got.shape:
            return (f"{where}: shape {tuple(got.shape)} in the checkpoint, "
                    f"{tuple(expected.shape)} expected")
        if expected.dtype != got.dtype:
            return f"{where}: dtype {got.dtype} in the checkpoint, {expected.dtype} expected"
        return None
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping):
            return f"{where}: a mapping expected, the checkpoint holds {_describe(got)}"
        for key, value in expected.items():
            if key not in got:
                return f"{where}.{key}: missing from the checkpoint"
            found = _first_mismatch(value, got[key], f"{where}.{key}")
            if found:
                return found
        extra = [k for k in got if k not in expected]
        return f"{where}.{extra[0]}: not part of this agent's state" if extra else None
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            return (f"{where}: a list of {len(expected)} items expected, the checkpoint holds "
                    f"{_describe(got)}")
        for i, (e, g) in enumerate(zip(expected, got)):
            found = _first_mismatch(e, g, f"{where}[{i}]")
            if found:
                return found
    return None


def _is_mapping(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _count(minimum: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def _is_eval_result(value: Any) -> bool:
    if value is None:
        return True
    return (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(part, (list, tuple)) for part in value)
            and len(value[0]) == len(value[1]) > 0
            and all(_is_real(x) for part in value for x in part))


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"{type(value).__name__} {_cut(repr(value))}"


def _cut(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically (``summary.json``, ``manifest.json``); a failed write
    (a full disk) leaves no temporary file and the previous version of ``path`` intact."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, default=str, allow_nan=True))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
