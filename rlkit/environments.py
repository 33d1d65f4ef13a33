"""The environment boundary: gymnasium vector envs in, torch tensors on the agent's device out.

:func:`make_env` builds any gymnasium id through ``gymnasium.make_vec`` (sync, async or the
env's own batched ``vector_entry_point``) and wraps it in :class:`TorchVectorEnv`, which
converts observations, rewards and flags to tensors once, at this boundary. Environments whose
outputs are already tensors (torch-native batched envs) pass through without copies.

Gymnasium's two autoreset modes are handled explicitly and presented the same way:

* ``same_step``: when an episode ends, ``step`` returns the first observation of the next
  episode and the final observation in ``info["final_obs"]``.
* ``next_step``: ``step`` returns the final observation; the *next* ``step`` resets that env,
  ignores its action and returns reward 0. Such reset-only entries are marked ``valid=False``.

Either way :meth:`TorchVectorEnv.step` returns a :class:`Step` whose ``next_obs`` is the true
next observation (final observation where an episode ended) for learning, and whose ``obs`` is
what to act on next.

Environments in subprocesses (``vectorization: async``) or Ray actors (``vectorization: ray``,
see :mod:`rlkit.ray_envs`) are waited for at most ``step_timeout`` seconds per reset or step; a
worker that hangs, dies or raises ends the run with an :class:`EnvError` naming the worker and
what happened to it.

Parameters of the envs can change between steps (``env.changes``):
:meth:`TorchVectorEnv.apply_change` calls ``set_params`` on a torch-native batched env, and on
gymnasium's sync or async envs sets attributes of each env's unwrapped env (through
``set_params`` where the unwrapped env has it), recomputing the quantities gymnasium's CartPole
derives from its masses and length.

What an env section may import or call is decided here too. Wrapper names resolve only to
subclasses of :class:`gymnasium.Wrapper`, never to any other callable. A config stored in a run
or checkpoint (which may come from anyone) is checked with :func:`refuse_untrusted` before it is
built: its ``env.imports``, a ``module:EnvId`` id and any wrapper that is neither gymnasium's nor
registered by a plugin (``register_wrappers``) need the user's consent.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import inspect
import multiprocessing
import re
import signal
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from gymnasium import logger as gym_logger
from gymnasium.envs.registration import load_env_creator
from gymnasium.vector import AutoresetMode
from gymnasium.vector.async_vector_env import AsyncState
from torch import Tensor

from rlkit import snapshot
from rlkit.buffers import allocation_failure, check_allocation
from rlkit.errors import RunError
from rlkit.validation import ConfigError, suggest

__all__ = [
    "EnvError",
    "EnvOptions",
    "Step",
    "TorchVectorEnv",
    "UntrustedConfigError",
    "make_env",
    "refuse_untrusted",
    "untrusted_code",
    "wrapper_reference",
]

GYMNASIUM_WRAPPERS = "gymnasium.wrappers"
TRUST_HINT = ("If you trust where it came from, pass --trust-config (trust_config=True from "
              "Python); see 'Trusting run files' in docs/guide.md.")


class EnvError(RunError):
    """An environment failed while the run was using it (a worker hung, died or raised)."""


class UntrustedConfigError(ConfigError):
    """A config stored in a run or checkpoint would import or call code nobody vouched for."""


class Step(NamedTuple):
    """One batched step, seen from the learner.

    :param next_obs: true next observations (the final ones where an episode ended).
    :param reward: ``(N,)`` float32.
    :param terminated: ``(N,)`` bool.
    :param truncated: ``(N,)`` bool.
    :param obs: observations to act on next (first of a new episode where one ended).
    :param valid: ``(N,)`` bool, ``False`` where the step only reset the env; ``None`` if all valid.
    """

    next_obs: Tensor
    reward: Tensor
    terminated: Tensor
    truncated: Tensor
    obs: Tensor
    valid: Tensor | None


@dataclass(frozen=True, kw_only=True)
class EnvOptions:
    """What :func:`make_env` needs (a subset of the YAML ``env:`` section)."""

    id: str
    num_envs: int = 1
    vectorization: str = "auto"
    autoreset_mode: str = "same_step"
    kwargs: dict[str, Any] | None = None
    wrappers: tuple[tuple[str, dict[str, Any]], ...] = ()
    imports: tuple[str, ...] = ()
    step_timeout: float | None = 60.0
    """Seconds to wait for async workers or Ray actors per reset or step (``None``: forever)."""
    rollout_workers: int = 2
    """With ``vectorization="ray"``: Ray actors holding the envs (at most the number of envs)."""
    rollout_worker_cpus: float = 1.0
    """With ``vectorization="ray"``: CPUs Ray reserves for each actor."""


class TorchVectorEnv:
    """A gymnasium ``VectorEnv`` whose inputs and outputs are tensors on ``device``.

    :param step_timeout: for an :class:`~gymnasium.vector.AsyncVectorEnv`, seconds to wait for
        its workers per reset or step before raising :class:`EnvError` (``None``: forever); a
        :class:`~rlkit.ray_envs.RayVectorEnv` applies its own.
    """

    def __init__(self, env: gym.vector.VectorEnv, device: torch.device | str = "cpu", *,
                 step_timeout: float | None = None) -> None:
        self.env = env
        self.device = torch.device(device)
        self._async = env if isinstance(env, gym.vector.AsyncVectorEnv) else None
        self.step_timeout = step_timeout
        self.num_envs = int(env.num_envs)
        self.single_observation_space = env.single_observation_space
        self.single_action_space = env.single_action_space
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        self.autoreset_mode = AutoresetMode(mode) if not isinstance(mode, AutoresetMode) else mode
        if self.autoreset_mode == AutoresetMode.DISABLED:
            raise ConfigError("env: autoreset mode 'disabled' is not supported; use same_step "
                              "or next_step.", key="env")
        self._prev_done = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        self._obs_dtype = _torch_dtype(self.single_observation_space)
        self._discrete_actions = isinstance(self.single_action_space, gym.spaces.Discrete)
        # Envs that promise ``final_obs`` is the full batch, equal to the returned observation
        # where no episode ended (rlkit's torch-native envs do), need no row selection.
        self._full_final_obs = bool(getattr(env, "full_final_obs", False))

    # --- the VectorEnv calls, in tensors ------------------------------------------------

    def reset(self, seed: int | None = None) -> Tensor:
        if self._async is not None:
            self._async.reset_async(seed=seed)
            obs, _ = self._wait(self._async.reset_wait, "reset")
        else:
            obs, _ = self.env.reset(seed=seed)
        self._prev_done.zero_()
        return self._obs(obs)

    def step(self, actions: Tensor) -> Step:
        if self._async is not None:
            self._async.step_async(self._actions(actions))
            result = self._wait(self._async.step_wait, "step")
        else:
            result = self.env.step(self._actions(actions))
        obs_raw, reward_raw, term_raw, trunc_raw, info = result
        obs = self._obs(obs_raw)
        reward = self._tensor(reward_raw, torch.float32)
        terminated = self._tensor(term_raw, torch.bool)
        truncated = self._tensor(trunc_raw, torch.bool)
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            next_obs = self._same_step_next_obs(obs, info)
            return Step(next_obs, reward, terminated, truncated, obs, None)
        # next_step: the returned obs of a finished episode *is* its final observation; the
        # envs that finished last step were only reset now.
        valid = None
        if bool(self._prev_done.any()):
            valid = ~self._prev_done
        self._prev_done = terminated | truncated
        return Step(obs, reward, terminated, truncated, obs, valid)

    def close(self) -> None:
        self.env.close()

    # --- async workers -------------------------------------------------------------------

    def _wait(self, wait: Callable[..., Any], call: str) -> Any:
        """``wait(timeout=step_timeout)``; a worker that hangs, dies or raises becomes one
        :class:`EnvError` naming it, and every worker is stopped (the batch is unusable)."""
        env = self._async
        assert env is not None
        with _quiet_gymnasium():  # its logger would print the worker's traceback
            try:
                return wait(timeout=self.step_timeout)
            except multiprocessing.TimeoutError:
                error = self._worker_error(call, "hung")
            except Exception as exc:
                # gymnasium forgets the pipe of a worker that reported an error; a worker that
                # died without reporting one leaves only a closed pipe (EOFError)
                reported = any(p is None for p in env.parent_pipes)
                died = not reported and isinstance(exc, (EOFError, OSError))
                error = self._worker_error(call, "died" if died else "raised", exc)
        raise error from None

    def _worker_error(self, call: str, what: str, exc: Exception | None = None) -> EnvError:
        env = self._async
        assert env is not None
        pipes = list(env.parent_pipes)
        processes = list(env.processes)
        if what == "hung":
            workers = [i for i, p in enumerate(pipes)
                       if p is not None and not p.closed and not p.poll(0)]
        elif what == "died":
            workers = _dead_workers(processes)
        else:
            workers = [i for i, p in enumerate(pipes) if p is None]
        codes = {i: processes[i].exitcode for i in workers}
        # The call is over either way: mark it so, or close() would wait for it once more.
        env._state = AsyncState.DEFAULT
        env.close(terminate=True)
        spec = getattr(env, "spec", None)
        name = f" ({spec.id})" if spec is not None and getattr(spec, "id", None) else ""
        who = (f"async worker{'s' if len(workers) > 1 else ''} "
               f"{', '.join(map(str, workers)) or '?'} of {env.num_envs}{name}")
        if what == "hung":
            return EnvError(
                f"env: {who} did not return from {call} within {self.step_timeout:g} s "
                f"(env.step_timeout); the workers were stopped. Fix the environment, or raise "
                f"env.step_timeout if its {call} is that slow.")
        if what == "died":
            how = "; ".join((f"worker {i} " if len(workers) > 1 else "")
                            + _exit_description(codes[i]) for i in workers)
            return EnvError(
                f"env: {who} died during {call} ({how or 'exit status unknown'}) without "
                f"reporting an error: a crash in native code, os._exit or the system's "
                f"out-of-memory killer. Run it with env.vectorization: sync to debug it in one "
                f"process.")
        message = " ".join(str(exc).split()) if exc is not None else ""
        kind = type(exc).__name__ if exc is not None else "an error"
        return EnvError(f"env: {who} raised {kind} in {call}: {message or '(no message)'}. "
                        f"Run it with env.vectorization: sync to see the traceback.")

    # --- exact resume --------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The environments' internal state (raises SnapshotUnsupported for async and Ray
        envs, whose state lives in other processes)."""
        return {"env": snapshot.capture(self.env), "prev_done": self._prev_done.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        snapshot.restore(self.env, state["env"])
        self._prev_done = state["prev_done"].to(self.device)

    # --- changes during a run -----------------------------------------------------------

    def change_problems(self, values: Mapping[str, Any]) -> dict[str, str]:
        """What :meth:`apply_change` would refuse in ``values``, by name (empty: nothing):
        for a torch-native batched env, a name outside its ``settable_params`` or a value that
        is not a finite number; for gymnasium's envs, an attribute the unwrapped env does not
        have, or a value that is not a number for an attribute that holds one. Nothing is
        changed.

        :raises ConfigError: naming ``env.changes`` where these envs cannot be changed at all
            (envs in Ray actors, a batched env without ``set_params``).
        """
        kind = self._change_kind()
        if kind == "native":
            return dict(self.env.param_problems(dict(values)))  # type: ignore[attr-defined]
        if kind == "sync":
            sync: Any = self.env
            return _attribute_problems(sync.envs[0].unwrapped, values)
        # async: ask an env built here from the workers' first recipe, not the workers
        sample = self.env.env_fns[0]()  # type: ignore[attr-defined]
        try:
            return _attribute_problems(sample.unwrapped, values)
        finally:
            sample.close()

    def apply_change(self, values: Mapping[str, Any]) -> None:
        """Set ``values`` on every env; the next :meth:`step` uses them.

        A torch-native batched env gets ``set_params(**values)``. Gymnasium's sync and async
        envs get them as attributes of each env's unwrapped env (``set_params`` where that env
        has one, as rlkit's torch-native envs behind ``vectorization: sync`` do); after
        ``masspole``, ``masscart`` or ``length`` of gymnasium's CartPole, its ``total_mass``
        and ``polemass_length`` are recomputed. Other envs need the attributes their step
        reads. Async envs set them through gymnasium's ``set_attr``, on the outermost wrapper
        or env that has the attribute (the unwrapped env unless a wrapper has one of the same
        name).

        :raises ValueError: for what :meth:`change_problems` reports (torch-native envs).
        :raises ConfigError: where these envs cannot be changed (see :meth:`change_problems`).
        """
        kind = self._change_kind()
        if kind == "native":
            self.env.set_params(**values)  # type: ignore[attr-defined]
        elif kind == "sync":
            sync: Any = self.env
            for single in sync.envs:
                _set_attributes(single.unwrapped, values)
        elif all(self._call("has_wrapper_attr", "set_params")):
            self._call("set_params", **values)
        else:
            assert self._async is not None
            for name, value in values.items():
                self._async.set_attr(name, value)
            derived = _derived_from(self._entry_class(), values)
            if derived is not None:
                inputs, recompute = derived
                got = {n: self._call("get_wrapper_attr", n) for n in inputs}
                per_env = [recompute({n: got[n][i] for n in inputs})
                           for i in range(self.num_envs)]
                for name in per_env[0]:
                    self._async.set_attr(name, [d[name] for d in per_env])

    def _change_kind(self) -> str:
        """How :meth:`apply_change` reaches the envs: ``native`` (the batched env's
        ``set_params``), ``sync`` or ``async``."""
        if callable(getattr(self.env, "set_params", None)) and callable(
                getattr(self.env, "param_problems", None)):
            return "native"
        if isinstance(self.env, gym.vector.SyncVectorEnv):
            return "sync"
        if self._async is not None:
            return "async"
        if type(self.env).__module__ == "rlkit.ray_envs":
            raise ConfigError("env.changes: envs in Ray actors (vectorization: ray) cannot be "
                              "changed during a run; use vectorization: sync or async.",
                              key="env.changes")
        raise ConfigError(f"env.changes: {type(self.env).__name__} batches its envs itself and "
                          f"has no set_params(**values) and param_problems(values) methods, so "
                          f"its parameters cannot change during a run; use vectorization: "
                          f"sync.", key="env.changes")

    def _call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """``AsyncVectorEnv.call`` under :attr:`step_timeout`, its failures as
        :class:`EnvError`."""
        assert self._async is not None
        self._async.call_async(name, *args, **kwargs)
        return tuple(self._wait(self._async.call_wait, name))

    def _entry_class(self) -> type | None:
        """The class the async envs' registered entry point names (``None``: not a class)."""
        spec = getattr(self.env, "spec", None)
        entry = _load_creator(getattr(spec, "entry_point", None))
        return entry if isinstance(entry, type) else None

    # --- conversions ---------------------------------------------------------------------

    def _same_step_next_obs(self, obs: Tensor, info: dict[str, Any]) -> Tensor:
        mask = info.get("_final_obs")
        if mask is None:
            return obs
        final = info["final_obs"]
        if self._full_final_obs and isinstance(final, Tensor):
            return final.to(self.device, self._obs_dtype)  # exact, and no work at all
        if isinstance(final, Tensor) and final.shape == obs.shape:
            # Batched torch envs give a full tensor: select rows without a host round trip or
            # a data-dependent branch.
            done = self._tensor(mask, torch.bool).view(-1, *([1] * (obs.dim() - 1)))
            return torch.where(done, final.to(self.device, self._obs_dtype), obs)
        mask_t = self._tensor(mask, torch.bool)
        if not bool(mask_t.any()):
            return obs
        next_obs = obs.clone()
        idx = np.flatnonzero(np.asarray(mask))
        rows = np.stack([np.asarray(final[i]) for i in idx])
        next_obs[torch.as_tensor(idx, device=self.device)] = self._obs(rows)
        return next_obs

    def _obs(self, obs: Any) -> Tensor:
        return self._tensor(obs, self._obs_dtype)

    def _tensor(self, x: Any, dtype: torch.dtype) -> Tensor:
        if isinstance(x, Tensor):
            return x.to(device=self.device, dtype=dtype)
        return torch.as_tensor(np.asarray(x)).to(device=self.device, dtype=dtype)

    def _actions(self, actions: Tensor) -> Any:
        if getattr(self.env, "accepts_tensors", False):
            return actions
        array = actions.detach().cpu().numpy()
        if self._discrete_actions:
            return array.astype(np.int64, copy=False)
        return array


def _number(value: Any) -> bool:
    """A real number that is not a bool."""
    return isinstance(value, (Real, np.number)) and not isinstance(value, (bool, np.bool_))


def _env_name(env: Any) -> str:
    """An unwrapped env in messages: its gymnasium id and class."""
    env_id = getattr(getattr(env, "spec", None), "id", None)
    name = type(env).__name__
    return f"{env_id!r} ({name})" if env_id else name


def _attribute_problems(env: Any, values: Mapping[str, Any]) -> dict[str, str]:
    """What setting ``values`` as attributes of the unwrapped ``env`` would get wrong."""
    if callable(getattr(env, "set_params", None)) and callable(
            getattr(env, "param_problems", None)):
        return dict(env.param_problems(dict(values)))
    numbers = sorted(k for k, v in vars(env).items() if not k.startswith("_") and _number(v))
    problems: dict[str, str] = {}
    for name, value in values.items():
        current = getattr(env, name, None) if not name.startswith("_") else None
        if name.startswith("_") or not hasattr(env, name):
            guess = suggest(name, numbers)
            hint = f" Did you mean {guess!r}?" if guess else ""
            problems[name] = (f"{_env_name(env)} has no attribute {name!r} to set.{hint} Its "
                              f"attributes that hold numbers: {', '.join(numbers) or 'none'}.")
        elif callable(current):
            problems[name] = f"{_env_name(env)}.{name} is a method, not a value to set."
        elif _number(current) and not _number(value):
            problems[name] = (f"expected a number ({name} holds {type(current).__name__} "
                              f"{current!r}), got {type(value).__name__} {value!r}.")
    return problems


def _set_attributes(env: Any, values: Mapping[str, Any]) -> None:
    """Set ``values`` on the unwrapped ``env`` (through its ``set_params`` where it has one),
    then recompute what it derives from them."""
    if callable(getattr(env, "set_params", None)):
        env.set_params(**values)
        return
    for name, value in values.items():
        setattr(env, name, value)
    derived = _derived_from(type(env), values)
    if derived is not None:
        inputs, recompute = derived
        for name, value in recompute({n: getattr(env, n) for n in inputs}).items():
            setattr(env, name, value)


def _cartpole_derived(p: Mapping[str, Any]) -> dict[str, Any]:
    """What gymnasium's ``CartPoleEnv.__init__`` computes from its masses and length."""
    return {"total_mass": p["masspole"] + p["masscart"],
            "polemass_length": p["masspole"] * p["length"]}


DerivedRule = tuple[tuple[str, ...], Callable[[Mapping[str, Any]], dict[str, Any]]]

DERIVED: dict[str, DerivedRule] = {
    "gymnasium.envs.classic_control.cartpole:CartPoleEnv": (
        ("masspole", "masscart", "length"), _cartpole_derived),
}
"""Gymnasium envs whose ``__init__`` derives attributes from others, by ``module:Class``:
the attributes read and how the derived ones are computed (after a change of any of them)."""


def _derived_from(cls: type | None, values: Mapping[str, Any]) -> DerivedRule | None:
    """The :data:`DERIVED` rule of ``cls`` (or a base class) if ``values`` touch its
    inputs."""
    for klass in (cls.__mro__ if cls is not None else ()):
        rule = DERIVED.get(f"{klass.__module__}:{klass.__qualname__}")
        if rule is not None:
            return rule if any(name in values for name in rule[0]) else None
    return None


def _torch_dtype(space: gym.Space[Any]) -> torch.dtype:
    if isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)):
        return torch.int64
    if isinstance(space, gym.spaces.Box) and np.issubdtype(space.dtype, np.integer):
        return torch.uint8 if space.dtype == np.uint8 else torch.int64
    if isinstance(space, gym.spaces.MultiBinary):
        return torch.int8
    return torch.float32


