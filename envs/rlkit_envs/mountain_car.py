"""MountainCar-v0 and MountainCarContinuous-v0 as batches of tensors.

Both follow gymnasium's implementations (Moore, 1990): a car in a valley, state
``(position, velocity)``, ``velocity += push + cos(3 position) * (-gravity)`` clipped to
``max_speed``, ``position += velocity`` clipped to ``[min_position, max_position]``, velocity
zeroed when the car hits the left wall moving left; the episode terminates once
``position >= goal_position`` and ``velocity >= goal_velocity``. Initial position
U[-0.6, -0.4), velocity 0.

* MountainCar-v0: actions 0, 1, 2 push with ``(action - 1) * force``; reward -1 per step;
  goal at 0.5; truncation at 200.
* MountainCarContinuous-v0: a ``(1,)`` action in [-1, 1] (clipped) pushes with
  ``action * power``; reward ``-0.1 action**2`` (of the action as given) plus 100 on reaching
  the goal at 0.45; truncation at 999.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from rlkit_envs.core import BatchedEnv

__all__ = [
    "MountainCar",
    "MountainCarContinuous",
    "MountainCarParams",
    "mountain_car_continuous_step",
    "mountain_car_step",
]


@dataclass(frozen=True)
class MountainCarParams:
    """Constants of both variants; ``force`` drives the discrete one, ``power`` the other."""

    min_position: float = -1.2
    max_position: float = 0.6
    max_speed: float = 0.07
    goal_position: float = 0.5
    goal_velocity: float = 0.0
    force: float = 0.001
    power: float = 0.0015
    gravity: float = 0.0025
    min_action: float = -1.0
    max_action: float = 1.0


def _move(
    position: Tensor, velocity: Tensor, push: Tensor, p: MountainCarParams
) -> tuple[Tensor, Tensor, Tensor]:
    """The shared physics: new position, velocity and termination."""
    velocity = (velocity + push).sub_(torch.cos(3 * position).mul_(p.gravity))
    velocity = velocity.clamp_(-p.max_speed, p.max_speed)
    position = (position + velocity).clamp_(p.min_position, p.max_position)
    # Hitting the left wall stops the car (position was clipped to exactly min_position).
    velocity = velocity.masked_fill_((position <= p.min_position) & (velocity < 0), 0.0)
    terminated = (position >= p.goal_position) & (velocity >= p.goal_velocity)
    return position, velocity, terminated


def mountain_car_step(
    state: Tensor, action: Tensor, p: MountainCarParams
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One step of every env: ``(N, 2)`` state (also the observation), ``(N,)`` actions in
    {0, 1, 2}."""
    push = (action.to(state.dtype) - 1.0).mul_(p.force)
    position, velocity, terminated = _move(state[:, 0], state[:, 1], push, p)
    new_state = torch.stack((position, velocity), dim=1)
    return new_state, new_state, torch.full_like(position, -1.0), terminated


