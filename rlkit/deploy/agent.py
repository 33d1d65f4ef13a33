"""An agent for a program that owns its loop: built from spaces, saved and loaded without an env.

A simulator that is not a gymnasium env (its own step function, its own clock) declares the
spaces of one unit's observation and action, and asks and tells the agent::

    agent = Agent.from_config("experiments/cartpole.yaml", observation_space=obs_space,
                              action_space=act_space, num_envs=64)
    action = agent.act(obs)                     # ask: (64, *obs_shape) -> (64, ...)
    agent.observe(Transition(obs, action, reward, next_obs, terminated, truncated))  # tell
    agent.update()                              # learns when its own schedule says so
    agent.save("inventory.pt")                  # later, anywhere: Agent.load("inventory.pt")

**No env is constructed, ever.** :meth:`Agent.from_config` builds the algorithm through
:func:`rlkit.loop.build_agent` with an :class:`~rlkit.interfaces.EnvSpec` made from the given
spaces. The config's ``env`` section may be left out: the agent then has no env id, and its
resolved config (the one saved with it) holds the placeholder :data:`EMBEDDED_ENV_ID` -- a
name no gymnasium registry can hold, so the config can never build an env by accident -- and
``env.num_envs`` set to the agent's number of units. An ``env`` section that is there is kept
(its ``num_envs`` is the default for ``num_envs``) but its id is not built either.

**Checkpoints** written by :meth:`Agent.save` hold the resolved config, the agent's state and
the spaces as tensors and plain data (:mod:`rlkit.spaces`), written atomically
(:func:`rlkit.checkpoint.save_atomic`). :meth:`Agent.load` rebuilds the agent from them alone,
with ``torch.load(weights_only=True)``: the package that provides the simulator or env need
not be installed, and nothing the config names is imported or run.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from rlkit import checkpoint as ckpt
from rlkit.buffers import observation_layout
from rlkit.config import Experiment, blame, read_yaml, resolve
from rlkit.errors import CheckpointError
from rlkit.interfaces import Algorithm, EnvSpec, Exploration, Transition
from rlkit.interfaces import begin_episodes as _begin_episodes
from rlkit.interfaces import separate_state as _separate_state
from rlkit.loop import build_agent, resolve_device
from rlkit.spaces import space_from_data, space_to_data
from rlkit.transitions import TransitionSpec
from rlkit.validation import ConfigError

if TYPE_CHECKING:
    from rlkit.plugins import Plugins

__all__ = ["EMBEDDED_ENV_ID", "Agent"]

EMBEDDED_ENV_ID = "<embedded>"
"""The ``env.id`` of an agent built without an ``env`` section: not a valid gymnasium id, so
``rlkit train`` on its saved config stops with ``unknown environment '<embedded>'``."""

CHECKPOINT_KIND = "agent"
"""The ``kind`` entry of a checkpoint written by :meth:`Agent.save`."""


class Agent:
    """An ask/tell agent built from spaces; see the module docstring.

    Build one with :meth:`from_config` or :meth:`load`; it satisfies the
    :class:`~rlkit.interfaces.Algorithm` contract itself, so it can go wherever an algorithm
    goes (``rlkit.evaluation.evaluate``, ``rlkit.begin_episodes``).

    :param algorithm: the built algorithm.
    :param experiment: the resolved config it was built from.
    :param spec: the spaces and the number of units it acts for.
    :param device: where its tensors live.
    :param exploration: the configured exploration controller, if any (``exploration:``).
    """

    def __init__(self, algorithm: Algorithm, experiment: Experiment, spec: EnvSpec, *,
                 device: torch.device, exploration: Exploration | None = None) -> None:
        self.algorithm = algorithm
        """The underlying algorithm (PPO, DQN, ...): its own attributes, for those who need
        them; everything the contract offers is available on the agent too."""
        self.experiment = experiment
        """The resolved config, every default filled in (what :meth:`save` stores)."""
        self.spec = spec
        """The spaces of one unit and the number of units (``N``) it acts for."""
        self.device = device
        """Where the agent's tensors live."""
        self.exploration = exploration
        """The ``exploration:`` controller, or None (the algorithm's own default is used).
        :class:`rlkit.Session` tells it the returns of finished episodes."""
        self._spaces = {"observation": space_to_data(spec.observation_space,
                                                     "observation_space"),
                        "action": space_to_data(spec.action_space, "action_space"),
                        "num_envs": spec.num_envs}
        try:
            self._obs_dtype: torch.dtype | None = observation_layout(spec.observation_space)[1]
        except TypeError:  # a space rlkit stores no layout for: observations pass as given
            self._obs_dtype = None

    # --- building ------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        cfg: str | Path | Mapping[str, Any] | Experiment,
        *,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        num_envs: int | None = None,
        device: str = "cpu",
        plugins: Plugins | None = None,
    ) -> Agent:
        """Build the agent ``cfg`` configures for the given spaces; no env is constructed.

        :param cfg: an experiment file, its contents as a mapping, or a resolved
            :class:`~rlkit.config.Experiment`. ``algorithm`` and ``train.total_steps`` (the
            horizon of schedules such as a decaying learning rate) are required; ``env`` may
            be left out.
        :param observation_space: the space of one unit's observation.
        :param action_space: the space of one unit's action.
        :param num_envs: how many units act in each batch (``N``); default: the config's
            ``env.num_envs``, else 1.
        :param device: where the agent's tensors live (``cpu``, ``cuda``, ``auto``); stored
            as ``train.device``.
        :param plugins: the plugin session (default: :meth:`Plugins.load`).
        :raises ConfigError: naming the file (if any) and the key path of the first problem.
        """
        from rlkit.plugins import Plugins

        plugins = plugins if plugins is not None else Plugins.load()
        for name, space in (("observation_space", observation_space),
                            ("action_space", action_space)):
            if not isinstance(space, gym.Space):
                raise TypeError(f"Agent.from_config: {name} must be a gymnasium space (e.g. "
                                f"gymnasium.spaces.Box(-1.0, 1.0, (4,))), got "
                                f"{type(space).__name__}.")
        if num_envs is not None and (isinstance(num_envs, bool) or not isinstance(num_envs, int)
                                     or num_envs < 1):
            raise ValueError(f"Agent.from_config: num_envs must be a whole number >= 1, got "
                             f"{num_envs!r}.")
        data, source = _config_data(cfg)
        env = data.get("env")
        if env is None:
            env = data["env"] = {"id": EMBEDDED_ENV_ID}
        if isinstance(env, dict) and num_envs is not None:
            env["num_envs"] = num_envs
        if isinstance(data.get("train"), dict):
            data["train"]["device"] = device
        experiment = _resolve(data, plugins, source)
        if experiment.init_from is not None:
            raise ConfigError(f"{source or 'config'}: init_from: Agent.from_config does not "
                              f"fine-tune; remove init_from and load the trained agent with "
                              f"Agent.load(path) (or rlkit.load_agent for a run of rlkit "
                              f"train), then go on learning with it.", key="init_from")
        spec = EnvSpec(observation_space=observation_space, action_space=action_space,
                       num_envs=experiment.env.num_envs)
        return cls._build(experiment, plugins, spec)

    @classmethod
    def _build(cls, experiment: Experiment, plugins: Plugins, spec: EnvSpec) -> Agent:
        device = resolve_device(experiment.train.device)
        algorithm, exploration = build_agent(experiment, plugins, spec, device)
        return cls(algorithm, experiment, spec, device=device, exploration=exploration)

    # --- saving and loading --------------------------------------------------------------

    def checkpoint_state(self) -> dict[str, Any]:
        """What :meth:`save` writes: the resolved config, the spaces and the agent's state
        (tensors and plain data only)."""
        from rlkit import __version__

        return {
            "kind": CHECKPOINT_KIND,
            "rlkit_version": __version__,
            "algorithm": self.experiment.algorithm.name,
            "config": self.experiment.to_data(),
            "spaces": copy.deepcopy(self._spaces),
            "agent": self.algorithm.state_dict(),
        }

    def save(self, path: str | Path) -> Path:
        """Write the agent to ``path`` atomically (a crash leaves the old file or the new one,
        never a torn one); :meth:`load` reads it back without any env. Returns the path."""
        return ckpt.save_atomic(self.checkpoint_state(), path)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: str = "cpu",
        plugins: Plugins | None = None,
        observation_space: gym.Space[Any] | None = None,
        action_space: gym.Space[Any] | None = None,
    ) -> Agent:
        """The agent saved at ``path``, rebuilt from the checkpoint alone: no env is built and
        nothing the stored config names is imported (``torch.load(weights_only=True)``).

        :param path: a file written by :meth:`save` or :meth:`rlkit.Session.checkpoint`, or a
            run directory (its ``checkpoints/latest.pt``, else the newest ``step_*.pt`` that
            loads).
        :param device: where the agent's tensors live.
        :param plugins: the plugin session (default: :meth:`Plugins.load`); it must provide
            the stored config's algorithm and backbone.
        :param observation_space: only for checkpoints that record no spaces (those of
            ``rlkit train``): the space of one unit's observation.
        :param action_space: likewise, the space of one unit's action.
        :raises CheckpointError: naming the file and what is wrong: not a checkpoint, damaged,
            no recorded spaces (and none given), or a state that does not fit.
        """
        from rlkit.plugins import Plugins

        plugins = plugins if plugins is not None else Plugins.load()
        file, state = ckpt.load_run(path)
        spaces = state.get("spaces")
        if spaces is None:
            if observation_space is None or action_space is None:
                raise CheckpointError(
                    f"{file}: records no observation and action spaces (it was written by "
                    f"an older rlkit or by another program). Load it with "
                    f"rlkit.load_agent({str(file)!r}) where its env can be built, or give the "
                    f"spaces: Agent.load(path, observation_space=..., action_space=...).")
            obs_space, act_space = observation_space, action_space
            num_envs = None
        else:
            obs_space, act_space, num_envs = _recorded_spaces(spaces, file)
            for name, given, recorded in (("observation_space", observation_space, obs_space),
                                          ("action_space", action_space, act_space)):
                if given is not None and given != recorded:
                    raise CheckpointError(f"{file}: was saved for {name} {recorded}, not "
                                          f"{given}; leave {name} out to use the recorded one.")
        data = state["config"]
        if isinstance(data.get("train"), dict):
            data["train"]["device"] = device
        try:
            experiment = resolve(data, plugins, source=str(file))
        except ConfigError as exc:
            raise ConfigError(f"{file}: in the config stored in this checkpoint: {exc}",
                              key=exc.key, source=str(file)) from None
        spec = EnvSpec(observation_space=obs_space, action_space=act_space,
                       num_envs=num_envs if num_envs is not None else experiment.env.num_envs)
        agent = cls._build(experiment, plugins, spec)
        ckpt.restore_agent(agent.algorithm, state["agent"], file, experiment.algorithm.name)
        return agent

    # --- the ask/tell contract -----------------------------------------------------------

    def act(self, obs: Tensor | np.ndarray[Any, Any], explore: bool = True) -> Tensor:
        """Actions for a batch of observations, ``(N, *obs_shape)`` -> ``(N,)`` (discrete) or
        ``(N, d)`` (boxes), on the agent's device.

        :param obs: a tensor, or an array (converted to the observation space's dtype and
            moved to the agent's device).
        :param explore: ``False`` for the deterministic policy (greedy / distribution mean).
        """
        return self.algorithm.act(self._obs(obs), explore)

    def observe(self, transition: Transition) -> None:
        """Tell the agent what happened after its last ``act(obs, explore=True)``."""
        self.algorithm.observe(transition)

    def update(self) -> dict[str, float]:
        """Learn if the algorithm's own schedule says it is time; the metrics (``train/...``),
        or an empty dict."""
        return self.algorithm.update()

    def begin_episodes(self, mask: Tensor | np.ndarray[Any, Any] | None = None) -> None:
        """The units in ``mask`` (``(N,)`` bool; None: all) begin new episodes: an agent with
        memory resets their state before the next :meth:`act`. A no-op for feed-forward
        agents."""
        if mask is not None and not isinstance(mask, Tensor):
            mask = torch.as_tensor(np.asarray(mask), dtype=torch.bool, device=self.device)
        _begin_episodes(self.algorithm, mask)

    def separate_state(self, num_envs: int) -> AbstractContextManager[None]:
        """A block in which :meth:`act` and :meth:`begin_episodes` use a fresh state for
        ``num_envs`` other units (a test bench); the state from before is back afterwards.
        An empty block for feed-forward agents."""
        return _separate_state(self.algorithm, num_envs)

    def state_dict(self) -> dict[str, Any]:
        """The algorithm's state: networks, optimizer, RNG, counters, buffers."""
        return self.algorithm.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.algorithm.load_state_dict(state)

    # --- description ---------------------------------------------------------------------

    @property
    def observation_space(self) -> gym.Space[Any]:
        """The space of one unit's observation."""
        return self.spec.observation_space

    @property
    def action_space(self) -> gym.Space[Any]:
        """The space of one unit's action."""
        return self.spec.action_space

    @property
    def num_envs(self) -> int:
        """How many units act in each batch (``N``)."""
        return self.spec.num_envs

    @property
    def transition_spec(self) -> TransitionSpec:
        """What :meth:`observe` expects of a transition (shapes, dtypes, device), so that
        ``rlkit.transition(..., like=agent)`` builds one from numpy arrays and numbers."""
        spec = getattr(self.algorithm, "transition_spec", None)
        if isinstance(spec, TransitionSpec):
            return spec
        return TransitionSpec.from_env(self.spec, self.device,
                                       algorithm=self.experiment.algorithm.name)

    @property
    def env_id(self) -> str | None:
        """The config's ``env.id``, or None for an agent built without an ``env`` section."""
        env_id = self.experiment.env.id
        return None if env_id == EMBEDDED_ENV_ID else env_id

    def __repr__(self) -> str:
        return (f"Agent({self.experiment.algorithm.name!r}, backbone="
                f"{self.experiment.backbone.name!r}, observation_space={self.observation_space}, "
                f"action_space={self.action_space}, num_envs={self.num_envs}, "
                f"device={str(self.device)!r})")

    def _obs(self, obs: Any) -> Any:
        if isinstance(obs, Tensor):
            return obs if obs.device == self.device else obs.to(self.device)
        if isinstance(obs, Mapping) or self._obs_dtype is None:
            return obs
        return torch.as_tensor(np.asarray(obs)).to(device=self.device, dtype=self._obs_dtype)


