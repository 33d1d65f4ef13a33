"""Optimizers chosen in YAML: ``algorithm.optimizer: {name: adam, lr: 3.0e-4}``.

``sgd`` with ``momentum > 0`` is SGD with momentum (``nesterov: true`` for Nesterov's).
The learning rate may be a :class:`~rlkit.schedules.Schedule`; algorithms call
:func:`set_learning_rate` with the training progress before each update.

The optimizers are rlkit's own small classes -- :class:`Adam`, :class:`AdamW`, :class:`SGD`,
:class:`RMSprop` -- with the arithmetic, the settings and the ``state_dict`` format of their
``torch.optim`` namesakes (a test checks each against them, step by step, and that theirs load
into rlkit's). They exist because of what ``torch.optim`` costs a small RL process:
constructing any ``torch.optim`` optimizer imports ``torch._dynamo`` (measured: 1.1 s and
71 MiB of resident memory, a fifth of a CartPole training process), and each ``step()`` goes
through compiler bookkeeping (graph breaks, grouping by device and dtype) that costs more than
the arithmetic for networks of a few thousand weights taking thousands of steps. Adam and AdamW
call PyTorch's fused kernels on the CPU and CUDA (one kernel for every parameter); every
parameter's step count lives in one tensor, so counting a step is one operation.

They implement what algorithms use of ``torch.optim.Optimizer``: ``param_groups`` (one group),
``state`` (per parameter), ``step()``, ``zero_grad()``, ``state_dict()`` and
``load_state_dict()``. :func:`clip_grad_norm` is the global-norm clipping of
``torch.nn.utils.clip_grad_norm_`` for the common case of one device and dtype, without its
per-call grouping overhead.
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
    lr: Scheduled = param(3e-4, ge=0.0)
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


class Optimizer:
    """One group of parameters updated from their gradients (see the module docstring).

    :param params: the parameters (tensors that require gradients).
    :param defaults: the hyperparameters, stored in ``param_groups[0]`` beside ``params``.
    """

    state_keys: tuple[str, ...] = ()
    """The per-parameter state tensors besides ``step``, created as zeros like the parameter."""

    def __init__(self, params: Iterable[Tensor], **defaults: Any) -> None:
        params = list(params)
        if not params:
            raise ValueError("the optimizer got an empty parameter list")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter appears twice in the optimizer's parameter list")
        for p in params:
            if isinstance(p, dict):
                raise TypeError("rlkit's optimizers take one group of parameters; for several "
                                "groups (e.g. a learning rate each) build a torch.optim "
                                "optimizer instead -- set_learning_rate and "
                                "load_optimizer_state accept those too")
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise TypeError("the optimizer can only update tensors that require gradients")
        self.params = params
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = [{**defaults, "params": params}]
        self.state: dict[Tensor, dict[str, Tensor]] = {}
        self._steps: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    # --- the torch.optim.Optimizer interface ---------------------------------------------

    @torch.no_grad()
    def step(self) -> None:
        """Update every parameter that has a gradient."""
        group = self.param_groups[0]
        params = [p for p in self.params if p.grad is not None]
        if not params:
            return
        if any(p.grad.is_sparse for p in params):  # type: ignore[union-attr]
            raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
        if any(p not in self.state for p in params):
            self._init_state()
        for device_params in _by_device_and_dtype(params).values():
            self._update(group, device_params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) the parameters' gradients."""
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``, the
        format of ``torch.optim``. Its tensors are the live state, as torch's are."""
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        group["params"] = list(range(len(self.params)))
        return {"state": {i: dict(self.state[p]) for i, p in enumerate(self.params)
                          if p in self.state},
                "param_groups": [group]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by :meth:`state_dict` (or by the ``torch.optim`` optimizer of the
        same name) for parameters of the same shapes. The state is copied, never shared."""
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            sizes = [len(g["params"]) for g in groups]
            raise ValueError(f"the saved optimizer state has parameter groups of sizes {sizes}; "
                             f"this optimizer has one group of {len(self.params)} parameters")
        saved_state = state_dict["state"]
        new_state: dict[Tensor, dict[str, Tensor]] = {}
        for index, p in zip(groups[0]["params"], self.params, strict=True):
            saved = saved_state.get(index)
            if saved is None:
                continue
            entry: dict[str, Tensor] = {}
            for key, value in saved.items():
                if not isinstance(value, Tensor):
                    value = torch.tensor(float(value))
                if key == "step":
                    entry[key] = value.detach().to(device=p.device, dtype=torch.float32).clone()
                    continue
                if value.shape != p.shape:
                    raise ValueError(f"the saved optimizer state {key!r} of parameter {index} "
                                     f"has shape {tuple(value.shape)}, the parameter "
                                     f"{tuple(p.shape)}")
                entry[key] = value.detach().to(device=p.device, dtype=p.dtype).clone()
            new_state[p] = entry
        self.state = new_state
        for key in self.defaults:
            if key in groups[0]:
                value = groups[0][key]
                self.param_groups[0][key] = tuple(value) if isinstance(value, list) else value
        self._steps = {}
        if self.state:
            self._init_state()

    def share_memory(self) -> Optimizer:
        """Create every parameter's state now and move it to shared memory, so that processes
        given this optimizer (pickled by ``torch.multiprocessing`` together with the
        parameters, themselves shared) all update the same statistics -- the shared RMSprop or
        Adam of A3C (Mnih et al., 2016). Returns ``self``."""
        if isinstance(self, SGD) and self.defaults["momentum"]:
            raise ValueError("sgd with momentum creates its buffers at the first step and "
                             "cannot share them between processes; use adam or rmsprop")
        self._init_state()
        for entry in self.state.values():
            for value in entry.values():
                value.share_memory_()  # the step counts are views of one shared tensor
        for counts in self._steps.values():
            counts.share_memory_()
        return self

    # --- for subclasses ------------------------------------------------------------------

    def _update(self, group: dict[str, Any], params: list[Tensor]) -> None:
        raise NotImplementedError

    def _init_state(self) -> None:
        """Give every parameter its state, keeping what it has; put the step counts of each
        (device, dtype) in one tensor, so that :meth:`_count_step` is one operation."""
        for p in self.params:
            entry = self.state.setdefault(p, {})
            entry.setdefault("step", torch.zeros((), dtype=torch.float32, device=p.device))
            for name in self.state_keys:
                entry.setdefault(name, torch.zeros_like(p, memory_format=torch.preserve_format))
        self._steps = {}
        for key, params in _by_device_and_dtype(self.params).items():
            counts = torch.stack([self.state[p]["step"] for p in params])
            self._steps[key] = counts
            for i, p in enumerate(params):
                self.state[p]["step"] = counts[i]

    def _count_step(self, params: list[Tensor]) -> list[Tensor]:
        """Add one to the step count of ``params`` (one device and dtype); return the counts.

        Every parameter of a (device, dtype) is counted together: all of them take every step,
        unless some have no gradient -- then their counts are incremented one by one.
        """
        key = (params[0].device, params[0].dtype)
        counts = [self.state[p]["step"] for p in params]
        all_params = self._steps.get(key)
        if all_params is not None and all_params.numel() == len(params):
            all_params.add_(1)
        else:
            for count in counts:
                count.add_(1)
        return counts


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), as ``torch.optim.Adam`` computes it (without amsgrad).

    :param params: the parameters.
    :param lr: learning rate.
    :param betas: decay rates of the first and second moment estimates.
    :param eps: added to the denominator.
    :param weight_decay: L2 penalty added to the gradient.
    """

    state_keys = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    def _update(self, group: dict[str, Any], params: list[Tensor]) -> None:
        lr, (beta1, beta2) = float(group["lr"]), group["betas"]
        eps, weight_decay = group["eps"], group["weight_decay"]
        grads = [p.grad for p in params]
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        exp_avg_sqs = [self.state[p]["exp_avg_sq"] for p in params]
        steps = self._count_step(params)
        if self._use_fused(params):
            kernel = torch._fused_adamw_ if self.decoupled else torch._fused_adam_
            kernel(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False,  # type: ignore[arg-type]
                   lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay, eps=eps,
                   maximize=False, grad_scale=None, found_inf=None)
            return
        for p, grad, exp_avg, exp_avg_sq, step in zip(params, grads, exp_avgs, exp_avg_sqs,
                                                       steps, strict=True):
            assert grad is not None
            if weight_decay and self.decoupled:
                p.mul_(1.0 - lr * weight_decay)
            elif weight_decay:
                grad = grad.add(p, alpha=weight_decay)
            k = float(step)
            exp_avg.lerp_(grad, 1.0 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
            denom = (exp_avg_sq.sqrt() / math.sqrt(1.0 - beta2 ** k)).add_(eps)
            p.addcdiv_(exp_avg, denom, value=-lr / (1.0 - beta1 ** k))


    @staticmethod
    def _use_fused(params: list[Tensor]) -> bool:
        """PyTorch has fused Adam kernels for floating-point tensors on CUDA, and on the CPU
        since 2.4; elsewhere the same arithmetic runs as separate operations."""
        first = params[0]
        return first.is_floating_point() and _has_fused_adam(first.device.type, first.dtype)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``
    computes it: the parameters shrink by ``lr * weight_decay`` each step."""

    decoupled = True

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum, as ``torch.optim.SGD``
    computes it (no dampening): ``buf = momentum * buf + grad`` (``buf = grad`` the first
    time), then ``p -= lr * buf`` (Nesterov: ``p -= lr * (grad + momentum * buf)``)."""

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov,
                         weight_decay=weight_decay, dampening=0.0)

    def _init_state(self) -> None:
        """SGD keeps no step count (as torch's); its momentum buffer starts at the first
        gradient, so :meth:`_update` creates it."""

    def _update(self, group: dict[str, Any], params: list[Tensor]) -> None:
        lr, momentum, weight_decay = float(group["lr"]), group["momentum"], group["weight_decay"]
        grads = [p.grad for p in params]
        if weight_decay:
            grads = [g.add(p, alpha=weight_decay) for g, p in zip(grads, params, strict=True)]  # type: ignore[union-attr]
        if momentum:
            updates = []
            for p, grad in zip(params, grads, strict=True):
                entry = self.state.setdefault(p, {})
                buf = entry.get("momentum_buffer")
                if buf is None:
                    buf = entry["momentum_buffer"] = torch.clone(grad).detach()  # type: ignore[arg-type]
                else:
                    buf.mul_(momentum).add_(grad)  # type: ignore[arg-type]
                updates.append(grad.add(buf, alpha=momentum)  # type: ignore[union-attr]
                               if group["nesterov"] else buf)
            grads = updates
        torch._foreach_add_(params, grads, alpha=-lr)  # type: ignore[arg-type]


class RMSprop(Optimizer):
    """RMSprop (Hinton, 2012), as ``torch.optim.RMSprop`` computes it (not centered):
    ``sq = alpha * sq + (1 - alpha) * grad**2``, then ``p -= lr * grad / (sqrt(sq) + eps)``
    (with momentum: through a buffer ``buf = momentum * buf + grad / (sqrt(sq) + eps)``)."""

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, momentum=momentum,
                         weight_decay=weight_decay, centered=False)
        self.state_keys = ("square_avg", "momentum_buffer") if momentum else ("square_avg",)

    def _update(self, group: dict[str, Any], params: list[Tensor]) -> None:
        lr, alpha, eps = float(group["lr"]), group["alpha"], group["eps"]
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        self._count_step(params)
        for p in params:
            grad, entry = p.grad, self.state[p]
            assert grad is not None
            if weight_decay:
                grad = grad.add(p, alpha=weight_decay)
            square_avg = entry["square_avg"]
            square_avg.mul_(alpha).addcmul_(grad, grad, value=1.0 - alpha)
            avg = square_avg.sqrt().add_(eps)
            if momentum > 0:
                buf = entry["momentum_buffer"]
                buf.mul_(momentum).addcdiv_(grad, avg)
                p.add_(buf, alpha=-lr)
            else:
                p.addcdiv_(grad, avg, value=-lr)


