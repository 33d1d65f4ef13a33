"""Environments that change during a run (``env.changes``): validated before the run starts,
applied at the first step boundary at or after ``at_step`` to the training and evaluation envs
alike, and applied again to the fresh envs of a resumed run, which still equals the
uninterrupted one."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest
import rlkit_envs  # noqa: F401 -- registers rlkit/CartPole-v1
import torch
from rlkit_envs.cartpole import CartPole

from rlkit import load_experiment
from rlkit.config import resolve
from rlkit.environments import EnvOptions, make_env
from rlkit.loop import Trainer
from rlkit.testing import assert_state_equal, check_exact_resume
from rlkit.validation import ConfigError

ROOT = Path(__file__).resolve().parents[1]

PPO = {"name": "ppo", "n_steps": 8, "batch_size": 16, "n_epochs": 2}


def experiment(plugins: Any, tmp_path: Path, *, env_id: str = "rlkit/CartPole-v1",
               changes: list[dict[str, Any]] | None = None, total_steps: int = 128,
               algorithm: dict[str, Any] | None = None, **env: Any) -> Any:
    """A small seeded PPO experiment with ``changes`` (evaluation only at the end)."""
    data = {
        "algorithm": dict(algorithm or PPO),
        "backbone": {"name": "mlp", "hidden_sizes": [16]},
        "env": {"id": env_id, "num_envs": 4, "changes": changes or [], **env},
        "train": {"total_steps": total_steps, "seed": 3, "device": "cpu", "log_every": 32},
        "eval": {"every": 0, "episodes": 2},
        "run": {"dir": str(tmp_path)},
    }
    return resolve(data, plugins, source="drift.yaml")


def gravity_of(env: Any) -> float:
    """The gravity a training or evaluation env (torch-native or gymnasium sync) steps with."""
    inner = env.env
    if isinstance(inner, CartPole):
        return inner.params.gravity
    return inner.envs[0].unwrapped.gravity


# --- the config -------------------------------------------------------------------------------


def test_at_step_must_increase_strictly(plugins, tmp_path):
    changes = [{"at_step": 64, "set": {"gravity": 12.0}}, {"at_step": 64, "set": {"length": 1.0}}]
    with pytest.raises(ConfigError) as info:
        experiment(plugins, tmp_path, changes=changes)
    assert info.value.key == "env.changes[1].at_step"
    assert "env.changes[1].at_step: 64 does not come after env.changes[0].at_step: 64" in str(
        info.value)


def test_a_change_must_set_something(plugins, tmp_path):
    with pytest.raises(ConfigError, match=r"env\.changes\[0\]\.set: nothing to set"):
        experiment(plugins, tmp_path, changes=[{"at_step": 10, "set": {}}])


def test_at_step_is_a_non_negative_integer_and_keys_are_checked(plugins, tmp_path):
    with pytest.raises(ConfigError, match=r"env\.changes\[0\]\.at_step: -1 is out of range"):
        experiment(plugins, tmp_path, changes=[{"at_step": -1, "set": {"gravity": 1.0}}])
    with pytest.raises(ConfigError, match=r"env\.changes\[0\]\.sets: unknown key\. Did you "
                                          r"mean 'set'\?"):
        experiment(plugins, tmp_path, changes=[{"at_step": 1, "sets": {"gravity": 1.0}}])


def test_changes_are_refused_with_ray_actors(plugins, tmp_path):
    with pytest.raises(ConfigError, match=r"env\.changes: envs in Ray actors"):
        experiment(plugins, tmp_path, env_id="CartPole-v1", vectorization="ray",
                   changes=[{"at_step": 8, "set": {"gravity": 12.0}}])


def test_an_error_in_a_file_names_the_file_and_key(plugins, tmp_path):
    path = tmp_path / "drift.yaml"
    path.write_text(textwrap.dedent("""\
        algorithm: {name: ppo}
        env:
          id: rlkit/CartPole-v1
          changes:
            - {at_step: 100, set: {gravity: 15.0}}
            - {at_step: 50, set: {gravity: 9.8}}
        train: {total_steps: 1000}
    """))
    with pytest.raises(ConfigError, match=r"drift\.yaml: env\.changes\[1\]\.at_step: 50 does "
                                          r"not come after"):
        load_experiment(path, plugins)


def test_the_drift_experiment_validates(plugins):
    exp = load_experiment(ROOT / "experiments" / "cartpole_drift.yaml", plugins)
    assert exp.env.id == "rlkit/CartPole-v1"
    assert exp.algorithm.name == "ppo"
    steps = [c.at_step for c in exp.env.changes]
    assert steps and steps == sorted(set(steps))
    assert 0 < steps[0] < exp.train.total_steps
    assert {"gravity", "length", "masspole"} <= {k for c in exp.env.changes for k in c.set}
    assert exp.eval.target_return is None  # a run that stopped at its target would miss them


# --- refused before the run starts -----------------------------------------------------------


def test_unknown_parameter_of_a_torch_native_env_is_refused_before_the_run(plugins, tmp_path):
    exp = experiment(plugins, tmp_path, changes=[
        {"at_step": 8, "set": {"gravity": 12.0}}, {"at_step": 16, "set": {"gravty": 1.0}}])
    with pytest.raises(ConfigError) as info:
        Trainer(exp, plugins, run_dir=tmp_path / "run", progress=False)
    text = str(info.value)
    assert info.value.key == "env.changes[1].set.gravty"
    assert text.startswith("drift.yaml: env.changes[1].set.gravty: ")
    assert "Did you mean 'gravity'?" in text
    assert "gravity, masscart, masspole, length, force_mag, tau" in text
    assert not (tmp_path / "run").exists()


def test_space_defining_parameter_of_a_torch_native_env_is_refused(plugins, tmp_path):
    exp = experiment(plugins, tmp_path, changes=[{"at_step": 8, "set": {"x_threshold": 3.0}}])
    with pytest.raises(ConfigError, match=r"env\.changes\[0\]\.set\.x_threshold: .*fixes "
                                          r"'x_threshold' when it is built"):
        Trainer(exp, plugins, run_dir=tmp_path / "run", progress=False)


def test_a_value_that_is_not_a_number_is_refused_before_the_run(plugins, tmp_path):
    exp = experiment(plugins, tmp_path, changes=[{"at_step": 8, "set": {"gravity": "strong"}}])
    with pytest.raises(ConfigError, match=r"env\.changes\[0\]\.set\.gravity: expected a finite "
                                          r"number, got str 'strong'"):
        Trainer(exp, plugins, run_dir=tmp_path / "run", progress=False)


def test_unknown_attribute_of_a_gymnasium_env_is_refused_before_the_run(plugins, tmp_path):
    exp = experiment(plugins, tmp_path, env_id="CartPole-v1",
                     changes=[{"at_step": 8, "set": {"length": 1.0, "gravityy": 1.0}}])
    with pytest.raises(ConfigError) as info:
        Trainer(exp, plugins, run_dir=tmp_path / "run", progress=False)
    text = str(info.value)
    assert info.value.key == "env.changes[0].set.gravityy"
    assert text.startswith("drift.yaml: env.changes[0].set.gravityy: 'CartPole-v1' "
                           "(CartPoleEnv) has no attribute 'gravityy' to set. Did you mean "
                           "'gravity'?")
    assert "force_mag, gravity, length, masscart, masspole" in text


def test_changes_are_refused_for_an_algorithm_with_its_own_loop(plugins, tmp_path):
    exp = experiment(plugins, tmp_path, env_id="CartPole-v1",
                     algorithm={"name": "a3c", "num_workers": 1},
                     changes=[{"at_step": 8, "set": {"gravity": 12.0}}])
    with pytest.raises(ConfigError, match=r"drift\.yaml: env\.changes: algorithm 'a3c' runs "
                                          r"its own loop"):
        Trainer(exp, plugins, run_dir=tmp_path / "run", progress=False)


# --- the environments ------------------------------------------------------------------------


def test_set_params_changes_the_next_step_and_derived_quantities():
    changed, same = CartPole(3), CartPole(3)
    changed.reset(seed=1)
    same.reset(seed=1)
    actions = torch.tensor([0, 1, 1])
    for _ in range(3):
        assert torch.equal(changed.step(actions)[0], same.step(actions)[0])
    state = changed.state
    changed.set_params(gravity=15.0, length=1.0, masspole=torch.tensor(0.2))
    assert changed.state is state  # the state is left as it was
    assert changed.params.gravity == 15.0
    assert changed.params.masspole == pytest.approx(0.2)  # a tensor is read as a float
    assert changed.params.total_mass == pytest.approx(1.2)
    assert changed.params.polemass_length == pytest.approx(0.2)
    assert not torch.equal(changed.step(actions)[0], same.step(actions)[0])


def test_set_params_refuses_without_changing_anything():
    env = CartPole(2)
    before = env.params
    with pytest.raises(ValueError, match=r"gravty: CartPole has no parameter 'gravty'.*Did you "
                                         r"mean 'gravity'\? Those that can: gravity, masscart"):
        env.set_params(length=2.0, gravty=1.0)
    with pytest.raises(ValueError, match=r"tau: expected a finite number, got float nan"):
        env.set_params(tau=float("nan"))
    assert env.params is before


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_gymnasium_cartpole_gets_attributes_and_derived_quantities(vectorization):
    env = make_env(EnvOptions(id="CartPole-v1", num_envs=2, vectorization=vectorization))
    try:
        assert env.change_problems({"gravity": 15.0, "length": 1.0}) == {}
        assert set(env.change_problems({"length": "long", "step": 1.0})) == {"length", "step"}
        env.apply_change({"gravity": 15.0, "length": 1.0, "masspole": 0.2})
        assert env.env.get_attr("gravity") == (15.0, 15.0)
        assert env.env.get_attr("total_mass") == pytest.approx((1.2, 1.2))
        assert env.env.get_attr("polemass_length") == pytest.approx((0.2, 0.2))
    finally:
        env.close()


def test_torch_native_env_behind_gymnasium_sync_uses_set_params():
    env = make_env(EnvOptions(id="rlkit/CartPole-v1", num_envs=2, vectorization="sync"))
    try:
        assert "x_threshold" in env.change_problems({"x_threshold": 3.0})
        env.apply_change({"gravity": 12.0})
        assert [e.unwrapped.batch.params.gravity for e in env.env.envs] == [12.0, 12.0]
    finally:
        env.close()


# --- in a run --------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ["rlkit/CartPole-v1", "CartPole-v1"])
def test_a_change_applies_at_its_step_to_training_and_evaluation_envs(plugins, tmp_path,
                                                                     env_id):
    """With 4 envs the run passes 28 and 32 steps; a change at 30 applies at the boundary
    after step 32, so the step from 32 to 36 is the first with it."""
    change = [{"at_step": 30, "set": {"gravity": 15.0, "length": 1.0}}]
    changed = Trainer(experiment(plugins, tmp_path, env_id=env_id, changes=change), plugins,
                      run_dir=tmp_path / "changed", progress=False)
    plain = Trainer(experiment(plugins, tmp_path, env_id=env_id), plugins,
                    run_dir=tmp_path / "plain", progress=False)
    for trainer in (changed, plain):
        trainer.run(max_steps=28)
    assert gravity_of(changed.env) == gravity_of(changed._eval_env) == 9.8
    for trainer in (changed, plain):
        trainer.run(max_steps=32)
    assert gravity_of(changed.env) == gravity_of(changed._eval_env) == 15.0
    assert gravity_of(plain.env) == 9.8
    assert torch.equal(changed.obs, plain.obs)  # the same world up to here
    for trainer in (changed, plain):
        trainer.run(max_steps=36)
    assert not torch.equal(changed.obs, plain.obs)  # the first step with the change
    if env_id == "CartPole-v1":  # derived quantities follow the length
        assert changed.env.env.envs[0].unwrapped.polemass_length == pytest.approx(0.1)
        assert changed._eval_env.env.envs[0].unwrapped.polemass_length == pytest.approx(0.1)
    rows = (tmp_path / "changed" / "scalars.csv").read_text().splitlines()
    assert "32,env/changes,1.0" in rows


def test_a_change_at_step_zero_applies_before_the_first_step(plugins, tmp_path):
    exp = experiment(plugins, tmp_path, changes=[{"at_step": 0, "set": {"force_mag": 5.0}}],
                     total_steps=8)
    trainer = Trainer(exp, plugins, run_dir=tmp_path / "run", progress=False)
    trainer.run(max_steps=4)
    assert trainer.env.env.params.force_mag == 5.0


def test_resume_applies_the_changes_again(plugins, tmp_path):
    changes = [{"at_step": 16, "set": {"gravity": 15.0}},
               {"at_step": 40, "set": {"length": 1.0}}]
    exp = experiment(plugins, tmp_path, changes=changes)
    first = Trainer(exp, plugins, run_dir=tmp_path / "run", progress=False)
    first.run(max_steps=32)
    resumed = Trainer.resume(tmp_path / "run", plugins, progress=False)
    for env in (resumed.env.env, resumed._eval_env.env):
        assert (env.params.gravity, env.params.length) == (15.0, 0.5)  # not the one due later
    resumed.run(max_steps=40)
    assert resumed.env.env.params.length == 1.0


def test_resume_of_a_gymnasium_run_has_the_changes_in_both_envs(plugins, tmp_path):
    exp = experiment(plugins, tmp_path, env_id="CartPole-v1",
                     changes=[{"at_step": 16, "set": {"length": 1.0}}])
    Trainer(exp, plugins, run_dir=tmp_path / "run", progress=False).run(max_steps=32)
    resumed = Trainer.resume(tmp_path / "run", plugins, progress=False)
    single = resumed.env.env.envs[0].unwrapped
    assert (single.length, single.polemass_length) == (1.0, pytest.approx(0.1))
    assert resumed._eval_env.env.envs[0].unwrapped.length == 1.0


def test_exact_resume_with_a_change_in_the_first_half(plugins, tmp_path):
    """PPO on rlkit/CartPole-v1, stopped at 128 of 256 steps after a change at 64: resumed, it
    ends with exactly the parameters of the uninterrupted run, which differ from those of a run
    without the change (so the resumed run really steps in the changed world)."""
    changes = [{"at_step": 64, "set": {"gravity": 20.0, "length": 1.0, "masspole": 0.3}}]
    exp = experiment(plugins, tmp_path, changes=changes, total_steps=256)
    check_exact_resume(exp, plugins, tmp_path / "with")
    plain = copy.deepcopy(exp)
    plain.env.changes = []
    without = Trainer(plain, plugins, run_dir=tmp_path / "without", progress=False)
    without.run()
    uninterrupted = tmp_path / "with" / "uninterrupted" / "checkpoints" / "latest.pt"
    with_change = torch.load(uninterrupted, weights_only=True)["agent"]
    with pytest.raises(AssertionError):
        assert_state_equal(with_change, without.agent.state_dict(), "with vs without change")
