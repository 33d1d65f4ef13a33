"""Optimizers chosen in YAML: ``algorithm.optimizer: {name: adam, lr: 3.0e-4}``.

``sgd`` with ``momentum > 0`` is SGD with momentum (``nesterov: true`` for Nesterov's).
The learning rate may be a :class:`~rlkit.schedules.Schedule`; algorithms call
:func:`set_learning_rate` with the training progress before each update.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch

from rlkit.schedules import Scheduled, value_at
from rlkit.validation import param


@dataclass(kw_only=True)
class OptimizerConfig:
    """Which optimizer updates the networks, and its settings."""

    name: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    """adam, adamw, sgd (with ``momentum`` for SGD with momentum) or rmsprop."""
    lr: Scheduled = 3e-4
    """Learning rate: a number or a schedule ``{kind: linear, start: ..., end: ...}``."""
    momentum: float = param(0.0, ge=0.0, lt=1.0)
    """Momentum for sgd and rmsprop."""
    nesterov: bool = False
    """Nesterov momentum (sgd with momentum > 0 only)."""
    eps: float = param(1e-8, gt=0.0)
    """Numerical stability term (adam, adamw, rmsprop)."""
    alpha: float = param(0.99, gt=0.0, lt=1.0)
    """Smoothing constant of rmsprop."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam's moment decay rates."""
    weight_decay: float = param(0.0, ge=0.0)
    """L2 penalty (decoupled for adamw)."""

    def __post_init__(self) -> None:
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise ValueError("nesterov: true needs name: sgd and momentum > 0")


def make_optimizer(
    params: Iterable[torch.nn.Parameter], config: OptimizerConfig
) -> torch.optim.Optimizer:
    """Build the optimizer that ``config`` describes, at the schedule's initial rate."""
    lr = value_at(config.lr, 0.0)
    params = list(params)
    if config.name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=config.betas, eps=config.eps,
                                weight_decay=config.weight_decay)
    if config.name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=config.betas, eps=config.eps,
                                 weight_decay=config.weight_decay)
    if config.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum,
                               nesterov=config.nesterov, weight_decay=config.weight_decay)
    return torch.optim.RMSprop(params, lr=lr, alpha=config.alpha, eps=config.eps,
                               momentum=config.momentum, weight_decay=config.weight_decay)


def set_learning_rate(optimizer: torch.optim.Optimizer, config: OptimizerConfig,
                      progress: float) -> float:
    """Apply the scheduled learning rate for ``progress`` in [0, 1]; return it."""
    lr = value_at(config.lr, progress)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr
