"""DQN: action-space check, epsilon-greedy acting, target updates, Double DQN targets, exact
save/load, and a seeded learning check on CartPole-v1."""

from __future__ import annotations

import io
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.algorithms.dqn import DQN, DQNConfig, build_dqn
from rlkit.backbones.mlp import MLPConfig, build_mlp
from rlkit.interfaces import BuildContext, EnvSpec, NanCheck, Transition
from rlkit.optim import OptimizerConfig
from rlkit.schedules import Schedule
from rlkit.testing import (
    assert_state_equal,
)
from rlkit.validation import ConfigError

OBS = gym.spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)
ACTIONS = gym.spaces.Discrete(3)


def context(*, seed: int = 0, num_envs: int = 2, action_space: gym.Space = ACTIONS,
            observation_space: gym.Space = OBS, total_steps: int = 10_000,
            hidden: list[int] | None = None) -> BuildContext:
    sizes = [64, 64] if hidden is None else hidden
    return BuildContext(
        env=EnvSpec(observation_space=observation_space, action_space=action_space,
                    num_envs=num_envs),
        device=torch.device("cpu"),
        seed=seed,
        total_steps=total_steps,
        backbone=lambda space: build_mlp(MLPConfig(hidden_sizes=sizes), space),
        exploration=None,
        nan_check=NanCheck("raise"),
    )


def random_transition(g: torch.Generator, num_envs: int = 2, n_actions: int = 3) -> Transition:
    obs = torch.randn(num_envs, 4, generator=g)
    return Transition(
        obs=obs,
        action=torch.randint(n_actions, (num_envs,), generator=g),
        reward=torch.randn(num_envs, generator=g),
        next_obs=obs + 0.1 * torch.randn(num_envs, 4, generator=g),
        terminated=torch.rand(num_envs, generator=g) < 0.1,
        truncated=torch.rand(num_envs, generator=g) < 0.05,
    )


def drive(agent: DQN, g: torch.Generator, steps: int) -> list[dict[str, float]]:
    """Act on random observations and feed random outcomes; return the non-empty metrics."""
    metrics = []
    for _ in range(steps):
        t = random_transition(g, agent.buffer.num_envs, agent.num_actions)
        action = agent.act(t.obs)
        agent.observe(t._replace(action=action))
        m = agent.update()
        if m:
            metrics.append(m)
    return metrics


def test_box_action_space_is_rejected_with_a_hint():
    box = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    with pytest.raises(ConfigError, match=r"needs a discrete action space, env has Box.*ppo"):
        build_dqn(DQNConfig(), context(action_space=box))


def test_dqn_is_registered_as_a_default_plugin(plugins):
    assert plugins.algorithm("dqn").config is DQNConfig


def test_same_seed_builds_identical_networks_without_touching_global_rng():
    before = torch.random.get_rng_state()
    a, b = build_dqn(DQNConfig(), context(seed=3)), build_dqn(DQNConfig(), context(seed=3))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert_state_equal(a.q.state_dict(), b.q.state_dict(), "same seed")
    assert_state_equal(a.q.state_dict(), a.q_target.state_dict(), "target starts as a copy")
    c = build_dqn(DQNConfig(), context(seed=4))
    assert not torch.equal(a.q.head.weight, c.q.head.weight)


def test_zero_epsilon_acts_greedily_and_full_epsilon_uniformly():
    obs = torch.randn(256, 4, generator=torch.Generator().manual_seed(0))
    greedy_agent = build_dqn(DQNConfig(epsilon=0.0), context(num_envs=256))
    greedy = greedy_agent.q(obs).argmax(dim=1)
    assert torch.equal(greedy_agent.act(obs), greedy)
    assert torch.equal(greedy_agent.act(obs, explore=False), greedy)

    random_agent = build_dqn(DQNConfig(epsilon=1.0), context(num_envs=256))
    actions = random_agent.act(obs)
    counts = torch.bincount(actions, minlength=3)
    assert counts.min() > 50  # ~85 each; a greedy policy would not spread like this
    assert torch.equal(random_agent.act(obs, explore=False), random_agent.q(obs).argmax(dim=1))


