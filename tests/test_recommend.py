"""``rlkit recommend``: the ranking rules per kind of env, the reward-density note, the JSON
output, the starter experiment file (validates, runs, never overwritten without --force) and
its errors."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest

from rlkit import load_experiment
from rlkit.cli import main
from rlkit.environments import EnvError
from rlkit.loop import Trainer
from rlkit.validation import ConfigError
from rlkit.workflow.recommend import (
    DELAYED_REWARD,
    EnvSummary,
    rank,
    recommend,
    write_starter,
)

STEPS = 500  # enough random steps for every rule below, and fast


def _top(rec):
    return rec.choices[0].algorithm, rec.choices[0].backbone


def _sparse(rec) -> bool:
    return any(c.backbone == "lstm" and c.why == DELAYED_REWARD for c in rec.choices)


def test_cartpole_recommends_ppo_with_an_mlp_then_dqn_then_a2c():
    rec = recommend("CartPole-v1", steps=STEPS)
    assert [(c.algorithm, c.backbone) for c in rec.choices] == [
        ("ppo", "mlp"), ("dqn", "mlp"), ("a2c", "mlp")]
    assert rec.env.action == "discrete" and rec.env.observation == "vector"
    assert not rec.env.torch_native
    assert any("lstm" in note for note in rec.notes)  # one observation may not tell the state


def test_frozenlake_recommends_tabular_qlearning_and_notes_its_sparse_reward():
    rec = recommend("FrozenLake-v1", steps=STEPS)
    assert _top(rec) == ("qlearning", "tabular")
    assert rec.choices[1].algorithm == "sarsa"
    assert rec.env.sparse_reward  # 1.0 at the goal only
    assert _sparse(rec)
    assert {c.algorithm for c in rec.choices if c.backbone == "lstm"} == {"ppo", "a3c"}


def test_pendulum_recommends_td3_first_then_ppo_then_ddpg():
    rec = recommend("Pendulum-v1", steps=STEPS)
    assert [c.algorithm for c in rec.choices] == ["td3", "ppo", "ddpg"]
    assert rec.env.action_bounded
    assert rec.env.truncated_fraction == 1.0 and rec.env.time_limit == 200


def test_breakout_recommends_a_cnn_and_many_envs_on_the_device():
    rec = recommend("rlkit/Breakout-v0", steps=STEPS)
    assert _top(rec) == ("ppo", "cnn")
    assert rec.env.observation == "image" and rec.env.torch_native
    assert any("1,024" in note and "train.device: auto" in note for note in rec.notes)


def test_mountaincar_reward_of_minus_one_every_step_is_dense():
    rec = recommend("MountainCar-v0", steps=STEPS)
    assert rec.env.nonzero_reward_fraction == 1.0 and not rec.env.sparse_reward
    assert not _sparse(rec)
    assert _top(rec) == ("ppo", "mlp")


def _summary(**changes) -> EnvSummary:
    base = dict(env_id="X-v0", observation_space="Box", action_space="Box",
                observation="vector", observation_size=3, action="box", action_size=1,
                action_bounded=True, torch_native=False, time_limit=None, steps=100,
                episodes=1, mean_episode_length=100.0, truncated_fraction=0.0,
                nonzero_reward_fraction=1.0, reward_mean=-1.0, reward_std=0.0,
                reward_only_at_end=False, sparse_reward=False)
    return EnvSummary(**{**base, **changes})


def test_an_unbounded_box_gets_ppo_only():
    assert [c.algorithm for c in rank(_summary(action_bounded=False)).choices] == ["ppo"]


def test_a_large_discrete_observation_space_is_not_tabular():
    rec = rank(_summary(observation="discrete", observation_size=20_000, action="discrete",
                        action_size=4))
    assert _top(rec) == ("ppo", "mlp")


def test_json_output_is_one_parseable_object(tmp_path, plugins, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["recommend", "CartPole-v1", "--json", "--steps", str(STEPS)],
                plugins=plugins) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["choices"][0] == {"rank": 1, "algorithm": "ppo", "backbone": "mlp",
                                  "why": data["choices"][0]["why"]}
    assert data["env"]["env_id"] == "CartPole-v1"
    assert Path(data["starter"]).name == "ppo_cartpole_v1.yaml"
    assert (tmp_path / "ppo_cartpole_v1.yaml").exists()


@pytest.mark.parametrize("env_id,kwargs", [
    ("CartPole-v1", {}),
    ("FrozenLake-v1", {"is_slippery": False}),
    ("Pendulum-v1", {}),
    ("rlkit/Breakout-v0", {}),
], ids=["ppo-mlp", "qlearning", "td3", "ppo-cnn"])
def test_the_starter_file_explains_itself_validates_and_runs(env_id, kwargs, plugins, tmp_path):
    rec = recommend(env_id, kwargs=kwargs, steps=STEPS)
    path = write_starter(rec, tmp_path / "starter.yaml")
    text = path.read_text()
    assert text.startswith(f"# {rec.choices[0].algorithm} ")
    experiment = load_experiment(path, plugins, [
        "train.total_steps=64", "train.device=cpu", "eval.every=0", "eval.episodes=1",
        "env.num_envs=4", f"run.dir={tmp_path}"])
    assert experiment.env.kwargs == kwargs
    summary = Trainer(experiment, plugins, run_dir=tmp_path / "run", progress=False).run()
    assert summary["status"] in ("finished", "target_reached")


def test_out_is_never_overwritten_without_force(tmp_path, plugins, capsys):
    out = tmp_path / "mine.yaml"
    out.write_text("# my own file\n")
    argv = ["recommend", "CartPole-v1", "--out", str(out), "--steps", "50"]
    assert main(argv, plugins=plugins) != 0
    assert "--force" in capsys.readouterr().err
    assert out.read_text() == "# my own file\n"
    assert main(argv + ["--force"], plugins=plugins) == 0
    assert out.read_text().startswith("# ppo (mlp) on CartPole-v1")


def test_an_unknown_env_id_says_what_it_may_have_meant():
    with pytest.raises(ConfigError, match=r"unknown environment 'CartPol-v1'.*CartPole-v1"):
        recommend("CartPol-v1", steps=10)


class _Broken(gym.Env):
    observation_space = gym.spaces.Discrete(2)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        raise RuntimeError("the simulator crashed")


def test_an_env_that_raises_during_the_rollout_is_named():
    gym.register("RecommendBroken-v0", entry_point=_Broken)
    try:
        with pytest.raises(EnvError, match=r"'RecommendBroken-v0' raised in step 1 .*crashed"):
            recommend("RecommendBroken-v0", steps=10)
    finally:
        del gym.registry["RecommendBroken-v0"]
