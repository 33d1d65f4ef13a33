"""Deep Deterministic Policy Gradient (Lillicrap et al., 2016, https://arxiv.org/abs/1509.02971)
with the stabilisers of TD3 (Fujimoto et al., 2018, https://arxiv.org/abs/1802.09477) as flags.

A deterministic actor ``mu(s)`` and a critic ``Q(s, a)`` learn off-policy from a replay buffer::

    a'  = mu_target(s') [+ clip(N(0, target_policy_noise), -target_noise_clip, +target_noise_clip)]
    y   = r + gamma * (1 - terminated) * Q_target(s', a')           (twin: min of Q1, Q2 targets)
    L_Q = mean((Q(s, a) - y)^2)                                       (twin: summed over Q1, Q2)
    L_mu = -mean(Q1(s, mu(s)))            every ``policy_delay`` critic updates, then
    target <- (1 - tau) * target + tau * online                      for actor and critics

``s'`` is the true next observation: a truncated episode bootstraps from its final observation,
a terminated one does not. ``td3`` is the same plugin with TD3's published defaults: twin
critics (clipped double-Q), a policy delay of 2 and target policy smoothing (0.2, clip 0.5).

**Actions.** The actor's output goes through ``tanh`` into ``[-1, 1]`` per dimension and is
rescaled to the env's Box bounds; exploration noise (``sigma`` times a Gaussian or
Ornstein-Uhlenbeck process, one per env, see :mod:`rlkit.exploration.noise`) is added in the
``[-1, 1]`` space and the result clipped to it, so an env never receives an action outside its
bounds. Before ``learning_starts`` env steps, actions are uniform over the bounds. The replay
buffer stores the actions a transition says were taken, normalised back into ``[-1, 1]``.

**Networks** (:mod:`rlkit.algorithms.ddpg_networks`). Actor and critics each own a backbone.
For flat Box observations the critic's backbone reads the observation and the action side by
side (as in the papers); for other observations -- images through ``cnn`` -- and for recurrent
backbones the action joins the backbone's features, followed by ``critic_head_sizes`` layers
(``critic_action_input``).

The schedule follows environment steps like DQN's: every ``train_freq`` env steps after
``learning_starts``, ``gradient_steps`` updates of the critic(s).

**Recurrent actor and critics** (``backbone: {name: lstm}`` or ``gru``): sequence replay with
stored states and a burn-in prefix, as for recurrent DQN (R2D2, Kapturowski et al., 2019,
https://openreview.net/forum?id=r1lyTjAqYX), after recurrent DDPG (Heess et al., 2015,
https://arxiv.org/abs/1512.04455).

* *Networks.* The actor and each critic own a recurrent core; a critic takes the action beside
  its core's features (``critic_action_input: features``), so every core reads observations
  only and all of them advance while acting. One state tensor per env,
  ``(1 + critics, *core_state)`` -- the actor's first, then the critics' -- is kept in a
  :class:`rlkit.memory.RecurrentMemory` and reset before the first step of every episode: where
  an observed transition ends one (``terminated | truncated``, or a row that only reset its
  env), or where the loop's owner calls ``begin_episodes``. Evaluation acts inside
  ``separate_state``, with a state (and a noise process) of its own.
* *Storing.* A :class:`~rlkit.buffers.SequenceReplayBuffer` keeps each env's steps in order,
  ``buffer_size // num_envs`` of them, with whether the state was reset before acting and the
  stacked state the agent acted from, at every step.
* *Replaying.* A critic update samples ``max(batch_size // seq_len, 1)`` sequences of
  ``burn_in + seq_len`` consecutive steps of one env. Each network, online and target, starts
  from its core's stored state, runs over the ``burn_in`` prefix without gradient, then over
  the ``seq_len`` training steps, resetting the state where an episode began; neither values
  nor gradients cross an episode boundary.
* *Targets.* ``y_t = r_t + gamma * (1 - terminated_t) * min_i Q_target_i(o'_t, h_t; a'_t)``
  with ``a'_t = mu_target(o'_t, h_t)`` (plus the smoothing noise), ``h_t`` each target
  network's state after step ``t`` and before any reset: a truncated episode bootstraps from
  its final observation under the state it reached. The critic loss and the actor loss
  ``-Q1(o_t, mu(o_t))`` are averaged over the valid rows of the training steps.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from rlkit.algorithms.ddpg_networks import Actor, Critic, unroll
from rlkit.buffers import ReplayBatch, ReplayBuffer, ReplaySequences, SequenceReplayBuffer
from rlkit.exploration.noise import ActionNoise, ActionNoiseExploration, GaussianNoise
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
from rlkit.schedules import Scheduled
from rlkit.transitions import TransitionSpec, check_transition
from rlkit.validation import ConfigError, IncompatibleError, param

CRITIC_CAUSE = ("the critic's loss diverged; lower algorithm.critic_optimizer.lr, set "
                "algorithm.max_grad_norm, or scale the rewards (env.wrappers)")
ACTOR_CAUSE = ("the actor's loss diverged; lower algorithm.actor_optimizer.lr or set "
               "algorithm.max_grad_norm")


@dataclass(kw_only=True)
class DDPGConfig:
    """Deep Deterministic Policy Gradient: a deterministic actor and a Q critic, off-policy."""

    gamma: float = param(0.99, ge=0.0, le=1.0)
    """Discount factor."""
    tau: float = param(0.005, gt=0.0, le=1.0)
    """Polyak averaging rate of the target networks (1.0: copy)."""
    buffer_size: int = param(1_000_000, ge=1)
    """Transitions kept in the replay buffer (in total, over all environments; a recurrent
    backbone keeps the last ``buffer_size // num_envs`` steps of each env)."""
    learning_starts: int = param(100, ge=0)
    """Environment steps of uniformly random actions before the first update."""
    batch_size: int = param(256, ge=1)
    """Transitions per gradient step, sampled uniformly from the replay buffer. It counts
    transitions with a recurrent backbone too: a gradient step then learns from
    ``max(batch_size // seq_len, 1)`` sequences of ``seq_len`` steps (plus their burn-in)."""
    train_freq: int = param(1, ge=1)
    """Environment steps (``N`` per batched step) between learning phases."""
    gradient_steps: int = param(1, ge=1)
    """Critic updates per learning phase."""
    twin_critics: bool = False
    """Two critics and the minimum of their targets (TD3's clipped double-Q)."""
    policy_delay: int = param(1, ge=1)
    """Critic updates per actor and target update (TD3: 2)."""
    target_policy_noise: float = param(0.0, ge=0.0)
    """Standard deviation of the noise added to the target actor's actions, in the normalised
    action space (TD3's target policy smoothing: 0.2; 0: none)."""
    target_noise_clip: float = param(0.5, gt=0.0)
    """Target policy noise is clipped to +- this."""
    action_noise: Literal["gaussian", "ornstein_uhlenbeck"] = "gaussian"
    """Exploration noise process when the experiment has no ``exploration:`` section (which
    takes precedence: ``{name: gaussian, sigma: ...}`` or ``{name: ornstein_uhlenbeck, ...}``)."""
    noise_sigma: Scheduled = param(0.1, ge=0.0)
    """Scale of that noise in the normalised action space (1.0: half the action range): a
    number or a schedule."""
    critic_action_input: Literal["auto", "observation", "features"] = "auto"
    """Where the critic takes the action: beside the observation, into its backbone
    (``observation``, flat Box observations and feed-forward backbones only), or beside the
    backbone's features (``features``). ``auto``: ``observation`` for flat Box observations
    and a feed-forward backbone, else ``features``."""
    critic_head_sizes: list[int] = field(default_factory=lambda: [256])
    """Hidden layers after the critic's backbone when the action joins its features."""
    max_grad_norm: float | None = param(None, gt=0.0)
    """Clip each network's global gradient norm to this (None: no clipping)."""
    actor_optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=1e-3))
    """The actor's optimizer and learning rate (a number or a schedule)."""
    critic_optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=1e-3))
    """The critics' optimizer and learning rate (a number or a schedule)."""

    seq_len: int = param(8, ge=1)
    """Recurrent backbones only: training steps per replayed sequence (the steps whose losses
    are learned from, after the burn-in)."""
    burn_in: int = param(4, ge=0)
    """Recurrent backbones only: steps replayed before each training sequence, from the state
    stored when they were collected, to refresh that state with the current weights (no
    gradient, no loss). 0: learn from the stored state as it is."""

    def __post_init__(self) -> None:
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size ({self.batch_size:,}) is larger than buffer_size "
                             f"({self.buffer_size:,}): a minibatch cannot hold more transitions "
                             f"than the buffer keeps; lower batch_size")
        if any(h < 1 for h in self.critic_head_sizes):
            raise ValueError(f"critic_head_sizes must be positive, got {self.critic_head_sizes}")


