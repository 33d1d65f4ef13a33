"""The embedded case: an agent built from spaces (no env), driven by a program that owns the
loop, saved and loaded without any env, logged by a Session; and the inventory simulator
whose agent beats its base-stock heuristic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlkit
from rlkit import Agent, Session, Transition
from rlkit.checkpoint import save_atomic
from rlkit.deploy.agent import EMBEDDED_ENV_ID
from rlkit.errors import CheckpointError
from rlkit.spaces import space_from_data, space_to_data
from rlkit.validation import ConfigError

ROOT = Path(__file__).resolve().parents[1]

OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
DISCRETE = gym.spaces.Discrete(4)
BOX = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)

CONFIGS = {
    "ppo": ({"name": "ppo", "n_steps": 8, "batch_size": 16, "n_epochs": 1}, DISCRETE),
    "dqn": ({"name": "dqn", "learning_starts": 16, "batch_size": 8, "buffer_size": 256,
             "train_freq": 4, "target_update_interval": 32}, DISCRETE),
    "td3": ({"name": "td3", "learning_starts": 16, "batch_size": 8, "buffer_size": 256},
            BOX),
}


def config(algorithm: dict, **sections) -> dict:
    """An experiment without an env section."""
    return {"algorithm": algorithm, "backbone": {"name": "mlp", "hidden_sizes": [16]},
            "train": {"total_steps": 10_000, "seed": 3}, **sections}


@pytest.fixture
def no_env(monkeypatch):
    """Building any env fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("an env was built")

    import rlkit.environments
    import rlkit.loop

    monkeypatch.setattr(rlkit.environments, "make_env", refuse)
    monkeypatch.setattr(rlkit.loop, "make_env", refuse)


def drive(agent: Agent, steps: int, g: torch.Generator, episode: int = 5) -> list[dict]:
    """A loop of the test's own: random observations and rewards, an episode every
    ``episode`` steps; the metrics of every update that learned."""
    n = agent.num_envs
    obs = torch.rand(n, 3, generator=g) * 2 - 1
    learned = []
    for t in range(steps):
        action = agent.act(obs)
        next_obs = torch.rand(n, 3, generator=g) * 2 - 1
        agent.observe(Transition(obs, action, torch.randn(n, generator=g), next_obs,
                                 torch.zeros(n, dtype=torch.bool),
                                 torch.full((n,), (t + 1) % episode == 0)))
        metrics = agent.update()
        if metrics:
            learned.append(metrics)
        obs = next_obs
    return learned


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_an_agent_built_from_spaces_learns_in_an_ask_tell_loop_without_any_env(
        name, plugins, no_env):
    algorithm, action_space = CONFIGS[name]
    agent = Agent.from_config(config(algorithm), observation_space=OBS,
                              action_space=action_space, num_envs=4, plugins=plugins)
    assert agent.env_id is None and agent.experiment.env.id == EMBEDDED_ENV_ID
    assert agent.experiment.env.num_envs == 4 and isinstance(agent, rlkit.interfaces.Algorithm)
    learned = drive(agent, 40, torch.Generator().manual_seed(0))
    assert learned and all(k.startswith("train/") for k in learned[-1])
    actions = agent.act(np.zeros((4, 3)), explore=False)  # numpy observations are converted
    assert actions.shape == ((4,) if name != "td3" else (4, 2))
    if name == "td3":
        assert bool((actions.abs() <= 2.0).all())


def test_a_recurrent_agent_starts_the_episodes_its_program_says_begin(plugins, no_env):
    algorithm = {"name": "ppo", "n_steps": 4, "batch_size": 8, "n_epochs": 1}
    cfg = config(algorithm, backbone={"name": "lstm", "hidden_size": 8})

    def build() -> Agent:
        return Agent.from_config(cfg, observation_space=OBS, action_space=BOX, num_envs=2,
                                 plugins=plugins)

    g = torch.Generator().manual_seed(1)
    first, second = torch.rand(2, 3, generator=g), torch.rand(2, 3, generator=g)
    kept, restarted, fresh = build(), build(), build()
    for agent in (kept, restarted):
        agent.act(first, explore=False)
    restarted.begin_episodes(np.array([True, False]))  # env 0 starts again, env 1 goes on
    on_kept, on_restarted = kept.act(second, explore=False), restarted.act(second, explore=False)
    on_fresh = fresh.act(second, explore=False)
    assert torch.equal(on_restarted[0], on_fresh[0]) and not torch.equal(on_kept[0], on_fresh[0])
    assert torch.equal(on_restarted[1], on_kept[1])
    with restarted.separate_state(3):  # a bench of 3 other envs leaves the training state
        restarted.act(torch.rand(3, 3, generator=g), explore=False)
    assert drive(restarted, 12, g)  # and the ask/tell loop learns through episode ends


