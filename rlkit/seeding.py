"""Random-number state: seeding a run and capturing every generator for exact resume.

rlkit's own components use their own ``torch.Generator`` objects seeded from the run's seed,
so that embedding rlkit does not disturb a host program's global RNG. The global generators
(torch, numpy, random) are still seeded and saved, for user code and libraries that use them.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed the global torch, numpy and random generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def numpy_state_data(state: Any) -> list[Any]:
    """A legacy numpy generator state (``np.random.get_state()``'s tuple) as tensors and plain
    data, which ``torch.load(weights_only=True)`` reads back."""
    name, key, pos, has_gauss, cached = state
    return [name, torch.from_numpy(np.asarray(key).astype(np.int64)), int(pos), int(has_gauss),
            float(cached)]


def numpy_state_from_data(data: Any) -> tuple[Any, ...]:
    """The tuple ``np.random.set_state`` takes, from :func:`numpy_state_data`'s list."""
    name, key, pos, has_gauss, cached = data
    return (name, key.numpy().astype(np.uint32), pos, has_gauss, cached)


def rng_state() -> dict[str, Any]:
    """The global generators' state, as tensors and plain data."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": numpy_state_data(np.random.get_state(legacy=True)),
        "python": _python_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(numpy_state_from_data(state["numpy"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]
