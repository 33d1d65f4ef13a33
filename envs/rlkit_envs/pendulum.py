"""Pendulum-v1 as a batch of tensors.

The dynamics are those of gymnasium's ``PendulumEnv``: torque ``u`` clipped to
``[-max_torque, max_torque]``, ``thdot += (3 g / (2 l) sin th + 3 / (m l**2) u) dt`` clipped
to ``max_speed``, ``th += thdot dt``. The reward is minus the cost of the state *before* the
step, ``angle_normalize(th)**2 + 0.1 thdot**2 + 0.001 u**2``. Observations
``(cos th, sin th, thdot)``; never terminates; truncation at 200. Initial ``th`` U[-pi, pi),
``thdot`` U[-1, 1).

The angle is kept in [-pi, pi) after each step (gymnasium lets it grow): observations and
rewards depend on it only through ``sin``, ``cos`` and ``angle_normalize``, and a small angle
keeps float32 precise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.envs.classic_control.utils import verify_number_and_cast
from torch import Tensor

from rlkit_envs.core import BatchedEnv

__all__ = ["Pendulum", "PendulumParams", "angle_normalize", "pendulum_step"]

DEFAULT_X = math.pi
DEFAULT_Y = 1.0


@dataclass(frozen=True)
class PendulumParams:
    """Physical constants (gymnasium's defaults)."""

    g: float = 10.0
    m: float = 1.0
    l: float = 1.0  # noqa: E741 -- gymnasium's name
    dt: float = 0.05
    max_speed: float = 8.0
    max_torque: float = 2.0


def angle_normalize(x: Tensor) -> Tensor:
    """``x`` shifted by whole turns into [-pi, pi)."""
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def pendulum_step(
    state: Tensor, action: Tensor, p: PendulumParams
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One step of every env.

    :param state: ``(2, N)`` rows ``th, thdot``.
    :param action: ``(N, 1)`` torques.
    :returns: new state, ``(N, 3)`` observations, rewards, terminations (never).
    """
    th, thdot = state
    u = action[:, 0].clamp(-p.max_torque, p.max_torque)
    costs = angle_normalize(th).square() + 0.1 * thdot.square() + 0.001 * u.square()
    accel = (3 * p.g / (2 * p.l)) * torch.sin(th) + (3.0 / (p.m * p.l**2)) * u
    new_thdot = torch.add(thdot, accel, alpha=p.dt).clamp_(-p.max_speed, p.max_speed)
    new_th = angle_normalize(torch.add(th, new_thdot, alpha=p.dt))
    new_state = torch.stack((new_th, new_thdot))
    terminated = torch.zeros_like(th, dtype=torch.bool)
    return new_state, _observe(new_state), -costs, terminated


def _observe(state: Tensor) -> Tensor:
    th, thdot = state
    return torch.stack((torch.cos(th), torch.sin(th), thdot), dim=1)


class Pendulum(BatchedEnv[Tensor, PendulumParams]):
    """A batch of Pendulum-v1 environments; observations ``(N, 3)``, actions ``(N, 1)``.

    :attr:`state` is ``(2, N)``: rows ``th, thdot``.

    :param num_envs: environments in the batch.
    :param device: where the state lives.
    :param max_episode_steps: truncation limit (200 as in Pendulum-v1); ``None`` for none.
    :param compile: wrap the step function with :func:`torch.compile`.
    :param frame_stack, check_actions: see :class:`~rlkit_envs.core.BatchedEnv`.
    :param g, m, l, dt, max_speed, max_torque: see :class:`PendulumParams`.
    """

    default_reset_bounds = (DEFAULT_X, DEFAULT_Y)
    """Not low/high here but the half-widths of ``th`` and ``thdot`` (``x_init``,
    ``y_init`` in reset options, as in gymnasium)."""
    settable_params = ("g", "m", "l", "dt")
    """``max_speed`` and ``max_torque`` bound the observation and action spaces, so they stay
    as built."""

    def __init__(
        self,
        num_envs: int = 1,
        *,
        device: torch.device | str = "cpu",
        max_episode_steps: int | None = 200,
        compile: bool = False,
        frame_stack: int = 1,
        check_actions: bool = False,
        g: float = 10.0,
        m: float = 1.0,
        l: float = 1.0,  # noqa: E741 -- gymnasium's name
        dt: float = 0.05,
        max_speed: float = 8.0,
        max_torque: float = 2.0,
    ) -> None:
        params = PendulumParams(g=float(g), m=float(m), l=float(l), dt=float(dt),
                                max_speed=float(max_speed), max_torque=float(max_torque))
        high = np.array([1.0, 1.0, params.max_speed], dtype=np.float32)
        super().__init__(
            num_envs,
            single_observation_space=spaces.Box(low=-high, high=high, dtype=np.float32),
            single_action_space=spaces.Box(low=-params.max_torque, high=params.max_torque,
                                           shape=(1,), dtype=np.float32),
            step_fn=pendulum_step,
            params=params,
            device=device,
            max_episode_steps=max_episode_steps,
            compile=compile,
            frame_stack=frame_stack,
            check_actions=check_actions,
        )

    def parse_reset_options(self, options: dict[str, Any]) -> tuple[float, float] | None:
        x = verify_number_and_cast(options.get("x_init", DEFAULT_X))
        y = verify_number_and_cast(options.get("y_init", DEFAULT_Y))
        return float(x), float(y)

    def initial_state(self, n: int) -> Tensor:
        x, y = self.reset_bounds or self.default_reset_bounds
        state = self.uniform(-1.0, 1.0, (2, n))
        state[0] *= x
        state[1] *= y
        return state

    def observe(self, state: Tensor) -> Tensor:
        return _observe(state)
