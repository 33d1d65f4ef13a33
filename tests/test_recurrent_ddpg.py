"""Recurrent DDPG/TD3: per-env state of every core in training and evaluation streams, no
leakage across episode boundaries, targets against a step-by-step reference (truncation
bootstraps from the state reached, termination does not), refusals, exact resume and
conformance on rlkit/Pendulum-v1."""

from __future__ import annotations

import io
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from recurrent_support import outcome

from rlkit.algorithms.ddpg import DDPG, DDPGConfig, TD3Config, build_ddpg
from rlkit.algorithms.ddpg_networks import Critic, unroll
from rlkit.backbones.rnn import LSTMConfig, build_gru, build_lstm
from rlkit.buffers import ReplaySequences, SequenceReplayBuffer
from rlkit.interfaces import BuildContext, EnvSpec, NanCheck, separate_state
from rlkit.testing import assert_state_equal, check_algorithm
from rlkit.validation import ConfigError

OBS = gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
ACT = gym.spaces.Box(low=np.array([-2.0, 0.0], np.float32), high=np.array([2.0, 1.0], np.float32))
SMALL_LSTM = {"name": "lstm", "hidden_size": 16, "encoder": {"name": "mlp", "hidden_sizes": [16]}}


def context(*, num_envs: int = 3, cell: str = "lstm") -> BuildContext:
    build = build_lstm if cell == "lstm" else build_gru
    return BuildContext(
        env=EnvSpec(observation_space=OBS, action_space=ACT, num_envs=num_envs),
        device=torch.device("cpu"), seed=0, total_steps=10_000,
        backbone=lambda space, recurrent=False: build(LSTMConfig(hidden_size=8), space),
        exploration=None, nan_check=NanCheck("raise"))


def agent_for(num_envs: int = 3, cell: str = "lstm", **params: Any) -> DDPG:
    settings: dict[str, Any] = dict(buffer_size=60 * num_envs, learning_starts=0, batch_size=12,
                                    seq_len=4, burn_in=2, train_freq=4, gradient_steps=2,
                                    critic_head_sizes=[8])
    settings.update(params)
    return build_ddpg(TD3Config(**settings), context(num_envs=num_envs, cell=cell))


def drive(agent: DDPG, g: torch.Generator, steps: int, invalid: bool = False) -> None:
    """Act and observe random outcomes; an episode that goes on continues from ``next_obs``."""
    n = agent.num_envs
    obs = torch.randn(n, 3, generator=g)
    for _ in range(steps):
        t = outcome(g, obs, agent.act(obs), invalid)
        agent.observe(t)
        agent.update()
        ended = t.terminated | t.truncated
        if t.valid is not None:
            ended |= ~t.valid
        obs = torch.where(ended.unsqueeze(1), torch.randn(n, 3, generator=g), t.next_obs)


# --- per-env state: training and evaluation streams ----------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_every_core_state_resets_at_every_episode_start_and_is_stored(cell):
    agent = agent_for(cell=cell)
    memory, buffer = agent.memory, agent.buffer
    assert memory is not None and isinstance(buffer, SequenceReplayBuffer)
    assert memory.state.shape[1] == 3  # actor, critic 1, critic 2
    g = torch.Generator().manual_seed(0)
    ended = torch.ones(3, dtype=torch.bool)  # the first step starts every episode
    for _ in range(40):
        obs = torch.randn(3, 3, generator=g)
        acted_from = memory.state.clone()
        assert (acted_from[ended] == 0).all(), "a new episode began from a non-zero state"
        t = outcome(g, obs, agent.act(obs), invalid=True)
        agent.observe(t)
        assert t.valid is not None
        last = (buffer.pos - 1) % buffer.capacity
        assert torch.equal(buffer.episode_start[last], ended), "stored episode starts"
        assert torch.equal(buffer.state[last], acted_from), "stored state"
        ended = t.terminated | t.truncated | ~t.valid
        assert (memory.state[ended] == 0).all()
        running = memory.state[~ended]
        assert (running != 0).flatten(2).any(dim=2).all(), "a running episode lost the state " \
            "of one of its cores"
        agent.update()
    assert agent.critic_updates > 0


