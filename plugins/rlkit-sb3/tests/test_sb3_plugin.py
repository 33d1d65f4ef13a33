"""The ``sb3.*`` algorithms: found through the entry point, conformant, learning as SB3 does.

Needs the package installed (``pip install -e plugins/rlkit-sb3``) so that rlkit finds its
entry point. Every conformance check of :func:`rlkit.testing.check_algorithm` applies to all
six algorithms and is run in full; ``check_episode_starts`` passes trivially (SB3's policies
here are feed-forward and keep no per-env state). The ``*_bit_for_bit_*`` tests compare the
adapter, driven by a plain gymnasium loop, with SB3's own ``learn()``.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.cli import main as rlkit_main
from rlkit.config import resolve
from rlkit.environments import make_env
from rlkit.interfaces import BuildContext, EnvSpec, NanCheck, Transition
from rlkit.loop import Trainer, build_agent, env_options
from rlkit.plugins import Plugins
from rlkit.testing import check_algorithm, experiment_for, shifted_actions_env
from rlkit.validation import ConfigError, from_data

TINY = {"net_arch": [16, 16]}
SMALL_OFF_POLICY = {"buffer_size": 1000, "learning_starts": 64, "batch_size": 32,
                    "policy_kwargs": TINY}


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return Plugins.load()


def test_the_six_algorithms_are_discovered_through_the_entry_point(plugins):
    for name in ("ppo", "a2c", "dqn", "sac", "td3", "ddpg"):
        assert f"sb3.{name}" in plugins.algorithms, "is rlkit-sb3 installed (pip install -e)?"
        _, provider = plugins.algorithms[f"sb3.{name}"]
        assert provider.distribution == "rlkit-sb3"
    out = io.StringIO()
    with redirect_stdout(out):
        rlkit_main(["plugins", "--json"])
    listed = {e["name"]: e for e in json.loads(out.getvalue())["registered"]}
    assert listed["sb3.td3"]["distribution"] == "rlkit-sb3"
    assert "Stable-Baselines3 TD3" in listed["sb3.td3"]["description"]


@pytest.mark.parametrize(("name", "env_id", "params"), [
    ("sb3.ppo", "CartPole-v1", {"n_steps": 12, "batch_size": 8, "n_epochs": 2,
                                "learning_rate": "lin_0.001", "clip_range": "lin_0.2",
                                "policy_kwargs": TINY}),
    ("sb3.a2c", "CartPole-v1", {"n_steps": 5, "policy_kwargs": TINY}),
    ("sb3.dqn", "CartPole-v1", SMALL_OFF_POLICY | {"train_freq": 3,
                                                   "target_update_interval": 32}),
    ("sb3.sac", "Pendulum-v1", SMALL_OFF_POLICY),
    ("sb3.sac", "Pendulum-v1", SMALL_OFF_POLICY | {"use_sde": True, "sde_sample_freq": 5}),
    ("sb3.ppo", "Pendulum-v1", {"n_steps": 12, "batch_size": 8, "n_epochs": 2,
                                "use_sde": True, "sde_sample_freq": 4, "policy_kwargs": TINY}),
    ("sb3.td3", "Pendulum-v1", SMALL_OFF_POLICY | {"action_noise": {"sigma": 0.1}}),
    ("sb3.ddpg", "Pendulum-v1", SMALL_OFF_POLICY | {
        "action_noise": {"type": "ornstein_uhlenbeck", "sigma": 0.2}}),
])
def test_conforms(name, env_id, params, plugins, tmp_path):
    # smoke run, save/load with weights_only=True and twin independence, same-seed
    # determinism, bit-exact resume, episode starts; 256 steps on 2 envs: past
    # learning_starts, so SB3's train() runs in every check. Rollouts of 24 and 10 steps and
    # DQN's 6-step collection periods do not divide the resume point (128 steps): the
    # checkpoint holds a partial rollout or a collection period under way.
    check_algorithm(name, env_id=env_id, params=params, workdir=tmp_path, steps=256,
                    plugins=plugins)


def test_discrete_actions_that_start_at_minus_one(plugins, tmp_path):
    # Acrobot with Discrete(3, start=-1): the env gets index - 1, SB3 learns from indices
    check_algorithm("sb3.dqn", env_id="Acrobot-v1", env=shifted_actions_env(-1),
                    params=SMALL_OFF_POLICY, workdir=tmp_path, steps=160, plugins=plugins)


def _ctx(env: gym.vector.VectorEnv, seed: int, total: int) -> BuildContext:
    def no_backbone(*args, **kwargs):
        raise AssertionError("SB3 builds its own networks")

    spec = EnvSpec(observation_space=env.single_observation_space,
                   action_space=env.single_action_space, num_envs=env.num_envs)
    return BuildContext(env=spec, device=torch.device("cpu"), seed=seed, total_steps=total,
                        backbone=no_backbone, exploration=None, nan_check=NanCheck("raise"))


@pytest.mark.parametrize(("env_id", "sde"), [("CartPole-v1", {}), ("Pendulum-v1", {}), (
    "Pendulum-v1", {"use_sde": True, "sde_sample_freq": 4})])  # gSDE: matrices redrawn
def test_ppo_learns_bit_for_bit_as_sb3_learn(env_id, sde):
    """The adapter driven by a plain loop over gymnasium's SyncVectorEnv (same-step autoreset)
    ends with exactly the parameters of ``PPO.learn()`` on SB3's DummyVecEnv: same seed, same
    episodes (a 20-step time limit, so truncations are bootstrapped; Pendulum's Box actions
    are clipped for the env and stored unclipped), three updates with linear learning-rate
    and clip-range schedules."""
    from rlkit_sb3.on_policy import PPOConfig, build_ppo
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    n, seed, total = 4, 3, 4 * 16 * 3

    def make() -> gym.Env:
        return gym.make(env_id, max_episode_steps=20)

    settings = {"n_steps": 16, "batch_size": 32, "n_epochs": 3, "gamma": 0.98,
                "gae_lambda": 0.8, "policy_kwargs": {"net_arch": [32, 32]}} | sde
    reference = PPO("MlpPolicy", DummyVecEnv([make] * n), seed=seed, device="cpu",
                    learning_rate=lambda p: p * 1e-3, clip_range=lambda p: p * 0.2,
                    **settings)
    reference.learn(total_timesteps=total)

    venv = gym.vector.SyncVectorEnv([make] * n,
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    agent = build_ppo(PPOConfig(learning_rate="lin_0.001", clip_range="lin_0.2", **settings),
                      _ctx(venv, seed, total))
    updates = _drive_sync(agent, venv, seed, total // n)
    assert updates == 3
    ours, theirs = agent.policy.state_dict(), reference.policy.state_dict()
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), f"{key} differs from SB3's learn()"


def _drive_sync(agent, venv, seed: int, steps: int) -> int:
    """A plain loop over a gymnasium vector env (same-step autoreset); returns the number of
    updates that learned."""
    obs, _ = venv.reset(seed=seed)
    updates = 0
    for _ in range(steps):
        last = torch.as_tensor(obs)
        action = agent.act(last)
        obs, reward, terminated, truncated, info = venv.step(action.numpy())
        final = obs.copy()  # the true next observation: the final one where an episode ended
        if "_final_obs" in info:
            done = info["_final_obs"]
            final[done] = np.stack(list(info["final_obs"][done]))
        agent.observe(Transition(last, action, torch.as_tensor(reward, dtype=torch.float32),
                                 torch.as_tensor(final), torch.as_tensor(terminated),
                                 torch.as_tensor(truncated)))
        updates += bool(agent.update())
    return updates


OFF_POLICY_CASES = [
    ("dqn", "CartPole-v1", 2, {"train_freq": 4, "gradient_steps": 2,
                               "target_update_interval": 30, "tau": 0.5,
                               "exploration_fraction": 0.5}),
    ("sac", "Pendulum-v1", 1, {"train_freq": [8, "step"], "gradient_steps": -1}),
    # gSDE: exploration matrices drawn at each collection period's start and every 3 steps
    ("sac", "Pendulum-v1", 2, {"train_freq": 8, "gradient_steps": 2, "use_sde": True,
                               "sde_sample_freq": 3}),
    ("td3", "Pendulum-v1", 2, {"train_freq": 4, "gradient_steps": 2, "action_noise": {
        "type": "ornstein_uhlenbeck", "sigma": 0.3}}),
]


@pytest.mark.parametrize(("name", "env_id", "n", "params"), OFF_POLICY_CASES)
def test_off_policy_learns_bit_for_bit_as_sb3_learn(name, env_id, n, params, plugins):
    """As for PPO: warm-up, epsilon-greedy or noisy acting (OU noise reset per finished
    episode), replay sampling, train_freq, gradient_steps (-1 too) and target updates, from a
    plain loop, end exactly where ``learn()`` does (20-step episodes: truncations are
    bootstrapped through SB3's TimeLimit.truncated)."""
    import stable_baselines3
    from rlkit_sb3.off_policy import make_action_noise
    from stable_baselines3.common.vec_env import DummyVecEnv

    spec = plugins.algorithm(f"sb3.{name}")
    seed, total = 5, n * 8 * 19  # whole collection periods, as learn() runs them
    settings = {"buffer_size": 500, "learning_starts": 40, "batch_size": 16,
                "policy_kwargs": {"net_arch": [32]}} | params
    config = from_data(spec.config, settings, "algorithm")

    def make() -> gym.Env:
        return gym.make(env_id, max_episode_steps=20)

    venv = gym.vector.SyncVectorEnv([make] * n,
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    sb3_settings = dict(settings, train_freq=tuple(settings["train_freq"]) if isinstance(
        settings["train_freq"], list) else settings["train_freq"])
    noise = sb3_settings.pop("action_noise", None)
    if noise is not None:
        sb3_settings["action_noise"] = make_action_noise(config.action_noise,
                                                     venv.single_action_space)
    reference = getattr(stable_baselines3, name.upper())(
        "MlpPolicy", DummyVecEnv([make] * n), seed=seed,
        device="cpu", **sb3_settings)
    reference.learn(total_timesteps=total)
    agent = spec.build(config, _ctx(venv, seed, total))
    assert _drive_sync(agent, venv, seed, total // n) > 5
    assert agent.model._n_updates == reference._n_updates
    ours, theirs = agent.policy.state_dict(), reference.policy.state_dict()
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), f"{key} differs from SB3's learn()"


@pytest.mark.slow
def test_ppo_with_the_zoo_cartpole_settings_reaches_195(plugins, tmp_path):
    """rl-baselines3-zoo's CartPole-v1 PPO (experiments/cartpole_sb3_ppo.yaml) through rlkit's
    Trainer, seed 0: the mean of 10 deterministic evaluation episodes reaches 195 within 30k
    env steps (it does at the first evaluation, 5k steps; seeds 1 and 2 by 10k)."""
    data = {"algorithm": {"name": "sb3.ppo", "n_steps": 32, "batch_size": 256, "n_epochs": 20,
                          "gamma": 0.98, "gae_lambda": 0.8, "ent_coef": 0.0,
                          "learning_rate": "lin_0.001", "clip_range": "lin_0.2"},
            "env": {"id": "CartPole-v1", "num_envs": 8},
            "train": {"total_steps": 100_000, "seed": 0, "torch_threads": 1},
            "eval": {"every": 5000, "episodes": 10, "target_return": 195},
            "run": {"dir": str(tmp_path)}}
    trainer = Trainer(resolve(data, plugins), plugins, run_dir=tmp_path / "zoo",
                      progress=False)
    summary = trainer.run(max_steps=30_000)
    assert summary["status"] == "target_reached", summary


def test_global_random_streams_are_left_alone(plugins, tmp_path):
    # SB3 draws from torch's and numpy's global generators; the adapter swaps its own in
    experiment = experiment_for("sb3.sac", env_id="Pendulum-v1", plugins=plugins,
                                params=SMALL_OFF_POLICY | {"learning_starts": 8},
                                workdir=tmp_path)
    env = make_env(env_options(experiment))
    torch.manual_seed(123)
    np.random.seed(123)
    torch_before, numpy_before = torch.get_rng_state(), np.random.get_state()[1].copy()
    agent, _ = build_agent(experiment, plugins, _spec(env), torch.device("cpu"))
    obs = env.reset(seed=0)
    learned = 0
    for _ in range(16):
        action = agent.act(obs)
        step = env.step(action)
        agent.observe(Transition(obs, action, step.reward, step.next_obs, step.terminated,
                                 step.truncated, step.valid))
        learned += bool(agent.update())
        obs = step.obs
    assert learned > 0
    assert torch.equal(torch.get_rng_state(), torch_before)
    assert np.array_equal(np.random.get_state()[1], numpy_before)


def test_an_overridden_action_is_stored_with_its_own_log_probability():
    from rlkit_sb3.on_policy import PPOConfig, build_ppo

    venv = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)
    agent = build_ppo(PPOConfig(n_steps=4, batch_size=8), _ctx(venv, 0, 64))
    obs = torch.as_tensor(venv.reset(seed=0)[0])
    action = 1 - agent.act(obs)  # the loop's owner flips both suggestions
    next_obs, reward, terminated, truncated, _ = venv.step(action.numpy())
    agent.observe(Transition(obs, action, torch.as_tensor(reward, dtype=torch.float32),
                             torch.as_tensor(next_obs), torch.as_tensor(terminated),
                             torch.as_tensor(truncated)))
    stored = agent.buffer.actions[0, :, 0]
    assert np.array_equal(stored, action.numpy())
    with torch.no_grad():
        _, log_prob, _ = agent.policy.evaluate_actions(obs, action)
    assert np.allclose(agent.buffer.log_probs[0], log_prob.numpy())


@pytest.mark.parametrize("name", ["ppo", "dqn"])
def test_channel_last_images_go_through_sb3s_cnn(name, plugins):
    # SB3 transposes (H, W, C) uint8 images to channel-first; the adapter does the same
    spec = plugins.algorithm(f"sb3.{name}")
    small = {"ppo": {"n_steps": 4, "batch_size": 8, "n_epochs": 1},
             "dqn": {"learning_starts": 2, "buffer_size": 50, "batch_size": 4,
                     "train_freq": 1}}[name]
    space = gym.spaces.Box(0, 255, (36, 36, 3), np.uint8)
    venv = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)  # for its size
    ctx = _ctx(venv, 0, 100)
    ctx.env = EnvSpec(observation_space=space, action_space=gym.spaces.Discrete(3),
                      num_envs=2)
    agent = spec.build(from_data(spec.config, small), ctx)
    assert "Cnn" in type(agent.policy).__name__
    gen = torch.Generator().manual_seed(0)
    obs = torch.randint(0, 256, (2, 36, 36, 3), dtype=torch.uint8, generator=gen)
    learned = []
    for _ in range(8):
        action = agent.act(obs)
        nxt = torch.randint(0, 256, (2, 36, 36, 3), dtype=torch.uint8, generator=gen)
        agent.observe(Transition(obs, action, torch.ones(2), nxt, torch.zeros(2, dtype=bool),
                                 torch.zeros(2, dtype=bool)))
        learned.append(agent.update())
        obs = nxt
    assert any("train/loss" in m for m in learned)
    assert agent.act(obs, explore=False).shape == (2,)


