"""What a program that owns the loop tells an agent: ``rlkit.transition`` builds a transition
from numpy arrays, lists and numbers; every built-in algorithm's ``observe`` converts numpy
inputs and refuses a field of the wrong batch size, shape, dtype or device with a message
naming the field and the algorithm; and every algorithm learns from the actions the transition
says were taken, where the program overrode the agent's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlkit
from rlkit.algorithms.a3c import A2C, A2CConfig
from rlkit.algorithms.ddpg import DDPG, DDPGConfig, TD3Config
from rlkit.algorithms.dqn import DQN, DQNConfig
from rlkit.algorithms.ppo import PPO, PPOConfig
from rlkit.algorithms.tabular import (
    QLearningConfig,
    SarsaConfig,
    build_qlearning,
    build_sarsa,
)
from rlkit.backbones.mlp import MLPConfig, build_mlp
from rlkit.backbones.rnn import LSTMConfig, build_lstm
from rlkit.interfaces import BuildContext, EnvSpec, NanCheck, Transition
from rlkit.optim import OptimizerConfig
from rlkit.transitions import TransitionError, TransitionSpec, check_transition

N = 4
OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
STATES = gym.spaces.Discrete(5)
ACTIONS = gym.spaces.Discrete(3)
BOX = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)


def mlp(space: gym.Space, recurrent: bool = False) -> torch.nn.Module:
    return build_mlp(MLPConfig(hidden_sizes=[16]), space)


def lstm(space: gym.Space, recurrent: bool = False) -> torch.nn.Module:
    return build_lstm(LSTMConfig(hidden_size=8), space)


def context(obs_space: gym.Space, action_space: gym.Space, backbone: Callable = mlp,
            num_envs: int = N) -> BuildContext:
    return BuildContext(env=EnvSpec(observation_space=obs_space, action_space=action_space,
                                    num_envs=num_envs),
                        device=torch.device("cpu"), seed=0, total_steps=100_000,
                        backbone=backbone, exploration=None, nan_check=NanCheck("raise"))


ppo_config = {"n_steps": 8, "batch_size": 16, "n_epochs": 1}
AGENTS: dict[str, tuple[str, Callable[[], Any]]] = {
    # test id: (the name messages give, build)
    "ppo": ("ppo", lambda: PPO(PPOConfig(**ppo_config), context(OBS, ACTIONS))),
    "ppo-box": ("ppo", lambda: PPO(PPOConfig(**ppo_config), context(OBS, BOX))),
    "ppo-lstm": ("ppo", lambda: PPO(PPOConfig(**ppo_config), context(OBS, ACTIONS, lstm))),
    "a2c": ("a2c", lambda: A2C(A2CConfig(n_steps=8), context(OBS, ACTIONS))),
    "dqn": ("dqn", lambda: DQN(DQNConfig(buffer_size=256, batch_size=8, learning_starts=10**6),
                               context(OBS, ACTIONS))),
    "dqn-lstm": ("dqn", lambda: DQN(DQNConfig(buffer_size=256, batch_size=8,
                                              learning_starts=10**6),
                                    context(OBS, ACTIONS, lstm))),
    "ddpg": ("ddpg", lambda: DDPG(DDPGConfig(buffer_size=256, learning_starts=0),
                                  context(OBS, BOX))),
    "td3": ("td3", lambda: DDPG(TD3Config(buffer_size=256, learning_starts=0),
                                context(OBS, BOX))),
    "qlearning": ("qlearning", lambda: build_qlearning(QLearningConfig(),
                                                       context(STATES, ACTIONS))),
    "sarsa": ("sarsa", lambda: build_sarsa(SarsaConfig(), context(STATES, ACTIONS))),
}
DISCRETE_ACTIONS = ["ppo", "ppo-lstm", "a2c", "dqn", "dqn-lstm", "qlearning", "sarsa"]


def observations(agent: Any, g: torch.Generator) -> torch.Tensor:
    space = agent.transition_spec.observation_space
    if isinstance(space, gym.spaces.Discrete):
        return torch.randint(int(space.n), (N,), generator=g)
    return torch.rand((N, *space.shape), generator=g) * 2 - 1


def acted(agent: Any, g: torch.Generator) -> Transition:
    """A well-formed transition after one training act of ``agent``."""
    obs = observations(agent, g)
    action = agent.act(obs)
    flags = torch.zeros(N, dtype=torch.bool)
    return Transition(obs, action, torch.randn(N, generator=g), observations(agent, g),
                      flags, flags.clone(), None)


def steps_of(agent: Any) -> int:
    return agent.env_steps


# --- rlkit.transition and the check ----------------------------------------------------------

SPEC16 = TransitionSpec(observation_space=OBS, action_space=ACTIONS, num_envs=16, device="cpu",
                        algorithm="ppo")


def fields16(**changes: Any) -> dict[str, Any]:
    fields = {"obs": np.zeros((16, 3)), "action": np.zeros(16, dtype=np.int64),
              "reward": np.zeros(16), "next_obs": np.zeros((16, 3)),
              "terminated": np.zeros(16, dtype=bool), "truncated": np.zeros(16, dtype=bool)}
    return {**fields, **changes}


def test_transition_converts_numpy_lists_and_numbers_to_the_agents_tensors():
    t = rlkit.transition(obs=np.random.rand(16, 3), action=list(range(3)) * 5 + [0],
                         reward=np.arange(16), next_obs=np.random.rand(16, 3).astype(np.float64),
                         terminated=[0, 1] * 8, truncated=False, like=SPEC16)
    assert isinstance(t, Transition) and t.valid is None
    expected = [((16, 3), torch.float32), ((16,), torch.int64), ((16,), torch.float32),
                ((16, 3), torch.float32), ((16,), torch.bool), ((16,), torch.bool)]
    assert [(tuple(x.shape), x.dtype) for x in t[:6]] == expected
    assert t.terminated.tolist() == [False, True] * 8 and not t.truncated.any()
    assert t.reward.tolist() == list(range(16))


def test_transition_takes_an_agent_and_refuses_an_object_without_a_spec():
    agent = AGENTS["dqn"][1]()
    t = rlkit.transition(np.zeros((N, 3)), [0, 1, 2, 0], [1.0] * N, np.zeros((N, 3)),
                         [False] * N, [False] * N, like=agent)
    assert t.action.dtype == torch.int64
    with pytest.raises(TypeError, match=r"like=.*object has no transition_spec"):
        rlkit.transition(np.zeros((N, 3)), [0] * N, [0.0] * N, np.zeros((N, 3)), [False] * N,
                         [False] * N, like=object())


@pytest.mark.parametrize("changes, message", [
    ({"reward": np.zeros((16, 1))}, r"reward: expected shape \(16,\), got numpy array of "
                                    r"shape \(16, 1\); give one value per env"),
    ({"action": np.zeros(8, dtype=np.int64)}, r"action: batch of 8, this agent acts for 16 "
                                              r"envs"),
    ({"obs": np.array([object()] * 16)}, r"obs: numpy array of dtype object cannot be "
                                         r"converted"),
    ({"obs": [[0.0, 0.0, 0.0], [0.0]] * 8}, r"obs: list cannot be converted"),
    ({"action": np.zeros(16)}, r"action: numpy array of dtype float64 does not fit the "
                               r"action space Discrete\(3\), stored as torch.int64"),
    ({"terminated": [2] * 16}, r"terminated: flags must be booleans or 0/1, got 2"),
    ({"obs": np.zeros((16, 4))}, r"obs: expected shape \(16, 3\), got numpy array of shape "
                                 r"\(16, 4\)"),
    ({"next_obs": torch.zeros(16, 3, device="meta")}, r"next_obs: tensor on meta, but this "
                                                       r"agent \(ppo\) keeps its tensors on cpu"),
])
def test_transition_names_the_field_that_does_not_fit(changes, message):
    with pytest.raises(TransitionError, match=r"^ppo rlkit.transition\(\): " + message):
        rlkit.transition(**fields16(**changes), like=SPEC16)


def test_a_well_formed_transition_passes_the_check_as_it_is():
    f = torch.zeros(16, dtype=torch.bool)
    t = Transition(torch.zeros(16, 3), torch.zeros(16, dtype=torch.int64), torch.zeros(16),
                   torch.zeros(16, 3), f, f, f)
    assert check_transition(t, SPEC16) is t
    assert check_transition(t._replace(valid=None), SPEC16).valid is None
    # an exact conversion of a tensor's dtype is made; a new transition is returned
    converted = check_transition(t._replace(action=t.action.int()), SPEC16)
    assert converted is not t and converted.action.dtype == torch.int64


# --- observe: every built-in algorithm --------------------------------------------------------

@pytest.mark.parametrize("which", list(AGENTS))
def test_observe_converts_numpy_inputs(which):
    agent = AGENTS[which][1]()
    g = torch.Generator().manual_seed(0)
    t = acted(agent, g)
    host = Transition(t.obs.numpy(), t.action.numpy().copy(), t.reward.double().numpy(),
                      t.next_obs.numpy(), [int(x) for x in t.terminated], False,
                      np.ones(N, dtype=bool))
    agent.observe(host)
    assert steps_of(agent) == N
    if isinstance(agent, PPO):
        buf = agent.buffer
        torch.testing.assert_close(buf.obs[0], t.obs)
        torch.testing.assert_close(buf.reward[0], t.reward)
        assert buf.action.dtype == t.action.dtype


def wrong(t: Transition, case: str) -> Transition:
    """``t`` with one field made wrong in the way ``case`` names."""
    if case == "batch":
        return t._replace(action=t.action[: N // 2])
    if case == "reward":
        return t._replace(reward=t.reward.unsqueeze(1))
    if case == "obs shape":
        return t._replace(obs=torch.cat([t.obs.reshape(N, -1).float()] * 2, dim=1))
    if case == "float action":
        return t._replace(action=t.action.float())
    if case == "device":
        return t._replace(next_obs=torch.empty(t.next_obs.shape, dtype=t.next_obs.dtype,
                                               device="meta"))
    if case == "int flags":
        return t._replace(truncated=t.truncated.long())
    if case == "object":
        return t._replace(obs=np.array([object()] * N))
    raise AssertionError(case)


MESSAGES = {
    "batch": r"action: batch of 2, this agent acts for 4 envs",
    "reward": r"reward: expected shape \(4,\), got shape \(4, 1\)",
    "obs shape": r"obs: expected shape \(4,( 3)?\), got shape \(4, (6|2)\); one observation",
    "float action": r"action: dtype torch.float32 does not fit the action space Discrete\(3\)",
    "device": r"next_obs: tensor on meta, but this agent \(\w+\) keeps its tensors on cpu",
    "int flags": r"truncated: dtype torch.int64 does not fit flags, stored as torch.bool",
    "object": r"obs: numpy array of dtype object cannot be converted",
}


@pytest.mark.parametrize("case", list(MESSAGES))
@pytest.mark.parametrize("which", list(AGENTS))
def test_observe_refuses_a_field_that_does_not_fit_naming_it_and_the_algorithm(which, case):
    if case == "float action" and which not in DISCRETE_ACTIONS:
        pytest.skip("a float action fits a Box action space")
    name, build = AGENTS[which]
    agent = build()
    t = acted(agent, torch.Generator().manual_seed(1))
    with pytest.raises(TransitionError, match=rf"^{name} observe\(\): {MESSAGES[case]}"):
        agent.observe(wrong(t, case))
    assert steps_of(agent) == 0  # refused before anything was stored
    agent.observe(t)  # the agent is as it was: the right transition is still accepted
    assert steps_of(agent) == N


def test_dqn_refuses_a_batch_of_8_for_16_envs():
    agent = DQN(DQNConfig(buffer_size=256, learning_starts=10**6),
                context(OBS, ACTIONS, num_envs=16))
    obs = torch.rand(16, 3)
    action = agent.act(obs)
    f = torch.zeros(8, dtype=torch.bool)
    half = Transition(obs[:8], action[:8], torch.zeros(8), obs[:8], f, f, None)
    with pytest.raises(TransitionError, match="dqn observe.*obs: batch of 8, this agent acts "
                                              "for 16 envs"):
        agent.observe(half)
    assert len(agent.buffer) == 0


# --- the actions taken are the ones learned from ----------------------------------------------

def override(action: torch.Tensor, rows: slice = slice(0, 2)) -> torch.Tensor:
    """The program's rule: in ``rows``, action 1 is replaced by 0 (a new tensor)."""
    taken = action.clone()
    taken[rows] = torch.where(taken[rows] == 1, 0, taken[rows])
    return taken


