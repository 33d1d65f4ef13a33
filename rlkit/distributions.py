"""Action distributions for stochastic policies: categorical and diagonal Gaussian.

Plain functions on tensors (no ``torch.distributions`` objects, no global RNG): a policy
network outputs logits or a Gaussian mean, and these functions sample actions from a
``torch.Generator``, score actions (log-probabilities, summed over action dimensions),
and give entropies and the deterministic action (the mode). rlkit's PPO, A2C and A3C
(:class:`rlkit.algorithms.actor_critic.ActorCritic`) act and learn through them, so a plugin
that uses them draws exactly the same random numbers in the same order.

**Categorical** (``Discrete`` action spaces). ``logits`` is ``(B, n)``; actions are indices
``0 .. n-1``. An action space with ``start != 0`` (``Discrete(3, start=-1)``) expects
``index + space.start``: add it when sending actions (:func:`to_discrete_space`) and subtract
it from a transition's action before scoring (:func:`from_discrete_space`).

**Diagonal Gaussian** (``Box`` action spaces). ``mean`` is ``(B, d)``; ``log_std`` is ``(d,)``
(state-independent, as rlkit's PPO learns it) or ``(B, d)``. Two conventions map a Gaussian
sample into a ``Box``:

* *clipped* (rlkit's PPO and A2C): the env receives ``clip_to_box(sample, low, high)``, the
  policy's log-probability is that of the unclipped sample, and the unclipped sample is what
  is stored for learning (clipping is part of the env, not of the policy);
* *tanh-squashed* (SAC-style policies): the action is ``tanh(u)`` for a Gaussian sample
  ``u``, and its log-probability carries the change-of-variables correction
  :func:`tanh_log_prob_correction`; :func:`scale_to_box` then maps ``[-1, 1]`` onto the
  bounds (a constant shift of the log-probability, which gradients never see).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional

__all__ = [
    "categorical_entropy",
    "categorical_log_prob",
    "categorical_log_prob_entropy",
    "categorical_mode",
    "categorical_sample",
    "clip_to_box",
    "from_discrete_space",
    "gaussian_entropy",
    "gaussian_log_prob",
    "gaussian_log_prob_entropy",
    "gaussian_mode",
    "gaussian_sample",
    "scale_to_box",
    "squashed_gaussian_log_prob",
    "squashed_gaussian_sample",
    "standardized_gaussian_log_prob",
    "tanh_log_prob_correction",
    "to_discrete_space",
]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_GAUSSIAN_ENTROPY = 0.5 * (1.0 + math.log(2 * math.pi))  # per dimension, at log_std = 0


# --- categorical -------------------------------------------------------------------------


def categorical_sample(logits: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Draw one action per row and return ``(action, log_prob)``.

    Gumbel-max sampling: one uniform number per logit, drawn from ``generator``, and
    ``argmax(log_softmax(logits) - log(-log(u)))``; the same draws always give the same
    actions.

    :param logits: ``(B, n)`` unnormalised log-probabilities.
    :param generator: the random source, on ``logits``' device.
    :returns: the sampled indices ``(B,)`` (int64) and their log-probabilities ``(B,)``.
    """
    log_p = torch.log_softmax(logits, dim=-1)
    u = torch.rand(logits.shape, generator=generator, device=logits.device)
    action = torch.argmax(log_p - torch.log(-torch.log(u.clamp_min_(1e-20))), dim=-1)
    return action, _gather(log_p, action)


def categorical_log_prob(logits: Tensor, actions: Tensor) -> Tensor:
    """``log pi(a | s)`` ``(B,)`` of the indices ``actions`` ``(B,)`` under ``logits``
    ``(B, n)``."""
    return _gather(torch.log_softmax(logits, dim=-1), actions)


