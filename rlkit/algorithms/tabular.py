"""Tabular Q-learning (Watkins, 1989) and SARSA (Rummery & Niranjan, 1994).

Both keep a table ``Q[s, a]`` of shape ``(n_states, n_actions)`` and move one entry per
transition towards a one-step TD target with step size ``alpha`` (``learning_rate``)::

    Q(s, a) <- Q(s, a) + alpha * (target - Q(s, a))
    Q-learning (off-policy):  target = r + gamma * max_a' Q(s', a')
    SARSA      (on-policy):   target = r + gamma * Q(s', a'),  a' the action actually taken in s'

A terminated episode has ``target = r``; a truncated one bootstraps from its final observation.
Both act epsilon-greedily, with ties between equal Q-values broken at random (on FrozenLake
every value starts at 0). The two differ only in the target, so one agent class serves both.

Batched over ``N`` environments, each update uses the table as it was before the batch. When
several environments update the same ``(s, a)`` in one batch, the entry moves by ``alpha``
times the *mean* of their TD errors -- one step towards their mean target -- so that many
environments in one state cannot overshoot as a sum of steps would.

SARSA needs the next action: a transition waits (per environment, in :meth:`state_dict`) until
the next transition reveals the action taken in its ``next_obs``, so each SARSA update applies
one step later. A truncated episode has no next action; it bootstraps from the expected value
under the epsilon-greedy policy (expected SARSA, van Seijen et al., 2009)::

    V(s') = (1 - epsilon) * max_a Q(s', a) + epsilon * mean_a Q(s', a)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium as gym
import torch
from torch import Tensor

from rlkit.buffers import check_allocation, storage_bytes
from rlkit.exploration import ScheduleExploration, linear
from rlkit.interfaces import BuildContext, Exploration, NanCheck, Transition
from rlkit.schedules import Schedule, Scheduled, value_at
from rlkit.transitions import TransitionSpec, check_transition
from rlkit.validation import IncompatibleError, param

METRICS_EVERY = 100
"""Report metrics on the first update and then every this many updates (averaged over them)."""


@dataclass(kw_only=True)
class TabularConfig:
    """Hyperparameters shared by tabular Q-learning and SARSA."""

    learning_rate: Scheduled = param(0.1, gt=0.0, le=1.0)
    """Step size alpha: a number or a schedule, e.g. ``{kind: linear, start: 0.5, end: 0.05}``."""
    gamma: float = param(0.99, ge=0.0, le=1.0)
    """Discount factor."""
    epsilon: Scheduled = param(default_factory=lambda: linear(1.0, 0.05, fraction=0.5),
                               ge=0.0, le=1.0)
    """Probability of a uniformly random action: a number or a schedule over training
    (default: linear from 1.0 to 0.05 over the first half). Ignored when the experiment
    configures an ``exploration:`` controller."""
    initial_q: float = 0.0
    """Initial value of every table entry; a value above the best return explores
    optimistically."""

    def __post_init__(self) -> None:
        _check_unit_interval("epsilon", self.epsilon, low_inclusive=True)
        _check_unit_interval("learning_rate", self.learning_rate, low_inclusive=False)


@dataclass(kw_only=True)
class QLearningConfig(TabularConfig):
    """Tabular Q-learning: off-policy one-step TD control (discrete observations and actions)."""


@dataclass(kw_only=True)
class SarsaConfig(TabularConfig):
    """Tabular SARSA: on-policy one-step TD control (discrete observations and actions)."""


def _check_unit_interval(name: str, value: Scheduled, *, low_inclusive: bool) -> None:
    if not isinstance(value, Schedule):
        return  # numbers are range-checked by param()
    low = "[0" if low_inclusive else "(0"
    for end, v in (("start", value.start), ("end", value.end)):
        if v > 1.0 or v < 0.0 or (v == 0.0 and not low_inclusive):
            raise ValueError(f"{name}.{end} must be in {low}, 1], got {v}")


class TableStep(NamedTuple):
    """One batch of transitions as table indices, on the agent's device.

    :param state: ``(N,)`` long, row of the observation.
    :param action: ``(N,)`` long, column of the action taken.
    :param reward: ``(N,)`` float.
    :param next_state: ``(N,)`` long, row of the true next (final, where ended) observation.
    :param terminated: ``(N,)`` bool.
    :param truncated: ``(N,)`` bool.
    :param valid: ``(N,)`` bool, ``False`` where the step only reset the environment.
    """

    state: Tensor
    action: Tensor
    reward: Tensor
    next_state: Tensor
    terminated: Tensor
    truncated: Tensor
    valid: Tensor


TDTarget = Callable[[Tensor, TableStep, Tensor | None, float, float], Tensor]
"""``target(q, step, next_action, gamma, epsilon) -> (N,)`` TD targets for ``step``."""


def q_learning_target(
    q: Tensor, step: TableStep, next_action: Tensor | None, gamma: float, epsilon: float
) -> Tensor:
    """``r + gamma * (1 - terminated) * max_a Q(s', a)``; ``next_action`` is not needed."""
    bootstrap = q[step.next_state].max(dim=1).values
    return step.reward + gamma * (~step.terminated) * bootstrap


def sarsa_target(
    q: Tensor, step: TableStep, next_action: Tensor | None, gamma: float, epsilon: float
) -> Tensor:
    """``r + gamma * Q(s', a')``; expected SARSA where truncated, ``r`` where terminated."""
    assert next_action is not None
    next_q = q[step.next_state]
    on_policy = next_q.gather(1, next_action.unsqueeze(1)).squeeze(1)
    expected = (1.0 - epsilon) * next_q.max(dim=1).values + epsilon * next_q.mean(dim=1)
    bootstrap = torch.where(step.truncated, expected, on_policy)
    return step.reward + gamma * (~step.terminated) * bootstrap


class TabularAgent:
    """An epsilon-greedy agent with a Q table, learning every step from ``target``.

    :param config: hyperparameters.
    :param ctx: spaces, device, seed, budget, exploration controller and nan policy.
    :param name: the registered algorithm name (for error messages).
    :param target: computes the TD targets (:func:`q_learning_target`, :func:`sarsa_target`).
    :param needs_next_action: ``True`` for on-policy targets: a transition is learned when the
        next transition of its environment shows the action taken next.
    """

    # What ``ctx.exploration.value(step)`` sets: the probability of a random action.
    exploration_knob: str = "epsilon"

    def __init__(
        self,
        config: TabularConfig,
        ctx: BuildContext,
        *,
        name: str,
        target: TDTarget,
        needs_next_action: bool,
    ) -> None:
        obs_space = _discrete(name, "observation", ctx.env.observation_space,
                              "use a wrapper that discretises observations (env.wrappers) into "
                              "a Discrete space", ("dqn", "ppo"))
        action_space = _discrete(name, "action", ctx.env.action_space,
                                 "use a wrapper that discretises actions (env.wrappers) into a "
                                 "Discrete space", ("ppo",))
        self.config = config
        self.device = ctx.device
        self.transition_spec = TransitionSpec.from_env(ctx.env, self.device, algorithm=name)
        """What :meth:`observe` accepts (:func:`rlkit.transitions.check_transition`)."""
        self.total_steps = max(int(ctx.total_steps), 1)
        self.nan_check: NanCheck = ctx.nan_check
        self.target = target
        self.needs_next_action = needs_next_action
        self.obs_start = int(obs_space.start)
        self.action_start = int(action_space.start)
        self.n_actions = int(action_space.n)
        rows = int(obs_space.n)
        check_allocation(storage_bytes(rows, [((self.n_actions,), torch.float32)]),
                         key="env.id", device=self.device,
                         what=f"a Q table of {rows:,} states x {self.n_actions:,} actions",
                         advice="use an environment with fewer states, or an algorithm that "
                                "learns a network (dqn, ppo)")
        self.q = torch.full((rows, self.n_actions), float(config.initial_q),
                            dtype=torch.float32, device=self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(ctx.seed)
        self.exploration: Exploration = (
            ctx.exploration if ctx.exploration is not None
            else ScheduleExploration(config.epsilon, ctx.total_steps))
        self.env_steps = 0
        self.updates = 0
        self._latest: TableStep | None = None  # observed, not learned yet
        self._pending: TableStep | None = None  # on-policy: waiting for its next action
        self._td_abs_sum = torch.zeros((), device=self.device)
        self._td_count = torch.zeros((), device=self.device)

    # --- ask/tell ------------------------------------------------------------------------

    @torch.no_grad()
    def act(self, obs: Tensor, explore: bool = True) -> Tensor:
        q = self.q[self._rows(obs)]
        if not explore:
            return q.argmax(dim=1) + self.action_start  # ties: lowest index
        n = q.shape[0]
        # Greedy with random tie-breaking: a random score for every maximal action.
        scores = torch.rand(q.shape, generator=self.generator, device=self.device)
        is_max = q == q.max(dim=1, keepdim=True).values
        greedy = torch.where(is_max, scores, -1.0).argmax(dim=1)
        random = torch.randint(self.n_actions, (n,), generator=self.generator,
                               device=self.device)
        explore_mask = (torch.rand(n, generator=self.generator, device=self.device)
                        < self.epsilon())
        return torch.where(explore_mask, random, greedy) + self.action_start

    def observe(self, transition: Transition) -> None:
        """Keep the transition for the next update, with the actions it says were taken (the
        agent's, or those the loop's owner put in their place).

        :raises rlkit.transitions.TransitionError: where a field does not fit the agent."""
        transition = check_transition(transition, self.transition_spec)
        if self._latest is not None:  # update() was skipped: learn in order, lose nothing
            self._learn()
        t = transition
        n = t.reward.shape[0]
        valid = (torch.ones(n, dtype=torch.bool, device=self.device) if t.valid is None
                 else t.valid.reshape(-1).to(self.device, torch.bool).clone())
        self._latest = TableStep(
            state=self._rows(t.obs),
            action=t.action.reshape(-1).to(self.device, torch.long) - self.action_start,
            reward=t.reward.reshape(-1).to(self.device, self.q.dtype).clone(),
            next_state=self._rows(t.next_obs),
            terminated=t.terminated.reshape(-1).to(self.device, torch.bool).clone(),
            truncated=t.truncated.reshape(-1).to(self.device, torch.bool).clone(),
            valid=valid,
        )
        self.env_steps += n

    def update(self) -> dict[str, float]:
        if self._latest is None or not self._learn():
            return {}
        self.updates += 1
        if self.updates != 1 and self.updates % METRICS_EVERY != 0:
            return {}
        td_error = self._td_abs_sum / self._td_count.clamp_min(1.0)
        self._td_abs_sum.zero_()
        self._td_count.zero_()
        return {
            "train/td_error": float(td_error),
            "train/epsilon": self.epsilon(),
            "train/learning_rate": self.learning_rate(),
        }

    # --- learning ------------------------------------------------------------------------

    def epsilon(self) -> float:
        """The current exploration rate."""
        return float(self.exploration.value(self.env_steps))

    def learning_rate(self) -> float:
        """The current step size alpha."""
        return value_at(self.config.learning_rate, min(self.env_steps / self.total_steps, 1.0))

    @torch.no_grad()
    def _learn(self) -> bool:
        """Apply the TD update the latest transition allows; ``False`` if none was ready."""
        latest, self._latest = self._latest, None
        assert latest is not None
        next_action = None
        if self.needs_next_action:
            step, self._pending = self._pending, latest
            if step is None:
                return False
            next_action = latest.action  # the action taken in step.next_state where it went on
        else:
            step = latest
        target = self.target(self.q, step, next_action, self.config.gamma, self.epsilon())
        self.nan_check.check("train/td_target", target,
                             "the environment returned a non-finite reward")
        self._apply(step, target)
        return True

    def _apply(self, step: TableStep, target: Tensor) -> None:
        """``Q[s, a] += alpha * mean TD error`` over the valid rows that share ``(s, a)``."""
        q_flat = self.q.view(-1)
        index = step.state * self.n_actions + step.action
        td = torch.where(step.valid, target - q_flat[index], 0.0)
        same = index.unsqueeze(1) == index.unsqueeze(0)  # (N, N): rows updating one entry
        contributes = same & step.valid.unsqueeze(0)
        mean_td = (contributes * td).sum(dim=1) / contributes.sum(dim=1).clamp_min(1)
        # Every row writes its first duplicate's value, so the duplicate writes agree exactly.
        first = same.to(torch.uint8).argmax(dim=1)
        q_flat[index] = q_flat[index] + self.learning_rate() * mean_td[first]
        self._td_abs_sum += td.abs().sum()
        self._td_count += step.valid.sum()

    def _rows(self, obs: Tensor) -> Tensor:
        return obs.reshape(-1).to(self.device, torch.long) - self.obs_start

    # --- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "q": self.q.clone(),
            "generator": self.generator.get_state(),
            "exploration": self.exploration.state_dict(),
            "env_steps": self.env_steps,
            "updates": self.updates,
            "latest": _step_state(self._latest),
            "pending": _step_state(self._pending),
            "td_abs_sum": self._td_abs_sum.clone(),
            "td_count": self._td_count.clone(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if tuple(state["q"].shape) != tuple(self.q.shape):
            raise ValueError(f"Q table of shape {tuple(state['q'].shape)} does not fit this "
                             f"environment's {tuple(self.q.shape)} (states, actions)")
        self.q.copy_(state["q"])
        self.generator.set_state(state["generator"].cpu())
        self.exploration.load_state_dict(state["exploration"])
        self.env_steps = int(state["env_steps"])
        self.updates = int(state["updates"])
        self._latest = self._load_step(state["latest"])
        self._pending = self._load_step(state["pending"])
        self._td_abs_sum.copy_(state["td_abs_sum"])
        self._td_count.copy_(state["td_count"])

    def _load_step(self, data: Mapping[str, Tensor] | None) -> TableStep | None:
        if data is None:
            return None
        return TableStep(**{k: data[k].to(self.device) for k in TableStep._fields})


def _step_state(step: TableStep | None) -> dict[str, Tensor] | None:
    return None if step is None else {k: v.clone() for k, v in step._asdict().items()}


def _discrete(name: str, what: str, space: gym.Space[Any], advice: str,
              alternatives: tuple[str, ...]) -> gym.spaces.Discrete:
    if not isinstance(space, gym.spaces.Discrete):
        raise IncompatibleError("algorithm.name", f"{name!r} keeps a table indexed by {what}, "
                                f"so it needs a Discrete {what} space, but the environment has "
                                f"{space}; {advice}", alternatives=alternatives)
    return space


def build_qlearning(params: QLearningConfig, ctx: BuildContext) -> TabularAgent:
    return TabularAgent(params, ctx, name="qlearning", target=q_learning_target,
                        needs_next_action=False)


def build_sarsa(params: SarsaConfig, ctx: BuildContext) -> TabularAgent:
    return TabularAgent(params, ctx, name="sarsa", target=sarsa_target, needs_next_action=True)
