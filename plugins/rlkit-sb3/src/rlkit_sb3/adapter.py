"""What every SB3 adapter shares: the model built without an environment, its randomness kept
apart from the host program's, and its state as tensors.

SB3 normally owns the environment loop (``model.learn()`` calls ``collect_rollouts``). Here
rlkit's trainer, or a simulator that embeds rlkit, owns it and calls ``act``/``observe``/
``update``; the adapters in :mod:`rlkit_sb3.on_policy` and :mod:`rlkit_sb3.off_policy` redo
what ``collect_rollouts`` does around each step and leave the rest to SB3: its policies, its
buffers, its ``train()``, its schedules, exploration and target updates.

* **No environment.** The model is built against a ``SpacesOnlyVecEnv``
  (:func:`spaces_only_vec_env`), which carries the spaces and the number of environments and
  refuses to be stepped.
* **Randomness.** SB3 draws from torch's and numpy's global generators and from its action
  space's own (a seeded copy per agent). An adapter keeps its own copy of both global states
  and swaps them in around every call into SB3 that draws (:class:`GlobalRng`), so two
  agents driven alike act alike, a resumed run continues bit-identically, and the host
  program's random streams are left as they were.
* **State.** :func:`arrays_state` / :func:`load_arrays` turn SB3's numpy buffers into tensors
  and back, so checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from rlkit.interfaces import BuildContext, Transition
from rlkit.optim import load_optimizer_state
from rlkit.seeding import numpy_state_data, numpy_state_from_data
from rlkit.transitions import TransitionError, TransitionSpec, check_transition
from rlkit.validation import ConfigError, param

# -- hyperparameter types --------------------------------------------------------------------

_LIN = re.compile(r"lin_([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")


class LinSchedule(str):
    """A linear decay written as rl-baselines3-zoo writes it: ``"lin_0.001"`` starts at 0.001
    and falls linearly to 0 at the end of the run."""

    @classmethod
    def __config_coerce__(cls, value: Any, path: str) -> LinSchedule:
        return cls(lin_start(value, path))

    def __config_data__(self) -> str:
        return str(self)


def lin_start(value: Any, path: str) -> str:
    """``value`` if it is a ``lin_<number>`` string with a non-negative number; else a
    :class:`ConfigError` at ``path``."""
    match = _LIN.fullmatch(value) if isinstance(value, str) else None
    if match is None or float(match.group(1)) < 0:
        raise ConfigError(f"{path}: {value!r} is neither a number nor a linear schedule; "
                          f"write a number (3.0e-4) or 'lin_<start>' (lin_0.001: from 0.001 "
                          f"down to 0 at the end of the run).", key=path)
    return value


class AutoCoef(str):
    """SAC's ``"auto"`` entropy coefficient, learned from an initial 1.0, or ``"auto_<x>"``
    learned from an initial ``x``."""

    @classmethod
    def __config_coerce__(cls, value: Any, path: str) -> AutoCoef:
        if not (isinstance(value, str) and re.fullmatch(r"auto(_\d*\.?\d+(e[+-]?\d+)?)?",
                                                         value)):
            raise ConfigError(f"{path}: {value!r} is neither a number nor 'auto' / "
                              f"'auto_<initial value>'.", key=path)
        return cls(value)

    def __config_data__(self) -> str:
        return str(self)


class _Linear:
    """SB3 schedule: ``progress_remaining`` (1 at the start, 0 at the end) times ``start``."""

    def __init__(self, start: float) -> None:
        self.start = start

    def __call__(self, progress_remaining: float) -> float:
        return progress_remaining * self.start


def schedule(value: float | str, path: str) -> float | _Linear:
    """A number as it is, ``"lin_x"`` as SB3's callable schedule."""
    if isinstance(value, str):
        return _Linear(float(lin_start(value, path)[4:]))
    return float(value)


@dataclass(kw_only=True)
class ActionNoiseConfig:
    """Noise added to the (normalised) actions while exploring."""

    type: Literal["normal", "ornstein_uhlenbeck"] = "normal"
    """Gaussian noise, or temporally correlated Ornstein-Uhlenbeck noise."""
    sigma: float = param(0.1, ge=0.0)
    """Standard deviation, in the normalised units SB3 adds it in (each action dimension scaled
    to [-1, 1]), the same in every dimension."""
    theta: float = param(0.15, ge=0.0)
    """Ornstein-Uhlenbeck only: the rate of the pull back to 0."""
    dt: float = param(1e-2, gt=0.0)
    """Ornstein-Uhlenbeck only: the time step."""


_ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "elu": "ELU", "leaky_relu": "LeakyReLU",
                "gelu": "GELU", "silu": "SiLU", "selu": "SELU", "sigmoid": "Sigmoid",
                "softplus": "Softplus", "mish": "Mish"}


def sb3_policy_kwargs(data: Mapping[str, Any], path: str) -> dict[str, Any]:
    """``policy_kwargs`` from YAML as SB3 takes them: ``activation_fn`` by name (``relu``)
    becomes the torch class, ``net_arch`` lists stay lists (or a dict of lists)."""
    kwargs = dict(data)
    act = kwargs.get("activation_fn")
    if act is not None:
        name = act if isinstance(act, str) else None
        cls_name = _ACTIVATIONS.get(name.lower()) if name else None
        if cls_name is None:
            raise ConfigError(f"{path}.activation_fn: {act!r} is not a known activation; use "
                              f"one of {', '.join(_ACTIVATIONS)}.", key=f"{path}.activation_fn")
        kwargs["activation_fn"] = getattr(torch.nn, cls_name)
    arch = kwargs.get("net_arch")
    if arch is not None:
        kwargs["net_arch"] = _net_arch(arch, f"{path}.net_arch")
    return kwargs


def _net_arch(arch: Any, path: str) -> list[int] | dict[str, list[int]]:
    def sizes(x: Any, where: str) -> list[int]:
        if not (isinstance(x, Sequence) and not isinstance(x, str)
                and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in x)):
            raise ConfigError(f"{where}: expected a list of layer sizes like [64, 64], got "
                              f"{x!r}.", key=where)
        return [int(n) for n in x]

    if isinstance(arch, Mapping):
        return {str(k): sizes(v, f"{path}.{k}") for k, v in arch.items()}
    return sizes(arch, path)


# -- spaces and the placeholder environment ---------------------------------------------------


def check_action_space(name: str, space: gym.Space[Any],
                       kinds: tuple[type[gym.Space[Any]], ...]) -> None:
    """Refuse, at build time, an action space ``name`` cannot act in."""
    if not isinstance(space, kinds):
        wanted = " or ".join(k.__name__ for k in kinds)
        raise ConfigError(f"algorithm {name!r} needs a {wanted} action space, not {space}.",
                          key="algorithm.name")


def sb3_spaces(ctx: BuildContext) -> tuple[gym.Space[Any], gym.Space[Any]]:
    """Copies of the env's spaces for SB3 (which reseeds its action space); ``Discrete(n,
    start=s)`` becomes ``Discrete(n)``: SB3 learns indices, the env gets ``index + s``."""
    obs_space = copy.deepcopy(ctx.env.observation_space)
    space = ctx.env.action_space
    if isinstance(space, gym.spaces.Discrete):
        return obs_space, gym.spaces.Discrete(int(space.n))
    return obs_space, copy.deepcopy(space)


def default_policy(observation_space: gym.Space[Any]) -> str:
    """The policy ``policy: auto`` picks: SB3's CNN for images it accepts, its dict policy for
    ``Dict`` observations, its MLP otherwise."""
    from stable_baselines3.common.preprocessing import is_image_space

    if isinstance(observation_space, gym.spaces.Dict):
        return "MultiInputPolicy"
    if is_image_space(observation_space, check_channels=False):
        return "CnnPolicy"
    return "MlpPolicy"


