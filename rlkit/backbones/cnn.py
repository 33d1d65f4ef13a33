"""CNN backbone: convolutions over image observations, then fully connected layers.

The defaults are the network of Mnih et al. (2015) for 84x84 Atari frames (three convolutions,
then 512 units). Small grids need small kernels; for ``rlkit/Breakout-v0`` (4x10x10) the
MinAtar network (Young & Tian, 2019) is ``channels: [16], kernel_sizes: [3], strides: [1],
hidden_sizes: [128]`` (``experiments/breakout_ppo.yaml``).

Observations may be channels-first ``(C, H, W)``, channels-last ``(H, W, C)`` (gymnasium's
Atari frames) or single-channel ``(H, W)``; ``layout: auto`` takes the smaller of the first
and last dimension as the channels. ``uint8`` pixels are divided by 255.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from torch import Tensor, nn

from rlkit.backbones.mlp import ACTIVATIONS
from rlkit.validation import ConfigError


@dataclass(kw_only=True)
class CNNConfig:
    """Convolutions over image observations, then fully connected layers."""

    channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    """Output channels of each convolution."""
    kernel_sizes: list[int] = field(default_factory=lambda: [8, 4, 3])
    """Kernel size of each convolution (one number per layer: square kernels)."""
    strides: list[int] = field(default_factory=lambda: [4, 2, 1])
    """Stride of each convolution."""
    padding: list[int] | None = None
    """Zero padding of each convolution (None: no padding)."""
    hidden_sizes: list[int] = field(default_factory=lambda: [512])
    """Width of each fully connected layer after the convolutions."""
    activation: Literal["tanh", "relu", "elu", "gelu", "silu"] = "relu"
    """Non-linearity after each convolution and each fully connected layer."""
    layout: Literal["auto", "chw", "hwc"] = "auto"
    """Where the channels are in an observation: first (``chw``), last (``hwc``), or ``auto``:
    the smaller of the first and last dimension. 2-D observations have one channel."""
    orthogonal_init: bool = True
    """Orthogonal weights with gain sqrt(2) and zero biases."""

    def __post_init__(self) -> None:
        layers = len(self.channels)
        if layers == 0:
            raise ValueError("channels must list at least one convolution")
        others = {"kernel_sizes": self.kernel_sizes, "strides": self.strides}
        if self.padding is not None:
            others["padding"] = self.padding
        for name, values in others.items():
            if len(values) != layers:
                raise ValueError(f"{name} has {len(values)} entries but channels has {layers}: "
                                 f"give one per convolution")
        for name, values, low in (("channels", self.channels, 1),
                                  ("kernel_sizes", self.kernel_sizes, 1),
                                  ("strides", self.strides, 1),
                                  ("padding", self.padding or [], 0),
                                  ("hidden_sizes", self.hidden_sizes, 1)):
            if any(v < low for v in values):
                raise ValueError(f"{name} must be at least {low}, got {values}")


class CNN(nn.Module):
    """Features ``(B, output_dim)`` from image observations ``(B, *obs_shape)``."""

    def __init__(self, observation_space: gym.Space[Any], config: CNNConfig) -> None:
        super().__init__()
        shape: tuple[int, ...] = tuple(getattr(observation_space, "shape", None) or ())
        if not isinstance(observation_space, gym.spaces.Box) or len(shape) not in (2, 3):
            raise ConfigError(
                f"backbone 'cnn' needs image observations, a Box of shape (C, H, W), (H, W, C) "
                f"or (H, W); got {observation_space}. Use backbone: {{name: mlp}} for vector "
                f"observations.")
        self.flat_image = len(shape) == 2
        if self.flat_image:
            self.channels_last = False
            in_channels, height, width = 1, shape[0], shape[1]
        else:
            layout = config.layout
            if layout == "auto":
                layout = "hwc" if shape[-1] < shape[0] else "chw"
            self.channels_last = layout == "hwc"
            if self.channels_last:
                height, width, in_channels = shape
            else:
                in_channels, height, width = shape
        self.scale = 1.0 / 255.0 if np.dtype(observation_space.dtype) == np.uint8 else None
        activation = ACTIVATIONS[config.activation]
        padding = config.padding or [0] * len(config.channels)
        layers: list[nn.Module] = []
        size = (height, width)
        for i, (out, kernel, stride, pad) in enumerate(zip(
                config.channels, config.kernel_sizes, config.strides, padding, strict=True)):
            size = (_conv_out(size[0], kernel, stride, pad),
                    _conv_out(size[1], kernel, stride, pad))
            if min(size) < 1:
                raise ConfigError(
                    f"backbone 'cnn': convolution {i} (kernel {kernel}, stride {stride}, padding "
                    f"{pad}) leaves nothing of the {height}x{width} observation; use smaller "
                    f"kernel_sizes or strides, or padding (for 10x10 grids, e.g. channels: [16], "
                    f"kernel_sizes: [3], strides: [1]).")
            layers += [nn.Conv2d(in_channels, out, kernel, stride, pad), activation()]
            in_channels = out
        layers.append(nn.Flatten())
        width_in = in_channels * size[0] * size[1]
        for hidden in config.hidden_sizes:
            layers += [nn.Linear(width_in, hidden), activation()]
            width_in = hidden
        self.body = nn.Sequential(*layers)
        self.output_dim = width_in
        if config.orthogonal_init:
            for module in self.body:
                if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
                    nn.init.orthogonal_(module.weight, gain=math.sqrt(2))
                    nn.init.zeros_(module.bias)

    def forward(self, obs: Tensor) -> Tensor:
        x = obs.float()
        if self.scale is not None:
            x = x * self.scale
        if self.flat_image:
            x = x.unsqueeze(1)
        elif self.channels_last:
            x = x.permute(0, 3, 1, 2)
        return self.body(x)


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def build_cnn(params: CNNConfig, observation_space: gym.Space[Any]) -> CNN:
    return CNN(observation_space, params)
