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

**Recurrent Q-networks** (``backbone: {name: lstm}`` or ``gru``): sequence replay with stored
states and a burn-in prefix, after DRQN (Hausknecht & Stone, 2015,
https://arxiv.org/abs/1507.06527) and R2D2 (Kapturowski et al., 2019,
https://openreview.net/forum?id=r1lyTjAqYX).

* *Acting.* The agent keeps each env's recurrent state (:class:`rlkit.memory.RecurrentMemory`)
  and acts epsilon-greedily on ``Q(o_t, h_{t-1})``. The state is reset before the first step of
  every episode: where an observed transition ends one (``terminated | truncated``, or a row
  that only reset its env), or where the loop's owner calls ``begin_episodes``. Evaluation
  acts inside ``separate_state``, with a fresh state of its own.
* *Storing.* A :class:`~rlkit.buffers.SequenceReplayBuffer` keeps each env's steps in order,
  ``buffer_size // num_envs`` of them, circular over time: the transition (observation,
  action, reward, true next observation, ``terminated``, ``truncated``, ``valid``), whether
  the state was reset before acting (``episode_start``), and the state the agent acted from
  -- R2D2's stored state, at every step, so that a sequence may start anywhere.
* *Replaying.* A gradient step samples ``max(batch_size // seq_len, 1)`` sequences of
  ``burn_in + seq_len`` consecutive steps of one env, uniformly over ``(env, start time)``
  among those wholly inside the stored steps. The online and the target network each start
  from the stored state of the sequence's first step, run over the ``burn_in`` prefix
  without gradient (refreshing a state that older weights produced), then over the
  ``seq_len`` training steps. A sequence may cross episode boundaries: the state is reset at
  the steps marked ``episode_start``, exactly as while acting, so neither values nor
  gradients flow from one episode into the next.
* *Targets.* ``y_t = r_t + gamma * (1 - terminated_t) * Q_target(o'_t, h_t; a')``, with ``h_t``
  the state after step ``t`` and before any reset: where the episode goes on, ``o'_t`` is the
  next step's observation and its value is the next step's output; where the state is reset
  after ``t`` (a truncated episode, or one the loop's owner ended) or the sequence ends,
  ``Q(o'_t, h_t)`` is computed from the state reached at ``t``, so a truncated episode
  bootstraps from its final observation. Double DQN picks ``a'`` with the online network
  unrolled the same way. The Huber loss is averaged over the valid rows of the training
  steps only.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import torch
from torch import Tensor, nn

from rlkit.buffers import ReplayBatch, ReplayBuffer, ReplaySequences, SequenceReplayBuffer
from rlkit.exploration import ScheduleExploration, linear
from rlkit.interfaces import (
    BuildContext,
    Exploration,
    NanCheck,
    Transition,
    is_recurrent,
    recurrent_factory,
)
from rlkit.memory import RecurrentMemory
from rlkit.optim import (
    OptimizerConfig,
    clip_grad_norm,
    load_optimizer_state,
    make_optimizer,
    set_learning_rate,
)
from rlkit.schedules import Schedule, Scheduled
from rlkit.transitions import TransitionSpec, check_transition
from rlkit.validation import ConfigError, IncompatibleError, param

LOSS_CAUSE = ("the TD loss diverged; lower algorithm.optimizer.lr, set algorithm.max_grad_norm, "
              "or scale the rewards (env.wrappers)")
GRAD_CAUSE = ("exploding gradients; lower algorithm.optimizer.lr or algorithm.max_grad_norm, "
              "or scale the rewards (env.wrappers)")
TARGET_CHUNK = 256
"""Rows per forward pass when the target network evaluates a learning phase's samples (larger
chunks save little time and cost memory for their activations); sequences, for a recurrent
network."""


@dataclass(kw_only=True)
class DQNConfig:
    """Deep Q-Network with a replay buffer, a target network and epsilon-greedy exploration."""

    gamma: float = param(0.99, ge=0.0, le=1.0)
    """Discount factor."""
    buffer_size: int = param(100_000, ge=1)
    """Transitions kept in the replay buffer (in total, over all environments; a recurrent
    backbone keeps the last ``buffer_size // num_envs`` steps of each env)."""
    learning_starts: int = param(1000, ge=0)
    """Environment steps collected before the first gradient step."""
    batch_size: int = param(32, ge=1)
    """Transitions per gradient step, sampled uniformly from the replay buffer. It counts
    transitions with a recurrent backbone too: a gradient step then learns from
    ``max(batch_size // seq_len, 1)`` sequences of ``seq_len`` steps (plus their burn-in)."""
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

    seq_len: int = param(8, ge=1)
    """Recurrent backbones only: training steps per replayed sequence (the steps whose TD
    errors are learned from, after the burn-in)."""
    burn_in: int = param(4, ge=0)
    """Recurrent backbones only: steps replayed before each training sequence, from the state
    stored when they were collected, to refresh that state with the current weights (no
    gradient, no loss). 0: learn from the stored state as it is."""

    def __post_init__(self) -> None:
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size ({self.batch_size:,}) is larger than buffer_size "
                             f"({self.buffer_size:,}): a minibatch cannot hold more transitions "
                             f"than the buffer keeps; lower batch_size")
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

    def step(self, obs: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Recurrent backbones: ``Q(obs, state)`` ``(B, num_actions)`` and the next state."""
        features, state = self.backbone(obs, state)
        return self.head(features), state

    def unroll(self, seq: ReplaySequences, burn_in: int,
               with_next: bool) -> tuple[Tensor, Tensor | None]:
        """Recurrent backbones: the Q-values of a replayed sequence's training steps.

        Starts from ``seq.state``, runs the first ``burn_in`` steps without gradient, then the
        rest, resetting the state where ``seq.starts`` says. Returns ``Q(o_t, h_{t-1})``
        ``(T, B, num_actions)`` for the ``T`` training steps and, with ``with_next``, the
        values of the true next observations ``Q(o'_t, h_t)`` (no gradient), where ``h_t`` is
        the state after step ``t`` and before any reset: the next step's output where the
        next step continues from ``h_t``; computed from ``h_t`` where it does not (the state
        is reset after ``t`` and the episode was not terminated) or the sequence ends.
        """
        body: Any = self.backbone
        state = seq.state
        if burn_in:
            with torch.no_grad():
                _, state = body.forward_sequence(seq.obs[:burn_in], state, seq.starts[:burn_in])
        obs, starts = seq.obs[burn_in:], seq.starts[burn_in:]
        steps = obs.shape[0]
        # the steps whose next observation the next step does not continue from
        cut = starts[1:] & ~seq.terminated[burn_in:-1]
        ends = [*torch.nonzero(cut.any(dim=1)).flatten().tolist(), steps - 1] if with_next \
            else [steps - 1]
        values, boots, begin = [], [], 0
        for end in ends:
            features, state = body.forward_sequence(obs[begin:end + 1], state,
                                                    starts[begin:end + 1])
            values.append(self.head(features))
            if with_next:
                with torch.no_grad():
                    boots.append(self.step(seq.next_obs[burn_in + end], state.detach())[0])
            begin = end + 1
        q = torch.cat(values) if len(values) > 1 else values[0]
        if not with_next:
            return q, None
        with torch.no_grad():
            next_q = torch.cat((q[1:], boots[-1].unsqueeze(0)))
            for end, boot in zip(ends[:-1], boots[:-1]):
                next_q[end] = torch.where(cut[end].unsqueeze(-1), boot, next_q[end])
        return q, next_q


class DQN:
    """The DQN agent (ask/tell). See the module docstring for the targets and schedule.

    :param config: hyperparameters.
    :param ctx: spaces, device, seed, budget, backbone factory, exploration and nan policy.
    """

    # What ``ctx.exploration.value(step)`` sets: the probability of a random action.
    exploration_knob: str = "epsilon"

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
        self.transition_spec = TransitionSpec.from_env(ctx.env, self.device, algorithm="dqn")
        """What :meth:`observe` accepts (:func:`rlkit.transitions.check_transition`)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            body = recurrent_factory(ctx.backbone)(ctx.env.observation_space)
            q = QNetwork(body, self.num_actions)
        self.q = q.to(self.device)
        self.recurrent = is_recurrent(body)
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
        self.buffer: ReplayBuffer | SequenceReplayBuffer
        self.memory: RecurrentMemory | None = None
        """Recurrent backbones: each env's state, the one the next :meth:`act` starts from."""
        self._pending: tuple[Tensor, Tensor] | None = None
        """Recurrent backbones: the state the last training ``act`` started from and where it
        reset the state, for :meth:`observe` to store."""
        if self.recurrent:
            self.buffer = self._sequence_buffer(config, ctx, body)
            self.memory = RecurrentMemory(
                lambda n: body.initial_state(n, self.device), ctx.env.num_envs)  # type: ignore[operator]
        else:
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

    def _sequence_buffer(self, config: DQNConfig, ctx: BuildContext,
                         body: nn.Module) -> SequenceReplayBuffer:
        """The time-major replay buffer of a recurrent Q-network."""
        n = ctx.env.num_envs
        per_env, length = config.buffer_size // n, config.burn_in + config.seq_len
        if per_env < length:
            raise ConfigError(
                f"algorithm.buffer_size: {config.buffer_size:,} transitions over {n:,} envs "
                f"keep {per_env:,} steps per env, fewer than the {length} steps of one replayed "
                f"sequence (burn_in {config.burn_in} + seq_len {config.seq_len}); raise "
                f"buffer_size to at least {length * n:,} or shorten the sequences.",
                key="algorithm.buffer_size")
        return SequenceReplayBuffer(capacity=per_env, observation_space=ctx.env.observation_space,
                                    action_space=ctx.env.action_space, num_envs=n,
                                    state_shape=tuple(body.state_shape),  # type: ignore[arg-type]
                                    device=self.device, size_key="algorithm.buffer_size")

    # --- ask/tell ------------------------------------------------------------------------

    @torch.no_grad()
    def act(self, obs: Tensor, explore: bool = True) -> Tensor:
        """Epsilon-greedy actions ``(N,)``; greedy when ``explore`` is ``False``.

        A recurrent network acts from each env's state and keeps the next one."""
        if self.memory is not None:
            return self._act_recurrent(obs, explore, self.memory)
        action = self.q(obs).argmax(dim=1)
        return self._epsilon_greedy(action, explore)

    def _epsilon_greedy(self, action: Tensor, explore: bool) -> Tensor:
        """``action`` replaced by a uniformly random one with probability epsilon (0 when not
        ``explore``), shifted to the action space's start."""
        epsilon = self.epsilon if explore else 0.0
        if epsilon > 0.0:
            n = action.shape[0]
            random = torch.randint(self.num_actions, (n,), generator=self.generator,
                                   device=self.device)
            coin = torch.rand(n, generator=self.generator, device=self.device)
            action = torch.where(coin < epsilon, random, action)
        return action + self.action_start if self.action_start else action

    def _act_recurrent(self, obs: Tensor, explore: bool, memory: RecurrentMemory) -> Tensor:
        state, starts = memory.state, memory.take_starts()
        q, memory.state = self.q.step(obs, state)
        if not memory.separated:  # what observe() stores: only the training stream learns
            self._pending = (state, starts)
        return self._epsilon_greedy(q.argmax(dim=1), explore)

    def observe(self, transition: Transition) -> None:
        """Store the transition in the replay buffer -- with the actions it says were taken,
        the agent's or those put in their place -- and count its environment steps.

        A recurrent network stores it with the state the last :meth:`act` started from, and
        resets the state of the envs whose episode the transition ended.

        :raises rlkit.transitions.TransitionError: where a field does not fit the agent."""
        transition = check_transition(transition, self.transition_spec)
        if self.action_start:
            transition = transition._replace(action=transition.action - self.action_start)
        buffer = self.buffer
        if isinstance(buffer, SequenceReplayBuffer):
            self._observe_recurrent(transition, buffer)
            return
        buffer.add(transition)
        self.env_steps += transition.reward.shape[0]

    def _observe_recurrent(self, transition: Transition, buffer: SequenceReplayBuffer) -> None:
        if self._pending is None or self.memory is None:
            raise RuntimeError("a recurrent DQN agent learns only from transitions of its own "
                               "act(obs) calls on the training envs: call act before each "
                               "observe")
        state, starts = self._pending
        self._pending = None
        buffer.add(transition, episode_start=starts, state=state)
        ended = transition.terminated | transition.truncated
        if transition.valid is not None:
            ended = ended | ~transition.valid  # next-step autoreset: that row was a reset
        self.memory.begin(ended)
        self.env_steps += transition.reward.shape[0]

    def begin_episodes(self, mask: Tensor | None = None) -> None:
        """Reset the recurrent state of the envs in ``mask`` (``(N,)`` bool; None: all) before
        the next :meth:`act`; nothing for a feed-forward network.

        In the training stream, the replayed targets treat an episode ended this way like a
        truncated one: the last transition bootstraps from its next observation, valued with
        the state that episode had reached."""
        if self.memory is not None:
            self.memory.begin(mask)

    def separate_state(self, num_envs: int) -> contextlib.AbstractContextManager[None]:
        """A block in which :meth:`act` uses a fresh recurrent state for ``num_envs`` other
        environments (evaluation); the training state is untouched."""
        if self.memory is None:
            return contextlib.nullcontext()
        return self.memory.separate(num_envs)

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
        if self.env_steps < cfg.learning_starts or not self._can_sample():
            return {}
        return self.learn(phases * cfg.gradient_steps)

    # --- learning ------------------------------------------------------------------------

    def _can_sample(self) -> bool:
        """Whether the buffer holds a minibatch's worth: one transition, or one whole
        sequence for a recurrent network."""
        buffer = self.buffer
        if isinstance(buffer, SequenceReplayBuffer):
            cfg = self.config
            return buffer.starts_available(cfg.burn_in + cfg.seq_len) > 0
        return len(buffer) > 0

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
        buffer = self.buffer
        if isinstance(buffer, SequenceReplayBuffer):
            return self.learn_sequences(steps, buffer, lr)
        bs = cfg.batch_size
        replay = buffer.sample(steps * bs, self.generator)
        with torch.no_grad():
            next_q = torch.cat([self.q_target(x) for x in replay.next_obs.split(TARGET_CHUNK)])
        targets = None if cfg.double_dqn else self.td_target(replay, next_q)
        actions = replay.action.unsqueeze(1)
        losses, q_taken_all, grad_norms = [], [], []
        for i in range(steps):
            rows = slice(i * bs, (i + 1) * bs)
            if targets is None:
                target = self.td_target(ReplayBatch(*(x[rows] for x in replay)), next_q[rows])
            else:
                target = targets[rows]
            q_taken = self.q(replay.obs[rows]).gather(1, actions[rows]).squeeze(1)
            loss = nn.functional.smooth_l1_loss(q_taken, target)
            grad_norm = self._gradient_step(loss)
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

    def learn_sequences(self, steps: int, buffer: SequenceReplayBuffer,
                        lr: float) -> dict[str, float]:
        """A recurrent network's learning phase: ``steps`` gradient steps, each on
        ``max(batch_size // seq_len, 1)`` replayed sequences (see the module docstring).

        The sequences of all steps are drawn at once, and the target network -- fixed during
        the phase -- unrolls over them in a few large passes; the online network unrolls over
        each step's own sequences, with gradient.
        """
        cfg = self.config
        per = max(cfg.batch_size // cfg.seq_len, 1)
        replay = buffer.sample(steps * per, cfg.burn_in + cfg.seq_len, self.generator)
        with torch.no_grad():
            parts = []
            for rows in _chunks(steps * per, TARGET_CHUNK):
                _, values = self.q_target.unroll(_columns(replay, rows), cfg.burn_in, True)
                assert values is not None
                parts.append(values)
            next_q = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        burn = cfg.burn_in
        losses, q_means, grad_norms = [], [], []
        for i in range(steps):
            rows = slice(i * per, (i + 1) * per)
            seq = _columns(replay, rows)
            q, next_online = self.q.unroll(seq, burn, cfg.double_dqn)
            next_target = next_q[:, rows]
            with torch.no_grad():
                scores = next_online if next_online is not None else next_target
                best = scores.argmax(dim=2, keepdim=True)
                bootstrap = next_target.gather(2, best).squeeze(2)
                target = seq.reward[burn:] + cfg.gamma * bootstrap * (~seq.terminated[burn:])
                mask = seq.valid[burn:].to(q.dtype)
                count = mask.sum().clamp_min(1.0)
            q_taken = q.gather(2, seq.action[burn:].unsqueeze(2)).squeeze(2)
            td = nn.functional.smooth_l1_loss(q_taken, target, reduction="none")
            loss = (td * mask).sum() / count  # the valid rows of the training steps only
            grad_norm = self._gradient_step(loss)
            losses.append(loss.detach())
            q_means.append((q_taken.detach() * mask).sum() / count)
            grad_norms.append(grad_norm)
        self.gradient_steps += steps
        means = torch.stack([torch.stack(losses).mean(), torch.stack(q_means).mean(),
                             torch.stack(grad_norms).mean()])
        loss_mean, q_mean, grad_norm_mean = means.tolist()
        return {
            "train/loss": loss_mean,
            "train/q_mean": q_mean,
            "train/grad_norm": grad_norm_mean,
            "train/epsilon": self.epsilon,
            "train/learning_rate": lr,
        }

    def _gradient_step(self, loss: Tensor) -> Tensor:
        """Check the loss, backpropagate, clip, step the optimizer; the gradient norm."""
        check = self.nan_check.check
        check("train/loss", loss, LOSS_CAUSE)
        for p in self.params:
            p.grad = None
        loss.backward()
        grad_norm = clip_grad_norm(self.params, self.config.max_grad_norm)
        check("train/grad_norm", grad_norm, GRAD_CAUSE)
        self.optimizer.step()
        return grad_norm

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
        """Networks, optimizer, RNG, exploration, replay buffer and counters; a recurrent
        network's per-env state too."""
        state = {
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
        if self.memory is not None:
            state["memory"] = self.memory.state_dict()
        return state

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
        if self.memory is not None:
            if "memory" not in state:
                raise ValueError("the state has no recurrent memory: it was saved by a DQN "
                                 "agent with a feed-forward backbone")
            self.memory.load_state_dict(state["memory"])
        self._pending = None


def _chunks(total: int, size: int) -> list[slice]:
    """``[0, total)`` in slices of at most ``size``."""
    return [slice(i, min(i + size, total)) for i in range(0, total, size)]


def _columns(seq: ReplaySequences, rows: slice) -> ReplaySequences:
    """The sequences ``rows`` of ``seq`` (time-major fields; the state is batch-first)."""
    return ReplaySequences._make([*(x[:, rows] for x in seq[:-1]), seq.state[rows]])


def _next_multiple(step: int, every: int) -> int:
    """The first multiple of ``every`` strictly after ``step``."""
    return (step // every + 1) * every


def build_dqn(params: DQNConfig, ctx: BuildContext) -> DQN:
    """Build a :class:`DQN` agent (the action space must be ``Discrete``)."""
    return DQN(params, ctx)
