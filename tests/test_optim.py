"""Optimizers chosen in YAML and learning-rate schedules."""

from __future__ import annotations

import pytest
import torch

from rlkit.optim import OptimizerConfig, make_optimizer, set_learning_rate
from rlkit.schedules import Schedule
from rlkit.validation import ConfigError, from_data


def params():
    return [torch.nn.Parameter(torch.ones(3))]


@pytest.mark.parametrize(("data", "cls", "expected"), [
    ({"name": "adam", "lr": 1e-3}, torch.optim.Adam, {"lr": 1e-3, "betas": (0.9, 0.999)}),
    ({"name": "adamw", "weight_decay": 0.01}, torch.optim.AdamW, {"weight_decay": 0.01}),
    ({"name": "sgd", "lr": 0.1}, torch.optim.SGD, {"momentum": 0.0, "nesterov": False}),
    ({"name": "sgd", "momentum": 0.9, "nesterov": True}, torch.optim.SGD,
     {"momentum": 0.9, "nesterov": True}),
    ({"name": "rmsprop", "alpha": 0.95, "eps": 1e-5}, torch.optim.RMSprop,
     {"alpha": 0.95, "eps": 1e-5}),
])
def test_each_optimizer_is_built_with_its_settings(data, cls, expected):
    opt = make_optimizer(params(), from_data(OptimizerConfig, data, "algorithm.optimizer"))
    assert type(opt) is cls
    for key, value in expected.items():
        assert opt.param_groups[0][key] == value, key


def test_scheduled_learning_rate_starts_at_the_schedule_start_and_follows_progress():
    config = OptimizerConfig(lr=Schedule(kind="linear", start=1e-3, end=1e-4))
    opt = make_optimizer(params(), config)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert set_learning_rate(opt, config, 0.5) == pytest.approx(5.5e-4)
    assert opt.param_groups[0]["lr"] == pytest.approx(5.5e-4)


def test_bad_optimizer_settings_name_the_key():
    with pytest.raises(ConfigError, match="algorithm.optimizer.name.*'adam'"):
        from_data(OptimizerConfig, {"name": "adma"}, "algorithm.optimizer")
    with pytest.raises(ConfigError, match="algorithm.optimizer.momentum"):
        from_data(OptimizerConfig, {"name": "sgd", "momentum": 1.5}, "algorithm.optimizer")
    with pytest.raises(ConfigError, match="nesterov"):
        from_data(OptimizerConfig, {"name": "adam", "nesterov": True}, "algorithm.optimizer")


def test_loading_a_live_optimizers_state_shares_no_tensors():
    from rlkit.optim import load_optimizer_state

    a_params, b_params = params(), params()
    a = make_optimizer(a_params, OptimizerConfig(name="adam", lr=0.1))
    b = make_optimizer(b_params, OptimizerConfig(name="adam", lr=0.1))
    a_params[0].grad = torch.ones(3)
    a.step()
    load_optimizer_state(b, a.state_dict())
    moment = a.state[a_params[0]]["exp_avg"]
    assert b.state[b_params[0]]["exp_avg"].data_ptr() != moment.data_ptr()
    b_params[0].grad = torch.ones(3)
    b.step()
    assert torch.equal(moment, torch.full((3,), 0.1))  # a's moment untouched by b's step
