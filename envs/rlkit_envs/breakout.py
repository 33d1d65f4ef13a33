"""A MinAtar-like Breakout on a 10x10 grid, batched in tensors: image observations for CNNs.

Rules (rows 0-9 from the top, columns 0-9):

* Bricks fill rows 1-3. The paddle sits in row 9 and starts in column 4. The ball starts in
  row 3, in column 0 moving down-right or column 9 moving down-left (chosen at random).
* Actions: 0 stay, 1 paddle left, 2 paddle right (one column, kept on the grid). The paddle
  moves first, then the ball moves one cell diagonally:

  - off a side wall: the ball stays in the edge column and its horizontal direction reverses;
  - above row 0: the ball stays in row 0 and its vertical direction reverses;
  - into a brick: the brick breaks (reward +1), the ball keeps its row and its vertical
    direction reverses;
  - into row 9: if no brick is left, rows 1-3 are refilled; if the paddle is under the
    ball's column the ball bounces up (keeps its row, vertical direction reverses); else if
    the paddle is where the ball is heading it bounces back (both directions reverse);
    otherwise the ball is lost and the episode terminates (reward 0).

* Observations ``(4, 10, 10)`` float32 in {0, 1}: channel 0 the paddle, 1 the ball, 2 the
  ball's previous cell (its trail, which gives the direction), 3 the bricks.
* Episodes are truncated at 1000 steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from rlkit_envs.core import BatchedEnv

__all__ = ["Breakout", "BreakoutParams", "BreakoutState", "breakout_step"]

SIZE = 10
CHANNELS = 4  # paddle, ball, trail, bricks


class BreakoutState(NamedTuple):
    """``(N,)`` int64 positions and directions, ``(N, 100)`` bool bricks (row-major grid)."""

    paddle: Tensor
    ball_x: Tensor
    ball_y: Tensor
    dx: Tensor
    dy: Tensor
    trail_x: Tensor
    trail_y: Tensor
    bricks: Tensor


@dataclass(frozen=True)
class BreakoutParams:
    """Where the bricks are."""

    brick_rows: tuple[int, ...] = (1, 2, 3)


def _full_wall(n: int, p: BreakoutParams, device: torch.device) -> Tensor:
    wall = torch.zeros(n, SIZE, SIZE, dtype=torch.bool, device=device)
    wall[:, list(p.brick_rows)] = True
    return wall.view(n, SIZE * SIZE)


def breakout_step(
    state: BreakoutState, action: Tensor, p: BreakoutParams
) -> tuple[BreakoutState, Tensor, Tensor, Tensor]:
    """One step of every env; ``action`` is ``(N,)`` in {0, 1, 2}."""
    paddle = (state.paddle + (action == 2).long() - (action == 1).long()).clamp_(0, SIZE - 1)
    x, y, dx, dy = state.ball_x, state.ball_y, state.dx, state.dy
    new_x = x + dx
    new_y = y + dy
    side = (new_x < 0) | (new_x >= SIZE)
    new_x = new_x.clamp_(0, SIZE - 1)
    dx = torch.where(side, -dx, dx)

    ceiling = new_y < 0
    cell = new_y.clamp(0, SIZE - 1) * SIZE + new_x
    occupied = state.bricks.gather(1, cell[:, None])
    brick = occupied[:, 0] & ~ceiling
    bricks = state.bricks.scatter(1, cell[:, None], occupied & ~brick[:, None])
    bottom = (new_y == SIZE - 1) & ~brick
    refill = bottom & ~bricks.any(dim=1)
    bricks = torch.where(refill[:, None], _full_wall(1, p, bricks.device), bricks)
    straight = bottom & (x == paddle)
    back = bottom & ~straight & (new_x == paddle)
    lost = bottom & ~straight & ~back

    keep_row = brick | straight | back
    new_y = torch.where(keep_row, y, new_y).clamp_(min=0)
    dy = torch.where(ceiling | keep_row, -dy, dy)
    dx = torch.where(back, -dx, dx)
    new_state = BreakoutState(paddle, new_x, new_y, dx, dy, x, y, bricks)
    return new_state, _observe(new_state), brick.to(torch.float32), lost


def _observe(state: BreakoutState) -> Tensor:
    n = state.paddle.shape[0]
    obs = torch.zeros(n, CHANNELS, SIZE * SIZE, device=state.paddle.device)
    cells = torch.stack((
        (SIZE - 1) * SIZE + state.paddle,
        state.ball_y * SIZE + state.ball_x,
        state.trail_y * SIZE + state.trail_x,
    ), dim=1)
    obs[:, :3].scatter_(2, cells[:, :, None], 1.0)
    obs[:, 3] = state.bricks
    return obs.view(n, CHANNELS, SIZE, SIZE)


class Breakout(BatchedEnv[BreakoutState, BreakoutParams]):
    """A batch of MinAtar-like Breakout games; observations ``(N, 4, 10, 10)``, actions {0,1,2}.

    :param num_envs: environments in the batch.
    :param device: where the state lives.
    :param max_episode_steps: truncation limit (1000); ``None`` for none.
    :param compile: wrap the step function with :func:`torch.compile`.
    :param frame_stack, check_actions: see :class:`~rlkit_envs.core.BatchedEnv`.
    """

    state_batch_dim = 0

    def __init__(
        self,
        num_envs: int = 1,
        *,
        device: torch.device | str = "cpu",
        max_episode_steps: int | None = 1000,
        compile: bool = False,
        frame_stack: int = 1,
        check_actions: bool = False,
    ) -> None:
        super().__init__(
            num_envs,
            single_observation_space=spaces.Box(0.0, 1.0, (CHANNELS, SIZE, SIZE),
                                                dtype=np.float32),
            single_action_space=spaces.Discrete(3),
            step_fn=breakout_step,
            params=BreakoutParams(),
            device=device,
            max_episode_steps=max_episode_steps,
            compile=compile,
            frame_stack=frame_stack,
            check_actions=check_actions,
        )

    def initial_state(self, n: int) -> BreakoutState:
        right = torch.randint(0, 2, (n,), generator=self.generator, device=self.device)
        x = right * (SIZE - 1)
        y = torch.full_like(x, 3)
        return BreakoutState(
            paddle=torch.full_like(x, 4),
            ball_x=x,
            ball_y=y,
            dx=1 - 2 * right,
            dy=torch.ones_like(x),
            trail_x=x.clone(),
            trail_y=y.clone(),
            bricks=_full_wall(n, self.params, self.device),
        )

    def observe(self, state: BreakoutState) -> Tensor:
        return _observe(state)