def categorical_log_prob(agent: PPO, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logits = agent.model.policy(obs)
    return torch.log_softmax(logits, -1).gather(-1, action.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("in_place", [False, True], ids=["new tensor", "in place"])
def test_ppo_stores_the_taken_discrete_action_and_its_behaviour_log_prob(in_place):
    agent = AGENTS["ppo"][1]()
    g = torch.Generator().manual_seed(2)
    taken_all, obs_all, sampled_all = [], [], []
    for _ in range(agent.config.n_steps):
        t = acted(agent, g)
        sampled = t.action.clone()
        if in_place:  # the program edits the tensor act returned
            t.action[:2] = torch.where(t.action[:2] == 1, 0, t.action[:2])
            taken = t.action
        else:
            taken = override(t.action)
            t = t._replace(action=taken)
        agent.observe(t)
        taken_all.append(taken.clone())
        obs_all.append(t.obs)
        sampled_all.append(sampled)
    taken, obs, sampled = map(torch.stack, (taken_all, obs_all, sampled_all))
    assert bool((sampled[:, :2] == 1).any()), "the override never happened"
    buf = agent.buffer
    assert torch.equal(buf.action, taken) and not bool((buf.action[:, :2] == 1).any())
    expected = categorical_log_prob(agent, obs.flatten(0, 1), taken.flatten()).view_as(taken)
    torch.testing.assert_close(buf.log_prob, expected, rtol=0, atol=1e-6)


def test_ppo_scores_only_when_the_program_changed_something():
    """The trainer's own loop passes act's tensor untouched: no scoring pass at all."""
    agent = AGENTS["ppo"][1]()

    def fail(*args: Any) -> None:
        raise AssertionError("scored an action that was the agent's own")

    agent.model.log_prob_entropy = fail  # type: ignore[method-assign]
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        t = acted(agent, g)
        sampled, log_prob = agent._pending.action, agent._pending.log_prob
        agent.observe(t)
        step = agent.buffer.step - 1
        assert torch.equal(agent.buffer.action[step], sampled)
        assert torch.equal(agent.buffer.log_prob[step], log_prob)


def test_ppo_keeps_the_unclipped_sample_where_the_env_got_its_clipped_value():
    """A safety limit of +-0.5 in envs 0 and 1: there, the rows the limit changed store the
    taken action scored under the Gaussian of act; every other row stores the unclipped
    sample (the env received exactly its clipped value) and its log-probability."""
    agent = PPO(PPOConfig(**ppo_config, log_std_init=1.0), context(OBS, BOX))
    g = torch.Generator().manual_seed(4)
    changed_rows = kept_clipped = 0
    for _ in range(agent.config.n_steps):
        t = acted(agent, g)
        pending = agent._pending
        taken = t.action.clone()
        taken[:2] = taken[:2].clamp(-0.5, 0.5)
        agent.observe(t._replace(action=taken))
        step = agent.buffer.step - 1
        stored, stored_lp = agent.buffer.action[step], agent.buffer.log_prob[step]
        changed = (taken != t.action).any(dim=1)
        for row in range(N):
            if changed[row]:
                changed_rows += 1
                assert torch.equal(stored[row], taken[row])
                std = agent.model.log_std.exp()
                density = torch.distributions.Normal(pending.out[row], std)
                torch.testing.assert_close(stored_lp[row],
                                           density.log_prob(taken[row]).sum(), rtol=0,
                                           atol=1e-5)
            else:
                kept_clipped += int(not torch.equal(pending.action[row], t.action[row]))
                assert torch.equal(stored[row], pending.action[row])
                assert torch.equal(stored_lp[row], pending.log_prob[row])
    assert changed_rows and kept_clipped, "both rules must have been exercised"


def test_ppo_learns_from_the_overridden_actions():
    """Reward 1 where the action taken is 0, else 0; the program always replaces the agent's 1
    by 0. The update scores the taken actions, and learning from them raises P(0) alone;
    learning from the agent's own samples would credit 1 like 0 (both end in reward 1), and
    with this seed ends with P(1) near 0.9. Threshold P(0) > 0.9 after 20 updates, seed 1
    (seeds 0-3 give 0.96-0.99)."""
    ctx = context(OBS, ACTIONS)
    ctx.seed = 1
    agent = PPO(PPOConfig(n_steps=16, batch_size=64, n_epochs=4,
                          optimizer=OptimizerConfig(lr=0.03)), ctx)
    scored: list[torch.Tensor] = []
    log_prob_entropy = agent.model.log_prob_entropy

    def spy(out: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scored.append(actions.clone())
        return log_prob_entropy(out, actions)

    obs = torch.zeros(N, 3)
    for i in range(16 * 20):
        action = agent.act(obs)
        taken = torch.where(action == 1, 0, action)
        flags = torch.zeros(N, dtype=torch.bool)
        agent.observe(Transition(obs, taken, (taken == 0).float(), obs, flags, flags, None))
        if i == 15:  # the first update: what does it learn from?
            stored = agent.buffer.action.flatten().clone()
            agent.model.log_prob_entropy = spy  # type: ignore[method-assign]
        agent.update()
        agent.model.log_prob_entropy = log_prob_entropy  # type: ignore[method-assign]
    assert scored and all(torch.equal(torch.sort(a).values, torch.sort(stored).values)
                          for a in scored), "the update scored other actions than the taken"
    assert not bool((stored == 1).any())
    probs = torch.softmax(agent.model.policy(obs[:1]).detach(), -1)[0]
    assert float(probs[0]) > 0.9, probs


def test_recurrent_ppo_stores_taken_actions_that_replay_to_their_log_probs():
    """Overridden actions in a recurrent rollout: the stored log-probabilities are those the
    sequences replayed from the stored states give for the taken actions."""
    agent = AGENTS["ppo-lstm"][1]()
    g = torch.Generator().manual_seed(5)
    taken_all = []
    for _ in range(agent.config.n_steps):
        t = acted(agent, g)
        taken = override(t.action)
        ended = torch.rand(N, generator=g) < 0.2
        agent.observe(t._replace(action=taken, terminated=ended))
        taken_all.append(taken)
    buf = agent.buffer
    assert buf.full and torch.equal(buf.action, torch.stack(taken_all))
    with torch.no_grad():
        for seq in buf.sequences(16, torch.Generator().manual_seed(0)):
            out, _, _ = agent.model.sequence(seq.obs, seq.state, seq.starts)
            log_prob, _ = agent.model.log_prob_entropy(out, seq.action)
            torch.testing.assert_close(log_prob, seq.log_prob, rtol=0, atol=1e-5)


def test_an_act_in_inference_mode_is_scored_like_an_override():
    agent = AGENTS["ppo"][1]()
    obs = torch.rand(N, 3)
    with torch.inference_mode():
        action = agent.act(obs)
    flags = torch.zeros(N, dtype=torch.bool)
    agent.observe(Transition(obs, action, torch.zeros(N), obs, flags, flags, None))
    torch.testing.assert_close(agent.buffer.log_prob[0],
                               categorical_log_prob(agent, obs, agent.buffer.action[0]))


@pytest.mark.parametrize("which", ["dqn", "dqn-lstm", "qlearning", "sarsa"])
def test_off_policy_discrete_agents_store_the_taken_actions(which):
    agent = AGENTS[which][1]()
    g = torch.Generator().manual_seed(6)
    taken_all, sampled_all = [], []
    for _ in range(12):
        t = acted(agent, g)
        taken = override(t.action)
        agent.observe(t._replace(action=taken))
        if which in ("qlearning", "sarsa"):
            assert torch.equal(agent._latest.action, taken)
        agent.update()
        taken_all.append(taken)
        sampled_all.append(t.action)
    assert bool((torch.stack(sampled_all)[:, :2] == 1).any()), "the override never happened"
    if which == "dqn":
        assert torch.equal(agent.buffer.action[: 12 * N], torch.cat(taken_all))
    elif which == "dqn-lstm":
        assert torch.equal(agent.buffer.action[:12], torch.stack(taken_all))


@pytest.mark.parametrize("which", ["ddpg", "td3"])
def test_ddpg_and_td3_store_the_taken_action_normalised(which):
    agent = AGENTS[which][1]()
    g = torch.Generator().manual_seed(7)
    for step in range(6):
        t = acted(agent, g)
        taken = t.action.clone()
        taken[:2] = taken[:2].clamp(-0.5, 0.5)  # a safety limit, in the env's scale
        agent.observe(t._replace(action=taken))
        rows = slice(step * N, (step + 1) * N)
        # the bounds are +-2: the normalised action is half the env's
        torch.testing.assert_close(agent.buffer.action[rows], taken / 2.0, rtol=0, atol=1e-6)
