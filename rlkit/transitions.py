"""Telling an agent what happened: building and checking a :class:`~rlkit.interfaces.Transition`.

A program that owns the loop (a simulator, a robot, a game) steps its environments itself and
tells the agent what happened with ``agent.observe(transition)``. Two functions serve it:

* :func:`transition` builds a transition from numpy arrays, Python numbers, lists or tensors,
  converted to tensors of the dtype the agent stores, on its device, and checked against what
  the agent expects::

      t = rlkit.transition(obs=obs, action=taken, reward=reward, next_obs=next_obs,
                           terminated=terminated, truncated=truncated, like=agent)
      agent.observe(t)

* :func:`check_transition` is the check every built-in algorithm's ``observe`` calls first,
  and a third-party algorithm can call too. A transition of tensors that already fit -- the
  shape, dtype and device the agent expects -- costs a few attribute comparisons and is
  returned as it is (no copy, and nothing is read back from a GPU). Anything else is
  converted where that is exact (numpy arrays, lists and Python numbers; an ``int32`` action
  where ``int64`` is stored; ``float64`` values where ``float32`` is stored) or refused with a
  :class:`TransitionError` that names the field, what was expected and what to do:

  ``ppo observe(): reward: expected shape (16,), got shape (16, 1); give one value per env,
  e.g. reward.reshape(16)``

What is expected, per field (``N`` is the number of environments the agent was built for):

========================  ============================================================
``obs``, ``next_obs``     ``(N, *observation_shape)``: ``float32`` for Box spaces,
                          ``uint8`` for image (``uint8``) boxes, ``int64`` for Discrete
                          and MultiDiscrete spaces, ``int8`` for MultiBinary
``action``                ``(N,)`` ``int64`` for Discrete spaces, ``(N, *shape)``
                          ``float32`` for boxes, ``int64`` for MultiDiscrete
``reward``                ``(N,)`` ``float32``
``terminated``,           ``(N,)`` ``bool`` (``valid`` may be ``None``: every entry valid)
``truncated``, ``valid``
========================  ============================================================

Conversions never guess: a float action for a Discrete space, integer flags other than 0 and
1, a numpy array of dtype object, or a tensor on another device are errors. A Python number
or bool given for ``reward``, ``terminated``, ``truncated`` or ``valid`` stands for every env.
"""

from __future__ import annotations

from numbers import Number
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from rlkit.buffers import action_layout, observation_layout
from rlkit.interfaces import EnvSpec, Transition

__all__ = ["TransitionError", "TransitionSpec", "check_transition", "transition"]

_PER_ENV = ("reward", "terminated", "truncated", "valid")
"""Fields with one value per env, where a Python number stands for every env."""


class TransitionError(ValueError):
    """A transition that does not fit the agent it is given to: a wrong batch size, shape,
    dtype or device, or values that cannot become tensors. The message names the field."""


class TransitionSpec:
    """What an agent expects of the transitions it observes: the batch size, each field's
    shape and dtype, and the device.

    Built-in algorithms keep one as ``agent.transition_spec``; a third-party algorithm builds
    its own with :meth:`from_env` and calls :func:`check_transition` at the start of its
    ``observe``.

    :param observation_space: one environment's observation space; a space whose layout rlkit
        does not know (``Dict``, ``Tuple``) is checked for its batch size only.
    :param action_space: one environment's action space (likewise).
    :param num_envs: ``N``, the environments the agent acts for.
    :param device: where the agent's tensors live.
    :param algorithm: the agent's name, for messages.
    """

    __slots__ = ("algorithm", "device", "layouts", "num_envs", "observation_space",
                 "action_space")

    def __init__(self, *, observation_space: gym.Space[Any], action_space: gym.Space[Any],
                 num_envs: int, device: torch.device | str, algorithm: str = "agent") -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        self.num_envs = int(num_envs)
        self.device = _normalised(torch.device(device))
        self.algorithm = algorithm
        n = self.num_envs
        obs = _layout(observation_layout, observation_space, n)
        per_env = ((n,), torch.float32)
        flags = ((n,), torch.bool)
        self.layouts: tuple[tuple[tuple[int, ...], torch.dtype] | None, ...] = (
            obs, _layout(action_layout, action_space, n), per_env, obs, flags, flags, flags)
        """The full shape and dtype of each field, in :class:`Transition`'s order (None: only
        the batch size is checked)."""

    @classmethod
    def from_env(cls, env: EnvSpec, device: torch.device | str, *,
                 algorithm: str = "agent") -> TransitionSpec:
        """The spec of an agent built for ``env`` (its ``ctx.env``) on ``device``."""
        return cls(observation_space=env.observation_space, action_space=env.action_space,
                   num_envs=env.num_envs, device=device, algorithm=algorithm)

    def __repr__(self) -> str:
        return (f"TransitionSpec(algorithm={self.algorithm!r}, num_envs={self.num_envs}, "
                f"observation_space={self.observation_space}, "
                f"action_space={self.action_space}, device={self.device})")


