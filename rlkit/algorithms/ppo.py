"""Proximal Policy Optimization (Schulman et al., 2017, https://arxiv.org/abs/1707.06347).

On-policy actor-critic: collect ``n_steps`` steps from each of ``N`` environments, estimate
advantages with GAE (Schulman et al., 2016), then take ``n_epochs`` passes of minibatch
gradient steps on the clipped surrogate objective::

    ratio   = exp(log_prob - old_log_prob)
    L_clip  = -mean(min(ratio * A, clip(ratio, 1 - clip_coef, 1 + clip_coef) * A))
    L       = L_clip + vf_coef * L_value - ent_coef * entropy

Discrete action spaces use a categorical policy, boxes a diagonal Gaussian with a learned,
state-independent log standard deviation (actions are clipped to the bounds when sent to the
environment). A ``Discrete(n, start=s)`` space receives ``index + s`` and its actions are
learned from as ``action - s``. Sampling and scoring use :mod:`rlkit.distributions`.
Truncated episodes bootstrap from the value of their final observation; terminated ones do
not.

**Actions taken in place of the agent's.** The rollout stores, per env, the action the
transition says was taken and its log-probability under the behaviour policy -- the policy
output computed by the ``act`` that chose the agent's action, kept until ``observe``, so no
second forward pass is needed:

* a discrete action: ``transition.action``, scored under the logits of that ``act`` (where the
  agent's action was kept, this is exactly the sampled action's log-probability);
* a continuous action: where ``transition.action`` equals, in every dimension, the clipped
  action ``act`` returned, the env received exactly the agent's action, and the unclipped
  sample and its log-probability are stored (clipping is part of the env, not of the policy);
  elsewhere ``transition.action`` itself is stored, scored under the Gaussian of that ``act``.

When ``transition.action`` is the very tensor ``act`` returned and was not changed in place
(its version counter is unchanged), nothing needs comparing or scoring: the trainer's own loop
pays nothing for this. The probability ratio ``pi / pi_old`` of an overridden action then
starts at 1, like that of any other, and learning follows the actions that happened.

**Recurrent policies** (``backbone: {name: lstm}`` or ``gru``). The agent keeps each env's
state (:class:`rlkit.memory.RecurrentMemory`), reset where an observed transition ends an
episode. The rollout stores where episodes began and, every ``seq_len`` steps, the state each
env acted from; the update replays the rollout as sequences of ``seq_len`` steps from those
stored states, resetting the state at the same steps as while acting, so the log-probabilities
and values of the first epoch equal those computed while acting (before any gradient step) and
nothing flows across an episode boundary. A truncated episode bootstraps from the value of its
final observation computed with the state that episode ended in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import gymnasium as gym
import torch
from torch import Tensor

from rlkit.algorithms.actor_critic import ActorCritic
from rlkit.buffers import RolloutBuffer, SequenceBatch
from rlkit.distributions import clip_to_box, from_discrete_space, to_discrete_space
from rlkit.interfaces import (
    BuildContext,
    NanCheck,
    Transition,
    recurrent_factory,
)
from rlkit.memory import RecurrentMemory
from rlkit.optim import (
    OptimizerConfig,
    clip_grad_norm,
    load_optimizer_state,
    make_optimizer,
    set_learning_rate,
)
from rlkit.schedules import Scheduled, value_at
from rlkit.transitions import TransitionSpec, check_transition
from rlkit.validation import param


@dataclass(kw_only=True)
class PPOConfig:
    """Proximal Policy Optimization with a clipped surrogate objective and GAE."""

    n_steps: int = param(2048, ge=1)
    """Steps collected from each environment per rollout (rollout size = n_steps * num_envs)."""
    batch_size: int = param(64, ge=1)
    """Minibatch size for the gradient steps."""
    n_epochs: int = param(10, ge=1)
    """Passes over each rollout."""
    gamma: float = param(0.99, ge=0.0, le=1.0)
    """Discount factor."""
    gae_lambda: float = param(0.95, ge=0.0, le=1.0)
    """GAE's bias/variance trade-off (1: Monte-Carlo returns, 0: one-step TD)."""
    clip_coef: Scheduled = param(0.2, ge=0.0)
    """Clipping range of the probability ratio: a number or a schedule."""
    clip_vf: float | None = param(None, gt=0.0)
    """Clip value-function updates to this range around the old values (None: no clipping)."""
    normalize_advantage: bool = True
    """Normalize advantages per minibatch to zero mean and unit std."""
    ent_coef: float = param(0.0, ge=0.0)
    """Entropy bonus coefficient (an ``exploration:`` controller, when configured, sets it
    instead: its value is the coefficient)."""
    vf_coef: float = param(0.5, ge=0.0)
    """Value loss coefficient."""
    max_grad_norm: float | None = param(0.5, gt=0.0)
    """Clip the global gradient norm to this (None: no clipping)."""
    target_kl: float | None = param(None, gt=0.0)
    """Stop the epochs early when the approximate KL divergence exceeds this."""
    share_backbone: bool = False
    """One backbone for policy and value (True) or one each (False)."""
    log_std_init: float = 0.0
    """Initial log standard deviation of the Gaussian policy (continuous actions)."""
    head_sizes: list[int] = field(default_factory=list)
    """Hidden tanh layers between the backbone's features and each head, one stack for the
    policy and one for the value ([]: linear heads). [64, 64] after an LSTM is
    Stable-Baselines3's MlpLstmPolicy."""
    seq_len: int | None = param(None, ge=1)
    """Recurrent backbones only: steps per training sequence (each starts from the state
    stored when it was collected; must divide n_steps). A minibatch holds batch_size //
    seq_len sequences. null: whole rollouts (n_steps)."""
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=3e-4))
    """Optimizer and learning rate (a number or a schedule)."""

    def __post_init__(self) -> None:
        if self.batch_size < 2 and self.normalize_advantage:
            raise ValueError("batch_size must be at least 2 when normalize_advantage is true")
        if any(size < 1 for size in self.head_sizes):
            raise ValueError(f"head_sizes must be positive, got {self.head_sizes}")
        if self.seq_len is not None and self.n_steps % self.seq_len:
            raise ValueError(f"seq_len ({self.seq_len}) must divide n_steps ({self.n_steps}): "
                             f"a rollout is cut into whole sequences")