def test_evaluation_acts_from_a_state_of_its_own_reset_at_its_episode_starts():
    agent = agent_for()
    drive(agent, torch.Generator().manual_seed(1), 12)
    memory = agent.memory
    assert memory is not None
    before = agent.state_dict()
    g = torch.Generator().manual_seed(2)
    with separate_state(agent, 2):
        assert memory.state.shape[0] == 2 and (memory.state == 0).all()
        for step in range(6):
            obs = torch.randn(2, 3, generator=g)
            acted_from = memory.state.clone()
            if step == 3:
                assert (acted_from[0] == 0).all() and (acted_from[1, 0] != 0).any()
            agent.act(obs, explore=False)
            if step == 2:
                agent.begin_episodes(torch.tensor([True, False]))
    assert_state_equal(before, agent.state_dict(), "evaluation changed the training state")
    with pytest.raises(RuntimeError, match="call act before each observe"):
        agent.observe(outcome(g, torch.randn(3, 3), torch.zeros(3, 2)))
    with pytest.raises(ValueError, match="keeps recurrent state for 3 environments"):
        agent.act(torch.randn(5, 3))


def test_separate_state_acts_like_a_fresh_agent_with_the_same_weights():
    agent = agent_for()
    drive(agent, torch.Generator().manual_seed(3), 10)
    obs = torch.randn(3, 3)
    with separate_state(agent, 3):
        greedy = agent.act(obs, explore=False)
    fresh = agent_for()
    fresh.load_state_dict(agent.state_dict())
    fresh.begin_episodes()
    assert torch.equal(greedy, fresh.act(obs, explore=False))


# --- learning: no leakage, targets ----------------------------------------------------------


def sequences(g: torch.Generator, length: int = 10, batch: int = 5,
              state: torch.Tensor | None = None) -> ReplaySequences:
    """Random sequences with episode ends (terminations, truncations, an owner's reset) where
    ``next_obs`` continues into the following step wherever the episode goes on."""
    obs = torch.randn(length, batch, 3, generator=g)
    next_obs = torch.randn(length, batch, 3, generator=g)
    terminated = torch.rand(length, batch, generator=g) < 0.15
    truncated = (torch.rand(length, batch, generator=g) < 0.15) & ~terminated
    truncated[5, 1], terminated[5, 1] = True, False  # a truncation inside the training steps
    terminated[4, 3], truncated[4, 3] = True, False  # and a termination
    starts = torch.zeros(length, batch, dtype=torch.bool)
    starts[1:] = terminated[:-1] | truncated[:-1]
    starts[6, 2] = True  # begin_episodes by whoever owns the loop
    goes_on = ~starts[1:]
    next_obs[:-1][goes_on] = obs[1:][goes_on]
    valid = torch.rand(length, batch, generator=g) > 0.1
    if state is None:
        state = torch.randn(batch, 3, 1, 2, 8, generator=g)
    return ReplaySequences(obs, torch.rand(length, batch, 2, generator=g) * 2 - 1,
                           torch.randn(length, batch, generator=g), next_obs, terminated,
                           truncated, valid, starts, state)


