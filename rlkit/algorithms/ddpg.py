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

**Networks.** Actor and critics each own a backbone. For flat Box observations the critic's
backbone reads the observation and the action side by side (as in the papers); for other
observations -- images through ``cnn`` -- the action joins the backbone's features, followed by
``critic_head_sizes`` layers (``critic_action_input``).

The schedule follows environment steps like DQN's: every ``train_freq`` env steps after
``learning_starts``, ``gradient_steps`` updates of the critic(s).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from rlkit.buffers import ReplayBatch, ReplayBuffer
from rlkit.exploration.noise import ActionNoise, ActionNoiseExploration, GaussianNoise
from rlkit.interfaces import BuildContext, Exploration, NanCheck, Transition
from rlkit.optim import (
    OptimizerConfig,
    clip_grad_norm,
    load_optimizer_state,
    make_optimizer,
    set_learning_rate,
)
from rlkit.schedules import Scheduled
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
    """Transitions kept in the replay buffer (in total, over all environments)."""
    learning_starts: int = param(100, ge=0)
    """Environment steps of uniformly random actions before the first update."""
    batch_size: int = param(256, ge=1)
    """Transitions per gradient step, sampled uniformly from the replay buffer."""
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
    (``observation``, flat Box observations only), or beside the backbone's features
    (``features``). ``auto``: ``observation`` for flat Box observations, else ``features``."""
    critic_head_sizes: list[int] = field(default_factory=lambda: [256])
    """Hidden layers after the critic's backbone when the action joins its features."""
    max_grad_norm: float | None = param(None, gt=0.0)
    """Clip each network's global gradient norm to this (None: no clipping)."""
    actor_optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=1e-3))
    """The actor's optimizer and learning rate (a number or a schedule)."""
    critic_optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=1e-3))
    """The critics' optimizer and learning rate (a number or a schedule)."""

    def __post_init__(self) -> None:
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


class Actor(nn.Module):
    """``mu(s)`` in ``[-1, 1]``: a backbone, a linear layer, ``tanh``."""

    def __init__(self, backbone: nn.Module, action_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(_output_dim(backbone), action_dim)

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.head(self.backbone(obs)))


class Critic(nn.Module):
    """``Q(s, a)`` with the action beside the observation or beside the backbone's features.

    :param make_backbone: builds the backbone for an observation space.
    :param observation_space: one env's observation space.
    :param action_dim: size of the flat action.
    :param joint: True: the backbone reads ``[obs, action]`` (flat Box observations).
    :param head_sizes: hidden layers after the backbone when the action joins its features.
    """

    def __init__(self, make_backbone: Callable[[gym.Space[Any]], nn.Module],
                 observation_space: gym.Space[Any], action_dim: int, *, joint: bool,
                 head_sizes: list[int]) -> None:
        super().__init__()
        self.joint = joint
        if joint:
            assert isinstance(observation_space, gym.spaces.Box)
            low = np.concatenate([observation_space.low.reshape(-1),
                                  -np.ones(action_dim, dtype=np.float32)])
            high = np.concatenate([observation_space.high.reshape(-1),
                                   np.ones(action_dim, dtype=np.float32)])
            self.backbone = make_backbone(gym.spaces.Box(low, high, dtype=np.float32))
            width = _output_dim(self.backbone)
        else:
            self.backbone = make_backbone(observation_space)
            width = _output_dim(self.backbone) + action_dim
        layers: list[nn.Module] = []
        for hidden in [] if joint else head_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.head = nn.Sequential(*layers)

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        """``Q(s, a)`` of shape ``(B,)``."""
        if self.joint:
            x = self.backbone(torch.cat((obs.reshape(obs.shape[0], -1).float(), action), 1))
        else:
            x = torch.cat((self.backbone(obs), action), dim=1)
        return self.head(x).squeeze(-1)