def make_env(
    options: EnvOptions, *, device: torch.device | str = "cpu", num_envs: int | None = None,
    size_key: str | None = None,
) -> TorchVectorEnv:
    """Build ``options.id`` as a batched env adapted to torch tensors on ``device``.

    Errors name the YAML key (``env.id``, ``env.wrappers[0].name``, ...) and what to do. A
    number of envs that cannot fit in memory is refused before they are built.

    :param num_envs: build this many envs instead of ``options.num_envs`` (evaluation envs).
    :param size_key: the setting that chose the number of envs, for errors (default:
        ``env.num_envs``, or ``eval.num_envs`` when ``num_envs`` is given).
    """
    for module in options.imports:
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise ConfigError(f"env.imports: cannot import {module!r}: {exc}. Is the package "
                              f"that provides it installed?", key="env.imports") from None
    _check_env_id(options.id)
    n = num_envs if num_envs is not None else options.num_envs
    kwargs = dict(options.kwargs or {})
    native = _torch_native(options.id)
    vectorization = options.vectorization
    if vectorization == "auto":
        batched = native is not None and not options.wrappers
        vectorization = "vector_entry_point" if batched else "sync"
    if vectorization == "vector_entry_point" and native:
        kwargs.setdefault("device", str(device))  # the env's state lives with the agent
    size_key = size_key or ("env.num_envs" if num_envs is None else "eval.num_envs")
    _check_env_count(options.id, n, vectorization, size_key)
    wrappers = [
        functools.partial(_resolve_wrapper(name, i), **wkwargs)
        for i, (name, wkwargs) in enumerate(options.wrappers)
    ]
    try:
        if vectorization == "ray":
            env = _ray_env(options, n, wrappers, kwargs, capped=num_envs is not None)
        elif vectorization == "vector_entry_point":
            if wrappers:
                raise ConfigError("env.wrappers: wrappers apply to single envs and cannot be "
                                  "used with vectorization: vector_entry_point; use sync.",
                                  key="env.wrappers")
            env = gym.make_vec(options.id, num_envs=n, vectorization_mode="vector_entry_point",
                               **kwargs)
        else:
            mode = (AutoresetMode.SAME_STEP if options.autoreset_mode == "same_step"
                    else AutoresetMode.NEXT_STEP)
            env = gym.make_vec(options.id, num_envs=n, vectorization_mode=vectorization,
                               vector_kwargs={"autoreset_mode": mode},
                               wrappers=wrappers or None, **kwargs)
    except (ConfigError, EnvError):
        raise
    except Exception as exc:
        asked = allocation_failure(exc)
        if asked is not None:  # e.g. a torch-native env's state for too many envs
            tried = asked or _numpy_allocation(exc)
            raise ConfigError(
                f"{size_key}: {n:,} envs of {options.id!r} do not fit in memory (allocating "
                f"{tried or 'their state'} failed); lower {size_key.rpartition('.')[2]}.",
                key=size_key) from None
        raise _make_error(options.id, kwargs, vectorization, exc) from None
    timeout = options.step_timeout if vectorization in ("async", "ray") else None
    return TorchVectorEnv(env, device, step_timeout=timeout)