def check_transition(transition: Transition, spec: TransitionSpec, *,
                     algorithm: str | None = None, caller: str = "observe()") -> Transition:
    """``transition`` if it fits ``spec``; else a converted copy, or a :class:`TransitionError`.

    Call it first thing in ``observe`` and use what it returns. Tensors that already have the
    expected shape, dtype and device are returned untouched: the check compares a few
    attributes per field and never reads a value (no host synchronisation on a GPU). Numpy
    arrays, lists and Python numbers are converted to new tensors on the agent's device, and
    tensors of a dtype that converts exactly (``int32`` -> ``int64``, ``float64`` ->
    ``float32``) are converted; anything else is refused with a message naming the field.

    :param transition: what happened after the agent's last ``act``.
    :param spec: what the agent expects (``agent.transition_spec``).
    :param algorithm: the name used in messages instead of ``spec.algorithm``.
    :param caller: what was called, for messages.
    :raises TransitionError: naming the field, what it expected and what it got.
    """
    if isinstance(transition, Transition):
        dev = spec.device
        fields = transition if transition.valid is not None else transition[:6]
        for x, layout in zip(fields, spec.layouts):
            if layout is None:
                if not (isinstance(x, Tensor) and x.device == dev):
                    break
            elif not (isinstance(x, Tensor) and x.shape == layout[0] and x.dtype is layout[1]
                      and x.device == dev):
                break
        else:
            return transition
    return _converted(transition, spec, f"{algorithm or spec.algorithm} {caller}")


def transition(obs: Any, action: Any, reward: Any, next_obs: Any, terminated: Any,
               truncated: Any, valid: Any = None, *, like: Any) -> Transition:
    """A :class:`~rlkit.interfaces.Transition` for the agent ``like``, from numpy arrays,
    Python numbers, lists or tensors, converted and checked (see the module docstring).

    :param obs: the observations the agent acted on, ``(N, *observation_shape)``.
    :param action: the actions the environments were given -- the agent's, or the ones your
        program put in their place; the agent learns from these.
    :param reward: ``(N,)``, or one number for every env.
    :param next_obs: the true next observations (the final one where an episode ended).
    :param terminated: ``(N,)`` bool, or one bool for every env.
    :param truncated: ``(N,)`` bool, or one bool for every env.
    :param valid: ``(N,)`` bool, ``False`` where the step only reset the env; None: all valid.
    :param like: the agent the transition is for (any object with a ``transition_spec``,
        which every built-in agent has), or a :class:`TransitionSpec`.
    :raises TransitionError: naming the field that does not fit.
    """
    spec = like if isinstance(like, TransitionSpec) else getattr(like, "transition_spec", None)
    if not isinstance(spec, TransitionSpec):
        raise TypeError(f"rlkit.transition(like=...): {type(like).__name__} has no "
                        f"transition_spec; pass an agent built by rlkit, or "
                        f"like=rlkit.TransitionSpec.from_env(env_spec, device)")
    built = Transition(obs, action, reward, next_obs, terminated, truncated, valid)
    return check_transition(built, spec, caller="rlkit.transition()")


# --- the slow path: convert or explain --------------------------------------------------------


def _converted(t: Any, spec: TransitionSpec, where: str) -> Transition:
    """Each field of ``t`` as the tensor ``spec`` expects, or a :class:`TransitionError`."""
    if not isinstance(t, tuple) or len(t) not in (6, 7):
        raise TransitionError(f"{where}: expected an rlkit.Transition(obs, action, reward, "
                              f"next_obs, terminated, truncated, valid), got "
                              f"{type(t).__name__}; build one with rlkit.transition(..., "
                              f"like=agent)")
    t = Transition(*t)
    fields = [_field(name, x, layout, spec, where)
              for name, x, layout in zip(Transition._fields, t, spec.layouts)]
    return Transition(*fields)


def _field(name: str, x: Any, layout: tuple[tuple[int, ...], torch.dtype] | None,
           spec: TransitionSpec, where: str) -> Any:
    if x is None:
        if name == "valid":
            return None
        raise TransitionError(f"{where}: {name}: got None; every field but valid is needed")
    if isinstance(x, Tensor):
        return _tensor(name, x, layout, spec, where)
    return _from_host(name, x, layout, spec, where)


def _tensor(name: str, x: Tensor, layout: tuple[tuple[int, ...], torch.dtype] | None,
            spec: TransitionSpec, where: str) -> Tensor:
    _check_shape(name, tuple(x.shape), layout, spec, where, "")
    if layout is not None and x.dtype != layout[1]:
        if not _exact(x.dtype, layout[1]):
            raise TransitionError(f"{where}: {name}: dtype {x.dtype} does not fit "
                                  f"{_what(name, spec)}, stored as {layout[1]}; "
                                  f"{_advice(name, layout[1])}")
        x = x.to(layout[1])
    if x.device != spec.device:
        raise TransitionError(f"{where}: {name}: tensor on {x.device}, but this agent "
                              f"({spec.algorithm}) keeps its tensors on {spec.device}; move "
                              f"it there ({name}.to('{spec.device}')), or pass numpy arrays, "
                              f"which are converted on that device")
    return x


