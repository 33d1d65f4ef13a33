"""rlkit's torch-native envs against gymnasium's vector envs: reset masks, reset options, seeds.

Each test runs the same calls on a gymnasium vector env and on ours and compares what can be
compared across two random number generators: which envs restarted, when episodes are truncated,
which initial-state bounds are in force, which exception a bad argument raises.
"""

from __future__ import annotations

import re
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import rlkit_envs  # noqa: F401 -- registers the ids
import torch
from gymnasium.vector import AutoresetMode
from rlkit_envs.cartpole import CartPole
from rlkit_envs.core import torch_seed
from rlkit_envs.pendulum import Pendulum

N = 4
MASK = np.array([True, False, True, False])


def gym_sync(name: str, n: int = N, **kwargs: Any) -> gym.vector.VectorEnv:
    """gymnasium's SyncVectorEnv over ``name`` with same-step auto-reset, as rlkit's envs."""
    return gym.make_vec(name, n, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}, **kwargs)


def as_numpy(x: Any) -> np.ndarray:
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def raised(call: Any) -> BaseException:
    with pytest.raises(Exception) as info:
        call()
    return info.value


# --- reset_mask -----------------------------------------------------------------------------


@pytest.mark.parametrize("as_tensor", [False, True], ids=["numpy-mask", "tensor-mask"])
@pytest.mark.parametrize("host_checks", [True, False], ids=["cpu-path", "accelerator-path"])
def test_reset_mask_restarts_only_the_masked_envs_like_sync_vector_env(as_tensor, host_checks):
    """Pendulum never terminates, so truncations come from the time limit alone and must fall on
    the same steps in both; the rows a masked reset leaves must be the observations before it."""
    ref = gym_sync("Pendulum-v1", max_episode_steps=6)
    ours = Pendulum(N, max_episode_steps=6)
    ours._host_checks = host_checks
    zero = np.zeros((N, 1), dtype=np.float32)
    ref_obs, ref_info = ref.reset(seed=0)
    obs, info = ours.reset(seed=0)
    assert set(info) == set(ref_info)
    for _ in range(3):
        ref_obs, *_ = ref.step(zero)
        obs, *_ = ours.step(zero)
    mask = torch.from_numpy(MASK) if as_tensor else MASK.copy()
    ref_after, ref_info = ref.reset(options={"reset_mask": MASK.copy()})
    after, info = ours.reset(options={"reset_mask": mask})
    assert set(info) == set(ref_info)
    kept_ref = (ref_after == ref_obs).all(axis=1)
    kept = (after == obs).all(dim=1).numpy()
    np.testing.assert_array_equal(kept, kept_ref)
    np.testing.assert_array_equal(kept, ~MASK)
    assert torch.equal(ours.observe(ours.state), after)
    for _ in range(10):
        _, _, ref_term, ref_trunc, ref_info = ref.step(zero)
        _, _, term, trunc, info = ours.step(zero)
        np.testing.assert_array_equal(trunc.numpy(), ref_trunc)
        np.testing.assert_array_equal(term.numpy(), ref_term)
        ended = ref_info.get("_final_obs", np.zeros(N, dtype=bool))  # absent where none ended
        np.testing.assert_array_equal(info["_final_obs"].numpy(), ended)


def test_reset_mask_through_gymnasium_s_sync_vector_env_of_rlkit_envs():
    """The single-env entry point behind SyncVectorEnv gets the same mask semantics for free."""
    env = gym_sync("rlkit/CartPole-v1")
    obs, _ = env.reset(seed=0)
    after, _ = env.reset(options={"reset_mask": MASK.copy()})
    np.testing.assert_array_equal((after == obs).all(axis=1), ~MASK)


def test_reset_mask_keeps_the_frames_of_the_envs_it_does_not_restart():
    k = 3
    env = CartPole(N, observe_velocities=False, frame_stack=k)
    env.reset(seed=0)
    push = torch.ones(N, dtype=torch.long)
    for _ in range(2):
        before, *_ = env.step(push)
    after, _ = env.reset(options={"reset_mask": MASK})
    assert torch.equal(after[~torch.from_numpy(MASK)], before[~torch.from_numpy(MASK)])
    for i in np.flatnonzero(MASK):
        frame = after[i, :2]
        assert torch.equal(after[i], frame.repeat(k))  # k copies of the new first frame
    assert env.elapsed.tolist() == [0, 2, 0, 2]


@pytest.mark.parametrize("mask", [
    [True, False, True, False],
    np.ones(N - 1, dtype=bool),
    np.ones(N, dtype=np.int64),
    np.zeros(N, dtype=bool),
    np.ones((N, 1), dtype=bool),
], ids=["list", "wrong-shape", "int-dtype", "no-true", "2-d"])
def test_a_bad_reset_mask_raises_what_sync_vector_env_raises(mask):
    ref = gym_sync("CartPole-v1")
    ref.reset(seed=0)
    ours = CartPole(N)
    ours.reset(seed=0)
    state = ours.state
    expected = raised(lambda: ref.reset(options={"reset_mask": mask}))
    error = raised(lambda: ours.reset(options={"reset_mask": mask}))
    assert type(error) is type(expected)
    assert "options['reset_mask']" in str(error) and "CartPole" in str(error)
    assert ours.state is state  # nothing was reset


def test_a_tensor_mask_is_checked_like_a_numpy_one():
    env = CartPole(N)
    with pytest.raises(TypeError, match="dtype bool"):
        env.reset(options={"reset_mask": torch.ones(N, dtype=torch.int64)})
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        env.reset(options={"reset_mask": torch.ones(N + 1, dtype=torch.bool)})