def _ray_env(options: EnvOptions, n: int, wrappers: Sequence[Callable[..., Any]],
             kwargs: dict[str, Any], *, capped: bool) -> gym.vector.VectorEnv[Any, Any, Any]:
    """``n`` envs in ``options.rollout_workers`` Ray actors (at most ``n`` of them where the
    caller chose ``n``); Ray is imported only here, as an optional extra."""
    try:
        from rlkit.ray_envs import RayVectorEnv
    except ImportError as exc:
        if exc.name is None or exc.name.partition(".")[0] != "ray":
            raise
        raise ConfigError(f"env.vectorization: 'ray' needs Ray, which is not installed "
                          f"({exc}); install it with pip install -e \".[ray]\" (or "
                          f"pip install \"rlkit[ray]\"), or use sync or async.",
                          key="env.vectorization") from None
    workers = min(options.rollout_workers, n) if capped else options.rollout_workers
    mode = (AutoresetMode.SAME_STEP if options.autoreset_mode == "same_step"
            else AutoresetMode.NEXT_STEP)
    return RayVectorEnv(options.id, n, rollout_workers=workers, autoreset_mode=mode,
                        wrappers=wrappers, kwargs=kwargs,
                        imports=options.imports, step_timeout=options.step_timeout,
                        worker_cpus=options.rollout_worker_cpus)


