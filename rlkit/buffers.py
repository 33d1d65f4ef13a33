"""Preallocated storage for experience, on the agent's device.

* :class:`ReplayBuffer` -- circular storage of single transitions with uniform sampling, for
  off-policy algorithms (DQN, DDPG, SAC).
* :class:`SequenceReplayBuffer` -- time-major circular storage for recurrent off-policy
  algorithms (recurrent DQN): each env's steps kept in order with the recurrent state the agent
  acted from, sampled as sequences from uniformly random ``(env, start time)``.
* :class:`RolloutBuffer` -- ``T x N`` storage of one on-policy rollout with vectorized GAE
  (:func:`rlkit.returns.gae`), for PPO and A2C; for a recurrent policy it also keeps where
  episodes began and the recurrent state at the start of every training sequence, and hands
  out whole sequences (:meth:`RolloutBuffer.sequences`).

All three allocate every tensor once and write each batch of ``N`` environments into a slice, so
adding a step costs a few tensor copies and no allocation. Observations keep the dtype the
environment adapter produces: ``int64`` for ``Discrete``/``MultiDiscrete`` spaces, ``uint8``
for image boxes, ``float32`` for other boxes. Actions are ``int64`` ``(N,)`` for ``Discrete``
spaces and ``float32`` ``(N, *shape)`` for boxes.

``next_obs`` is always the *true* next observation (the final one where an episode ended), so
truncated episodes can bootstrap from it; ``terminated`` alone decides that nothing is.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from rlkit.interfaces import Transition
from rlkit.returns import gae
from rlkit.validation import ConfigError

__all__ = ["ReplayBatch", "ReplayBuffer", "ReplaySequences", "RolloutBatch", "RolloutBuffer",
           "SequenceBatch", "SequenceReplayBuffer", "allocation_failure", "check_allocation",
           "storage_bytes"]


def storage_bytes(rows: int, layouts: Iterable[tuple[tuple[int, ...], torch.dtype]]) -> int:
    """Bytes that ``rows`` rows of tensors of the given ``(shape, dtype)`` layouts take (exact
    Python integers, so a size that would overflow ``int64`` is still measured)."""
    per_row = sum(math.prod(shape) * dtype.itemsize for shape, dtype in layouts)
    return int(rows) * per_row


def device_memory(device: torch.device) -> tuple[int, str] | None:
    """``(bytes, description)`` of the memory an allocation on ``device`` can use at most:
    the GPU's total memory, or the machine's physical memory; ``None`` where unknown."""
    if device.type == "cuda":
        try:
            total = torch.cuda.get_device_properties(device).total_memory
        except (RuntimeError, AssertionError):
            return None
        return int(total), f"the GPU's {_size(total)}"
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        return None
    return int(total), f"this machine's {_size(total)} of physical memory"


def check_allocation(nbytes: int, *, key: str, what: str, device: torch.device | str,
                     advice: str | None = None) -> None:
    """Refuse, before allocating, storage larger than the device's memory.

    :param nbytes: the size of the allocation (see :func:`storage_bytes`).
    :param key: the config key path that sets its size, e.g. ``algorithm.buffer_size``.
    :param what: the storage, e.g. ``a replay buffer of 10,000,000 transitions``.
    :param advice: what to do instead (default: lower the key).
    :raises ConfigError: naming ``key``, the bytes needed and the memory there is.
    """
    memory = device_memory(torch.device(device))
    if memory is not None and nbytes > memory[0]:
        raise ConfigError(f"{key}: {what} would need {_size(nbytes)} of memory, more than "
                          f"{memory[1]}; {advice or 'lower ' + key.rpartition('.')[2]}.",
                          key=key)


def allocation_failure(exc: BaseException) -> str | None:
    """What an allocator's out-of-memory error says was asked for (``3.6 TiB``), ``""`` where it
    does not say, or ``None`` when ``exc`` is not an allocation failure."""
    if not isinstance(exc, (MemoryError, RuntimeError)):
        return None
    text = str(exc)
    if "Storage size calculation overflowed" in text:  # more bytes than 64 bits can count
        return ""
    if not (isinstance(exc, (MemoryError, torch.OutOfMemoryError))
            or "can't allocate memory" in text or "out of memory" in text):
        return None
    tried = re.search(r"allocate (\d+) bytes", text)
    if tried:
        return _size(int(tried.group(1)))
    tried = re.search(r"[Tt]ried to allocate ([\d.]+ [KMGTP]?i?B)", text)
    return tried.group(1) if tried else ""


def _size(nbytes: int) -> str:
    """``1.5 GiB`` style."""
    value = float(nbytes)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:,.0f} {unit}" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def observation_layout(space: gym.Space[Any]) -> tuple[tuple[int, ...], torch.dtype]:
    """Shape and dtype one observation of ``space`` is stored with."""
    if isinstance(space, gym.spaces.Discrete):
        return (), torch.int64
    if isinstance(space, gym.spaces.MultiDiscrete):
        return tuple(space.shape), torch.int64
    if isinstance(space, gym.spaces.MultiBinary):
        return tuple(space.shape), torch.int8
    if isinstance(space, gym.spaces.Box):
        if space.dtype == np.uint8:
            return tuple(space.shape), torch.uint8
        if np.issubdtype(space.dtype, np.integer):
            return tuple(space.shape), torch.int64
        return tuple(space.shape), torch.float32
    raise TypeError(f"cannot store observations of space {space}; use a Box, Discrete, "
                    f"MultiDiscrete or MultiBinary space (flatten others with a wrapper)")


def action_layout(space: gym.Space[Any]) -> tuple[tuple[int, ...], torch.dtype]:
    """Shape and dtype one action of ``space`` is stored with."""
    if isinstance(space, gym.spaces.Discrete):
        return (), torch.int64
    if isinstance(space, gym.spaces.MultiDiscrete):
        return tuple(space.shape), torch.int64
    if isinstance(space, (gym.spaces.Box, gym.spaces.MultiBinary)):
        return tuple(space.shape), torch.float32
    raise TypeError(f"cannot store actions of space {space}; use a Box, Discrete, "
                    f"MultiDiscrete or MultiBinary space")


class ReplayBatch(NamedTuple):
    """A uniformly sampled batch of transitions, each field ``(B, ...)``.

    :param obs: observations.
    :param action: actions taken.
    :param reward: rewards, float32.
    :param next_obs: true next observations (the final one where an episode ended).
    :param terminated: bool, no bootstrapping from ``next_obs`` where set.
    """

    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    terminated: Tensor


class ReplayBuffer:
    """Circular replay memory (Lin, 1992; Mnih et al., 2015) with uniform sampling.

    Holds up to ``capacity`` transitions in total (not per environment); once full, each new
    transition overwrites the oldest one.

    :param capacity: the number of transitions kept.
    :param observation_space: the space of one environment's observation.
    :param action_space: the space of one environment's action.
    :param num_envs: ``N``, the rows each :meth:`add` brings (fewer where some are invalid).
    :param device: where the tensors live.
    :param size_key: the config key that sets ``capacity``, named if it does not fit in memory.
    :raises ConfigError: before allocating, where the buffer would not fit in the device's
        memory.
    """

    FIELDS = ("obs", "action", "reward", "next_obs", "terminated")

    def __init__(
        self,
        *,
        capacity: int,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        num_envs: int,
        device: torch.device | str,
        size_key: str = "capacity",
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = int(capacity)
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        obs_shape, obs_dtype = observation_layout(observation_space)
        act_shape, act_dtype = action_layout(action_space)
        layouts = [(obs_shape, obs_dtype), (obs_shape, obs_dtype), (act_shape, act_dtype),
                   ((), torch.float32), ((), torch.bool)]
        check_allocation(storage_bytes(self.capacity, layouts), key=size_key, device=self.device,
                         what=f"a replay buffer of {self.capacity:,} transitions")
        size, dev = self.capacity, self.device
        # Uninitialised: a row is written before anything reads it (sampling and state_dict see
        # only the first `size` rows), and untouched pages of a large buffer cost no memory
        # until the buffer fills up to them.
        self.obs = torch.empty((size, *obs_shape), dtype=obs_dtype, device=dev)
        self.next_obs = torch.empty((size, *obs_shape), dtype=obs_dtype, device=dev)
        self.action = torch.empty((size, *act_shape), dtype=act_dtype, device=dev)
        self.reward = torch.empty(size, dtype=torch.float32, device=dev)
        self.terminated = torch.empty(size, dtype=torch.bool, device=dev)
        self.pos = 0
        """Row the next transition is written to."""
        self.size = 0
        """Rows filled so far (at most ``capacity``)."""

    def __len__(self) -> int:
        return self.size

    def add(self, t: Transition) -> None:
        """Store the ``N`` rows of ``t``, skipping those whose ``t.valid`` is ``False``."""
        rows: tuple[Tensor, ...] = (t.obs, t.action, t.reward, t.next_obs, t.terminated)
        if t.valid is not None and not bool(t.valid.all()):
            rows = tuple(x[t.valid] for x in rows)
        n = rows[2].shape[0]
        if n > self.capacity:  # only the newest rows survive
            rows = tuple(x[n - self.capacity:] for x in rows)
            n = self.capacity
        if n == 0:
            return
        start, stop = self.pos, self.pos + n
        if stop <= self.capacity:  # the common case: one slice per field (called every step)
            for name, src in zip(self.FIELDS, rows):
                getattr(self, name)[start:stop].copy_(src)
        else:
            first = self.capacity - start  # rows that fit before the end
            for name, src in zip(self.FIELDS, rows):
                dst: Tensor = getattr(self, name)
                dst[start:].copy_(src[:first])
                dst[: n - first].copy_(src[first:])
        self.pos = stop % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> ReplayBatch:
        """Draw ``batch_size`` stored transitions uniformly, with replacement.

        :param batch_size: rows in the batch.
        :param generator: the random source (on this buffer's device), so that sampling is
            reproducible and independent of the global RNG.
        """
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        idx = torch.randint(0, self.size, (batch_size,), generator=generator,
                            device=self.device)
        return ReplayBatch(*(getattr(self, name)[idx] for name in self.FIELDS))

    def state_dict(self) -> dict[str, Any]:
        """The filled rows and the write position (tensors and plain data only)."""
        state: dict[str, Any] = {name: getattr(self, name)[: self.size].clone()
                                 for name in self.FIELDS}
        state.update(pos=self.pos, size=self.size, capacity=self.capacity)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (into a buffer of the same capacity)."""
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"replay buffer state has capacity {state['capacity']}, this "
                             f"buffer {self.capacity}; build it with the same buffer size")
        size = int(state["size"])
        for name in self.FIELDS:
            getattr(self, name)[:size].copy_(state[name])
        self.size, self.pos = size, int(state["pos"])


