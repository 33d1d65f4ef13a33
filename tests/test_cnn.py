"""The CNN backbone: observation layouts, pixel scaling, and errors that say what to change."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.backbones.cnn import CNN, CNNConfig
from rlkit.validation import ConfigError, from_data

MINATAR = CNNConfig(channels=[16], kernel_sizes=[3], strides=[1], hidden_sizes=[128])


def test_channels_first_grid():
    net = CNN(gym.spaces.Box(0.0, 1.0, (4, 10, 10), np.float32), MINATAR)
    assert not net.channels_last and net.output_dim == 128
    conv = net.body[0]
    assert isinstance(conv, torch.nn.Conv2d) and conv.in_channels == 4
    assert net.body[3].in_features == 16 * 8 * 8  # 10x10 -> 8x8 after a 3x3 kernel
    assert net(torch.rand(5, 4, 10, 10)).shape == (5, 128)


def test_channels_last_uint8_frames_are_permuted_and_scaled():
    space = gym.spaces.Box(0, 255, (84, 84, 3), np.uint8)
    net = CNN(space, CNNConfig())  # the Nature network: 84 -> 20 -> 9 -> 7
    assert net.channels_last and net.scale == pytest.approx(1 / 255)
    frames = torch.randint(0, 256, (2, 84, 84, 3), dtype=torch.uint8)
    expected = net.body(frames.permute(0, 3, 1, 2).float() / 255)
    torch.testing.assert_close(net(frames), expected)
    assert net.body[7].in_features == 64 * 7 * 7 and net.output_dim == 512


def test_single_channel_images_and_explicit_layout():
    gray = CNN(gym.spaces.Box(0, 255, (84, 84), np.uint8), CNNConfig())
    assert gray(torch.zeros(3, 84, 84, dtype=torch.uint8)).shape == (3, 512)
    # (10, 10, 4): auto takes the smaller end dimension, the last, as the channels
    space = gym.spaces.Box(0.0, 1.0, (10, 10, 4), np.float32)
    auto = CNN(space, MINATAR)
    assert auto.channels_last
    forced = CNN(space, CNNConfig(channels=[8], kernel_sizes=[3], strides=[1],
                                  hidden_sizes=[16], layout="chw"))
    assert not forced.channels_last and forced.body[0].in_channels == 10


def test_same_seed_same_weights():
    space = gym.spaces.Box(0.0, 1.0, (4, 10, 10), np.float32)
    torch.manual_seed(3)
    a = CNN(space, MINATAR)
    torch.manual_seed(3)
    b = CNN(space, MINATAR)
    for x, y in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(x, y)


def test_kernels_too_large_for_the_image_name_the_layer():
    with pytest.raises(ConfigError, match=r"convolution 1 \(kernel 4, stride 2.*10x10.*smaller"):
        CNN(gym.spaces.Box(0.0, 1.0, (4, 10, 10), np.float32), CNNConfig())


def test_vector_observations_are_refused_with_the_alternative():
    with pytest.raises(ConfigError, match=r"needs image observations.*name: mlp"):
        CNN(gym.spaces.Box(-1.0, 1.0, (4,), np.float32), MINATAR)
    with pytest.raises(ConfigError, match="Discrete"):
        CNN(gym.spaces.Discrete(5), MINATAR)


@pytest.mark.parametrize(("data", "message"), [
    ({"channels": [16], "kernel_sizes": [3, 3], "strides": [1]}, "kernel_sizes has 2 entries"),
    ({"channels": [16], "kernel_sizes": [3], "strides": [1], "padding": [1, 1]},
     "padding has 2 entries"),
    ({"channels": [], "kernel_sizes": [], "strides": []}, "at least one convolution"),
    ({"channels": [16], "kernel_sizes": [3], "strides": [0]}, "strides must be at least 1"),
    ({"layout": "whc"}, r"backbone.layout.*'auto', 'chw', 'hwc'"),
])
def test_bad_settings_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_data(CNNConfig, data, "backbone")


def test_padding_keeps_the_grid_size():
    config = CNNConfig(channels=[8, 8], kernel_sizes=[3, 3], strides=[1, 1], padding=[1, 1],
                       hidden_sizes=[])
    net = CNN(gym.spaces.Box(0.0, 1.0, (4, 10, 10), np.float32), config)
    assert net.output_dim == 8 * 10 * 10


@pytest.mark.slow
def test_ppo_with_the_cnn_learns_breakout(plugins, tmp_path):
    """experiments/breakout_ppo.yaml, seed 0, on the CPU, stopped after 131k of its 500k env
    steps: 20 deterministic episodes average at least 15 bricks (a random policy: 0.4)."""
    from rlkit import load_experiment
    from rlkit.loop import Trainer

    exp = load_experiment("experiments/breakout_ppo.yaml", plugins, [
        "train.device=cpu", "eval.every=65536", "eval.target_return=null",
        f"run.dir={tmp_path}"])
    trainer = Trainer(exp, plugins, run_dir=tmp_path / "run", progress=False)
    assert isinstance(trainer.agent.model.actor_body, CNN)
    trainer.run(max_steps=131072)
    assert trainer.last_eval is not None and trainer.last_eval.mean >= 15, trainer.last_eval