# What each env that gymnasium vectorizes costs at least: a Python env object (sync; CartPole-v1
# takes about 4 KiB, FrozenLake-v1 about 24 KiB) or a worker process (async; about 4 MiB of
# private memory for a forked CartPole-v1 worker).
_MIN_BYTES_PER_ENV = {"sync": 2 * 1024, "async": 2 * 1024 * 1024}


def _check_env_count(env_id: str, n: int, vectorization: str, key: str) -> None:
    """Refuse, before building anything, more envs than memory can hold: gymnasium builds them
    one by one in a Python loop, so too many would run for hours before failing."""
    per_env = _MIN_BYTES_PER_ENV.get(vectorization)
    if per_env is None:  # a batched env allocates its state at once, and fails at once
        return
    what = "worker process" if vectorization == "async" else "Python env"
    check_allocation(
        n * per_env, key=key, device="cpu",
        what=f"{n:,} envs of {env_id!r} (vectorization: {vectorization}; one {what} each, "
             f"at least {per_env // 1024:,} KiB)",
        advice=f"lower {key.rpartition('.')[2]}")


def _numpy_allocation(exc: BaseException) -> str:
    """The size in numpy's ``Unable to allocate 1.46 TiB for an array ...``, or ``""``."""
    found = re.search(r"allocate ([\d.]+ [KMGTPE]?i?B)\b", str(exc))
    return found.group(1) if found else ""


