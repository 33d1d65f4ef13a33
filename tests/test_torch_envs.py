"""rlkit's torch-native environments: the same dynamics as gymnasium's, batched semantics.

Equivalence with gymnasium is shown three ways, each with the same random actions on both sides:

1. the pure step functions, run in float64 from the same states, reproduce gymnasium's next
   state, reward and termination to 1e-9 (1e-6 for MountainCarContinuous and Pendulum, which
   gymnasium itself computes partly in float32: the first stores its state as float32, the
   second multiplies the float32 action in float32);
2. the float32 environments, set each step to gymnasium's state, give the same observations
   (``final_obs``), rewards and terminations: ``FLOAT32_ATOL`` below is float32 rounding;
   Acrobot's velocities get 2e-3 because its Runge-Kutta stages reach accelerations of
   hundreds of rad/s^2 near the velocity bounds, whose float32 rounding the step carries;
3. run freely side by side from gymnasium's initial distribution, trajectories agree to 1e-4
   for 50 steps (25 for Pendulum: near the upright position its dynamics amplify any
   difference by about 1.2 per step, so float32 rounding reaches 1e-4 after ~40 steps).
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import rlkit_envs
import torch
from rlkit_envs.acrobot import Acrobot, AcrobotParams, acrobot_step
from rlkit_envs.breakout import Breakout, BreakoutState
from rlkit_envs.cartpole import CartPole, CartPoleParams, cartpole_step
from rlkit_envs.mountain_car import (
    MountainCar,
    MountainCarContinuous,
    MountainCarParams,
    mountain_car_continuous_step,
    mountain_car_step,
)
from rlkit_envs.pendulum import Pendulum, PendulumParams, pendulum_step

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

CLASSIC = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0",
           "Pendulum-v1"]
ENV_CLASS = {"CartPole-v1": CartPole, "Acrobot-v1": Acrobot, "MountainCar-v0": MountainCar,
             "MountainCarContinuous-v0": MountainCarContinuous, "Pendulum-v1": Pendulum}
STEP_FN = {
    "CartPole-v1": (cartpole_step, CartPoleParams()),
    "Acrobot-v1": (acrobot_step, AcrobotParams()),
    "MountainCar-v0": (mountain_car_step, MountainCarParams()),
    "MountainCarContinuous-v0": (mountain_car_continuous_step,
                                 MountainCarParams(goal_position=0.45)),
    "Pendulum-v1": (pendulum_step, PendulumParams()),
}
FLOAT64_ATOL = {"CartPole-v1": 1e-9, "Acrobot-v1": 1e-9, "MountainCar-v0": 1e-9,
                "MountainCarContinuous-v0": 1e-6, "Pendulum-v1": 1e-6}
FLOAT32_ATOL: dict[str, Any] = {
    "CartPole-v1": 1e-5,
    "Acrobot-v1": np.array([1e-4, 1e-4, 1e-4, 1e-4, 2e-3, 2e-3]),
    "MountainCar-v0": 1e-5,
    "MountainCarContinuous-v0": 1e-5,
    "Pendulum-v1": 1e-4,
}
K = 32  # envs compared side by side
PI = math.pi


def wide_states(name: str, rng: np.random.Generator, k: int) -> np.ndarray:
    """States across the whole state space: walls, goals, bounds and clipping all happen."""
    low, high = {
        "CartPole-v1": ([-2.3, -2, -0.2, -2], [2.3, 2, 0.2, 2]),
        "Acrobot-v1": ([-PI, -PI, -4 * PI, -9 * PI], [PI, PI, 4 * PI, 9 * PI]),
        "MountainCar-v0": ([-1.2, -0.07], [0.6, 0.07]),
        "MountainCarContinuous-v0": ([-1.2, -0.07], [0.6, 0.07]),
        "Pendulum-v1": ([-3 * PI, -8], [3 * PI, 8]),  # angles beyond one turn, too
    }[name]
    return rng.uniform(low, high, size=(k, len(low)))


def reset_states(name: str, rng: np.random.Generator, k: int) -> np.ndarray:
    """gymnasium's initial-state distributions."""
    if name == "CartPole-v1":
        return rng.uniform(-0.05, 0.05, (k, 4))
    if name == "Acrobot-v1":
        return rng.uniform(-0.1, 0.1, (k, 4))
    if name.startswith("MountainCar"):
        return np.stack([rng.uniform(-0.6, -0.4, k), np.zeros(k)], axis=1)
    return rng.uniform([-PI, -1], [PI, 1], (k, 2))


def random_actions(name: str, rng: np.random.Generator, k: int) -> np.ndarray:
    """Valid discrete actions; continuous ones beyond the bounds, to exercise clipping."""
    if name == "CartPole-v1":
        return rng.integers(0, 2, k)
    if name in ("Acrobot-v1", "MountainCar-v0"):
        return rng.integers(0, 3, k)
    bound = 1.5 if name == "MountainCarContinuous-v0" else 3.0
    return rng.uniform(-bound, bound, (k, 1)).astype(np.float32)


