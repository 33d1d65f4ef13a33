"""Recurrent DQN: the sequence replay buffer, per-env state in training and evaluation streams,
no leakage across episode boundaries, TD targets against a step-by-step reference,
conformance (save/load, determinism, exact resume) and a seeded learning check on
rlkit/CartPoleNoVel-v1."""

from __future__ import annotations

import io
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from recurrent_support import outcome

from rlkit.algorithms.dqn import DQN, DQNConfig, QNetwork, build_dqn
from rlkit.backbones.rnn import LSTMConfig, build_gru, build_lstm
from rlkit.buffers import ReplaySequences, SequenceReplayBuffer
from rlkit.evaluation import evaluate
from rlkit.interfaces import BuildContext, EnvSpec, NanCheck, Transition, separate_state
from rlkit.optim import OptimizerConfig
from rlkit.schedules import Schedule
from rlkit.testing import assert_state_equal, check_algorithm
from rlkit.validation import ConfigError

OBS = gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
ACTIONS = gym.spaces.Discrete(3)
SMALL_LSTM = {"name": "lstm", "hidden_size": 16, "encoder": {"name": "mlp", "hidden_sizes": [16]}}


def context(*, num_envs: int = 3, seed: int = 0, cell: str = "lstm",
            total_steps: int = 10_000) -> BuildContext:
    build = build_lstm if cell == "lstm" else build_gru
    return BuildContext(
        env=EnvSpec(observation_space=OBS, action_space=ACTIONS, num_envs=num_envs),
        device=torch.device("cpu"), seed=seed, total_steps=total_steps,
        backbone=lambda space, recurrent=False: build(LSTMConfig(hidden_size=8), space),
        exploration=None, nan_check=NanCheck("raise"))


def agent_for(num_envs: int = 3, cell: str = "lstm", **params: Any) -> DQN:
    settings: dict[str, Any] = dict(buffer_size=60 * num_envs, learning_starts=0, batch_size=12,
                                    seq_len=4, burn_in=2, train_freq=4, gradient_steps=2,
                                    target_update_interval=20)
    settings.update(params)
    return build_dqn(DQNConfig(**settings), context(num_envs=num_envs, cell=cell))


def drive(agent: DQN, g: torch.Generator, steps: int, invalid: bool = False) -> None:
    """Act and observe random outcomes; an episode that goes on continues from ``next_obs``."""
    n = agent.buffer.num_envs
    obs = torch.randn(n, 3, generator=g)
    for _ in range(steps):
        t = outcome(g, obs, agent.act(obs), invalid)
        agent.observe(t)
        agent.update()
        ended = t.terminated | t.truncated
        if t.valid is not None:
            ended |= ~t.valid
        obs = torch.where(ended.unsqueeze(1), torch.randn(n, 3, generator=g), t.next_obs)


# --- the sequence replay buffer ------------------------------------------------------------


def tagged(step: int, envs: int) -> Transition:
    """A transition whose every field encodes ``step`` and the env, to trace rows."""
    tag = torch.arange(envs, dtype=torch.float32) + 100 * step
    return Transition(obs=tag.unsqueeze(1).repeat(1, 3), action=torch.arange(envs) % 3,
                      reward=tag, next_obs=(tag + 0.5).unsqueeze(1).repeat(1, 3),
                      terminated=torch.zeros(envs, dtype=torch.bool),
                      truncated=torch.zeros(envs, dtype=torch.bool))


def sequence_buffer(capacity: int, envs: int = 2) -> SequenceReplayBuffer:
    return SequenceReplayBuffer(capacity=capacity, observation_space=OBS, action_space=ACTIONS,
                                num_envs=envs, state_shape=(1, 2, 4), device="cpu")


def fill(buffer: SequenceReplayBuffer, steps: int) -> None:
    n = buffer.num_envs
    for step in range(steps):
        state = torch.full((n, 1, 2, 4), float(step)) + torch.arange(n).view(n, 1, 1, 1) / 10
        buffer.add(tagged(step, n), episode_start=torch.full((n,), step % 5 == 0), state=state)


