"""Per-environment recurrent state, kept by the agent.

A recurrent agent (one built on :mod:`rlkit.backbones.rnn` or any backbone with
``recurrent = True``) holds one state row per environment in a :class:`RecurrentMemory`:

* ``act`` reads :attr:`~RecurrentMemory.state` and writes the next one back;
* an episode that ends (``terminated | truncated`` in an observed transition, or a row that
  only reset its env, ``valid == False``) gets a zero state before the agent acts on the next
  episode's first observation -- :meth:`~RecurrentMemory.begin`, which whoever owns the loop may
  also call directly (``agent.begin_episodes(mask)``);
* :meth:`~RecurrentMemory.separate` swaps in a fresh state for another set of environments
  (evaluation, a second simulator) and puts the training state back afterwards, so training
  and evaluation never share state;
* :meth:`~RecurrentMemory.state_dict` holds the state and the pending episode starts, so a
  resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["RecurrentMemory"]


class RecurrentMemory:
    """The recurrent state of ``num_envs`` environments, and where episodes start.

    :param initial: ``initial(n)`` -> zeros ``(n, *state_shape)`` on the agent's device.
    :param num_envs: rows of the training state.
    """

    def __init__(self, initial: Callable[[int], Tensor], num_envs: int) -> None:
        self._initial = initial
        self.state: Tensor = initial(num_envs)
        """``(N, *state_shape)``: the state the next ``act`` starts from."""
        self.starts: Tensor = torch.ones(num_envs, dtype=torch.bool, device=self.state.device)
        """``(N,)``: rows whose next ``act`` begins an episode (cleared by :meth:`take_starts`)."""
        self.separated = False
        """True inside :meth:`separate`."""

    @property
    def num_envs(self) -> int:
        return int(self.state.shape[0])

    def begin(self, mask: Tensor | None = None) -> None:
        """Start fresh episodes: zero the state of the rows in ``mask`` (``(N,)`` bool; None:
        all rows)."""
        if mask is None:
            self.state = torch.zeros_like(self.state)
            self.starts = torch.ones_like(self.starts)
            return
        mask = mask.to(device=self.state.device, dtype=torch.bool)
        if mask.shape != self.starts.shape:
            raise ValueError(f"begin_episodes: the mask has shape {tuple(mask.shape)}, the agent "
                             f"keeps state for {self.num_envs} environments; pass one bool per "
                             f"environment")
        keep = (~mask).view(-1, *([1] * (self.state.dim() - 1)))
        self.state = self.state * keep
        self.starts = self.starts | mask

    def take_starts(self) -> Tensor:
        """The rows that begin an episode at this ``act``; the flags are cleared."""
        starts = self.starts
        self.starts = torch.zeros_like(starts)
        return starts

    @contextlib.contextmanager
    def separate(self, num_envs: int) -> Iterator[None]:
        """Within the block, a fresh state for ``num_envs`` other environments; afterwards the
        state from before, untouched."""
        if self.separated:
            raise RuntimeError("separate_state() blocks cannot be nested")
        kept = self.state, self.starts
        self.state = self._initial(num_envs)
        self.starts = torch.ones(num_envs, dtype=torch.bool, device=self.state.device)
        self.separated = True
        try:
            yield
        finally:
            self.state, self.starts = kept
            self.separated = False

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.state.clone(), "starts": self.starts.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        loaded, starts = state["state"], state["starts"]
        if tuple(loaded.shape) != tuple(self.state.shape):
            raise ValueError(f"recurrent state of shape {tuple(loaded.shape)} does not fit this "
                             f"agent's {tuple(self.state.shape)} (number of envs, layers or "
                             f"hidden size differ)")
        self.state = loaded.to(self.state.device, self.state.dtype).clone()
        self.starts = starts.to(self.starts.device, torch.bool).clone()
