"""Action noise for deterministic policies (DDPG, TD3): ``gaussian`` and ``ornstein_uhlenbeck``.

Two parts with two jobs:

* the **controller** (:class:`ActionNoiseExploration`, what ``exploration:`` builds) gives the
  noise scale ``sigma`` for the current step -- from a schedule here, from an adaptive
  controller elsewhere -- through the same interface DQN's epsilon uses, so whatever drives
  sigma needs no change in the algorithm;
* the **process** (:class:`GaussianNoise`, :class:`OrnsteinUhlenbeckNoise`) draws unit-scale
  noise for ``N`` environments at once, keeps its per-env state on the agent's device, restarts
  where an episode starts, and is part of the agent's ``state_dict``.

Noise lives in the policy's normalised action space, ``[-1, 1]`` per dimension (the actor's
``tanh`` output, before it is rescaled to the env's bounds): ``sigma: 0.1`` is a tenth of half
the action range, whatever the env's units.

The Ornstein-Uhlenbeck process (Uhlenbeck & Ornstein, 1930; used for exploration by Lillicrap
et al., 2016) is ``x <- x + theta * (mu - x) * dt + sqrt(dt) * eps``, ``eps ~ N(0, 1)``, with
``mu = 0``; the noise added is ``sigma * x``. Its stationary standard deviation is
``sqrt(1 / (2 * theta))`` (about 1.8 with the defaults), so its ``sigma`` is not comparable with
the Gaussian's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from rlkit.schedules import Scheduled, value_at
from rlkit.validation import param

__all__ = [
    "ActionNoise",
    "ActionNoiseExploration",
    "GaussianNoise",
    "GaussianNoiseConfig",
    "OrnsteinUhlenbeckConfig",
    "OrnsteinUhlenbeckNoise",
    "build_gaussian",
    "build_ornstein_uhlenbeck",
]


class ActionNoise(Protocol):
    """A per-env noise process of unit scale (the agent multiplies by sigma)."""

    def sample(self, generator: torch.Generator) -> Tensor:
        """The next noise, ``(N, action_dim)``."""
        ...

    def reset(self, mask: Tensor | None = None) -> None:
        """Restart the process of the envs in ``mask`` (``(N,)`` bool; None: all)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class GaussianNoise:
    """Independent ``N(0, 1)`` noise for every env, dimension and step (no state)."""

    def __init__(self, num_envs: int, action_dim: int, device: torch.device) -> None:
        self.shape = (num_envs, action_dim)
        self.device = device

    def sample(self, generator: torch.Generator) -> Tensor:
        return torch.randn(self.shape, generator=generator, device=self.device)

    def reset(self, mask: Tensor | None = None) -> None:
        """Nothing to restart."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Nothing to restore."""


class OrnsteinUhlenbeckNoise:
    """One Ornstein-Uhlenbeck process per env and action dimension (see the module docstring).

    :param theta: mean reversion rate.
    :param dt: time step.
    """

    def __init__(self, num_envs: int, action_dim: int, device: torch.device, *, theta: float,
                 dt: float) -> None:
        self.theta = float(theta)
        self.dt = float(dt)
        self.x = torch.zeros((num_envs, action_dim), device=device)

    def sample(self, generator: torch.Generator) -> Tensor:
        eps = torch.randn(self.x.shape, generator=generator, device=self.x.device)
        self.x = self.x - self.theta * self.dt * self.x + math.sqrt(self.dt) * eps
        return self.x

    def reset(self, mask: Tensor | None = None) -> None:
        if mask is None:
            self.x = torch.zeros_like(self.x)
        else:
            self.x = self.x * (~mask.to(self.x.device, torch.bool)).unsqueeze(1)

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.x.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        x = state["x"]
        if tuple(x.shape) != tuple(self.x.shape):
            raise ValueError(f"Ornstein-Uhlenbeck state of shape {tuple(x.shape)} does not fit "
                             f"{tuple(self.x.shape)} (number of envs or action size differ)")
        self.x = x.to(self.x.device, self.x.dtype).clone()


@dataclass(kw_only=True)
class GaussianNoiseConfig:
    """Gaussian action noise, drawn afresh for every env and step."""

    sigma: Scheduled = param(0.1, ge=0.0)
    """Standard deviation in the normalised action space (1.0: half the action range): a
    number or a schedule such as ``{kind: linear, start: 0.3, end: 0.05}``."""


@dataclass(kw_only=True)
class OrnsteinUhlenbeckConfig:
    """Ornstein-Uhlenbeck action noise: correlated in time, one process per env, restarted at
    every episode start."""

    sigma: Scheduled = param(0.1, ge=0.0)
    """Scale of the process in the normalised action space: a number or a schedule."""
    theta: float = param(0.15, gt=0.0)
    """Mean reversion rate: how fast the noise returns towards zero."""
    dt: float = param(1e-2, gt=0.0)
    """Time step of the process."""


class ActionNoiseExploration:
    """The ``gaussian`` / ``ornstein_uhlenbeck`` controller: sigma from a schedule, and the
    process to scale by it (:meth:`make_noise`).

    :param sigma: the noise scale, a number or a schedule over ``total_steps``.
    :param total_steps: the run's budget in env steps.
    :param process: ``"gaussian"`` or ``"ornstein_uhlenbeck"``.
    """

    def __init__(self, sigma: Scheduled, total_steps: int, process: str, *,
                 theta: float = 0.15, dt: float = 1e-2) -> None:
        self.sigma = sigma
        self.total_steps = max(int(total_steps), 1)
        self.process = process
        self.theta = theta
        self.dt = dt

    def value(self, step: int) -> float:
        """Sigma at env step ``step``."""
        return value_at(self.sigma, step / self.total_steps)

    def observe_returns(self, returns: Tensor, step: int) -> None:
        """A scheduled sigma ignores feedback."""

    def make_noise(self, num_envs: int, action_dim: int, device: torch.device) -> ActionNoise:
        """The noise process for ``num_envs`` envs of ``action_dim`` actions."""
        if self.process == "ornstein_uhlenbeck":
            return OrnsteinUhlenbeckNoise(num_envs, action_dim, device, theta=self.theta,
                                          dt=self.dt)
        return GaussianNoise(num_envs, action_dim, device)

    def state_dict(self) -> dict[str, Any]:
        return {"total_steps": self.total_steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.total_steps = int(state["total_steps"])


def build_gaussian(params: GaussianNoiseConfig, total_steps: int) -> ActionNoiseExploration:
    return ActionNoiseExploration(params.sigma, total_steps, "gaussian")


def build_ornstein_uhlenbeck(params: OrnsteinUhlenbeckConfig,
                             total_steps: int) -> ActionNoiseExploration:
    return ActionNoiseExploration(params.sigma, total_steps, "ornstein_uhlenbeck",
                                  theta=params.theta, dt=params.dt)
