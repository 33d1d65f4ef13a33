"""Fine-tuning (init_from, rlkit finetune): transfer modes, shape errors, frozen backbones,
kept optimizer/buffer/normalisers; rollback to the best policy, for every built-in algorithm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from rlkit import Plugins, Trainer
from rlkit.cli import main
from rlkit.config import resolve
from rlkit.hookspecs import hookimpl
from rlkit.interfaces import EvalResult
from rlkit.transfer import Rollback, learned_parts
from rlkit.validation import ConfigError


def experiment(plugins: Plugins, tmp_path: Path, name: str, *, algorithm: dict[str, Any],
               env: dict[str, Any], steps: int, **sections: Any) -> Any:
    data = {"algorithm": algorithm, "env": env,
            "train": {"total_steps": steps, "seed": 0, "log_every": 100},
            "eval": {"every": 0, "episodes": 2}, "run": {"dir": str(tmp_path), "name": name}}
    if algorithm["name"] not in ("qlearning", "sarsa"):  # tables take no backbone
        data["backbone"] = {"name": "mlp", "hidden_sizes": [16]}
    data.update(sections)
    return resolve(data, plugins, source="<test>")


PPO = {"name": "ppo", "n_steps": 16, "batch_size": 32, "n_epochs": 2}
DQN = {"name": "dqn", "learning_starts": 32, "batch_size": 16, "buffer_size": 300,
       "train_freq": 4, "target_update_interval": 50}


def trained(plugins: Plugins, tmp_path: Path, name: str, algorithm: dict[str, Any],
            env: dict[str, Any], steps: int = 256) -> Trainer:
    trainer = Trainer(experiment(plugins, tmp_path, name, algorithm=algorithm, env=env,
                                 steps=steps), plugins, progress=False)
    trainer.run()
    return trainer


def networks(agent: Any) -> dict[str, torch.Tensor]:
    state = agent.state_dict()
    out = {}
    for name, kind in learned_parts(agent, state).items():
        if kind == "network":
            value = state[name]
            items = value.items() if isinstance(value, dict) else [("", value)]
            out.update({f"{name}.{k}": v.clone() for k, v in items})
    return out


def test_transfer_all_starts_from_the_trained_weights_with_fresh_counters(plugins, tmp_path):
    source = trained(plugins, tmp_path, "source", PPO, {"id": "CartPole-v1", "num_envs": 2})
    exp = experiment(plugins, tmp_path, "tuned", algorithm=PPO,
                     env={"id": "CartPole-v1", "num_envs": 2}, steps=64,
                     init_from={"path": str(source.run_dir)})
    tuned = Trainer(exp, plugins, progress=False)
    for key, value in networks(source.agent).items():
        assert torch.equal(networks(tuned.agent)[key], value), key
    assert tuned.agent.env_steps == 0 and tuned.env_steps == 0
    assert tuned.agent.optimizer.state == {}  # reset by default
    summary = tuned.run()
    assert summary["fine_tuned_from"] == str(source.run_dir)


def test_keep_optimizer_continues_its_moments(plugins, tmp_path):
    source = trained(plugins, tmp_path, "source", PPO, {"id": "CartPole-v1", "num_envs": 2})
    exp = experiment(plugins, tmp_path, "tuned", algorithm=PPO,
                     env={"id": "CartPole-v1", "num_envs": 2}, steps=64,
                     init_from={"path": str(source.run_dir), "optimizer": "keep"})
    tuned = Trainer(exp, plugins, progress=False)
    a = source.agent.optimizer.state_dict()["state"]
    b = tuned.agent.optimizer.state_dict()["state"]
    assert a.keys() == b.keys() and all(torch.equal(a[i]["exp_avg"], b[i]["exp_avg"]) for i in a)


def test_a_new_action_space_needs_backbone_transfer_which_keeps_backbones_only(plugins,
                                                                                 tmp_path):
    # MountainCarContinuous (2 observations, 1 continuous action) -> MountainCar (2
    # observations, 3 discrete actions): the backbones fit, the heads cannot
    source = trained(plugins, tmp_path, "source", PPO, {"id": "MountainCarContinuous-v0"},
                     steps=64)
    base = {"path": str(source.run_dir)}
    exp = experiment(plugins, tmp_path, "all", algorithm=PPO, env={"id": "MountainCar-v0"},
                     steps=64, init_from=base)
    with pytest.raises(ConfigError, match=r"init_from: .*does not fit \(transfer: all\): "
                                          r"model\.policy_head\.weight \(1, 16\) -> \(3, 16\).*"
                                          r"Use init_from.transfer: backbone"):
        Trainer(exp, plugins, progress=False)
    exp = experiment(plugins, tmp_path, "backbone", algorithm=PPO, env={"id": "MountainCar-v0"},
                     steps=64, init_from={**base, "transfer": "backbone"})
    tuned = Trainer(exp, plugins, progress=False)
    old, new = networks(source.agent), networks(tuned.agent)
    bodies = [k for k in new if "_body." in k]
    assert bodies and all(torch.equal(new[k], old[k]) for k in bodies)
    assert new["model.policy_head.weight"].shape == (3, 16)
    assert tuned.run()["status"] == "finished"


def test_backbones_that_differ_are_named(plugins, tmp_path):
    source = trained(plugins, tmp_path, "source", PPO, {"id": "CartPole-v1"}, steps=64)
    data = experiment(plugins, tmp_path, "x", algorithm=PPO, env={"id": "CartPole-v1"},
                      steps=64).to_data()
    data["backbone"]["hidden_sizes"] = [8]
    data["init_from"] = {"path": str(source.run_dir), "transfer": "backbone"}
    with pytest.raises(ConfigError, match=r"actor_body.* \(16, 4\) -> \(8, 4\).*backbones "
                                          r"themselves differ"):
        Trainer(resolve(data, plugins, source="<test>"), plugins, progress=False)


def test_frozen_backbones_do_not_move_until_the_given_step(plugins, tmp_path):
    source = trained(plugins, tmp_path, "source", PPO, {"id": "CartPole-v1", "num_envs": 2})
    exp = experiment(plugins, tmp_path, "tuned", algorithm=PPO,
                     env={"id": "CartPole-v1", "num_envs": 2}, steps=192,
                     init_from={"path": str(source.run_dir), "freeze_backbone_steps": 96})
    tuned = Trainer(exp, plugins, progress=False)
    before = networks(tuned.agent)
    tuned.run(max_steps=96)
    middle = networks(tuned.agent)
    bodies = [k for k in before if "_body." in k]
    heads = [k for k in before if "_head." in k]
    assert all(torch.equal(before[k], middle[k]) for k in bodies)
    assert not all(torch.equal(before[k], middle[k]) for k in heads)
    tuned.run()
    after = networks(tuned.agent)
    assert not all(torch.equal(middle[k], after[k]) for k in bodies)


def test_dqn_keeps_its_replay_buffer_and_target_network(plugins, tmp_path):
    env = {"id": "CartPole-v1", "num_envs": 2}
    source = trained(plugins, tmp_path, "source", DQN, env, steps=200)
    exp = experiment(plugins, tmp_path, "tuned", algorithm=DQN, env=env, steps=64,
                     init_from={"path": str(source.run_dir), "buffer": "keep"})
    tuned = Trainer(exp, plugins, progress=False)
    a, b = source.agent.buffer.state_dict(), tuned.agent.buffer.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))
    data = exp.to_data()
    data["algorithm"]["buffer_size"] = 400
    data["run"]["name"] = "other"
    with pytest.raises(ConfigError, match=r"init_from.buffer: the trained run's buffer does "
                                          r"not fit"):
        Trainer(resolve(data, plugins, source="<test>"), plugins, progress=False)


def test_tabular_transfer_copies_the_table_and_refuses_backbone_mode(plugins, tmp_path):
    env = {"id": "FrozenLake-v1", "kwargs": {"is_slippery": False}}
    source = trained(plugins, tmp_path, "source", {"name": "qlearning"}, env, steps=300)
    exp = experiment(plugins, tmp_path, "tuned", algorithm={"name": "qlearning"}, env=env,
                     steps=10, init_from={"path": str(source.run_dir)})
    assert torch.equal(Trainer(exp, plugins, progress=False).agent.q, source.agent.q)
    exp = experiment(plugins, tmp_path, "tuned2", algorithm={"name": "qlearning"}, env=env,
                     steps=10, init_from={"path": str(source.run_dir), "transfer": "backbone"})
    with pytest.raises(ConfigError, match="learns a table. Use transfer: all"):
        Trainer(exp, plugins, progress=False)


def test_normalisation_statistics_are_kept_by_default(plugins, tmp_path):
    env = {"id": "CartPole-v1", "num_envs": 2,
           "wrappers": [{"name": "NormalizeObservation"}]}
    source = trained(plugins, tmp_path, "source", PPO, env)
    rms = source.env.env.envs[0].obs_rms
    exp = experiment(plugins, tmp_path, "tuned", algorithm=PPO, env={**env, "num_envs": 3},
                     steps=64, init_from={"path": str(source.run_dir)})
    tuned = Trainer(exp, plugins, progress=False)
    for sub in tuned.env.env.envs:
        assert sub.obs_rms.count == rms.count and (sub.obs_rms.mean == rms.mean).all()
    exp = experiment(plugins, tmp_path, "fresh", algorithm=PPO, env=env, steps=64,
                     init_from={"path": str(source.run_dir), "normalizer": "reset"})
    assert Trainer(exp, plugins, progress=False).env.env.envs[0].obs_rms.count < rms.count


def test_the_finetune_command_runs_a_new_run(plugins, tmp_path, capsys):
    source = trained(plugins, tmp_path, "source", PPO, {"id": "CartPole-v1", "num_envs": 2})
    config = tmp_path / "new.yaml"
    config.write_text("algorithm: {name: ppo, n_steps: 16, batch_size: 32}\n"
                      "backbone: {name: mlp, hidden_sizes: [16]}\n"
                      "env: {id: CartPole-v1, num_envs: 2}\ntrain: {total_steps: 64}\n"
                      f"eval: {{every: 0, episodes: 2}}\nrun: {{dir: {tmp_path}, name: cli}}\n")
    code = main(["finetune", str(source.run_dir), str(config), "--no-progress",
                 "--freeze-backbone-steps", "32"], plugins=plugins)
    assert code == 0
    err = capsys.readouterr()
    assert "fine-tuned from" in err.out + err.err
    stored = (tmp_path / "cli" / "config.yaml").read_text()
    assert "init_from:" in stored and "freeze_backbone_steps: 32" in stored
    assert main(["finetune", str(tmp_path / "missing"), str(config)], plugins=plugins) == 2


# --- rollback ------------------------------------------------------------------------------


def test_rollback_restores_the_best_networks_and_optimizer():
    class Agent:
        def __init__(self) -> None:
            self.model = torch.nn.Linear(3, 2)
            from rlkit.optim import Adam

            self.optimizer = Adam(self.model.parameters(), lr=0.1)
            self.env_steps = 0

        def state_dict(self) -> dict[str, Any]:
            return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "env_steps": self.env_steps}

        def train(self) -> None:
            self.model.weight.sum().backward()
            self.optimizer.step()
            self.model.zero_grad()

    agent = Agent()
    rollback = Rollback(drop=0.5, min_drop=0.0, patience=2)
    agent.train()
    assert rollback.after_evaluation(agent, 400.0, 100) is None  # the best
    best = {k: v.clone() for k, v in agent.model.state_dict().items()}
    moment = agent.optimizer.state_dict()["state"][0]["exp_avg"].clone()
    agent.train()
    agent.train()
    assert rollback.after_evaluation(agent, 300.0, 200) is None  # above 200: fine
    assert rollback.after_evaluation(agent, 150.0, 300) is None  # collapsed once
    agent.env_steps = 400
    event = rollback.after_evaluation(agent, 120.0, 400)  # twice: restore
    assert event == {"step": 400, "eval_return": 120.0, "best_return": 400.0, "best_step": 100,
                     "kind": "restore"}
    assert all(torch.equal(agent.model.state_dict()[k], v) for k, v in best.items())
    assert torch.equal(agent.optimizer.state_dict()["state"][0]["exp_avg"], moment)
    assert agent.env_steps == 400  # counters are not rolled back
    # the restored policy collapses as well: the world changed; the best is forgotten, once
    assert rollback.after_evaluation(agent, 110.0, 500) is None
    event = rollback.after_evaluation(agent, 100.0, 600)
    assert event is not None and event["kind"] == "reset" and rollback.best is None
    assert rollback.after_evaluation(agent, 105.0, 700) is None and rollback.best == 105.0


class ScriptedEvaluations:
    """Patches rlkit.loop.evaluate with a fixed list of returns; a lifecycle plugin records
    the agent's networks after each evaluation (after a rollback, when one happened)."""

    def __init__(self, returns: list[float]) -> None:
        self.returns = list(returns)
        self.after: list[dict[str, torch.Tensor]] = []
        self.trainer: Any = None

    def evaluate(self, agent: Any, env: Any, **kwargs: Any) -> EvalResult:
        value = self.returns.pop(0) if self.returns else 0.0
        return EvalResult(returns=(value,), lengths=(1,))

    @hookimpl
    def evaluation_finished(self, run: Any, step: int, result: Any) -> None:
        self.after.append(networks(self.trainer.agent))


