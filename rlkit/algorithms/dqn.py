"""Deep Q-Network (Mnih et al., 2015, https://doi.org/10.1038/nature14236), optionally Double
DQN (van Hasselt et al., 2016, https://arxiv.org/abs/1509.06461).

A network ``Q(s, .)`` -- the configured backbone plus a linear head with one output per
action -- is trained off-policy from a replay buffer towards one-step TD targets computed with
a slowly updated copy, the target network ``Q_target``::

    y = r + gamma * (1 - terminated) * Q_target(s', argmax_a Q_?(s', a))
        DQN:        Q_? = Q_target   (the target network picks and scores the next action)
        Double DQN: Q_? = Q          (the online network picks, the target network scores)
    L = mean(huber(Q(s, a) - y))

``s'`` is the true next observation: a truncated episode bootstraps from the value of its
final observation, a terminated one does not. Actions are epsilon-greedy, with epsilon from
the run's exploration controller or from the ``epsilon`` schedule below.

The schedule follows environment steps (``N`` per batched step): every ``train_freq`` steps
after ``learning_starts`` the agent takes ``gradient_steps`` minibatch updates (so the ratio
of updates to experience does not depend on ``N``); every ``target_update_interval`` steps
-- at most once per batched step -- the target network moves towards the online one
(``tau = 1``: a hard copy; ``tau < 1``: Polyak averaging).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import torch
from torch import Tensor, nn

from rlkit.buffers import ReplayBatch, ReplayBuffer
from rlkit.exploration import ScheduleExploration, linear
from rlkit.interfaces import BuildContext, Exploration, NanCheck, Transition
from rlkit.optim import (
    OptimizerConfig,
    clip_grad_norm,
    load_optimizer_state,
    make_optimizer,
    set_learning_rate,
)
from rlkit.schedules import Schedule, Scheduled
from rlkit.validation import IncompatibleError, param

LOSS_CAUSE = ("the TD loss diverged; lower algorithm.optimizer.lr, set algorithm.max_grad_norm, "
              "or scale the rewards (env.wrappers)")
GRAD_CAUSE = ("exploding gradients; lower algorithm.optimizer.lr or algorithm.max_grad_norm, "
              "or scale the rewards (env.wrappers)")
TARGET_CHUNK = 256
"""Rows per forward pass when the target network evaluates a learning phase's samples (larger
chunks save little time and cost memory for their activations)."""


@dataclass(kw_only=True)
class DQNConfig:
    """Deep Q-Network with a replay buffer, a target network and epsilon-greedy exploration."""

    gamma: float = param(0.99, ge=0.0, le=1.0)
    """Discount factor."""
    buffer_size: int = param(100_000, ge=1)
    """Transitions kept in the replay buffer (in total, over all environments)."""
    learning_starts: int = param(1000, ge=0)
    """Environment steps collected before the first gradient step."""
    batch_size: int = param(32, ge=1)
    """Transitions per gradient step, sampled uniformly from the replay buffer."""
    train_freq: int = param(4, ge=1)
    """Environment steps (``N`` per batched step) between learning phases."""
    gradient_steps: int = param(1, ge=1)
    """Gradient steps per learning phase."""
    target_update_interval: int = param(10_000, ge=1)
    """Environment steps between target network updates."""
    tau: float = param(1.0, gt=0.0, le=1.0)
    """Target update rate: 1.0 copies the online network (hard update), less averages."""
    double_dqn: bool = False
    """Double DQN: the online network picks the next action, the target network scores it."""
    max_grad_norm: float | None = param(10.0, gt=0.0)
    """Clip the global gradient norm to this (None: no clipping)."""
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=1e-4))
    """Optimizer and learning rate (a number or a schedule over training)."""
    epsilon: Scheduled = param(default_factory=lambda: linear(1.0, 0.05, fraction=0.1),
                               ge=0.0, le=1.0)
    """Probability of a uniformly random action: a number or a schedule (default: linear from
    1.0 to 0.05 over the first 10% of training). Ignored when the experiment configures an
    ``exploration:`` controller."""

    def __post_init__(self) -> None:
        if isinstance(self.epsilon, Schedule):
            for end, value in (("start", self.epsilon.start), ("end", self.epsilon.end)):
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"epsilon.{end} must be in [0, 1], got {value}")


class QNetwork(nn.Module):
    """``Q(s, .)``: a backbone's features through a linear head, one output per action.

    :param backbone: maps observations ``(B, ...)`` to features ``(B, backbone.output_dim)``.
    :param num_actions: size of the discrete action space.
    """

    def __init__(self, backbone: nn.Module, num_actions: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(int(backbone.output_dim), num_actions)  # type: ignore[arg-type]

    def forward(self, obs: Tensor) -> Tensor:
        return self.head(self.backbone(obs))


class DQN:
    """The DQN agent (ask/tell). See the module docstring for the targets and schedule.

    :param config: hyperparameters.
    :param ctx: spaces, device, seed, budget, backbone factory, exploration and nan policy.
    """

    def __init__(self, config: DQNConfig, ctx: BuildContext) -> None:
        space = ctx.env.action_space
        if not isinstance(space, gym.spaces.Discrete):
            raise IncompatibleError("algorithm.name", f"'dqn' needs a discrete action space, "
                                    f"env has {space}", alternatives=("ppo", "ddpg"))
        self.config = config
        self.device = ctx.device
        self.total_steps = max(int(ctx.total_steps), 1)
        self.nan_check: NanCheck = ctx.nan_check
        self.num_actions = int(space.n)
        self.action_start = int(space.start)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            q = QNetwork(ctx.backbone(ctx.env.observation_space), self.num_actions)
        self.q = q.to(self.device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.params = list(self.q.parameters())
        self._target_pairs: tuple[list[Tensor], ...] = (
            list(self.q_target.parameters()), list(self.params),
            list(self.q_target.buffers()), list(self.q.buffers()))
        self.optimizer = make_optimizer(self.params, config.optimizer)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(ctx.seed)
        self.exploration: Exploration = (
            ctx.exploration if ctx.exploration is not None
            else ScheduleExploration(config.epsilon, ctx.total_steps)
        )
        self.buffer = ReplayBuffer(capacity=config.buffer_size,
                                   observation_space=ctx.env.observation_space,
                                   action_space=space, num_envs=ctx.env.num_envs,
                                   device=self.device, size_key="algorithm.buffer_size")
        self.env_steps = 0
        """Environment steps observed (``N`` per batched step)."""
        self.gradient_steps = 0
        """Gradient steps taken."""
        self.next_train = config.train_freq
        """Environment step at which the next learning phase is due."""
        self.next_target_update = config.target_update_interval
        """Environment step at which the next target network update is due."""

    # --- ask/tell ------------------------------------------------------------------------

    @torch.no_grad()
    def act(self, obs: Tensor, explore: bool = True) -> Tensor:
        """Epsilon-greedy actions ``(N,)``; greedy when ``explore`` is ``False``."""
        action = self.q(obs).argmax(dim=1)
        epsilon = self.epsilon if explore else 0.0
        if epsilon > 0.0:
            n = action.shape[0]
            random = torch.randint(self.num_actions, (n,), generator=self.generator,
                                   device=self.device)
            coin = torch.rand(n, generator=self.generator, device=self.device)
            action = torch.where(coin < epsilon, random, action)
        return action + self.action_start if self.action_start else action

    def observe(self, transition: Transition) -> None:
        """Store the transition in the replay buffer and count its environment steps."""
        if self.action_start:
            transition = transition._replace(action=transition.action - self.action_start)
        self.buffer.add(transition)
        self.env_steps += transition.reward.shape[0]

    def update(self) -> dict[str, float]:
        """Update the target network and learn when due; metrics of the learning phase."""
        cfg = self.config
        if self.env_steps >= self.next_target_update:
            self.update_target()
            self.next_target_update = _next_multiple(self.env_steps, cfg.target_update_interval)
        if self.env_steps < self.next_train:
            return {}
        # A batched step of N > train_freq envs can make several phases due at once; taking
        # them all keeps the ratio of gradient steps to env steps independent of N.
        phases = (self.env_steps - self.next_train) // cfg.train_freq + 1
        self.next_train += phases * cfg.train_freq
        if self.env_steps < cfg.learning_starts or len(self.buffer) == 0:
            return {}
        return self.learn(phases * cfg.gradient_steps)

    # --- learning ------------------------------------------------------------------------

    @property
    def epsilon(self) -> float:
        """The current probability of a random action."""
        return float(self.exploration.value(self.env_steps))

    def td_target(self, batch: ReplayBatch, next_q_target: Tensor) -> Tensor:
        """``y = r + gamma * (1 - terminated) * Q_target(s', a')`` for ``batch``.

        ``a'`` maximises ``Q_target(s', .)`` (DQN) or the online ``Q(s', .)`` (Double DQN).

        :param batch: replayed transitions.
        :param next_q_target: ``Q_target(batch.next_obs)``, ``(B, num_actions)``.
        """
        with torch.no_grad():
            scores = self.q(batch.next_obs) if self.config.double_dqn else next_q_target
            best = scores.argmax(dim=1, keepdim=True)
            bootstrap = next_q_target.gather(1, best).squeeze(1)
            return batch.reward + self.config.gamma * bootstrap * (~batch.terminated)

    def learn(self, steps: int) -> dict[str, float]:
        """Take ``steps`` gradient steps on replayed minibatches; return their mean metrics.

        The minibatches of all ``steps`` are drawn at once (uniformly, with replacement, as
        separate draws would be). The target network does not change during a phase, so it is
        evaluated on every sampled ``s'`` in a few large passes -- and DQN's targets, which
        depend on it alone, are computed in one pass too; Double DQN's wait for the online
        network of their own step. A gradient step is then only the online network's forward
        and backward pass, the clipping and one fused optimizer step; the metrics stay on the
        device until the phase ends.
        """
        cfg = self.config
        progress = min(self.env_steps / self.total_steps, 1.0)
        lr = set_learning_rate(self.optimizer, cfg.optimizer, progress)
        bs = cfg.batch_size
        replay = self.buffer.sample(steps * bs, self.generator)
        with torch.no_grad():
            next_q = torch.cat([self.q_target(x) for x in replay.next_obs.split(TARGET_CHUNK)])
        targets = None if cfg.double_dqn else self.td_target(replay, next_q)
        actions = replay.action.unsqueeze(1)
        params, check = self.params, self.nan_check.check
        losses, q_taken_all, grad_norms = [], [], []
        for i in range(steps):
            rows = slice(i * bs, (i + 1) * bs)
            if targets is None:
                target = self.td_target(ReplayBatch(*(x[rows] for x in replay)), next_q[rows])
            else:
                target = targets[rows]
            q_taken = self.q(replay.obs[rows]).gather(1, actions[rows]).squeeze(1)
            loss = nn.functional.smooth_l1_loss(q_taken, target)
            check("train/loss", loss, LOSS_CAUSE)
            for p in params:
                p.grad = None
            loss.backward()
            grad_norm = clip_grad_norm(params, cfg.max_grad_norm)
            check("train/grad_norm", grad_norm, GRAD_CAUSE)
            self.optimizer.step()
            losses.append(loss.detach())
            q_taken_all.append(q_taken.detach())
            grad_norms.append(grad_norm)
        self.gradient_steps += steps
        means = torch.stack([torch.stack(losses).mean(), torch.cat(q_taken_all).mean(),
                             torch.stack(grad_norms).mean()])
        loss_mean, q_mean, grad_norm_mean = means.tolist()  # one device sync per phase
        return {
            "train/loss": loss_mean,
            "train/q_mean": q_mean,
            "train/grad_norm": grad_norm_mean,
            "train/epsilon": self.epsilon,
            "train/learning_rate": lr,
        }

    @torch.no_grad()
    def update_target(self) -> None:
        """Move the target network's weights towards the online ones by ``tau`` (1.0: copy).

        Buffers (normalisation statistics, encodings) are always copied.
        """
        target, online, target_buffers, online_buffers = self._target_pairs
        if self.config.tau == 1.0:
            torch._foreach_copy_(target, online)
        else:
            torch._foreach_lerp_(target, online, self.config.tau)
        if target_buffers:
            torch._foreach_copy_(target_buffers, online_buffers)

    # --- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Networks, optimizer, RNG, exploration, replay buffer and counters."""
        return {
            "q": self.q.state_dict(),
            "q_target": self.q_target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "exploration": self.exploration.state_dict(),
            "buffer": self.buffer.state_dict(),
            "env_steps": self.env_steps,
            "gradient_steps": self.gradient_steps,
            "next_train": self.next_train,
            "next_target_update": self.next_target_update,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; learning continues exactly."""
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        self.generator.set_state(state["generator"].cpu())
        self.exploration.load_state_dict(state["exploration"])
        self.buffer.load_state_dict(state["buffer"])
        self.env_steps = int(state["env_steps"])
        self.gradient_steps = int(state["gradient_steps"])
        self.next_train = int(state["next_train"])
        self.next_target_update = int(state["next_target_update"])


def _next_multiple(step: int, every: int) -> int:
    """The first multiple of ``every`` strictly after ``step``."""
    return (step // every + 1) * every


def build_dqn(params: DQNConfig, ctx: BuildContext) -> DQN:
    """Build a :class:`DQN` agent (the action space must be ``Discrete``)."""
    return DQN(params, ctx)