def spaces_only_vec_env(observation_space: gym.Space[Any], action_space: gym.Space[Any],
                        num_envs: int) -> Any:
    """A :class:`~stable_baselines3.common.vec_env.VecEnv` with the given spaces that refuses
    to be used: SB3's constructors read the spaces and the number of environments, nothing
    else."""
    from stable_baselines3.common.vec_env import VecEnv

    class SpacesOnlyVecEnv(VecEnv):
        def _refuse(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("rlkit steps the environments; the SB3 model has none of its "
                               "own (use the rlkit agent's act/observe/update).")

        reset = step_async = step_wait = set_attr = env_method = _refuse

        def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
            return [None] * self.num_envs  # e.g. render_mode, read by VecEnv.__init__

        def close(self) -> None:
            pass

        def env_is_wrapped(self, wrapper_class: Any, indices: Any = None) -> list[bool]:
            return [False] * self.num_envs

    return SpacesOnlyVecEnv(num_envs, observation_space, action_space)


# -- randomness -------------------------------------------------------------------------------


class GlobalRng:
    """A private copy of torch's and numpy's global generator states, swapped in while SB3
    runs (:meth:`active`) and out again afterwards, so that the caller's streams continue as
    if nothing had happened."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.cuda_index = device.index if device.index is not None else (
            torch.cuda.current_device() if self.cuda else 0)
        self.torch_state: Tensor = torch.get_rng_state()
        self.cuda_state: Tensor | None = (torch.cuda.get_rng_state(self.cuda_index)
                                          if self.cuda else None)
        self.numpy_state: Any = np.random.get_state()  # the legacy tuple

    @contextmanager
    def active(self, numpy: bool = True, python_random: bool = False) -> Iterator[None]:
        """Inside: the private states are the global ones.

        :param numpy: swap numpy's state too. Swapping it costs about 116 us (twice a read and
            a write of the Mersenne Twister's 2.5 kB), torch's about 3 us, so callers pass
            False where SB3 draws only from torch (an on-policy act).
        :param python_random: keep Python's ``random`` module as it was (SB3 seeds it when
            it builds a model).
        """
        saved_torch = torch.get_rng_state()
        saved_numpy = np.random.get_state() if numpy else None
        saved_python = random.getstate() if python_random else None
        saved_cuda = torch.cuda.get_rng_state(self.cuda_index) if self.cuda else None
        torch.set_rng_state(self.torch_state)
        if saved_numpy is not None:
            np.random.set_state(self.numpy_state)
        if self.cuda_state is not None:
            torch.cuda.set_rng_state(self.cuda_state, self.cuda_index)
        try:
            yield
        finally:
            self.torch_state = torch.get_rng_state()
            torch.set_rng_state(saved_torch)
            if saved_numpy is not None:
                self.numpy_state = np.random.get_state()
                np.random.set_state(saved_numpy)
            if saved_cuda is not None:
                self.cuda_state = torch.cuda.get_rng_state(self.cuda_index)
                torch.cuda.set_rng_state(saved_cuda, self.cuda_index)
            if saved_python is not None:
                random.setstate(saved_python)

    def state_dict(self) -> dict[str, Any]:
        return {"torch": self.torch_state.clone(),
                "cuda": None if self.cuda_state is None else self.cuda_state.clone(),
                "numpy": numpy_state_data(self.numpy_state)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.torch_state = state["torch"].cpu().clone()
        if self.cuda and state.get("cuda") is not None:
            self.cuda_state = state["cuda"].cpu().clone()
        self.numpy_state = numpy_state_from_data(state["numpy"])


def space_rng_state(space: gym.Space[Any]) -> Mapping[str, Any]:
    """The state of a gymnasium space's own generator (a fresh dict of plain data, which
    ``torch.load(weights_only=True)`` reads back, 128-bit integers included)."""
    return space.np_random.bit_generator.state


def load_space_rng_state(space: gym.Space[Any], state: Mapping[str, Any]) -> None:
    space.np_random.bit_generator.state = dict(state)


# -- state as tensors --------------------------------------------------------------------------


def arrays_state(obj: Any, names: Sequence[str], upto: int | None = None) -> dict[str, Any]:
    """``obj``'s numpy array attributes ``names`` as new tensors (their first ``upto`` rows);
    ``None`` attributes stay ``None``."""
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(obj, name)
        if value is None:
            out[name] = None
        else:
            arr = value if upto is None else value[:upto]
            out[name] = torch.from_numpy(np.array(arr, copy=True))
    return out


def buffer_state(buffer: Any, names: Sequence[str]) -> dict[str, Any]:
    """An SB3 rollout or replay buffer: its filled rows of ``names`` and its cursor."""
    rows = buffer.buffer_size if buffer.full else buffer.pos
    return {"arrays": arrays_state(buffer, names, rows), "pos": int(buffer.pos),
            "full": bool(buffer.full)}


def load_buffer_state(buffer: Any, saved: Mapping[str, Any]) -> None:
    """Restore what :func:`buffer_state` returned."""
    load_arrays(buffer, saved["arrays"])
    buffer.pos, buffer.full = int(saved["pos"]), bool(saved["full"])


def load_arrays(obj: Any, state: Mapping[str, Any]) -> None:
    """Copy tensors from :func:`arrays_state` back into ``obj``'s arrays (first rows)."""
    for name, value in state.items():
        target = getattr(obj, name)
        if value is None or target is None:
            continue
        data = value.cpu().numpy()
        target[: data.shape[0]] = data


