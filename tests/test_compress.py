"""Compressing a trained policy: magnitude pruning with a fine-tune that keeps the zeros, and
distillation into a smaller student.

The teacher is ``experiments/cartpole.yaml`` (PPO, 64x64 MLP, seed 0) trained to its target
(an evaluation return of at least 475 of 500); pruning fine-tunes for ``FINETUNE_STEPS`` env
steps, distillation trains a ``[16]`` student for ``DISTILL_STEPS`` env steps (seed 0) and must
keep ``RETAINED`` of the teacher's return on the same evaluation episodes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from rlkit.cli import main
from rlkit.config import load_experiment
from rlkit.deploy.compress import prune, prune_modules
from rlkit.deploy.distill import distill
from rlkit.deploy.policy import load_policy
from rlkit.loop import Trainer, load_agent
from rlkit.optim import Adam
from rlkit.plugins import Plugins
from rlkit.validation import ConfigError

FINETUNE_STEPS = 2048
DISTILL_STEPS = 20_000
RETAINED = 0.95
"""The fraction of the teacher's evaluation return the distilled student keeps (seed 0)."""

STUDENT = """\
algorithm: {{name: ppo}}
backbone: {{name: mlp, hidden_sizes: [16], activation: tanh}}
env: {{id: {env}, num_envs: 8}}
train: {{total_steps: 20000, seed: 0}}
eval: {{every: 5000, episodes: 20}}
run: {{dir: {dir}}}
"""


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return Plugins.load()


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory, plugins: Plugins) -> dict[str, Any]:
    """A CartPole PPO policy trained to an evaluation return of 475+ (about 3 s)."""
    root = tmp_path_factory.mktemp("compress")
    experiment = load_experiment("experiments/cartpole.yaml", plugins,
                                 [f"run.dir={root}", "run.name=teacher"])
    summary = Trainer(experiment, plugins, progress=False).run()
    assert summary["final_eval_return_mean"] >= 475
    return summary


def _linear_weights(run_dir: Path | str) -> list[torch.Tensor]:
    policy = load_policy(run_dir)
    return [m.weight.detach() for m in policy.net.modules() if isinstance(m, nn.Linear)]


def test_pruning_reaches_the_sparsity_and_the_zeros_survive_the_finetune(
        teacher: dict[str, Any], plugins: Plugins, tmp_path: Path) -> None:
    result = prune(teacher["run_dir"], amount=0.5, finetune_steps=FINETUNE_STEPS,
                   out_run_dir=tmp_path / "pruned", plugins=plugins)
    assert result.run_dir == tmp_path / "pruned"
    assert result.summary["env_steps"] >= FINETUNE_STEPS  # the fine-tune ran its budget
    weights = _linear_weights(result.run_dir)
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    # global pruning zeroes exactly half; a weight the fine-tune revived would lower the count
    assert zeros == total // 2 or zeros == (total + 1) // 2
    assert result.sparsity == pytest.approx(0.5, abs=1 / total)
    assert all(0.0 < s < 1.0 for s in result.layers.values())  # no layer emptied
    before = _linear_weights(teacher["run_dir"])
    kept = [(a != 0) for a in weights]
    assert any(not torch.equal(a[k], b[k]) for a, b, k in zip(weights, before, kept))
    assert result.summary["pruning"]["amount"] == 0.5


def test_masks_hold_through_optimizer_steps() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    pruning = prune_modules({"net": net}, 0.7)

    class Agent:
        def __init__(self) -> None:
            self.optimizer = Adam(list(net.parameters()), lr=0.1, weight_decay=0.01)

        def update(self) -> dict[str, float]:
            self.optimizer.zero_grad()
            net(torch.randn(32, 8)).pow(2).sum().backward()
            self.optimizer.step()
            return {"train/loss": 1.0}

    agent = Agent()
    pruning.attach(agent)
    for _ in range(20):
        agent.update()
    for weight, mask in pruning.masks.values():
        assert torch.all(weight[mask == 0] == 0)
    assert pruning.sparsity()[0] == pytest.approx(0.7, abs=0.01)
    pruning.detach(agent)
    assert "update" not in agent.__dict__