def _config_data(cfg: Any) -> tuple[dict[str, Any], str | None]:
    """The plain data of ``cfg`` (a copy) and the file it came from."""
    if isinstance(cfg, Experiment):
        return cfg.to_data(), cfg.source
    if isinstance(cfg, (str, Path)):
        return read_yaml(cfg), str(cfg)
    if isinstance(cfg, Mapping):
        data = copy.deepcopy(dict(cfg))
        if isinstance(data.get("env"), Mapping):
            data["env"] = dict(data["env"])
        if isinstance(data.get("train"), Mapping):
            data["train"] = dict(data["train"])
        return data, None
    raise TypeError(f"Agent.from_config: cfg must be an experiment file's path, a mapping of "
                    f"its sections or an rlkit.config.Experiment, got {type(cfg).__name__}.")


def _resolve(data: dict[str, Any], plugins: Plugins, source: str | None) -> Experiment:
    try:
        return resolve(data, plugins, source=source)
    except ConfigError as exc:
        if source is None:
            raise
        raise ConfigError(blame(exc, source, ()), key=exc.key, source=source) from None


def _recorded_spaces(spaces: Any, file: Path) -> tuple[gym.Space[Any], gym.Space[Any], int]:
    """The observation space, action space and number of units a checkpoint records."""
    try:
        if not isinstance(spaces, Mapping):
            raise ValueError(f"spaces: expected a mapping, got {type(spaces).__name__}.")
        obs_space = space_from_data(spaces.get("observation"), "spaces.observation")
        act_space = space_from_data(spaces.get("action"), "spaces.action")
        num_envs = spaces.get("num_envs")
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"spaces.num_envs: expected a whole number >= 1, got "
                             f"{num_envs!r}.")
    except ValueError as exc:
        raise CheckpointError(f"{file}: {exc} The checkpoint is damaged or was not written by "
                              f"Agent.save.") from None
    return obs_space, act_space, num_envs