def stepwise(body: Any, seq: ReplaySequences, state: torch.Tensor, burn_in: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of ``o_t`` under ``h_{t-1}`` and of ``o'_t`` under ``h_t``, one step at a time,
    the state reset where an episode starts."""
    features, following = [], []
    for t in range(seq.obs.shape[0]):
        state = state * (~seq.starts[t]).view(-1, 1, 1, 1)
        f, state = body(seq.obs[t], state)
        if t >= burn_in:
            features.append(f)
            following.append(body(seq.next_obs[t], state)[0])
    return torch.stack(features), torch.stack(following)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_target_matches_a_step_by_step_reference_truncation_bootstraps(cell):
    agent = agent_for(cell=cell, gamma=0.9, target_policy_noise=0.0)
    burn = agent.config.burn_in
    core = (1, 2 if cell == "lstm" else 1, 8)
    seq = sequences(torch.Generator().manual_seed(4), state=torch.randn(5, 3, *core))
    with torch.no_grad():
        got = agent.sequence_target(seq)
        actor = agent.actor_target
        _, next_features = stepwise(actor.backbone, seq, seq.state[:, 0], burn)
        next_action = actor.action(next_features)
        qs = []
        for i, critic in enumerate(agent.critics_target, start=1):
            assert isinstance(critic, Critic)
            qs.append(critic.value(stepwise(critic.backbone, seq, seq.state[:, i], burn)[1],
                                   next_action))
        bootstrap = torch.minimum(*qs)
    reward, terminated = seq.reward[burn:], seq.terminated[burn:]
    expected = reward + 0.9 * bootstrap * (~terminated)
    torch.testing.assert_close(got, expected)
    truncated = seq.truncated[burn:]
    assert truncated[5 - burn, 1] and terminated[4 - burn, 3]
    assert torch.equal(got[terminated], reward[terminated]), "a terminated step bootstrapped"
    assert not torch.isclose(got[5 - burn, 1], reward[5 - burn, 1]), "a truncated step must " \
        "bootstrap from its final observation"
    # ... under the state that episode reached, not a fresh one
    with torch.no_grad():
        final, fresh = seq.next_obs[5, 1:2], torch.zeros(1, *core)
        a_fresh = actor.action(actor.backbone(final, fresh)[0])
        q_fresh = torch.minimum(*(critic.value(critic.backbone(final, fresh)[0], a_fresh)
                                  for critic in agent.critics_target))
    assert not torch.isclose(got[5 - burn, 1], reward[5 - burn, 1] + 0.9 * q_fresh[0])


def test_unrolled_features_match_a_step_by_step_reference():
    agent = agent_for()
    body = agent.actor.backbone
    seq = sequences(torch.Generator().manual_seed(5))
    with torch.no_grad():
        features, following = unroll(body, seq, seq.state[:, 0], 3, True)
        ref_features, ref_following = stepwise(body, seq, seq.state[:, 0], 3)
    assert following is not None
    torch.testing.assert_close(features, ref_features)
    used = ~seq.terminated[3:]  # a terminated step's next value is multiplied by zero
    torch.testing.assert_close(following[used], ref_following[used])


def test_no_gradient_leaks_across_an_episode_boundary_or_out_of_the_burn_in():
    """Only step 7 of env row 0 counts (valid); its episode began at step 5. Neither the
    critics' loss nor the actor's may depend on observations before step 5, or of row 1."""
    agent = agent_for(burn_in=2, seq_len=7)
    length, batch = 9, 2
    obs = torch.randn(length, batch, 3, requires_grad=True)
    starts = torch.zeros(length, batch, dtype=torch.bool)
    starts[5, 0] = True
    valid = torch.zeros(length, batch, dtype=torch.bool)
    valid[7, 0] = True
    zeros = torch.zeros(length, batch)
    seq = ReplaySequences(obs, torch.zeros(length, batch, 2), zeros, torch.randn(length, batch, 3),
                          zeros.bool(), zeros.bool(), valid, starts, torch.randn(batch, 3, 1, 2, 8))
    critic_loss, _ = agent.critic_loss(seq)
    actor_loss = -agent.sequence_policy_value(seq)
    for name, loss in (("critic", critic_loss), ("actor", actor_loss)):
        (grad,) = torch.autograd.grad(loss, obs)
        assert (grad[:5, 0] == 0).all(), f"the {name} loss depends on the previous episode"
        assert (grad[5:8, 0] != 0).any(dim=1).all(), f"no {name} gradient inside the episode"
        assert (grad[8:, 0] == 0).all() and (grad[:, 1] == 0).all()
    # the burn-in is replayed without gradient
    seq = seq._replace(starts=torch.zeros(length, batch, dtype=torch.bool),
                       valid=torch.ones(length, batch, dtype=torch.bool))
    (grad,) = torch.autograd.grad(agent.critic_loss(seq)[0], obs)
    assert (grad[:2] == 0).all() and (grad[2:] != 0).any(dim=2).all()


def test_the_actor_learns_through_critic_one_only_and_invalid_rows_are_ignored():
    agent = agent_for(policy_delay=1)
    drive(agent, torch.Generator().manual_seed(6), 20)
    buffer = agent.buffer
    assert isinstance(buffer, SequenceReplayBuffer)
    critics = [p.clone() for p in agent.critics.parameters()]
    for p in [*agent.actor.parameters(), *agent.critics.parameters()]:
        p.grad = None
    seq = buffer.sample(3, 6, torch.Generator().manual_seed(0))
    loss = -agent.sequence_policy_value(seq)
    loss.backward()
    assert all(p.grad is None for p in agent.critics.parameters())
    assert all(p.grad is not None for p in agent.actor.parameters())
    assert all(torch.equal(a, b) for a, b in zip(critics, agent.critics.parameters()))
    invalid = seq._replace(valid=torch.zeros_like(seq.valid))
    assert float(agent.critic_loss(invalid)[0].detach()) == 0.0
    assert float(agent.sequence_policy_value(invalid).detach()) == 0.0


# --- refusals, state, schedule ---------------------------------------------------------------


def test_the_action_cannot_enter_a_recurrent_critics_backbone():
    with pytest.raises(ConfigError, match=r"critic_action_input: 'observation' .* recurrent "
                                          r"backbone must read observations only"):
        build_ddpg(DDPGConfig(critic_action_input="observation"), context())
    agent = build_ddpg(DDPGConfig(buffer_size=300), context())  # auto: beside the features
    assert not agent.critics[0].joint and agent.recurrent


def test_buffer_smaller_than_one_sequence_is_a_config_error():
    with pytest.raises(ConfigError, match=r"algorithm.buffer_size: .* 5 steps per env, fewer "
                                          r"than the 6 steps"):
        agent_for(num_envs=3, buffer_size=15, batch_size=4, seq_len=4, burn_in=2)


def test_learning_waits_for_a_whole_sequence():
    agent = agent_for(num_envs=2, seq_len=4, burn_in=3, train_freq=2)
    g = torch.Generator().manual_seed(7)
    for step in range(1, 10):
        obs = torch.randn(2, 3, generator=g)
        agent.observe(outcome(g, obs, agent.act(obs)))
        metrics = agent.update()
        assert bool(metrics) == (step >= 7), step


def test_state_dict_round_trip_continues_bit_identically():
    agent = agent_for()
    drive(agent, torch.Generator().manual_seed(8), 20, invalid=True)
    blob = io.BytesIO()
    torch.save(agent.state_dict(), blob)
    blob.seek(0)
    twin = agent_for()
    twin.load_state_dict(torch.load(blob, weights_only=True))
    assert_state_equal(agent.state_dict(), twin.state_dict(), "after load")
    drive(agent, torch.Generator().manual_seed(9), 20, invalid=True)
    drive(twin, torch.Generator().manual_seed(9), 20, invalid=True)
    assert agent.critic_updates > 10
    assert_state_equal(agent.state_dict(), twin.state_dict(), "continued after load")
    with pytest.raises(ValueError, match="no recurrent memory"):
        agent.load_state_dict({k: v for k, v in agent.state_dict().items() if k != "memory"})


def test_recurrent_td3_conforms(plugins, tmp_path):
    """Smoke run, save/load, determinism, exact resume and episode starts, with an LSTM."""
    check_algorithm("td3", env_id="rlkit/Pendulum-v1", workdir=tmp_path, steps=128,
                    plugins=plugins, backbone=SMALL_LSTM,
                    params={"learning_starts": 32, "train_freq": 16, "gradient_steps": 2,
                            "batch_size": 16, "buffer_size": 200, "seq_len": 4, "burn_in": 2,
                            "critic_head_sizes": [16], "action_noise": "ornstein_uhlenbeck"})