def np_or_none(x: Tensor | None) -> np.ndarray | None:
    return None if x is None else x.cpu().numpy().copy()


def tensor_or_none(x: Any) -> Tensor | None:
    return None if x is None else torch.as_tensor(np.array(x, copy=True))


# -- the shared adapter -------------------------------------------------------------------------


class Sb3Adapter:
    """An SB3 model built for ``ctx`` and the conversions between rlkit's tensors and SB3.

    Subclasses (:class:`rlkit_sb3.on_policy.OnPolicyAdapter`,
    :class:`rlkit_sb3.off_policy.OffPolicyAdapter`) redo SB3's ``collect_rollouts`` around
    ``act``/``observe``/``update``.
    """

    name: str
    pending: dict[str, Any] | None
    """What the last ``act(explore=True)`` computed for ``observe`` (None: nothing yet)."""

    def __init__(self, name: str, model_cls: type, policy: str, kwargs: dict[str, Any],
                 ctx: BuildContext) -> None:
        from stable_baselines3.common.logger import Logger

        self.name, self.device, self.total_steps = name, ctx.device, ctx.total_steps
        self.num_envs, self.nan_check = ctx.env.num_envs, ctx.nan_check
        space = ctx.env.action_space
        self.discrete = isinstance(space, gym.spaces.Discrete)
        self.action_start = int(space.start) if isinstance(space, gym.spaces.Discrete) else 0
        self.transition_spec = TransitionSpec.from_env(ctx.env, ctx.device, algorithm=name)
        obs_space, act_space = sb3_spaces(ctx)
        self.rng = GlobalRng(ctx.device)
        with self.rng.active(python_random=True):  # SB3 seeds every global generator
            self.model = model_cls(
                default_policy(obs_space) if policy == "auto" else policy,
                spaces_only_vec_env(obs_space, act_space, self.num_envs),
                seed=ctx.seed, device=ctx.device, verbose=0, **kwargs)
        self.model.set_logger(Logger(folder=None, output_formats=[]))
        self.model._total_timesteps = ctx.total_steps
        self.model._update_current_progress_remaining(0, ctx.total_steps)
        self.policy = self.model.policy
        # SB3 may have transposed channel-last images to channel-first (VecTransposeImage)
        self.transpose = (obs_space.shape is not None and self.model.observation_space.shape
                          != obs_space.shape)
        saved = self.model._get_torch_save_params()
        self.optimizer_names = [n for n in saved[0] if n != "policy"]
        self.tensor_names = list(saved[1])
        # each state entry is named after an attribute holding the same object, which is how
        # rlkit's fine-tuning and rollback tell networks and optimizers from the rest
        for dotted in self.optimizer_names + self.tensor_names:
            setattr(self, dotted.replace(".", "_"), self._attr(dotted))

    # conversions

    def np_obs(self, obs: Tensor) -> np.ndarray:
        x = obs.detach().cpu().numpy()
        return np.transpose(x, (0, 3, 1, 2)) if self.transpose else x

    def to_actions(self, actions: np.ndarray) -> Tensor:
        """SB3's actions for the N envs as rlkit's: ``(N,)`` int64 or ``(N, d)`` float32."""
        if self.discrete:
            index = torch.as_tensor(np.asarray(actions).reshape(-1).astype(np.int64))
            return (index + self.action_start).to(self.device)
        box = np.asarray(actions, dtype=np.float32)
        return torch.as_tensor(box.reshape(box.shape[0], -1)).to(self.device)

    def checked(self, transition: Transition) -> Transition:
        t = check_transition(transition, self.transition_spec)
        if t.valid is not None and not bool(t.valid.all()):
            raise TransitionError(
                f"{self.name} observe(): valid: some entries are marked valid=False (gymnasium's "
                f"next_step autoreset). SB3's buffers store whole steps and cannot leave "
                f"entries out: use the default env.autoreset_mode: same_step.")
        return t

    def observed(self, transition: Transition) -> tuple[Transition, dict[str, Any]]:
        """The checked transition, and what the ``act(explore=True)`` before it kept."""
        t = self.checked(transition)
        if self.pending is None:
            raise RuntimeError(f"{self.name} observe(): no act(obs, explore=True) before it.")
        return t, self.pending

    def act_deterministic(self, obs: Tensor) -> Tensor:
        """SB3's ``predict(deterministic=True)``: no randomness, no training state touched."""
        actions, _ = self.policy.predict(self.np_obs(obs), deterministic=True)
        return self.to_actions(actions)

    def draw_sde_noise(self, step: int, drawn_at: int, reset: Callable[[int], None]) -> int:
        """gSDE's exploration matrices, drawn where SB3's ``collect_rollouts`` draws them: at
        the start of a collection (``step`` 0) and, with ``sde_sample_freq`` > 0, every that
        many steps -- both at step 0, as SB3 does. ``drawn_at`` is the step drawn at last;
        returns the new one."""
        m = self.model
        if not m.use_sde or drawn_at == step:
            return drawn_at
        if step == 0:
            reset(self.num_envs)
        if m.sde_sample_freq > 0 and step % m.sde_sample_freq == 0:
            reset(self.num_envs)
        return step

    def progress(self) -> None:
        self.model._update_current_progress_remaining(self.model.num_timesteps,
                                                      self.total_steps)

    def train_metrics(self) -> dict[str, float]:
        """What SB3 logged since the last call, as ``train/<name>``."""
        logger = self.model.logger
        out = {f"train/{key.split('/', 1)[-1]}": float(value)
               for key, value in logger.name_to_value.items()}
        logger.name_to_value.clear()
        logger.name_to_count.clear()
        logger.name_to_excluded.clear()
        for key, value in out.items():
            if "loss" in key:
                self.nan_check.check(key, torch.tensor(value), "SB3's update diverged; lower "
                                     "algorithm.learning_rate or scale the rewards")
        return out

    # state shared by both kinds

    def _attr(self, dotted: str) -> Any:
        obj: Any = self.model
        for part in dotted.split("."):
            obj = getattr(obj, part)
        return obj

    def common_state(self) -> dict[str, Any]:
        m = self.model
        state: dict[str, Any] = {"policy": self.policy.state_dict()}
        for name in self.optimizer_names:
            state[name.replace(".", "_")] = self._attr(name).state_dict()
        for name in self.tensor_names:
            state[name.replace(".", "_")] = self._attr(name).detach().clone()
        state["counters"] = {
            "num_timesteps": int(m.num_timesteps), "n_updates": int(m._n_updates),
            "episode_num": int(m._episode_num), "n_calls": int(getattr(m, "_n_calls", 0)),
            "progress_remaining": float(m._current_progress_remaining),
            "exploration_rate": float(getattr(m, "exploration_rate", 0.0))}
        state["rng"] = self.rng.state_dict()
        state["action_space_rng"] = space_rng_state(m.action_space)
        state["sde"] = self._sde_state()
        return state

    def load_common_state(self, state: Mapping[str, Any]) -> None:
        m = self.model
        self.policy.load_state_dict(state["policy"])
        for name in self.optimizer_names:
            load_optimizer_state(self._attr(name), state[name.replace(".", "_")])
        with torch.no_grad():
            for name in self.tensor_names:
                self._attr(name).copy_(state[name.replace(".", "_")])
        c = state["counters"]
        m.num_timesteps, m._n_updates = int(c["num_timesteps"]), int(c["n_updates"])
        m._episode_num, m._current_progress_remaining = (int(c["episode_num"]),
                                                         float(c["progress_remaining"]))
        if hasattr(m, "_n_calls"):
            m._n_calls = int(c["n_calls"])
        if hasattr(m, "exploration_rate"):
            m.exploration_rate = float(c["exploration_rate"])
        self.rng.load_state_dict(state["rng"])
        load_space_rng_state(m.action_space, state["action_space_rng"])
        self._load_sde_state(state["sde"])

    def _sde_dists(self) -> list[Any]:
        """The state-dependent-exploration distributions whose noise matrices are state."""
        owners = [getattr(self.policy, "actor", None), self.policy]
        return [o.action_dist for o in owners
                if o is not None and hasattr(getattr(o, "action_dist", None), "exploration_mat")]

    def _sde_state(self) -> list[dict[str, Any]]:
        return [{k: None if getattr(d, k, None) is None else getattr(d, k).detach().clone()
                 for k in ("exploration_mat", "exploration_matrices")}
                for d in self._sde_dists()]

    def _load_sde_state(self, state: list[dict[str, Any]]) -> None:
        for dist, saved in zip(self._sde_dists(), state):
            for key, value in saved.items():
                setattr(dist, key, None if value is None else value.to(self.device).clone())