def gym_envs(name: str, k: int) -> list[Any]:
    envs = [gym.make(name).unwrapped for _ in range(k)]
    for env in envs:
        env.reset(seed=0)
    return envs


def set_gym_state(env: Any, state: np.ndarray) -> None:
    env.state = np.array(state, dtype=np.float64)
    if hasattr(env, "steps_beyond_terminated"):
        env.steps_beyond_terminated = None


def gym_step(envs: list[Any], actions: np.ndarray) -> tuple[np.ndarray, ...]:
    results = [env.step(a if actions.ndim == 2 else int(a)) for env, a in zip(envs, actions)]
    obs = np.stack([r[0] for r in results])
    reward = np.array([r[1] for r in results], dtype=np.float64)
    terminated = np.array([r[2] for r in results])
    state = np.stack([np.asarray(env.state, dtype=np.float64) for env in envs])
    return obs, reward, terminated, state


def assert_within(actual: np.ndarray, expected: np.ndarray, atol: Any) -> None:
    """``|actual - expected| <= atol`` elementwise (``atol`` may be per column)."""
    error = np.abs(actual - expected)
    assert (error <= atol).all(), f"max error per column {error.max(axis=0)} > {atol}"


def env_layout(name: str, states: Any) -> torch.Tensor:
    """``(N, S)`` per-env states in the layout of the env's state (``(N, S)`` or ``(S, N)``)."""
    states = torch.as_tensor(states)
    return states if ENV_CLASS[name].state_batch_dim == 0 else states.T.contiguous()


def per_env(name: str, state: torch.Tensor) -> np.ndarray:
    """An env's state as ``(N, S)``."""
    return (state if ENV_CLASS[name].state_batch_dim == 0 else state.T).numpy()


def as_float32(states: np.ndarray) -> np.ndarray:
    """Round to float32 (and back), so both sides start from the very same numbers."""
    return states.astype(np.float32).astype(np.float64)


# --- 1. the pure step functions are gymnasium's equations ---------------------------------


@pytest.mark.parametrize("name", CLASSIC)
def test_step_function_in_float64_reproduces_gymnasium(name):
    step_fn, params = STEP_FN[name]
    rng = np.random.default_rng(0)
    refs = gym_envs(name, K)
    terminations = 0
    for _ in range(30):
        states = wide_states(name, rng, K)
        for env, s in zip(refs, states):
            set_gym_state(env, s)
        actions = random_actions(name, rng, K)
        _, ref_reward, ref_term, ref_state = gym_step(refs, actions)
        action = torch.as_tensor(actions)
        if action.is_floating_point():
            action = action.double()
        before = env_layout(name, states)
        state = before.clone()
        new_state, obs, reward, terminated = step_fn(state, action, params)
        assert torch.equal(state, before), "the step function must not write to its input"
        ours = per_env(name, new_state)
        if name == "Pendulum-v1":  # rlkit keeps the angle in [-pi, pi); gymnasium lets it grow
            ours = ours.copy()
            ours[:, 0] = np.angle(np.exp(1j * (ours[:, 0] - ref_state[:, 0]))) + ref_state[:, 0]
        np.testing.assert_allclose(ours, ref_state, rtol=0, atol=FLOAT64_ATOL[name])
        np.testing.assert_allclose(reward.numpy(), ref_reward, rtol=0, atol=FLOAT64_ATOL[name])
        np.testing.assert_array_equal(terminated.numpy(), ref_term)
        assert obs.shape == (K, *refs[0].observation_space.shape)
        terminations += int(ref_term.sum())
    if name not in ("Pendulum-v1",):
        assert terminations > 0, "the states drawn should reach termination sometimes"


def test_cartpole_parameters_and_variants_match_gymnasium_s_attributes():
    """Changed physics, the semi-implicit integrator and Sutton & Barto's reward."""
    rng = np.random.default_rng(4)
    ref = gym.make("CartPole-v1", sutton_barto_reward=True).unwrapped
    ref.reset(seed=0)
    ref.gravity, ref.masspole, ref.length, ref.force_mag = 9.81, 0.3, 0.8, 12.0
    ref.total_mass = ref.masspole + ref.masscart
    ref.polemass_length = ref.masspole * ref.length
    ref.kinematics_integrator = "semi-implicit euler"
    env = CartPole(1, gravity=9.81, masspole=0.3, length=0.8, force_mag=12.0,
                   kinematics_integrator="semi-implicit euler", sutton_barto_reward=True)
    for _ in range(200):
        state = wide_states("CartPole-v1", rng, 1)
        set_gym_state(ref, state[0])
        action = int(rng.integers(0, 2))
        _, ref_reward, ref_term, _, _ = ref.step(action)
        new_state, _, reward, terminated = cartpole_step(torch.as_tensor(state),
                                                         torch.tensor([action]), env.params)
        np.testing.assert_allclose(new_state.numpy()[0], ref.state, rtol=0, atol=1e-9)
        assert (reward.item(), terminated.item()) == (ref_reward, ref_term)