def _make_error(env_id: str, kwargs: dict[str, Any], vectorization: str,
                exc: Exception) -> ConfigError:
    """What went wrong building ``env_id``, in terms of the YAML keys to change."""
    spec = gym.spec(env_id)
    batched = vectorization == "vector_entry_point"
    entry = spec.vector_entry_point if batched else spec.entry_point
    unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
    if isinstance(exc, TypeError) and unexpected:
        key = unexpected.group(1)
        accepted = _parameters(entry)
        message = f"env.kwargs.{key}: {env_id!r} takes no argument {key!r}."
        guess = suggest(key, accepted) if accepted else None
        if guess:
            message += f" Did you mean {guess!r}?"
        if key == "frame_stack" and _torch_native(env_id) is None:
            message += (" frame_stack is an argument of rlkit's torch-native envs (rlkit/...); "
                        "for this env, list gymnasium.wrappers.FrameStackObservation under "
                        "env.wrappers.")
        elif accepted:
            message += f" It takes: {', '.join(accepted)}."
        return ConfigError(message, key=f"env.kwargs.{key}")
    if batched and spec.vector_entry_point is None:
        return ConfigError(f"env.vectorization: {env_id!r} has no batched implementation "
                           f"(vector_entry_point); use vectorization: sync.",
                           key="env.vectorization")
    return ConfigError(f"env: cannot make {env_id!r} with kwargs {kwargs}: "
                       f"{type(exc).__name__}: {exc}", key="env")


