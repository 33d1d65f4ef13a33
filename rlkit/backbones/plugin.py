"""rlkit plugin: registers the built-in backbones (entry point ``backbones``).

Named by reference, like the built-in algorithms (see :mod:`rlkit.algorithms.plugin`), so
listing plugins never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable

from rlkit.hookspecs import hookimpl


@hookimpl
def register_backbones(register: Callable[..., None]) -> None:
    register("mlp", "rlkit.backbones.mlp:MLPConfig", "rlkit.backbones.mlp:build_mlp",
             description="A multi-layer perceptron over the flattened observation.")
    register("cnn", "rlkit.backbones.cnn:CNNConfig", "rlkit.backbones.cnn:build_cnn",
             description="Convolutions over image observations, then fully connected layers.")
    register("lstm", "rlkit.backbones.rnn:LSTMConfig", "rlkit.backbones.rnn:build_lstm",
             description="An LSTM core over a feed-forward encoder: memory across the steps of "
                         "an episode.")
    register("gru", "rlkit.backbones.rnn:GRUConfig", "rlkit.backbones.rnn:build_gru",
             description="A GRU core over a feed-forward encoder: memory across the steps of an "
                         "episode.")