def test_epsilon_follows_the_schedule_over_env_steps():
    cfg = DQNConfig(epsilon=Schedule(kind="linear", start=1.0, end=0.1, fraction=0.5),
                    learning_starts=10**6)
    agent = build_dqn(cfg, context(num_envs=2, total_steps=1000))
    assert agent.epsilon == pytest.approx(1.0)
    drive(agent, torch.Generator().manual_seed(0), 125)  # 250 env steps: half-way to the end
    assert agent.env_steps == 250
    assert agent.epsilon == pytest.approx(0.55)


def test_discrete_space_with_offset_start_maps_actions_both_ways():
    space = gym.spaces.Discrete(3, start=-1)
    agent = build_dqn(DQNConfig(epsilon=1.0), context(num_envs=64, action_space=space))
    obs = torch.randn(64, 4)
    actions = agent.act(obs)
    assert actions.min() >= -1 and actions.max() <= 1
    t = random_transition(torch.Generator().manual_seed(0), 64)._replace(obs=obs, action=actions)
    agent.observe(t)
    assert torch.equal(agent.buffer.action[:64], actions + 1)


def test_hard_target_update_every_interval_env_steps():
    cfg = DQNConfig(target_update_interval=6, learning_starts=10**6)
    agent = build_dqn(cfg, context(num_envs=2))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        agent.q.head.bias.add_(1.0)  # the online network moves; the target must wait
    drive(agent, g, 2)  # 4 env steps
    assert not torch.equal(agent.q_target.head.bias, agent.q.head.bias)
    drive(agent, g, 1)  # 6 env steps: due
    assert torch.equal(agent.q_target.head.bias, agent.q.head.bias)
    with torch.no_grad():
        agent.q.head.bias.add_(1.0)
    drive(agent, g, 2)  # 10 env steps: not yet (next at 12)
    assert not torch.equal(agent.q_target.head.bias, agent.q.head.bias)
    drive(agent, g, 1)
    assert torch.equal(agent.q_target.head.bias, agent.q.head.bias)


def test_soft_target_update_moves_by_tau():
    agent = build_dqn(DQNConfig(target_update_interval=1, tau=0.25, learning_starts=10**6),
                      context(num_envs=1))
    start = agent.q_target.head.bias.clone()
    with torch.no_grad():
        agent.q.head.bias.add_(4.0)
    drive(agent, torch.Generator().manual_seed(0), 1)
    torch.testing.assert_close(agent.q_target.head.bias, start + 1.0)


def test_soft_target_update_works_with_discrete_observations():
    # The one-hot encoder holds an integer buffer, which is copied rather than averaged.
    ctx = context(num_envs=1, observation_space=gym.spaces.Discrete(5))
    agent = build_dqn(DQNConfig(target_update_interval=1, tau=0.5, learning_starts=0,
                                train_freq=1, batch_size=2), ctx)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        obs = torch.randint(5, (1,), generator=g)
        agent.observe(Transition(obs, agent.act(obs), torch.ones(1), (obs + 1) % 5,
                                 torch.zeros(1, dtype=torch.bool),
                                 torch.zeros(1, dtype=torch.bool)))
        assert agent.update()


def test_learning_phases_follow_train_freq_after_learning_starts():
    cfg = DQNConfig(learning_starts=20, train_freq=8, gradient_steps=3, batch_size=4)
    agent = build_dqn(cfg, context(num_envs=2))
    g = torch.Generator().manual_seed(0)
    phases = []
    for _ in range(20):  # 40 env steps: phases due at 8, 16, 24, 32, 40; learning from 20
        drive(agent, g, 1)
        if agent.gradient_steps and (not phases or phases[-1][1] != agent.gradient_steps):
            phases.append((agent.env_steps, agent.gradient_steps))
    assert phases == [(24, 3), (32, 6), (40, 9)]


