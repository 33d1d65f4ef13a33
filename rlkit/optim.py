"""Optimizers chosen in YAML: ``algorithm.optimizer: {name: adam, lr: 3.0e-4}``.

``sgd`` with ``momentum > 0`` is SGD with momentum (``nesterov: true`` for Nesterov's).
The learning rate may be a :class:`~rlkit.schedules.Schedule`; algorithms call
:func:`set_learning_rate` with the training progress before each update.

Adam and AdamW use PyTorch's fused kernels where the parameters' device has them (CPU and CUDA
in current releases): one kernel updates every parameter, instead of a dozen small operations
per parameter tensor, with the same deterministic result on every run. :func:`clip_grad_norm`
is the global-norm clipping of ``torch.nn.utils.clip_grad_norm_`` for the common case of one
device and dtype, without its per-call grouping overhead (it matters for small networks that
take thousands of gradient steps).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

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
    if config.name in ("adam", "adamw"):
        kwargs: dict[str, Any] = {"lr": lr, "betas": config.betas, "eps": config.eps,
                                  "weight_decay": config.weight_decay}
        if _fused_supported(params):
            kwargs["fused"] = True
        if config.name == "adam":
            return torch.optim.Adam(params, **kwargs)
        return torch.optim.AdamW(params, **kwargs)
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


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict(state)`` on a copy of ``state``.

    torch keeps the given moment tensors when their dtype and device already match, so loading
    another live optimizer's ``state_dict()`` directly would make both update the same tensors.
    """
    optimizer.load_state_dict(copy.deepcopy(state))


def clip_grad_norm(params: Sequence[torch.nn.Parameter], max_norm: float | None) -> Tensor:
    """Scale the gradients of ``params`` in place so that their global L2 norm is at most
    ``max_norm`` (``None``: leave them as they are); return the norm before scaling.

    The same arithmetic as ``torch.nn.utils.clip_grad_norm_`` -- the gradients are multiplied
    by ``min(max_norm / (norm + 1e-6), 1)``, with no host synchronisation -- for parameters on
    one device with one dtype; other cases are passed to it.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    first = grads[0]
    if any(g.device != first.device or g.dtype != first.dtype or g.is_sparse for g in grads):
        return torch.nn.utils.clip_grad_norm_(params, math.inf if max_norm is None else max_norm)
    with torch.no_grad():
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        if max_norm is not None:
            torch._foreach_mul_(grads, torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return norm


def _fused_supported(params: Sequence[torch.nn.Parameter]) -> bool:
    """All parameters are floating point and on a device with fused Adam kernels."""
    devices = ("cpu", "cuda")
    return bool(params) and all(p.is_floating_point() and p.device.type in devices
                                for p in params)
