"""gymnasium spaces as tensors and plain data, so that a checkpoint loaded with
``torch.load(weights_only=True)`` can say which spaces its agent was built for.

:func:`space_to_data` turns a :class:`~gymnasium.spaces.Box`, ``Discrete``, ``MultiDiscrete``,
``MultiBinary``, ``Dict`` or ``Tuple`` space (nested freely) into a mapping with a ``type``
entry, bounds as tensors and everything else as ints, strings, lists and mappings;
:func:`space_from_data` builds the same space again and checks every field on the way, naming
the key path of the first one that is wrong::

    data = space_to_data(gym.spaces.Box(-1.0, 1.0, (3,)))
    # {"type": "Box", "dtype": "float32", "low": tensor([-1., -1., -1.]), "high": ...}
    space_from_data(data) == gym.spaces.Box(-1.0, 1.0, (3,))   # True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch

__all__ = ["SUPPORTED", "space_from_data", "space_to_data"]

SUPPORTED = ("Box", "Discrete", "MultiDiscrete", "MultiBinary", "Dict", "Tuple")
"""The space types that can be recorded."""


def space_to_data(space: gym.Space[Any], where: str = "space") -> dict[str, Any]:
    """``space`` as tensors and plain data (see the module docstring).

    :param where: the name of ``space`` in errors (``observation_space``).
    :raises ValueError: for a space type outside :data:`SUPPORTED`, naming it.
    """
    if isinstance(space, gym.spaces.Box):
        return {"type": "Box", "dtype": str(space.dtype), "low": _tensor(space.low),
                "high": _tensor(space.high)}
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "dtype": str(space.dtype), "n": int(space.n),
                "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "dtype": str(space.dtype), "nvec": _tensor(space.nvec),
                "start": _tensor(space.start)}
    if isinstance(space, gym.spaces.MultiBinary):
        n = space.n
        return {"type": "MultiBinary",
                "n": int(n) if isinstance(n, (int, np.integer)) else [int(x) for x in n]}
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {str(key): space_to_data(sub, f"{where}[{key!r}]")
                                           for key, sub in space.spaces.items()}}
    if isinstance(space, gym.spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_data(sub, f"{where}[{i}]")
                                            for i, sub in enumerate(space.spaces)]}
    raise ValueError(f"{where}: a {type(space).__name__} space cannot be recorded; the "
                     f"supported types are {', '.join(SUPPORTED)} (nested freely).")


def space_from_data(data: Any, where: str = "space") -> gym.Space[Any]:
    """The space :func:`space_to_data` described.

    :param where: the key path of ``data`` in errors (``spaces.observation``).
    :raises ValueError: naming the key path of the first field that is missing or wrong.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping describing a space, got "
                         f"{type(data).__name__}.")
    kind = data.get("type")
    if kind == "Box":
        dtype = _dtype(data, where)
        low, high = _array(data, "low", where), _array(data, "high", where)
        if low.shape != high.shape:
            raise ValueError(f"{where}: low has shape {low.shape} and high {high.shape}; they "
                             f"must match.")
        return gym.spaces.Box(low=low.astype(dtype), high=high.astype(dtype), dtype=dtype)
    if kind == "Discrete":
        return gym.spaces.Discrete(_int(data, "n", where, minimum=1),
                                   start=_int(data, "start", where),
                                   dtype=_dtype(data, where))
    if kind == "MultiDiscrete":
        nvec, start = _array(data, "nvec", where), _array(data, "start", where)
        return gym.spaces.MultiDiscrete(nvec, start=start, dtype=_dtype(data, where))
    if kind == "MultiBinary":
        n = data.get("n")
        if isinstance(n, list) and n and all(_is_int(x) for x in n):
            return gym.spaces.MultiBinary(n)
        return gym.spaces.MultiBinary(_int(data, "n", where, minimum=1))
    if kind == "Dict":
        subs = data.get("spaces")
        if not isinstance(subs, Mapping):
            raise ValueError(f"{where}.spaces: expected a mapping of sub-spaces.")
        return gym.spaces.Dict({key: space_from_data(sub, f"{where}.spaces[{key!r}]")
                                for key, sub in subs.items()})
    if kind == "Tuple":
        subs = data.get("spaces")
        if not isinstance(subs, (list, tuple)):
            raise ValueError(f"{where}.spaces: expected a list of sub-spaces.")
        return gym.spaces.Tuple([space_from_data(sub, f"{where}.spaces[{i}]")
                                 for i, sub in enumerate(subs)])
    raise ValueError(f"{where}.type: expected one of {', '.join(SUPPORTED)}, got {kind!r}.")


def _tensor(array: np.ndarray[Any, Any]) -> torch.Tensor:
    return torch.from_numpy(np.array(array, copy=True))


def _array(data: Mapping[str, Any], key: str, where: str) -> np.ndarray[Any, Any]:
    value = data.get(key)
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{where}.{key}: expected a tensor, got {type(value).__name__}.")
    return value.detach().cpu().numpy()


def _dtype(data: Mapping[str, Any], where: str) -> np.dtype[Any]:
    name = data.get("dtype")
    try:
        return np.dtype(str(name))
    except TypeError:
        raise ValueError(f"{where}.dtype: {name!r} is not a numpy dtype.") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(data: Mapping[str, Any], key: str, where: str, minimum: int | None = None) -> int:
    value = data.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and (minimum is None
                                                                   or value >= minimum):
        return value
    bound = f" >= {minimum}" if minimum is not None else ""
    raise ValueError(f"{where}.{key}: expected a whole number{bound}, got {value!r}.")
