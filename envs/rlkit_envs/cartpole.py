"""CartPole-v1 as a batch of tensors, and its partially observable variant without velocities.

The dynamics, reward, termination and initial-state distribution are those of gymnasium's
``CartPoleEnv`` (Barto, Sutton & Anderson, 1983): state ``(x, x_dot, theta, theta_dot)``,
action 0 pushes the cart left and 1 right with ``force_mag``, explicit Euler integration with
step ``tau`` (or semi-implicit Euler), termination when ``|x| > x_threshold`` or
``|theta| > theta_threshold_radians``, reward 1 per step (including the last), truncation at
500 steps.

``observe_velocities=False`` (registered as ``rlkit/CartPoleNoVel-v1``) observes only the cart
position and the pole angle: the velocities must be inferred from successive observations, so
a memoryless policy cannot balance the pole for long and a recurrent one can.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from rlkit_envs.core import BatchedEnv

__all__ = ["CartPole", "CartPoleParams", "cartpole_step"]


@dataclass(frozen=True)
class CartPoleParams:
    """Physical constants (gymnasium's defaults)."""

    gravity: float = 9.8
    masscart: float = 1.0
    masspole: float = 0.1
    length: float = 0.5
    """Half the pole's length."""
    force_mag: float = 10.0
    tau: float = 0.02
    """Seconds between state updates."""
    euler: bool = True
    """Explicit Euler (gymnasium's default); ``False`` for semi-implicit Euler."""
    x_threshold: float = 2.4
    theta_threshold_radians: float = 12 * 2 * math.pi / 360
    sutton_barto_reward: bool = False
    """Reward 0 per step and -1 on termination instead of 1 per step."""
    observe_velocities: bool = True
    """Observe ``(x, x_dot, theta, theta_dot)``; ``False`` for ``(x, theta)`` only."""

    @property
    def total_mass(self) -> float:
        return self.masspole + self.masscart

    @property
    def polemass_length(self) -> float:
        return self.masspole * self.length


def cartpole_step(
    state: Tensor, action: Tensor, p: CartPoleParams
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One step of every env.

    :param state: ``(N, 4)``: ``x, x_dot, theta, theta_dot`` per env.
    :param action: ``(N,)`` in {0, 1}.
    :returns: new state, observations (the new state itself, or its ``(N, 2)`` position and
        angle without velocities), rewards, terminations.
    """
    x, x_dot, theta, theta_dot = state.unbind(1)
    force = (action == 1).to(state.dtype) * (2 * p.force_mag) - p.force_mag
    costheta = torch.cos(theta)
    sintheta = torch.sin(theta)
    # temp = (force + polemass_length * theta_dot**2 * sin) / total_mass
    temp = torch.add(force, theta_dot.square().mul_(sintheta), alpha=p.polemass_length)
    temp.div_(p.total_mass)
    # thetaacc = (g sin - cos temp) / (length (4/3 - masspole cos**2 / total_mass))
    thetaacc = (p.gravity * sintheta).sub_(costheta * temp)
    thetaacc.div_(costheta.square().mul_(-p.masspole / p.total_mass).add_(4.0 / 3.0)
                  .mul_(p.length))
    # xacc = temp - polemass_length * thetaacc * cos / total_mass
    xacc = torch.addcmul(temp, thetaacc, costheta, value=-p.polemass_length / p.total_mass)
    # Eager, each variable is written straight into its column of the new state; under
    # torch.compile, plain expressions that the compiler fuses (it cannot trace `out=` views).
    fused = _compiling()
    out = None if fused else torch.empty_like(state)
    columns: Sequence[Tensor | None] = (None,) * 4 if out is None else out.unbind(1)
    if p.euler:
        new_x = torch.add(x, x_dot, alpha=p.tau, out=columns[0])
        new_x_dot = torch.add(x_dot, xacc, alpha=p.tau, out=columns[1])
        new_theta = torch.add(theta, theta_dot, alpha=p.tau, out=columns[2])
        new_theta_dot = torch.add(theta_dot, thetaacc, alpha=p.tau, out=columns[3])
    else:  # semi-implicit: positions move with the new velocities
        new_x_dot = torch.add(x_dot, xacc, alpha=p.tau, out=columns[1])
        new_x = torch.add(x, new_x_dot, alpha=p.tau, out=columns[0])
        new_theta_dot = torch.add(theta_dot, thetaacc, alpha=p.tau, out=columns[3])
        new_theta = torch.add(theta, new_theta_dot, alpha=p.tau, out=columns[2])
    if out is None:
        out = torch.stack((new_x, new_x_dot, new_theta, new_theta_dot), dim=1)
    terminated = (new_x.abs() > p.x_threshold).logical_or_(
        new_theta.abs() > p.theta_threshold_radians)
    reward = -terminated.to(state.dtype) if p.sutton_barto_reward else torch.ones_like(x)
    obs = out if p.observe_velocities else out[:, 0::2].contiguous()
    return out, obs, reward, terminated


def _compiling() -> bool:
    """Whether torch.compile is tracing the caller (``torch.compiler.is_compiling``, torch 2.3+)."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(is_compiling()) if is_compiling is not None else False


class CartPole(BatchedEnv[Tensor, CartPoleParams]):
    """A batch of CartPole-v1 environments; observations are the state ``(N, 4)``, float32
    (``(N, 2)``: position and angle, without velocities).

    :attr:`state` is ``(N, 4)``: ``x, x_dot, theta, theta_dot`` per env.

    :param num_envs: environments in the batch.
    :param device: where the state lives (``"cpu"``, ``"cuda"``, ...).
    :param max_episode_steps: truncation limit (500 as in CartPole-v1); ``None`` for none.
    :param compile: wrap the step function with :func:`torch.compile`.
    :param frame_stack, check_actions: see :class:`~rlkit_envs.core.BatchedEnv`.
    :param gravity, masscart, masspole, length, force_mag, tau, x_threshold,
        theta_threshold_radians, sutton_barto_reward, observe_velocities: see
        :class:`CartPoleParams`.
    :param kinematics_integrator: ``"euler"`` or ``"semi-implicit euler"``.
    """

    default_reset_bounds = (-0.05, 0.05)
    state_batch_dim = 0
    settable_params = ("gravity", "masscart", "masspole", "length", "force_mag", "tau")
    """``x_threshold`` and ``theta_threshold_radians`` bound the observation space, so they stay
    as built."""

    def __init__(
        self,
        num_envs: int = 1,
        *,
        device: torch.device | str = "cpu",
        max_episode_steps: int | None = 500,
        compile: bool = False,
        frame_stack: int = 1,
        check_actions: bool = False,
        gravity: float = 9.8,
        masscart: float = 1.0,
        masspole: float = 0.1,
        length: float = 0.5,
        force_mag: float = 10.0,
        tau: float = 0.02,
        kinematics_integrator: str = "euler",
        x_threshold: float = 2.4,
        theta_threshold_radians: float = 12 * 2 * math.pi / 360,
        sutton_barto_reward: bool = False,
        observe_velocities: bool = True,
    ) -> None:
        if kinematics_integrator not in ("euler", "semi-implicit euler"):
            raise ValueError(f"kinematics_integrator must be 'euler' or 'semi-implicit euler', "
                             f"got {kinematics_integrator!r}")
        params = CartPoleParams(
            gravity=float(gravity), masscart=float(masscart), masspole=float(masspole),
            length=float(length), force_mag=float(force_mag), tau=float(tau),
            euler=kinematics_integrator == "euler", x_threshold=float(x_threshold),
            theta_threshold_radians=float(theta_threshold_radians),
            sutton_barto_reward=bool(sutton_barto_reward),
            observe_velocities=bool(observe_velocities),
        )
        high = np.array([params.x_threshold * 2, np.inf, params.theta_threshold_radians * 2,
                         np.inf], dtype=np.float32)
        if not params.observe_velocities:
            high = high[0::2]
        super().__init__(
            num_envs,
            single_observation_space=spaces.Box(-high, high, dtype=np.float32),
            single_action_space=spaces.Discrete(2),
            step_fn=cartpole_step,
            params=params,
            device=device,
            max_episode_steps=max_episode_steps,
            compile=compile,
            frame_stack=frame_stack,
            check_actions=check_actions,
        )

    def initial_state(self, n: int) -> Tensor:
        low, high = self.reset_bounds or self.default_reset_bounds
        return self.uniform(low, high, (n, 4))

    def observe(self, state: Tensor) -> Tensor:
        return state if self.params.observe_velocities else state[:, 0::2].contiguous()
