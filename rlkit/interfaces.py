"""The contracts between rlkit's parts: transitions, algorithms, backbones, exploration.

Everything that crosses these boundaries is a batch of torch tensors on the agent's device:
the first dimension is always the number of parallel environments ``N``.

An *algorithm* is an ask/tell object, so that rlkit's trainer or a simulator written by someone
else can drive it::

    actions = agent.act(obs)                 # ask
    ...step the environment...
    agent.observe(Transition(obs, actions, reward, next_obs, terminated, truncated))  # tell
    metrics = agent.update()                 # learns when its own schedule says so

Plugins provide algorithms, backbones and exploration controllers through the registration
hooks in :mod:`rlkit.hookspecs`; each registration names a hyperparameter dataclass that the
config layer validates YAML against, and a ``build`` function.

**Episode starts and separate state** (optional methods; feed-forward agents need neither).
An agent with memory (a recurrent backbone) keeps one state per environment and starts it
afresh where an observed transition ends an episode. Whoever owns the loop can also start
episodes explicitly, and act on other environments without touching the training state::

    agent.begin_episodes(mask)               # (N,) bool: these envs begin new episodes
    with agent.separate_state(num_envs=8):   # a fresh state for 8 other envs (evaluation)
        actions = agent.act(eval_obs, explore=False)
        agent.begin_episodes(eval_done)

Call them through :func:`begin_episodes` and :func:`separate_state`, which do nothing for
agents that do not define them.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

import gymnasium as gym
import torch
from torch import Tensor, nn

from rlkit.specs import (
    AlgorithmSpec,
    BackboneSpec,
    Driver,
    EvalResult,
    ExplorationSpec,
    Progress,
    RunInfo,
    RunnerSpec,
)

__all__ = [
    "Algorithm",
    "AlgorithmSpec",
    "BackboneFactory",
    "BackboneSpec",
    "BuildContext",
    "Driver",
    "EnvSpec",
    "Exploration",
    "ExplorationSpec",
    "NanCheck",
    "NonFiniteError",
    "Progress",
    "RunInfo",
    "RunnerSpec",
    "EvalResult",
    "Transition",
    "begin_episodes",
    "is_recurrent",
    "recurrent_factory",
    "separate_state",
]


class Transition(NamedTuple):
    """What happened after one batched action.

    :param obs: observations the actions were chosen on, ``(N, *obs_shape)``.
    :param action: the actions taken, ``(N,)`` for discrete spaces, ``(N, d)`` for boxes.
    :param reward: ``(N,)`` float32.
    :param next_obs: the true next observations. Where an episode ended this is the *final*
        observation of that episode (not the first one of the next), so that a truncated
        episode can bootstrap from it.
    :param terminated: ``(N,)`` bool, the episode reached a terminal state (no bootstrap).
    :param truncated: ``(N,)`` bool, the episode was cut off (time limit): bootstrap from
        ``next_obs``.
    :param valid: ``(N,)`` bool or ``None``. ``False`` marks an environment whose step was only
        a reset (gymnasium's next-step autoreset mode): its action was ignored and the entry
        must not be learned from. ``None`` means every entry is valid.
    """

    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    terminated: Tensor
    truncated: Tensor
    valid: Tensor | None = None


@runtime_checkable
class Algorithm(Protocol):
    """The agent contract. See the module docstring for the ask/tell cycle."""

    def act(self, obs: Tensor, explore: bool = True) -> Tensor:
        """Return actions for a batch of observations.

        :param obs: ``(N, *obs_shape)`` on the agent's device.
        :param explore: ``False`` for deterministic evaluation (greedy / distribution mean).
        """
        ...

    def observe(self, transition: Transition) -> None:
        """Tell the agent what happened after its last :meth:`act` with ``explore=True``."""
        ...

    def update(self) -> dict[str, float]:
        """Learn if the algorithm's own schedule says it is time; return metrics.

        Returns an empty dict when no learning happened. Metric names use the ``train/``
        namespace, e.g. ``train/value_loss``.
        """
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: tensors and plain Python data only."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        ...

    # Optional, for agents with per-env state (not part of the isinstance check):
    #
    # def begin_episodes(self, mask: Tensor | None = None) -> None:
    #     """The environments in ``mask`` ((N,) bool; None: all) begin new episodes: their
    #     state is reset before the next act."""
    #
    # def separate_state(self, num_envs: int) -> AbstractContextManager[None]:
    #     """A block in which act/begin_episodes use a fresh state for ``num_envs`` other
    #     environments; the state from before is untouched and back afterwards."""


def begin_episodes(agent: Any, mask: Tensor | None = None) -> None:
    """``agent.begin_episodes(mask)`` where the agent has it (agents with per-env state);
    nothing otherwise.

    :param mask: ``(N,)`` bool, the environments that begin new episodes; None: all.
    """
    method = getattr(agent, "begin_episodes", None)
    if method is not None:
        method(mask)


def separate_state(agent: Any, num_envs: int) -> AbstractContextManager[None]:
    """``agent.separate_state(num_envs)`` where the agent has it; an empty block otherwise.

    Evaluation acts inside such a block, so it never touches the training state.
    """
    method = getattr(agent, "separate_state", None)
    return method(num_envs) if method is not None else contextlib.nullcontext()


def recurrent_factory(factory: Callable[..., nn.Module]) -> Callable[[gym.Space[Any]], nn.Module]:
    """``factory`` (a :class:`BackboneFactory`) as a one-argument function that accepts
    recurrent backbones: ``factory(space, recurrent=True)``. A plain ``factory(space)`` that takes
    no such keyword (one written by hand for a test or a simulator) is returned as it is."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: call it as it is
        return factory
    if any(p.name == "recurrent" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return functools.partial(factory, recurrent=True)
    return factory


def is_recurrent(module: Any) -> bool:
    """Whether a backbone module carries state across steps (``recurrent = True``; see
    :mod:`rlkit.backbones.rnn` for what such a module provides)."""
    return getattr(module, "recurrent", False) is True


class Exploration(Protocol):
    """An exploration controller: the current level (epsilon, noise sigma, ...) and feedback.

    ``value(step)`` is called with the number of environment steps taken so far.
    ``observe_returns`` receives the returns of episodes that just finished, so adaptive
    controllers can raise exploration when performance drops.
    """

    def value(self, step: int) -> float: ...

    def observe_returns(self, returns: Tensor, step: int) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    # Optional (not part of the protocol; a controller without it stays valid):
    #
    # def metrics(self) -> dict[str, float]:
    #     """Numbers for the run's logs (level, detector statistic, ...): the trainer logs
    #     them as ``explore/<name>`` every ``train.log_every`` env steps, and reports a
    #     message when ``alarms`` grew."""


@dataclass(frozen=True, kw_only=True)
class EnvSpec:
    """What an algorithm may know about the environment it will act in.

    :param observation_space: the space of a single environment's observation.
    :param action_space: the space of a single environment's action.
    :param num_envs: how many environments step in parallel (``N``).
    """

    observation_space: gym.Space[Any]
    action_space: gym.Space[Any]
    num_envs: int


class NonFiniteError(FloatingPointError):
    """A NaN or infinity was found where ``nan_check: raise`` forbids it."""


class NanCheck:
    """The ``nan_check`` policy: ``off``, ``warn`` or ``raise``.

    Algorithms call :meth:`check` on losses and gradient norms; the trainer on environment
    outputs. ``cause`` should name the most likely reason in words a user can act on.

    On an accelerator, reading a flag back to the host stalls the device, so in ``warn`` mode a
    check of a tensor that is not on the CPU only accumulates a flag on the device, and
    :meth:`flush` (which the trainer calls every ``train.log_every`` steps and at the end)
    reports it. ``raise`` mode always checks at once: it promises to stop before a bad value
    is used.
    """

    MODES = ("off", "warn", "raise")
    SMALL = 64
    """Up to this many elements, a CPU tensor is checked in Python: a loss, a gradient norm or
    one step's rewards are checked every step, and a kernel launch costs more than the check."""

    def __init__(self, mode: str = "warn") -> None:
        if mode not in self.MODES:
            raise ValueError(f"nan_check must be one of {self.MODES}, got {mode!r}")
        self.mode = mode
        self.enabled = mode != "off"
        self.warned: set[str] = set()
        self._deferred: dict[str, tuple[Tensor, str]] = {}

    def check(self, name: str, value: Tensor, cause: str) -> None:
        if not self.enabled or not (value.is_floating_point() or value.is_complex()):
            return  # integers and booleans are always finite
        if self.mode == "warn" and not value.is_cpu:
            if name in self.warned:
                return
            bad = ~torch.isfinite(value).all()
            pending = self._deferred.get(name)
            self._deferred[name] = (bad if pending is None else pending[0] | bad, cause)
            return
        if value.is_floating_point() and value.is_cpu and value.numel() <= self.SMALL:
            if value.numel() == 1:
                if math.isfinite(value.item()):
                    return
            elif all(map(math.isfinite, value.reshape(-1).tolist())):
                return
        elif bool(torch.isfinite(value).all()):
            return
        self._report(name, cause)

    def flush(self) -> None:
        """Report what deferred checks found since the last flush (one host read each)."""
        deferred, self._deferred = self._deferred, {}
        for name, (bad, cause) in deferred.items():
            if bool(bad):
                self._report(name, cause)

    def _report(self, name: str, cause: str) -> None:
        message = f"non-finite value in {name}. Likely cause: {cause}"
        if self.mode == "raise":
            raise NonFiniteError(message)
        if name not in self.warned:
            self.warned.add(name)
            import warnings

            warnings.warn(message, RuntimeWarning, stacklevel=3)


class BackboneFactory(Protocol):
    """Builds a feature extractor for an observation space.

    The module maps a batch of observations ``(B, *obs_shape)`` to features ``(B, output_dim)``
    and has an integer attribute ``output_dim``.

    ``recurrent=True`` says the caller can use a recurrent backbone (``lstm``, ``gru``: a
    module with ``recurrent = True``, ``state_shape``, ``initial_state``, ``forward(obs,
    state)`` and ``forward_sequence``; see :mod:`rlkit.backbones.rnn`). Without it, a recurrent
    backbone configured for the run is refused with an error that names the algorithm and the
    backbone, so an algorithm that keeps no per-env state never receives one.
    """

    def __call__(self, observation_space: gym.Space[Any], *,
                 recurrent: bool = False) -> nn.Module: ...


@dataclass(kw_only=True)
class BuildContext:
    """Everything an algorithm's ``build`` function receives besides its own hyperparameters.

    :param env: spaces and number of parallel environments.
    :param device: where tensors live.
    :param seed: the run's seed; seed your own ``torch.Generator`` from it.
    :param total_steps: the run's budget in environment steps (for schedules).
    :param backbone: builds the configured feature extractor (``backbone:`` in YAML).
    :param exploration: the exploration controller configured in YAML (``exploration:``), or
        ``None``, in which case the algorithm uses its own default from its hyperparameters.
    :param nan_check: the run's non-finite value policy.
    """

    env: EnvSpec
    device: torch.device
    seed: int
    total_steps: int
    backbone: BackboneFactory
    exploration: Exploration | None
    nan_check: NanCheck