def test_reset_leaves_the_caller_s_options_as_they_are():
    env = CartPole(N)
    options = {"reset_mask": MASK, "low": -0.01, "high": 0.01}
    env.reset(options=options)
    assert set(options) == {"reset_mask", "low", "high"}


# --- how long reset options last --------------------------------------------------------------

INSIDE = (0.3, 0.4)  # CartPole states here end the episode on the first step (|theta| > 0.21)
DEFAULT = (-0.05, 0.05)


def starts_within(obs: Any, bounds: tuple[float, float]) -> bool:
    obs = as_numpy(obs)
    return bool(((obs >= bounds[0] - 1e-6) & (obs <= bounds[1] + 1e-6)).all())


def first_observations(env: Any, seed: int | None, options: dict[str, Any] | None) -> list[Any]:
    """The observations that start episodes: after ``reset``, and, where every episode ends
    on the first step, after their auto-reset (the step after it for next-step auto-reset)."""
    obs, _ = env.reset(seed=seed, options=options)
    push = np.ones(env.num_envs, dtype=np.int64)
    restarted, _, terminated, _, _ = env.step(push)
    if not as_numpy(terminated).all():
        return [obs]
    if env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP:
        restarted, *_ = env.step(push)
    return [obs, restarted]


@pytest.mark.parametrize(("reference", "ours"), [
    (("CartPole-v1", "vector_entry_point"), ("rlkit/CartPole-v1", "vector_entry_point")),
    (("CartPole-v1", "sync"), ("rlkit/CartPole-v1", "sync")),
], ids=["batched", "sync"])
def test_reset_options_last_as_long_as_in_gymnasium(reference, ours):
    """gymnasium's batched CartPoleVectorEnv draws its auto-resets from the bounds of the last
    reset; its SyncVectorEnv auto-resets its envs without options. Both forget the bounds at the
    next reset without options. Ours must do the same, path by path."""

    def make(name_mode: tuple[str, str]) -> Any:
        name, mode = name_mode
        if mode == "sync":
            return gym_sync(name, n=16)
        return gym.make_vec(name, 16, vectorization_mode=mode)

    ref_env, our_env = make(reference), make(ours)
    for seed, options in [(0, {"low": INSIDE[0], "high": INSIDE[1]}), (1, None), (2, {}),
                          (3, {"low": INSIDE[0], "high": INSIDE[1]}), (None, None)]:
        ref_starts = first_observations(ref_env, seed, options)
        our_starts = first_observations(our_env, seed, options)
        assert len(our_starts) == len(ref_starts), f"seed={seed} options={options}"
        for ref_obs, our_obs in zip(ref_starts, our_starts):
            for bounds in (INSIDE, DEFAULT):
                assert starts_within(our_obs, bounds) == starts_within(ref_obs, bounds), (
                    f"seed={seed} options={options}: within {bounds}")


def test_pendulum_reset_options_last_one_reset_like_gymnasium_s():
    ref, ours = gym_sync("Pendulum-v1", n=64), Pendulum(64)
    narrow = {"x_init": 0.1, "y_init": 0.1}
    for options in (narrow, None, narrow, {}):
        ref_obs, _ = ref.reset(seed=0, options=options)
        obs, _ = ours.reset(seed=0, options=options)
        # (cos th, sin th, thdot): the narrow bounds keep |thdot| <= 0.1, the defaults do not
        assert (np.abs(ref_obs[:, 2]) <= 0.1).all() == bool((obs[:, 2].abs() <= 0.1).all())


def test_reset_options_survive_a_snapshot_until_the_next_reset():
    env = CartPole(8)
    env.reset(seed=0, options={"low": INSIDE[0], "high": INSIDE[1]})
    other = CartPole(8)
    other.load_state_dict(env.state_dict())
    restarted, _, terminated, *_ = other.step(np.ones(8, dtype=np.int64))
    assert terminated.all() and starts_within(restarted, INSIDE)
    assert starts_within(other.reset(seed=1)[0], DEFAULT)


# --- seeds ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [2**64 - 1, 2**64, 2**64 + 1, 10**30])
def test_any_non_negative_seed_works_as_in_gymnasium(seed):
    gym_sync("CartPole-v1").reset(seed=seed)  # gymnasium accepts it ...
    env = CartPole(N)
    first, _ = env.reset(seed=seed)  # ... and so do we, deterministically
    assert torch.equal(CartPole(N).reset(seed=seed)[0], first)
    assert not torch.equal(CartPole(N).reset(seed=seed + 2)[0], first)
    gym.make("rlkit/CartPole-v1").reset(seed=seed)
    gym_sync("rlkit/CartPole-v1").reset(seed=seed)  # seeds seed, seed + 1, ... per env


def test_seeds_of_64_bits_seed_the_generator_unchanged():
    """Seeds in the generator's range keep the streams they always had."""
    for seed in (0, 5, 2**63 + 7):
        obs, _ = CartPole(N).reset(seed=seed)
        g = torch.Generator().manual_seed(seed)
        assert torch.equal(obs, torch.empty(N, 4).uniform_(-0.05, 0.05, generator=g))
    assert torch_seed(2**64) != torch_seed(2**64 + 1)
    assert 0 <= torch_seed(10**30) < 2**64


@pytest.mark.parametrize("seed", [-1, -(2**70), 1.5, np.int64(3)])
def test_a_seed_gymnasium_refuses_is_refused_with_its_error(seed):
    expected = raised(lambda: gym.make("CartPole-v1").reset(seed=seed))
    error = raised(lambda: CartPole(N).reset(seed=seed))
    assert type(error) is type(expected)
    assert re.sub(r"\d+", "#", str(error)) == re.sub(r"\d+", "#", str(expected))