# --- 2. the float32 environments, state set from gymnasium every step -----------------------


@pytest.mark.parametrize("name", CLASSIC)
def test_env_steps_like_gymnasium_from_the_same_states(name):
    rng = np.random.default_rng(1)
    refs = gym_envs(name, K)
    env = ENV_CLASS[name](K, max_episode_steps=None)
    env.reset(seed=0)
    states = as_float32(wide_states(name, rng, K))
    for _ in range(40):
        for ref, s in zip(refs, states):
            set_gym_state(ref, s)
        env.state = env_layout(name, states).float()
        actions = random_actions(name, rng, K)
        ref_obs, ref_reward, ref_term, ref_state = gym_step(refs, actions)
        _, reward, terminated, truncated, info = env.step(torch.as_tensor(actions))
        # Where an episode ended, the returned observation starts the next one; final_obs
        # holds the one it ended on, and equals the observation everywhere else.
        assert_within(info["final_obs"].numpy(), ref_obs, FLOAT32_ATOL[name])
        np.testing.assert_allclose(reward.numpy(), ref_reward, rtol=1e-6, atol=1e-5)
        np.testing.assert_array_equal(terminated.numpy(), ref_term)
        np.testing.assert_array_equal(info["_final_obs"].numpy(), ref_term)
        assert not truncated.any()
        fresh = wide_states(name, rng, K)
        states = as_float32(np.where(ref_term[:, None], fresh, ref_state))


# --- 3. free-running trajectories ------------------------------------------------------------


@pytest.mark.parametrize("name", CLASSIC)
def test_trajectories_from_gymnasium_initial_states_stay_together(name):
    steps = 25 if name == "Pendulum-v1" else 50
    rng = np.random.default_rng(2)
    refs = gym_envs(name, K)
    env = ENV_CLASS[name](K, max_episode_steps=None)
    env.reset(seed=0)
    states = as_float32(reset_states(name, rng, K))
    for ref, s in zip(refs, states):
        set_gym_state(ref, s)
    env.state = env_layout(name, states).float()
    running = np.ones(K, dtype=bool)  # until gymnasium's episode ends
    for _ in range(steps):
        actions = random_actions(name, rng, K)
        ref_obs, ref_reward, ref_term, _ = gym_step(refs, actions)
        _, reward, terminated, _, info = env.step(torch.as_tensor(actions))
        np.testing.assert_allclose(info["final_obs"].numpy()[running], ref_obs[running],
                                   rtol=0, atol=1e-4)
        np.testing.assert_allclose(reward.numpy()[running], ref_reward[running], rtol=0,
                                   atol=1e-4)
        np.testing.assert_array_equal(terminated.numpy()[running], ref_term[running])
        running &= ~ref_term
        for ref, ended in zip(refs, ref_term):
            if ended:
                ref.reset()  # no longer compared


# --- spaces, registration, gymnasium's API ---------------------------------------------------


@pytest.mark.parametrize("name", CLASSIC)
def test_spaces_and_time_limits_are_gymnasium_s(name):
    ours = gym.make_vec(f"rlkit/{name}", num_envs=3, vectorization_mode="vector_entry_point")
    ref = gym.make(name)
    assert ours.single_observation_space == ref.observation_space
    assert ours.single_action_space == ref.action_space
    assert ours.max_episode_steps == gym.spec(name).max_episode_steps
    assert gym.spec(f"rlkit/{name}").max_episode_steps == gym.spec(name).max_episode_steps


def test_make_vec_builds_every_id_on_the_requested_device():
    for info in rlkit_envs.ENVS:
        env = gym.make_vec(info.id, num_envs=4, vectorization_mode="vector_entry_point",
                           device="cpu")
        obs, _ = env.reset(seed=0)
        assert isinstance(obs, torch.Tensor) and obs.device.type == "cpu"
        assert obs.shape == (4, *env.single_observation_space.shape)
        assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())  # numpy
        assert env.observation_space.contains(obs.numpy())
        assert reward.dtype == torch.float32 and reward.shape == (4,)
        assert terminated.dtype == truncated.dtype == torch.bool


def test_single_env_entry_points_pass_gymnasium_checks():
    from gymnasium.utils.env_checker import check_env

    for info in rlkit_envs.ENVS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gymnasium's advice on unbounded/unnormalised boxes
            check_env(gym.make(info.id).unwrapped, skip_render_check=True)


def test_the_plugin_registers_the_ids(plugins):
    ids = {info.id for info in rlkit_envs.ENVS}
    assert ids <= set(plugins.envs)
    entry, provider = plugins.envs["rlkit/CartPole-v1"]
    assert entry.description and provider.plugin == "envs"