def make_optimizer(params: Iterable[Tensor], config: OptimizerConfig) -> Optimizer:
    """Build the optimizer that ``config`` describes, at the schedule's initial rate."""
    lr = value_at(config.lr, 0.0)
    if config.name in ("adam", "adamw"):
        cls = Adam if config.name == "adam" else AdamW
        return cls(params, lr=lr, betas=config.betas, eps=config.eps,
                   weight_decay=config.weight_decay)
    if config.name == "sgd":
        return SGD(params, lr=lr, momentum=config.momentum, nesterov=config.nesterov,
                   weight_decay=config.weight_decay)
    return RMSprop(params, lr=lr, alpha=config.alpha, eps=config.eps,
                   momentum=config.momentum, weight_decay=config.weight_decay)


def set_learning_rate(optimizer: Optimizer | torch.optim.Optimizer, config: OptimizerConfig,
                      progress: float) -> float:
    """Apply the scheduled learning rate for ``progress`` in [0, 1]; return it."""
    lr = value_at(config.lr, progress)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def load_optimizer_state(optimizer: Optimizer | torch.optim.Optimizer,
                         state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict(state)``, sharing no tensor with ``state``.

    rlkit's optimizers copy what they load; ``torch.optim``'s keep the given moment tensors when
    their dtype and device already match, so for those ``state`` is copied first -- loading
    another live optimizer's ``state_dict()`` directly would make both update the same tensors.
    """
    if isinstance(optimizer, Optimizer):
        optimizer.load_state_dict(state)
    else:
        optimizer.load_state_dict(copy.deepcopy(state))


def restore_optimizer_state(optimizer: Optimizer | torch.optim.Optimizer,
                            state: dict[str, Any]) -> None:
    """Load ``state`` into ``optimizer`` by writing into its existing state tensors, so that
    processes sharing them (A3C's workers) see the restored values; where the structure differs
    (no state yet, other keys or shapes), fall back to :func:`load_optimizer_state`."""
    if not isinstance(optimizer, Optimizer) or not optimizer.state:
        load_optimizer_state(optimizer, state)
        return
    saved = state["state"]
    pairs: list[tuple[Tensor, Tensor]] = []
    for index, p in enumerate(optimizer.params):
        entry, source = optimizer.state.get(p), saved.get(index)
        if entry is None or source is None or set(entry) != set(source):
            load_optimizer_state(optimizer, state)
            return
        for key, value in entry.items():
            other = torch.as_tensor(source[key])
            if other.shape != value.shape:
                load_optimizer_state(optimizer, state)
                return
            pairs.append((value, other))
    with torch.no_grad():
        for value, other in pairs:
            value.copy_(other)
    group = state["param_groups"][0]
    for key in optimizer.defaults:
        if key in group:
            value = group[key]
            optimizer.param_groups[0][key] = tuple(value) if isinstance(value, list) else value


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


_FUSED_ADAM: dict[tuple[str, torch.dtype], bool] = {}


def _has_fused_adam(device_type: str, dtype: torch.dtype) -> bool:
    """Whether this PyTorch has a fused Adam kernel for ``device_type`` and ``dtype``: tried
    once on a one-element tensor (the kernel's coverage changes between releases)."""
    key = (device_type, dtype)
    if key not in _FUSED_ADAM:
        if device_type not in ("cpu", "cuda"):
            _FUSED_ADAM[key] = False
        else:
            t = [torch.zeros(1, dtype=dtype, device=device_type) for _ in range(4)]
            step = [torch.zeros((), dtype=torch.float32, device=device_type)]
            try:
                torch._fused_adam_([t[0]], [t[1]], [t[2]], [t[3]], [], step, amsgrad=False,  # type: ignore[arg-type]
                                   lr=1e-3, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8,
                                   maximize=False, grad_scale=None, found_inf=None)
                _FUSED_ADAM[key] = True
            except (RuntimeError, NotImplementedError, TypeError):
                _FUSED_ADAM[key] = False
    return _FUSED_ADAM[key]


def _by_device_and_dtype(params: list[Tensor]) -> dict[tuple[torch.device, torch.dtype],
                                                      list[Tensor]]:
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for p in params:
        groups.setdefault((p.device, p.dtype), []).append(p)
    return groups
