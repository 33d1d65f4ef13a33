"""DDPG and TD3: targets, Polyak averaging and smoothing against hand computations, action
bounds, the noise processes, truncation against termination, refusals, and a learning check."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.algorithms.ddpg import DDPG, DDPGConfig, TD3Config
from rlkit.backbones.mlp import MLP, MLPConfig
from rlkit.buffers import ReplayBatch
from rlkit.config import ConfigError, resolve
from rlkit.exploration.noise import ActionNoiseExploration, GaussianNoise, OrnsteinUhlenbeckNoise
from rlkit.interfaces import BuildContext, EnvSpec, NanCheck, Transition
from rlkit.loop import Trainer
from rlkit.validation import IncompatibleError

OBS = gym.spaces.Box(-1.0, 1.0, (3,))
ACT = gym.spaces.Box(low=np.array([-2.0, 0.0], np.float32), high=np.array([2.0, 1.0], np.float32))


def make(config: DDPGConfig | None = None, *, action_space=ACT, num_envs=4, exploration=None,
         observation_space=OBS) -> DDPG:
    ctx = BuildContext(
        env=EnvSpec(observation_space=observation_space, action_space=action_space,
                    num_envs=num_envs),
        device=torch.device("cpu"), seed=0, total_steps=10_000,
        backbone=lambda space: MLP(space, MLPConfig(hidden_sizes=[16])),
        exploration=exploration, nan_check=NanCheck("raise"))
    return DDPG(config or DDPGConfig(learning_starts=0, buffer_size=1000), ctx)


def batch(n=5, terminated=None) -> ReplayBatch:
    g = torch.Generator().manual_seed(1)
    return ReplayBatch(obs=torch.rand(n, 3, generator=g), action=torch.rand(n, 2, generator=g),
                       reward=torch.rand(n, generator=g), next_obs=torch.rand(n, 3, generator=g),
                       terminated=torch.zeros(n, dtype=torch.bool) if terminated is None
                       else terminated)


# --- targets and updates against hand computations -----------------------------------------

def test_ddpg_target_is_one_step_bootstrap_from_the_target_actor_and_critic():
    agent = make(DDPGConfig(gamma=0.9, learning_starts=0, buffer_size=1000))
    terminated = torch.tensor([False, True, False, False, True])
    b = batch(terminated=terminated)
    with torch.no_grad():
        a_next = agent.actor_target(b.next_obs)
        q_next = agent.critics_target[0](b.next_obs, a_next)
    expected = b.reward + 0.9 * q_next * (~terminated).float()
    torch.testing.assert_close(agent.td_target(b), expected)
    assert torch.equal(agent.td_target(b)[terminated], b.reward[terminated])


def test_td3_target_takes_the_smaller_twin_and_smoothed_clipped_actions():
    agent = make(TD3Config(gamma=0.5, learning_starts=0, buffer_size=1000,
                           target_policy_noise=0.3, target_noise_clip=0.4))
    assert len(agent.critics) == 2
    b = batch()
    state = agent.generator.get_state()
    got = agent.td_target(b)
    agent.generator.set_state(state)  # replay the same draw by hand
    with torch.no_grad():
        noise = (torch.randn(5, 2, generator=agent.generator) * 0.3).clamp(-0.4, 0.4)
        a_next = (agent.actor_target(b.next_obs) + noise).clamp(-1.0, 1.0)
        q1 = agent.critics_target[0](b.next_obs, a_next)
        q2 = agent.critics_target[1](b.next_obs, a_next)
    torch.testing.assert_close(got, b.reward + 0.5 * torch.minimum(q1, q2))
    assert not torch.equal(q1, q2)  # two critics, independently initialised


def test_polyak_averaging_moves_every_target_weight_by_tau():
    agent = make(DDPGConfig(tau=0.1, learning_starts=0, buffer_size=1000, twin_critics=True))
    online = [p.detach().clone() for p in [*agent.actor.parameters(),
                                            *agent.critics.parameters()]]
    targets = [p.detach().clone() for p in [*agent.actor_target.parameters(),
                                             *agent.critics_target.parameters()]]
    with torch.no_grad():  # move the online weights so that the averaging is visible
        for p in [*agent.actor.parameters(), *agent.critics.parameters()]:
            p.add_(1.0)
    agent.update_targets()
    for t_before, o_before, t_now in zip(targets, online, [
            *agent.actor_target.parameters(), *agent.critics_target.parameters()]):
        torch.testing.assert_close(t_now, 0.9 * t_before + 0.1 * (o_before + 1.0))


def test_td3_updates_the_actor_and_targets_every_policy_delay_critic_updates():
    agent = make(TD3Config(learning_starts=0, buffer_size=1000, batch_size=4, policy_delay=3))
    fill(agent, 8)
    actor_before = [p.clone() for p in agent.actor.parameters()]
    target_before = [p.clone() for p in agent.actor_target.parameters()]
    agent.learn(2)
    assert all(torch.equal(a, b) for a, b in zip(actor_before, agent.actor.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(target_before, agent.actor_target.parameters()))
    metrics = agent.learn(1)  # the third critic update
    assert "train/actor_loss" in metrics and agent.critic_updates == 3
    assert not all(torch.equal(a, b) for a, b in zip(actor_before, agent.actor.parameters()))
    assert not all(torch.equal(a, b)
                   for a, b in zip(target_before, agent.actor_target.parameters()))


def fill(agent: DDPG, steps: int, *, truncated=False, terminated=False) -> None:
    obs = torch.rand(agent.num_envs, 3)
    for _ in range(steps):
        action = agent.act(obs)
        next_obs = torch.rand(agent.num_envs, 3)
        flags = torch.zeros(agent.num_envs, dtype=torch.bool)
        agent.observe(Transition(obs, action, torch.rand(agent.num_envs), next_obs,
                                 flags | terminated, flags | truncated))
        obs = next_obs


# --- actions and bounds --------------------------------------------------------------------

def test_actions_stay_inside_the_bounds_even_with_large_noise():
    agent = make(DDPGConfig(learning_starts=0, buffer_size=1000, noise_sigma=50.0))
    obs = torch.rand(4, 3)
    for explore in (True, False):
        for _ in range(20):
            a = agent.act(obs, explore=explore)
            assert a.shape == (4, 2)
            assert torch.all(a >= torch.tensor([-2.0, 0.0])) and torch.all(
                a <= torch.tensor([2.0, 1.0]))
    noisy = agent.act(obs)  # the noise pushes actions onto the bounds
    assert bool(((noisy == -2.0) | (noisy == 2.0)).any())


def test_random_actions_before_learning_starts_cover_the_bounds():
    agent = make(DDPGConfig(learning_starts=1000, buffer_size=1000))
    actions = torch.cat([agent.act(torch.rand(4, 3)) for _ in range(200)])
    assert actions[:, 0].min() < -1.8 and actions[:, 0].max() > 1.8
    assert actions[:, 1].min() < 0.1 and actions[:, 1].max() > 0.9


def test_the_buffer_stores_the_taken_actions_normalised():
    agent = make()
    obs = torch.rand(4, 3)
    taken = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, 0.5], [1.0, 0.25]])
    agent.observe(Transition(obs, taken, torch.zeros(4), obs, torch.zeros(4, dtype=torch.bool),
                             torch.zeros(4, dtype=torch.bool)))
    expected = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0], [0.5, -0.5]])
    torch.testing.assert_close(agent.buffer.action[:4], expected)


def test_unbounded_and_discrete_action_spaces_are_refused_with_advice():
    with pytest.raises(ConfigError, match=r"needs a bounded action space.*ClipAction"):
        make(action_space=gym.spaces.Box(-math.inf, math.inf, (2,)))
    with pytest.raises(IncompatibleError, match=r"'ddpg' needs a continuous \(Box\) action"):
        make(action_space=gym.spaces.Discrete(3))


def test_truncation_bootstraps_and_termination_does_not(plugins, tmp_path):
    """Through the whole path: observe -> buffer -> target. A truncated transition keeps
    ``terminated`` False in the buffer (so its target bootstraps), a terminated one does not."""
    agent = make(DDPGConfig(learning_starts=0, buffer_size=1000))
    fill(agent, 1, truncated=True)
    fill(agent, 1, terminated=True)
    b = ReplayBatch(*(getattr(agent.buffer, f)[:8] for f in agent.buffer.FIELDS))
    target = agent.td_target(b)
    assert not b.terminated[:4].any() and b.terminated[4:].all()
    assert torch.equal(target[4:], b.reward[4:])
    assert not torch.allclose(target[:4], b.reward[:4])


# --- noise ---------------------------------------------------------------------------------

def test_ornstein_uhlenbeck_reverts_to_zero_is_per_env_and_restarts_at_episode_start():
    noise = OrnsteinUhlenbeckNoise(3, 2, torch.device("cpu"), theta=0.5, dt=0.1)
    noise.x = torch.full((3, 2), 4.0)
    g = torch.Generator().manual_seed(0)
    noise.theta, saved = 0.5, noise.x.clone()
    eps = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    x = noise.sample(g)
    torch.testing.assert_close(x, saved - 0.5 * 0.1 * saved + math.sqrt(0.1) * eps)
    for _ in range(400):  # mean reversion: far from 4 after many steps, and bounded
        x = noise.sample(g)
    assert x.abs().max() < 3.0
    assert not torch.allclose(x[0], x[1])  # independent processes per env
    noise.x = torch.full((3, 2), 1.0)
    noise.reset(torch.tensor([False, True, False]))
    assert torch.equal(noise.x[1], torch.zeros(2)) and torch.equal(noise.x[0], torch.ones(2))
    # the stationary standard deviation is sqrt(1 / (2 theta)) per unit of sigma
    long = OrnsteinUhlenbeckNoise(4000, 1, torch.device("cpu"), theta=0.15, dt=0.01)
    for _ in range(3000):
        long.sample(g)
    assert abs(float(long.x.std()) - math.sqrt(1 / 0.3)) < 0.25


def test_the_agent_restarts_noise_where_episodes_end_and_saves_it():
    exploration = ActionNoiseExploration(0.2, 10_000, "ornstein_uhlenbeck")
    agent = make(exploration=exploration)
    assert isinstance(agent.noise, OrnsteinUhlenbeckNoise)
    obs = torch.rand(4, 3)
    for _ in range(5):
        agent.act(obs)
    assert bool((agent.noise.x != 0).all())
    ended = torch.tensor([True, False, False, True])
    agent.observe(Transition(obs, agent.act(obs), torch.zeros(4), obs, ended,
                             torch.zeros(4, dtype=torch.bool)))
    assert torch.all(agent.noise.x[ended] == 0) and torch.all(agent.noise.x[~ended] != 0)
    twin = make(exploration=ActionNoiseExploration(0.2, 10_000, "ornstein_uhlenbeck"))
    twin.load_state_dict(agent.state_dict())
    assert torch.equal(twin.noise.x, agent.noise.x)
    assert torch.equal(twin.act(obs), agent.act(obs))


def test_gaussian_noise_scales_with_the_scheduled_sigma():
    from rlkit.schedules import Schedule

    exploration = ActionNoiseExploration(Schedule(kind="linear", start=0.4, end=0.0), 100,
                                         "gaussian")
    assert exploration.value(0) == pytest.approx(0.4) and exploration.value(100) == 0.0
    assert isinstance(make(exploration=exploration).noise, GaussianNoise)


# --- YAML and learning ---------------------------------------------------------------------

def test_td3_is_ddpg_with_tds_defaults(plugins):
    exp = resolve({"algorithm": {"name": "td3"}, "env": {"id": "Pendulum-v1"},
                   "train": {"total_steps": 100}}, plugins)
    assert isinstance(exp.algorithm.params, TD3Config)
    p = exp.algorithm.params
    assert (p.twin_critics, p.policy_delay, p.target_policy_noise) == (True, 2, 0.2)
    with pytest.raises(ConfigError, match="exploration.name: unknown exploration"):
        resolve({"algorithm": {"name": "ddpg"}, "exploration": {"name": "gausian"},
                 "env": {"id": "Pendulum-v1"}, "train": {"total_steps": 100}}, plugins)


@pytest.mark.slow
def test_td3_clearly_improves_on_pendulum(plugins, tmp_path):
    """TD3 on torch-native rlkit/Pendulum-v1 (16 envs), seed 0, CPU: a random policy scores
    about -1,200 per episode; within 24k env steps the deterministic evaluation return must
    exceed -600 (the full target, -200, is benchmarks/ddpg_vs_sb3.py's)."""
    exp = resolve({
        "algorithm": {"name": "td3", "learning_starts": 2000, "batch_size": 256,
                      "train_freq": 16, "gradient_steps": 8, "gamma": 0.98,
                      "buffer_size": 100_000},
        "backbone": {"name": "mlp", "hidden_sizes": [64, 64], "activation": "relu"},
        "env": {"id": "rlkit/Pendulum-v1", "num_envs": 16},
        "train": {"total_steps": 24_000, "seed": 0, "device": "cpu"},
        "eval": {"every": 8000, "episodes": 10},
        "run": {"dir": str(tmp_path)},
    }, plugins)
    summary = Trainer(exp, plugins, run_dir=tmp_path / "run", progress=False).run()
    assert summary["final_eval_return_mean"] > -600, summary


def test_with_images_the_action_joins_the_cnn_features():
    from rlkit.backbones.cnn import CNN, CNNConfig

    images = gym.spaces.Box(0, 255, (4, 10, 10), dtype=np.uint8)
    ctx = BuildContext(
        env=EnvSpec(observation_space=images, action_space=ACT, num_envs=2),
        device=torch.device("cpu"), seed=0, total_steps=1000,
        backbone=lambda space: CNN(space, CNNConfig(channels=[4], kernel_sizes=[3], strides=[1],
                                                    hidden_sizes=[16])),
        exploration=None, nan_check=NanCheck("raise"))
    agent = DDPG(TD3Config(learning_starts=0, buffer_size=64, batch_size=8), ctx)
    assert not agent.critics[0].joint
    obs = torch.randint(0, 255, (2, 4, 10, 10), dtype=torch.uint8)
    for _ in range(8):
        action = agent.act(obs)
        agent.observe(Transition(obs, action, torch.rand(2), obs,
                                 torch.zeros(2, dtype=torch.bool),
                                 torch.zeros(2, dtype=torch.bool)))
    metrics = agent.learn(2)
    assert math.isfinite(metrics["train/critic_loss"]) and "train/actor_loss" in metrics
    with pytest.raises(ConfigError, match="critic_action_input: 'observation' needs flat Box"):
        DDPG(DDPGConfig(critic_action_input="observation"), ctx)