def test_pruned_run_loads_with_load_policy_and_exports(
        teacher: dict[str, Any], plugins: Plugins, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "pruned"
    assert main(["prune", teacher["run_dir"], "--amount", "0.5", "--finetune-steps",
                 str(FINETUNE_STEPS), "--run-dir", str(run), "--no-progress"],
                plugins=plugins) == 0
    assert "sparsity" in capsys.readouterr().out
    policy = load_policy(run)
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    actions = policy(obs)
    assert actions.shape == (64,)
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    assert main(["export", str(run), "--format", "onnx"], plugins=plugins) == 0
    session = ort.InferenceSession(str(run / "policy.onnx"))
    np.testing.assert_array_equal(session.run(["action"], {"obs": obs})[0], actions)


def test_distilled_student_keeps_the_teachers_return_and_works_with_eval(
        teacher: dict[str, Any], plugins: Plugins, tmp_path: Path) -> None:
    student = tmp_path / "student.yaml"
    student.write_text(STUDENT.format(env="CartPole-v1", dir=tmp_path))
    result = distill(teacher["run_dir"], student, DISTILL_STEPS, plugins=plugins,
                     run_dir=tmp_path / "student")
    info = result.summary["distillation"]
    assert result.student_parameters * 4 <= result.teacher_parameters
    assert info["teacher_eval_return_mean"] is not None
    assert result.summary["final_eval_return_mean"] >= RETAINED * info["teacher_eval_return_mean"]
    assert main(["eval", str(result.run_dir), "--episodes", "4", "--device", "cpu"],
                plugins=plugins) == 0
    policy = load_policy(result.run_dir)
    agent, _ = load_agent(result.run_dir, plugins)
    obs = torch.as_tensor(np.random.default_rng(1).normal(size=(32, 4)), dtype=torch.float32)
    assert torch.equal(policy(obs), agent.act(obs, explore=False))


def test_distillation_stopped_like_ctrl_c_keeps_a_checkpoint_and_its_summary(
        teacher: dict[str, Any], plugins: Plugins, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from rlkit.deploy import distill as module

    student = tmp_path / "student.yaml"
    student.write_text(STUDENT.format(env="CartPole-v1", dir=tmp_path))
    fit, calls = module._Loop._fit, []

    def fit_then_stop(self: Any) -> dict[str, float]:
        calls.append(1)
        if len(calls) == 3:
            self.trainer.request_stop("SIGINT")  # what the trainer's Ctrl-C handler does
        return fit(self)

    monkeypatch.setattr(module._Loop, "_fit", fit_then_stop)
    result = distill(teacher["run_dir"], student, DISTILL_STEPS, plugins=plugins,
                     run_dir=tmp_path / "student")
    on_disk = json.loads((result.run_dir / "summary.json").read_text())
    assert on_disk["status"] == result.summary["status"] == "interrupted"
    assert 0 < on_disk["env_steps"] < DISTILL_STEPS
    assert on_disk["distillation"]["teacher"].startswith(str(teacher["run_dir"]))
    assert on_disk["distillation"]["teacher_eval_return_mean"] is None  # never reached
    state = torch.load(result.run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert state["trainer"]["env_steps"] == on_disk["env_steps"]
    assert load_experiment(result.run_dir / "config.yaml", plugins).train.total_steps == (
        DISTILL_STEPS)


def test_student_whose_spaces_differ_from_the_teachers_is_refused(
        teacher: dict[str, Any], plugins: Plugins, tmp_path: Path) -> None:
    student = tmp_path / "student.yaml"
    student.write_text(STUDENT.format(env="Acrobot-v1", dir=tmp_path))
    with pytest.raises(ConfigError, match="observation space .* differs from the teacher's"):
        distill(teacher["run_dir"], student, 256, plugins=plugins)


@pytest.mark.parametrize("amount", ["0", "1", "-0.5", "1.5"])
def test_prune_amount_outside_zero_one_is_refused(
        teacher: dict[str, Any], plugins: Plugins, amount: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prune", teacher["run_dir"], "--amount", amount], plugins=plugins) == 2
    assert "--amount must lie strictly between 0 and 1" in capsys.readouterr().err
