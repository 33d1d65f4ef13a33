"""Optimizers chosen in YAML and learning-rate schedules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlkit.optim import (
    SGD,
    Adam,
    AdamW,
    OptimizerConfig,
    RMSprop,
    load_optimizer_state,
    make_optimizer,
    set_learning_rate,
)
from rlkit.schedules import Schedule
from rlkit.validation import ConfigError, from_data

ROOT = Path(__file__).resolve().parents[1]


def params():
    return [torch.nn.Parameter(torch.ones(3))]


@pytest.mark.parametrize(("data", "cls", "expected"), [
    ({"name": "adam", "lr": 1e-3}, Adam, {"lr": 1e-3, "betas": (0.9, 0.999)}),
    ({"name": "adamw", "weight_decay": 0.01}, AdamW, {"weight_decay": 0.01}),
    ({"name": "sgd", "lr": 0.1}, SGD, {"momentum": 0.0, "nesterov": False}),
    ({"name": "sgd", "momentum": 0.9, "nesterov": True}, SGD,
     {"momentum": 0.9, "nesterov": True}),
    ({"name": "rmsprop", "alpha": 0.95, "eps": 1e-5}, RMSprop,
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


# --- the same arithmetic as torch.optim --------------------------------------------------------

CASES = {
    "adam": ({"name": "adam", "lr": 0.01}, torch.optim.Adam, {"lr": 0.01}),
    "adam_l2": ({"name": "adam", "lr": 0.01, "weight_decay": 0.1, "betas": (0.8, 0.99),
                 "eps": 1e-6},
                torch.optim.Adam, {"lr": 0.01, "weight_decay": 0.1, "betas": (0.8, 0.99),
                                   "eps": 1e-6}),
    "adamw": ({"name": "adamw", "lr": 0.01, "weight_decay": 0.1}, torch.optim.AdamW,
              {"lr": 0.01, "weight_decay": 0.1}),
    "sgd": ({"name": "sgd", "lr": 0.1}, torch.optim.SGD, {"lr": 0.1}),
    "sgd_momentum": ({"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01},
                     torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
    "sgd_nesterov": ({"name": "sgd", "lr": 0.1, "momentum": 0.8, "nesterov": True},
                     torch.optim.SGD, {"lr": 0.1, "momentum": 0.8, "nesterov": True}),
    "rmsprop": ({"name": "rmsprop", "lr": 0.01, "alpha": 0.9, "eps": 1e-6}, torch.optim.RMSprop,
                {"lr": 0.01, "alpha": 0.9, "eps": 1e-6}),
    "rmsprop_momentum": ({"name": "rmsprop", "lr": 0.01, "momentum": 0.5, "weight_decay": 0.1},
                         torch.optim.RMSprop, {"lr": 0.01, "momentum": 0.5, "weight_decay": 0.1}),
}


def twin_params(seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(5, 3), (5,), (), (2, 2, 2)]
    values = [torch.randn(s, generator=g) for s in shapes]
    return ([torch.nn.Parameter(v.clone()) for v in values],
            [torch.nn.Parameter(v.clone()) for v in values])


def random_grads(params, generator):
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator).to(p.device)


def step_twins(first, first_params, second, second_params, generator, steps):
    """Step two optimizers ``steps`` times on the same random gradients."""
    for _ in range(steps):
        random_grads(first_params, generator.clone_state())
        random_grads(second_params, generator)
        first.step()
        second.step()


def copy_values(targets, sources):
    with torch.no_grad():
        for target, source in zip(targets, sources, strict=True):
            target.copy_(source)


@pytest.mark.parametrize("case", list(CASES))
def test_each_optimizer_steps_exactly_as_torch_optim(case):
    data, torch_cls, kwargs = CASES[case]
    ours_params, theirs_params = twin_params()
    ours = make_optimizer(ours_params, from_data(OptimizerConfig, data, "algorithm.optimizer"))
    theirs = torch_cls(theirs_params, **kwargs)
    g = torch.Generator().manual_seed(1)
    for step in range(30):
        if step == 15:  # a schedule changes the rate between steps
            ours.param_groups[0]["lr"] = theirs.param_groups[0]["lr"] = kwargs["lr"] / 3
        random_grads(ours_params, g.clone_state())
        random_grads(theirs_params, g)
        ours.step()
        theirs.step()
        for a, b in zip(ours_params, theirs_params, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=f"{case} step {step}")
    theirs_state = theirs.state_dict()["state"]
    for index, entry in ours.state_dict()["state"].items():
        assert entry.keys() == theirs_state[index].keys()
        for key, value in entry.items():
            torch.testing.assert_close(value, theirs_state[index][key], rtol=1e-6, atol=1e-7)


def test_adam_without_the_fused_kernel_computes_the_same(monkeypatch):
    monkeypatch.setattr(Adam, "_use_fused", staticmethod(lambda params: False))
    for case in ("adam", "adam_l2", "adamw"):
        test_each_optimizer_steps_exactly_as_torch_optim(case)


@pytest.mark.parametrize("case", ["adam", "sgd_momentum", "rmsprop_momentum"])
def test_torch_optims_state_loads_and_training_continues_the_same(case):
    data, torch_cls, kwargs = CASES[case]
    ours_params, theirs_params = twin_params()
    theirs = torch_cls(theirs_params, **kwargs)
    g = torch.Generator().manual_seed(2)
    for _ in range(5):
        random_grads(theirs_params, g)
        theirs.step()
    copy_values(ours_params, theirs_params)
    ours = make_optimizer(ours_params, from_data(OptimizerConfig, data, "algorithm.optimizer"))
    ours.load_state_dict(theirs.state_dict())
    step_twins(ours, ours_params, theirs, theirs_params, g, 5)
    for a, b in zip(ours_params, theirs_params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_state_dict_round_trip_continues_exactly():
    a_params, b_params = twin_params()
    a = Adam(a_params, lr=0.01)
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        random_grads(a_params, g)
        a.step()
    copy_values(b_params, a_params)
    b = Adam(b_params, lr=0.5)
    b.load_state_dict(a.state_dict())
    assert b.param_groups[0]["lr"] == 0.01
    assert float(b.state[b_params[0]]["step"]) == 3.0
    step_twins(a, a_params, b, b_params, g, 3)
    for x, y in zip(a_params, b_params, strict=True):
        assert torch.equal(x, y)


def test_parameters_without_gradients_are_left_alone():
    params_, _ = twin_params()
    opt = Adam(params_, lr=0.1)
    before = params_[1].detach().clone()
    params_[0].grad = torch.ones(5, 3)
    opt.step()
    assert torch.equal(params_[1], before)
    assert float(opt.state[params_[0]]["step"]) == 1.0
    assert float(opt.state[params_[1]]["step"]) == 0.0


def test_mismatched_saved_state_and_bad_parameters_are_clear_errors():
    params_, _ = twin_params()
    opt = Adam(params_)
    with pytest.raises(ValueError, match="sizes \\[1\\].*one group of 4"):
        opt.load_state_dict({"state": {}, "param_groups": [{"params": [0]}]})
    with pytest.raises(ValueError, match="empty parameter list"):
        Adam([])
    with pytest.raises(ValueError, match="appears twice"):
        Adam([params_[0], params_[0]])
    with pytest.raises(TypeError, match="require gradients"):
        Adam([torch.zeros(3)])
    with pytest.raises(TypeError, match="one group of parameters.*torch.optim"):
        Adam([{"params": params_, "lr": 0.1}])


def test_training_never_imports_the_torch_compiler_stack():
    """Constructing a torch.optim optimizer imports torch._dynamo (about 1 s and 70 MiB); a
    training run with rlkit's optimizers must not."""
    code = (
        "import sys, tempfile\n"
        "from rlkit import Plugins, load_experiment\n"
        "from rlkit.loop import Trainer\n"
        "plugins = Plugins.load()\n"
        "for path in ('experiments/cartpole.yaml', 'experiments/cartpole_dqn.yaml'):\n"
        "    exp = load_experiment(path, plugins, ['train.total_steps=1200', 'eval.every=600',\n"
        "        'eval.episodes=2', 'algorithm.learning_starts=100' if 'dqn' in path\n"
        "        else 'algorithm.n_epochs=2', 'run.dir=' + tempfile.mkdtemp()])\n"
        "    Trainer(exp, plugins, progress=False).run()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
@pytest.mark.parametrize("case", ["adam", "adamw", "sgd_momentum", "rmsprop_momentum"])
def test_each_optimizer_steps_as_torch_optim_on_cuda(case):
    data, torch_cls, kwargs = CASES[case]
    ours_params, theirs_params = (
        [torch.nn.Parameter(p.detach().cuda()) for p in params_]
        for params_ in twin_params())
    ours = make_optimizer(ours_params, from_data(OptimizerConfig, data, "algorithm.optimizer"))
    theirs = torch_cls(theirs_params, **kwargs)
    step_twins(ours, ours_params, theirs, theirs_params, torch.Generator().manual_seed(1), 20)
    for a, b in zip(ours_params, theirs_params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert all(s["step"].is_cuda for s in ours.state.values() if "step" in s)


def test_adam_falls_back_where_this_pytorch_has_no_fused_kernel(monkeypatch):
    """CPU fused Adam arrived in torch 2.4: where the kernel is missing, the probe says so and
    Adam computes the same arithmetic without it."""
    from rlkit import optim

    def missing(*args, **kwargs):
        raise NotImplementedError("no fused Adam for this device")

    monkeypatch.setattr(optim, "_FUSED_ADAM", {})
    monkeypatch.setattr(torch, "_fused_adam_", missing)
    monkeypatch.setattr(torch, "_fused_adamw_", missing)
    assert not optim._has_fused_adam("cpu", torch.float32)
    assert not optim._has_fused_adam("mps", torch.float32)
    for case in ("adam", "adam_l2", "adamw"):
        test_each_optimizer_steps_exactly_as_torch_optim(case)
