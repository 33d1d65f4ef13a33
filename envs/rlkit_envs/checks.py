"""What a batched env checks at its boundary: actions against the action space, reset masks.

``step`` applies actions unchecked by default (the hot path does no work for them); with
``check_actions=True``, or ``RLKIT_CHECK_ACTIONS=1`` in the environment, every action is checked
first and one outside the action space raises a :class:`ValueError` that names the env, the
offending values and the space. ``reset(options={"reset_mask": m})`` validates its mask as
gymnasium's vector envs do (the same exception types).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

__all__ = ["ENV_VARIABLE", "ActionChecker", "check_actions_requested", "reset_mask"]

ENV_VARIABLE = "RLKIT_CHECK_ACTIONS"
"""Set to ``1`` to check the actions of every torch-native env made in the process."""

_SHOWN = 4  # offending envs quoted in an error


def check_actions_requested(check_actions: bool) -> bool:
    """Whether actions are to be checked: asked for by the constructor or by
    ``RLKIT_CHECK_ACTIONS``."""
    value = os.environ.get(ENV_VARIABLE, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value not in ("", "0", "false", "no", "off"):
        raise ValueError(f"{ENV_VARIABLE}={os.environ[ENV_VARIABLE]!r}: expected 1 (check every "
                         f"torch-native env's actions) or 0; unset it to leave them unchecked.")
    return bool(check_actions)


class ActionChecker:
    """Checks a batch of raw actions against ``num_envs`` copies of ``space``.

    :param name: how errors name the env (its id and class).
    :param space: the single env's action space (Discrete or Box).
    :param num_envs: environments in the batch.
    :param device: where the env's tensors are.
    """

    def __init__(self, name: str, space: spaces.Space[Any], num_envs: int,
                 device: torch.device) -> None:
        if not isinstance(space, (spaces.Discrete, spaces.Box)):
            raise TypeError(f"{name}: check_actions supports Discrete and Box action spaces, "
                            f"not {space}")
        self.name = name
        self.space = space
        self.shape: tuple[int, ...] = (num_envs, *(space.shape or ()))
        self._bounds: tuple[Tensor, Tensor] | None = None
        """A Box's flattened low and high, float32 on the env's device; None for Discrete."""
        self._range = (0, 0)
        """A Discrete space's first action and the one past its last."""
        if isinstance(space, spaces.Box):
            low, high = (torch.as_tensor(b, dtype=torch.float32, device=device).flatten()
                         for b in (space.low, space.high))
            self._bounds = (low, high)
            self.expected = f"values in [{_bound(space.low)}, {_bound(space.high)}], not NaN"
        else:
            self._range = (int(space.start), int(space.start) + int(space.n))
            self.expected = f"whole numbers from {self._range[0]} to {self._range[1] - 1}"

    def raw(self, actions: Any) -> Tensor:
        """``actions`` as a tensor of its own dtype, its shape checked (numbers only)."""
        if not isinstance(actions, Tensor):
            array = np.asarray(actions)
            if array.dtype.kind not in "biuf":
                raise ValueError(f"{self.name}: actions must be numbers, got an array of dtype "
                                 f"{array.dtype} for the action space {self.space}")
            actions = torch.as_tensor(array)
        if tuple(actions.shape) != self.shape:
            per_env = (f"one action of shape {self.space.shape} per env"
                       if self.space.shape else "one integer per env")
            raise ValueError(f"{self.name}: actions of shape {tuple(actions.shape)} for the "
                             f"action space {self.space} of {self.shape[0]} envs; expected "
                             f"shape {self.shape} ({per_env})")
        return actions

    def values(self, raw: Tensor, action: Tensor) -> None:
        """Raise unless every env's action lies in the space.

        :param raw: the actions as given (Discrete: checked for whole numbers in range).
        :param action: the ``(N, d)`` float32 actions the env applies (Box: checked against
            the bounds, NaN included).
        """
        if self._bounds is not None:
            low, high = self._bounds
            inside = ((action >= low) & (action <= high)).all(dim=1)
            shown = action
        else:
            start, stop = self._range
            shown = raw.to(action.device)
            inside = (shown >= start) & (shown < stop)
            if shown.is_floating_point():
                inside &= shown == shown.round()  # NaN is not equal to itself either
        if bool(inside.all()):
            return
        bad = (~inside).nonzero().view(-1)
        if self.shape[0] == 1:  # a single env (gymnasium's single-env entry point)
            quoted = f"action {_value(shown[0])}"
        else:
            quoted = ", ".join(f"env {i}: {_value(shown[i])}" for i in bad[:_SHOWN].tolist())
        more = f" and {bad.numel() - _SHOWN} more" if bad.numel() > _SHOWN else ""
        raise ValueError(f"{self.name}: actions outside the action space {self.space} "
                         f"({quoted}{more}); expected {self.expected}. Send actions from the "
                         f"action space (clip or map the policy's output into it).")


def reset_mask(name: str, mask: Any, num_envs: int, device: torch.device) -> Tensor:
    """``options["reset_mask"]`` checked as gymnasium's ``SyncVectorEnv.reset`` checks it (a
    ``TypeError`` for the wrong type or dtype, a ``ValueError`` for the wrong shape or no
    ``True``), as a bool tensor on ``device``."""
    where = f"{name}.reset: options['reset_mask']"
    if isinstance(mask, np.ndarray):
        dtype_ok, tensor = mask.dtype == np.bool_, None
    elif isinstance(mask, Tensor):
        dtype_ok, tensor = mask.dtype == torch.bool, mask
    else:
        raise TypeError(f"{where} must be a numpy array or a torch tensor of bools, shape "
                        f"({num_envs},), got {type(mask).__name__}")
    if tuple(mask.shape) != (num_envs,):
        raise ValueError(f"{where} must have shape ({num_envs},), one flag per env, got "
                         f"{tuple(mask.shape)}")
    if not dtype_ok:
        raise TypeError(f"{where} must have dtype bool, got {mask.dtype}; convert it with "
                        f"mask.astype(bool) or mask.bool()")
    tensor = torch.from_numpy(mask) if tensor is None else tensor
    tensor = tensor.to(device)
    if not bool(tensor.any()):
        raise ValueError(f"{where} must be True for at least one env, got no True value; "
                         f"leave reset() uncalled when no env is to be reset")
    return tensor


def _bound(values: np.ndarray) -> str:
    """A Box bound: one number where every dimension shares it."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    return f"{flat[0]:g}" if (flat == flat[0]).all() else np.array2string(flat, precision=4)


def _value(row: Tensor) -> str:
    if row.dim() == 0:
        item = row.item()
        return f"{item:g}" if isinstance(item, float) else str(item)
    return "[" + ", ".join(f"{v:g}" for v in row.tolist()) + "]"