def test_next_step_autoreset_entries_are_refused_with_advice():
    from rlkit_sb3.off_policy import DQNConfig, build_dqn

    from rlkit.transitions import TransitionError

    venv = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)
    agent = build_dqn(DQNConfig(buffer_size=100), _ctx(venv, 0, 64))
    obs = torch.as_tensor(venv.reset(seed=0)[0])
    action = agent.act(obs)
    no = torch.zeros(2, dtype=torch.bool)
    with pytest.raises(TransitionError, match="env.autoreset_mode: same_step"):
        agent.observe(Transition(obs, action, torch.zeros(2), obs, no, no,
                                 torch.tensor([True, False])))


def test_dqn_on_a_box_action_space_names_the_algorithm_and_the_space(plugins, tmp_path):
    experiment = experiment_for("sb3.dqn", env_id="Pendulum-v1", plugins=plugins,
                                workdir=tmp_path)
    with pytest.raises(ConfigError, match=r"'sb3.dqn' needs a Discrete action space, not Box"):
        Trainer(experiment, plugins, run_dir=tmp_path / "dqn", progress=False)


def test_a_bad_schedule_string_names_its_key(plugins, tmp_path):
    with pytest.raises(ConfigError, match=r"algorithm\.learning_rate: 'lin_x'"):
        experiment_for("sb3.ppo", env_id="CartPole-v1", plugins=plugins,
                       params={"learning_rate": "lin_x"}, workdir=tmp_path)


