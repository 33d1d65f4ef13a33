"""The env boundary: tensors out, both autoreset modes, final observations, snapshots."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.environments import EnvOptions, make_env
from rlkit.validation import ConfigError


def random_actions(env, generator):
    space = env.single_action_space
    if isinstance(space, gym.spaces.Discrete):
        return torch.randint(0, int(space.n), (env.num_envs,), generator=generator)
    return torch.rand((env.num_envs, *space.shape), generator=generator) * 2 - 1


@pytest.mark.parametrize("mode", ["same_step", "next_step"])
def test_final_observation_is_next_obs_of_finished_episode(mode):
    """Replays the same seeded episodes on a plain gymnasium env and compares final obs."""
    env = make_env(EnvOptions(id="CartPole-v1", num_envs=1, autoreset_mode=mode))
    ref = gym.make("CartPole-v1")
    obs = env.reset(seed=3)
    ref_obs, _ = ref.reset(seed=3)
    assert torch.allclose(obs[0], torch.as_tensor(ref_obs))
    checked = 0
    for t in range(400):
        action = torch.tensor([t % 2])
        step = env.step(action)
        if step.valid is not None and not bool(step.valid[0]):
            ref_obs, _ = ref.reset()  # the next-step reset; our env drew from its own rng
            continue
        ref_next, ref_r, ref_term, ref_trunc, _ = ref.step(t % 2)
        assert torch.allclose(step.next_obs[0], torch.as_tensor(ref_next))
        assert float(step.reward[0]) == ref_r and bool(step.terminated[0]) == ref_term
        if ref_term or ref_trunc:
            checked += 1
            if mode == "same_step":  # obs to act on is the next episode's first
                assert not torch.equal(step.obs[0], step.next_obs[0])
                ref_obs, _ = ref.reset()
            else:
                assert torch.equal(step.obs[0], step.next_obs[0])
            break
    assert checked == 1


def test_next_step_mode_marks_reset_steps_invalid():
    env = make_env(EnvOptions(id="CartPole-v1", num_envs=3, autoreset_mode="next_step"))
    env.reset(seed=0)
    g = torch.Generator().manual_seed(0)
    saw_done = saw_invalid = False
    prev_done = torch.zeros(3, dtype=torch.bool)
    for _ in range(300):
        step = env.step(random_actions(env, g))
        if prev_done.any():
            assert step.valid is not None and torch.equal(step.valid, ~prev_done)
            assert float(step.reward[prev_done].abs().sum()) == 0.0
            saw_invalid = True
        else:
            assert step.valid is None
        prev_done = step.terminated | step.truncated
        saw_done |= bool(prev_done.any())
    assert saw_done and saw_invalid


def test_dtypes_follow_spaces():
    lake = make_env(EnvOptions(id="FrozenLake-v1", num_envs=2))
    assert lake.reset(seed=0).dtype == torch.int64
    pend = make_env(EnvOptions(id="Pendulum-v1", num_envs=2))
    obs = pend.reset(seed=0)
    assert obs.dtype == torch.float32 and obs.shape == (2, 3)
    step = pend.step(torch.zeros(2, 1))
    assert step.reward.dtype == torch.float32 and step.terminated.dtype == torch.bool


@pytest.mark.parametrize("options", [
    EnvOptions(id="CartPole-v1", num_envs=4),
    EnvOptions(id="CartPole-v1", num_envs=4, vectorization="vector_entry_point"),
    EnvOptions(id="FrozenLake-v1", num_envs=3, kwargs={"is_slippery": True}),
    EnvOptions(id="Taxi-v4", num_envs=2, autoreset_mode="next_step"),
    EnvOptions(id="Pendulum-v1", num_envs=2),
    EnvOptions(id="CartPole-v1", num_envs=3, wrappers=(
        ("gymnasium.wrappers.FrameStackObservation", {"stack_size": 4}),
        ("gymnasium.wrappers.NormalizeObservation", {}))),
], ids=lambda o: f"{o.id}-{o.vectorization}-{o.autoreset_mode}-{len(o.wrappers)}")
def test_snapshot_restores_exactly(options):
    """A fresh env loaded from a snapshot continues bit-identically (for exact resume)."""
    env = make_env(options)
    env.reset(seed=1)
    g = torch.Generator().manual_seed(0)
    for _ in range(37):
        env.step(random_actions(env, g))
    import io

    buf = io.BytesIO()
    torch.save(env.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    g_state = g.get_state()
    expected = [env.step(random_actions(env, g)) for _ in range(200)]
    other = make_env(options)
    other.reset(seed=99)
    other.load_state_dict(state)
    g.set_state(g_state)
    for a, b in zip(expected, [other.step(random_actions(other, g)) for _ in range(200)]):
        for x, y in zip(a, b):
            assert (x is None and y is None) or torch.equal(x, y)


def test_unknown_env_id_suggests_close_names():
    with pytest.raises(ConfigError, match=r"env.id: unknown environment 'CartPol-v1'.*CartPole-v1"):
        make_env(EnvOptions(id="CartPol-v1"))


def test_bad_wrapper_and_import_name_the_key():
    with pytest.raises(ConfigError, match=r"env.wrappers\[0\].name"):
        make_env(EnvOptions(id="CartPole-v1", wrappers=(("gymnasium.wrappers.Nope", {}),)))
    with pytest.raises(ConfigError, match="env.imports"):
        make_env(EnvOptions(id="CartPole-v1", imports=("no_such_module_xyz",)))


def test_wrappers_and_kwargs_apply():
    env = make_env(EnvOptions(id="CartPole-v1", num_envs=2,
                              wrappers=(("gymnasium.wrappers.ClipReward", {"max_reward": 0.5}),)))
    env.reset(seed=0)
    step = env.step(torch.zeros(2, dtype=torch.long))
    assert torch.all(step.reward == 0.5)
    lake = make_env(EnvOptions(id="FrozenLake-v1", kwargs={"map_name": "8x8"}))
    assert lake.single_observation_space.n == 64
    assert np.isfinite(0)


def test_auto_vectorization_uses_the_batched_torch_env_on_the_agents_device():
    import rlkit_envs  # noqa: F401  registers the rlkit/ ids

    from rlkit.environments import EnvOptions, make_env

    env = make_env(EnvOptions(id="rlkit/CartPole-v1", num_envs=8), device="cpu")
    assert type(env.env).__name__ == "CartPole" and env.env.num_envs == 8
    obs = env.reset(seed=0)
    step = env.step(torch.zeros(8, dtype=torch.long))
    assert isinstance(step.obs, torch.Tensor) and obs.shape == (8, 4)
    assert type(make_env(EnvOptions(id="CartPole-v1", num_envs=2)).env).__name__ == \
        "SyncVectorEnv"


def test_a_misspelt_env_argument_names_the_key_and_the_closest_argument():
    with pytest.raises(ConfigError, match=r"env.kwargs.gravty: 'rlkit/CartPole-v1' takes no "
                                          r"argument 'gravty'. Did you mean 'gravity'\?"):
        make_env(EnvOptions(id="rlkit/CartPole-v1", num_envs=2, kwargs={"gravty": 3.0}))
    with pytest.raises(ConfigError, match=r"env.kwargs.sutton_barto:.*'sutton_barto_reward'"):
        make_env(EnvOptions(id="CartPole-v1", num_envs=2, kwargs={"sutton_barto": True}))


def test_frame_stack_on_a_gymnasium_env_points_to_its_wrapper():
    with pytest.raises(ConfigError, match=r"env.kwargs.frame_stack:.*FrameStackObservation "
                                          r"under env.wrappers"):
        make_env(EnvOptions(id="CartPole-v1", num_envs=2, kwargs={"frame_stack": 4}))


def test_an_env_without_a_batched_implementation_says_to_use_sync():
    with pytest.raises(ConfigError, match=r"env.vectorization: 'FrozenLake-v1' has no batched "
                                          r"implementation.*vectorization: sync"):
        make_env(EnvOptions(id="FrozenLake-v1", num_envs=2, vectorization="vector_entry_point"))


class _Physics:
    """Stands for a physics engine's handle: state the snapshot cannot see into."""

    def __init__(self) -> None:
        self.position = 0.0