ALGORITHMS = {
    "ppo": (PPO, {"id": "CartPole-v1", "num_envs": 2}),
    "a2c": ({"name": "a2c", "n_steps": 8}, {"id": "CartPole-v1", "num_envs": 2}),
    "dqn": (DQN, {"id": "CartPole-v1", "num_envs": 2}),
    "td3": ({"name": "td3", "learning_starts": 32, "batch_size": 16, "buffer_size": 300},
            {"id": "Pendulum-v1"}),
    "qlearning": ({"name": "qlearning"}, {"id": "FrozenLake-v1"}),
    "sarsa": ({"name": "sarsa"}, {"id": "FrozenLake-v1"}),
    "a3c": ({"name": "a3c", "num_workers": 1, "n_steps": 8}, {"id": "CartPole-v1"}),
}


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_rollback_restores_the_best_policy_for_every_algorithm(name, tmp_path, monkeypatch):
    script = ScriptedEvaluations([100.0, 200.0, 50.0, 40.0, 190.0])
    plugins = Plugins.load(extra=[("script", script)], autoload=False)
    monkeypatch.setattr("rlkit.loop.evaluate", script.evaluate)
    algorithm, env = ALGORITHMS[name]
    exp = experiment(plugins, tmp_path, name, algorithm=algorithm, env=env, steps=640,
                     eval={"every": 128, "episodes": 1,
                           "rollback": {"drop": 0.5, "patience": 2}})
    trainer = Trainer(exp, plugins, progress=False)
    script.trainer = trainer
    summary = trainer.run()
    assert [e["step"] for e in summary["rollbacks"]] == [512], summary["rollbacks"]
    best, restored = script.after[1], script.after[3]  # evaluations at 256 and 512
    assert best.keys() == restored.keys()
    assert all(torch.equal(best[k], restored[k]) for k in best), name
    saved = torch.load(trainer.run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert saved["trainer"]["rollback"]["events"][0]["best_step"] == 256


@pytest.mark.slow
def test_fine_tuning_on_a_shifted_env_recovers_faster_than_the_collapse(plugins, tmp_path):
    """End to end: PPO trained on CartPole (seed 0, 30k steps) balances for ~16 steps once the
    pole is three times as long; fine-tuned there for 30k steps with adaptive exploration, it
    evaluates at 200 or more (about 6 s)."""
    config = {"name": "ppo", "n_steps": 32, "batch_size": 256, "n_epochs": 20, "gamma": 0.98,
              "gae_lambda": 0.8, "optimizer": {"name": "adam", "lr": 1.0e-3}}
    env = {"id": "CartPole-v1", "num_envs": 8}
    base = Trainer(experiment(plugins, tmp_path, "base", algorithm=config, env=env,
                              steps=30_000, backbone={"name": "mlp", "hidden_sizes": [64, 64]}),
                   plugins, progress=False)
    assert base.run()["final_eval_return_mean"] >= 300
    shifted = {**env, "changes": [{"at_step": 0, "set": {"length": 1.5}}]}
    tuned = Trainer(experiment(plugins, tmp_path, "tuned", algorithm=config, env=shifted,
                               steps=30_000, backbone={"name": "mlp", "hidden_sizes": [64, 64]},
                               exploration={"name": "adaptive", "base": 0.0, "ceiling": 0.05,
                                            "gain": 0.05},
                               init_from={"path": str(base.run_dir)},
                               eval={"every": 10_000, "episodes": 10}),
                    plugins, progress=False)
    summary = tuned.run()
    assert summary["best_eval_return_mean"] >= 200, summary