def _load_creator(entry: Any) -> Any:
    """The callable an entry point (``"module:attr"`` or a callable) names; ``None`` if it
    cannot be loaded."""
    try:
        return load_env_creator(entry) if isinstance(entry, str) else entry
    except Exception:
        return None


def _parameters(entry: Any) -> list[str]:
    """The keyword arguments an env's entry point takes (empty when it cannot be told)."""
    try:
        params = inspect.signature(_load_creator(entry)).parameters.values()
    except (TypeError, ValueError):
        return []
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return []  # forwards **kwargs: anything may be valid
    return [p.name for p in params if p.name not in ("self", "num_envs", "render_mode")
            and p.kind in (inspect.Parameter.KEYWORD_ONLY,
                           inspect.Parameter.POSITIONAL_OR_KEYWORD)]


def _torch_native(env_id: str) -> bool | None:
    """For a torch-native batched env (its ``vector_entry_point`` has ``accepts_tensors``):
    whether its constructor takes ``device``; ``None`` for any other env."""
    try:
        spec = gym.spec(env_id)
    except Exception:
        return None
    if spec.vector_entry_point is None:
        return None
    entry = _load_creator(spec.vector_entry_point)
    if not getattr(entry, "accepts_tensors", False):
        return None
    try:
        return "device" in inspect.signature(entry).parameters
    except (TypeError, ValueError):
        return False


