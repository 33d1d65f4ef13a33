"""What every torch-native batched environment shares: tensors, auto-reset, time limits, seeds.

An environment here is a :class:`gymnasium.vector.VectorEnv` whose whole state is a batch of
tensors on one device. Its physics is a *pure* function of tensors::

    step_fn(state, action, params) -> (new_state, obs, reward, terminated)

with no Python loop over environments, no randomness and no writes to its inputs, so it can be
wrapped with :func:`torch.compile` (``compile=True``). :class:`BatchedEnv` adds the rest:

* the per-env step counter and truncation at ``max_episode_steps``;
* gymnasium's ``same_step`` auto-reset: when an episode ends, ``step`` returns the first
  observation of the next one, and ``info["final_obs"]`` the observation the episode ended on.
  ``final_obs`` is a full ``(N, *obs_shape)`` tensor whose rows of envs that did not finish
  equal the returned observation, and ``info["_final_obs"]`` the ``(N,)`` bool mask of the envs
  that finished, so the true next observation is ``final_obs`` itself;
* seeding: ``reset(seed=s)`` seeds a :class:`torch.Generator` on the env's device with ``s``
  (any non-negative integer, as in gymnasium; :func:`torch_seed` maps one beyond 64 bits);
  initial states follow gymnasium's distributions (not its numbers). The stream depends on the
  device kind: on the CPU fresh states are drawn only for the envs that finished, on an
  accelerator for every env every step (so that nothing waits for the device to say which
  finished);
* ``reset(options=...)``: ``{"reset_mask": m}`` restarts only the envs where the ``(N,)`` bool
  mask is True, as gymnasium's ``SyncVectorEnv`` does (the others keep their episode and
  observation); initial-state bounds (``low``/``high``) hold for that reset and the auto-resets
  after it, until the next ``reset``, which without them goes back to the defaults, as
  gymnasium's own batched ``CartPoleVectorEnv`` does;
* ``check_actions=True`` (or ``RLKIT_CHECK_ACTIONS=1``): ``step`` raises on actions outside
  the action space (:mod:`rlkit_envs.checks`); off, actions are applied unchecked;
* :meth:`BatchedEnv.state_dict` / :meth:`BatchedEnv.load_state_dict` for exact resume;
* :meth:`BatchedEnv.set_params`: physical parameters (:attr:`BatchedEnv.settable_params`)
  changed between steps without rebuilding the env (a run whose world drifts); the next
  ``step`` uses them;
* ``frame_stack=k``: each observation is the last ``k`` frames concatenated along the first
  axis, oldest first (``(k * d,)`` vectors, ``(k * C, H, W)`` images); a new episode starts
  with ``k`` copies of its first frame, and ``final_obs`` is the stack ending on the final
  frame. It makes velocities recoverable from positions (``rlkit/CartPoleNoVel-v1``).

A state is a tensor, or a NamedTuple of tensors, with the env along
:attr:`BatchedEnv.state_batch_dim` (0: ``(N, S)``, one row per env, which can be the
observation itself, as in CartPole; -1: ``(S, N)``, one contiguous row per variable, as in
Acrobot). States are replaced, never written in place, so tensors returned by ``reset`` and
``step`` stay valid across steps without cloning. They may *be* the env's state (no copy is
made): do not modify them in place.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.envs.classic_control import utils as classic_utils
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from torch import Tensor

from rlkit_envs.checks import ActionChecker, check_actions_requested, reset_mask

__all__ = ["BatchedEnv", "StepFn", "replace_rows", "select", "torch_seed"]

StateT = TypeVar("StateT")
ParamsT = TypeVar("ParamsT")
StepFn = Callable[[Any, Tensor, Any], tuple[Any, Tensor, Tensor, Tensor]]
"""``(state, action, params) -> (new_state, obs, reward, terminated)``, pure tensor code."""


class BatchedEnv(VectorEnv, Generic[StateT, ParamsT]):
    """Base class of rlkit's torch-native environments (``same_step`` auto-reset).

    Subclasses pass their spaces, parameters and pure step function to ``__init__`` and
    implement :meth:`initial_state` and :meth:`observe`.

    :param num_envs: environments in the batch.
    :param device: where the state lives and every returned tensor is.
    :param max_episode_steps: truncate an episode after this many steps; ``None`` for never.
    :param compile: wrap the pure step function with :func:`torch.compile`.
    :param frame_stack: observe the last this many frames, concatenated along the first axis.
    :param check_actions: raise on actions outside the action space (``RLKIT_CHECK_ACTIONS=1``
        turns this on for every env); off, ``step`` applies them unchecked.
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}
    accepts_tensors = True
    """``step`` takes actions as tensors (on any device) as well as numpy arrays."""
    full_final_obs = True
    """``info["final_obs"]`` is the whole ``(N, ...)`` batch: the final observation where an
    episode ended, the returned observation everywhere else."""
    state_batch_dim = -1
    """The env dimension of the state: -1 for an ``(S, N)`` tensor, 0 for a NamedTuple."""
    default_reset_bounds: tuple[float, float] | None = None
    """gymnasium's default ``low``/``high`` of the initial-state distribution, if it has any."""
    settable_params: tuple[str, ...] = ()
    """The fields of :attr:`params` that :meth:`set_params` may change between steps: the
    physical parameters that leave the observation and action spaces as they were built."""

    def __init__(
        self,
        num_envs: int,
        *,
        single_observation_space: spaces.Space[Any],
        single_action_space: spaces.Space[Any],
        step_fn: StepFn,
        params: ParamsT,
        device: torch.device | str = "cpu",
        max_episode_steps: int | None = None,
        compile: bool = False,
        frame_stack: int = 1,
        check_actions: bool = False,
    ) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        if max_episode_steps is not None and int(max_episode_steps) < 1:
            raise ValueError(f"max_episode_steps must be at least 1 or None, got "
                             f"{max_episode_steps}")
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.frame_stack = int(frame_stack)
        if self.frame_stack > 1:
            single_observation_space = _stacked_space(single_observation_space, self.frame_stack)
        elif self.frame_stack < 1:
            raise ValueError(f"frame_stack must be at least 1, got {frame_stack}")
        self._frames: Tensor | None = None
        self.single_observation_space = single_observation_space
        self.single_action_space = single_action_space
        self.observation_space = batch_space(single_observation_space, self.num_envs)
        self.action_space = batch_space(single_action_space, self.num_envs)
        self.params = params
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self.reset_bounds = self.default_reset_bounds
        self._discrete = isinstance(single_action_space, spaces.Discrete)
        self._step_fn: StepFn = torch.compile(step_fn, dynamic=False) if compile else step_fn
        self._host_checks = self.device.type == "cpu"
        self.check_actions = check_actions_requested(check_actions)
        """Whether ``step`` checks actions against the action space."""
        self._checker: ActionChecker | None = None
        self.generator = torch.Generator(device=self.device)
        self.generator.seed()  # unseeded until reset(seed=...), like gymnasium
        self.elapsed = torch.zeros(self.num_envs, dtype=torch.int32, device=self.device)
        """Steps taken in the current episode, per env."""
        self.state: StateT = self.initial_state(self.num_envs)
        """The batch's state; assign a new value to set it (it is never modified in place)."""

    # --- what a subclass provides -----------------------------------------------------------

    def initial_state(self, n: int) -> StateT:
        """Fresh states for ``n`` envs, drawn with :attr:`generator`."""
        raise NotImplementedError

    def observe(self, state: StateT) -> Tensor:
        """The ``(n, *obs_shape)`` observations of a state of ``n`` envs."""
        raise NotImplementedError

    # --- gymnasium's VectorEnv API ----------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Tensor, dict[str, Any]]:
        """Start a new episode in every env, or in those ``options["reset_mask"]`` selects.

        :param seed: a non-negative integer that seeds the env's generator; ``None`` continues
            its stream.
        :param options: ``"reset_mask"``: an ``(N,)`` bool numpy array or tensor, True where an
            env restarts (the others keep their episode; their rows of the returned batch are
            their current observations); ``"low"``/``"high"`` (Pendulum: ``"x_init"``,
            ``"y_init"``): bounds of the initial state where gymnasium's environment takes
            them, in force for this reset and the auto-resets after it, until the next reset
            (without them, the defaults).
        :returns: the ``(N, *obs_shape)`` observations and an empty info dict.
        """
        super().reset(seed=seed)  # gymnasium's checks of the seed, and its numpy generator
        options = dict(options or {})  # the caller's dict is left as it is
        mask = (reset_mask(self._name, options.pop("reset_mask"), self.num_envs, self.device)
                if "reset_mask" in options else None)
        self.reset_bounds = self.parse_reset_options(options)
        if seed is not None:
            self.generator.manual_seed(torch_seed(seed))
        if mask is None:
            self.state = self.initial_state(self.num_envs)
            self.elapsed.zero_()
            obs = self.observe(self.state)
        else:
            self.state, obs = self._restart(mask, self.state, self.observe(self.state))
        if self.frame_stack > 1:
            fresh = torch.cat([obs] * self.frame_stack, dim=1)
            if mask is not None and self._frames is not None:
                fresh = select(mask, fresh, self._frames, 0)
            obs = self._frames = fresh
        return obs, {}

    def step(
        self, actions: Any
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Any]]:
        """Advance every env one step; finished ones restart at once (``same_step``).

        :param actions: ``(N,)`` integers for discrete actions, ``(N, *action_shape)`` floats
            otherwise; a tensor on any device or anything ``numpy.asarray`` accepts. They are
            checked against the action space only with :attr:`check_actions` (a
            :class:`ValueError` names the offending values); otherwise an action outside it
            gives whatever the dynamics make of it.
        :returns: ``obs, reward (float32), terminated, truncated, info`` as tensors on
            :attr:`device`; ``info["final_obs"]`` and ``info["_final_obs"]`` as described above.
        """
        action = self._checked_actions(actions) if self.check_actions else self._actions(actions)
        new_state, final_obs, reward, terminated = self._step_fn(self.state, action, self.params)
        self.elapsed += 1
        if self.max_episode_steps is None:
            truncated = torch.zeros_like(terminated)
        else:
            truncated = self.elapsed >= self.max_episode_steps
        done = terminated | truncated
        self.state, obs = self._restart(done, new_state, final_obs)
        if self.frame_stack > 1:
            obs, final_obs = self._stack(obs, final_obs, done)
        return obs, reward, terminated, truncated, {"final_obs": final_obs, "_final_obs": done}

    def _restart(self, done: Tensor, state: Any, obs: Tensor) -> tuple[Any, Tensor]:
        """``state`` and its observations ``obs`` with the envs where ``done`` is True
        restarted from fresh initial states (their step counters zeroed)."""
        dim = self.state_batch_dim
        if self._host_checks:
            # On the CPU, asking which envs finished costs nothing: draw fresh states for
            # those only (usually none or a few) and copy them in.
            index = done.nonzero().view(-1)
            if not index.numel():
                return state, obs
            fresh = self.initial_state(int(index.numel()))
            restarted = replace_rows(state, index, fresh, dim)
            # (where the observation is the state itself, it is restarted with it)
            obs = restarted if obs is state else obs.index_copy(0, index, self.observe(fresh))
            self.elapsed.index_fill_(0, index, 0)
            return restarted, obs
        # On an accelerator, a host check would stall the device: draw fresh states for
        # every env and select, so that nothing here waits for the device.
        fresh = self.initial_state(self.num_envs)
        restarted = select(done, fresh, state, dim)
        obs = restarted if obs is state else select(done, self.observe(fresh), obs, 0)
        self.elapsed.masked_fill_(done, 0)
        return restarted, obs

    def _stack(self, obs: Tensor, final_obs: Tensor, done: Tensor) -> tuple[Tensor, Tensor]:
        """The stacked ``(obs, final_obs)``: every env's frames move on by the frame it reached;
        the envs that finished start over with copies of their new episode's first frame."""
        frames = self._frames
        if frames is None:
            raise RuntimeError(f"{type(self).__name__}: call reset() before step()")
        width = final_obs.shape[1]
        final_stack = torch.cat([frames[:, width:], final_obs], dim=1)
        fresh = torch.cat([obs] * self.frame_stack, dim=1)
        self._frames = select(done, fresh, final_stack, 0)
        return self._frames, final_stack

    def parse_reset_options(self, options: dict[str, Any]) -> tuple[float, float] | None:
        """The initial-state bounds that ``reset(options=...)`` asks for (the defaults where it
        names none)."""
        if self.default_reset_bounds is None:
            return None
        low, high = self.default_reset_bounds
        return classic_utils.maybe_parse_reset_bounds(options, low, high)

    # --- parameters changed during a run ------------------------------------------------------

    def param_problems(self, values: Mapping[str, Any]) -> dict[str, str]:
        """What :meth:`set_params` would refuse in ``values``, by name (empty: nothing): a name
        that is not in :attr:`settable_params`, or a value that is not a finite number."""
        problems: dict[str, str] = {}
        settable = ", ".join(self.settable_params) or "none"
        for name, value in values.items():
            if name not in self.settable_params:
                if name in self._fixed_params():
                    problems[name] = (
                        f"{self._name} fixes {name!r} when it is built (it shapes the "
                        f"observation or action space, or the kind of dynamics); set it in the "
                        f"constructor (env.kwargs). Parameters that can change between steps: "
                        f"{settable}.")
                else:
                    close = difflib.get_close_matches(name, self.settable_params, n=1)
                    hint = f" Did you mean {close[0]!r}?" if close else ""
                    problems[name] = (f"{self._name} has no parameter {name!r} that can change "
                                      f"between steps.{hint} Those that can: {settable}.")
            elif not _finite_number(value):
                problems[name] = f"expected a finite number, got {_describe(value)}."
        return problems

    def set_params(self, **values: Any) -> None:
        """Change physical parameters between steps, without rebuilding the env: the next
        :meth:`step` uses them, and quantities derived from them (CartPole's ``total_mass``
        and ``polemass_length``) follow, as :attr:`params` computes them. The state, step
        counters and generator are left as they are.

        Values are stored as Python floats, as the constructor stores them, so the step
        function is unchanged (with ``compile=True`` it is recompiled once for the new values);
        a one-element tensor is read once, here.

        :param values: names from :attr:`settable_params` and their new values.
        :raises ValueError: naming every refused name and value (nothing is changed then).
        """
        problems = self.param_problems(values)
        if problems:
            raise ValueError("; ".join(f"{name}: {text}" for name, text in problems.items()))
        current: Any = self.params
        self.params = dataclasses.replace(
            current, **{name: float(value) for name, value in values.items()})

    def _fixed_params(self) -> set[str]:
        """Constructor arguments and :attr:`params` fields that :meth:`set_params` leaves
        alone."""
        common = {"self", "num_envs", "device", "max_episode_steps", "compile", "frame_stack",
                  "check_actions"}
        names = set(inspect.signature(type(self)).parameters) - common
        if dataclasses.is_dataclass(self.params):
            names |= {f.name for f in dataclasses.fields(self.params)}
        return names - set(self.settable_params)

    # --- exact resume -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The batch's state, step counters and generator, as tensors and plain data."""
        state: Any = self.state
        packed = state.clone() if isinstance(state, Tensor) else [t.clone() for t in state]
        return {
            "state": packed,
            "elapsed": self.elapsed.clone(),
            "generator": self.generator.get_state(),
            "reset_bounds": None if self.reset_bounds is None else list(self.reset_bounds),
            "frames": None if self._frames is None else self._frames.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (possibly saved on another device)."""
        saved, current = state["state"], self.state
        if isinstance(current, Tensor):
            self.state = saved.to(self.device, current.dtype).clone()
        else:
            leaves: Any = current
            self.state = type(current)(*(
                s.to(self.device, c.dtype).clone() for s, c in zip(saved, leaves)
            ))
        self.elapsed = state["elapsed"].to(self.device, torch.int32).clone()
        generator_state = state["generator"].cpu()
        if generator_state.numel() != self.generator.get_state().numel():
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the generator state was saved on a "
                f"different kind of device than {self.device}; load it on the same kind."
            )
        self.generator.set_state(generator_state)
        bounds = state.get("reset_bounds")
        self.reset_bounds = None if bounds is None else (float(bounds[0]), float(bounds[1]))
        frames = state.get("frames")
        self._frames = None if frames is None else frames.to(self.device).clone()

    # --- helpers ------------------------------------------------------------------------------

    def uniform(self, low: float, high: float, shape: tuple[int, ...]) -> Tensor:
        """float32 samples from U[low, high) drawn with :attr:`generator`."""
        sample = torch.empty(shape, device=self.device)
        return sample.uniform_(low, high, generator=self.generator)

    @property
    def _name(self) -> str:
        """The env in error messages: its gymnasium id and class."""
        cls = type(self).__name__
        return f"{self.spec.id} ({cls})" if self.spec is not None else cls

    def _checked_actions(self, actions: Any) -> Tensor:
        """:meth:`_actions`, after checking ``actions`` against the action space."""
        if self._checker is None:
            self._checker = ActionChecker(self._name, self.single_action_space, self.num_envs,
                                          self.device)
        raw = self._checker.raw(actions)
        action = self._actions(raw)
        self._checker.values(raw, action)
        return action

    def _actions(self, actions: Any) -> Tensor:
        if isinstance(actions, Tensor):
            if self._discrete:
                return actions.to(self.device).reshape(self.num_envs)
            return actions.to(self.device, torch.float32).reshape(self.num_envs, -1)
        array = np.asarray(actions)
        if self._discrete:
            return torch.as_tensor(array.astype(np.int64, copy=False),
                                   device=self.device).reshape(self.num_envs)
        return torch.as_tensor(array, dtype=torch.float32,
                               device=self.device).reshape(self.num_envs, -1)


def _finite_number(value: Any) -> bool:
    """A real number (not a bool), or a one-element real tensor, that is finite."""
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.dtype == torch.bool or value.is_complex():
            return False
        value = value.item()
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _describe(value: Any) -> str:
    """``type value`` for messages, cut short."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def torch_seed(seed: int) -> int:
    """The :class:`torch.Generator` seed for a gymnasium seed: the seed itself below 2**64
    (the generator's range), a 64-bit digest of it (numpy's ``SeedSequence``) above."""
    seed = int(seed)
    if 0 <= seed < 2**64:
        return seed
    if seed < 0:
        raise ValueError(f"Seed must be greater or equal to zero, actual value: {seed}")
    return int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0])


