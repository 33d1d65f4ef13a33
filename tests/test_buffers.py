"""Replay and rollout buffers: layout, wraparound, valid masks, determinism, state round trips."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.buffers import ReplayBuffer, RolloutBuffer
from rlkit.interfaces import Transition
from rlkit.returns import gae

BOX_OBS = gym.spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
DISCRETE = gym.spaces.Discrete(4)


def transition(step: int, envs: int, valid: torch.Tensor | None = None) -> Transition:
    """A transition whose every field encodes ``step`` and the env index, to trace rows."""
    tag = torch.arange(envs, dtype=torch.float32) + 100 * step
    return Transition(
        obs=tag.unsqueeze(1).repeat(1, 3),
        action=torch.arange(envs) % 4,
        reward=tag,
        next_obs=(tag + 0.5).unsqueeze(1).repeat(1, 3),
        terminated=torch.arange(envs) % 2 == 0,
        truncated=torch.zeros(envs, dtype=torch.bool),
        valid=valid,
    )


def replay(capacity: int, envs: int = 2) -> ReplayBuffer:
    return ReplayBuffer(capacity=capacity, observation_space=BOX_OBS, action_space=DISCRETE,
                        num_envs=envs, device="cpu")


def roundtrip(state: dict) -> dict:
    blob = io.BytesIO()
    torch.save(state, blob)
    blob.seek(0)
    return torch.load(blob, weights_only=True)


def test_replay_dtypes_follow_the_spaces():
    buf = replay(8)
    assert buf.obs.dtype == torch.float32 and buf.obs.shape == (8, 3)
    assert buf.action.dtype == torch.int64 and buf.action.shape == (8,)
    box = ReplayBuffer(capacity=8, observation_space=DISCRETE,
                       action_space=gym.spaces.Box(-1, 1, shape=(2,)), num_envs=1, device="cpu")
    assert box.obs.dtype == torch.int64 and box.obs.shape == (8,)
    assert box.action.dtype == torch.float32 and box.action.shape == (8, 2)


def test_replay_wraps_around_and_keeps_the_newest_rows():
    buf = replay(5, envs=2)
    for step in range(4):  # 8 rows into 5 slots: rows of steps 1.5..3 survive
        buf.add(transition(step, 2))
    assert len(buf) == 5
    assert buf.pos == 3
    assert sorted(buf.reward.tolist()) == [101.0, 200.0, 201.0, 300.0, 301.0]
    # The write that crossed the end split correctly: step 2 env 1 sits at row 0.
    assert buf.reward[:3].tolist() == [201.0, 300.0, 301.0]
    assert torch.equal(buf.next_obs[:, 0], buf.reward + 0.5)


def test_replay_add_larger_than_capacity_keeps_the_last_rows():
    buf = replay(3, envs=5)
    buf.add(transition(0, 5))
    assert len(buf) == 3
    assert sorted(buf.reward.tolist()) == [2.0, 3.0, 4.0]


def test_replay_skips_invalid_rows():
    buf = replay(10, envs=4)
    buf.add(transition(0, 4, valid=torch.tensor([True, False, True, False])))
    assert len(buf) == 2
    assert buf.reward[:2].tolist() == [0.0, 2.0]
    buf.add(transition(1, 4, valid=torch.zeros(4, dtype=torch.bool)))
    assert len(buf) == 2


def test_replay_sampling_is_deterministic_given_the_generator_seed():
    buf = replay(50, envs=2)
    for step in range(20):
        buf.add(transition(step, 2))
    a = buf.sample(16, torch.Generator().manual_seed(7))
    b = buf.sample(16, torch.Generator().manual_seed(7))
    c = buf.sample(16, torch.Generator().manual_seed(8))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a.reward, c.reward)
    # Rows stay aligned across fields.
    assert torch.equal(a.obs[:, 0], a.reward)
    assert torch.equal(a.next_obs[:, 0], a.reward + 0.5)


def test_replay_samples_only_filled_rows():
    buf = replay(100, envs=2)
    buf.add(transition(3, 2))
    batch = buf.sample(64, torch.Generator().manual_seed(0))
    assert set(batch.reward.tolist()) <= {300.0, 301.0}


@pytest.mark.parametrize("steps", [3, 9])  # partly filled, and wrapped around
def test_replay_state_dict_round_trip(steps: int):
    buf = replay(6, envs=2)
    for step in range(steps):
        buf.add(transition(step, 2))
    state = roundtrip(buf.state_dict())
    assert state["obs"].shape[0] == min(2 * steps, 6)  # only the filled part is saved
    fresh = replay(6, envs=2)
    fresh.load_state_dict(state)
    assert (len(fresh), fresh.pos) == (len(buf), buf.pos)
    for name in ReplayBuffer.FIELDS:
        assert torch.equal(getattr(fresh, name)[: len(buf)], getattr(buf, name)[: len(buf)])
    buf.add(transition(50, 2))
    fresh.add(transition(50, 2))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert all(torch.equal(x, y) for x, y in zip(buf.sample(8, g1), fresh.sample(8, g2)))


def test_replay_load_rejects_another_capacity():
    buf = replay(6)
    buf.add(transition(0, 2))
    with pytest.raises(ValueError, match="capacity"):
        replay(7).load_state_dict(buf.state_dict())


def rollout(steps: int = 4, envs: int = 3, action_space: gym.Space = DISCRETE) -> RolloutBuffer:
    return RolloutBuffer(num_steps=steps, num_envs=envs, observation_space=BOX_OBS,
                         action_space=action_space, device="cpu")


def fill(buf: RolloutBuffer, valid_every: int = 0) -> None:
    for step in range(buf.num_steps):
        t = transition(step, buf.num_envs)
        valid = None
        if valid_every:
            valid = (torch.arange(buf.num_envs) + step) % valid_every != 0
        buf.add(obs=t.obs, action=t.action, reward=t.reward, next_obs=t.next_obs,
                terminated=t.terminated, truncated=t.truncated, value=t.reward * 0.1,
                log_prob=-t.reward, valid=valid)


def test_rollout_stores_t_by_n_and_reports_full():
    buf = rollout(steps=4, envs=3, action_space=gym.spaces.Box(-1, 1, shape=(2,)))
    assert buf.obs.shape == (4, 3, 3) and buf.action.shape == (4, 3, 2)
    assert not buf.full
    t = transition(0, 3)
    for _ in range(4):
        buf.add(obs=t.obs, action=torch.ones(3, 2), reward=t.reward, next_obs=t.next_obs,
                terminated=t.terminated, truncated=t.truncated, value=t.reward,
                log_prob=t.reward)
    assert buf.full
    with pytest.raises(RuntimeError, match="full"):
        buf.add(obs=t.obs, action=torch.ones(3, 2), reward=t.reward, next_obs=t.next_obs,
                terminated=t.terminated, truncated=t.truncated, value=t.reward,
                log_prob=t.reward)
    buf.reset()
    assert not buf.full and buf.step == 0


def test_rollout_compute_fills_gae():
    buf = rollout()
    fill(buf)
    buf.truncated[1, 1] = True
    next_values = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    buf.compute(next_values, 0.99, 0.95)
    adv, ret = gae(buf.reward, buf.value, next_values, buf.terminated,
                   buf.terminated | buf.truncated, 0.99, 0.95)
    assert torch.equal(buf.advantages, adv) and torch.equal(buf.returns, ret)


@pytest.mark.parametrize("batch_size", [5, 24, 100])
@pytest.mark.parametrize("valid_every", [0, 2, 3])
def test_rollout_minibatches_cover_every_valid_row_once(valid_every: int, batch_size: int):
    buf = rollout(steps=6, envs=4)
    fill(buf, valid_every)
    buf.compute(torch.zeros(6, 4), 0.99, 0.95)
    seen: list[float] = []
    for batch in buf.minibatches(batch_size, torch.Generator().manual_seed(0)):
        assert batch.obs.shape[1:] == (3,) and len(batch.obs) <= batch_size
        assert torch.equal(batch.obs[:, 0], -batch.log_prob)  # fields stay aligned
        seen.extend(batch.obs[:, 0].tolist())
    expected = buf.obs[..., 0][buf.valid].tolist()
    assert sorted(seen) == sorted(expected)
    assert len(seen) == len(set(seen))
    if valid_every:
        assert len(seen) < 24


def test_rollout_minibatches_are_shuffled_deterministically():
    buf = rollout(steps=6, envs=4)
    fill(buf)
    buf.compute(torch.zeros(6, 4), 0.99, 0.95)

    def order(seed: int) -> list[float]:
        gen = torch.Generator().manual_seed(seed)
        return [v for b in buf.minibatches(8, gen) for v in b.obs[:, 0].tolist()]

    assert order(3) == order(3)
    assert order(3) != order(4)
    assert order(3) != sorted(order(3))


def test_one_minibatch_of_the_whole_rollout_is_the_storage_itself():
    buf = rollout(steps=6, envs=4)
    fill(buf)
    buf.compute(torch.zeros(6, 4), 0.99, 0.95)
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    (batch,) = buf.minibatches(24, gen)
    assert torch.equal(batch.obs, buf.obs.flatten(0, 1))
    assert batch.obs.data_ptr() == buf.obs.data_ptr()  # a view, not a copy
    assert torch.equal(gen.get_state(), state)  # no shuffle drawn


def test_rollout_state_dict_round_trip():
    buf = rollout(steps=5, envs=2)
    for step in range(3):
        t = transition(step, 2)
        buf.add(obs=t.obs, action=t.action, reward=t.reward, next_obs=t.next_obs,
                terminated=t.terminated, truncated=t.truncated, value=t.reward,
                log_prob=t.reward, valid=torch.tensor([True, step != 1]))
    fresh = rollout(steps=5, envs=2)
    fresh.load_state_dict(roundtrip(buf.state_dict()))
    assert fresh.step == 3
    for name in RolloutBuffer.STORED:
        assert torch.equal(getattr(fresh, name)[:3], getattr(buf, name)[:3])
