"""The actor-critic network of the policy-gradient algorithms (PPO, A2C, A3C): a policy head
(categorical logits for Discrete actions, a diagonal Gaussian mean with a learned,
state-independent log standard deviation for Box actions) and a value head on top of one shared
backbone or one backbone each, feed-forward or recurrent. Sampling, log-probabilities,
entropies and modes are those of :mod:`rlkit.distributions`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import torch
from torch import Tensor, nn

from rlkit import distributions as D
from rlkit.interfaces import is_recurrent
from rlkit.validation import IncompatibleError

__all__ = ["ActorCritic"]


class ActorCritic(nn.Module):
    """Policy and value heads on top of one or two backbones."""

    def __init__(
        self,
        make_backbone: Callable[[gym.Space[Any]], nn.Module],
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        share_backbone: bool,
        log_std_init: float,
        algorithm: str = "ppo",
        head_sizes: tuple[int, ...] | list[int] = (),
    ) -> None:
        super().__init__()
        self.actor_body = make_backbone(observation_space)
        self.critic_body = self.actor_body if share_backbone else make_backbone(observation_space)
        self.share_backbone = share_backbone
        self.recurrent = is_recurrent(self.actor_body)
        if self.recurrent:
            # one state per core: (1 or 2, *core state), actor's first
            cores = 1 if share_backbone else 2
            core_shape: tuple[int, ...] = tuple(self.actor_body.state_shape)  # type: ignore[arg-type]
            self.state_shape: tuple[int, ...] = (cores, *core_shape)
        width = _output_dim(self.actor_body)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if isinstance(action_space, gym.spaces.Discrete):
            out = int(action_space.n)
        elif isinstance(action_space, gym.spaces.Box):
            out = int(math.prod(action_space.shape))
            self.log_std = nn.Parameter(torch.full((out,), float(log_std_init)))
        else:
            raise IncompatibleError("algorithm.name", f"{algorithm!r} supports Discrete and Box "
                                    f"action spaces, not {action_space}")
        self.policy_head = _head(width, out, head_sizes, gain=0.01)
        self.value_head = _head(_output_dim(self.critic_body), 1, head_sizes, gain=1.0)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``(policy output, value)``: logits or Gaussian mean, and ``V(obs)`` of shape (B,)."""
        features = self.actor_body(obs)
        critic_features = features if self.share_backbone else self.critic_body(obs)
        return self.policy_head(features), self.value_head(critic_features).squeeze(-1)

    def policy(self, obs: Tensor) -> Tensor:
        """The policy output alone (logits or Gaussian mean): acting greedily needs no value."""
        return self.policy_head(self.actor_body(obs))

    def value(self, obs: Tensor) -> Tensor:
        return self.value_head(self.critic_body(obs)).squeeze(-1)

    # --- recurrent cores -----------------------------------------------------------------

    def initial_state(self, batch: int) -> Tensor:
        """Zeros ``(batch, *state_shape)`` on the model's device."""
        device = next(self.value_head.parameters()).device
        return torch.zeros((batch, *self.state_shape), device=device)

    def sequence(self, obs: Tensor, state: Tensor,
                 starts: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Recurrent forward over ``T`` steps: observations ``(T, B, ...)``, states ``(B,
        *state_shape)``, episode starts ``(T, B)`` (None: none) -> policy outputs ``(T, B,
        ...)``, values ``(T, B)`` and the states after the last step."""
        actor: Any = self.actor_body
        features, actor_state = actor.forward_sequence(obs, state[:, 0], starts)
        if self.share_backbone:
            critic_features, new_state = features, actor_state.unsqueeze(1)
        else:
            critic: Any = self.critic_body
            critic_features, critic_state = critic.forward_sequence(obs, state[:, 1], starts)
            new_state = torch.stack((actor_state, critic_state), dim=1)
        return (self.policy_head(features), self.value_head(critic_features).squeeze(-1),
                new_state)

    def value_step(self, obs: Tensor, state: Tensor) -> Tensor:
        """``V(obs)`` of ``B`` envs from their states, running only the critic's core (what
        bootstrapping needs; the state is not advanced)."""
        critic: Any = self.critic_body
        core_state = state[:, 0] if self.share_backbone else state[:, 1]
        features, _ = critic.forward_sequence(obs.unsqueeze(0), core_state, None)
        return self.value_head(features[0]).squeeze(-1)

    def step(self, obs: Tensor, state: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One recurrent step of ``B`` envs: policy output, value and next state."""
        out, value, state = self.sequence(obs.unsqueeze(0), state, None)
        return out[0], value[0], state

    def log_prob_entropy(self, out: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """``(log_prob, entropy)`` of ``actions`` (indices, or unclipped Gaussian actions)
        under the policy output ``out`` (:mod:`rlkit.distributions`)."""
        if self.discrete:
            return D.categorical_log_prob_entropy(out, actions)
        return D.gaussian_log_prob_entropy(out, self.log_std, actions)

    def sample(self, out: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """An action drawn from the policy and its log-probability (no entropy: acting does
        not need it): an index (Gumbel-max), or an unclipped Gaussian sample."""
        if self.discrete:
            return D.categorical_sample(out, generator)
        return D.gaussian_sample(out, self.log_std, generator)

    def mode(self, out: Tensor) -> Tensor:
        """The deterministic action: the most likely index, or the Gaussian mean."""
        return D.categorical_mode(out) if self.discrete else D.gaussian_mode(out)


def _head(width: int, out: int, hidden: tuple[int, ...] | list[int], gain: float) -> nn.Module:
    """A linear head with orthogonal weights of ``gain`` (0.01 for the policy, so that the
    initial policy is near uniform; 1 for the value), after ``hidden`` tanh layers of gain
    sqrt(2) if any -- one such stack for the policy and one for the value."""
    layers: list[nn.Module] = []
    for size in hidden:
        linear = nn.Linear(width, size)
        nn.init.orthogonal_(linear.weight, gain=math.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.Tanh()]
        width = size
    last = nn.Linear(width, out)
    nn.init.orthogonal_(last.weight, gain=gain)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last) if layers else last


def _output_dim(backbone: nn.Module) -> int:
    """A backbone's feature width (its ``output_dim`` attribute)."""
    width = backbone.output_dim
    if not isinstance(width, int):
        raise TypeError(f"backbone {type(backbone).__name__} must have an int output_dim")
    return width