def test_sequence_buffer_samples_time_major_sequences_of_one_env():
    buffer = sequence_buffer(capacity=16, envs=3)
    fill(buffer, 9)
    assert len(buffer) == 27
    seq = buffer.sample(20, 4, torch.Generator().manual_seed(0))
    assert seq.obs.shape == (4, 20, 3) and seq.action.shape == (4, 20)
    assert seq.starts.shape == seq.valid.shape == seq.truncated.shape == (4, 20)
    assert seq.state.shape == (20, 1, 2, 4)
    tag = seq.reward  # 100 * step + env
    step, env = torch.div(tag, 100, rounding_mode="floor"), tag % 100
    assert torch.equal(step[1:] - step[:-1], torch.ones(3, 20)), "steps must be consecutive"
    assert (env == env[0]).all(), "a sequence must stay in one env"
    assert torch.equal(seq.starts, step % 5 == 0)
    assert seq.valid.all()
    # the stored state is the one of the sequence's first step
    assert torch.allclose(seq.state[:, 0, 0, 0], step[0] + env[0] / 10)


def test_sequence_buffer_wraps_around_and_never_spans_the_write_position():
    buffer = sequence_buffer(capacity=10, envs=2)
    fill(buffer, 23)  # holds steps 13..22, the write position sits between 22 and 13
    assert buffer.size == 10 and buffer.pos == 3
    assert buffer.starts_available(4) == 7
    seq = buffer.sample(2000, 4, torch.Generator().manual_seed(1))
    step = torch.div(seq.reward, 100, rounding_mode="floor")
    assert int(step.min()) == 13 and int(step.max()) == 22
    assert torch.equal(step[1:] - step[:-1], torch.ones(3, 2000)), "a sequence spanned the "\
        "write position (from the newest step back to the oldest)"
    first = set(step[0].long().tolist())
    assert first == set(range(13, 20)), "every start time that fits must be drawn"
    envs = set((seq.reward[0] % 100).long().tolist())
    assert envs == {0, 1}


def test_sequence_buffer_refuses_to_sample_before_a_sequence_fits():
    buffer = sequence_buffer(capacity=10)
    fill(buffer, 3)
    assert buffer.starts_available(4) == 0
    with pytest.raises(RuntimeError, match="holds 3 steps per env"):
        buffer.sample(2, 4, torch.Generator())


def test_sequence_buffer_state_dict_round_trip_samples_identically():
    buffer = sequence_buffer(capacity=10)
    fill(buffer, 14)
    blob = io.BytesIO()
    torch.save(buffer.state_dict(), blob)
    blob.seek(0)
    other = sequence_buffer(capacity=10)
    other.load_state_dict(torch.load(blob, weights_only=True))
    a = buffer.sample(16, 5, torch.Generator().manual_seed(3))
    b = other.sample(16, 5, torch.Generator().manual_seed(3))
    for name, x, y in zip(ReplaySequences._fields, a, b):
        assert torch.equal(x, y), name
    with pytest.raises(ValueError, match="capacity"):
        sequence_buffer(capacity=12).load_state_dict(buffer.state_dict())


def test_buffer_smaller_than_one_sequence_is_a_config_error():
    with pytest.raises(ConfigError, match=r"algorithm.buffer_size: .* 5 steps per env, fewer "
                                          r"than the 6 steps"):
        agent_for(num_envs=3, buffer_size=15, seq_len=4, burn_in=2)


# --- per-env state: training and evaluation streams ----------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_training_state_resets_at_every_episode_start(cell):
    agent = agent_for(cell=cell)
    g = torch.Generator().manual_seed(0)
    memory = agent.memory
    assert memory is not None
    ended = torch.ones(3, dtype=torch.bool)  # the first step starts every episode
    for _ in range(60):
        obs = torch.randn(3, 3, generator=g)
        acted_from = memory.state.clone()
        assert (acted_from[ended] == 0).all(), "a new episode began from a non-zero state"
        t = outcome(g, obs, agent.act(obs), invalid=True)
        agent.observe(t)
        assert t.valid is not None
        buffer = agent.buffer
        assert isinstance(buffer, SequenceReplayBuffer)
        last = (buffer.pos - 1) % buffer.capacity
        assert torch.equal(buffer.episode_start[last], ended), "stored episode starts"
        assert torch.equal(buffer.state[last], acted_from), "stored state"
        ended = t.terminated | t.truncated | ~t.valid
        assert (memory.state[ended] == 0).all()
        assert (memory.state[~ended] != 0).any(dim=(1, 2, 3)).all(), "a running episode lost " \
            "its state"
        agent.update()


