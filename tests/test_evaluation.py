"""Evaluation: per-env episode quotas, both autoreset modes, against a naive episode loop."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from rlkit.environments import EnvOptions, make_env
from rlkit.evaluation import evaluate


class LeanPolicy:
    """Push the cart towards the side the pole leans to: deterministic, episodes of varied
    length."""

    def act(self, obs: torch.Tensor, explore: bool = True) -> torch.Tensor:
        return (obs[:, 2] > 0).long()


def naive(episodes: int, num_envs: int, seed: int) -> list[tuple[float, int]]:
    """Env i plays its quota of episodes one after another, as the vector env seeds it."""
    results = []
    for i in range(num_envs):
        env = gym.make("CartPole-v1")
        obs, _ = env.reset(seed=seed + i)
        for _ in range((episodes + i) // num_envs):
            total, length, done = 0.0, 0, False
            while not done:
                action = int(LeanPolicy().act(torch.as_tensor(obs)[None])[0])
                obs, reward, terminated, truncated, _ = env.step(action)
                total, length, done = total + reward, length + 1, terminated or truncated
            results.append((total, length))
            obs, _ = env.reset()
    return results


@pytest.mark.parametrize("mode", ["same_step", "next_step"])
@pytest.mark.parametrize(("episodes", "num_envs"), [(1, 1), (5, 5), (7, 3), (20, 8)])
def test_returns_and_lengths_match_a_naive_episode_loop(mode, episodes, num_envs):
    env = make_env(EnvOptions(id="CartPole-v1", num_envs=num_envs, autoreset_mode=mode))
    result = evaluate(LeanPolicy(), env, episodes=episodes, seed=11)
    expected = naive(episodes, num_envs, seed=11)
    assert sorted(zip(result.returns, result.lengths)) == sorted(expected)
    assert len(set(result.lengths)) > 1 or episodes == 1  # the check is not vacuous


def test_the_same_seed_gives_the_same_episodes_and_training_state_is_untouched():
    env = make_env(EnvOptions(id="CartPole-v1", num_envs=4))
    a = evaluate(LeanPolicy(), env, episodes=8, seed=3)
    b = evaluate(LeanPolicy(), env, episodes=8, seed=3)
    assert a == b
