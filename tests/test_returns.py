"""GAE and n-step returns against naive per-environment reference loops."""

from __future__ import annotations

import pytest
import torch

from rlkit.returns import gae, n_step_returns


def random_episodes(steps: int, envs: int, seed: int) -> dict[str, torch.Tensor]:
    """Random rewards/values with frequent terminations and truncations (never both at once)."""
    g = torch.Generator().manual_seed(seed)
    ends = torch.rand(steps, envs, generator=g)
    terminated = ends < 0.1
    truncated = (ends >= 0.1) & (ends < 0.2)
    return {
        "rewards": torch.randn(steps, envs, generator=g),
        "values": torch.randn(steps, envs, generator=g),
        "next_values": torch.randn(steps, envs, generator=g),
        "terminated": terminated,
        "truncated": truncated,
        "dones": terminated | truncated,
    }


def reference_gae(d: dict[str, torch.Tensor], gamma: float, lam: float) -> torch.Tensor:
    steps, envs = d["rewards"].shape
    adv = torch.zeros(steps, envs, dtype=torch.float64)
    for env in range(envs):
        following = 0.0
        for t in reversed(range(steps)):
            r = float(d["rewards"][t, env])
            v = float(d["values"][t, env])
            bootstrap = 0.0 if d["terminated"][t, env] else float(d["next_values"][t, env])
            delta = r + gamma * bootstrap - v
            if d["dones"][t, env]:
                following = 0.0
            following = delta + gamma * lam * following
            adv[t, env] = following
    return adv


def reference_n_step(d: dict[str, torch.Tensor], gamma: float, n: int):
    steps, envs = d["rewards"].shape
    sums = torch.zeros(steps, envs, dtype=torch.float64)
    discounts = torch.zeros(steps, envs, dtype=torch.float64)
    index = torch.zeros(steps, envs, dtype=torch.int64)
    for env in range(envs):
        for t in range(steps):
            total, m, terminal = 0.0, 0, False
            while m < n and t + m < steps:
                total += gamma**m * float(d["rewards"][t + m, env])
                m += 1
                if d["dones"][t + m - 1, env]:
                    terminal = bool(d["terminated"][t + m - 1, env])
                    break
            sums[t, env] = total
            discounts[t, env] = 0.0 if terminal else gamma**m
            index[t, env] = t + m - 1
    return sums, discounts, index


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (0.8, 0.0)])
def test_gae_matches_reference_with_terminations_and_truncations(gamma: float, lam: float):
    d = random_episodes(64, 5, seed=1)
    adv, ret = gae(d["rewards"], d["values"], d["next_values"], d["terminated"], d["dones"],
                   gamma, lam)
    expected = reference_gae(d, gamma, lam)
    torch.testing.assert_close(adv.double(), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ret, adv + d["values"])


def test_gae_hand_computed_example():
    # One env, three steps: the episode is truncated at t=0 (bootstraps from V(final obs)=10)
    # and a new one terminates at t=2 (no bootstrap).
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.5], [1.0], [2.0]])
    next_values = torch.tensor([[10.0], [2.0], [7.0]])
    terminated = torch.tensor([[False], [False], [True]])
    dones = torch.tensor([[True], [False], [True]])
    gamma, lam = 0.5, 0.5
    adv, ret = gae(rewards, values, next_values, terminated, dones, gamma, lam)
    a2 = 3.0 - 2.0  # terminal: r - V
    a1 = (2.0 + 0.5 * 2.0 - 1.0) + 0.25 * a2
    a0 = 1.0 + 0.5 * 10.0 - 0.5  # truncated: bootstrap, but nothing flows in from t=1
    torch.testing.assert_close(adv, torch.tensor([[a0], [a1], [a2]]))
    torch.testing.assert_close(ret, torch.tensor([[a0 + 0.5], [a1 + 1.0], [a2 + 2.0]]))


def test_gae_truncation_bootstraps_and_termination_does_not():
    ones = torch.ones(1, 1)
    zeros = torch.zeros(1, 1)
    done = torch.ones(1, 1, dtype=torch.bool)
    truncated_adv, _ = gae(zeros, zeros, 4 * ones, ~done, done, 0.9, 0.95)
    terminated_adv, _ = gae(zeros, zeros, 4 * ones, done, done, 0.9, 0.95)
    assert truncated_adv.item() == pytest.approx(0.9 * 4)
    assert terminated_adv.item() == 0.0


@pytest.mark.parametrize("n", [1, 3, 5, 100])
def test_n_step_matches_reference_with_terminations_and_truncations(n: int):
    d = random_episodes(40, 4, seed=2)
    sums, discounts, index = n_step_returns(d["rewards"], d["terminated"], d["dones"], 0.9, n)
    ref_sums, ref_discounts, ref_index = reference_n_step(d, 0.9, n)
    torch.testing.assert_close(sums.double(), ref_sums, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(discounts.double(), ref_discounts, atol=1e-6, rtol=1e-5)
    assert torch.equal(index, ref_index)


def test_n_step_hand_computed_example():
    # One env: truncated at t=1, terminated at t=3, window n=3, gamma=0.5.
    rewards = torch.tensor([[1.0], [2.0], [4.0], [8.0], [16.0]])
    terminated = torch.tensor([[False], [False], [False], [True], [False]])
    dones = torch.tensor([[False], [True], [False], [True], [False]])
    sums, discounts, index = n_step_returns(rewards, terminated, dones, 0.5, 3)
    torch.testing.assert_close(sums, torch.tensor([[1 + 1.0], [2.0], [4 + 4.0], [8.0], [16.0]]))
    # t=0: stops at the truncation (bootstraps from next_obs[1] with gamma^2);
    # t=2, t=3: the termination inside the window zeroes the bootstrap;
    # t=4: the data ends after one step.
    torch.testing.assert_close(discounts, torch.tensor([[0.25], [0.5], [0.0], [0.0], [0.5]]))
    assert index.flatten().tolist() == [1, 1, 3, 3, 4]


def test_n_step_with_n_one_is_one_step_td():
    d = random_episodes(20, 3, seed=3)
    sums, discounts, index = n_step_returns(d["rewards"], d["terminated"], d["dones"], 0.99, 1)
    torch.testing.assert_close(sums, d["rewards"])
    torch.testing.assert_close(discounts, torch.where(d["terminated"], 0.0, 0.99))
    assert torch.equal(index, torch.arange(20).unsqueeze(1).expand(20, 3))
