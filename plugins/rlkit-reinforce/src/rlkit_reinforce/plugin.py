"""REINFORCE with a learned baseline (Williams, 1992), as an rlkit plugin.

The policy gradient estimated from sampled actions, with a learned state-value baseline
``b(s)`` subtracted from the return to lower its variance::

    A_t = G_t - b(s_t)
    L   = -mean(log pi(a_t | s_t) * A_t) + vf_coef * 0.5 * mean((b(s_t) - G_t)^2)
          - ent_coef * mean(entropy)

``G_t`` is the discounted return from step ``t`` within a rollout of ``n_steps`` steps per
environment. A terminated episode ends its return. Where an episode was cut off instead -- by
a time limit (``truncated``) or by the end of the rollout -- the return is completed with the
baseline's value of the observation where it was cut: ``G_t = r_t + gamma * b(s_{t+1})``.
With ``n_steps`` longer than every episode these are the paper's Monte-Carlo returns.

Sampling, log-probabilities and entropies come from :mod:`rlkit.distributions`, the functions
rlkit's own PPO uses; gradient clipping from :func:`rlkit.optim.clip_grad_norm`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import torch
from torch import Tensor, nn

from rlkit.distributions import (
    categorical_log_prob_entropy,
    categorical_mode,
    categorical_sample,
    from_discrete_space,
    to_discrete_space,
)
from rlkit.hookspecs import hookimpl
from rlkit.interfaces import BuildContext, Transition
from rlkit.optim import (
    OptimizerConfig,
    clip_grad_norm,
    load_optimizer_state,
    make_optimizer,
    set_learning_rate,
)
from rlkit.validation import ConfigError, param

RLKIT_PLUGIN_API = "1.0"
"""The rlkit plugin API this module is written for (``rlkit.PLUGIN_API``): an rlkit that does
not provide it reports this plugin and skips it instead of failing later."""


@dataclass(kw_only=True)
class ReinforceConfig:
    """REINFORCE with a learned state-value baseline (discrete actions)."""

    n_steps: int = param(256, ge=1)
    """Steps collected from each environment before each update."""
    gamma: float = param(0.99, ge=0.0, le=1.0)
    """Discount factor."""
    normalize_advantages: bool = True
    """Scale the advantages ``G_t - b(s_t)`` of each rollout to zero mean and unit std."""
    vf_coef: float = param(0.5, ge=0.0)
    """Weight of the baseline's squared error in the loss."""
    ent_coef: float = param(0.0, ge=0.0)
    """Entropy bonus coefficient."""
    max_grad_norm: float | None = param(0.5, gt=0.0)
    """Clip the global gradient norm to this (None: no clipping)."""
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=1e-3))
    """Optimizer and learning rate (a number or a schedule)."""


