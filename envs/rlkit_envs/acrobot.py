"""Acrobot-v1 as a batch of tensors.

The dynamics are those of gymnasium's ``AcrobotEnv`` (Sutton, 1996; Sutton & Barto's book
equations by default): two links, the joint between them actuated with torque -1, 0 or +1
(actions 0, 1, 2), one fourth-order Runge-Kutta step of ``dt`` = 0.2 s, joint angles wrapped to
[-pi, pi] and angular velocities bounded by ``max_vel_1``/``max_vel_2``. Observations are
``(cos t1, sin t1, cos t2, sin t2, dt1, dt2)``; reward -1 per step and 0 on the step the free
end rises above the bar (``-cos t1 - cos(t1 + t2) > 1``), which terminates; truncation at 500.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from rlkit_envs.core import BatchedEnv

__all__ = ["Acrobot", "AcrobotParams", "acrobot_step"]


@dataclass(frozen=True)
class AcrobotParams:
    """Physical constants (gymnasium's defaults)."""

    link_length_1: float = 1.0
    link_mass_1: float = 1.0
    link_mass_2: float = 1.0
    link_com_pos_1: float = 0.5
    link_com_pos_2: float = 0.5
    link_moi: float = 1.0
    """Moment of inertia of each link."""
    max_vel_1: float = 4 * math.pi
    max_vel_2: float = 9 * math.pi
    dt: float = 0.2
    gravity: float = 9.8
    book: bool = True
    """The book's equations (gymnasium's default); ``False`` for the NeurIPS paper's."""


def _dsdt(s: Tensor, torque: Tensor, p: AcrobotParams) -> Tensor:
    """Time derivative of the ``(4, N)`` state under ``torque`` (gymnasium's ``_dsdt``)."""
    m1, m2, l1 = p.link_mass_1, p.link_mass_2, p.link_length_1
    lc1, lc2, i1, i2, g = p.link_com_pos_1, p.link_com_pos_2, p.link_moi, p.link_moi, p.gravity
    theta1, theta2, dtheta1, dtheta2 = s
    cos2 = torch.cos(theta2)
    sin2 = torch.sin(theta2)
    d1 = (m1 * lc1**2 + m2 * (l1**2 + lc2**2) + i1 + i2) + (m2 * 2 * l1 * lc2) * cos2
    d2 = (m2 * lc2**2 + i2) + (m2 * l1 * lc2) * cos2
    phi2 = (m2 * lc2 * g) * torch.cos(theta1 + theta2 - math.pi / 2.0)
    phi1 = (
        (-m2 * l1 * lc2) * dtheta2.square() * sin2
        - (2 * m2 * l1 * lc2) * dtheta2 * dtheta1 * sin2
        + ((m1 * lc1 + m2 * l1) * g) * torch.cos(theta1 - math.pi / 2)
        + phi2
    )
    numerator = torque + d2 / d1 * phi1 - phi2
    if p.book:
        numerator = numerator - (m2 * l1 * lc2) * dtheta1.square() * sin2
    ddtheta2 = numerator / ((m2 * lc2**2 + i2) - d2.square() / d1)
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return torch.stack((dtheta1, dtheta2, ddtheta1, ddtheta2))


def _wrap(x: Tensor, low: float, high: float) -> Tensor:
    """Shift ``x`` by whole periods into [low, high], as gymnasium's ``wrap`` loops do."""
    period = high - low
    x = torch.where(x > high, x - period * torch.ceil((x - high) / period), x)
    return torch.where(x < low, x + period * torch.ceil((low - x) / period), x)


def acrobot_step(
    state: Tensor, action: Tensor, p: AcrobotParams
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One step of every env.

    :param state: ``(4, N)`` rows ``theta1, theta2, dtheta1, dtheta2``.
    :param action: ``(N,)`` in {0, 1, 2}: torque -1, 0, +1.
    :returns: new state, ``(N, 6)`` observations, rewards, terminations.
    """
    torque = action.to(state.dtype) - 1.0
    half = p.dt / 2.0
    k1 = _dsdt(state, torque, p)
    k2 = _dsdt(state + half * k1, torque, p)
    k3 = _dsdt(state + half * k2, torque, p)
    k4 = _dsdt(state + p.dt * k3, torque, p)
    ns = state + p.dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    theta1 = _wrap(ns[0], -math.pi, math.pi)
    theta2 = _wrap(ns[1], -math.pi, math.pi)
    dtheta1 = ns[2].clamp(-p.max_vel_1, p.max_vel_1)
    dtheta2 = ns[3].clamp(-p.max_vel_2, p.max_vel_2)
    new_state = torch.stack((theta1, theta2, dtheta1, dtheta2))
    terminated = -torch.cos(theta1) - torch.cos(theta2 + theta1) > 1.0
    reward = terminated.to(state.dtype) - 1.0
    return new_state, _observe(new_state), reward, terminated


def _observe(state: Tensor) -> Tensor:
    theta1, theta2, dtheta1, dtheta2 = state
    return torch.stack((torch.cos(theta1), torch.sin(theta1), torch.cos(theta2),
                        torch.sin(theta2), dtheta1, dtheta2), dim=1)


class Acrobot(BatchedEnv[Tensor, AcrobotParams]):
    """A batch of Acrobot-v1 environments; observations ``(N, 6)`` float32, actions {0, 1, 2}.

    :attr:`state` is ``(4, N)``: rows ``theta1, theta2, dtheta1, dtheta2``.

    :param num_envs: environments in the batch.
    :param device: where the state lives.
    :param max_episode_steps: truncation limit (500 as in Acrobot-v1); ``None`` for none.
    :param compile: wrap the step function with :func:`torch.compile`.
    :param frame_stack, check_actions: see :class:`~rlkit_envs.core.BatchedEnv`.
    :param link_length_1, link_mass_1, link_mass_2, link_com_pos_1, link_com_pos_2, link_moi,
        max_vel_1, max_vel_2, dt, gravity: see :class:`AcrobotParams`.
    :param book_or_nips: ``"book"`` (default) or ``"nips"`` dynamics.
    """

    default_reset_bounds = (-0.1, 0.1)
    settable_params = ("link_length_1", "link_mass_1", "link_mass_2", "link_com_pos_1",
                       "link_com_pos_2", "link_moi", "dt", "gravity")
    """``max_vel_1`` and ``max_vel_2`` bound the observation space, so they stay as built."""

    def __init__(
        self,
        num_envs: int = 1,
        *,
        device: torch.device | str = "cpu",
        max_episode_steps: int | None = 500,
        compile: bool = False,
        frame_stack: int = 1,
        check_actions: bool = False,
        link_length_1: float = 1.0,
        link_mass_1: float = 1.0,
        link_mass_2: float = 1.0,
        link_com_pos_1: float = 0.5,
        link_com_pos_2: float = 0.5,
        link_moi: float = 1.0,
        max_vel_1: float = 4 * math.pi,
        max_vel_2: float = 9 * math.pi,
        dt: float = 0.2,
        gravity: float = 9.8,
        book_or_nips: str = "book",
    ) -> None:
        if book_or_nips not in ("book", "nips"):
            raise ValueError(f"book_or_nips must be 'book' or 'nips', got {book_or_nips!r}")
        params = AcrobotParams(
            link_length_1=float(link_length_1), link_mass_1=float(link_mass_1),
            link_mass_2=float(link_mass_2), link_com_pos_1=float(link_com_pos_1),
            link_com_pos_2=float(link_com_pos_2), link_moi=float(link_moi),
            max_vel_1=float(max_vel_1), max_vel_2=float(max_vel_2), dt=float(dt),
            gravity=float(gravity), book=book_or_nips == "book",
        )
        high = np.array([1.0, 1.0, 1.0, 1.0, params.max_vel_1, params.max_vel_2],
                        dtype=np.float32)
        super().__init__(
            num_envs,
            single_observation_space=spaces.Box(low=-high, high=high, dtype=np.float32),
            single_action_space=spaces.Discrete(3),
            step_fn=acrobot_step,
            params=params,
            device=device,
            max_episode_steps=max_episode_steps,
            compile=compile,
            frame_stack=frame_stack,
            check_actions=check_actions,
        )

    def initial_state(self, n: int) -> Tensor:
        low, high = self.reset_bounds or self.default_reset_bounds
        return self.uniform(low, high, (4, n))

    def observe(self, state: Tensor) -> Tensor:
        return _observe(state)
