"""Recurrent backbones: an LSTM or GRU core on top of a feed-forward encoder.

``lstm`` (Hochreiter & Schmidhuber, 1997) and ``gru`` (Cho et al., 2014) give an agent memory
for partially observable tasks. Each observation goes through a feed-forward *encoder* -- any
registered backbone, ``mlp`` for vectors, ``cnn`` for images, or a plugin's -- and the core
carries a hidden state from one step of an episode to the next::

    backbone:
      name: lstm
      hidden_size: 128
      layers: 1
      encoder: {name: cnn, channels: [16], kernel_sizes: [3], strides: [1]}

The module differs from a feed-forward backbone in three ways that algorithms rely on:

* ``recurrent = True`` and ``state_shape``: one environment's state is a tensor of shape
  ``state_shape`` = ``(layers, 2, hidden_size)`` for an LSTM (hidden and cell state),
  ``(layers, 1, hidden_size)`` for a GRU; a batch of states is ``(B, *state_shape)``, batch
  first, so rows can be stored, masked and indexed like observations. Zeros start an episode.
* ``forward(obs, state) -> (features, new_state)`` for one step of ``B`` environments.
* ``forward_sequence(obs, state, starts) -> (features, final_state)`` for ``T`` steps of ``B``
  environments (``obs`` ``(T, B, ...)``, features ``(T, B, hidden_size)``). ``starts`` ``(T, B)``
  marks the steps where an episode begins: the state of that row is zeroed before the step, so
  nothing -- not even a gradient -- flows from one episode into the next. The encoder runs once
  over all ``T * B`` observations; the core runs over the stretches between episode starts in
  single cuDNN/ATen calls.

The per-env state itself lives in the agent (:class:`rlkit.memory.RecurrentMemory`), never in
the module: the same module serves training, evaluation and sequence replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import torch
from torch import Tensor, nn

from rlkit.backbones.mlp import MLP, MLPConfig
from rlkit.components import BackboneChoice
from rlkit.validation import ConfigError, param

DEFAULT_ENCODER = MLPConfig(hidden_sizes=[64])
"""The encoder when none is named: one 64-unit tanh layer over the flattened observation."""


@dataclass(kw_only=True)
class RecurrentConfig:
    """The hyperparameters shared by the LSTM and GRU cores."""

    recurrent: ClassVar[bool] = True
    """Marks a recurrent backbone for the config layer (algorithms that cannot keep per-env
    state refuse it before anything is built)."""

    hidden_size: int = param(128, ge=1)
    """Width of the hidden state (and of the features the algorithm's heads see)."""
    layers: int = param(1, ge=1)
    """Stacked recurrent layers."""
    encoder: BackboneChoice | None = None
    """The feed-forward backbone each observation goes through before the core, written like
    the backbone section itself: ``{name: mlp, hidden_sizes: [64]}``, ``{name: cnn, ...}`` or
    a plugin's. null: an MLP with one 64-unit tanh layer."""
    orthogonal_init: bool = True
    """Orthogonal recurrent and input weights (gain 1) and zero biases; false keeps PyTorch's
    default initialisation."""

    def __post_init__(self) -> None:
        if self.encoder is not None and getattr(self.encoder.spec.config, "recurrent", False):
            raise ValueError(f"encoder: {self.encoder.name!r} is itself recurrent; the encoder "
                             f"must be a feed-forward backbone such as mlp or cnn")


@dataclass(kw_only=True)
class LSTMConfig(RecurrentConfig):
    """An LSTM core over a feed-forward encoder: memory across the steps of an episode."""


@dataclass(kw_only=True)
class GRUConfig(RecurrentConfig):
    """A GRU core over a feed-forward encoder: memory across the steps of an episode."""


class RecurrentBackbone(nn.Module):
    """An encoder, then an LSTM or GRU core. See the module docstring for the contract.

    :param observation_space: one environment's observation space.
    :param config: sizes and the encoder.
    :param cell: ``"lstm"`` or ``"gru"``.
    """

    recurrent = True

    def __init__(self, observation_space: gym.Space[Any], config: RecurrentConfig,
                 cell: str) -> None:
        super().__init__()
        if config.encoder is None:
            self.encoder: nn.Module = MLP(observation_space, DEFAULT_ENCODER)
        else:
            self.encoder = config.encoder.build(observation_space)
        width = getattr(self.encoder, "output_dim", None)
        if not isinstance(width, int):
            raise ConfigError(f"backbone 'lstm'/'gru': the encoder "
                              f"{type(self.encoder).__name__} has no integer output_dim.")
        self.cell = cell
        core_type = nn.LSTM if cell == "lstm" else nn.GRU
        self.core = core_type(width, config.hidden_size, num_layers=config.layers)
        self.layers = config.layers
        self.hidden_size = config.hidden_size
        self.output_dim = config.hidden_size
        self.state_shape: tuple[int, ...] = (config.layers, 2 if cell == "lstm" else 1,
                                             config.hidden_size)
        if config.orthogonal_init:
            for name, weight in self.core.named_parameters():
                if name.startswith("weight"):
                    nn.init.orthogonal_(weight, gain=1.0)
                else:
                    nn.init.zeros_(weight)

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> Tensor:
        """Zeros ``(batch, *state_shape)``: the state at the start of an episode."""
        if device is None:
            device = next(self.core.parameters()).device
        return torch.zeros((batch, *self.state_shape), device=device)

    def forward(self, obs: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One step: observations ``(B, ...)`` and states ``(B, *state_shape)`` -> features
        ``(B, hidden_size)`` and the next states."""
        features, state = self.forward_sequence(obs.unsqueeze(0), state, None)
        return features[0], state

    def forward_sequence(self, obs: Tensor, state: Tensor,
                         starts: Tensor | None) -> tuple[Tensor, Tensor]:
        """``T`` steps: observations ``(T, B, ...)``, initial states ``(B, *state_shape)`` and
        episode starts ``(T, B)`` bool (None: no episode starts inside) -> features
        ``(T, B, hidden_size)`` and the states after the last step."""
        steps, batch = obs.shape[0], obs.shape[1]
        x = self.encoder(obs.reshape(steps * batch, *obs.shape[2:])).view(steps, batch, -1)
        hidden: Any = self._unpack(state)
        if starts is None:
            out, hidden = self.core(x, hidden)
            return out, self._pack(hidden)
        # cut the sequence where any row starts an episode: one host read per sequence
        cuts = [0, *(torch.nonzero(starts[1:].any(dim=1)).flatten() + 1).tolist(), steps]
        outs = []
        for begin, end in zip(cuts[:-1], cuts[1:]):
            keep = (~starts[begin]).to(x.dtype).view(1, batch, 1)
            hidden = tuple(h * keep for h in hidden) if isinstance(hidden, tuple) \
                else hidden * keep
            out, hidden = self.core(x[begin:end], hidden)
            outs.append(out)
        return torch.cat(outs) if len(outs) > 1 else outs[0], self._pack(hidden)

    def _unpack(self, state: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """Batch-first ``(B, layers, k, H)`` -> what ``nn.LSTM``/``nn.GRU`` take."""
        layers_first = state.permute(1, 2, 0, 3)  # (layers, k, B, H)
        if self.cell == "lstm":
            return layers_first[:, 0].contiguous(), layers_first[:, 1].contiguous()
        return layers_first[:, 0].contiguous()

    def _pack(self, hidden: Tensor | tuple[Tensor, Tensor]) -> Tensor:
        parts = hidden if isinstance(hidden, tuple) else (hidden,)
        return torch.stack(parts, dim=1).permute(2, 0, 1, 3)  # (B, layers, k, H)


def build_lstm(params: LSTMConfig, observation_space: gym.Space[Any]) -> RecurrentBackbone:
    return RecurrentBackbone(observation_space, params, "lstm")


def build_gru(params: GRUConfig, observation_space: gym.Space[Any]) -> RecurrentBackbone:
    return RecurrentBackbone(observation_space, params, "gru")