class Reinforce:
    """The agent (ask/tell): a categorical policy and a baseline, each on its own backbone."""

    def __init__(self, config: ReinforceConfig, ctx: BuildContext) -> None:
        space = ctx.env.action_space
        if not isinstance(space, gym.spaces.Discrete):
            raise ConfigError(f"algorithm 'reinforce' needs a Discrete action space, not {space}.")
        self.config, self.device, self.total_steps = config, ctx.device, ctx.total_steps
        self.nan_check = ctx.nan_check
        self.action_start = int(space.start)
        with torch.random.fork_rng(devices=[]):  # seeded weights; the global RNG is untouched
            torch.manual_seed(ctx.seed)
            body = ctx.backbone(ctx.env.observation_space)
            self.policy = nn.Sequential(body, nn.Linear(body.output_dim, int(space.n)))
            body = ctx.backbone(ctx.env.observation_space)
            self.baseline = nn.Sequential(body, nn.Linear(body.output_dim, 1))
        self.policy.to(self.device)
        self.baseline.to(self.device)
        self.parameters = [*self.policy.parameters(), *self.baseline.parameters()]
        self.optimizer = make_optimizer(self.parameters, config.optimizer)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(ctx.seed)
        # One entry per step: obs, action, reward, next_obs, terminated, truncated, valid.
        self.rollout: list[list[Tensor]] = []
        self.env_steps = 0
        self.updates = 0

    @torch.no_grad()
    def act(self, obs: Tensor, explore: bool = True) -> Tensor:
        logits = self.policy(obs)
        if explore:
            index, _ = categorical_sample(logits, self.generator)
        else:
            index = categorical_mode(logits)
        return to_discrete_space(index, self.action_start)  # Discrete(n, start) actions

    def observe(self, transition: Transition) -> None:
        t = transition
        valid = torch.ones_like(t.terminated) if t.valid is None else t.valid
        step = (t.obs, t.action, t.reward, t.next_obs, t.terminated, t.truncated, valid)
        self.rollout.append([x.clone() for x in step])
        self.env_steps += t.reward.shape[0]

    def update(self) -> dict[str, float]:
        cfg = self.config
        if len(self.rollout) < cfg.n_steps:
            return {}
        obs, action, reward, next_obs, terminated, truncated, valid = (
            torch.stack(x) for x in zip(*self.rollout))
        self.rollout = []
        lr = set_learning_rate(self.optimizer, cfg.optimizer,
                               min(self.env_steps / self.total_steps, 1.0))
        returns = self._returns(reward, next_obs, terminated, truncated)
        values = self.baseline(obs.flatten(0, 1)).view_as(reward)
        index = from_discrete_space(action.flatten(0, 1), self.action_start)
        log_prob, entropy = categorical_log_prob_entropy(self.policy(obs.flatten(0, 1)), index)
        log_prob, entropy = log_prob.view_as(reward), entropy.view_as(reward)
        mask = valid.float()  # reset-only steps (valid=False) are not learned from
        advantages = (returns - values).detach()
        if cfg.normalize_advantages:
            mean = _masked_mean(advantages, mask)
            std = _masked_mean((advantages - mean) ** 2, mask).sqrt()
            advantages = (advantages - mean) / (std + 1e-8)
        policy_loss = -_masked_mean(log_prob * advantages, mask)
        value_loss = 0.5 * _masked_mean((values - returns) ** 2, mask)
        entropy_mean = _masked_mean(entropy, mask)
        loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy_mean
        self.nan_check.check("train/loss", loss, "the loss diverged; lower "
                             "algorithm.optimizer.lr or scale the rewards (env.wrappers)")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_grad_norm(self.parameters, cfg.max_grad_norm)
        self.nan_check.check("train/grad_norm", grad_norm, "exploding gradients; lower "
                             "algorithm.optimizer.lr or algorithm.max_grad_norm")
        self.optimizer.step()
        self.updates += 1
        metrics = {"train/policy_loss": policy_loss, "train/value_loss": value_loss,
                   "train/entropy": entropy_mean, "train/grad_norm": grad_norm}
        return {k: float(v.detach()) for k, v in metrics.items()} | {"train/learning_rate": lr}

    @torch.no_grad()
    def _returns(self, reward: Tensor, next_obs: Tensor, terminated: Tensor,
                 truncated: Tensor) -> Tensor:
        """Discounted returns ``(T, N)``, completed by the baseline where episodes were cut."""
        next_value = self.baseline(next_obs.flatten(0, 1)).view_as(reward)
        returns = torch.empty_like(reward)
        future = next_value[-1]  # episodes still running when the rollout ends
        for t in reversed(range(reward.shape[0])):
            future = torch.where(truncated[t], next_value[t], future)  # cut by a time limit
            future = torch.where(terminated[t], 0.0, future)  # nothing after a terminal state
            returns[t] = reward[t] + self.config.gamma * future
            future = returns[t]
        return returns

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict(), "baseline": self.baseline.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(),
                "rollout": [list(step) for step in self.rollout],  # the partial rollout
                "env_steps": self.env_steps, "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.baseline.load_state_dict(state["baseline"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        self.generator.set_state(state["generator"].cpu())
        self.rollout = [[x.to(self.device) for x in step] for step in state["rollout"]]
        self.env_steps, self.updates = int(state["env_steps"]), int(state["updates"])


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


@hookimpl
def register_algorithms(register: Callable[..., None]) -> None:
    register("reinforce", ReinforceConfig, Reinforce)