def test_many_envs_take_every_phase_that_falls_due():
    cfg = DQNConfig(learning_starts=0, train_freq=4, gradient_steps=3, batch_size=4)
    agent = build_dqn(cfg, context(num_envs=10))
    g = torch.Generator().manual_seed(0)
    drive(agent, g, 1)  # 10 env steps: phases at 4 and 8
    assert agent.gradient_steps == 6
    drive(agent, g, 1)  # 20 env steps: phases at 12, 16 and 20
    assert agent.gradient_steps == 15


def test_update_reports_metrics_only_when_it_learns():
    cfg = DQNConfig(learning_starts=8, train_freq=4, gradient_steps=2, batch_size=8)
    agent = build_dqn(cfg, context(num_envs=2))
    g = torch.Generator().manual_seed(0)
    assert drive(agent, g, 3) == []
    metrics = drive(agent, g, 2)
    assert len(metrics) == 1
    assert set(metrics[0]) == {"train/loss", "train/q_mean", "train/epsilon",
                               "train/learning_rate", "train/grad_norm"}
    assert all(np.isfinite(v) for v in metrics[0].values())
    assert metrics[0]["train/learning_rate"] == pytest.approx(1e-4)


def _one_step_loss(double: bool) -> tuple[float, float]:
    """The loss DQN reports for one gradient step, and the same loss computed by hand."""
    cfg = DQNConfig(double_dqn=double, learning_starts=0, train_freq=10**6, batch_size=32,
                    gamma=0.9)
    agent = build_dqn(cfg, context(num_envs=8))
    g = torch.Generator().manual_seed(1)
    for _ in range(8):
        agent.observe(random_transition(g, 8))
    with torch.no_grad():  # make the two networks disagree
        for p in agent.q_target.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    replay_rng = torch.Generator()
    replay_rng.set_state(agent.generator.get_state())
    batch = agent.buffer.sample(32, replay_rng)  # the batch learn() is about to draw
    with torch.no_grad():
        next_target = agent.q_target(batch.next_obs)
        if double:
            picked = agent.q(batch.next_obs).argmax(dim=1)
            assert not torch.equal(picked, next_target.argmax(dim=1))  # the test discriminates
        else:
            picked = next_target.argmax(dim=1)
        bootstrap = next_target[torch.arange(32), picked]
        y = batch.reward + 0.9 * bootstrap * (~batch.terminated).float()
        q_taken = agent.q(batch.obs)[torch.arange(32), batch.action]
        expected = torch.nn.functional.smooth_l1_loss(q_taken, y).item()
    reported = agent.learn(1)["train/loss"]
    return reported, expected


@pytest.mark.parametrize("double", [False, True])
def test_td_target_matches_manual_computation(double: bool):
    reported, expected = _one_step_loss(double)
    assert reported == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_double_dqn_uses_the_online_network_to_pick_the_next_action():
    assert _one_step_loss(True)[0] != pytest.approx(_one_step_loss(False)[0], rel=1e-4)


def roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    blob = io.BytesIO()
    torch.save(state, blob)
    blob.seek(0)
    return torch.load(blob, weights_only=True)


@pytest.mark.parametrize("double", [False, True])
def test_state_dict_round_trip_continues_bit_identically(double: bool):
    cfg = DQNConfig(learning_starts=16, train_freq=6, gradient_steps=2, batch_size=16,
                    target_update_interval=10, double_dqn=double, buffer_size=50,
                    optimizer=OptimizerConfig(lr=Schedule(kind="linear", start=1e-3, end=0.0)))
    agent = build_dqn(cfg, context(num_envs=2, total_steps=200))
    g = torch.Generator().manual_seed(0)
    drive(agent, g, 37)  # past learning_starts, buffer wrapped around, mid-interval counters
    fresh = build_dqn(cfg, context(num_envs=2, total_steps=200, seed=99))
    fresh.load_state_dict(roundtrip(agent.state_dict()))
    assert_state_equal(agent.state_dict(), fresh.state_dict(), "after load")
    g_copy = torch.Generator()
    g_copy.set_state(g.get_state())
    metrics_a = drive(agent, g, 40)
    metrics_b = drive(fresh, g_copy, 40)
    assert metrics_a and metrics_a == metrics_b
    assert_state_equal(agent.state_dict(), fresh.state_dict(), "resumed vs uninterrupted")