def test_constructor_parameters_change_the_physics():
    heavy = CartPole(1, gravity=20.0, length=1.0, masspole=0.5)
    normal = CartPole(1)
    state = torch.tensor([[0.0, 0.0, 0.1, 0.0]])
    heavy.state = normal.state = state
    push = torch.ones(1, dtype=torch.long)
    assert not torch.equal(heavy.step(push)[0], normal.step(push)[0])
    env = gym.make_vec("rlkit/Pendulum-v1", num_envs=2, vectorization_mode="vector_entry_point",
                       g=9.81, max_episode_steps=7)
    assert env.params.g == 9.81 and env.max_episode_steps == 7


# --- auto-reset and truncation -----------------------------------------------------------------


def test_termination_resets_in_the_same_step_and_keeps_the_final_observation():
    env = CartPole(3)
    env.reset(seed=0)
    push = torch.ones(3, dtype=torch.long)
    for _ in range(4):
        env.step(push)
    assert env.elapsed.tolist() == [4, 4, 4]
    # (x, x_dot, theta, theta_dot) per env; env 0 is about to leave the track.
    env.state = torch.tensor([[2.399, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0],
                              [0.0, 0.0, 0.0, 0.0]])
    obs, reward, terminated, truncated, info = env.step(push)
    assert terminated.tolist() == [True, False, False] and not truncated.any()
    assert reward.tolist() == [1.0, 1.0, 1.0]  # gymnasium rewards the terminating step too
    final = info["final_obs"]
    assert info["_final_obs"].tolist() == [True, False, False]
    assert final[0, 0] > 2.4  # where the episode ended
    assert obs[0].abs().max() <= 0.05  # a fresh episode from gymnasium's initial distribution
    assert torch.equal(final[1:], obs[1:])  # unfinished envs: final_obs is the observation
    assert env.elapsed.tolist() == [0, 5, 5]


def test_truncation_at_the_time_limit_gives_the_last_observation_for_bootstrapping():
    env = gym.make_vec("rlkit/Pendulum-v1", num_envs=3, vectorization_mode="vector_entry_point")
    env.reset(seed=0)
    zero = torch.zeros(3, 1)
    for t in range(1, 201):
        obs, _, terminated, truncated, info = env.step(zero)
        assert not terminated.any()
        if t < 200:
            assert not truncated.any() and torch.equal(info["final_obs"], obs)
    assert truncated.all() and info["_final_obs"].all()
    assert not torch.equal(info["final_obs"], obs)
    assert env.elapsed.tolist() == [0, 0, 0]
    _, _, _, truncated, _ = env.step(zero)
    assert not truncated.any() and env.elapsed.tolist() == [1, 1, 1]


@pytest.mark.parametrize("cls", [CartPole, Acrobot, MountainCarContinuous, Breakout])
@pytest.mark.parametrize("host_checks", [True, False], ids=["cpu-path", "accelerator-path"])
def test_auto_reset_invariants_hold_on_both_reset_paths(cls, host_checks):
    env = cls(16, max_episode_steps=25)
    env._host_checks = host_checks  # False: select over the batch, as on an accelerator
    obs, _ = env.reset(seed=0)
    g = torch.Generator().manual_seed(0)
    finished = 0
    for _ in range(60):
        if isinstance(env.single_action_space, gym.spaces.Discrete):
            action = torch.randint(0, int(env.single_action_space.n), (16,), generator=g)
        else:
            action = torch.rand((16, 1), generator=g) * 2 - 1
        previous = obs.clone()
        obs, _, terminated, truncated, info = env.step(action)
        done = terminated | truncated
        assert torch.equal(info["_final_obs"], done)
        assert torch.equal(info["final_obs"][~done], obs[~done])
        assert torch.equal(env.observe(env.state), obs)
        assert (env.elapsed[done] == 0).all() and (env.elapsed[~done] > 0).all()
        assert not torch.equal(previous, obs)
        finished += int(done.sum())
    assert finished >= 16  # every env was truncated at least once


def test_steps_are_counted_per_env():
    env = CartPole(2, max_episode_steps=10)
    env.reset(seed=0)
    env.elapsed = torch.tensor([8, 0], dtype=torch.int32)
    _, _, _, truncated, _ = env.step(np.array([0, 1]))
    assert truncated.tolist() == [False, False]
    _, _, _, truncated, _ = env.step(np.array([0, 1]))
    assert truncated.tolist() == [True, False] and env.elapsed.tolist() == [0, 2]


def test_reset_options_set_the_initial_state_bounds_like_gymnasium():
    env = CartPole(256)
    obs, _ = env.reset(seed=0, options={"low": -0.2, "high": -0.1})
    assert obs.min() >= -0.2 and obs.max() < -0.1
    pendulum = Pendulum(256)
    obs, _ = pendulum.reset(seed=0, options={"x_init": 0.5, "y_init": 0.25})
    assert obs[:, 0].min() >= math.cos(0.5) - 1e-6 and obs[:, 2].abs().max() <= 0.25