class ReplaySequences(NamedTuple):
    """``B`` replayed sequences of ``L`` consecutive steps of one env each: fields ``(L, B,
    ...)``, time first, except :attr:`state`.

    :param obs: observations the agent acted on.
    :param action: actions taken.
    :param reward: rewards, float32.
    :param next_obs: true next observations (the final one where an episode ended).
    :param terminated: bool, no bootstrapping from ``next_obs`` where set.
    :param truncated: bool, the episode was cut off after this step.
    :param valid: ``False`` for rows that only reset an env (kept for the sequence, never
        learned from).
    :param starts: ``True`` where the agent's state was reset before acting at that step.
    :param state: ``(B, *state_shape)``, the recurrent state the agent acted from at each
        sequence's first step.
    """

    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    terminated: Tensor
    truncated: Tensor
    valid: Tensor
    starts: Tensor
    state: Tensor


class SequenceReplayBuffer:
    """Time-major replay memory for recurrent off-policy agents (DRQN, R2D2), uniform over
    ``(env, start time)`` sequences.

    Every field is a ``(capacity, N, ...)`` tensor attribute, circular over time: each
    :meth:`add` writes one step of all ``N`` environments (invalid rows too, marked so, to
    keep every env's steps consecutive) and, once ``capacity`` steps are held, overwrites the
    oldest. Besides the transition it keeps ``episode_start`` -- where the agent reset its
    state before acting -- and ``state``, the recurrent state the agent acted from at every
    step, so that a sequence may begin at any step.

    :param capacity: steps kept per environment.
    :param observation_space: the space of one environment's observation.
    :param action_space: the space of one environment's action.
    :param num_envs: ``N``.
    :param state_shape: the shape of one env's recurrent state.
    :param device: where the tensors live.
    :param size_key: the config key that sets ``capacity``, named if it does not fit in memory.
    :raises ConfigError: before allocating, where the buffer would not fit in the device's
        memory.
    """

    FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated", "valid",
              "episode_start", "state")

    def __init__(
        self,
        *,
        capacity: int,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        num_envs: int,
        state_shape: tuple[int, ...],
        device: torch.device | str,
        size_key: str = "capacity",
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = int(capacity)
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        obs_shape, obs_dtype = observation_layout(observation_space)
        act_shape, act_dtype = action_layout(action_space)
        layouts = [(obs_shape, obs_dtype), (obs_shape, obs_dtype), (act_shape, act_dtype),
                   ((), torch.float32), *[((), torch.bool)] * 4,
                   (tuple(state_shape), torch.float32)]
        check_allocation(storage_bytes(self.capacity * self.num_envs, layouts), key=size_key,
                         device=self.device, what=f"a sequence replay buffer of "
                         f"{self.capacity:,} steps x {self.num_envs:,} envs")
        grid, dev = (self.capacity, self.num_envs), self.device
        # Uninitialised, as in ReplayBuffer: a step is written before anything reads it.
        self.obs = torch.empty((*grid, *obs_shape), dtype=obs_dtype, device=dev)
        self.next_obs = torch.empty((*grid, *obs_shape), dtype=obs_dtype, device=dev)
        self.action = torch.empty((*grid, *act_shape), dtype=act_dtype, device=dev)
        self.reward = torch.empty(grid, dtype=torch.float32, device=dev)
        self.terminated = torch.empty(grid, dtype=torch.bool, device=dev)
        self.truncated = torch.empty(grid, dtype=torch.bool, device=dev)
        self.valid = torch.empty(grid, dtype=torch.bool, device=dev)
        self.episode_start = torch.empty(grid, dtype=torch.bool, device=dev)
        self.state = torch.empty((*grid, *state_shape), dtype=torch.float32, device=dev)
        self.pos = 0
        """Time index the next step is written to."""
        self.size = 0
        """Steps held per env (at most ``capacity``)."""

    def __len__(self) -> int:
        """Transitions held, over all envs (invalid rows included)."""
        return self.size * self.num_envs

    def add(self, t: Transition, *, episode_start: Tensor, state: Tensor) -> None:
        """Store one step of all ``N`` environments.

        :param t: the transition; rows whose ``t.valid`` is ``False`` are stored as invalid.
        :param episode_start: ``(N,)`` bool, where the agent reset its state before acting.
        :param state: ``(N, *state_shape)``, the state the agent acted from.
        """
        valid = t.valid if t.valid is not None else True
        rows = (t.obs, t.action, t.reward, t.next_obs, t.terminated, t.truncated, valid,
                episode_start, state)
        i = self.pos
        for name, src in zip(self.FIELDS, rows):
            target: Tensor = getattr(self, name)[i]
            if isinstance(src, bool):
                target.fill_(src)
            else:
                target.copy_(src)
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def starts_available(self, length: int) -> int:
        """Start times per env from which ``length`` consecutive stored steps follow."""
        return max(self.size - length + 1, 0)

    def sample(self, batch_size: int, length: int,
               generator: torch.Generator) -> ReplaySequences:
        """Draw ``batch_size`` sequences of ``length`` steps, uniformly over ``(env, start
        time)``, with replacement.

        A sequence lies wholly inside the stored steps (from the oldest to the newest, never
        across the write position); it may cross episode boundaries, which
        :attr:`ReplaySequences.starts` marks.

        :param generator: the random source (on this buffer's device).
        """
        starts = self.starts_available(length)
        if starts == 0:
            raise RuntimeError(f"cannot sample sequences of {length} steps: the buffer holds "
                               f"{self.size} steps per env")
        draw = torch.randint(0, starts * self.num_envs, (batch_size,), generator=generator,
                             device=self.device)
        env, start = draw % self.num_envs, draw // self.num_envs
        oldest = (self.pos - self.size) % self.capacity
        offsets = torch.arange(length, device=self.device).unsqueeze(1)
        time = (oldest + start.unsqueeze(0) + offsets) % self.capacity  # (L, B)
        env_idx = env.unsqueeze(0)
        fields = [getattr(self, name)[time, env_idx] for name in self.FIELDS[:-1]]
        return ReplaySequences._make([*fields, self.state[time[0], env]])

    def state_dict(self) -> dict[str, Any]:
        """The filled steps and the write position (tensors and plain data only)."""
        state: dict[str, Any] = {name: getattr(self, name)[: self.size].clone()
                                 for name in self.FIELDS}
        state.update(pos=self.pos, size=self.size, capacity=self.capacity)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (into a buffer of the same shape)."""
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"sequence replay buffer state has capacity {state['capacity']} "
                             f"steps per env, this buffer {self.capacity}; build it with the "
                             f"same buffer size and number of envs")
        size = int(state["size"])
        for name in self.FIELDS:
            stored = state[name]
            if tuple(stored.shape[1:]) != tuple(getattr(self, name).shape[1:]):
                raise ValueError(f"sequence replay buffer field {name!r} has shape "
                                 f"{tuple(stored.shape[1:])} per step, this buffer "
                                 f"{tuple(getattr(self, name).shape[1:])}")
            getattr(self, name)[:size].copy_(stored)
        self.size, self.pos = size, int(state["pos"])


class RolloutBatch(NamedTuple):
    """A minibatch of rollout rows, each field ``(B, ...)``.

    :param obs: observations.
    :param action: actions taken (as sampled, before any clipping to the action bounds).
    :param log_prob: log-probability of ``action`` under the policy that collected it.
    :param value: ``V(obs)`` when collected.
    :param advantage: GAE advantages.
    :param return_: ``advantage + value``, the value target.
    """

    obs: Tensor
    action: Tensor
    log_prob: Tensor
    value: Tensor
    advantage: Tensor
    return_: Tensor


class SequenceBatch(NamedTuple):
    """A minibatch of ``B`` training sequences of ``L`` steps: fields ``(L, B, ...)``, time
    first, except :attr:`state`.

    :param obs: observations.
    :param action: actions taken.
    :param log_prob: log-probability of ``action`` when collected.
    :param value: ``V(obs)`` when collected.
    :param advantage: GAE advantages.
    :param return_: value targets.
    :param starts: ``True`` where an episode began at that step (its state was reset first).
    :param valid: ``False`` for rows that only reset an env (kept for the sequence, never
        learned from).
    :param state: ``(B, *state_shape)``, the recurrent state each sequence began with.
    """

    obs: Tensor
    action: Tensor
    log_prob: Tensor
    value: Tensor
    advantage: Tensor
    return_: Tensor
    starts: Tensor
    valid: Tensor
    state: Tensor


class RolloutBuffer:
    """``T x N`` on-policy storage: one rollout of ``num_steps`` steps from ``N`` environments.

    Every field is a ``(T, N, ...)`` tensor attribute (``obs``, ``action``, ``reward``,
    ``next_obs``, ``terminated``, ``truncated``, ``value``, ``log_prob``, ``valid``), so an
    algorithm can evaluate ``V(next_obs)`` in one batched forward pass before :meth:`compute`.

    :param num_steps: ``T``, steps per environment in one rollout.
    :param num_envs: ``N``.
    :param observation_space: the space of one environment's observation.
    :param action_space: the space of one environment's action.
    :param device: where the tensors live.
    :param size_key: the config key that sets ``num_steps``, named if it does not fit in memory.
    :param state_shape: for a recurrent policy, the shape of one env's recurrent state; the
        buffer then also stores ``episode_start`` ``(T, N)``, ``boot_value`` ``(T, N)`` (the value
        a truncated episode bootstraps from, computed with the state it ended in) and
        ``state`` ``(T / seq_len, N, *state_shape)``, the state at the start of each sequence.
    :param seq_len: steps per training sequence (must divide ``num_steps``; default: all).
    :raises ConfigError: before allocating, where the rollout would not fit in the device's
        memory.
    """

    STORED = ("obs", "action", "reward", "next_obs", "terminated", "truncated", "value",
              "log_prob", "valid")
    RECURRENT = ("episode_start", "boot_value")

    def __init__(
        self,
        *,
        num_steps: int,
        num_envs: int,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        device: torch.device | str,
        size_key: str = "num_steps",
        state_shape: tuple[int, ...] | None = None,
        seq_len: int | None = None,
    ) -> None:
        self.num_steps = int(num_steps)
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.recurrent = state_shape is not None
        self.seq_len = int(seq_len or self.num_steps)
        if self.num_steps % self.seq_len:
            raise ValueError(f"seq_len ({self.seq_len}) must divide num_steps "
                             f"({self.num_steps})")
        obs_shape, obs_dtype = observation_layout(observation_space)
        act_shape, act_dtype = action_layout(action_space)
        scalars = [((), torch.float32)] * 5 + [((), torch.bool)] * 3
        layouts = [(obs_shape, obs_dtype), (obs_shape, obs_dtype), (act_shape, act_dtype),
                   *scalars]
        if state_shape is not None:
            per_step = math.prod(state_shape) * 4 // self.seq_len
            layouts += [((), torch.bool), ((), torch.float32), ((per_step,), torch.uint8)]
        check_allocation(storage_bytes(self.num_steps * self.num_envs, layouts), key=size_key,
                         device=self.device, what=f"a rollout of {self.num_steps:,} steps x "
                         f"{self.num_envs:,} envs")
        grid, dev = (self.num_steps, self.num_envs), self.device
        self.obs = torch.zeros((*grid, *obs_shape), dtype=obs_dtype, device=dev)
        self.next_obs = torch.zeros((*grid, *obs_shape), dtype=obs_dtype, device=dev)
        self.action = torch.zeros((*grid, *act_shape), dtype=act_dtype, device=dev)
        self.reward = torch.zeros(grid, dtype=torch.float32, device=dev)
        self.terminated = torch.zeros(grid, dtype=torch.bool, device=dev)
        self.truncated = torch.zeros(grid, dtype=torch.bool, device=dev)
        self.value = torch.zeros(grid, dtype=torch.float32, device=dev)
        self.log_prob = torch.zeros(grid, dtype=torch.float32, device=dev)
        self.valid = torch.ones(grid, dtype=torch.bool, device=dev)
        self.advantages = torch.zeros(grid, dtype=torch.float32, device=dev)
        """GAE advantages, filled by :meth:`compute`."""
        self.returns = torch.zeros(grid, dtype=torch.float32, device=dev)
        """Value targets ``advantages + value``, filled by :meth:`compute`."""
        if state_shape is not None:
            self.episode_start = torch.zeros(grid, dtype=torch.bool, device=dev)
            self.boot_value = torch.zeros(grid, dtype=torch.float32, device=dev)
            self.state = torch.zeros((self.num_steps // self.seq_len, self.num_envs,
                                      *state_shape), dtype=torch.float32, device=dev)
        self.step = 0
        """Rows ``[0, step)`` along ``T`` are filled."""

    @property
    def full(self) -> bool:
        """All ``num_steps`` steps are stored: time to :meth:`compute` and learn."""
        return self.step >= self.num_steps

    def reset(self) -> None:
        """Start a new rollout (the old rows are overwritten as new ones arrive)."""
        self.step = 0

    def add(
        self,
        *,
        obs: Tensor,
        action: Tensor,
        reward: Tensor,
        next_obs: Tensor,
        terminated: Tensor,
        truncated: Tensor,
        value: Tensor,
        log_prob: Tensor,
        valid: Tensor | None = None,
        episode_start: Tensor | None = None,
        boot_value: Tensor | None = None,
        state: Tensor | None = None,
    ) -> None:
        """Store one step of all ``N`` environments; each argument is ``(N, ...)``.

        :param valid: ``False`` for entries that only reset an environment (their rows are
            kept for shape but never appear in :meth:`minibatches`); ``None``: all valid.
        :param episode_start: recurrent buffers: where the state was reset before acting.
        :param boot_value: recurrent buffers: ``V(next_obs)`` where ``truncated`` (else
            ignored), computed with the state the episode ended in.
        :param state: recurrent buffers: the state the agent acted from; stored at the first
            step of every sequence.
        """
        if self.full:
            raise RuntimeError(f"the rollout buffer is full ({self.num_steps} steps); call "
                               f"reset() after learning from it")
        t = self.step
        self.obs[t].copy_(obs)
        self.action[t].copy_(action)
        self.reward[t].copy_(reward)
        self.next_obs[t].copy_(next_obs)
        self.terminated[t].copy_(terminated)
        self.truncated[t].copy_(truncated)
        self.value[t].copy_(value)
        self.log_prob[t].copy_(log_prob)
        if valid is None:
            self.valid[t].fill_(True)
        else:
            self.valid[t].copy_(valid)
        if self.recurrent:
            if episode_start is None or boot_value is None or state is None:
                raise ValueError("a recurrent rollout buffer needs episode_start, boot_value "
                                 "and state at every step")
            self.episode_start[t].copy_(episode_start)
            self.boot_value[t].copy_(boot_value)
            if t % self.seq_len == 0:
                self.state[t // self.seq_len].copy_(state)
        self.step = t + 1

    def compute(self, next_values: Tensor, gamma: float, lam: float) -> None:
        """Fill :attr:`advantages` and :attr:`returns` with GAE (:func:`rlkit.returns.gae`).

        :param next_values: ``(T, N)`` ``V(next_obs)``; truncated episodes bootstrap from it,
            terminated ones do not.
        :param gamma: discount factor.
        :param lam: GAE's lambda.
        """
        advantages, returns = gae(self.reward, self.value, next_values, self.terminated,
                                  self.terminated | self.truncated, gamma, lam)
        self.advantages.copy_(advantages)
        self.returns.copy_(returns)

    def minibatches(self, batch_size: int, generator: torch.Generator) -> Iterator[RolloutBatch]:
        """One shuffled pass over the valid rows of the flattened ``T * N`` rollout.

        Every valid row appears exactly once; the last minibatch holds the remainder when
        ``batch_size`` does not divide the number of valid rows. When one minibatch holds the
        whole rollout it is yielded in storage order, without a shuffle or a copy: the losses
        are means over the minibatch, which order does not change.

        :param batch_size: rows per minibatch.
        :param generator: the random source for the shuffle (on this buffer's device).
        """
        valid = self.valid[: self.step].flatten()
        rows = self.step * self.num_envs
        fields = (self.obs, self.action, self.log_prob, self.value, self.advantages,
                  self.returns)
        flat = [x[: self.step].reshape(rows, *x.shape[2:]) for x in fields]
        all_valid = bool(valid.all())
        if all_valid and batch_size >= rows:
            yield RolloutBatch(*flat)
            return
        order = torch.randperm(rows, generator=generator, device=self.device)
        if not all_valid:
            order = order[valid[order]]
        for start in range(0, order.numel(), batch_size):
            idx = order[start:start + batch_size]
            yield RolloutBatch(*(x[idx] for x in flat))

    def sequences(self, batch_size: int, generator: torch.Generator) -> Iterator[SequenceBatch]:
        """One shuffled pass over the rollout's ``T / seq_len * N`` sequences (recurrent
        buffers), ``max(batch_size // seq_len, 1)`` sequences per minibatch.

        Each sequence is ``seq_len`` consecutive steps of one env, starting from the state
        stored when its first step was collected; episodes that begin inside it are marked in
        ``starts``, so the state is reset there exactly as it was while acting.
        """
        if not self.recurrent:
            raise RuntimeError("sequences() needs a buffer built with state_shape")
        length, chunks, n = self.seq_len, self.step // self.seq_len, self.num_envs

        def cut(x: Tensor) -> Tensor:  # (T, N, ...) -> (chunks * N, L, ...)
            x = x[: chunks * length].reshape(chunks, length, n, *x.shape[2:])
            return x.transpose(1, 2).reshape(chunks * n, length, *x.shape[3:])

        fields = [cut(x) for x in (self.obs, self.action, self.log_prob, self.value,
                                   self.advantages, self.returns, self.episode_start,
                                   self.valid)]
        states = self.state[:chunks].reshape(chunks * n, *self.state.shape[2:])
        total = chunks * n
        per = max(batch_size // length, 1)
        if per >= total:
            yield SequenceBatch._make([*(x.transpose(0, 1) for x in fields), states])
            return
        order = torch.randperm(total, generator=generator, device=self.device)
        for start in range(0, total, per):
            idx = order[start:start + per]
            yield SequenceBatch._make([*(x[idx].transpose(0, 1) for x in fields), states[idx]])

    def state_dict(self) -> dict[str, Any]:
        """The filled steps and the step counter (tensors and plain data only)."""
        names = self.STORED + (self.RECURRENT if self.recurrent else ())
        state: dict[str, Any] = {name: getattr(self, name)[: self.step].clone()
                                 for name in names}
        if self.recurrent:
            state["state"] = self.state[: -(-self.step // self.seq_len)].clone()
        state["step"] = self.step
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        step = int(state["step"])
        if step > self.num_steps:
            raise ValueError(f"rollout buffer state holds {step} steps, this buffer "
                             f"{self.num_steps}; build it with the same number of steps")
        names = self.STORED + (self.RECURRENT if self.recurrent else ())
        for name in names:
            getattr(self, name)[:step].copy_(state[name])
        if self.recurrent:
            stored = state["state"]
            self.state[: stored.shape[0]].copy_(stored)
        self.step = step