def test_evaluation_stream_has_its_own_state_reset_at_every_episode_start(plugins):
    from rlkit.environments import make_env
    from rlkit.loop import env_options
    from rlkit.testing import experiment_for

    experiment = experiment_for("dqn", env_id="rlkit/CartPoleNoVel-v1", plugins=plugins,
                                params={"buffer_size": 200, "seq_len": 4, "burn_in": 2,
                                        "learning_starts": 32, "train_freq": 8},
                                backbone=SMALL_LSTM)
    from rlkit.loop import build_agent

    env = make_env(env_options(experiment))
    spec = EnvSpec(observation_space=env.single_observation_space,
                   action_space=env.single_action_space, num_envs=env.num_envs)
    agent, _ = build_agent(experiment, plugins, spec, torch.device("cpu"))
    assert isinstance(agent, DQN) and agent.memory is not None
    obs = env.reset(seed=0)
    for _ in range(40):
        action = agent.act(obs)
        step = env.step(action)
        agent.observe(Transition(obs, action, step.reward, step.next_obs, step.terminated,
                                 step.truncated, step.valid))
        agent.update()
        obs = step.obs
    before = agent.state_dict()
    memory = agent.memory
    acted_from, ends = [], []
    act, begin = agent.act, agent.begin_episodes

    def recording_act(o: torch.Tensor, explore: bool = True) -> torch.Tensor:
        acted_from.append(memory.state.clone())
        return act(o, explore)

    def recording_begin(mask: torch.Tensor | None = None) -> None:
        ends.append(mask.clone() if mask is not None else None)
        begin(mask)

    agent.act, agent.begin_episodes = recording_act, recording_begin  # type: ignore[method-assign]
    eval_env = make_env(env_options(experiment, for_eval=True), num_envs=3)
    result = evaluate(agent, eval_env, episodes=6, seed=5)
    assert len(result.returns) == 6
    assert acted_from[0].shape[0] == 3 and (acted_from[0] == 0).all()
    assert sum(int(m.sum()) for m in ends if m is not None) >= 6
    for i, mask in enumerate(ends[:-1]):
        assert mask is not None
        assert (acted_from[i + 1][mask] == 0).all(), "an evaluation episode began from the " \
            "previous episode's state"
        assert (acted_from[i + 1][~mask] != 0).any(dim=(1, 2, 3)).all()
    assert_state_equal(before, agent.state_dict(), "evaluation changed the training state")


def test_separate_state_acts_from_a_fresh_state_and_stores_nothing():
    agent = agent_for()
    drive(agent, torch.Generator().manual_seed(0), 10)
    before = agent.state_dict()
    obs = torch.randn(5, 3)
    with separate_state(agent, 5):
        greedy = agent.act(obs, explore=False)
    fresh = agent_for()
    fresh.load_state_dict(before)
    fresh.begin_episodes()
    assert torch.equal(greedy[:3], fresh.act(obs[:3], explore=False))
    assert_state_equal(before, agent.state_dict(), "separate_state touched the training state")
    with pytest.raises(RuntimeError, match="call act before each observe"):
        agent.observe(outcome(torch.Generator(), obs[:3], greedy[:3]))


# --- learning: no leakage, targets ----------------------------------------------------------


def replay_batch(g: torch.Generator, length: int = 10, batch: int = 5) -> ReplaySequences:
    """Random sequences with episode ends (terminations, truncations, an owner's reset) where
    ``next_obs`` continues into the following step wherever the episode goes on."""
    obs = torch.randn(length, batch, 3, generator=g)
    next_obs = torch.randn(length, batch, 3, generator=g)
    terminated = torch.rand(length, batch, generator=g) < 0.15
    truncated = (torch.rand(length, batch, generator=g) < 0.15) & ~terminated
    starts = torch.zeros(length, batch, dtype=torch.bool)
    starts[1:] = terminated[:-1] | truncated[:-1]
    starts[6, 2] = True  # begin_episodes by whoever owns the loop
    goes_on = ~starts[1:]
    next_obs[:-1][goes_on] = obs[1:][goes_on]
    valid = torch.rand(length, batch, generator=g) > 0.1
    return ReplaySequences(obs, torch.randint(3, (length, batch), generator=g),
                           torch.randn(length, batch, generator=g), next_obs, terminated,
                           truncated, valid, starts, torch.randn(batch, 1, 2, 8, generator=g))


def q_network(cell: str = "lstm") -> QNetwork:
    torch.manual_seed(0)
    build = build_lstm if cell == "lstm" else build_gru
    return QNetwork(build(LSTMConfig(hidden_size=8), OBS), 3)