def test_non_finite_loss_is_caught_with_a_cause():
    cfg = DQNConfig(learning_starts=0, train_freq=1, batch_size=4)
    agent = build_dqn(cfg, context(num_envs=2))
    t = random_transition(torch.Generator().manual_seed(0))
    agent.observe(t._replace(reward=torch.tensor([float("nan"), 1.0])))
    with pytest.raises(FloatingPointError, match="train/loss.*optimizer.lr"):
        for _ in range(20):
            agent.learn(1)


# --- learning check ----------------------------------------------------------------------

LEARN_SEED = 0
LEARN_BUDGET = 20_000
LEARN_THRESHOLD = 150.0


def cartpole(num_envs: int) -> gym.vector.VectorEnv:
    return gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})


def greedy_eval(agent: DQN, episodes: int, seed: int) -> float:
    """Mean undiscounted return of ``episodes`` greedy episodes, one per environment."""
    env = cartpole(episodes)
    obs, _ = env.reset(seed=seed)
    returns = np.zeros(episodes)
    running = np.ones(episodes, dtype=bool)
    while running.any():
        action = agent.act(torch.as_tensor(obs), explore=False).numpy()
        obs, reward, terminated, truncated, _ = env.step(action)
        returns += reward * running
        running &= ~(terminated | truncated)
    env.close()
    return float(returns.mean())


@pytest.mark.slow
def test_dqn_learns_cartpole():
    """Seed 0: mean greedy return over 10 episodes >= 150 within 20k env steps.

    Hyperparameters follow rl-baselines3-zoo's CartPole DQN with a [64, 64] network and the
    exploration schedule scaled to the shorter budget; evaluated every 2k steps after 8k.
    """
    torch.set_num_threads(1)
    cfg = DQNConfig(gamma=0.99, buffer_size=100_000, learning_starts=1000, batch_size=64,
                    train_freq=256, gradient_steps=128, target_update_interval=10,
                    optimizer=OptimizerConfig(lr=2.3e-3),
                    epsilon=Schedule(kind="linear", start=1.0, end=0.04, fraction=0.16))
    env = cartpole(1)
    spec = context(seed=LEARN_SEED, num_envs=1, observation_space=env.single_observation_space,
                   action_space=env.single_action_space, total_steps=LEARN_BUDGET)
    agent = build_dqn(cfg, spec)
    raw, _ = env.reset(seed=LEARN_SEED)
    obs = torch.as_tensor(raw)
    best = -1.0
    for step in range(1, LEARN_BUDGET + 1):
        action = agent.act(obs)
        raw, reward, terminated, truncated, info = env.step(action.numpy())
        next_obs = torch.as_tensor(raw)
        true_next = next_obs
        if "_final_obs" in info and info["_final_obs"].any():
            true_next = next_obs.clone()
            ended = info["_final_obs"]
            true_next[torch.as_tensor(ended)] = torch.as_tensor(np.stack(info["final_obs"][ended]))
        agent.observe(Transition(obs, action, torch.as_tensor(reward, dtype=torch.float32),
                                 true_next, torch.as_tensor(terminated),
                                 torch.as_tensor(truncated)))
        agent.update()
        obs = next_obs
        if step >= 8000 and step % 2000 == 0:
            best = max(best, greedy_eval(agent, episodes=10, seed=1000 + step))
            if best >= LEARN_THRESHOLD:
                break
    env.close()
    assert best >= LEARN_THRESHOLD, f"best greedy eval {best:.1f} < {LEARN_THRESHOLD}"