def _stacked_space(space: spaces.Space[Any], k: int) -> spaces.Box:
    """The Box of ``k`` frames of ``space`` concatenated along the first axis."""
    if not isinstance(space, spaces.Box) or not space.shape:
        raise ValueError(f"frame_stack needs Box observations with at least one axis, not {space}")
    return spaces.Box(np.concatenate([space.low] * k, axis=0),
                      np.concatenate([space.high] * k, axis=0), dtype=space.dtype)


def select(mask: Tensor, if_true: Any, if_false: Any, dim: int) -> Any:
    """Per-env ``torch.where`` over a batch whose env dimension is ``dim`` (0 or -1)."""
    if isinstance(if_true, Tensor):
        if dim == 0:
            mask = mask.view(-1, *([1] * (if_true.dim() - 1)))
        return torch.where(mask, if_true, if_false)
    return type(if_false)(*(select(mask, t, f, dim) for t, f in zip(if_true, if_false)))


def replace_rows(batch: Any, index: Tensor, rows: Any, dim: int) -> Any:
    """A copy of ``batch`` with the envs at ``index`` taken from ``rows``."""
    if isinstance(batch, Tensor):
        return batch.index_copy(dim, index, rows)
    return type(batch)(*(replace_rows(b, index, r, dim) for b, r in zip(batch, rows)))
