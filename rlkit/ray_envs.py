"""Environments in Ray actors: ``env.vectorization: ray``.

:class:`RayVectorEnv` is a gymnasium ``VectorEnv`` whose ``num_envs`` environments live in
``rollout_workers`` Ray actors, on this machine or across a Ray cluster. Each actor holds a
contiguous block of the envs as one ``gymnasium.make_vec(..., vectorization_mode="sync")``; a
reset or step sends every actor its slice at once and waits for all of them together, so the
actors step in parallel. The batch it returns is the one a single sync vector env of all
``num_envs`` envs would return: actor ``k`` seeds its envs from ``seed + offset_k``, and the
``info`` dicts of the actors are merged with gymnasium's vector conventions (an array per key
plus its ``_key`` mask, nested dicts merged the same way).

Every wait has the timeout ``step_timeout``; an actor that raises, dies or does not answer in
time ends the run with an :class:`~rlkit.environments.EnvError` naming the rollout worker and its
envs, and every actor is stopped (the batch is unusable once one of them has failed).

Ray is an optional extra: this module is the only one that imports it, and
:func:`rlkit.environments.make_env` imports this module only for ``vectorization: ray``. The
actors' processes import this module too, so it keeps torch (and the rest of rlkit) out of its
module-level imports.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import ray
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from ray.exceptions import GetTimeoutError, RayActorError

from rlkit.validation import ConfigError

if TYPE_CHECKING:
    from rlkit.environments import EnvError

__all__ = ["START_TIMEOUT", "RayVectorEnv", "split"]

START_TIMEOUT = 60.0
"""Seconds the actors get at least to start and build their envs (more if ``step_timeout`` is
larger): a cluster may need that long to start worker processes."""

WrapperFn = Callable[[gym.Env[Any, Any]], gym.Wrapper[Any, Any, Any, Any]]


def split(num_envs: int, workers: int) -> list[int]:
    """How many of ``num_envs`` envs each of ``workers`` actors holds: as even as possible,
    the first ones holding one more (5 over 2: ``[3, 2]``)."""
    base, extra = divmod(num_envs, workers)
    return [base + (k < extra) for k in range(workers)]


class _RolloutWorker:
    """The body of one Ray actor: a sync vector env of a block of the envs.

    :param imports: modules imported before the env is made (packages registering its id).
    """

    def __init__(self, env_id: str, num_envs: int, autoreset_mode: str,
                 wrappers: Sequence[WrapperFn], kwargs: Mapping[str, Any],
                 imports: Sequence[str]) -> None:
        for module in imports:
            importlib.import_module(module)
        self.env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                                vector_kwargs={"autoreset_mode": AutoresetMode(autoreset_mode)},
                                wrappers=list(wrappers) or None, **kwargs)

    def spaces(self) -> tuple[gym.Space[Any], gym.Space[Any]]:
        return self.env.single_observation_space, self.env.single_action_space

    def reset(self, seed: int | list[int | None] | None,
              options: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
        return self.env.reset(seed=seed, options=options)  # type: ignore[arg-type]

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        return self.env.step(actions)

    def close(self) -> None:
        self.env.close()


_RemoteWorker = ray.remote(_RolloutWorker)


class RayVectorEnv(gym.vector.VectorEnv[Any, Any, Any]):
    """``num_envs`` envs of ``env_id``, split over ``rollout_workers`` Ray actors.

    Ray is initialised on first use if the program has not done it: with ``RAY_ADDRESS`` set it
    connects to that cluster, otherwise ``ray.init`` finds or starts a local one.

    :param env_id: a gymnasium id (or ``module:EnvId``), made inside each actor.
    :param num_envs: envs in all; actor ``k`` holds ``split(num_envs, rollout_workers)[k]`` of
        them, envs of lower index in lower actors.
    :param rollout_workers: Ray actors, 1 to ``num_envs``.
    :param autoreset_mode: gymnasium's autoreset mode of the actors' sync vector envs.
    :param wrappers: applied to each single env, innermost first (picklable callables, such as
        wrapper classes or ``functools.partial`` of them).
    :param kwargs: keyword arguments for the env's constructor.
    :param imports: modules each actor imports before it makes the env.
    :param step_timeout: seconds to wait for the actors per reset or step (``None``: forever);
        they get at least :data:`START_TIMEOUT` seconds to start.
    :param worker_cpus: CPUs Ray reserves for each actor; a fraction lets several share one.
    :raises ConfigError: for ``rollout_workers`` outside 1 to ``num_envs``.
    :raises EnvError: if an actor cannot start or build its envs.
    """

    def __init__(self, env_id: str, num_envs: int, *, rollout_workers: int = 2,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.SAME_STEP,
                 wrappers: Sequence[WrapperFn] = (), kwargs: Mapping[str, Any] | None = None,
                 imports: Sequence[str] = (), step_timeout: float | None = 60.0,
                 worker_cpus: float = 1.0) -> None:
        if not 1 <= rollout_workers <= num_envs:
            raise ConfigError(
                f"env.rollout_workers: {rollout_workers} Ray actors cannot share {num_envs} "
                f"env{'s' if num_envs != 1 else ''} (each holds at least one); use 1 to "
                f"{num_envs} rollout workers, or more envs.", key="env.rollout_workers")
        if not worker_cpus > 0:
            raise ConfigError(f"env.rollout_worker_cpus: expected a number > 0, got "
                              f"{worker_cpus!r}.", key="env.rollout_worker_cpus")
        mode = AutoresetMode(autoreset_mode)
        self.env_id = env_id
        self.num_envs = num_envs
        self.step_timeout = step_timeout
        self.worker_cpus = worker_cpus
        self.metadata = {"autoreset_mode": mode}
        self.sizes = split(num_envs, rollout_workers)
        self.offsets = [sum(self.sizes[:k]) for k in range(rollout_workers)]
        if not ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS")
            try:
                ray.init(address=address)
            except Exception as exc:
                where = f"the Ray cluster at RAY_ADDRESS={address}" if address else "Ray"
                raise _env_error(f"env: cannot start or connect to {where} for vectorization: "
                                 f"ray: {type(exc).__name__}: {exc}") from None
        self.workers: list[Any] = [
            _RemoteWorker.options(num_cpus=worker_cpus).remote(  # type: ignore[attr-defined]
                env_id, size, mode.value, tuple(wrappers), dict(kwargs or {}), tuple(imports))
            for size in self.sizes
        ]
        start = None if step_timeout is None else max(step_timeout, START_TIMEOUT)
        spaces = self._gather([w.spaces.remote() for w in self.workers], "start", start)
        self.single_observation_space, self.single_action_space = spaces[0]
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

    # --- the VectorEnv calls ---------------------------------------------------------------

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset every env; ``seed=s`` seeds env ``i`` with ``s + i``, as a sync vector env of
        all ``num_envs`` envs does (a list gives one seed per env)."""
        refs = []
        for k, worker in enumerate(self.workers):
            start, stop = self.offsets[k], self.offsets[k] + self.sizes[k]
            if isinstance(seed, (int, np.integer)):
                chunk_seed: int | list[int | None] | None = int(seed) + start
            else:
                chunk_seed = None if seed is None else list(seed[start:stop])
            chunk_options = options
            if options is not None and "reset_mask" in options:
                chunk_options = {**options, "reset_mask": options["reset_mask"][start:stop]}
            refs.append(worker.reset.remote(chunk_seed, chunk_options))
        results = self._gather(refs, "reset", self.step_timeout)
        obs = _concatenate(self.single_observation_space, [r[0] for r in results])
        return obs, merge_infos([r[1] for r in results], self.sizes)

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """Step every env; each actor gets its slice of ``actions``."""
        refs = [
            worker.step.remote(_take(self.single_action_space, actions, start, start + size))
            for worker, start, size in zip(self.workers, self.offsets, self.sizes)
        ]
        results = self._gather(refs, "step", self.step_timeout)
        obs = _concatenate(self.single_observation_space, [r[0] for r in results])
        reward, terminated, truncated = (np.concatenate([r[i] for r in results])
                                         for i in (1, 2, 3))
        return obs, reward, terminated, truncated, merge_infos([r[4] for r in results],
                                                               self.sizes)

    def close_extras(self, **kwargs: Any) -> None:
        """Close the envs in the actors (waiting briefly), then end the actors."""
        if not ray.is_initialized():  # Ray was shut down, and the actors with it
            return
        refs = [w.close.remote() for w in self.workers]
        try:
            ray.wait(refs, num_returns=len(refs), timeout=min(self.step_timeout or 5.0, 5.0))
        finally:
            self._stop()

    # --- exact resume ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Not available: the envs' state lives in other processes (a resume resets them)."""
        from rlkit.snapshot import SnapshotUnsupported

        raise SnapshotUnsupported("Ray vector envs keep their state in Ray actors")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from rlkit.snapshot import SnapshotUnsupported

        raise SnapshotUnsupported("Ray vector envs keep their state in Ray actors")

    # --- waiting and failures ------------------------------------------------------------------

    def _gather(self, refs: list[Any], call: str, timeout: float | None) -> list[Any]:
        """``ray.get(refs, timeout=timeout)``; a failure becomes one :class:`EnvError` naming
        the workers, and every actor is stopped."""
        try:
            return list(ray.get(refs, timeout=timeout))
        except Exception:  # an actor's error, its death, or the timeout: sorted out below
            error = self._failure(refs, call, timeout)
        raise error from None

    def _failure(self, refs: list[Any], call: str, timeout: float | None) -> EnvError:
        raised: list[tuple[int, str, str]] = []  # worker, exception type, message
        died: list[tuple[int, BaseException]] = []
        silent: list[int] = []
        for k, ref in enumerate(refs):
            try:
                ray.get(ref, timeout=0)
            except GetTimeoutError:
                silent.append(k)
            except RayActorError as exc:
                if exc.actor_init_failed:  # its constructor raised: Ray kept only the text
                    kind, _, message = _last_line(str(exc)).partition(": ")
                    raised.append((k, kind, message))
                else:
                    died.append((k, exc))
            except Exception as exc:
                cause = getattr(exc, "cause", None)  # what the actor raised, where Ray kept it
                if not isinstance(cause, BaseException):
                    cause = exc
                raised.append((k, type(cause).__name__, " ".join(str(cause).split())))
        self._stop()
        during = "while starting" if call == "start" else f"in {call}"
        if raised:
            _, kind, message = raised[0]
            return _env_error(
                f"env: {self._who([k for k, _, _ in raised])} raised {kind or 'an error'} "
                f"{during}: {message or '(no message)'}. Run it with env.vectorization: sync "
                f"to see the traceback.")
        if died:
            reason = _death_reason(died[0][1])
            return _env_error(
                f"env: {self._who([k for k, _ in died])} died {during}"
                f"{f' ({reason})' if reason else ''}. An actor dies of a crash in native code, "
                f"os._exit, the out-of-memory killer, ray.kill or a lost node; run the env with "
                f"env.vectorization: sync to debug it in one process.")
        if call == "start":
            total = ray.cluster_resources().get("CPU", 0.0)
            return _env_error(
                f"env: {self._who(silent)} did not start within {_seconds(timeout)}: Ray may "
                f"have no room for them (each asks for {self.worker_cpus:g} CPU, "
                f"env.rollout_worker_cpus; the cluster has {total:g} in all), or building the "
                f"env takes that long. Lower env.rollout_workers or env.rollout_worker_cpus, or "
                f"add nodes.")
        return _env_error(
            f"env: {self._who(silent)} did not answer {call} within {_seconds(timeout)} "
            f"(env.step_timeout); every worker was stopped. Fix the environment, or raise "
            f"env.step_timeout if its {call} is that slow.")

    def _who(self, workers: list[int]) -> str:
        """``rollout worker 1 of 2 (envs 3-4 of CartPole-v1)``."""
        def envs(k: int) -> str:
            first, last = self.offsets[k], self.offsets[k] + self.sizes[k] - 1
            return f"env {first}" if first == last else f"envs {first}-{last}"

        plural = "s" if len(workers) > 1 else ""
        return (f"rollout worker{plural} {', '.join(map(str, workers)) or '?'} of "
                f"{len(self.workers)} ({'; '.join(envs(k) for k in workers) or '?'} of "
                f"{self.env_id})")

    def _stop(self) -> None:
        """End every actor (their envs go with them)."""
        for worker in self.workers:
            with contextlib.suppress(Exception):  # already gone, or Ray shut down
                ray.kill(worker)
        self.closed = True


