"""The ``mlp`` backbone's input encoding: ``rescale`` maps bounded Box components to [-1, 1]."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.backbones.mlp import MLP, MLPConfig

MOUNTAIN_CAR = gym.spaces.Box(np.array([-1.2, -0.07], dtype=np.float32),
                              np.array([0.6, 0.07], dtype=np.float32))


def test_rescale_maps_each_bounded_component_from_its_bounds_to_minus_one_one():
    net = MLP(MOUNTAIN_CAR, MLPConfig(hidden_sizes=[], rescale=True))
    obs = torch.tensor([[-1.2, -0.07], [0.6, 0.07], [-0.3, 0.0], [-0.75, 0.035]])
    expected = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0], [-0.5, 0.5]])
    torch.testing.assert_close(net.encode(obs), expected, rtol=0, atol=1e-6)


def test_rescale_leaves_components_with_an_infinite_bound_as_they_are():
    space = gym.spaces.Box(np.array([0.0, -np.inf, -2.0], dtype=np.float32),
                           np.array([10.0, np.inf, np.inf], dtype=np.float32))
    net = MLP(space, MLPConfig(hidden_sizes=[], rescale=True))
    obs = torch.tensor([[5.0, 123.0, -7.0], [10.0, -4.0, 1e6]])
    torch.testing.assert_close(net.encode(obs), torch.tensor([[0.0, 123.0, -7.0],
                                                              [1.0, -4.0, 1e6]]))


@pytest.mark.parametrize("rescale", [False, True])
def test_rescale_keeps_the_state_dict_and_off_is_the_raw_observation(rescale):
    plain = MLP(MOUNTAIN_CAR, MLPConfig(hidden_sizes=[8]))
    scaled = MLP(MOUNTAIN_CAR, MLPConfig(hidden_sizes=[8], rescale=rescale))
    assert plain.state_dict().keys() == scaled.state_dict().keys()  # checkpoints load either way
    obs = torch.tensor([[0.3, 0.01]])
    assert torch.equal(plain.encode(obs), obs)
    assert torch.equal(scaled.encode(obs), obs) != rescale


def test_rescale_travels_with_the_module_to_the_device_and_into_an_export():
    net = MLP(MOUNTAIN_CAR, MLPConfig(hidden_sizes=[4], rescale=True))
    exported = torch.export.export(net, (torch.zeros(1, 2),)).module()
    obs = torch.tensor([[0.6, 0.07]])
    torch.testing.assert_close(exported(obs), net(obs))
    assert net.encode.center.device == next(net.parameters()).device