def test_a_saved_agent_loads_in_a_fresh_process_without_its_env_or_its_package(
        plugins, tmp_path):
    # the config names an env whose package does not exist: it can never be built
    cfg = config(CONFIGS["ppo"][0], env={"id": "no_such_simulator:Warehouse-v0", "num_envs": 4,
                                         "imports": ["no_such_simulator"]})
    agent = Agent.from_config(cfg, observation_space=OBS, action_space=DISCRETE,
                              plugins=plugins)
    assert agent.num_envs == 4 and agent.env_id == "no_such_simulator:Warehouse-v0"
    drive(agent, 10, torch.Generator().manual_seed(2))
    path = agent.save(tmp_path / "agent.pt")
    obs = torch.linspace(-1, 1, 12).reshape(4, 3)
    torch.save(obs, tmp_path / "obs.pt")
    code = f"""
import json, sys, torch
import rlkit.environments, rlkit.loop
def refuse(*a, **k):
    raise AssertionError("an env was built")
rlkit.environments.make_env = rlkit.loop.make_env = refuse
from rlkit import Agent
agent = Agent.load({str(path)!r})
obs = torch.load({str(tmp_path / "obs.pt")!r}, weights_only=True)
greedy = agent.act(obs, explore=False).tolist()
sampled = agent.act(obs).tolist()
print(json.dumps([greedy, sampled, "no_such_simulator" in sys.modules, agent.num_envs]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env={**os.environ, "PYTHONHASHSEED": "0"})
    assert proc.returncode == 0, proc.stderr
    greedy, sampled, imported, num_envs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert greedy == agent.act(obs, explore=False).tolist()
    assert sampled == agent.act(obs).tolist()  # the sampling generator's state came along
    assert not imported and num_envs == 4


def test_a_checkpoint_without_spaces_says_how_to_load_it(plugins, tmp_path):
    agent = Agent.from_config(config(CONFIGS["dqn"][0]), observation_space=OBS,
                              action_space=DISCRETE, plugins=plugins)
    state = agent.checkpoint_state()
    del state["spaces"]  # what rlkit train's checkpoints hold
    path = save_atomic(state, tmp_path / "latest.pt")
    with pytest.raises(CheckpointError, match=r"records no observation and action spaces.*"
                       r"rlkit\.load_agent.*observation_space=\.\.\., action_space=\.\.\."):
        Agent.load(path, plugins=plugins)
    loaded = Agent.load(path, plugins=plugins, observation_space=OBS, action_space=DISCRETE)
    obs = torch.rand(1, 3)
    assert torch.equal(loaded.act(obs, explore=False), agent.act(obs, explore=False))
    with pytest.raises(CheckpointError, match="was saved for action_space Discrete"):
        Agent.load(agent.save(tmp_path / "a.pt"), plugins=plugins,
                   action_space=gym.spaces.Discrete(5))


def test_a_file_that_is_not_a_checkpoint_is_refused_with_its_name(plugins, tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.pt: cannot be loaded as a safe rlkit "
                                              "checkpoint"):
        Agent.load(path, plugins=plugins)
    with pytest.raises(CheckpointError, match="no such run directory or checkpoint file"):
        Agent.load(tmp_path / "missing.pt", plugins=plugins)
    damaged = Agent.from_config(config(CONFIGS["ppo"][0]), observation_space=OBS,
                                action_space=DISCRETE, plugins=plugins).checkpoint_state()
    damaged["spaces"]["observation"]["low"] = "minus one"
    save_atomic(damaged, tmp_path / "damaged.pt")
    with pytest.raises(CheckpointError, match=r"spaces\.observation\.low: expected a tensor"):
        Agent.load(tmp_path / "damaged.pt", plugins=plugins)


def test_bad_configs_and_spaces_are_refused_with_what_to_do(plugins, tmp_path):
    with pytest.raises(ConfigError, match="train: required section is missing"):
        Agent.from_config({"algorithm": {"name": "ppo"}}, observation_space=OBS,
                          action_space=DISCRETE, plugins=plugins)
    file = tmp_path / "exp.yaml"
    file.write_text("algorithm: {name: ppo, n_step: 8}\ntrain: {total_steps: 100}\n")
    with pytest.raises(ConfigError, match=r"exp.yaml: algorithm.n_step: unknown key"):
        Agent.from_config(file, observation_space=OBS, action_space=DISCRETE, plugins=plugins)
    with pytest.raises(TypeError, match="action_space must be a gymnasium space"):
        Agent.from_config(config(CONFIGS["ppo"][0]), observation_space=OBS, action_space=4,
                          plugins=plugins)
    with pytest.raises(ValueError, match="action_space: a Text space cannot be recorded"):
        space_to_data(gym.spaces.Text(4), "action_space")
    with pytest.raises(ConfigError, match="init_from: Agent.from_config does not fine-tune"):
        Agent.from_config(config(CONFIGS["ppo"][0], init_from={"path": "runs/x"}),
                          observation_space=OBS, action_space=DISCRETE, plugins=plugins)
    with pytest.raises(ConfigError, match="dqn"):  # dqn on a Box action space
        Agent.from_config(config(CONFIGS["dqn"][0]), observation_space=OBS, action_space=BOX,
                          plugins=plugins)


def test_an_experiment_file_and_a_resolved_experiment_build_the_same_agent(plugins):
    experiment = rlkit.load_experiment(ROOT / "experiments" / "cartpole.yaml", plugins)
    space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    from_file = Agent.from_config(ROOT / "experiments" / "cartpole.yaml",
                                  observation_space=space, action_space=gym.spaces.Discrete(2),
                                  plugins=plugins)
    from_experiment = Agent.from_config(experiment, observation_space=space,
                                        action_space=gym.spaces.Discrete(2), plugins=plugins)
    assert from_file.num_envs == experiment.env.num_envs  # the env section's, not built
    assert from_file.env_id == "CartPole-v1"
    obs = torch.randn(5, 4)
    assert torch.equal(from_file.act(obs, explore=False), from_experiment.act(obs, explore=False))


@pytest.mark.parametrize("space", [
    gym.spaces.Box(0, 255, (4, 4, 3), np.uint8),
    gym.spaces.Box(np.array([-np.inf, 0.0]), np.array([np.inf, 1.0]), dtype=np.float64),
    gym.spaces.Discrete(5, start=2),
    gym.spaces.MultiDiscrete([3, 4], start=[1, -1]),
    gym.spaces.MultiBinary([2, 3]),
    gym.spaces.Dict({"a": gym.spaces.Discrete(3),
                     "b": gym.spaces.Tuple([gym.spaces.Box(0, 1, (2,)),
                                            gym.spaces.MultiBinary(2)])}),
])
def test_spaces_survive_a_weights_only_round_trip(space, tmp_path):
    torch.save({"space": space_to_data(space)}, tmp_path / "s.pt")
    data = torch.load(tmp_path / "s.pt", weights_only=True)["space"]
    assert space_from_data(data) == space


def test_a_session_writes_scalars_checkpoints_and_a_summary(plugins, tmp_path):
    agent = Agent.from_config(config(CONFIGS["ppo"][0]), observation_space=OBS,
                              action_space=DISCRETE, num_envs=2, plugins=plugins)
    run_dir = tmp_path / "run"
    obs = torch.zeros(2, 3)
    with Session(agent, run_dir=run_dir, log_every=10, checkpoint_every=16) as session:
        for t in range(20):  # episodes of 5 steps with a reward of 1 per step
            action = agent.act(obs)
            transition = Transition(obs, action, torch.ones(2), obs,
                                    torch.zeros(2, dtype=torch.bool),
                                    torch.full((2,), (t + 1) % 5 == 0))
            agent.observe(transition)
            session.record(transition)
            metrics = agent.update()
            if metrics:
                session.log(metrics)
            if t == 8:
                assert (run_dir / "checkpoints" / "latest.pt").is_file()  # at 16 steps
                assert session.checkpoint_step == 16
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["env_steps"] == 40
    assert summary["episodes"] == 8 and summary["checkpoint_step"] == 40
    assert summary["algorithm"] == "ppo" and summary["env_id"] is None
    assert summary["seed"] == 3 and summary["run_dir"] == str(run_dir)
    rows = (run_dir / "scalars.csv").read_text().splitlines()
    returns = [float(r.split(",")[2]) for r in rows if ",rollout/ep_return_mean," in r]
    assert returns and all(r == 5.0 for r in returns)
    assert any(",train/value_loss," in r for r in rows)
    assert list(run_dir.glob("events.out.tfevents.*")) and (run_dir / "config.yaml").is_file()
    loaded = Agent.load(run_dir, plugins=plugins)  # the run directory's latest.pt
    assert torch.equal(loaded.act(obs, explore=False), agent.act(obs, explore=False))


def test_a_session_left_by_an_error_reports_it(plugins, tmp_path):
    agent = Agent.from_config(config(CONFIGS["ppo"][0]), observation_space=OBS,
                              action_space=DISCRETE, plugins=plugins)
    with pytest.raises(RuntimeError), Session(agent, run_dir=tmp_path) as session:
        session.log({"custom/temperature": 21.5}, step=3)
        raise RuntimeError("the simulator lost its connection")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "crashed"
    assert summary["error"] == "RuntimeError: the simulator lost its connection"
    assert "3,custom/temperature,21.5" in (tmp_path / "scalars.csv").read_text()


def test_the_inventory_simulation_gives_every_controller_the_same_customers():
    from rlkit_envs.simulators.inventory import InventoryConfig, InventorySimulation

    class Fixed:
        def __init__(self, quantity: int) -> None:
            self.quantity, self.demand = quantity, []

        def decide(self, sim):
            return np.full(sim.num_warehouses, self.quantity)

        def day_done(self, sim, report):
            self.demand.append(report.demand)

    config = InventoryConfig(num_warehouses=8)
    few, many = Fixed(0), Fixed(40)
    costs_few = InventorySimulation(config, seed=5).run(30, few)
    costs_many = InventorySimulation(config, seed=5).run(30, many)
    assert np.array_equal(np.stack(few.demand), np.stack(many.demand))
    assert costs_few.shape == (30, 8) and not np.array_equal(costs_few, costs_many)
    sim = InventorySimulation(config, seed=5)
    sim.run(30, many)
    assert (sim.stock <= config.capacity).all() and sim.day == 30
    with pytest.raises(ValueError, match="expected 8 orders, got 3"):
        sim.step(np.zeros(3))


@pytest.mark.slow
def test_the_inventory_agent_beats_the_base_stock_policy(tmp_path):
    """Seed 0, 1,000 simulated days of online learning (64,000 agent steps, about 2-3 s):
    the agent's mean daily cost per warehouse over 500 fresh days must be at least 20% below
    the base-stock policy's (measured: 7.68 against 11.84, 35% less; seeds 1-3: 36-38%)."""
    from rlkit_envs.simulators.inventory_example import run_inventory_example

    result = run_inventory_example(train_days=1000, seed=0, run_dir=tmp_path / "run")
    assert result["agent_cost"] <= 0.8 * result["heuristic_cost"], result
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["env_steps"] == 64_000 and summary["episodes"] == 640


def test_acting_with_a_paused_trainers_agent_leaves_its_training_untouched(plugins, tmp_path):
    from rlkit import Trainer, load_experiment

    overrides = ["train.total_steps=768", "eval.every=0", "eval.episodes=2",
                 "algorithm.n_steps=32", "train.device=cpu"]
    finals = []
    for acted in (False, True):
        experiment = load_experiment(ROOT / "experiments" / "cartpole.yaml", plugins, overrides)
        trainer = Trainer(experiment, plugins, run_dir=tmp_path / str(acted), progress=False)
        assert trainer.run(max_steps=256)["status"] == "paused"
        if acted:
            actions = trainer.agent.act(torch.zeros(5, 4), explore=False)
            assert actions.shape == (5,)
        assert trainer.run()["status"] == "finished"
        finals.append(trainer.agent.state_dict()["model"])
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])
