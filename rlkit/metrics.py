"""Episode statistics accumulated where the data lives.

On a CPU the per-step cost of a host check is negligible, so finished episodes are collected
as they end (their returns feed adaptive exploration). On an accelerator, checking for finished
episodes every step would stall the device, so returns are summed on the device, the most
recent ones are written to a ring buffer there, and both are read back only when
:meth:`EpisodeStats.drain` is called (every ``train.log_every`` steps).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class EpisodeStats:
    """Running per-env returns/lengths and the totals of finished episodes."""

    RING = 4096
    """On an accelerator, at most this many of the episodes finished between two drains are
    kept individually (the most recent); the means count all of them."""

    def __init__(self, num_envs: int, device: torch.device) -> None:
        self.device = device
        self.sync_free = device.type != "cpu"
        self._ring = torch.zeros(self.RING + 1, dtype=torch.float64, device=device)  # +1: spare
        self.ep_return = torch.zeros(num_envs, dtype=torch.float64, device=device)
        self.ep_length = torch.zeros(num_envs, dtype=torch.long, device=device)
        self._sum = torch.zeros((), dtype=torch.float64, device=device)
        self._len_sum = torch.zeros((), dtype=torch.long, device=device)
        self._count = torch.zeros((), dtype=torch.long, device=device)
        self.finished: list[float] = []  # CPU path only

    def record(self, reward: Tensor, terminated: Tensor, truncated: Tensor,
               valid: Tensor | None) -> None:
        done = terminated | truncated
        if valid is None:
            self.ep_return += reward
            self.ep_length += 1
        else:
            self.ep_return += reward * valid
            self.ep_length += valid
            done = done & valid
        if self.sync_free:
            # Finished episodes go to consecutive ring slots (after the ``_count`` written since
            # the last drain), the others to the spare one.
            slot = (self._count + done.long().cumsum(0) - 1) % self.RING
            self._ring.scatter_(0, torch.where(done, slot, self.RING), self.ep_return)
            self._sum += (self.ep_return * done).sum()
            self._len_sum += (self.ep_length * done).sum()
            self._count += done.sum()
            self.ep_return.masked_fill_(done, 0.0)
            self.ep_length.masked_fill_(done, 0)
            return
        if not bool(done.any()):
            return
        returns = self.ep_return[done]
        self.finished.extend(returns.tolist())
        self._sum += returns.sum()
        self._len_sum += self.ep_length[done].sum()
        self._count += done.sum()
        self.ep_return.masked_fill_(done, 0.0)
        self.ep_length.masked_fill_(done, 0)

    def add_finished(self, returns: list[float] | tuple[float, ...], length_sum: int) -> None:
        """Count episodes that finished elsewhere (in worker processes): their returns and
        summed lengths join the next :meth:`drain`."""
        if not returns:
            return
        if self.sync_free:
            for value in returns:  # rare (workers report a few times a second): loop is fine
                self._ring[int(self._count) % self.RING] = value
                self._count += 1
        else:
            self.finished.extend(float(r) for r in returns)
            self._count += len(returns)
        self._sum += float(sum(returns))
        self._len_sum += int(length_sum)

    def drain(self) -> tuple[dict[str, float], list[float]]:
        """Mean return/length of episodes finished since the last drain, and their returns."""
        count = int(self._count)
        metrics: dict[str, float] = {}
        if count:
            metrics = {
                "rollout/ep_return_mean": float(self._sum) / count,
                "rollout/ep_len_mean": float(self._len_sum) / count,
                "rollout/episodes": float(count),
            }
        finished, self.finished = self.finished, []
        if self.sync_free and count:
            kept = min(count, self.RING)
            start = (count - kept) % self.RING
            order = (torch.arange(kept, device=self.device) + start) % self.RING
            finished = self._ring[order].tolist()
        self._sum.zero_()
        self._len_sum.zero_()
        self._count.zero_()
        return metrics, finished

    def state_dict(self) -> dict[str, Any]:
        return {"ep_return": self.ep_return.clone(), "ep_length": self.ep_length.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ep_return.copy_(state["ep_return"])
        self.ep_length.copy_(state["ep_length"])
