"""MLP backbone: a stack of fully connected layers over a flat observation.

Discrete observations are one-hot encoded, ``MultiDiscrete`` ones one-hot per component, boxes
flattened -- so the same backbone serves FrozenLake and CartPole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium as gym
import torch
from torch import Tensor, nn

from rlkit.validation import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


@dataclass(kw_only=True)
class MLPConfig:
    """A multi-layer perceptron over the flattened observation."""

    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    """Width of each hidden layer; ``[]`` gives a linear model over the raw features."""
    activation: Literal["tanh", "relu", "elu", "gelu", "silu"] = "tanh"
    """Non-linearity after each hidden layer."""
    layer_norm: bool = False
    """Layer normalisation before each activation."""
    orthogonal_init: bool = True
    """Orthogonal weights with gain sqrt(2) and zero biases (as in common PPO implementations)."""
    rescale: bool = False
    """Map each component of a ``Box`` observation with finite bounds linearly from its
    ``[low, high]`` to ``[-1, 1]`` before the first layer (components with an infinite bound
    pass unchanged). For observations whose components differ in scale by orders of
    magnitude -- MountainCar's position in [-1.2, 0.6] beside its velocity in [-0.07, 0.07] --
    without a wrapper, so a torch-native env stays one batch on its device."""

    def __post_init__(self) -> None:
        if any(h <= 0 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive, got {self.hidden_sizes}")


class FlattenObservation(nn.Module):
    """Observation batch ``(B, ...)`` -> float features ``(B, input_dim)``."""

    offset: Tensor
    nvec: Tensor
    center: Tensor
    inv_half: Tensor

    def __init__(self, space: gym.Space[Any], rescale: bool = False) -> None:
        super().__init__()
        self.kind: str
        self.rescale = False
        if isinstance(space, gym.spaces.Discrete):
            self.kind, self.input_dim = "discrete", int(space.n)
            self.register_buffer("offset", torch.tensor(int(space.start)), persistent=False)
        elif isinstance(space, gym.spaces.MultiDiscrete):
            nvec = torch.as_tensor(space.nvec).flatten()
            self.kind, self.input_dim = "multidiscrete", int(nvec.sum())
            self.register_buffer("nvec", nvec, persistent=False)
        elif isinstance(space, (gym.spaces.Box, gym.spaces.MultiBinary)):
            self.kind, self.input_dim = "box", int(math.prod(space.shape or (1,)))
            if rescale and isinstance(space, gym.spaces.Box):
                low = torch.as_tensor(space.low, dtype=torch.float64).flatten()
                high = torch.as_tensor(space.high, dtype=torch.float64).flatten()
                finite = torch.isfinite(low) & torch.isfinite(high) & (high > low)
                half = torch.where(finite, (high - low) / 2, torch.ones_like(low))
                center = torch.where(finite, (high + low) / 2, torch.zeros_like(low))
                # derived from the space, so not part of the state dict
                self.register_buffer("center", center.float(), persistent=False)
                self.register_buffer("inv_half", (1.0 / half).float(), persistent=False)
                self.rescale = bool(finite.any())
        else:
            raise ConfigError(
                f"backbone 'mlp' cannot encode observation space {space}; use a Box, Discrete "
                f"or MultiDiscrete space, or flatten it with a wrapper (env.wrappers)."
            )

    def forward(self, obs: Tensor) -> Tensor:
        if self.kind == "discrete":
            index = (obs.long() - self.offset).flatten()
            return nn.functional.one_hot(index, self.input_dim).float()
        if self.kind == "multidiscrete":
            parts = [nn.functional.one_hot(obs[..., i].long(), int(n)).float()
                     for i, n in enumerate(self.nvec.tolist())]
            return torch.cat(parts, dim=-1).flatten(1)
        flat = obs.reshape(obs.shape[0], -1).float()
        if self.rescale:
            return (flat - self.center) * self.inv_half
        return flat


class MLP(nn.Module):
    """Features ``(B, output_dim)`` from observations ``(B, *obs_shape)``."""

    def __init__(self, observation_space: gym.Space[Any], config: MLPConfig) -> None:
        super().__init__()
        self.encode = FlattenObservation(observation_space, rescale=config.rescale)
        layers: list[nn.Module] = []
        width = self.encode.input_dim
        for hidden in config.hidden_sizes:
            linear = nn.Linear(width, hidden)
            if config.orthogonal_init:
                nn.init.orthogonal_(linear.weight, gain=math.sqrt(2))
                nn.init.zeros_(linear.bias)
            layers.append(linear)
            if config.layer_norm:
                layers.append(nn.LayerNorm(hidden))
            layers.append(ACTIVATIONS[config.activation]())
            width = hidden
        self.body = nn.Sequential(*layers)
        self.output_dim = width

    def forward(self, obs: Tensor) -> Tensor:
        return self.body(self.encode(obs))


def build_mlp(params: MLPConfig, observation_space: gym.Space[Any]) -> MLP:
    return MLP(observation_space, params)
