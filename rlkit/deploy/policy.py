"""An inference-only policy: a trained agent's acting network, nothing else.

:func:`load_policy` reads a run directory or checkpoint and keeps only the network that
chooses actions -- no optimizer or replay buffer is built, an actor-critic's critic is dropped
once the weights are loaded, and an env is built only to read spaces the checkpoint does not
record (see **Spaces**)::

    policy = rlkit.load_policy("runs/ppo-CartPole-v1-20260101-120000")
    action = policy(obs)              # one observation (4,) -> one action
    actions = policy(batch)           # (B, 4) -> (B,): many simulated agents, one call

What the agent did around its network is part of the policy: the observation's conversion to
the space's dtype and float, ``uint8`` image scaling (inside the ``cnn`` backbone),
``NormalizeObservation`` statistics of the run's env wrappers (frozen at the checkpoint's
values), and the action's post-processing (argmax, clipping to the Box, DDPG's ``tanh``
rescaled to the bounds). Numpy in gives numpy out; a tensor in gives a tensor out, on the
input's device.

**Spaces.** Checkpoints of the trainer and of :meth:`rlkit.Agent.save
<rlkit.deploy.agent.Agent.save>` record their observation and action spaces, and the policy is
built from them alone. A checkpoint that records none (an older one): the env is built once,
with one copy (``num_envs=1``), only to read its spaces, and closed -- unless
``observation_space`` and ``action_space`` are given.

**Recurrent policies** (``lstm``, ``gru``) keep no state themselves: the caller holds it, one
row per simulated agent, and passes it in and gets the next one back::

    state = policy.initial_state(batch=64)      # zeros (64, *policy.state_shape)
    actions, state = policy(obs, state)         # the next step's state
    state[done] = 0                             # those agents begin new episodes

**Threads.** A policy is never changed by a call: calls from many threads at once are safe,
and each caller keeps its own recurrent state. Stochastic policies (``deterministic=False``)
share one random generator, so the samples two threads get depend on their interleaving.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from rlkit import checkpoint as ckpt
from rlkit.config import Experiment, resolve
from rlkit.environments import _torch_dtype as observation_dtype
from rlkit.errors import CheckpointError, RunError
from rlkit.spaces import space_from_data
from rlkit.validation import ConfigError, in_context

if TYPE_CHECKING:
    from rlkit.plugins import Plugins

__all__ = ["FAMILIES", "Policy", "PolicyNet", "load_policy"]

FAMILIES = {"ppo": "actor_critic", "a2c": "actor_critic", "a3c": "actor_critic",
            "dqn": "q_network", "ddpg": "actor", "td3": "actor",
            "qlearning": "table", "sarsa": "table"}
"""The built-in algorithms whose acting network :func:`load_policy` rebuilds, by family."""

_NORMALIZER = re.compile(r"^envs\.0\.((?:env\.)*)obs_rms\.mean$")
"""The first sub-env's ``NormalizeObservation`` mean in a trainer checkpoint's env state;
each ``env.`` is one wrapper outside it."""

_OBSERVATION_MODULES = ("gymnasium.wrappers.stateful_observation",
                        "gymnasium.wrappers.transform_observation")


class PolicyNet(nn.Module):
    """Observations -> actions, pre- and post-processing included: what a :class:`Policy`
    calls and what :mod:`rlkit.deploy.export` traces.

    ``forward(obs)`` takes a batch ``(B, *obs_shape)`` in the observation space's dtype and
    returns ``(B, *action_shape)`` actions; a recurrent net takes and returns the state too:
    ``forward(obs, state) -> (action, next_state)``, states ``(B, *state_shape)`` float32.

    :param body: the backbone (features from observations); None for a table.
    :param head: features -> policy output (logits, Q-values, Gaussian mean, pre-``tanh``).
    :param output: ``argmax``, ``clip`` (to ``low``/``high``), ``tanh`` (rescaled to
        ``low``/``high``) or ``table`` (a lookup of the greedy action of each state).
    :param action_shape: one action's shape.
    :param low: flat lower bounds of a Box action space; ``high`` likewise.
    :param action_start: added to discrete actions (the action space's ``start``).
    :param normalizer: ``(mean, std)`` of ``NormalizeObservation``: observations become
        ``(obs - mean) / std`` before the body.
    :param table: ``(n_states,)`` greedy actions, for ``output="table"``.
    :param obs_start: the Discrete observation space's ``start`` (tables).
    :param state_shape: one observation's recurrent state, None for feed-forward bodies.
    """

    obs_mean: Tensor
    obs_std: Tensor
    low: Tensor
    high: Tensor
    table: Tensor

    def __init__(self, *, body: nn.Module | None, head: nn.Module | None, output: str,
                 action_shape: tuple[int, ...], low: Tensor | None = None,
                 high: Tensor | None = None, action_start: int = 0,
                 normalizer: tuple[Tensor, Tensor] | None = None, table: Tensor | None = None,
                 obs_start: int = 0, state_shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.output = output
        self.action_shape = action_shape
        self.action_start = action_start
        self.obs_start = obs_start
        self.state_shape = state_shape
        self.normalized = normalizer is not None
        if normalizer is not None:
            self.register_buffer("obs_mean", normalizer[0].float())
            self.register_buffer("obs_std", normalizer[1].float())
        if low is not None and high is not None:
            self.register_buffer("low", low.float())
            self.register_buffer("high", high.float())
        if table is not None:
            self.register_buffer("table", table.long())

    @property
    def recurrent(self) -> bool:
        return self.state_shape is not None

    def forward(self, obs: Tensor, state: Tensor | None = None) -> Any:
        x = self.prepare(obs)
        if self.output == "table":
            return self.table[x.long().reshape(-1) - self.obs_start]
        out, state = self.raw(x, state)
        action = self.post(out)
        return action if state is None else (action, state)

    def prepare(self, obs: Tensor) -> Tensor:
        """What the run's env wrappers did that the policy does itself: normalisation."""
        if not self.normalized:
            return obs
        return (obs.float() - self.obs_mean) / self.obs_std

    def raw(self, x: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """The head's output (logits, Q-values, Gaussian mean, pre-``tanh``) and the state."""
        assert self.body is not None and self.head is not None
        if state is None:
            return self.head(self.body(x)), None
        features, state = self.body(x, state)
        return self.head(features), state

    def post(self, out: Tensor) -> Tensor:
        """The action the agent would send to the env for the head's output ``out``."""
        if self.output == "argmax":
            action = out.argmax(dim=-1)
            return action + self.action_start if self.action_start else action
        if self.output == "tanh":  # DDPG/TD3: [-1, 1] rescaled to the bounds
            unit = torch.tanh(out)
            return (self.low + (unit + 1.0) * 0.5 * (self.high - self.low)).reshape(
                (-1, *self.action_shape))
        return torch.maximum(torch.minimum(out, self.high), self.low).reshape(
            (-1, *self.action_shape))


class Policy:
    """A trained agent's deterministic (or sampled) policy; see the module docstring.

    Call it: ``policy(obs)`` for a feed-forward policy, ``policy(obs, state)`` for a recurrent
    one (``state=None``: episodes that begin now). Built by :func:`load_policy`.

    :param net: the acting network, on ``device``.
    :param observation_space: one observation's space (after the run's env wrappers).
    :param action_space: one action's space.
    :param info: what the policy was made from (algorithm, env id, checkpoint, ...).
    :param deterministic: greedy / distribution mean (True) or sampled actions.
    :param log_std: the Gaussian policy's log standard deviation (sampling only).
    :param seed: seeds the generator of sampled actions.
    """

    def __init__(self, net: PolicyNet, observation_space: gym.Space[Any],
                 action_space: gym.Space[Any], info: dict[str, Any], *, deterministic: bool,
                 log_std: Tensor | None = None, seed: int | None = None) -> None:
        self.net = net.eval().requires_grad_(False)
        self.observation_space = observation_space
        self.action_space = action_space
        self.info = info
        self.deterministic = deterministic
        tensors = [*net.parameters(), *net.buffers()]
        self.device = tensors[0].device if tensors else torch.device("cpu")
        self.obs_shape: tuple[int, ...] = tuple(observation_space.shape or ())
        self.obs_dtype = torch.float32 if net.normalized else observation_dtype(observation_space)
        self.state_shape: tuple[int, ...] | None = net.state_shape
        """One observation's recurrent state (``None``: a feed-forward policy)."""
        self._log_std = log_std
        self._generator = torch.Generator(device=self.device)
        if seed is not None:
            self._generator.manual_seed(seed)

    @property
    def recurrent(self) -> bool:
        return self.state_shape is not None

    def initial_state(self, batch: int | None = None, *, tensor: bool = False) -> Any:
        """Zeros: the state of ``batch`` agents beginning an episode (``None``: one agent, no
        batch dimension), as a numpy array, or a tensor on the policy's device."""
        if self.state_shape is None:
            raise TypeError(f"{self._name()}: a feed-forward policy keeps no state; call "
                            f"policy(obs).")
        shape = self.state_shape if batch is None else (batch, *self.state_shape)
        zeros = torch.zeros(shape, device=self.device)
        return zeros if tensor else zeros.cpu().numpy()

    @torch.no_grad()
    def __call__(self, obs: Any, state: Any = None) -> Any:
        """Actions for one observation or a batch (and, recurrent, the next state)."""
        as_numpy = not isinstance(obs, Tensor)
        x = torch.as_tensor(np.asarray(obs)) if as_numpy else obs
        where = x.device
        single = self._single(tuple(x.shape))
        x = x.to(self.device, self.obs_dtype)
        if single:
            x = x.unsqueeze(0)
        if self.net.output == "table":
            self._check_states(x)
        if self.state_shape is None:
            if state is not None:
                raise TypeError(f"{self._name()}: a feed-forward policy keeps no state; call "
                                f"policy(obs) without one.")
            action = self._act(x, None)[0]
            return self._out(action, single, as_numpy, where)
        s = self._state(state, x.shape[0], single)
        action, next_state = self._act(x, s)
        assert next_state is not None
        return (self._out(action, single, as_numpy, where),
                self._out(next_state, single, as_numpy, where))

    def _act(self, x: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor | None]:
        net = self.net
        if self.deterministic or net.output == "table":
            result = net(x, state)
            return result if isinstance(result, tuple) else (result, None)
        out, state = net.raw(net.prepare(x), state)
        if net.output == "argmax":  # categorical
            probs = torch.softmax(out.float(), dim=-1)
            action = torch.multinomial(probs, 1, generator=self._generator).squeeze(-1)
            return action + net.action_start if net.action_start else action, state
        assert self._log_std is not None
        noise = torch.randn(out.shape, generator=self._generator, device=out.device)
        return net.post(out + noise * self._log_std.exp()), state

    def _check_states(self, x: Tensor) -> None:
        """A table has one row per state: an observation outside the space has none."""
        space = self.observation_space
        low, n = int(space.start), int(space.n)  # type: ignore[attr-defined]
        outside = (x < low) | (x >= low + n)
        if bool(outside.any()):
            raise ValueError(f"{self._name()}: observation {int(x[outside][0])} is outside "
                             f"the observation space {space}; the table has no row for it.")

    def _single(self, shape: tuple[int, ...]) -> bool:
        if shape == self.obs_shape:
            return True
        if len(shape) == len(self.obs_shape) + 1 and shape[1:] == self.obs_shape:
            return False
        expected = ", ".join(str(d) for d in self.obs_shape)
        batch = f"(B, {expected})" if expected else "(B,)"
        raise ValueError(
            f"{self._name()}: an observation of shape {shape} does not fit this policy: "
            f"expected {self.obs_shape} for one observation or {batch} for a batch "
            f"(observation space {self.observation_space}).")

    def _state(self, state: Any, batch: int, single: bool) -> Tensor:
        assert self.state_shape is not None
        if state is None:
            return torch.zeros((batch, *self.state_shape), device=self.device)
        s = torch.as_tensor(np.asarray(state)) if not isinstance(state, Tensor) else state
        expected = self.state_shape if single else (batch, *self.state_shape)
        if tuple(s.shape) != expected:
            raise ValueError(f"{self._name()}: a recurrent state of shape {tuple(s.shape)} does "
                             f"not fit: expected {expected} for "
                             f"{'one observation' if single else f'a batch of {batch}'} "
                             f"(policy.initial_state({'' if single else batch}) gives it).")
        s = s.to(self.device, torch.float32)
        return s.unsqueeze(0) if single else s

    @staticmethod
    def _out(value: Tensor, single: bool, as_numpy: bool, where: torch.device) -> Any:
        if single:
            value = value[0]
        return value.cpu().numpy() if as_numpy else value.to(where)

    def _name(self) -> str:
        return f"policy of {self.info.get('checkpoint', '?')}"

    def __repr__(self) -> str:
        kind = "recurrent, " if self.recurrent else ""
        return (f"Policy({self.info.get('algorithm')!r} on {self.info.get('env_id')!r}, {kind}"
                f"observation_space={self.observation_space}, action_space={self.action_space}, "
                f"deterministic={self.deterministic}, device={str(self.device)!r})")


def load_policy(
    path: str | Path,
    *,
    device: str = "cpu",
    deterministic: bool = True,
    plugins: Plugins | None = None,
    observation_space: gym.Space[Any] | None = None,
    action_space: gym.Space[Any] | None = None,
    trust_config: bool = False,
    seed: int | None = None,
) -> Policy:
    """The policy of a trained agent, ready to call; see the module docstring.

    :param path: a run directory (its newest checkpoint that loads) or a checkpoint file.
    :param device: where the network runs (``cpu``, ``cuda``, ``cuda:N``, ``auto``).
    :param deterministic: greedy / the distribution's mean; False samples from the policy's
        distribution (``ppo``, ``a2c``, ``a3c``; the others' policies are deterministic).
    :param plugins: the plugin session (default: rlkit's own plugins, and the installed ones
        only where the run names an algorithm or backbone rlkit does not provide).
    :param observation_space: for a checkpoint that records no spaces and whose env cannot be
        built here: one observation's space (as the agent saw it); ``action_space`` likewise.
    :param trust_config: build the env (only to read its spaces) even if the stored config
        imports modules or uses wrappers that neither gymnasium nor a plugin provides.
    :param seed: seeds the sampling of a stochastic policy.
    :raises CheckpointError: no checkpoint, a damaged one, or weights that do not fit.
    :raises ConfigError: an algorithm whose network is not a built-in one, or no spaces.
    """
    file, state = ckpt.load_run(path)
    experiment, plugins = _experiment(state["config"], file, plugins)
    name = experiment.algorithm.name
    family = FAMILIES.get(name)
    if family is None:
        raise ConfigError(
            f"{file}: load_policy rebuilds the acting networks of rlkit's built-in algorithms "
            f"({', '.join(FAMILIES)}); {name!r} comes from a plugin. Load it with "
            f"rlkit.load_agent({str(file)!r}) and call agent.act(obs, explore=False).",
            key="algorithm.name")
    if not deterministic and family != "actor_critic":
        raise ValueError(f"load_policy: {name!r} learns a deterministic policy (its exploration "
                         f"happens only while training); deterministic=False is for ppo, a2c "
                         f"and a3c.")
    obs_space, act_space = _spaces(state, experiment, file, plugins, observation_space,
                                   action_space, trust_config)
    normalizer = _normalizer(state.get("env"), experiment, file)
    target = _device(device)
    agent_state = state["agent"]
    with torch.random.fork_rng(devices=[]):  # initial weights are overwritten: keep the RNG
        torch.manual_seed(0)
        net, log_std = _build(family, experiment, plugins, agent_state, obs_space, act_space,
                              normalizer, file)
    info = {"checkpoint": str(file), "algorithm": name, "backbone": experiment.backbone.name,
            "env_id": experiment.env.id, "rlkit_version": state.get("rlkit_version"),
            "env_steps": _env_steps(state)}
    return Policy(net.to(target), obs_space, act_space, info, deterministic=deterministic,
                  log_std=None if log_std is None else log_std.to(target), seed=seed)


# --- the stored config and the spaces ----------------------------------------------------


def _experiment(data: Any, file: Path,
                plugins: Plugins | None) -> tuple[Experiment, Plugins]:
    """The stored config, resolved for acting only: its exploration, fine-tuning source and
    env changes are left out (they play no part in choosing actions), and rlkit's own plugins
    are tried before any installed one is loaded."""
    from rlkit.plugins import Plugins

    data = dict(data)
    for section in ("exploration", "init_from"):
        data.pop(section, None)
    if isinstance(data.get("env"), Mapping):
        env = dict(data["env"])
        env.pop("changes", None)
        if env.get("vectorization") == "ray":  # needs Ray only to build envs in actors
            env["vectorization"] = "sync"
        data["env"] = env
    if plugins is not None:
        return _resolved(data, plugins, file), plugins
    own = Plugins.load(autoload=False)
    try:
        return resolve(data, own, source=str(file)), own
    except ConfigError:  # a plugin's algorithm or backbone, or a config no session accepts
        everything = Plugins.load()
        return _resolved(data, everything, file), everything


def _resolved(data: Mapping[str, Any], plugins: Plugins, file: Path) -> Experiment:
    try:
        return resolve(data, plugins, source=str(file))
    except ConfigError as exc:
        raise ConfigError(f"{file}: in the config stored in this checkpoint: {exc}",
                          key=exc.key, source=str(file)) from None


def _spaces(state: Mapping[str, Any], experiment: Experiment, file: Path, plugins: Plugins,
            observation_space: gym.Space[Any] | None, action_space: gym.Space[Any] | None,
            trust_config: bool) -> tuple[gym.Space[Any], gym.Space[Any]]:
    """The recorded spaces, else the given ones, else the env's (built once, one copy)."""
    recorded = state.get("spaces")
    if isinstance(recorded, Mapping):
        try:
            return (space_from_data(recorded.get("observation"), "spaces.observation"),
                    space_from_data(recorded.get("action"), "spaces.action"))
        except ValueError as exc:
            raise CheckpointError(f"{file}: {exc} The checkpoint is damaged.") from None
    if observation_space is not None and action_space is not None:
        return observation_space, action_space
    from rlkit.environments import EnvOptions, make_env, refuse_untrusted

    env = experiment.env
    options = EnvOptions(
        id=env.id, num_envs=1,
        vectorization=env.vectorization if env.vectorization in ("auto", "sync") else "sync",
        autoreset_mode=env.autoreset_mode, kwargs=env.kwargs,
        wrappers=tuple((w.name, w.kwargs) for w in env.wrappers), imports=tuple(env.imports))
    if not trust_config:
        refuse_untrusted(options, plugins.wrappers, source=str(file))
    try:
        built = make_env(options, num_envs=1)
    except (ConfigError, RunError) as exc:
        raise ConfigError(
            f"{file}: records no observation and action spaces, and its env {env.id!r} cannot "
            f"be built here to read them ({exc}). Install what provides the env, give the "
            f"spaces (load_policy(path, observation_space=..., action_space=...)), or save the "
            f"agent with rlkit.Agent.save, which records them.", key="env.id",
            source=str(file)) from None
    try:
        return built.single_observation_space, built.single_action_space
    finally:
        built.close()


def _normalizer(env_state: Any, experiment: Experiment,
                file: Path) -> tuple[Tensor, Tensor] | None:
    """``(mean, std)`` of the run's ``NormalizeObservation`` wrapper, from the env state the
    checkpoint holds; None when the run does not normalise observations."""
    wrappers = [w.name for w in experiment.env.wrappers]
    listed = [i for i, n in enumerate(wrappers) if n.rpartition(".")[2].rpartition(":")[2]
              == "NormalizeObservation"]
    values: Mapping[str, Any] = {}
    if isinstance(env_state, Mapping) and isinstance(env_state.get("env"), Mapping):
        values = env_state["env"]
    found = [(k, m) for k in values if (m := _NORMALIZER.match(k))]
    if not found:
        if listed:
            raise CheckpointError(
                f"{file}: the run normalises observations (env.wrappers[{listed[0]}]: "
                f"{wrappers[listed[0]]}), but this checkpoint holds no statistics of it (envs "
                f"in other processes, async or ray, are not captured); a policy without them "
                f"would act on unscaled observations. Use a checkpoint of a run with "
                f"vectorization: sync.")
        return None
    if len(found) > 1:
        raise CheckpointError(f"{file}: the run's env has {len(found)} NormalizeObservation "
                              f"wrappers; a policy can apply one.")
    key, match = found[0]
    prefix = "envs.0." + match.group(1)
    outside = match.group(1).count("env.")
    for i in range(len(wrappers) - outside, len(wrappers)):
        if _changes_observations(wrappers[i]):
            raise ConfigError(
                f"{file}: env.wrappers[{i}] ({wrappers[i]}) changes observations after "
                f"NormalizeObservation; the policy applies the normalisation itself, to the "
                f"observation as it enters that wrapper, so it cannot take what {wrappers[i]} "
                f"produces. Put NormalizeObservation after every observation wrapper.",
                key=f"env.wrappers[{i}]", source=str(file))
    mean = _decoded(values[key])
    var = _decoded(values[f"{prefix}obs_rms.var"])
    epsilon = float(_decoded(values.get(f"{prefix}epsilon", 1e-8)))
    std = torch.as_tensor(np.sqrt(np.asarray(var, np.float64) + epsilon), dtype=torch.float32)
    return torch.as_tensor(np.asarray(mean), dtype=torch.float32), std


def _changes_observations(name: str) -> bool:
    """Whether a gymnasium wrapper (by its configured name) transforms observations; other
    packages' wrappers are taken not to."""
    from rlkit.environments import wrapper_reference

    module_name, _, attr = wrapper_reference(name).partition(":")
    if not module_name.startswith("gymnasium"):
        return False
    cls = getattr(gym.wrappers, attr, None)
    return isinstance(cls, type) and (issubclass(cls, gym.ObservationWrapper)
                                      or cls.__module__ in _OBSERVATION_MODULES)


def _decoded(value: Any) -> Any:
    """A value of :mod:`rlkit.snapshot`'s encoding as a plain number or array."""
    if isinstance(value, Mapping):
        if "__nd__" in value:
            return value["__nd__"].numpy()
        if "__tensor__" in value:
            return value["__tensor__"].numpy()
        if "__np__" in value:
            return value["value"]
    return value


def _device(name: str) -> torch.device:
    from rlkit.loop import resolve_device  # the trainer's rule, with this call's names

    return resolve_device(name, what="load_policy: device", instead="device='cpu'")


def _env_steps(state: Mapping[str, Any]) -> int | None:
    trainer = state.get("trainer")
    steps = trainer.get("env_steps") if isinstance(trainer, Mapping) else None
    return steps if isinstance(steps, int) else None


# --- rebuilding the acting network -------------------------------------------------------


def _build(family: str, experiment: Experiment, plugins: Plugins, agent: Mapping[str, Any],
           obs_space: gym.Space[Any], act_space: gym.Space[Any],
           normalizer: tuple[Tensor, Tensor] | None,
           file: Path) -> tuple[PolicyNet, Tensor | None]:
    """The family's network with the checkpoint's weights, and PPO's ``log_std`` (Box)."""
    name = experiment.algorithm.name
    spec = plugins.backbone(experiment.backbone.name)

    def backbone(space: gym.Space[Any], *, recurrent: bool = True) -> nn.Module:
        try:
            return spec.build(experiment.backbone.params, space)
        except ConfigError as exc:
            raise experiment.locate(in_context(exc, key="backbone.name"),
                                    key="backbone.name") from None

    def weights(module: nn.Module, key: str) -> None:
        if key not in agent:
            raise CheckpointError(f"{file}: agent.{key}: missing; the checkpoint was not "
                                  f"written by rlkit's {name!r} algorithm.")
        with ckpt.restoring(file, f"agent.{key}"):
            module.load_state_dict(agent[key])

    low = high = None
    if isinstance(act_space, gym.spaces.Box):
        low = torch.as_tensor(np.asarray(act_space.low, np.float32).reshape(-1))
        high = torch.as_tensor(np.asarray(act_space.high, np.float32).reshape(-1))
    shape: tuple[int, ...] = tuple(act_space.shape or ())
    common: dict[str, Any] = {"action_shape": shape, "low": low, "high": high,
                              "normalizer": normalizer}
    try:
        if family == "actor_critic":
            from rlkit.algorithms.actor_critic import ActorCritic

            params = experiment.algorithm.params
            model = ActorCritic(backbone, obs_space, act_space,
                                share_backbone=params.share_backbone,
                                log_std_init=params.log_std_init, algorithm=name)
            weights(model, "model")
            body = model.actor_body
            start = int(act_space.start) if model.discrete else 0  # type: ignore[attr-defined]
            net = PolicyNet(body=body, head=model.policy_head,
                            output="argmax" if model.discrete else "clip",
                            action_start=start, state_shape=_state_shape(body), **common)
            return net, None if model.discrete else model.log_std.detach().clone()
        if family == "q_network":
            from rlkit.algorithms.dqn import QNetwork

            q = QNetwork(backbone(obs_space), _discrete(act_space, name, "action"))
            weights(q, "q")
            return PolicyNet(body=q.backbone, head=q.head, output="argmax",
                             action_start=int(act_space.start),  # type: ignore[attr-defined]
                             state_shape=_state_shape(q.backbone), **common), None
        if family == "actor":
            from rlkit.algorithms.ddpg_networks import Actor

            actor = Actor(backbone(obs_space), int(math.prod(shape)))
            weights(actor, "actor")
            return PolicyNet(body=actor.backbone, head=actor.head, output="tanh",
                             state_shape=_state_shape(actor.backbone), **common), None
    except ConfigError as exc:
        raise experiment.locate(exc, key="algorithm.name") from None
    return _table(agent, obs_space, act_space, name, normalizer, file), None


def _table(agent: Mapping[str, Any], obs_space: gym.Space[Any], act_space: gym.Space[Any],
           name: str, normalizer: tuple[Tensor, Tensor] | None, file: Path) -> PolicyNet:
    """A tabular agent's greedy action per state (ties: the lowest action, as it acts)."""
    rows = _discrete(obs_space, name, "observation")
    columns = _discrete(act_space, name, "action")
    q = agent.get("q")
    if not isinstance(q, Tensor) or tuple(q.shape) != (rows, columns):
        got = tuple(q.shape) if isinstance(q, Tensor) else type(q).__name__
        raise CheckpointError(f"{file}: agent.q: a table of shape ({rows}, {columns}) expected "
                              f"(states, actions), the checkpoint holds {got}.")
    if normalizer is not None:
        raise ConfigError(f"{file}: a Q table is indexed by the observation itself; "
                          f"NormalizeObservation does not apply to {name!r}.")
    start = int(act_space.start)  # type: ignore[attr-defined]
    return PolicyNet(body=None, head=None, output="table", action_shape=(),
                     table=q.float().argmax(dim=1) + start,
                     obs_start=int(obs_space.start))  # type: ignore[attr-defined]


def _discrete(space: gym.Space[Any], name: str, what: str) -> int:
    if not isinstance(space, gym.spaces.Discrete):
        raise ConfigError(f"{name!r} needs a Discrete {what} space, the checkpoint's is "
                          f"{space}.", key="algorithm.name")
    return int(space.n)


def _state_shape(body: nn.Module) -> tuple[int, ...] | None:
    if getattr(body, "recurrent", False) is not True:
        return None
    return tuple(body.state_shape)  # type: ignore[arg-type]