def _env_error(message: str) -> EnvError:
    from rlkit.environments import EnvError  # torch stays out of the actors' processes

    return EnvError(message)


def _seconds(timeout: float | None) -> str:
    return "forever" if timeout is None else f"{timeout:g} s"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _death_reason(exc: BaseException) -> str:
    """Ray's one-line reason for an actor's death (``The actor is dead because ...``)."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line.startswith("The actor is dead because"):
            reason = line.removeprefix("The actor is dead because").strip()
            return reason.split(". ", 1)[0].rstrip(".")  # the first sentence
    return ""


# --- batches: slices of actions, concatenated observations, merged infos -----------------------


def _take(space: gym.Space[Any], actions: Any, start: int, stop: int) -> Any:
    """Envs ``start:stop`` of a batch of actions of ``space``."""
    if isinstance(space, gym.spaces.Dict):
        return {key: _take(sub, actions[key], start, stop) for key, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_take(sub, part, start, stop) for sub, part in zip(space.spaces, actions))
    return actions[start:stop]


def _concatenate(space: gym.Space[Any], parts: list[Any]) -> Any:
    """The actors' batches of ``space`` as one, in worker order."""
    if isinstance(space, gym.spaces.Dict):
        return {key: _concatenate(sub, [p[key] for p in parts])
                for key, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_concatenate(sub, [p[i] for p in parts])
                     for i, sub in enumerate(space.spaces))
    if isinstance(space, (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete,
                          gym.spaces.MultiBinary)):
        return np.concatenate(parts)
    return tuple(item for part in parts for item in part)  # gymnasium batches others as tuples


