"""SB3's DQN, SAC, TD3 and DDPG, stepped by rlkit's loop.

SB3's ``OffPolicyAlgorithm.collect_rollouts`` and ``learn`` are redone one step at a time:

* ``act(obs)`` is SB3's own ``_sample_action``: uniform random actions before
  ``learning_starts``, then the policy with action noise (Box) or epsilon-greedy (DQN). The
  scaled action it returns for the buffer is kept for ``observe``.
* ``observe(t)`` adds the step to SB3's replay buffer with ``t.next_obs`` (the true final
  observation where an episode ended) and ``TimeLimit.truncated`` set for time-limit steps, so
  SB3's ``handle_timeout_termination`` bootstraps them; then advances ``num_timesteps`` and
  the progress, calls the model's ``_on_step`` (DQN's target update and epsilon) and resets
  the action noise of finished episodes.
* ``update()`` ends a collection period when ``train_freq`` steps (or episodes) were
  collected and then, past ``learning_starts``, calls SB3's ``train()`` for
  ``gradient_steps`` steps (-1: as many as env steps collected).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from rlkit.interfaces import BuildContext, Transition
from rlkit.validation import ConfigError, param
from rlkit_sb3.adapter import (
    ActionNoiseConfig,
    AutoCoef,
    LinSchedule,
    Sb3Adapter,
    buffer_state,
    check_action_space,
    load_buffer_state,
    np_or_none,
    sb3_policy_kwargs,
    schedule,
    tensor_or_none,
)

_BUFFER_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones",
                  "timeouts")

TrainFreq = int | tuple[int, Literal["step", "episode"]]


@dataclass(kw_only=True)
class _OffPolicyConfig:
    """Settings every off-policy algorithm shares (SB3's names and defaults)."""

    policy: Literal["auto", "MlpPolicy", "CnnPolicy", "MultiInputPolicy"] = "auto"
    """SB3 policy class: MlpPolicy, CnnPolicy, MultiInputPolicy, or auto (CnnPolicy for
    image observations, MultiInputPolicy for dict observations, MlpPolicy otherwise)."""
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    """Passed to SB3's policy: net_arch ([256, 256], or {pi: [...], qf: [...]}),
    activation_fn by name (relu, tanh, ...), n_critics, ..."""
    learning_rate: float | LinSchedule = param(1e-3, ge=0.0)
    """Learning rate: a number, or 'lin_<x>' for a linear decay from x to 0."""
    buffer_size: int = param(1_000_000, ge=1)
    """Replay buffer capacity, in transitions."""
    learning_starts: int = param(100, ge=0)
    """Env steps of uniformly random actions, and no learning, at the start."""
    batch_size: int = param(256, ge=1)
    """Minibatch size of each gradient step."""
    tau: float = param(0.005, ge=0.0, le=1.0)
    """Soft target update rate (1: copy the weights)."""
    gamma: float = param(0.99, ge=0.0, le=1.0)
    """Discount factor."""
    train_freq: TrainFreq = 1
    """Learn every this many steps (of every env); or a list of a count and a unit, step or
    episode, e.g. 1, episode (episodes with one env only)."""
    gradient_steps: int = param(1, ge=-1)
    """Gradient steps after each collection period (-1: as many as env steps collected)."""
    n_steps: int = param(1, ge=1)
    """n-step returns in the replay buffer (1: one-step TD targets; SB3 2.7 or newer)."""


@dataclass(kw_only=True)
class DQNConfig(_OffPolicyConfig):
    """Stable-Baselines3 DQN, driven by rlkit's loop."""

    learning_rate: float | LinSchedule = param(1e-4, ge=0.0)
    """Learning rate: a number, or 'lin_<x>' for a linear decay from x to 0."""
    batch_size: int = param(32, ge=1)
    """Minibatch size of each gradient step."""
    tau: float = param(1.0, ge=0.0, le=1.0)
    """Target update rate at each target update (1: copy the weights)."""
    train_freq: TrainFreq = 4
    """Learn every this many steps (of every env); or a list of a count and a unit, step or
    episode, e.g. 1, episode (episodes with one env only)."""
    target_update_interval: int = param(10_000, ge=1)
    """Env steps between target network updates."""
    exploration_fraction: float = param(0.1, ge=0.0, le=1.0)
    """Fraction of the run over which epsilon falls from its initial to its final value."""
    exploration_initial_eps: float = param(1.0, ge=0.0, le=1.0)
    """Epsilon at the start."""
    exploration_final_eps: float = param(0.05, ge=0.0, le=1.0)
    """Epsilon after exploration_fraction of the run."""
    max_grad_norm: float = param(10.0, gt=0.0)
    """Clip the gradient norm to this."""


@dataclass(kw_only=True)
class _ContinuousConfig(_OffPolicyConfig):
    """Settings of the Box-action algorithms."""

    action_noise: ActionNoiseConfig | None = None
    """Noise added to the actions while exploring: {type: normal | ornstein_uhlenbeck,
    sigma: 0.1} (None: none)."""


@dataclass(kw_only=True)
class SACConfig(_ContinuousConfig):
    """Stable-Baselines3 SAC, driven by rlkit's loop."""

    learning_rate: float | LinSchedule = param(3e-4, ge=0.0)
    """Learning rate: a number, or 'lin_<x>' for a linear decay from x to 0."""
    ent_coef: float | AutoCoef = param("auto", ge=0.0)
    """Entropy coefficient: a number, 'auto' (learned, from 1.0) or 'auto_<x>' (from x)."""
    target_update_interval: int = param(1, ge=1)
    """Gradient steps between target network updates."""
    target_entropy: float | Literal["auto"] = "auto"
    """The entropy the learned coefficient aims at (auto: minus the action dimension)."""
    use_sde: bool = False
    """Generalized state-dependent exploration instead of independent Gaussian noise."""
    sde_sample_freq: int = param(-1, ge=-1)
    """Draw a new gSDE noise matrix every this many steps (-1: once per collection)."""
    use_sde_at_warmup: bool = False
    """Explore with gSDE, not uniform random actions, before learning_starts."""


@dataclass(kw_only=True)
class DDPGConfig(_ContinuousConfig):
    """Stable-Baselines3 DDPG, driven by rlkit's loop."""


@dataclass(kw_only=True)
class TD3Config(_ContinuousConfig):
    """Stable-Baselines3 TD3, driven by rlkit's loop."""

    policy_delay: int = param(2, ge=1)
    """Critic updates per actor (and target) update."""
    target_policy_noise: float = param(0.2, ge=0.0)
    """Std of the Gaussian noise on the target policy's actions (smoothing)."""
    target_noise_clip: float = param(0.5, ge=0.0)
    """Clip that noise to this magnitude."""


class OffPolicyAdapter(Sb3Adapter):
    """An SB3 off-policy model as an rlkit agent (see the module docstring)."""

    def __init__(self, name: str, model_cls: type, config: _OffPolicyConfig,
                 kwargs: dict[str, Any], ctx: BuildContext,
                 kinds: tuple[type[gym.Space[Any]], ...]) -> None:
        check_action_space(name, ctx.env.action_space, kinds)
        freq = config.train_freq
        if isinstance(freq, tuple) and freq[1] == "episode" and ctx.env.num_envs > 1:
            raise ConfigError(f"algorithm.train_freq: {list(freq)} counts episodes, which SB3 "
                              f"allows with one env only (env.num_envs is "
                              f"{ctx.env.num_envs}); count steps instead.",
                              key="algorithm.train_freq")
        noise = make_action_noise(getattr(config, "action_noise", None), ctx.env.action_space)
        common = {"learning_rate": schedule(config.learning_rate, "algorithm.learning_rate"),
                  "policy_kwargs": sb3_policy_kwargs(config.policy_kwargs,
                                                     "algorithm.policy_kwargs"),
                  "buffer_size": config.buffer_size, "learning_starts": config.learning_starts,
                  "batch_size": config.batch_size, "tau": config.tau, "gamma": config.gamma,
                  "train_freq": freq, "gradient_steps": config.gradient_steps}
        if config.n_steps != 1:
            common["n_steps"] = config.n_steps
        if noise is not None:
            common["action_noise"] = noise
        try:
            super().__init__(name, model_cls, config.policy, common | kwargs, ctx)
        except AssertionError as exc:  # SB3 checks its arguments with asserts
            raise ConfigError(f"algorithm: SB3 refused these settings: {exc}",
                              key="algorithm") from None
        m = self.model
        m._convert_train_freq()
        if m.action_noise is not None and self.num_envs > 1:
            from stable_baselines3.common.noise import VectorizedActionNoise

            m.action_noise = VectorizedActionNoise(m.action_noise, self.num_envs)
        self.buffer = m.replay_buffer
        self.box = isinstance(m.action_space, gym.spaces.Box)
        # numpy's global generator feeds DQN's epsilon and the action noise; the rest of
        # acting draws from torch and from the action space's own generator
        self.numpy_in_act = not self.box or m.action_noise is not None
        self.collected_steps = 0  # in this collection period (one collect_rollouts call)
        self.collected_episodes = 0
        self.noise_step = -1  # the collected step whose gSDE noise was drawn (-1: none yet)
        self.pending: dict[str, Any] | None = None  # the last act(explore=True), for observe
        self.policy.set_training_mode(False)

    @torch.no_grad()
    def act(self, obs: Tensor, explore: bool = True) -> Tensor:
        if not explore:
            return self.act_deterministic(obs)
        m = self.model
        obs_np = self.np_obs(obs)
        with self.rng.active(numpy=self.numpy_in_act):
            self.noise_step = self.draw_sde_noise(self.collected_steps, self.noise_step,
                                                  lambda n: m.actor.reset_noise(n))
            m._last_obs = obs_np
            actions, buffer_actions = m._sample_action(m.learning_starts, m.action_noise,
                                                       self.num_envs)
        m._last_obs = None
        sent = self.to_actions(actions)
        self.pending = {"obs": obs_np, "buffer_actions": buffer_actions, "sent": sent,
                        "version": sent._version}
        return sent

    @torch.no_grad()
    def observe(self, transition: Transition) -> None:
        t, p = self.observed(transition)
        m = self.model
        terminated = t.terminated.cpu().numpy()
        truncated = t.truncated.cpu().numpy()
        dones = terminated | truncated
        infos = [{"TimeLimit.truncated": bool(tr and not te)}
                 for te, tr in zip(terminated, truncated)]
        rewards = t.reward.detach().cpu().numpy().astype(np.float32, copy=True)
        self.buffer.add(p["obs"], self.np_obs(t.next_obs), self._taken(t.action, p), rewards,
                        dones, infos)
        self.pending = None
        m.num_timesteps += self.num_envs
        self.collected_steps += 1
        self.progress()
        m._on_step()  # DQN: target update and epsilon
        for idx in np.flatnonzero(dones):
            self.collected_episodes += 1
            m._episode_num += 1
            if m.action_noise is not None:
                m.action_noise.reset(**({"indices": [idx]} if self.num_envs > 1 else {}))

    def _taken(self, action: Tensor, p: dict[str, Any]) -> np.ndarray:
        """The buffer's actions (indices; Box actions scaled to [-1, 1]) for what the envs
        were given."""
        buffer_actions = p["buffer_actions"]
        if action is p["sent"] and action._version == p["version"]:
            return buffer_actions
        taken = action.detach().cpu().numpy()
        if not self.box:
            return (taken.astype(np.int64) - self.action_start).astype(buffer_actions.dtype)
        same = (taken == p["sent"].cpu().numpy()).all(axis=1)
        if same.all():
            return buffer_actions
        scaled = np.clip(self.policy.scale_action(taken), -1.0, 1.0)
        return np.where(same[:, None], buffer_actions, scaled).astype(buffer_actions.dtype)

    def update(self) -> dict[str, float]:
        from stable_baselines3.common.utils import should_collect_more_steps

        m = self.model
        if should_collect_more_steps(m.train_freq, self.collected_steps,
                                     self.collected_episodes):
            return {}
        collected = self.collected_steps * self.num_envs
        self.collected_steps = self.collected_episodes = 0
        self.noise_step = -1
        if not (m.num_timesteps > 0 and m.num_timesteps > m.learning_starts):
            return {}
        gradient_steps = m.gradient_steps if m.gradient_steps >= 0 else collected
        if gradient_steps <= 0:
            return {}
        with self.rng.active():
            m.train(batch_size=m.batch_size, gradient_steps=gradient_steps)
        self.policy.set_training_mode(False)
        return self.train_metrics()

    def state_dict(self) -> dict[str, Any]:
        p = self.pending
        return self.common_state() | {
            "replay_buffer": buffer_state(self.buffer, _BUFFER_ARRAYS),
            "collected_steps": self.collected_steps,
            "collected_episodes": self.collected_episodes,
            "noise_step": self.noise_step,
            "action_noise": [tensor_or_none(getattr(n, "noise_prev", None))
                             for n in self._noises()],
            "pending": None if p is None else {
                "obs": torch.from_numpy(p["obs"].copy()),
                "buffer_actions": torch.from_numpy(np.array(p["buffer_actions"], copy=True)),
                "sent": p["sent"].clone()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.load_common_state(state)
        load_buffer_state(self.buffer, state["replay_buffer"])
        self.collected_steps = int(state["collected_steps"])
        self.collected_episodes = int(state["collected_episodes"])
        self.noise_step = int(state["noise_step"])
        for noise, prev in zip(self._noises(), state["action_noise"]):
            if prev is not None:
                noise.noise_prev = np_or_none(prev)
        p = state["pending"]
        self.pending = None if p is None else {
            "obs": p["obs"].numpy().copy(), "buffer_actions": p["buffer_actions"].numpy().copy(),
            "sent": p["sent"].to(self.device).clone()}
        if self.pending is not None:
            self.pending["version"] = self.pending["sent"]._version

    def _noises(self) -> list[Any]:
        noise = self.model.action_noise
        if noise is None:
            return []
        return list(getattr(noise, "noises", [noise]))


def make_action_noise(config: ActionNoiseConfig | None, space: gym.Space[Any]) -> Any:
    """SB3's action noise object for ``config`` on Box ``space`` (None: no noise)."""
    if config is None:
        return None
    from stable_baselines3.common.noise import (
        NormalActionNoise,
        OrnsteinUhlenbeckActionNoise,
    )

    dim = int(np.prod(space.shape or (1,)))
    mean, sigma = np.zeros(dim), config.sigma * np.ones(dim)
    if config.type == "normal":
        return NormalActionNoise(mean=mean, sigma=sigma)
    return OrnsteinUhlenbeckActionNoise(mean=mean, sigma=sigma, theta=config.theta,
                                        dt=config.dt)


_BOX = (gym.spaces.Box,)


def build_dqn(config: DQNConfig, ctx: BuildContext) -> OffPolicyAdapter:
    from stable_baselines3 import DQN

    return OffPolicyAdapter("sb3.dqn", DQN, config, {
        "target_update_interval": config.target_update_interval,
        "exploration_fraction": config.exploration_fraction,
        "exploration_initial_eps": config.exploration_initial_eps,
        "exploration_final_eps": config.exploration_final_eps,
        "max_grad_norm": config.max_grad_norm}, ctx, (gym.spaces.Discrete,))


def build_sac(config: SACConfig, ctx: BuildContext) -> OffPolicyAdapter:
    from stable_baselines3 import SAC

    return OffPolicyAdapter("sb3.sac", SAC, config, {
        "ent_coef": config.ent_coef if isinstance(config.ent_coef, float) else str(
            config.ent_coef), "target_update_interval": config.target_update_interval,
        "target_entropy": config.target_entropy, "use_sde": config.use_sde,
        "sde_sample_freq": config.sde_sample_freq,
        "use_sde_at_warmup": config.use_sde_at_warmup}, ctx, _BOX)


def build_td3(config: TD3Config, ctx: BuildContext) -> OffPolicyAdapter:
    from stable_baselines3 import TD3

    return OffPolicyAdapter("sb3.td3", TD3, config, {
        "policy_delay": config.policy_delay, "target_policy_noise": config.target_policy_noise,
        "target_noise_clip": config.target_noise_clip}, ctx, _BOX)


def build_ddpg(config: DDPGConfig, ctx: BuildContext) -> OffPolicyAdapter:
    from stable_baselines3 import DDPG

    return OffPolicyAdapter("sb3.ddpg", DDPG, config, {}, ctx, _BOX)