class _Acted(NamedTuple):
    """What a training :meth:`PPO.act` computed, kept for :meth:`PPO.observe` to store.

    :param action: the sampled action (continuous: before clipping to the bounds).
    :param log_prob: its log-probability.
    :param value: ``V(obs)``.
    :param out: the policy output (logits or Gaussian mean), to score another action.
    :param sent: what ``act`` returned.
    :param version: ``sent``'s version counter then (-1: unknown), so that a change made to it
        in place shows.
    """

    action: Tensor
    log_prob: Tensor
    value: Tensor
    out: Tensor
    sent: Tensor
    version: int


class PPO:
    """The PPO agent (ask/tell). See the module docstring for the objective.

    :param config: hyperparameters.
    :param ctx: spaces, device, seed, budget, backbone factory and nan policy.
    """

    name = "ppo"
    """The registered name, for messages."""

    # What ``ctx.exploration.value(step)`` sets: the entropy coefficient (A2C/A3C inherit it).
    exploration_knob: str = "ent_coef"

    def __init__(self, config: PPOConfig, ctx: BuildContext) -> None:
        self.config = config
        self.device = ctx.device
        self.total_steps = ctx.total_steps
        self.nan_check: NanCheck = ctx.nan_check
        self.exploration = ctx.exploration
        spec = ctx.env
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            self.model = ActorCritic(recurrent_factory(ctx.backbone),
                                     spec.observation_space, spec.action_space,
                                     share_backbone=config.share_backbone,
                                     log_std_init=config.log_std_init,
                                     algorithm=self.name,
                                     head_sizes=config.head_sizes).to(self.device)
        self.params = list(self.model.parameters())
        self.optimizer = make_optimizer(self.params, config.optimizer)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(ctx.seed)
        self.recurrent = self.model.recurrent
        self.memory: RecurrentMemory | None = (
            RecurrentMemory(self.model.initial_state, spec.num_envs) if self.recurrent else None)
        self.buffer = RolloutBuffer(num_steps=config.n_steps, num_envs=spec.num_envs,
                                    observation_space=spec.observation_space,
                                    action_space=spec.action_space, device=self.device,
                                    size_key="algorithm.n_steps",
                                    state_shape=self.model.state_shape if self.recurrent
                                    else None, seq_len=config.seq_len)
        self.action_space = spec.action_space
        self.action_start = (int(spec.action_space.start)
                             if isinstance(spec.action_space, gym.spaces.Discrete) else 0)
        """Added to the policy's indices: ``Discrete(n, start)`` actions are ``start ..
        start + n - 1``."""
        self.transition_spec = TransitionSpec.from_env(spec, self.device, algorithm=self.name)
        """What :meth:`observe` accepts (:func:`rlkit.transitions.check_transition`)."""
        if isinstance(spec.action_space, gym.spaces.Box):
            self.low = torch.as_tensor(spec.action_space.low, device=self.device)
            self.high = torch.as_tensor(spec.action_space.high, device=self.device)
        self.env_steps = 0
        self.updates = 0
        self._pending: _Acted | None = None  # what the last training act() computed
        # recurrent: the state acted from, the episode starts applied, the state after acting
        self._pending_state: tuple[Tensor, Tensor, Tensor] | None = None
        self._pending_cut: Tensor | None = None  # envs restarted between act and observe

    # --- ask/tell ------------------------------------------------------------------------

    @torch.no_grad()
    def act(self, obs: Tensor, explore: bool = True) -> Tensor:
        if self.memory is not None:
            return self._act_recurrent(obs, explore, self.memory)
        if not explore:
            return self._to_env(self.model.mode(self.model.policy(obs)))
        out, value = self.model(obs)
        action, log_prob = self.model.sample(out, self.generator)
        sent = self._to_env(action)
        self._pending = _Acted(action, log_prob, value, out, sent, _version(sent))
        return sent

    def _act_recurrent(self, obs: Tensor, explore: bool, memory: RecurrentMemory) -> Tensor:
        state = memory.state
        if obs.shape[0] != state.shape[0]:
            raise ValueError(
                f"{self.name}: act() got a batch of {obs.shape[0]} observations, but this agent "
                f"keeps recurrent state for {state.shape[0]} environments; act on all of them, or "
                f"inside `with rlkit.separate_state(agent, num_envs={obs.shape[0]}):` for "
                f"{obs.shape[0]} other environments")
        out, value, new_state = self.model.step(obs, state)
        starts = memory.take_starts()
        memory.state = new_state
        if not explore:
            return self._to_env(self.model.mode(out))
        action, log_prob = self.model.sample(out, self.generator)
        sent = self._to_env(action)
        if not memory.separated:  # what observe() stores: only the training stream learns
            self._pending = _Acted(action, log_prob, value, out, sent, _version(sent))
            self._pending_state = (state, starts, new_state)
        return sent

    def observe(self, transition: Transition) -> None:
        """Store the transition in the rollout, with the action it says was taken (see the
        module docstring for actions taken in place of the agent's).

        :raises rlkit.transitions.TransitionError: where a field does not fit the agent."""
        transition = check_transition(transition, self.transition_spec)
        if self.memory is not None:
            self._observe_recurrent(transition, self.memory)
            return
        if self._pending is None:  # driven without act(): score the given actions
            with torch.no_grad():
                out, value = self.model(transition.obs)
                action = self._index(transition.action)
                log_prob, _ = self.model.log_prob_entropy(out, action)
        else:
            acted, self._pending = self._pending, None
            action, log_prob = self._taken(acted, transition.action)
            value = acted.value
        self.buffer.add(obs=transition.obs, action=action, reward=transition.reward,
                        next_obs=transition.next_obs, terminated=transition.terminated,
                        truncated=transition.truncated, value=value, log_prob=log_prob,
                        valid=transition.valid)
        self.env_steps += transition.reward.shape[0]

    def _observe_recurrent(self, transition: Transition, memory: RecurrentMemory) -> None:
        if self._pending is None or self._pending_state is None:
            raise RuntimeError("a recurrent PPO agent learns only from transitions of its own "
                               "act(obs, explore=True) calls: call act before each observe")
        acted = self._pending
        action, log_prob = self._taken(acted, transition.action)
        value = acted.value
        state, starts, new_state = self._pending_state
        self._pending = self._pending_state = None
        truncated = transition.truncated
        if self._pending_cut is not None:  # begin_episodes() between act and observe
            truncated = truncated | (self._pending_cut & ~transition.terminated)
            self._pending_cut = None
        # A truncated episode bootstraps from V(final obs) under the state it ended in. On the
        # CPU, skip the pass when nothing was truncated; on a GPU, asking would stall it.
        if self.device.type != "cpu" or bool(truncated.any()):
            with torch.no_grad():
                boot = self.model.value_step(transition.next_obs, new_state)
        else:
            boot = torch.zeros_like(value)
        self.buffer.add(obs=transition.obs, action=action, reward=transition.reward,
                        next_obs=transition.next_obs, terminated=transition.terminated,
                        truncated=truncated, value=value, log_prob=log_prob,
                        valid=transition.valid, episode_start=starts, boot_value=boot,
                        state=state)
        ended = transition.terminated | truncated
        if transition.valid is not None:
            ended = ended | ~transition.valid  # next-step autoreset: that row was a reset
        memory.begin(ended)
        self.env_steps += transition.reward.shape[0]

    def begin_episodes(self, mask: Tensor | None = None) -> None:
        """Reset the recurrent state of the envs in ``mask`` (``(N,)`` bool; None: all) before
        the next :meth:`act`; nothing for a feed-forward policy.

        In the training stream, an env whose last transition had not ended its episode is
        treated as truncated there: its return bootstraps from the value of that transition's
        ``next_obs`` under the state it had reached (called between ``act`` and ``observe``,
        the transition still to be observed is the one treated so).
        """
        memory = self.memory
        if memory is None:
            return
        buf = self.buffer
        if not memory.separated and self._pending is not None:
            # acted, not yet observed: that transition ends these episodes (see observe)
            rows = torch.ones_like(memory.starts) if mask is None else mask.to(
                device=memory.starts.device, dtype=torch.bool)
            self._pending_cut = rows if self._pending_cut is None else self._pending_cut | rows
        elif not memory.separated and buf.step > 0:
            t = buf.step - 1
            cut = ~(buf.terminated[t] | buf.truncated[t])
            if mask is not None:
                cut &= mask.to(device=cut.device, dtype=torch.bool)
            if bool(cut.any()):
                with torch.no_grad():
                    boot = self.model.value_step(buf.next_obs[t], memory.state)
                buf.boot_value[t] = torch.where(cut, boot, buf.boot_value[t])
                buf.truncated[t] |= cut
        memory.begin(mask)

    def separate_state(self, num_envs: int) -> contextlib.AbstractContextManager[None]:
        """A block in which :meth:`act` uses a fresh recurrent state for ``num_envs`` other
        environments (evaluation); the training state is untouched."""
        if self.memory is None:
            return contextlib.nullcontext()
        return self.memory.separate(num_envs)

    def update(self) -> dict[str, float]:
        if not self.buffer.full:
            return {}
        cfg = self.config
        progress = min(self.env_steps / self.total_steps, 1.0)
        lr = set_learning_rate(self.optimizer, cfg.optimizer, progress)
        clip_coef = value_at(cfg.clip_coef, progress)
        ent_coef = (cfg.ent_coef if self.exploration is None
                    else float(self.exploration.value(self.env_steps)))
        buf = self.buffer
        with torch.no_grad():
            next_values = self._next_values()
        buf.compute(next_values, cfg.gamma, cfg.gae_lambda)
        self.nan_check.check("train/advantages", buf.advantages,
                             "non-finite rewards or values; check the env's rewards or lower "
                             "algorithm.optimizer.lr")
        stats: dict[str, list[Tensor]] = {k: [] for k in (
            "policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "grad_norm")}
        stop = False
        for _ in range(cfg.n_epochs):
            for batch, out, values, mask in self._forward_batches():
                mean = _mean if mask is None else _masked_mean(mask)
                log_prob, entropy = self.model.log_prob_entropy(out, batch.action)
                log_ratio = log_prob - batch.log_prob
                ratio = log_ratio.exp()
                adv = batch.advantage
                if cfg.normalize_advantage and adv.numel() > 1:
                    if mask is None:
                        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                    else:
                        centred = adv - mean(adv)
                        adv = centred / (_masked_std(centred, mask) + 1e-8)
                policy_loss = mean(torch.max(
                    -adv * ratio, -adv * ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef)))
                if cfg.clip_vf is None:
                    value_loss = 0.5 * mean((values - batch.return_).pow(2))
                else:
                    clipped = batch.value + (values - batch.value).clamp(-cfg.clip_vf, cfg.clip_vf)
                    value_loss = 0.5 * mean(torch.max((values - batch.return_).pow(2),
                                                      (clipped - batch.return_).pow(2)))
                entropy_mean = mean(entropy)
                loss = policy_loss + cfg.vf_coef * value_loss
                if ent_coef:  # without a bonus, backward need not walk the entropy's graph
                    loss = loss - ent_coef * entropy_mean
                self.nan_check.check("train/loss", loss,
                                     "the loss diverged; lower algorithm.optimizer.lr, or scale "
                                     "rewards/observations (env.wrappers)")
                for weight in self.params:
                    weight.grad = None
                loss.backward()
                if cfg.max_grad_norm is not None:
                    grad_norm = clip_grad_norm(self.params, cfg.max_grad_norm)
                    self.nan_check.check("train/grad_norm", grad_norm,
                                         "exploding gradients; lower algorithm.optimizer.lr or "
                                         "algorithm.max_grad_norm")
                    stats["grad_norm"].append(grad_norm.detach())
                self.optimizer.step()
                with torch.no_grad():
                    approx_kl = mean((ratio - 1.0) - log_ratio)
                    stats["policy_loss"].append(policy_loss.detach())
                    stats["value_loss"].append(value_loss.detach())
                    stats["entropy"].append(entropy_mean.detach())
                    stats["approx_kl"].append(approx_kl)
                    stats["clip_fraction"].append(
                        mean(((ratio - 1.0).abs() > clip_coef).float()))
                if cfg.target_kl is not None and float(approx_kl) > 1.5 * cfg.target_kl:
                    stop = True
                    break
            if stop:
                break
        self.updates += 1
        metrics = {f"train/{k}": float(torch.stack(v).mean()) for k, v in stats.items() if v}
        metrics["train/explained_variance"] = _explained_variance(buf.value, buf.returns)
        metrics["train/learning_rate"] = lr
        metrics["train/clip_coef"] = clip_coef
        metrics["train/ent_coef"] = ent_coef
        if not self.model.discrete:
            metrics["train/std"] = float(self.model.log_std.detach().exp().mean())
        buf.reset()
        return metrics

    def _next_values(self) -> Tensor:
        """``V(next_obs)`` ``(T, N)`` for GAE (only where the episode goes on or was truncated
        does it matter)."""
        buf = self.buffer
        if self.memory is None:
            return self.model.value(buf.next_obs.flatten(0, 1)).view_as(buf.reward)
        # Where an episode goes on, next_obs[t] is obs[t + 1] and the state is the one acted
        # from at t + 1: V was computed then. The last step's uses the current state (rows
        # that ended have none to bootstrap from or a stored boot_value), truncated steps the
        # value computed with the state their episode ended in.
        last = self.model.value_step(buf.next_obs[-1], self.memory.state)
        following = torch.cat((buf.value[1:], last.unsqueeze(0)))
        return torch.where(buf.truncated, buf.boot_value, following)

    def _forward_batches(self) -> Iterator[tuple[Any, Tensor, Tensor, Tensor | None]]:
        """Minibatches with the current policy's outputs and values: ``(batch, policy
        output, values, mask)``, fields flat ``(B, ...)``; ``mask`` (recurrent sequences) is
        1.0 for the rows to learn from, None where all are."""
        cfg = self.config
        if self.memory is None:
            for batch in self.buffer.minibatches(cfg.batch_size, self.generator):
                out, values = self.model(batch.obs)
                yield batch, out, values, None
            return
        for seq in self.buffer.sequences(cfg.batch_size, self.generator):
            out, values, _ = self.model.sequence(seq.obs, seq.state, seq.starts)
            flat = SequenceBatch._make([*(x.flatten(0, 1) for x in seq[:-1]), seq.state])
            yield flat, out.flatten(0, 1), values.flatten(), flat.valid.float()

    # --- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "buffer": self.buffer.state_dict(),
            "env_steps": self.env_steps,
            "updates": self.updates,
            "exploration": None if self.exploration is None else self.exploration.state_dict(),
        }
        if self.memory is not None:
            state["memory"] = self.memory.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        self.generator.set_state(state["generator"].cpu())
        self.buffer.load_state_dict(state["buffer"])
        self.env_steps = int(state["env_steps"])
        self.updates = int(state["updates"])
        if self.exploration is not None and state.get("exploration") is not None:
            self.exploration.load_state_dict(state["exploration"])
        if self.memory is not None:
            if "memory" not in state:
                raise ValueError("the state has no recurrent memory: it was saved by a PPO "
                                 "agent with a feed-forward backbone")
            self.memory.load_state_dict(state["memory"])
        self._pending = None
        self._pending_state = None
        self._pending_cut = None

    # --- helpers -------------------------------------------------------------------------

    def _taken(self, acted: _Acted, taken: Tensor) -> tuple[Tensor, Tensor]:
        """The action to learn from and its log-probability under the behaviour policy: the
        agent's own sample where the env received it, else ``taken`` scored under the policy
        output of the ``act`` that chose (see the module docstring)."""
        if taken is acted.sent and acted.version >= 0 and _version(taken) == acted.version:
            return acted.action, acted.log_prob  # the agent's own action, untouched
        with torch.no_grad():
            if self.model.discrete:
                index = from_discrete_space(taken, self.action_start)
                scored, _ = self.model.log_prob_entropy(acted.out, index)
                return index, scored
            scored, _ = self.model.log_prob_entropy(acted.out, taken)
            same = (taken == self._to_env(acted.action)).all(dim=-1)  # exactly what was sent
            return (torch.where(same.unsqueeze(-1), acted.action, taken),
                    torch.where(same, acted.log_prob, scored))

    def _to_env(self, action: Tensor) -> Tensor:
        """What the env receives: an index offset by the space's ``start``, or the Gaussian
        sample clipped to the bounds (:mod:`rlkit.distributions`)."""
        if self.model.discrete:
            return to_discrete_space(action, self.action_start)
        return clip_to_box(action, self.low, self.high)

    def _index(self, action: Tensor) -> Tensor:
        """A transition's action as the policy scores it: a discrete action as an index
        from 0; a continuous one as it is."""
        if self.model.discrete:
            return from_discrete_space(action, self.action_start)
        return action


def _version(tensor: Tensor) -> int:
    """``tensor``'s version counter (it grows with every change in place); -1 where it has
    none (a tensor made in inference mode)."""
    try:
        return int(tensor._version)
    except RuntimeError:
        return -1


def _mean(x: Tensor) -> Tensor:
    return x.mean()


def _masked_mean(mask: Tensor) -> Callable[[Tensor], Tensor]:
    """The mean over the rows where ``mask`` is 1.0."""
    count = mask.sum().clamp_min(1.0)
    return lambda x: (x * mask).sum() / count


def _masked_std(centred: Tensor, mask: Tensor) -> Tensor:
    """The sample standard deviation of already centred values over ``mask``'s rows."""
    return ((centred.pow(2) * mask).sum() / (mask.sum() - 1.0).clamp_min(1.0)).sqrt()


def _explained_variance(values: Tensor, returns: Tensor) -> float:
    var = returns.var()
    return float("nan") if float(var) == 0.0 else float(1.0 - (returns - values).var() / var)


def build_ppo(params: PPOConfig, ctx: BuildContext) -> PPO:
    return PPO(params, ctx)