def _check_env_id(env_id: str) -> None:
    if ":" in env_id:  # "module:EnvId" is imported by gymnasium itself
        module = env_id.split(":", 1)[0]
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise ConfigError(f"env.id: cannot import {module!r} for {env_id!r}: {exc}.",
                              key="env.id") from None
        return
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(
        f"env.id: unknown environment {env_id!r}.{hint} Use a gymnasium id, 'module:EnvId', "
        f"or list the module that registers it under env.imports.", key="env.id"
    )


def _resolve_wrapper(name: str, index: int) -> type[gym.Wrapper[Any, Any, Any, Any]]:
    """The wrapper class ``name`` refers to; anything but a :class:`gymnasium.Wrapper` subclass
    is refused (never called)."""
    key = f"env.wrappers[{index}].name"
    module_name, _, attr = wrapper_reference(name).partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        hint = ""
        if module_name == GYMNASIUM_WRAPPERS:
            known = [n for n in dir(gym.wrappers) if _is_wrapper_class(getattr(gym.wrappers, n))]
            guess = suggest(attr, known)
            hint = f" Did you mean {guess!r}?" if guess else ""
        raise ConfigError(f"{key}: cannot find wrapper {name!r} ({type(exc).__name__}: {exc})."
                          f"{hint} Use 'package.module.Class', 'package.module:Class' or the "
                          f"name of a gymnasium wrapper such as ClipReward.", key=key) from None
    if not _is_wrapper_class(obj):
        what = f"the class {obj.__name__}" if isinstance(obj, type) else (
            f"a {type(obj).__name__}")
        raise ConfigError(f"{key}: {name!r} is {what}, not a gymnasium wrapper (a subclass of "
                          f"gymnasium.Wrapper); only wrapper classes can be used here.", key=key)
    return obj