class _ForeignStateEnv(gym.Env):
    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.physics = _Physics()
        self.screen = object()  # a rendering handle is not state

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.physics.position = 0.0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.physics.position += 1.0 if action else -1.0
        obs = np.array([self.physics.position], np.float32)
        return obs, 0.0, False, self.physics.position > 5, {}


class _ForeignStateEnvWithStateDict(_ForeignStateEnv):
    def state_dict(self):
        return {"position": self.physics.position, "rng": self.np_random.bit_generator.state}

    def load_state_dict(self, state):
        self.physics.position = state["position"]
        self.np_random.bit_generator.state = state["rng"]


def test_state_in_another_librarys_object_is_refused_not_half_restored():
    from rlkit import snapshot

    env = gym.vector.SyncVectorEnv([_ForeignStateEnv])
    env.reset(seed=0)
    with pytest.raises(snapshot.SnapshotUnsupported, match=r"_ForeignStateEnv\.physics holds a "
                                                           r".*_Physics.*state_dict\(\)"):
        snapshot.capture(env)
    exact = gym.vector.SyncVectorEnv([_ForeignStateEnvWithStateDict])
    exact.reset(seed=0)
    exact.step(np.array([1]))
    state = snapshot.capture(exact)
    twin = gym.vector.SyncVectorEnv([_ForeignStateEnvWithStateDict])
    twin.reset(seed=1)
    snapshot.restore(twin, state)
    assert np.array_equal(twin.step(np.array([1]))[0], exact.step(np.array([1]))[0])