def _from_host(name: str, x: Any, layout: tuple[tuple[int, ...], torch.dtype] | None,
               spec: TransitionSpec, where: str) -> Tensor:
    """A numpy array, list or Python number as a new tensor on the agent's device."""
    n = spec.num_envs
    scalar = isinstance(x, (Number, np.generic)) or (isinstance(x, np.ndarray) and x.ndim == 0)
    try:
        array = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged nested lists, for instance
        raise TransitionError(f"{where}: {name}: {type(x).__name__} cannot be converted to an "
                              f"array ({exc}); pass a numpy array or a tensor") from None
    kind = "numpy array" if isinstance(x, np.ndarray) else type(x).__name__
    if array.dtype.kind not in "biuf":
        raise TransitionError(f"{where}: {name}: {kind} of dtype {array.dtype} cannot be "
                              f"converted to a tensor; pass numbers (ragged lists and Python "
                              f"objects give dtype object)")
    if scalar and name in _PER_ENV:
        array = np.full((n,), array)  # one value for every env
    _check_shape(name, array.shape, layout, spec, where, f"{kind} of ")
    if layout is None:
        raise TransitionError(f"{where}: {name}: {spec.algorithm} expects tensors for "
                              f"{_what(name, spec)}; pass a tensor on {spec.device}")
    dtype = layout[1]
    if dtype == torch.bool and array.dtype.kind in "iu":
        bad = array[(array != 0) & (array != 1)]
        if bad.size:
            raise TransitionError(f"{where}: {name}: flags must be booleans or 0/1, got "
                                  f"{bad.flat[0].item()!r}; pass {name} as booleans")
    else:
        source = torch.from_numpy(np.zeros((), array.dtype)).dtype
        if source != dtype and not _exact(source, dtype):
            raise TransitionError(f"{where}: {name}: {kind} of dtype {array.dtype} does not "
                                  f"fit {_what(name, spec)}, stored as {dtype}; "
                                  f"{_advice(name, dtype)}")
    return torch.tensor(np.ascontiguousarray(array), dtype=dtype, device=spec.device)


def _check_shape(name: str, shape: tuple[int, ...],
                 layout: tuple[tuple[int, ...], torch.dtype] | None, spec: TransitionSpec,
                 where: str, kind: str) -> None:
    n = spec.num_envs
    if shape and shape[0] != n:
        raise TransitionError(f"{where}: {name}: batch of {shape[0]}, this agent acts for {n} "
                              f"envs; give one row per env, in the order the agent acted on "
                              f"them (an agent for another number of envs is built with "
                              f"env.num_envs = that number)")
    if layout is None:
        if not shape:
            raise TransitionError(f"{where}: {name}: expected a batch of {n}, got "
                                  f"{kind}shape ()")
        return
    expected = layout[0]
    if tuple(shape) != expected:
        hint = (f"give one value per env, e.g. {name}.reshape({n})" if name in _PER_ENV
                else f"one {_describe(name, spec)} per env")
        raise TransitionError(f"{where}: {name}: expected shape {expected}, got "
                              f"{kind}shape {tuple(shape)}; {hint}")


def _exact(source: torch.dtype, target: torch.dtype) -> bool:
    """Whether values of ``source`` convert to ``target`` without changing kind: any float to
    a float; integers (and bools) to a type that holds every value of theirs."""
    if target == torch.bool:
        return False
    if target.is_floating_point and source.is_floating_point:
        return True
    return torch.promote_types(source, target) == target and not (
        source.is_floating_point and not target.is_floating_point)


def _what(name: str, spec: TransitionSpec) -> str:
    if name in ("obs", "next_obs"):
        return f"the observation space {spec.observation_space}"
    if name == "action":
        return f"the action space {spec.action_space}"
    return "rewards" if name == "reward" else "flags"


def _describe(name: str, spec: TransitionSpec) -> str:
    if name in ("obs", "next_obs"):
        return f"observation of {spec.observation_space}"
    return f"action of {spec.action_space}"


def _advice(name: str, dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return f"pass {name} as booleans, e.g. {name}.bool() or {name} != 0"
    if not dtype.is_floating_point:
        return f"pass whole numbers, e.g. {name}.long() for a tensor or an int64 numpy array"
    return f"pass numbers, e.g. {name}.float()"


def _layout(layout: Any, space: gym.Space[Any],
            n: int) -> tuple[tuple[int, ...], torch.dtype] | None:
    try:
        shape, dtype = layout(space)
    except TypeError:  # a space without a known tensor layout: check the batch size only
        return None
    return (n, *shape), dtype


def _normalised(device: torch.device) -> torch.device:
    """``device`` as tensors made on it report theirs (``cuda`` -> ``cuda:0``)."""
    if device.type == "cpu" or device.index is not None:
        return device
    try:
        return torch.empty(0, device=device).device
    except (RuntimeError, AssertionError):  # not available here: compare as given
        return device