def _spec(env) -> EnvSpec:
    return EnvSpec(observation_space=env.single_observation_space,
                   action_space=env.single_action_space, num_envs=env.num_envs)


def test_a_backbone_section_is_refused_not_ignored(plugins, tmp_path):
    # SB3 builds its networks from policy_kwargs; these layers would silently do nothing
    experiment = experiment_for("sb3.ppo", env_id="CartPole-v1", plugins=plugins,
                                params={"n_steps": 8, "batch_size": 16}, workdir=tmp_path,
                                steps=64,
                                backbone={"name": "mlp", "hidden_sizes": [16]})
    with pytest.raises(ConfigError, match=r"backbone: algorithm 'sb3.ppo' does not use a "
                                          r"backbone .* \('mlp'\) would be ignored"):
        Trainer(experiment, plugins, run_dir=tmp_path / "run", progress=False)
    recurrent = experiment_for("sb3.ppo", env_id="CartPole-v1", plugins=plugins,
                               params={"n_steps": 8, "batch_size": 16}, workdir=tmp_path,
                               steps=64,
                               backbone={"name": "lstm", "hidden_size": 8})
    with pytest.raises(ConfigError, match="'lstm' is a recurrent backbone, and algorithm "
                                          "'sb3.ppo' cannot use one"):
        Trainer(recurrent, plugins, run_dir=tmp_path / "run2", progress=False)