def categorical_entropy(logits: Tensor) -> Tensor:
    """The entropy ``(B,)`` of each row's categorical distribution."""
    log_p = torch.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def categorical_log_prob_entropy(logits: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
    """``(log_prob, entropy)``, both ``(B,)``, with one ``log_softmax`` (what a policy-gradient
    loss needs)."""
    log_p = torch.log_softmax(logits, dim=-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return _gather(log_p, actions), entropy


def categorical_mode(logits: Tensor) -> Tensor:
    """The most likely index ``(B,)`` (ties: the lowest), what a greedy policy takes."""
    return torch.argmax(logits, dim=-1)


def to_discrete_space(index: Tensor, start: int) -> Tensor:
    """Indices ``0 .. n-1`` as actions of ``Discrete(n, start=start)`` (unchanged for
    ``start == 0``)."""
    return index + start if start else index


def from_discrete_space(action: Tensor, start: int) -> Tensor:
    """Actions of ``Discrete(n, start=start)`` as indices ``0 .. n-1`` (int64), for scoring
    and storing."""
    index = action.long()
    return index - start if start else index


def _gather(log_p: Tensor, actions: Tensor) -> Tensor:
    """Each row's entry of ``log_p`` ``(B, n)`` at the index ``actions`` ``(B,)``."""
    return log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


# --- diagonal Gaussian -------------------------------------------------------------------


def gaussian_sample(mean: Tensor, log_std: Tensor,
                    generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Draw ``mean + std * z`` with ``z ~ N(0, I)`` from ``generator``; return ``(action,
    log_prob)``.

    :param mean: ``(B, d)``.
    :param log_std: ``(d,)`` or ``(B, d)``.
    :param generator: the random source, on ``mean``'s device (one normal draw per entry).
    :returns: the unclipped sample ``(B, d)`` and its log-probability ``(B,)``.
    """
    z = torch.randn(mean.shape, generator=generator, device=mean.device)
    return mean + z * log_std.exp(), standardized_gaussian_log_prob(z, log_std)


def standardized_gaussian_log_prob(z: Tensor, log_std: Tensor) -> Tensor:
    """``log pi(a)`` ``(B,)`` from the standardised action ``z = (a - mean) / std`` ``(B, d)``,
    summed over the action dimensions (no division: what sampling has at hand)."""
    return (-0.5 * z.pow(2) - log_std - _LOG_SQRT_2PI).sum(-1)


def gaussian_log_prob(mean: Tensor, log_std: Tensor, actions: Tensor) -> Tensor:
    """``log pi(a | s)`` ``(B,)`` of ``actions`` ``(B, d)``, summed over dimensions."""
    log_std = log_std.expand_as(mean)
    return standardized_gaussian_log_prob((actions - mean) * torch.exp(-log_std), log_std)


def gaussian_entropy(log_std: Tensor) -> Tensor:
    """The entropy, summed over the last dimension: ``(B,)`` for ``(B, d)``, a scalar for a
    state-independent ``(d,)``."""
    return (log_std + _GAUSSIAN_ENTROPY).sum(-1)


def gaussian_log_prob_entropy(mean: Tensor, log_std: Tensor,
                              actions: Tensor) -> tuple[Tensor, Tensor]:
    """``(log_prob, entropy)``, both ``(B,)`` (``log_std`` expanded to the batch)."""
    log_std = log_std.expand_as(mean)
    log_prob = standardized_gaussian_log_prob((actions - mean) * torch.exp(-log_std), log_std)
    return log_prob, gaussian_entropy(log_std)


def gaussian_mode(mean: Tensor) -> Tensor:
    """The deterministic action: the mean itself."""
    return mean


def clip_to_box(action: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """``action`` clipped to ``[low, high]`` per dimension: what the env receives under the
    clipped convention (score and store the unclipped sample)."""
    return torch.clamp(action, low, high)


# --- tanh-squashed Gaussian ----------------------------------------------------------------


def tanh_log_prob_correction(pre_tanh: Tensor) -> Tensor:
    """``sum_i log(1 - tanh(u_i)^2)`` ``(B,)`` for the Gaussian sample ``u`` ``(B, d)``.

    Subtract it from the Gaussian log-probability of ``u`` to get that of ``tanh(u)``. Written
    as ``2 * (log 2 - u - softplus(-2u))``, which stays finite where ``tanh(u)`` rounds to
    +-1.
    """
    return (2.0 * (math.log(2.0) - pre_tanh - functional.softplus(-2.0 * pre_tanh))).sum(-1)


def squashed_gaussian_sample(mean: Tensor, log_std: Tensor,
                             generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Draw ``tanh(u)``, ``u ~ N(mean, std^2)``, in ``(-1, 1)``; return ``(action,
    log_prob)`` with the change-of-variables correction applied.

    The random draws are those of :func:`gaussian_sample` (one normal per entry).
    """
    u, log_prob = gaussian_sample(mean, log_std, generator)
    return torch.tanh(u), log_prob - tanh_log_prob_correction(u)


def squashed_gaussian_log_prob(mean: Tensor, log_std: Tensor, pre_tanh: Tensor) -> Tensor:
    """``log pi(tanh(u) | s)`` ``(B,)`` from the pre-squash sample ``u`` ``(B, d)``.

    Keep ``u`` from sampling where you can: recovering it with ``atanh`` from an action at
    +-1 is infinite.
    """
    return gaussian_log_prob(mean, log_std, pre_tanh) - tanh_log_prob_correction(pre_tanh)


def scale_to_box(action: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """Map ``action`` in ``[-1, 1]`` linearly onto ``[low, high]`` per dimension."""
    return low + (action + 1.0) * (0.5 * (high - low))