@pytest.mark.parametrize("cls, low, high", [
    (CartPole, [-0.05] * 4, [0.05] * 4),
    (Acrobot, [-0.1] * 4, [0.1] * 4),
    (MountainCar, [-0.6, 0.0], [-0.4, 0.0]),
    (Pendulum, [-PI, -1.0], [PI, 1.0]),
])
def test_initial_states_follow_gymnasium_s_distribution(cls, low, high):
    env = cls(4096)
    env.reset(seed=0)
    state = env.state if cls.state_batch_dim == 0 else env.state.T
    assert (state >= torch.tensor(low)).all() and (state <= torch.tensor(high)).all()
    spread = state.max(0).values - state.min(0).values
    width = torch.tensor(high) - torch.tensor(low)
    assert torch.allclose(spread, width, atol=0.01 * float(width.max()))  # fills the range


# --- seeding and snapshots ---------------------------------------------------------------------


def rollout(env: Any, seed: int, steps: int = 120) -> torch.Tensor:
    obs, _ = env.reset(seed=seed)
    g = torch.Generator().manual_seed(123)
    trajectory = [obs]
    for _ in range(steps):
        if isinstance(env.single_action_space, gym.spaces.Discrete):
            action = torch.randint(0, int(env.single_action_space.n), (env.num_envs,),
                                   generator=g)
        else:
            action = torch.rand((env.num_envs, 1), generator=g) * 2 - 1
        obs, *_ = env.step(action)
        trajectory.append(obs)
    return torch.stack(trajectory)


@pytest.mark.parametrize("cls", [CartPole, Acrobot, MountainCar, MountainCarContinuous,
                                 Pendulum, Breakout])
def test_same_seed_same_trajectory_different_seed_different(cls):
    a, b, c = rollout(cls(8), seed=5), rollout(cls(8), seed=5), rollout(cls(8), seed=6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_reset_without_a_seed_continues_the_generator():
    env = CartPole(4)
    first, _ = env.reset(seed=0)
    second, _ = env.reset()
    assert not torch.equal(first, second)
    env.reset(seed=0)
    assert torch.equal(env.reset()[0], second)


@pytest.mark.parametrize(("cls", "frame_stack"), [(CartPole, 1), (Breakout, 1), (CartPole, 3)])
def test_state_dict_round_trip_continues_exactly(cls, frame_stack, tmp_path):
    env = cls(16, max_episode_steps=30, frame_stack=frame_stack)
    rollout(env, seed=3, steps=45)
    path = tmp_path / "env.pt"
    torch.save(env.state_dict(), path)
    expected = [env.step(np.ones(16, dtype=np.int64))[0] for _ in range(40)]
    other = cls(16, max_episode_steps=30, frame_stack=frame_stack)
    other.load_state_dict(torch.load(path, weights_only=True))
    got = [other.step(np.ones(16, dtype=np.int64))[0] for _ in range(40)]
    assert all(torch.equal(x, y) for x, y in zip(expected, got))


# --- frame stacking ----------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "kwargs"), [(CartPole, {"observe_velocities": False}),
                                             (Breakout, {})])
def test_frame_stack_holds_the_last_frames_of_the_current_episode(cls, kwargs):
    """A stacked env against the same env unstacked (same seed, same actions): each stack is the
    last k frames, a new episode starts from k copies of its first frame, and final_obs is the
    stack ending on the final frame."""
    k, n = 3, 6
    plain, stacked = cls(n, max_episode_steps=25, **kwargs), cls(n, max_episode_steps=25,
                                                                 frame_stack=k, **kwargs)
    base = plain.single_observation_space.shape
    assert stacked.single_observation_space.shape == (k * base[0], *base[1:])
    frame, _ = plain.reset(seed=4)
    obs, _ = stacked.reset(seed=4)
    history = [[frame[i]] * k for i in range(n)]
    g = torch.Generator().manual_seed(0)
    ended = 0
    for _ in range(60):
        action = torch.randint(0, int(plain.single_action_space.n), (n,), generator=g)
        frame, _, term, trunc, info = plain.step(action)
        obs, _, s_term, s_trunc, s_info = stacked.step(action)
        assert torch.equal(term, s_term) and torch.equal(trunc, s_trunc)
        for i in range(n):
            last = history[i][1:] + [info["final_obs"][i]]
            assert torch.equal(s_info["final_obs"][i], torch.cat(last))
            history[i] = [frame[i]] * k if bool(info["_final_obs"][i]) else last
            assert torch.equal(obs[i], torch.cat(history[i]))
        ended += int(info["_final_obs"].sum())
    assert ended > 0


def test_frame_stack_through_gymnasium_and_bad_values():
    env = gym.make_vec("rlkit/CartPoleNoVel-v1", num_envs=2,
                       vectorization_mode="vector_entry_point", frame_stack=4)
    assert env.single_observation_space.shape == (8,) and env.reset(seed=0)[0].shape == (2, 8)
    with pytest.raises(ValueError, match="frame_stack must be at least 1"):
        CartPole(2, frame_stack=0)