def _is_wrapper_class(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, gym.Wrapper)


def _dead_workers(processes: list[Any], wait_s: float = 1.0) -> list[int]:
    """Indices of worker processes that exited, waiting up to ``wait_s`` for the one whose
    pipe closed to be reaped."""
    deadline = time.monotonic() + wait_s
    while True:
        dead = [i for i, p in enumerate(processes) if p.exitcode is not None]
        if dead or time.monotonic() >= deadline:
            return dead
        time.sleep(0.02)


def _exit_description(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


@contextlib.contextmanager
def _quiet_gymnasium() -> Iterator[None]:
    """Silence gymnasium's logger, which reports a worker's error as a multi-line warning."""
    level = gym_logger.min_level
    gym_logger.min_level = gym_logger.ERROR + 1
    try:
        yield
    finally:
        gym_logger.min_level = level


# --- trust: what a stored config may import or call ------------------------------------------


def wrapper_reference(name: str) -> str:
    """``name`` as ``"package.module:Class"``: ``package.module.Class`` and
    ``package.module:Class`` name the same class; a bare name is one of gymnasium's wrappers
    (``ClipReward`` -> ``gymnasium.wrappers:ClipReward``)."""
    module_name, sep, attr = name.partition(":")
    if not sep:
        module_name, _, attr = name.rpartition(".")
    return f"{module_name or GYMNASIUM_WRAPPERS}:{attr}"


def _is_gymnasium_reference(reference: str) -> bool:
    module_name = reference.partition(":")[0]
    return module_name == GYMNASIUM_WRAPPERS or module_name.startswith(GYMNASIUM_WRAPPERS + ".")


def untrusted_code(options: EnvOptions, registered_wrappers: Collection[str] = ()) -> list[str]:
    """What building ``options`` would import or call beyond gymnasium's own wrappers, the
    registered env ids and the wrappers plugins registered: each ``env.imports`` module, a
    ``module:EnvId`` id and every other wrapper, as ``"KEY.PATH 'value'"``.

    :param registered_wrappers: ``"package.module:Class"`` references plugins registered.
    """
    registered = {wrapper_reference(r) for r in registered_wrappers}
    found = [f"env.imports[{i}] {module!r}" for i, module in enumerate(options.imports)]
    if ":" in options.id:
        found.append(f"env.id {options.id!r}")
    for i, (name, _) in enumerate(options.wrappers):
        reference = wrapper_reference(name)
        if not (_is_gymnasium_reference(reference) or reference in registered):
            found.append(f"env.wrappers[{i}].name {name!r}")
    return found


def refuse_untrusted(options: EnvOptions, registered_wrappers: Collection[str],
                     source: str) -> None:
    """Raise :class:`UntrustedConfigError` if the config stored in ``source`` (a run or
    checkpoint) would import or call code that neither gymnasium nor a plugin provides; it is
    checked before anything is imported or built."""
    found = untrusted_code(options, registered_wrappers)
    if found:
        raise UntrustedConfigError(
            f"{source}: the config stored in this run would import or call code that neither "
            f"gymnasium nor an installed plugin provides: {', '.join(found)}. It was not "
            f"loaded. {TRUST_HINT}")