def mountain_car_continuous_step(
    state: Tensor, action: Tensor, p: MountainCarParams
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One step of every env: ``(N, 2)`` state (also the observation), ``(N, 1)`` actions."""
    a = action[:, 0]
    push = a.clamp(p.min_action, p.max_action).mul_(p.power)
    position, velocity, terminated = _move(state[:, 0], state[:, 1], push, p)
    new_state = torch.stack((position, velocity), dim=1)
    reward = terminated.to(state.dtype).mul_(100.0).sub_(a.square().mul_(0.1))
    return new_state, new_state, reward, terminated


class MountainCar(BatchedEnv[Tensor, MountainCarParams]):
    """A batch of MountainCar-v0 environments; observations ``(N, 2)``, actions {0, 1, 2}.

    :attr:`state` is ``(N, 2)``: ``position, velocity`` per env (the observation).

    :param num_envs: environments in the batch.
    :param device: where the state lives.
    :param max_episode_steps: truncation limit (200 as in MountainCar-v0); ``None`` for none.
    :param compile: wrap the step function with :func:`torch.compile`.
    :param frame_stack, check_actions: see :class:`~rlkit_envs.core.BatchedEnv`.
    :param goal_velocity, min_position, max_position, max_speed, goal_position, force,
        gravity: see :class:`MountainCarParams`.
    """

    default_reset_bounds = (-0.6, -0.4)
    state_batch_dim = 0
    settable_params = ("force", "gravity", "goal_position", "goal_velocity")
    """``min_position``, ``max_position`` and ``max_speed`` bound the observation space, so
    they stay as built."""

    def __init__(
        self,
        num_envs: int = 1,
        *,
        device: torch.device | str = "cpu",
        max_episode_steps: int | None = 200,
        compile: bool = False,
        frame_stack: int = 1,
        check_actions: bool = False,
        goal_velocity: float = 0.0,
        min_position: float = -1.2,
        max_position: float = 0.6,
        max_speed: float = 0.07,
        goal_position: float = 0.5,
        force: float = 0.001,
        gravity: float = 0.0025,
    ) -> None:
        params = MountainCarParams(
            min_position=float(min_position), max_position=float(max_position),
            max_speed=float(max_speed), goal_position=float(goal_position),
            goal_velocity=float(goal_velocity), force=float(force), gravity=float(gravity),
        )
        super().__init__(
            num_envs,
            single_observation_space=_observation_space(params),
            single_action_space=spaces.Discrete(3),
            step_fn=mountain_car_step,
            params=params,
            device=device,
            max_episode_steps=max_episode_steps,
            compile=compile,
            frame_stack=frame_stack,
            check_actions=check_actions,
        )

    def initial_state(self, n: int) -> Tensor:
        return _initial_state(self, n)

    def observe(self, state: Tensor) -> Tensor:
        return state


class MountainCarContinuous(BatchedEnv[Tensor, MountainCarParams]):
    """A batch of MountainCarContinuous-v0 environments; actions ``(N, 1)`` in [-1, 1].

    :param num_envs: environments in the batch.
    :param device: where the state lives.
    :param max_episode_steps: truncation limit (999 as in MountainCarContinuous-v0).
    :param compile: wrap the step function with :func:`torch.compile`.
    :param frame_stack, check_actions: see :class:`~rlkit_envs.core.BatchedEnv`.
    :param goal_velocity, min_position, max_position, max_speed, goal_position, power,
        gravity, min_action, max_action: see :class:`MountainCarParams`.
    """

    default_reset_bounds = (-0.6, -0.4)
    state_batch_dim = 0
    settable_params = ("power", "gravity", "goal_position", "goal_velocity")
    """``min_position``, ``max_position`` and ``max_speed`` bound the observation space, and
    ``min_action``/``max_action`` the action space, so they stay as built."""

    def __init__(
        self,
        num_envs: int = 1,
        *,
        device: torch.device | str = "cpu",
        max_episode_steps: int | None = 999,
        compile: bool = False,
        frame_stack: int = 1,
        check_actions: bool = False,
        goal_velocity: float = 0.0,
        min_position: float = -1.2,
        max_position: float = 0.6,
        max_speed: float = 0.07,
        goal_position: float = 0.45,
        power: float = 0.0015,
        gravity: float = 0.0025,
        min_action: float = -1.0,
        max_action: float = 1.0,
    ) -> None:
        params = MountainCarParams(
            min_position=float(min_position), max_position=float(max_position),
            max_speed=float(max_speed), goal_position=float(goal_position),
            goal_velocity=float(goal_velocity), power=float(power), gravity=float(gravity),
            min_action=float(min_action), max_action=float(max_action),
        )
        super().__init__(
            num_envs,
            single_observation_space=_observation_space(params),
            single_action_space=spaces.Box(low=params.min_action, high=params.max_action,
                                           shape=(1,), dtype=np.float32),
            step_fn=mountain_car_continuous_step,
            params=params,
            device=device,
            max_episode_steps=max_episode_steps,
            compile=compile,
            frame_stack=frame_stack,
            check_actions=check_actions,
        )

    def initial_state(self, n: int) -> Tensor:
        return _initial_state(self, n)

    def observe(self, state: Tensor) -> Tensor:
        return state


def _initial_state(env: BatchedEnv[Tensor, MountainCarParams], n: int) -> Tensor:
    """Position U[low, high) (gymnasium's -0.6, -0.4 unless reset options say otherwise),
    velocity 0."""
    low, high = env.reset_bounds or env.default_reset_bounds or (-0.6, -0.4)
    position = env.uniform(low, high, (n, 1))
    return torch.cat((position, torch.zeros_like(position)), dim=1)


def _observation_space(p: MountainCarParams) -> spaces.Box:
    low = np.array([p.min_position, -p.max_speed], dtype=np.float32)
    high = np.array([p.max_position, p.max_speed], dtype=np.float32)
    return spaces.Box(low, high, dtype=np.float32)