def reference_unroll(q: QNetwork, seq: ReplaySequences, burn_in: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``Q(o_t, h_{t-1})`` and ``Q(o'_t, h_t)`` one step at a time, the state reset where an
    episode starts."""
    state, qs, nexts = seq.state, [], []
    for t in range(seq.obs.shape[0]):
        state = state * (~seq.starts[t]).view(-1, 1, 1, 1)
        values, state = q.step(seq.obs[t], state)
        if t >= burn_in:
            qs.append(values)
            nexts.append(q.step(seq.next_obs[t], state)[0])
    return torch.stack(qs), torch.stack(nexts)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_unrolled_q_values_match_a_step_by_step_reference(cell):
    q, burn = q_network(cell), 3
    seq = replay_batch(torch.Generator().manual_seed(1))
    with torch.no_grad():
        values, next_values = q.unroll(seq, burn, True)
        ref_values, ref_next = reference_unroll(q, seq, burn)
    assert next_values is not None
    torch.testing.assert_close(values, ref_values)
    # a terminated step's next value is never used (it is multiplied by zero)
    used = ~seq.terminated[burn:]
    torch.testing.assert_close(next_values[used], ref_next[used])
    truncated = seq.truncated[burn:]
    assert truncated.any(), "the batch must hold a truncation inside the training steps"


def test_no_gradient_leaks_across_an_episode_boundary_or_out_of_the_burn_in():
    q, burn = q_network(), 2
    length, batch = 9, 2
    obs = torch.randn(length, batch, 3, requires_grad=True)
    starts = torch.zeros(length, batch, dtype=torch.bool)
    starts[5, 0] = True  # env row 0: a new episode at step 5
    zeros = torch.zeros(length, batch)
    seq = ReplaySequences(obs, zeros.long(), zeros, torch.randn(length, batch, 3),
                          zeros.bool(), zeros.bool(), ~zeros.bool(), starts,
                          torch.randn(batch, 1, 2, 8))
    values, _ = q.unroll(seq, burn, False)
    (grad,) = torch.autograd.grad(values[7 - burn, 0].sum(), obs, retain_graph=True)  # step 7
    assert (grad[:5, 0] == 0).all(), "the loss of a step depends on the previous episode"
    assert (grad[5:8, 0] != 0).any(dim=1).all(), "no gradient inside the episode"
    assert (grad[:, 1] == 0).all()
    (grad,) = torch.autograd.grad(values[:, 1].sum(), obs)  # no reset in row 1
    assert (grad[:burn] == 0).all(), "gradient flowed into the burn-in"
    assert (grad[burn:, 1] != 0).any(dim=1).all()


@pytest.mark.parametrize("double", [False, True])
def test_loss_matches_td_targets_computed_step_by_step(double):
    agent = agent_for(double_dqn=double, batch_size=8, seq_len=4, burn_in=2, gamma=0.9)
    g = torch.Generator().manual_seed(2)
    drive(agent, g, 40, invalid=True)
    buffer = agent.buffer
    assert isinstance(buffer, SequenceReplayBuffer)
    sampler = torch.Generator().set_state(agent.generator.get_state())
    seq = buffer.sample(2, 6, sampler)
    with torch.no_grad():
        q, _ = reference_unroll(agent.q, seq, 2)
        online_next = reference_unroll(agent.q, seq, 2)[1]
        target_next = reference_unroll(agent.q_target, seq, 2)[1]
    scores = online_next if double else target_next
    bootstrap = target_next.gather(2, scores.argmax(2, keepdim=True)).squeeze(2)
    y = seq.reward[2:] + 0.9 * bootstrap * (~seq.terminated[2:])
    q_taken = q.gather(2, seq.action[2:].unsqueeze(2)).squeeze(2)
    valid = seq.valid[2:]
    expected = torch.nn.functional.smooth_l1_loss(q_taken[valid], y[valid])
    metrics = agent.learn(1)
    assert metrics["train/loss"] == pytest.approx(float(expected), rel=1e-5)


def test_invalid_rows_are_not_learned_from():
    agent = agent_for(batch_size=8, seq_len=4, burn_in=2)
    drive(agent, torch.Generator().manual_seed(3), 30)
    buffer = agent.buffer
    assert isinstance(buffer, SequenceReplayBuffer)
    buffer.valid.fill_(False)
    metrics = agent.learn(1)
    assert metrics["train/loss"] == 0.0 and metrics["train/grad_norm"] == 0.0
    assert all(p.grad is not None and not p.grad.any() for p in agent.params)


# --- state, conformance, schedule ----------------------------------------------------------


def test_state_dict_round_trip_continues_bit_identically():
    agent = agent_for()
    g = torch.Generator().manual_seed(4)
    drive(agent, g, 30, invalid=True)
    blob = io.BytesIO()
    torch.save(agent.state_dict(), blob)
    blob.seek(0)
    twin = agent_for()
    twin.load_state_dict(torch.load(blob, weights_only=True))
    assert_state_equal(agent.state_dict(), twin.state_dict(), "after load")
    drive(agent, torch.Generator().manual_seed(5), 30, invalid=True)
    drive(twin, torch.Generator().manual_seed(5), 30, invalid=True)
    assert agent.gradient_steps > 20
    assert_state_equal(agent.state_dict(), twin.state_dict(), "continued after load")


def test_learning_waits_for_a_whole_sequence():
    agent = agent_for(num_envs=2, seq_len=4, burn_in=3, train_freq=2)
    g = torch.Generator().manual_seed(6)
    for step in range(1, 10):
        obs = torch.randn(2, 3, generator=g)
        agent.observe(outcome(g, obs, agent.act(obs)))
        metrics = agent.update()
        assert bool(metrics) == (step >= 7), step


def test_recurrent_dqn_conforms(plugins, tmp_path):
    """Smoke run, save/load, determinism, exact resume and episode starts, with an LSTM."""
    check_algorithm("dqn", env_id="rlkit/CartPoleNoVel-v1", workdir=tmp_path, steps=256,
                    plugins=plugins, backbone=SMALL_LSTM,
                    params={"learning_starts": 64, "train_freq": 16, "gradient_steps": 2,
                            "batch_size": 32, "target_update_interval": 50,
                            "buffer_size": 200, "seq_len": 8, "burn_in": 4,
                            "double_dqn": True})


# --- learning check ------------------------------------------------------------------------

LEARN_SEED = 0
LEARN_BUDGET = 30_000
LEARN_THRESHOLD = 100.0


@pytest.mark.slow
def test_recurrent_dqn_learns_cartpole_without_velocities(plugins, tmp_path):
    """Seed 0: the best mean greedy return over 10 evaluation episodes (every 5k env steps)
    reaches 100 within 30k env steps on rlkit/CartPoleNoVel-v1 (8 envs, one frame).

    A memoryless Q-network stays below 50 (an MLP [64, 64] with these phases, batch 256 and
    Double DQN: 34-48 over 50k steps), so 100 needs the recurrent state. The threshold is
    modest and the check rests on its seed: DQN is seed-sensitive here (seed 1 peaks at 40
    within this budget), and the full task takes longer than a CI budget (a return of 353 at
    150k steps: experiments/cartpole_novel_drqn.yaml). About 60 s of CPU.
    """
    from rlkit.config import resolve
    from rlkit.loop import Trainer

    data = {
        "algorithm": {"name": "dqn", "gamma": 0.99, "buffer_size": 50_000,
                      "learning_starts": 2000, "batch_size": 512, "seq_len": 6, "burn_in": 2,
                      "train_freq": 256, "gradient_steps": 64, "target_update_interval": 10,
                      "optimizer": {"name": "adam", "lr": 1e-3},
                      "epsilon": {"kind": "linear", "start": 1.0, "end": 0.04,
                                  "fraction": 0.2}},
        "backbone": {"name": "lstm", "hidden_size": 64,
                     "encoder": {"name": "mlp", "hidden_sizes": [64]}},
        "env": {"id": "rlkit/CartPoleNoVel-v1", "num_envs": 8},
        "train": {"total_steps": LEARN_BUDGET, "seed": LEARN_SEED, "log_every": 10_000},
        "eval": {"every": 5000, "episodes": 10, "target_return": LEARN_THRESHOLD},
        "run": {"dir": str(tmp_path)},
    }
    trainer = Trainer(resolve(data, plugins, source="<test>"), plugins,
                      run_dir=tmp_path / "run", progress=False)
    summary = trainer.run()
    assert summary["status"] == "target_reached", summary


def test_feed_forward_dqn_keeps_no_memory():
    cfg = DQNConfig(learning_starts=0, optimizer=OptimizerConfig(lr=1e-3),
                    epsilon=Schedule(kind="linear", start=1.0, end=0.1, fraction=0.5))
    ctx = context()
    ctx.backbone = _mlp_factory  # type: ignore[assignment]
    agent = build_dqn(cfg, ctx)
    assert agent.memory is None and not agent.recurrent
    agent.begin_episodes(torch.ones(3, dtype=torch.bool))  # a no-op
    with separate_state(agent, 7):
        assert agent.act(torch.randn(7, 3)).shape == (7,)
    assert "memory" not in agent.state_dict()


def _mlp_factory(space: gym.Space[Any]) -> torch.nn.Module:
    from rlkit.backbones.mlp import MLPConfig, build_mlp

    return build_mlp(MLPConfig(hidden_sizes=[8]), space)