@dataclass(kw_only=True)
class TD3Config(DDPGConfig):
    """Twin Delayed DDPG: clipped double-Q, delayed policy updates, target policy smoothing."""

    twin_critics: bool = True
    """Two critics and the minimum of their targets (TD3's clipped double-Q)."""
    policy_delay: int = param(2, ge=1)
    """Critic updates per actor and target update."""
    target_policy_noise: float = param(0.2, ge=0.0)
    """Standard deviation of the noise added to the target actor's actions, in the normalised
    action space (target policy smoothing; 0: none)."""


class DDPG:
    """The DDPG/TD3 agent (ask/tell). See the module docstring for the updates.

    :param config: hyperparameters (:class:`DDPGConfig` or :class:`TD3Config`).
    :param ctx: spaces, device, seed, budget, backbone factory, exploration and nan policy.
    """

    # What ``ctx.exploration.value(step)`` sets: the scale of the action noise.
    exploration_knob: str = "noise_sigma"

    def __init__(self, config: DDPGConfig, ctx: BuildContext) -> None:
        name = "td3" if isinstance(config, TD3Config) else "ddpg"
        space = ctx.env.action_space
        if not isinstance(space, gym.spaces.Box):
            raise IncompatibleError("algorithm.name", f"{name!r} needs a continuous (Box) action "
                                    f"space, env has {space}", alternatives=("ppo", "dqn"))
        low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ConfigError(
                f"algorithm.name: {name!r} needs a bounded action space, env has {space}; "
                f"bound it with a wrapper, e.g. env.wrappers: [{{name: "
                f"gymnasium.wrappers.ClipAction}}] after a RescaleAction to the range the env "
                f"accepts, or use ppo (Gaussian policy).", key="algorithm.name")
        self.name = name
        self.config = config
        self.device = ctx.device
        self.total_steps = max(int(ctx.total_steps), 1)
        self.nan_check: NanCheck = ctx.nan_check
        self.num_envs = ctx.env.num_envs
        self.action_shape = tuple(space.shape)
        self.action_dim = int(math.prod(self.action_shape))
        self.low = torch.as_tensor(low.reshape(-1), dtype=torch.float32, device=self.device)
        self.high = torch.as_tensor(high.reshape(-1), dtype=torch.float32, device=self.device)
        self.transition_spec = TransitionSpec.from_env(ctx.env, self.device, algorithm=name)
        """What :meth:`observe` accepts (:func:`rlkit.transitions.check_transition`)."""
        obs_space = ctx.env.observation_space
        flat_box = isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1
        make_backbone = recurrent_factory(ctx.backbone)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            actor = Actor(make_backbone(obs_space), self.action_dim)
            self.recurrent = is_recurrent(actor.backbone)
            joint = config.critic_action_input == "observation" or (
                config.critic_action_input == "auto" and flat_box and not self.recurrent)
            if joint and not flat_box:
                raise ConfigError(f"algorithm.critic_action_input: 'observation' needs flat Box "
                                  f"observations, env has {obs_space}; use 'features' (or "
                                  f"auto).", key="algorithm.critic_action_input")
            if joint and self.recurrent:
                raise ConfigError(
                    "algorithm.critic_action_input: 'observation' puts the action into the "
                    "critic's backbone, and a recurrent backbone must read observations only "
                    "(its state advances while acting, before any action is chosen); use "
                    "'features' (or auto) with lstm/gru.", key="algorithm.critic_action_input")
            critics = [Critic(make_backbone, obs_space, self.action_dim, joint=joint,
                              head_sizes=config.critic_head_sizes)
                       for _ in range(2 if config.twin_critics else 1)]
        self.actor = actor.to(self.device)
        self.critics = nn.ModuleList(critics).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.actor_params = list(self.actor.parameters())
        self.critic_params = list(self.critics.parameters())
        self._q1_params = list(self.critics[0].parameters())
        self._targets: tuple[list[Tensor], list[Tensor]] = (
            [*self.actor_target.parameters(), *self.critics_target.parameters()],
            [*self.actor_params, *self.critic_params])
        self.actor_optimizer = make_optimizer(self.actor_params, config.actor_optimizer)
        self.critic_optimizer = make_optimizer(self.critic_params, config.critic_optimizer)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(ctx.seed)
        exploration = ctx.exploration
        self.exploration: Exploration = exploration if exploration is not None else \
            ActionNoiseExploration(config.noise_sigma, ctx.total_steps, config.action_noise)
        self.noise: ActionNoise = self._make_noise(self.num_envs)
        unit_box = gym.spaces.Box(-1.0, 1.0, (self.action_dim,))
        self.buffer: ReplayBuffer | SequenceReplayBuffer
        self.memory: RecurrentMemory | None = None
        """Recurrent backbones: each env's state ``(N, 1 + critics, *core_state)``, actor's
        first, the one the next :meth:`act` starts from."""
        self._pending: tuple[Tensor, Tensor] | None = None
        """Recurrent backbones: the state the last training ``act`` started from and where it
        reset the state, for :meth:`observe` to store."""
        if self.recurrent:
            core: tuple[int, ...] = tuple(actor.backbone.state_shape)  # type: ignore[arg-type]
            state_shape = (1 + len(critics), *core)
            self.buffer = self._sequence_buffer(config, obs_space, unit_box, state_shape)
            self.memory = RecurrentMemory(
                lambda n: torch.zeros((n, *state_shape), device=self.device), self.num_envs)
        else:
            self.buffer = ReplayBuffer(capacity=config.buffer_size, observation_space=obs_space,
                                       action_space=unit_box, num_envs=self.num_envs,
                                       device=self.device, size_key="algorithm.buffer_size")
        self.env_steps = 0
        """Environment steps observed (``N`` per batched step)."""
        self.critic_updates = 0
        """Critic gradient steps taken (the actor learns every ``policy_delay`` of them)."""
        self.next_train = config.train_freq
        """Environment step at which the next learning phase is due."""

    def _sequence_buffer(self, config: DDPGConfig, obs_space: gym.Space[Any],
                         action_space: gym.Space[Any],
                         state_shape: tuple[int, ...]) -> SequenceReplayBuffer:
        """The time-major replay buffer of recurrent actor and critics."""
        n = self.num_envs
        per_env, length = config.buffer_size // n, config.burn_in + config.seq_len
        if per_env < length:
            raise ConfigError(
                f"algorithm.buffer_size: {config.buffer_size:,} transitions over {n:,} envs "
                f"keep {per_env:,} steps per env, fewer than the {length} steps of one replayed "
                f"sequence (burn_in {config.burn_in} + seq_len {config.seq_len}); raise "
                f"buffer_size to at least {length * n:,} or shorten the sequences.",
                key="algorithm.buffer_size")
        return SequenceReplayBuffer(capacity=per_env, observation_space=obs_space,
                                    action_space=action_space, num_envs=n,
                                    state_shape=state_shape, device=self.device,
                                    size_key="algorithm.buffer_size")

    # --- ask/tell ------------------------------------------------------------------------

    @torch.no_grad()
    def act(self, obs: Tensor, explore: bool = True) -> Tensor:
        """Actions within the env's bounds, ``(N, *action_shape)``: the actor's, plus noise
        when ``explore`` (uniformly random before ``learning_starts``).

        Recurrent networks act from each env's state and keep the next one (random actions
        too advance it)."""
        features = None if self.memory is None else self._advance(obs, self.memory)
        if explore and self.env_steps < self.config.learning_starts:
            unit = torch.rand((obs.shape[0], self.action_dim), generator=self.generator,
                              device=self.device) * 2.0 - 1.0
            return self._to_env(unit)
        action = self.actor(obs) if features is None else self.actor.action(features)
        if explore:
            sigma = float(self.exploration.value(self.env_steps))
            noise = self.noise.sample(self.generator)
            if noise.shape[0] != action.shape[0]:
                raise ValueError(f"{self.name}: act(explore=True) got {action.shape[0]} "
                                 f"observations, the agent explores in {noise.shape[0]} envs; "
                                 f"use explore=False for other batches")
            if sigma:
                action = (action + sigma * noise).clamp(-1.0, 1.0)
        return self._to_env(action)

    def _advance(self, obs: Tensor, memory: RecurrentMemory) -> Tensor:
        """Recurrent networks: one step of every core from each env's state (of the actor's
        alone inside :meth:`separate_state`, where nothing is stored); the actor's features.
        """
        state = memory.state
        if obs.shape[0] != state.shape[0]:
            raise ValueError(
                f"{self.name}: act() got a batch of {obs.shape[0]} observations, but this agent "
                f"keeps recurrent state for {state.shape[0]} environments; act on all of them, "
                f"or inside `with rlkit.separate_state(agent, num_envs={obs.shape[0]}):` for "
                f"{obs.shape[0]} other environments")
        starts = memory.take_starts()
        features, actor_state = self.actor.backbone(obs, state[:, 0])
        cores = [actor_state.unsqueeze(1)]
        if memory.separated:  # the critics' states matter only to what observe() stores
            cores.append(state[:, 1:])
        else:
            for i, critic in enumerate(_critics(self.critics), start=1):
                cores.append(critic.backbone(obs, state[:, i])[1].unsqueeze(1))
            self._pending = (state, starts)
        memory.state = torch.cat(cores, dim=1)
        return features

    def observe(self, transition: Transition) -> None:
        """Store the transition and restart the noise of the envs whose episodes ended.

        The actions stored are those the transition says were taken -- the agent's, or those
        the loop's owner put in their place -- in the env's scale, normalised into ``[-1, 1]``
        like the actor's (an action beyond the bounds is stored at the bound).

        Recurrent networks store it with the state the last :meth:`act` started from, and
        reset the state of the envs whose episode the transition ended.

        :raises rlkit.transitions.TransitionError: where a field does not fit the agent."""
        transition = check_transition(transition, self.transition_spec)
        action = self._from_env(transition.action)
        buffer = self.buffer
        if isinstance(buffer, SequenceReplayBuffer):
            if self._pending is None:
                raise RuntimeError(f"a recurrent {self.name} agent learns only from transitions "
                                   f"of its own act(obs) calls on the training envs: call act "
                                   f"before each observe")
            state, starts = self._pending
            self._pending = None
            buffer.add(transition._replace(action=action), episode_start=starts, state=state)
        else:
            buffer.add(transition._replace(action=action))
        ended = transition.terminated | transition.truncated
        if transition.valid is not None:
            ended = ended | ~transition.valid
        self.noise.reset(ended)
        if self.memory is not None:
            self.memory.begin(ended)
        self.env_steps += transition.reward.shape[0]

    def begin_episodes(self, mask: Tensor | None = None) -> None:
        """Restart the exploration noise, and reset the recurrent state, of the envs in
        ``mask`` (``(N,)`` bool; None: all) before the next :meth:`act`.

        In the training stream, the replayed targets of recurrent networks treat an episode
        ended this way like a truncated one: its last transition bootstraps from its next
        observation, valued with the state that episode had reached."""
        self.noise.reset(mask)
        if self.memory is not None:
            self.memory.begin(mask)

    @contextlib.contextmanager
    def separate_state(self, num_envs: int) -> Iterator[None]:
        """A block with a noise process, and a recurrent state, of its own for ``num_envs``
        other envs (an evaluation); the training envs' noise and state are untouched."""
        kept = self.noise
        self.noise = self._make_noise(num_envs)
        memory = contextlib.nullcontext() if self.memory is None else \
            self.memory.separate(num_envs)
        try:
            with memory:
                yield
        finally:
            self.noise = kept

    def update(self) -> dict[str, float]:
        """Learn when a phase is due; metrics of the learning phase."""
        cfg = self.config
        if self.env_steps < self.next_train:
            return {}
        phases = (self.env_steps - self.next_train) // cfg.train_freq + 1
        self.next_train += phases * cfg.train_freq
        if self.env_steps < cfg.learning_starts or not self._can_sample():
            return {}
        return self.learn(phases * cfg.gradient_steps)

    def _can_sample(self) -> bool:
        """Whether the buffer holds a minibatch's worth: one transition, or one whole
        sequence for recurrent networks."""
        buffer = self.buffer
        if isinstance(buffer, SequenceReplayBuffer):
            return buffer.starts_available(self.config.burn_in + self.config.seq_len) > 0
        return len(buffer) > 0

    # --- learning ------------------------------------------------------------------------

    def td_target(self, batch: ReplayBatch) -> Tensor:
        """``y = r + gamma * (1 - terminated) * min_i Q_target_i(s', mu_target(s') + noise)``."""
        cfg = self.config
        with torch.no_grad():
            next_action = self._smoothed(self.actor_target(batch.next_obs))
            next_q = self.critics_target[0](batch.next_obs, next_action)
            for critic in list(self.critics_target)[1:]:
                next_q = torch.minimum(next_q, critic(batch.next_obs, next_action))
            return batch.reward + cfg.gamma * next_q * (~batch.terminated)

    def sequence_target(self, seq: ReplaySequences) -> Tensor:
        """Recurrent networks: ``y_t`` ``(T, B)`` for the training steps of replayed
        sequences, each target network unrolled from its core's stored state (see the module
        docstring)."""
        cfg, burn = self.config, self.config.burn_in
        with torch.no_grad():
            _, following = unroll(self.actor_target.backbone, seq, seq.state[:, 0], burn, True)
            assert following is not None
            next_action = self._smoothed(self.actor_target.action(following))
            next_q: Tensor | None = None
            for i, critic in enumerate(_critics(self.critics_target), start=1):
                _, following = unroll(critic.backbone, seq, seq.state[:, i], burn, True)
                assert following is not None
                q = critic.value(following, next_action)
                next_q = q if next_q is None else torch.minimum(next_q, q)
            assert next_q is not None
            return seq.reward[burn:] + cfg.gamma * next_q * (~seq.terminated[burn:])

    def _smoothed(self, next_action: Tensor) -> Tensor:
        """Target policy smoothing: clipped Gaussian noise on the target actor's actions."""
        cfg = self.config
        if cfg.target_policy_noise > 0:
            noise = torch.randn(next_action.shape, generator=self.generator,
                                device=self.device) * cfg.target_policy_noise
            noise = noise.clamp(-cfg.target_noise_clip, cfg.target_noise_clip)
            next_action = (next_action + noise).clamp(-1.0, 1.0)
        return next_action

    def learn(self, steps: int) -> dict[str, float]:
        """Take ``steps`` critic updates (and the actor and target updates that fall due) on
        replayed minibatches -- of transitions, or of sequences for recurrent networks -- all
        drawn at once; return the phase's mean metrics."""
        cfg = self.config
        progress = min(self.env_steps / self.total_steps, 1.0)
        actor_lr = set_learning_rate(self.actor_optimizer, cfg.actor_optimizer, progress)
        critic_lr = set_learning_rate(self.critic_optimizer, cfg.critic_optimizer, progress)
        buffer = self.buffer
        batches: list[ReplayBatch] | list[ReplaySequences]
        if isinstance(buffer, SequenceReplayBuffer):
            per = max(cfg.batch_size // cfg.seq_len, 1)
            sequences = buffer.sample(steps * per, cfg.burn_in + cfg.seq_len, self.generator)
            batches = [_columns(sequences, slice(i * per, (i + 1) * per)) for i in range(steps)]
        else:
            bs = cfg.batch_size
            replay = buffer.sample(steps * bs, self.generator)
            batches = [ReplayBatch(*(x[i * bs:(i + 1) * bs] for x in replay))
                       for i in range(steps)]
        check = self.nan_check.check
        critic_losses: list[Tensor] = []
        actor_losses: list[Tensor] = []
        q_values: list[Tensor] = []
        for batch in batches:
            critic_loss, q_mean = self.critic_loss(batch)
            check("train/critic_loss", critic_loss, CRITIC_CAUSE)
            self._step(self.critic_optimizer, self.critic_params, critic_loss, CRITIC_CAUSE)
            critic_losses.append(critic_loss.detach())
            q_values.append(q_mean)
            self.critic_updates += 1
            if self.critic_updates % cfg.policy_delay == 0:
                actor_loss = -(self.policy_value(batch.obs) if isinstance(batch, ReplayBatch)
                               else self.sequence_policy_value(batch))
                check("train/actor_loss", actor_loss, ACTOR_CAUSE)
                self._step(self.actor_optimizer, self.actor_params, actor_loss, ACTOR_CAUSE)
                actor_losses.append(actor_loss.detach())
                self.update_targets()
        means = torch.stack([torch.stack(critic_losses).mean(), torch.stack(q_values).mean()])
        critic_mean, q_mean = means.tolist()  # one device sync per phase
        metrics = {"train/critic_loss": critic_mean, "train/q_mean": q_mean,
                   "train/noise_sigma": float(self.exploration.value(self.env_steps)),
                   "train/actor_learning_rate": actor_lr,
                   "train/critic_learning_rate": critic_lr}
        if actor_losses:
            metrics["train/actor_loss"] = float(torch.stack(actor_losses).mean())
        return metrics

    def critic_loss(self, batch: ReplayBatch | ReplaySequences) -> tuple[Tensor, Tensor]:
        """The critics' summed squared TD errors (over the valid rows of the training steps,
        for sequences) and the mean of ``Q1(s, a)`` (no gradient)."""
        if isinstance(batch, ReplayBatch):
            target = self.td_target(batch)
            qs = [critic(batch.obs, batch.action) for critic in self.critics]
            loss = sum(nn.functional.mse_loss(q, target) for q in qs)
            assert isinstance(loss, Tensor)
            return loss, qs[0].detach().mean()
        burn = self.config.burn_in
        target = self.sequence_target(batch)
        mask, count = _valid_rows(batch, burn)
        action = batch.action[burn:]
        qs = [critic.value(unroll(critic.backbone, batch, batch.state[:, i], burn, False)[0],
                           action) for i, critic in enumerate(_critics(self.critics), start=1)]
        loss = sum((((q - target) ** 2) * mask).sum() / count for q in qs)
        assert isinstance(loss, Tensor)
        return loss, (qs[0].detach() * mask).sum() / count

    def policy_value(self, obs: Tensor) -> Tensor:
        """``mean(Q1(s, mu(s)))`` with gradients for the actor only: the critic's weights take
        no gradient here (the actor's loss never updates them), which skips their
        weight-gradient products in the backward pass."""
        weights = self._q1_params
        for w in weights:
            w.requires_grad_(False)
        try:
            return self.critics[0](obs, self.actor(obs)).mean()
        finally:
            for w in weights:
                w.requires_grad_(True)

    def sequence_policy_value(self, seq: ReplaySequences) -> Tensor:
        """Recurrent networks: the mean of ``Q1(o_t, mu(o_t))`` over the valid rows of the
        training steps, the actor and critic 1 unrolled from their stored states; gradients
        for the actor only (critic 1's features are computed without, its head's weights
        frozen as in :meth:`policy_value`)."""
        burn = self.config.burn_in
        critic = _critics(self.critics)[0]
        with torch.no_grad():
            critic_features, _ = unroll(critic.backbone, seq, seq.state[:, 1], burn, False)
        actor_features, _ = unroll(self.actor.backbone, seq, seq.state[:, 0], burn, False)
        mask, count = _valid_rows(seq, burn)
        weights = self._q1_params
        for w in weights:
            w.requires_grad_(False)
        try:
            q = critic.value(critic_features, self.actor.action(actor_features))
        finally:
            for w in weights:
                w.requires_grad_(True)
        return (q * mask).sum() / count

    def _step(self, optimizer: Any, params: list[nn.Parameter], loss: Tensor, cause: str) -> None:
        for p in params:
            p.grad = None
        loss.backward()
        if self.config.max_grad_norm is not None:
            norm = clip_grad_norm(params, self.config.max_grad_norm)
            self.nan_check.check("train/grad_norm", norm, cause)
        optimizer.step()

    @torch.no_grad()
    def update_targets(self) -> None:
        """``target <- (1 - tau) * target + tau * online`` for the actor and the critics."""
        targets, online = self._targets
        if self.config.tau == 1.0:
            torch._foreach_copy_(targets, online)
        else:
            torch._foreach_lerp_(targets, online, self.config.tau)

    # --- helpers -------------------------------------------------------------------------

    def _make_noise(self, num_envs: int) -> ActionNoise:
        """The exploration controller's noise process (Gaussian where it offers none)."""
        make_noise = getattr(self.exploration, "make_noise", None)
        if make_noise is None:
            return GaussianNoise(num_envs, self.action_dim, self.device)
        noise: ActionNoise = make_noise(num_envs, self.action_dim, self.device)
        return noise

    def _to_env(self, unit: Tensor) -> Tensor:
        """``[-1, 1]`` -> the env's bounds, shaped like the action space."""
        action = self.low + (unit + 1.0) * 0.5 * (self.high - self.low)
        return action.view(unit.shape[0], *self.action_shape)

    def _from_env(self, action: Tensor) -> Tensor:
        """The env's bounds -> ``[-1, 1]`` (flat), clipped."""
        flat = action.reshape(action.shape[0], -1).float()
        return ((flat - self.low) / (self.high - self.low) * 2.0 - 1.0).clamp(-1.0, 1.0)

    # --- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Networks, optimizers, RNG, exploration and noise, replay buffer and counters;
        recurrent networks' per-env state too."""
        state = {
            "actor": self.actor.state_dict(),
            "critics": self.critics.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "critics_target": self.critics_target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "exploration": self.exploration.state_dict(),
            "noise": self.noise.state_dict(),
            "buffer": self.buffer.state_dict(),
            "env_steps": self.env_steps,
            "critic_updates": self.critic_updates,
            "next_train": self.next_train,
        }
        if self.memory is not None:
            state["memory"] = self.memory.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; learning continues exactly."""
        self.actor.load_state_dict(state["actor"])
        self.critics.load_state_dict(state["critics"])
        self.actor_target.load_state_dict(state["actor_target"])
        self.critics_target.load_state_dict(state["critics_target"])
        load_optimizer_state(self.actor_optimizer, state["actor_optimizer"])
        load_optimizer_state(self.critic_optimizer, state["critic_optimizer"])
        self.generator.set_state(state["generator"].cpu())
        self.exploration.load_state_dict(state["exploration"])
        self.noise.load_state_dict(state["noise"])
        self.buffer.load_state_dict(state["buffer"])
        self.env_steps = int(state["env_steps"])
        self.critic_updates = int(state["critic_updates"])
        self.next_train = int(state["next_train"])
        if self.memory is not None:
            if "memory" not in state:
                raise ValueError(f"the state has no recurrent memory: it was saved by a "
                                 f"{self.name} agent with a feed-forward backbone")
            self.memory.load_state_dict(state["memory"])
        self._pending = None


def _valid_rows(seq: ReplaySequences, burn_in: int) -> tuple[Tensor, Tensor]:
    """The training steps' valid rows as a float mask ``(T, B)`` and their count (at least 1).
    """
    mask = seq.valid[burn_in:].float()
    return mask, mask.sum().clamp_min(1.0)


def _critics(modules: nn.ModuleList) -> list[Critic]:
    """The critics of a ``ModuleList``, typed."""
    return [cast(Critic, m) for m in modules]


def _columns(seq: ReplaySequences, rows: slice) -> ReplaySequences:
    """The sequences ``rows`` of ``seq`` (time-major fields; the state is batch-first)."""
    return ReplaySequences._make([*(x[:, rows] for x in seq[:-1]), seq.state[rows]])


def build_ddpg(params: DDPGConfig, ctx: BuildContext) -> DDPG:
    """Build a :class:`DDPG` agent (TD3 when ``params`` is a :class:`TD3Config`)."""
    return DDPG(params, ctx)
