"""Shared by the recurrent DQN and DDPG tests: random outcomes of a batch of actions."""

from __future__ import annotations

import torch

from rlkit.interfaces import Transition


def outcome(g: torch.Generator, obs: torch.Tensor, action: torch.Tensor,
            invalid: bool = False) -> Transition:
    """Random rewards and episode ends for ``obs`` and ``action`` (some rows invalid), with
    3-dimensional observations."""
    n = obs.shape[0]
    return Transition(obs=obs, action=action, reward=torch.randn(n, generator=g),
                      next_obs=torch.randn(n, 3, generator=g),
                      terminated=torch.rand(n, generator=g) < 0.15,
                      truncated=torch.rand(n, generator=g) < 0.1,
                      valid=(torch.rand(n, generator=g) > 0.1) if invalid else None)
