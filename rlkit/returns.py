"""Return estimators shared by all algorithms: GAE and n-step returns.

Every function takes ``(T, N)`` tensors -- ``T`` steps of ``N`` parallel environments -- and is
vectorized across environments (a loop runs over time, or over the ``n`` steps of a window,
never over environments).

Episode ends follow gymnasium's split:

* ``terminated``: the episode reached a terminal state. Its value is zero, so nothing is
  bootstrapped past it.
* ``truncated``: the episode was cut off (e.g. a time limit). The state it was cut off in still
  has a value, so the return *bootstraps* from the value of the final observation
  (``next_values[t]`` or the ``next_obs`` at ``bootstrap_index``).

In both cases the accumulation stops at the end of the episode: ``dones = terminated |
truncated`` separates the episode from the next one that auto-reset started in the same
environment.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["gae", "n_step_returns"]


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    dones: Tensor,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Generalized Advantage Estimation (Schulman et al., 2016, https://arxiv.org/abs/1506.02438).

    ::

        delta_t = r_t + gamma * (1 - terminated_t) * V(s'_t) - V(s_t)
        A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}
        R_t     = A_t + V(s_t)

    ``V(s'_t)`` is the value of the *true* next observation: the final observation where the
    episode ended, so a truncated episode bootstraps from it and a terminated one does not.
    The advantage never flows across an episode boundary (``done_t``). The last step ``T-1``
    bootstraps from ``next_values[T-1]`` alone.

    :param rewards: ``(T, N)`` rewards.
    :param values: ``(T, N)`` ``V(obs_t)``.
    :param next_values: ``(T, N)`` ``V(next_obs_t)`` (final observation where an episode ended).
    :param terminated: ``(T, N)`` bool, the episode reached a terminal state at step ``t``.
    :param dones: ``(T, N)`` bool, ``terminated | truncated``.
    :param gamma: discount factor.
    :param lam: GAE's lambda (1: Monte-Carlo advantages, 0: one-step TD errors).
    :returns: ``(advantages, returns)``, both ``(T, N)``.
    """
    deltas = rewards + gamma * next_values * (~terminated) - values
    decay = (gamma * lam) * (~dones).to(deltas.dtype)
    advantages = torch.empty_like(deltas)
    running = torch.zeros_like(deltas[0])
    for t in range(deltas.shape[0] - 1, -1, -1):
        running = deltas[t] + decay[t] * running
        advantages[t] = running
    return advantages, advantages + values


def n_step_returns(
    rewards: Tensor,
    terminated: Tensor,
    dones: Tensor,
    gamma: float,
    n: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Discounted ``n``-step reward sums and where to bootstrap them from.

    For each step ``t`` the window covers ``m`` rewards, where ``m`` stops at whichever comes
    first: ``n`` steps, the end of the data (``T``), or the end of the episode (the step that
    ended it is included)::

        G_t = sum_{k < m} gamma^k r_{t+k}
        target_t = G_t + bootstrap_discount_t * V(next_obs[bootstrap_index_t])

    ``bootstrap_discount`` is ``gamma^m``, or 0 when the episode *terminated* inside the window.
    A truncated episode keeps ``gamma^m`` and bootstraps from its final observation, which is
    ``next_obs`` at ``bootstrap_index = t + m - 1``.

    :param rewards: ``(T, N)`` rewards.
    :param terminated: ``(T, N)`` bool, the episode reached a terminal state at step ``t``.
    :param dones: ``(T, N)`` bool, ``terminated | truncated``.
    :param gamma: discount factor.
    :param n: the largest number of rewards summed (1 gives one-step TD targets).
    :returns: ``(G, bootstrap_discount, bootstrap_index)``, all ``(T, N)``; the index is int64
        and counts along the time dimension.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    steps = rewards.shape[0]
    sums = torch.zeros_like(rewards)
    lengths = torch.zeros(rewards.shape, dtype=torch.int64, device=rewards.device)
    ended_terminal = torch.zeros(rewards.shape, dtype=torch.bool, device=rewards.device)
    open_window = torch.ones(rewards.shape, dtype=torch.bool, device=rewards.device)
    for k in range(min(n, steps)):
        # Windows starting at t < steps - k can still take reward t + k (shifted by k).
        live = open_window[: steps - k]
        sums[: steps - k] += torch.where(live, rewards[k:] * gamma**k, 0.0)
        lengths[: steps - k] += live
        ended_terminal[: steps - k] |= live & terminated[k:]
        open_window[: steps - k] = live & ~dones[k:]
    discount = torch.where(
        ended_terminal, 0.0, torch.full_like(sums, gamma).pow(lengths.to(sums.dtype))
    )
    start = torch.arange(steps, device=rewards.device).unsqueeze(1)
    return sums, discount, start + lengths - 1