# --- the partially observable and the image env ------------------------------------------------


def test_cartpole_without_velocities_observes_position_and_angle_only():
    full = gym.make_vec("rlkit/CartPole-v1", num_envs=8, vectorization_mode="vector_entry_point")
    partial = gym.make_vec("rlkit/CartPoleNoVel-v1", num_envs=8,
                           vectorization_mode="vector_entry_point")
    assert partial.single_observation_space.shape == (2,)
    a, b = rollout(full, seed=1), rollout(partial, seed=1)
    assert torch.equal(a[..., [0, 2]], b)


def breakout_state(**fields: Any) -> BreakoutState:
    """One game: paddle at 4, ball at (x=5, y=5) moving up-right, full wall."""
    env = Breakout(1)
    env.reset(seed=0)
    values = {"paddle": 4, "ball_x": 5, "ball_y": 5, "dx": 1, "dy": -1, "trail_x": 4,
              "trail_y": 6}
    values.update({k: v for k, v in fields.items() if k != "bricks"})
    state = {k: torch.tensor([v]) for k, v in values.items()}
    state["bricks"] = fields.get("bricks", env.state.bricks)
    return BreakoutState(**state)


def test_breakout_observation_channels():
    env = Breakout(5)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (5, 4, 10, 10) and obs.dtype == torch.float32
    assert env.single_observation_space.contains(obs[0].numpy())
    assert (obs[:, 0, 9].sum(-1) == 1).all() and (obs[:, 0, :9] == 0).all()  # paddle, row 9
    assert (obs[:, 1].sum((-1, -2)) == 1).all() and (obs[:, 1, 3].sum(-1) == 1).all()  # ball
    assert (obs[:, 3, 1:4] == 1).all() and obs[:, 3].sum() == 5 * 30  # bricks, rows 1-3


def test_breakout_rules():
    env = Breakout(1)
    env.reset(seed=0)
    stay, left, right = (torch.tensor([a]) for a in (0, 1, 2))
    # The ball at row 5 moving up-right reaches row 4, then breaks the brick at (row 3, col 7).
    env.state = breakout_state()
    _, reward, *_ = env.step(stay)
    assert reward.item() == 0 and env.state.ball_y.item() == 4
    obs, reward, terminated, _, _ = env.step(stay)
    assert reward.item() == 1 and not terminated.item()
    assert obs[0, 3, 3, 7] == 0 and obs[0, 3].sum() == 29
    assert env.state.ball_y.item() == 4 and env.state.dy.item() == 1  # bounced back down
    # The paddle moves one column per step and stays on the grid.
    env.state = breakout_state(paddle=0)
    env.step(left)
    assert env.state.paddle.item() == 0
    env.step(right)
    assert env.state.paddle.item() == 1
    # A ball reaching the bottom row where the paddle is not: lost, the episode terminates.
    env.state = breakout_state(ball_x=2, ball_y=8, dx=1, dy=1, paddle=7)
    _, reward, terminated, _, info = env.step(stay)
    assert terminated.item() and reward.item() == 0
    assert info["final_obs"][0, 1, 9, 3] == 1  # the ball ended in the bottom row
    # Paddle under the ball: it bounces straight up and the game goes on.
    env.state = breakout_state(ball_x=2, ball_y=8, dx=1, dy=1, paddle=2)
    _, _, terminated, _, _ = env.step(stay)
    assert not terminated.item() and env.state.dy.item() == -1 and env.state.ball_y.item() == 8
    # Paddle where the ball is heading: it bounces back the way it came.
    env.state = breakout_state(ball_x=2, ball_y=8, dx=1, dy=1, paddle=3)
    env.step(stay)
    assert (env.state.dx.item(), env.state.dy.item()) == (-1, -1)
    # A cleared wall is rebuilt when the ball reaches the bottom row.
    env.state = breakout_state(ball_x=2, ball_y=8, dx=1, dy=1, paddle=2,
                               bricks=torch.zeros(1, 100, dtype=torch.bool))
    obs, *_ = env.step(stay)
    assert obs[0, 3].sum() == 30


def test_breakout_side_wall_and_ceiling_reverse_the_ball():
    env = Breakout(1)
    env.reset(seed=0)
    env.state = breakout_state(ball_x=9, ball_y=5, dx=1, dy=1)
    env.step(torch.tensor([0]))
    assert (env.state.ball_x.item(), env.state.dx.item()) == (9, -1)
    env.state = breakout_state(ball_x=4, ball_y=0, dx=1, dy=-1,
                               bricks=torch.zeros(1, 100, dtype=torch.bool))
    env.step(torch.tensor([0]))
    assert (env.state.ball_y.item(), env.state.dy.item()) == (0, 1)


