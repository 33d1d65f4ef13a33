"""SB3's PPO and A2C, stepped by rlkit's loop.

SB3's ``OnPolicyAlgorithm.collect_rollouts`` is redone one step at a time:

* ``act(obs)`` runs ``policy(obs)`` for actions, values and log-probabilities, keeps them for
  ``observe``, and sends the env the action clipped to the Box (or unscaled from ``[-1, 1]``
  with a squashing policy); the unclipped one is what the buffer stores.
* ``observe(t)`` adds ``gamma * V(final obs)`` to the reward of steps cut by a time limit, as
  SB3 does, and adds the step to SB3's ``RolloutBuffer`` with the previous step's dones as
  episode starts. When the buffer is full it computes returns and advantages with
  ``last_values = V(t.next_obs)``. SB3 evaluates the observation the env returned, which for
  an env that just ended is the next episode's first one, where rlkit gives the final one; the
  two differ only where ``dones`` is set, and there ``compute_returns_and_advantage``
  multiplies the last value by ``1 - done = 0``. The result is the same.
* ``update()`` calls SB3's ``train()`` once the buffer is full, after the progress update that
  ``learn()`` makes, so learning-rate and clip-range schedules follow the same course.
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
    LinSchedule,
    Sb3Adapter,
    buffer_state,
    check_action_space,
    load_buffer_state,
    sb3_policy_kwargs,
    schedule,
)

_BUFFER_ARRAYS = ("observations", "actions", "rewards", "returns", "episode_starts", "values",
                  "log_probs", "advantages")


@dataclass(kw_only=True)
class _OnPolicyConfig:
    """Settings PPO and A2C share (SB3's names and defaults)."""

    policy: Literal["auto", "MlpPolicy", "CnnPolicy", "MultiInputPolicy"] = "auto"
    """SB3 policy class: MlpPolicy, CnnPolicy, MultiInputPolicy, or auto (CnnPolicy for
    image observations, MultiInputPolicy for dict observations, MlpPolicy otherwise)."""
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    """Passed to SB3's policy: net_arch ([64, 64] or {pi: [...], vf: [...]}), activation_fn
    by name (tanh, relu, ...), ortho_init, log_std_init, ..."""
    learning_rate: float | LinSchedule = param(3e-4, ge=0.0)
    """Learning rate: a number, or 'lin_<x>' for a linear decay from x to 0."""
    n_steps: int = param(2048, ge=1)
    """Steps collected from each environment per rollout (one update per rollout)."""
    gamma: float = param(0.99, ge=0.0, le=1.0)
    """Discount factor."""
    gae_lambda: float = param(0.95, ge=0.0, le=1.0)
    """GAE's bias/variance trade-off (1: Monte-Carlo advantages)."""
    ent_coef: float = param(0.0, ge=0.0)
    """Weight of the entropy bonus in the loss."""
    vf_coef: float = param(0.5, ge=0.0)
    """Weight of the value loss."""
    max_grad_norm: float = param(0.5, gt=0.0)
    """Clip the gradient norm to this."""
    normalize_advantage: bool = True
    """Normalize each minibatch's advantages to zero mean and unit std."""
    use_sde: bool = False
    """Generalized state-dependent exploration instead of independent Gaussian noise (Box)."""
    sde_sample_freq: int = param(-1, ge=-1)
    """Draw a new gSDE noise matrix every this many steps (-1: once per rollout)."""


@dataclass(kw_only=True)
class PPOConfig(_OnPolicyConfig):
    """Stable-Baselines3 PPO, driven by rlkit's loop."""

    batch_size: int = param(64, ge=1)
    """Minibatch size."""
    n_epochs: int = param(10, ge=1)
    """Passes over each rollout."""
    clip_range: float | LinSchedule = param(0.2, gt=0.0)
    """Policy ratio clip: a number, or 'lin_<x>' for a linear decay from x to 0."""
    clip_range_vf: float | LinSchedule | None = param(None, gt=0.0)
    """Clip the value function's change around its old prediction (None: no clipping)."""
    target_kl: float | None = param(None, gt=0.0)
    """Stop a rollout's epochs early once the approximate KL divergence exceeds 1.5x this."""


@dataclass(kw_only=True)
class A2CConfig(_OnPolicyConfig):
    """Stable-Baselines3 A2C, driven by rlkit's loop."""

    learning_rate: float | LinSchedule = param(7e-4, ge=0.0)
    """Learning rate: a number, or 'lin_<x>' for a linear decay from x to 0."""
    n_steps: int = param(5, ge=1)
    """Steps collected from each environment per update."""
    gae_lambda: float = param(1.0, ge=0.0, le=1.0)
    """GAE's bias/variance trade-off (1: n-step returns, A2C's classic advantage)."""
    normalize_advantage: bool = False
    """Normalize the advantages of each rollout."""
    use_rms_prop: bool = True
    """RMSprop (as the A2C paper) instead of Adam."""
    rms_prop_eps: float = param(1e-5, gt=0.0)
    """RMSprop's epsilon."""


class OnPolicyAdapter(Sb3Adapter):
    """An SB3 on-policy model (PPO, A2C) as an rlkit agent (see the module docstring)."""

    def __init__(self, name: str, model_cls: type, config: _OnPolicyConfig,
                 kwargs: dict[str, Any], ctx: BuildContext) -> None:
        check_action_space(name, ctx.env.action_space, (gym.spaces.Discrete, gym.spaces.Box))
        common = {"learning_rate": schedule(config.learning_rate, "algorithm.learning_rate"),
                  "policy_kwargs": sb3_policy_kwargs(config.policy_kwargs,
                                                     "algorithm.policy_kwargs"),
                  "n_steps": config.n_steps, "gamma": config.gamma,
                  "gae_lambda": config.gae_lambda, "ent_coef": config.ent_coef,
                  "vf_coef": config.vf_coef, "max_grad_norm": config.max_grad_norm,
                  "normalize_advantage": config.normalize_advantage,
                  "use_sde": config.use_sde, "sde_sample_freq": config.sde_sample_freq}
        try:
            super().__init__(name, model_cls, config.policy, common | kwargs, ctx)
        except AssertionError as exc:  # SB3 checks its arguments with asserts
            raise ConfigError(f"algorithm: SB3 refused these settings: {exc}",
                              key="algorithm") from None
        self.buffer = self.model.rollout_buffer
        self.box = isinstance(self.model.action_space, gym.spaces.Box)
        self.episode_starts = np.ones(self.num_envs, dtype=bool)
        self.pending: dict[str, Any] | None = None  # the last act(explore=True), for observe
        self.noise_pos = -1  # the rollout step whose gSDE noise was drawn (-1: none yet)
        self.policy.set_training_mode(False)

    @torch.no_grad()
    def act(self, obs: Tensor, explore: bool = True) -> Tensor:
        if not explore:
            return self.act_deterministic(obs)
        m = self.model
        obs_np = self.np_obs(obs)
        with self.rng.active(numpy=False):  # sampling draws from torch only
            self.noise_pos = self.draw_sde_noise(self.buffer.pos, self.noise_pos,
                                                 self.policy.reset_noise)
            actions, values, log_probs = self.policy(torch.as_tensor(obs_np, device=m.device))
        actions_np = actions.cpu().numpy()
        env_actions = actions_np
        if self.box:
            if self.policy.squash_output:
                env_actions = self.policy.unscale_action(actions_np)
            else:
                env_actions = np.clip(actions_np, m.action_space.low, m.action_space.high)
        sent = self.to_actions(env_actions)
        self.pending = {"obs": obs_np, "actions": actions_np, "values": values,
                        "log_probs": log_probs, "sent": sent, "version": sent._version}
        return sent

    @torch.no_grad()
    def observe(self, transition: Transition) -> None:
        t, p = self.observed(transition)
        m = self.model
        actions, log_probs = self._taken(t.action, p)
        if log_probs is None:
            log_probs = p["log_probs"]
        rewards = t.reward.detach().cpu().numpy().astype(np.float32, copy=True)
        terminated = t.terminated.cpu().numpy()
        truncated = t.truncated.cpu().numpy()
        dones = terminated | truncated
        next_obs = self.np_obs(t.next_obs)
        for idx in np.flatnonzero(truncated & ~terminated):  # time limit: bootstrap
            terminal_obs = self.policy.obs_to_tensor(next_obs[idx])[0]
            terminal_value = self.policy.predict_values(terminal_obs)[0]
            rewards[idx] += m.gamma * terminal_value
        if not self.box:
            actions = actions.reshape(-1, 1)
        self.buffer.add(p["obs"], actions, rewards, self.episode_starts, p["values"], log_probs)
        self.episode_starts = dones
        m.num_timesteps += self.num_envs
        self.pending = None
        if self.buffer.full:
            last_values = self.policy.predict_values(torch.as_tensor(next_obs, device=m.device))
            self.buffer.compute_returns_and_advantage(last_values=last_values, dones=dones)

    def _taken(self, action: Tensor, p: dict[str, Any]) -> tuple[np.ndarray, Tensor | None]:
        """The buffer's actions for what the env was given, and their log-probabilities where
        they differ from what ``act`` sampled (None: they do not)."""
        actions = p["actions"]
        if action is p["sent"] and action._version == p["version"]:
            return actions, None  # the trainer's loop: the env got exactly act's actions
        taken = action.detach().cpu().numpy()
        if self.box:
            same = (taken == p["sent"].cpu().numpy()).all(axis=1)
            if same.all():
                return actions, None
            replaced = self.policy.scale_action(taken) if self.policy.squash_output else taken
            actions = np.where(same[:, None], actions, replaced).astype(actions.dtype)
        else:
            index = taken.astype(np.int64) - self.action_start
            if (index == actions).all():
                return actions, None
            actions = index.astype(actions.dtype)
        obs = torch.as_tensor(p["obs"], device=self.model.device)
        _, log_probs, _ = self.policy.evaluate_actions(
            obs, torch.as_tensor(actions, device=self.model.device))
        return actions, log_probs

    def update(self) -> dict[str, float]:
        if not self.buffer.full:
            return {}
        with self.rng.active():
            self.progress()
            self.model.train()
        self.policy.set_training_mode(False)
        self.buffer.reset()
        self.noise_pos = -1
        return self.train_metrics()

    def state_dict(self) -> dict[str, Any]:
        p = self.pending
        return self.common_state() | {
            "rollout_buffer": buffer_state(self.buffer, _BUFFER_ARRAYS),
            "episode_starts": torch.from_numpy(self.episode_starts.copy()),
            "noise_pos": self.noise_pos,
            "pending": None if p is None else {
                "obs": torch.from_numpy(p["obs"].copy()),
                "actions": torch.from_numpy(p["actions"].copy()),
                "values": p["values"].detach().clone(), "log_probs": p["log_probs"].clone(),
                "sent": p["sent"].clone()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.load_common_state(state)
        self.buffer.reset()  # rows past the saved ones are zero, as after a reset
        load_buffer_state(self.buffer, state["rollout_buffer"])
        self.episode_starts = state["episode_starts"].numpy().copy()
        self.noise_pos = int(state["noise_pos"])
        p = state["pending"]
        self.pending = None if p is None else {
            "obs": p["obs"].numpy().copy(), "actions": p["actions"].numpy().copy(),
            "values": p["values"].to(self.model.device).clone(),
            "log_probs": p["log_probs"].to(self.model.device).clone(),
            "sent": p["sent"].to(self.device).clone()}
        if self.pending is not None:
            self.pending["version"] = self.pending["sent"]._version


def build_ppo(config: PPOConfig, ctx: BuildContext) -> OnPolicyAdapter:
    from stable_baselines3 import PPO

    clip_vf = config.clip_range_vf
    return OnPolicyAdapter("sb3.ppo", PPO, config, {
        "batch_size": config.batch_size, "n_epochs": config.n_epochs,
        "clip_range": schedule(config.clip_range, "algorithm.clip_range"),
        "clip_range_vf": None if clip_vf is None else schedule(clip_vf,
                                                               "algorithm.clip_range_vf"),
        "target_kl": config.target_kl}, ctx)


def build_a2c(config: A2CConfig, ctx: BuildContext) -> OnPolicyAdapter:
    from stable_baselines3 import A2C

    return OnPolicyAdapter("sb3.a2c", A2C, config, {
        "use_rms_prop": config.use_rms_prop, "rms_prop_eps": config.rms_prop_eps}, ctx)