class DDPG:
    """The DDPG/TD3 agent (ask/tell). See the module docstring for the updates.

    :param config: hyperparameters (:class:`DDPGConfig` or :class:`TD3Config`).
    :param ctx: spaces, device, seed, budget, backbone factory, exploration and nan policy.
    """

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
        obs_space = ctx.env.observation_space
        flat_box = isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1
        joint = config.critic_action_input == "observation" or (
            config.critic_action_input == "auto" and flat_box)
        if joint and not flat_box:
            raise ConfigError(f"algorithm.critic_action_input: 'observation' needs flat Box "
                              f"observations, env has {obs_space}; use 'features' (or auto).",
                              key="algorithm.critic_action_input")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            actor = Actor(ctx.backbone(obs_space), self.action_dim)
            critics = [Critic(ctx.backbone, obs_space, self.action_dim, joint=joint,
                              head_sizes=config.critic_head_sizes)
                       for _ in range(2 if config.twin_critics else 1)]
        self.actor = actor.to(self.device)
        self.critics = nn.ModuleList(critics).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.actor_params = list(self.actor.parameters())
        self.critic_params = list(self.critics.parameters())
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
        self.buffer = ReplayBuffer(capacity=config.buffer_size, observation_space=obs_space,
                                   action_space=gym.spaces.Box(-1.0, 1.0, (self.action_dim,)),
                                   num_envs=self.num_envs, device=self.device,
                                   size_key="algorithm.buffer_size")
        self.env_steps = 0
        """Environment steps observed (``N`` per batched step)."""
        self.critic_updates = 0
        """Critic gradient steps taken (the actor learns every ``policy_delay`` of them)."""
        self.next_train = config.train_freq
        """Environment step at which the next learning phase is due."""

    # --- ask/tell ------------------------------------------------------------------------

    @torch.no_grad()
    def act(self, obs: Tensor, explore: bool = True) -> Tensor:
        """Actions within the env's bounds, ``(N, *action_shape)``: the actor's, plus noise
        when ``explore`` (uniformly random before ``learning_starts``)."""
        if explore and self.env_steps < self.config.learning_starts:
            unit = torch.rand((obs.shape[0], self.action_dim), generator=self.generator,
                              device=self.device) * 2.0 - 1.0
            return self._to_env(unit)
        action = self.actor(obs)
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

    def observe(self, transition: Transition) -> None:
        """Store the transition (its actions normalised into ``[-1, 1]``) and restart the
        noise of the envs whose episodes ended."""
        action = self._from_env(transition.action)
        self.buffer.add(transition._replace(action=action))
        ended = transition.terminated | transition.truncated
        if transition.valid is not None:
            ended = ended | ~transition.valid
        self.noise.reset(ended)
        self.env_steps += transition.reward.shape[0]

    def begin_episodes(self, mask: Tensor | None = None) -> None:
        """Restart the exploration noise of the envs in ``mask`` (None: all)."""
        self.noise.reset(mask)

    @contextlib.contextmanager
    def separate_state(self, num_envs: int) -> Iterator[None]:
        """A block with a noise process of its own for ``num_envs`` other envs (an evaluation
        that explores); the training envs' noise is untouched."""
        kept = self.noise
        self.noise = self._make_noise(num_envs)
        try:
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
        if self.env_steps < cfg.learning_starts or len(self.buffer) == 0:
            return {}
        return self.learn(phases * cfg.gradient_steps)

    # --- learning ------------------------------------------------------------------------

    def td_target(self, batch: ReplayBatch) -> Tensor:
        """``y = r + gamma * (1 - terminated) * min_i Q_target_i(s', mu_target(s') + noise)``."""
        cfg = self.config
        with torch.no_grad():
            next_action = self.actor_target(batch.next_obs)
            if cfg.target_policy_noise > 0:
                noise = torch.randn(next_action.shape, generator=self.generator,
                                    device=self.device) * cfg.target_policy_noise
                noise = noise.clamp(-cfg.target_noise_clip, cfg.target_noise_clip)
                next_action = (next_action + noise).clamp(-1.0, 1.0)
            next_q = self.critics_target[0](batch.next_obs, next_action)
            for critic in list(self.critics_target)[1:]:
                next_q = torch.minimum(next_q, critic(batch.next_obs, next_action))
            return batch.reward + cfg.gamma * next_q * (~batch.terminated)

    def learn(self, steps: int) -> dict[str, float]:
        """Take ``steps`` critic updates (and the actor and target updates that fall due) on
        replayed minibatches, all drawn at once; return the phase's mean metrics."""
        cfg = self.config
        progress = min(self.env_steps / self.total_steps, 1.0)
        actor_lr = set_learning_rate(self.actor_optimizer, cfg.actor_optimizer, progress)
        critic_lr = set_learning_rate(self.critic_optimizer, cfg.critic_optimizer, progress)
        bs = cfg.batch_size
        replay = self.buffer.sample(steps * bs, self.generator)
        check = self.nan_check.check
        critic_losses: list[Tensor] = []
        actor_losses: list[Tensor] = []
        q_values: list[Tensor] = []
        for i in range(steps):
            batch = ReplayBatch(*(x[i * bs:(i + 1) * bs] for x in replay))
            target = self.td_target(batch)
            qs = [critic(batch.obs, batch.action) for critic in self.critics]
            critic_loss = sum(nn.functional.mse_loss(q, target) for q in qs)
            assert isinstance(critic_loss, Tensor)
            check("train/critic_loss", critic_loss, CRITIC_CAUSE)
            self._step(self.critic_optimizer, self.critic_params, critic_loss, CRITIC_CAUSE)
            critic_losses.append(critic_loss.detach())
            q_values.append(qs[0].detach().mean())
            self.critic_updates += 1
            if self.critic_updates % cfg.policy_delay == 0:
                actor_loss = -self.critics[0](batch.obs, self.actor(batch.obs)).mean()
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
        """Networks, optimizers, RNG, exploration and noise, replay buffer and counters."""
        return {
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


def _output_dim(backbone: nn.Module) -> int:
    width = backbone.output_dim
    if not isinstance(width, int):
        raise TypeError(f"backbone {type(backbone).__name__} must have an int output_dim")
    return width


def build_ddpg(params: DDPGConfig, ctx: BuildContext) -> DDPG:
    """Build a :class:`DDPG` agent (TD3 when ``params`` is a :class:`TD3Config`)."""
    return DDPG(params, ctx)