# --- rlkit's env boundary, compile, devices -----------------------------------------------------


@pytest.mark.parametrize("vectorization", ["vector_entry_point", "sync"])
def test_make_env_runs_a_loop_on_rlkit_cartpole(plugins, vectorization):
    from rlkit.environments import EnvOptions, make_env

    env = make_env(EnvOptions(id="rlkit/CartPole-v1", num_envs=4, vectorization=vectorization))
    obs = env.reset(seed=0)
    assert obs.shape == (4, 4) and obs.dtype == torch.float32
    g = torch.Generator().manual_seed(0)
    episodes = 0
    for _ in range(100):
        step = env.step(torch.randint(0, 2, (4,), generator=g))
        done = step.terminated | step.truncated
        assert torch.equal(step.next_obs[~done], step.obs[~done])
        if done.any():
            assert (step.next_obs[done].abs().amax(1) > 0.05).all()  # not a fresh start
        episodes += int(done.sum())
    assert episodes > 0
    env.load_state_dict(env.state_dict())


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch.compile's imports
def test_compiled_step_matches_eager():
    eager, compiled = CartPole(64), CartPole(64, compile=True, check_actions=True)
    assert torch.allclose(rollout(eager, seed=0, steps=60), rollout(compiled, seed=0, steps=60),
                          atol=1e-5)
    mask = torch.zeros(64, dtype=torch.bool)
    mask[::2] = True  # a masked reset, then steps, through the compiled step function
    obs, _ = compiled.reset(seed=1, options={"reset_mask": mask})
    assert torch.equal(obs, compiled.observe(compiled.state))
    with pytest.raises(ValueError, match="env 3: 2"):
        compiled.step(torch.tensor([0, 1, 0, 2] * 16))


@requires_cuda
@pytest.mark.parametrize("cls", [CartPole, Acrobot, MountainCar, MountainCarContinuous,
                                 Pendulum, Breakout])
def test_cuda_env_keeps_everything_on_the_device(cls):
    env = cls(64, device="cuda")
    obs, _ = env.reset(seed=0)
    assert obs.is_cuda and env.state_dict()["generator"].device.type == "cpu"
    a = torch.as_tensor(env.action_space.sample())
    for action in (a, a.cuda()):  # host or device actions
        obs, reward, terminated, truncated, info = env.step(action)
        assert all(t.is_cuda for t in (obs, reward, terminated, truncated, info["final_obs"],
                                       info["_final_obs"]))
    first, again = rollout(cls(64, device="cuda"), 1), rollout(cls(64, device="cuda"), 1)
    assert torch.equal(first, again)


@requires_cuda
@pytest.mark.parametrize("name", CLASSIC)
def test_cuda_dynamics_match_cpu(name):
    rng = np.random.default_rng(3)
    states = env_layout(name, wide_states(name, rng, 256)).float()
    actions = torch.as_tensor(random_actions(name, rng, 256))
    step_fn, params = STEP_FN[name]
    cpu = step_fn(states, actions, params)
    gpu = step_fn(states.cuda(), actions.cuda(), params)
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-5, atol=1e-4)


# --- checking actions against the action space (opt-in) ----------------------------------------

# (id, bad actions for 3 envs, the offending value as quoted) per kind of mistake
BAD_ACTIONS = [
    ("rlkit/CartPole-v1", np.array([0, 1, 2]), "env 2: 2"),  # gymnasium pushes left on any != 1
    ("rlkit/CartPoleNoVel-v1", np.array([-1, 0, 1]), "env 0: -1"),
    ("rlkit/Acrobot-v1", np.array([3, 0, 1]), "env 0: 3"),  # would be torque +2
    ("rlkit/MountainCar-v0", np.array([0, 1, 3]), "env 2: 3"),  # would push with double force
    ("rlkit/MountainCar-v0", np.array([0.5, 1.0, 2.0]), "env 0: 0.5"),
    ("rlkit/Breakout-v0", torch.tensor([0, 7, 1]), "env 1: 7"),
    ("rlkit/MountainCarContinuous-v0", np.array([[0.0], [1.5], [0.0]]), "env 1: [1.5]"),
    ("rlkit/Pendulum-v1", torch.tensor([[0.0], [0.0], [float("nan")]]), "env 2: [nan]"),
    ("rlkit/Pendulum-v1", np.array([[-2.5], [0.0], [0.0]]), "env 0: [-2.5]"),
]
BAD_SHAPES = [
    ("rlkit/Pendulum-v1", np.zeros((3, 2), dtype=np.float32), "(3, 2)"),  # column 0 was used
    ("rlkit/MountainCarContinuous-v0", np.zeros(3, dtype=np.float32), "(3,)"),
    ("rlkit/CartPole-v1", torch.zeros(3, 1, dtype=torch.long), "(3, 1)"),
]


def make_batched(env_id: str, **kwargs: Any) -> Any:
    env = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point", **kwargs)
    env.reset(seed=0)
    return env