def merge_infos(infos: Sequence[Mapping[str, Any]], sizes: Sequence[int]) -> dict[str, Any]:
    """The vector ``info`` dicts of consecutive blocks of ``sizes`` envs, as one.

    Each key holds an array over the envs (masks ``_key`` included); a block without the key
    contributes zeros (``None`` in object arrays, ``False`` in masks). Nested dicts, such as
    ``episode`` statistics or ``final_info``, are merged the same way.
    """
    keys = dict.fromkeys(key for info in infos for key in info)
    merged: dict[str, Any] = {}
    for key in keys:
        parts = [info.get(key) for info in infos]
        if any(isinstance(p, Mapping) for p in parts):
            merged[key] = merge_infos([p if isinstance(p, Mapping) else {} for p in parts], sizes)
            continue
        arrays = [None if p is None else np.asarray(p) for p in parts]
        template = next((a for a in arrays if a is not None), np.full(1, None, dtype=object))
        merged[key] = np.concatenate([
            a if a is not None else _blank(template, n) for a, n in zip(arrays, sizes)])
    return merged


def _blank(template: np.ndarray[Any, Any], n: int) -> np.ndarray[Any, Any]:
    """``n`` empty rows like ``template``'s: ``None`` for objects, else zeros (``False``)."""
    shape = (n, *template.shape[1:])
    if template.dtype == object:
        return np.full(shape, None, dtype=object)
    return np.zeros(shape, dtype=template.dtype)