@pytest.mark.parametrize(("env_id", "actions", "quoted"), BAD_ACTIONS + BAD_SHAPES,
                         ids=lambda x: x if isinstance(x, str) else "")
def test_out_of_space_actions_are_applied_unchecked_by_default(env_id, actions, quoted):
    env = make_batched(env_id)
    assert not env.check_actions
    env.step(actions)  # the fast path: no check, no error
    assert env._checker is None


@pytest.mark.parametrize(("env_id", "actions", "quoted"), BAD_ACTIONS,
                         ids=lambda x: x if isinstance(x, str) else "")
def test_check_actions_names_the_env_the_values_and_the_space(env_id, actions, quoted):
    env = make_batched(env_id, check_actions=True)
    state = env.state_dict()
    with pytest.raises(ValueError) as info:
        env.step(actions)
    message = str(info.value)
    assert env_id in message and quoted in message and str(env.single_action_space) in message
    assert "\n" not in message
    assert_same_state(env.state_dict(), state)  # nothing was applied


@pytest.mark.parametrize(("env_id", "actions", "shape"), BAD_SHAPES,
                         ids=lambda x: x if isinstance(x, str) else "")
def test_check_actions_refuses_a_wrong_shape(env_id, actions, shape):
    env = make_batched(env_id, check_actions=True)
    expected = str((3, *env.single_action_space.shape))
    with pytest.raises(ValueError, match=re.escape(f"shape {shape}")) as info:
        env.step(actions)
    assert expected in str(info.value) and env_id in str(info.value)


def test_check_actions_lets_every_action_of_the_space_through():
    for info in rlkit_envs.ENVS:
        env = make_batched(info.id, check_actions=True)
        space = env.single_action_space
        for _ in range(20):
            env.step(env.action_space.sample())  # numpy
            env.step(torch.as_tensor(env.action_space.sample()))
        if isinstance(space, gym.spaces.Box):  # the bounds themselves are inside
            env.step(np.stack([space.low, space.high, space.low]))
        else:
            env.step(torch.tensor([0, int(space.n) - 1, 0]))


def test_the_environment_variable_turns_the_check_on_for_every_env(monkeypatch):
    monkeypatch.setenv("RLKIT_CHECK_ACTIONS", "1")
    for info in rlkit_envs.ENVS:
        env = make_batched(info.id)
        assert env.check_actions, info.id
    with pytest.raises(ValueError, match="outside the action space"):
        make_batched("rlkit/Acrobot-v1").step(np.array([3, 0, 0]))
    with pytest.raises(ValueError, match="outside the action space"):
        gym.make("rlkit/Acrobot-v1").unwrapped.step(3)  # the single-env entry point too
    monkeypatch.setenv("RLKIT_CHECK_ACTIONS", "0")
    assert not make_batched("rlkit/Acrobot-v1").check_actions
    monkeypatch.setenv("RLKIT_CHECK_ACTIONS", "maybe")
    with pytest.raises(ValueError, match="RLKIT_CHECK_ACTIONS='maybe': expected 1"):
        CartPole(2)


def test_check_actions_from_the_yaml_env_kwargs(plugins):
    from rlkit.environments import EnvOptions, make_env

    for vectorization in ("vector_entry_point", "sync"):
        env = make_env(EnvOptions(id="rlkit/MountainCar-v0", num_envs=3,
                                  vectorization=vectorization, kwargs={"check_actions": True}))
        env.reset(seed=0)
        env.step(torch.tensor([0, 1, 2]))
        with pytest.raises(ValueError, match=r"rlkit/MountainCar-v0 \(MountainCar\): "
                                             r"actions outside .*(env 1: 3|action 3)"):
            env.step(torch.tensor([0, 3, 2]))


def test_conformance_experiments_check_the_actions_of_torch_native_envs(plugins, tmp_path):
    from rlkit.environments import make_env
    from rlkit.loop import env_options
    from rlkit.testing import experiment_for

    native = experiment_for("ppo", env_id="rlkit/Breakout-v0", plugins=plugins,
                            workdir=tmp_path, backbone={"name": "cnn", "channels": [4],
                                                        "kernel_sizes": [3], "strides": [1]})
    env = make_env(env_options(native), num_envs=2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside the action space Discrete"):
        env.step(torch.tensor([0, 5]))
    plain = experiment_for("ppo", env_id="CartPole-v1", plugins=plugins, workdir=tmp_path)
    assert "check_actions" not in (plain.env.kwargs or {})  # gymnasium's own env takes none
    kept = experiment_for("ppo", env_id="rlkit/CartPole-v1", plugins=plugins, workdir=tmp_path,
                          env={"kwargs": {"check_actions": False, "gravity": 9.81}})
    assert kept.env.kwargs == {"check_actions": False, "gravity": 9.81}


def assert_same_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    from rlkit.testing import assert_state_equal

    assert_state_equal(a, b, "env state")
