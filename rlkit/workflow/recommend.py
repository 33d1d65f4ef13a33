"""rlkit plugin: the ``rlkit recommend`` command (entry point ``workflow``).

``rlkit recommend ENV_ID`` looks at an environment -- its observation and action spaces,
whether it is a torch-native batched env, and a short seeded random rollout (episode length,
time-limit truncation, reward density) -- ranks the built-in algorithms and backbones for it
with the reason for each, and writes a starter experiment file for the first choice.

The ranking rules, in order:

* **Tabular**: Discrete observations with at most :data:`TABULAR_MAX_STATES` states and
  Discrete actions -> ``qlearning`` first, ``sarsa`` second (a table, no network).
* **Discrete actions**, vector observations -> ``ppo`` (mlp) first, ``dqn`` (mlp) second,
  ``a2c`` third. Image observations (a Box of rank 3, or a rank-2 ``uint8`` Box) -> the same
  with the ``cnn`` backbone. Dict/Tuple observations -> ``mlp`` over the flattened observation
  (the starter file adds gymnasium's ``FlattenObservation`` wrapper).
* **Continuous actions** (a Box with finite bounds) -> ``td3`` first (off-policy,
  sample-efficient), ``ppo`` second, ``ddpg`` third. A Box with an infinite bound -> ``ppo``
  only: td3 and ddpg scale a tanh output to the bounds.
* **Sparse or delayed reward** (nonzero in fewer than :data:`SPARSE_FRACTION` of the random
  steps, or only on the last step of an episode) -> ``lstm`` variants of ``ppo`` and ``a3c``
  are added: memory helps credit assignment. Partial observability cannot be read from the
  spaces, so the notes always say that ``lstm`` is the answer when one observation does not
  tell the state.
* **Torch-native envs** -> the notes suggest many envs (``env.num_envs: 1024``) and
  ``train.device: auto`` (a GPU when there is one), and the starter file uses them.

Nothing heavy (torch, gymnasium) is imported until the command runs.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlkit.hookspecs import hookimpl
from rlkit.workflow import positive_int

__all__ = ["Choice", "EnvSummary", "Recommendation", "inspect_env", "rank", "recommend",
           "starter_yaml", "write_starter"]

TABULAR_MAX_STATES = 10_000
"""The most Discrete observation states for which a table is recommended."""
SPARSE_FRACTION = 0.05
"""A reward nonzero in fewer than this fraction of random steps counts as sparse."""
DEFAULT_STEPS = 2_000
"""Random rollout steps by default."""
TIME_CAP_S = 5.0
"""The random rollout stops after this many seconds, however many steps it took."""
TORCH_NATIVE_ENVS = 1_024
"""How many envs to suggest for a torch-native batched env."""
DELAYED_REWARD = "delayed reward: memory helps credit assignment"

RECOMMEND_HELP = """\
Look at an environment (its spaces, and a short seeded random rollout: episode length,
time-limit truncation, reward density), rank algorithm and backbone choices with the reason
for each, and write a starter experiment file for the first choice that `rlkit train` runs.
The file is never overwritten without --force. The rules are in docs/guide.md ("Choosing an
algorithm").

examples:
  rlkit recommend CartPole-v1
  rlkit recommend FrozenLake-v1 --env-kwargs '{"is_slippery": false}' --out fl.yaml
  rlkit recommend rlkit/Breakout-v0 --json
  rlkit recommend MyEnv-v0 --imports my_package.envs --steps 5000
"""


@dataclass(kw_only=True)
class EnvSummary:
    """What :func:`inspect_env` found out about an environment."""

    env_id: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    imports: list[str] = field(default_factory=list)
    observation_space: str
    action_space: str
    observation: str
    """``discrete``, ``vector``, ``image``, ``dict``, ``tuple`` or ``other``."""
    observation_size: int | None
    """States of a Discrete observation space; the number of entries otherwise."""
    action: str
    """``discrete``, ``box`` or ``other``."""
    action_size: int | None
    """Actions of a Discrete space; dimensions of a Box."""
    action_bounded: bool
    """For a Box: whether every bound is finite."""
    torch_native: bool
    time_limit: int | None
    """The env's registered ``max_episode_steps``."""
    steps: int
    """Random steps taken (fewer than asked when the time cap was reached)."""
    episodes: int
    """Episodes that ended during the rollout."""
    mean_episode_length: float | None
    """Over the episodes that ended; ``None`` when none did."""
    truncated_fraction: float | None
    """Of the episodes that ended, the fraction cut off by a time limit."""
    nonzero_reward_fraction: float
    reward_mean: float
    reward_std: float
    reward_only_at_end: bool
    """Every nonzero reward came on the last step of an episode (and there was one)."""
    sparse_reward: bool


@dataclass(frozen=True, kw_only=True)
class Choice:
    """One ranked recommendation."""

    algorithm: str
    backbone: str
    why: str


@dataclass(kw_only=True)
class Recommendation:
    """An environment's summary, the ranked choices (best first) and general notes."""

    env: EnvSummary
    choices: list[Choice]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {"env": asdict(self.env),
                "choices": [dict(rank=i, **asdict(c)) for i, c in enumerate(self.choices, 1)],
                "notes": list(self.notes)}


def inspect_env(env_id: str, *, kwargs: dict[str, Any] | None = None,
                imports: list[str] | tuple[str, ...] = (), steps: int = DEFAULT_STEPS,
                seed: int = 0, time_cap_s: float = TIME_CAP_S) -> EnvSummary:
    """The spaces of ``env_id`` and the statistics of a seeded random rollout.

    :param kwargs: keyword arguments for the env's constructor (``env.kwargs``).
    :param imports: modules to import first, which register the id (``env.imports``).
    :param steps: random steps to take (stops earlier after ``time_cap_s`` seconds).
    :raises ConfigError: for an unknown id (with close matches) or an env that cannot be made.
    :raises EnvError: when the env's reset or step raises during the rollout.
    """
    import importlib

    import gymnasium as gym
    import numpy as np

    from rlkit.environments import EnvError, _check_env_id, _make_error, _torch_native
    from rlkit.validation import ConfigError

    kwargs = dict(kwargs or {})
    for module in imports:
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise ConfigError(f"--imports: cannot import {module!r}: {exc}. Install the package "
                              f"that provides it, or check the module name.",
                              key="env.imports") from None
    if env_id not in gym.registry and ":" not in env_id:
        from rlkit.plugins import Plugins

        Plugins.load()  # plugins register their envs (rlkit/... ids among them)
    try:
        _check_env_id(env_id)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("list the module that registers it under env.imports",
                                           "name the module that registers it with --imports"),
                          key="env.id") from None
    try:
        env = gym.make(env_id, **kwargs)
    except Exception as exc:
        raise _make_error(env_id, kwargs, "sync", exc) from None
    obs_space, act_space = env.observation_space, env.action_space
    observation, observation_size = _observation_kind(obs_space)
    action, action_size, bounded = _action_kind(act_space)

    rewards: list[float] = []
    last_step: list[bool] = []
    lengths: list[int] = []
    truncations = 0
    length = 0
    act_space.seed(seed)
    start = time.perf_counter()
    try:
        _call(env.reset, env_id, "reset", EnvError, seed=seed)
        for i in range(steps):
            _, reward, terminated, truncated, _ = _call(env.step, env_id, f"step {i + 1}",
                                                        EnvError, act_space.sample())
            rewards.append(float(reward))
            length += 1
            done = bool(terminated) or bool(truncated)
            last_step.append(done)
            if done:
                lengths.append(length)
                truncations += int(bool(truncated) and not bool(terminated))
                length = 0
                _call(env.reset, env_id, "reset", EnvError)
            if time.perf_counter() - start > time_cap_s:
                break
    finally:
        env.close()

    r = np.asarray(rewards, dtype=np.float64)
    nonzero = r != 0
    fraction = float(nonzero.mean()) if r.size else 0.0
    at_end = bool(nonzero.any()) and all(last_step[i] for i in np.flatnonzero(nonzero))
    spec = gym.spec(env_id)
    return EnvSummary(
        env_id=env_id, kwargs=kwargs, imports=list(imports),
        observation_space=str(obs_space), action_space=str(act_space),
        observation=observation, observation_size=observation_size,
        action=action, action_size=action_size, action_bounded=bounded,
        torch_native=_torch_native(env_id) is not None,
        time_limit=spec.max_episode_steps, steps=int(r.size), episodes=len(lengths),
        mean_episode_length=float(np.mean(lengths)) if lengths else None,
        truncated_fraction=truncations / len(lengths) if lengths else None,
        nonzero_reward_fraction=fraction,
        reward_mean=float(r.mean()) if r.size else 0.0,
        reward_std=float(r.std()) if r.size else 0.0,
        reward_only_at_end=at_end, sparse_reward=fraction < SPARSE_FRACTION or at_end)


def _call(fn: Any, env_id: str, what: str, error: type[Exception], *args: Any,
          **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``; an exception becomes ``error`` naming the env and the call."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        raise error(f"{env_id!r} raised in {what} of the random rollout: "
                    f"{type(exc).__name__}: {exc}. Fix the environment (or its --env-kwargs) "
                    f"and run rlkit recommend again.") from exc


def _observation_kind(space: Any) -> tuple[str, int | None]:
    import gymnasium as gym
    import numpy as np

    if isinstance(space, gym.spaces.Discrete):
        return "discrete", int(space.n)
    if isinstance(space, gym.spaces.Dict):
        return "dict", None
    if isinstance(space, gym.spaces.Tuple):
        return "tuple", None
    if isinstance(space, gym.spaces.Box):
        rank = len(space.shape)
        image = rank == 3 or (rank == 2 and space.dtype == np.uint8)
        return ("image" if image else "vector"), int(math.prod(space.shape))
    if isinstance(space, gym.spaces.MultiDiscrete | gym.spaces.MultiBinary):
        return "vector", int(math.prod(space.shape))
    return "other", None


def _action_kind(space: Any) -> tuple[str, int | None, bool]:
    import gymnasium as gym
    import numpy as np

    if isinstance(space, gym.spaces.Discrete):
        return "discrete", int(space.n), True
    if isinstance(space, gym.spaces.Box):
        finite = bool(np.isfinite(space.low).all() and np.isfinite(space.high).all())
        return "box", int(math.prod(space.shape)), finite
    return "other", None, False


def rank(env: EnvSummary) -> Recommendation:
    """The choices for ``env``, best first, by the rules in the module docstring."""
    choices: list[Choice] = []
    notes: list[str] = []
    obs, act = env.observation, env.action
    features = "cnn" if obs == "image" else "mlp"
    seen = ("images" if obs == "image" else "flattened observations" if obs in ("dict", "tuple")
            else "vector observations")
    if act == "discrete" and obs == "discrete" and (env.observation_size or 0) <= \
            TABULAR_MAX_STATES:
        states = f"{env.observation_size} states x {env.action_size} actions"
        choices += [
            Choice(algorithm="qlearning", backbone="tabular",
                   why=f"{states} fit in a table: exact values, nothing to approximate"),
            Choice(algorithm="sarsa", backbone="tabular",
                   why="a table too; learns the values of the policy it follows, more cautious "
                   "where exploring is costly"),
        ]
    elif act == "discrete":
        choices += [
            Choice(algorithm="ppo", backbone=features,
                   why=f"discrete actions, {seen}: robust defaults, scales with many envs"),
            Choice(algorithm="dqn", backbone=features,
                   why="off-policy from a replay buffer: fewer env steps when they are costly"),
            Choice(algorithm="a2c", backbone=features,
                   why="the simplest actor-critic: cheap updates, less stable than ppo"),
        ]
    elif act == "box" and env.action_bounded:
        choices += [
            Choice(algorithm="td3", backbone=features,
                   why="continuous bounded actions: off-policy, sample-efficient"),
            Choice(algorithm="ppo", backbone=features,
                   why="on-policy Gaussian policy: steadier, needs more env steps"),
            Choice(algorithm="ddpg", backbone=features,
                   why="td3's simpler predecessor: one critic, more prone to overestimation"),
        ]
    elif act == "box":
        choices.append(Choice(algorithm="ppo", backbone=features,
                              why="continuous actions without finite bounds: td3/ddpg need "
                              "bounds to scale their actions"))
    else:
        notes.append(f"No built-in algorithm takes the action space {env.action_space}; "
                     f"use a Discrete or Box action space (a wrapper under env.wrappers).")
    if choices and env.sparse_reward:
        choices += [Choice(algorithm="ppo", backbone="lstm", why=DELAYED_REWARD),
                    Choice(algorithm="a3c", backbone="lstm", why=DELAYED_REWARD)]
        at_end = " and only at the end of an episode" if env.reward_only_at_end else ""
        notes.append(f"Sparse reward: nonzero in {env.nonzero_reward_fraction:.1%} of random "
                     f"steps{at_end}; expect a long exploration phase (or shape the reward).")
    if obs in ("dict", "tuple"):
        notes.append("Dict/Tuple observations: the starter file flattens them with "
                     "gymnasium.wrappers.FlattenObservation.")
    notes.append("Spaces cannot tell whether one observation tells the state: when it does not "
                 "(hidden velocities, a partial view), use backbone lstm (with an mlp or cnn "
                 "encoder), as in experiments/cartpole_novel_lstm.yaml.")
    if env.torch_native:
        notes.append(f"Torch-native env: train many envs at once (env.num_envs: "
                     f"{TORCH_NATIVE_ENVS:,}) with train.device: auto (a GPU when there is one).")
    return Recommendation(env=env, choices=choices, notes=notes)


def recommend(env_id: str, *, kwargs: dict[str, Any] | None = None,
              imports: list[str] | tuple[str, ...] = (), steps: int = DEFAULT_STEPS,
              seed: int = 0, time_cap_s: float = TIME_CAP_S) -> Recommendation:
    """:func:`inspect_env` then :func:`rank`."""
    return rank(inspect_env(env_id, kwargs=kwargs, imports=imports, steps=steps, seed=seed,
                            time_cap_s=time_cap_s))


# --- the starter experiment file ------------------------------------------------------------

_PPO_DISCRETE = {"name": "ppo", "n_steps": 32, "batch_size": 256, "n_epochs": 20, "gamma": 0.98,
                 "gae_lambda": 0.8, "clip_coef": {"kind": "linear", "start": 0.2, "end": 0.0},
                 "ent_coef": 0.0, "vf_coef": 0.5, "max_grad_norm": 0.5,
                 "optimizer": {"name": "adam",
                               "lr": {"kind": "linear", "start": 1.0e-3, "end": 0.0}}}
_PPO_CONTINUOUS = {"name": "ppo", "n_steps": 256, "batch_size": 512, "n_epochs": 10,
                   "gamma": 0.9, "gae_lambda": 0.95, "clip_coef": 0.2, "ent_coef": 0.0,
                   "max_grad_norm": 0.5, "log_std_init": -0.5,
                   "optimizer": {"name": "adam", "lr": 1.0e-3}}
_PPO_CNN = {"name": "ppo", "n_steps": 64, "batch_size": 1024, "n_epochs": 4, "gamma": 0.99,
            "gae_lambda": 0.95, "clip_coef": 0.2, "ent_coef": 0.01, "vf_coef": 0.5,
            "max_grad_norm": 0.5, "share_backbone": True,
            "optimizer": {"name": "adam", "lr": {"kind": "linear", "start": 1.0e-3, "end": 0.0}}}
_TD3 = {"name": "td3", "gamma": 0.98, "buffer_size": 200000, "learning_starts": 10000,
        "batch_size": 256, "train_freq": 1, "gradient_steps": 1, "tau": 0.005, "noise_sigma": 0.1,
        "actor_optimizer": {"name": "adam", "lr": 1.0e-3},
        "critic_optimizer": {"name": "adam", "lr": 1.0e-3}}
_QLEARNING = {"name": "qlearning", "learning_rate": 0.5, "gamma": 0.95,
              "epsilon": {"kind": "linear", "start": 1.0, "end": 0.05, "fraction": 0.5}}
_MLP_TANH = {"name": "mlp", "hidden_sizes": [64, 64], "activation": "tanh"}
_MLP_RELU = {"name": "mlp", "hidden_sizes": [400, 300], "activation": "relu",
             "orthogonal_init": False}
_CNN = {"name": "cnn", "channels": [16], "kernel_sizes": [3], "strides": [1],
        "hidden_sizes": [128]}


def _template(env: EnvSummary, choice: Choice) -> tuple[str, dict[str, Any]]:
    """The experiment file a starter follows, and its algorithm/backbone/env/train sections."""
    native = env.torch_native
    if choice.algorithm == "qlearning":
        return "frozenlake_qlearning.yaml", {
            "algorithm": _QLEARNING, "env": {"num_envs": 8},
            "train": {"total_steps": 100000, "seed": 0}}
    if choice.algorithm == "td3" and choice.backbone == "mlp":
        if native:
            algo = {**_TD3, "learning_starts": 2048, "train_freq": 32, "gradient_steps": 4,
                    "tau": 0.05, "actor_optimizer": {"name": "adam", "lr": 3.0e-3},
                    "critic_optimizer": {"name": "adam", "lr": 3.0e-3}}
            return "pendulum_td3_gpu.yaml", {
                "algorithm": algo, "backbone": {**_MLP_RELU, "hidden_sizes": [64, 64]},
                "env": {"num_envs": 32},
                "train": {"total_steps": 200000, "seed": 0, "device": "auto"}}
        return "pendulum_td3.yaml", {"algorithm": _TD3, "backbone": _MLP_RELU,
                                     "env": {"num_envs": 1},
                                     "train": {"total_steps": 100000, "seed": 0}}
    if choice.algorithm == "ppo" and choice.backbone == "cnn":
        return "breakout_ppo.yaml", {
            "algorithm": _PPO_CNN, "backbone": _CNN, "env": {"num_envs": 64 if native else 8},
            "train": {"total_steps": 500000, "seed": 0, "device": "auto", "log_every": 16384}}
    if choice.algorithm == "ppo" and choice.backbone == "mlp":
        if env.action == "box":
            if native:
                return "pendulum_gpu.yaml", {
                    "algorithm": {**_PPO_CONTINUOUS, "n_steps": 32, "batch_size": 8192},
                    "backbone": _MLP_TANH, "env": {"num_envs": TORCH_NATIVE_ENVS},
                    "train": {"total_steps": 10000000, "seed": 0, "device": "auto",
                              "log_every": 32768}}
            return "pendulum_gpu.yaml", {
                "algorithm": _PPO_CONTINUOUS, "backbone": _MLP_TANH, "env": {"num_envs": 8},
                "train": {"total_steps": 1000000, "seed": 0}}
        if native:
            algo = {**_PPO_DISCRETE, "n_steps": 8, "batch_size": 2048, "n_epochs": 2,
                    "gamma": 0.99, "gae_lambda": 0.95, "clip_coef": 0.2,
                    "optimizer": {"name": "adam",
                                  "lr": {"kind": "linear", "start": 1.0e-2, "end": 0.0}}}
            return "cartpole_gpu.yaml", {
                "algorithm": algo, "backbone": _MLP_TANH, "env": {"num_envs": TORCH_NATIVE_ENVS},
                "train": {"total_steps": 2000000, "seed": 0, "device": "auto",
                          "log_every": 16384}}
        return "cartpole.yaml", {"algorithm": _PPO_DISCRETE, "backbone": _MLP_TANH,
                                 "env": {"num_envs": 8},
                                 "train": {"total_steps": 100000, "seed": 0}}
    raise ValueError(f"no starter template for {choice.algorithm} with {choice.backbone}")


def starter_yaml(rec: Recommendation, path: str | Path = "starter.yaml") -> str:
    """The starter experiment file for ``rec``'s first choice, with a comment header."""
    import yaml

    if not rec.choices:
        from rlkit.validation import ConfigError

        raise ConfigError(f"no built-in algorithm fits {rec.env.env_id!r}: "
                          + " ".join(rec.notes[:1]))
    env, top = rec.env, rec.choices[0]
    source, sections = _template(env, top)
    env_section: dict[str, Any] = {"id": env.env_id, **sections["env"]}
    if env.kwargs:
        env_section["kwargs"] = env.kwargs
    if env.imports:
        env_section["imports"] = list(env.imports)
    if env.observation in ("dict", "tuple"):
        env_section["wrappers"] = [{"name": "gymnasium.wrappers.FlattenObservation"}]
    data: dict[str, Any] = {"algorithm": sections["algorithm"]}
    if "backbone" in sections:
        data["backbone"] = sections["backbone"]
    data["env"] = env_section
    data["train"] = sections["train"]
    data["eval"] = {"every": max(sections["train"]["total_steps"] // 20, 1000), "episodes": 20}
    header = [
        f"# {top.algorithm} ({top.backbone}) on {env.env_id}: the first choice of "
        f"`rlkit recommend {env.env_id}`.",
        "#",
        f"# Why: {top.why}.",
        f"# Observations: {env.observation_space}; actions: {env.action_space}.",
        f"# A random policy: {_episodes_line(env)};",
        f"# {_reward_line(env)}.",
        f"# Hyperparameters follow experiments/{source}: a starting point, not tuned for this",
        "# env; set eval.target_return once you know what a good return is.",
    ]
    if env.torch_native:
        header.append("# Torch-native env: many envs at once, on a GPU when there is one "
                      "(train.device: auto).")
    header += ["#", f"#   rlkit train {path}"]
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
    return "\n".join(header) + "\n" + body


def write_starter(rec: Recommendation, path: str | Path | None = None, *,
                  force: bool = False) -> Path:
    """Write :func:`starter_yaml` to ``path`` (default ``<algo>_<env>.yaml`` in the current
    directory); an existing file is kept unless ``force``.

    :raises ConfigError: when the file exists and ``force`` is false.
    """
    from rlkit.validation import ConfigError

    if path is None:
        algorithm = rec.choices[0].algorithm if rec.choices else "none"
        name = re.sub(r"[^A-Za-z0-9]+", "_", rec.env.env_id.split("/")[-1].split(":")[-1])
        path = Path(f"{algorithm}_{name.strip('_').lower()}.yaml")
    path = Path(path)
    if path.exists() and not force:
        raise ConfigError(f"--out: {path} exists; pass --force to overwrite it, or choose "
                          f"another file with --out.")
    text = starter_yaml(rec, path)
    path.write_text(text)
    return path


def _episodes_line(env: EnvSummary) -> str:
    if env.mean_episode_length is None:
        return f"no episode ended in {env.steps:,} steps"
    line = f"episodes last {env.mean_episode_length:.1f} steps on average"
    if env.truncated_fraction:
        line += f", {env.truncated_fraction:.0%} cut off by the time limit ({env.time_limit})"
    return line


def _reward_line(env: EnvSummary) -> str:
    line = (f"reward nonzero in {env.nonzero_reward_fraction:.1%} of steps, "
            f"{env.reward_mean:.3g} +- {env.reward_std:.3g} per step")
    if env.reward_only_at_end:
        line += ", only at the end of an episode"
    return line + (" (sparse)" if env.sparse_reward else " (dense)")


# --- the command ----------------------------------------------------------------------------

def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("env_id", help="a gymnasium id, e.g. CartPole-v1 or rlkit/Breakout-v0")
    parser.add_argument("--env-kwargs", type=_json_object, default={}, metavar="JSON",
                        help="keyword arguments for the env, e.g. '{\"is_slippery\": false}'")
    parser.add_argument("--imports", nargs="+", default=[], metavar="MODULE",
                        help="modules to import first (packages that register the id)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE",
                        help="the starter experiment file (default: <algo>_<env>.yaml here)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.add_argument("--steps", type=positive_int, default=DEFAULT_STEPS, metavar="N",
                        help=f"random rollout steps (default {DEFAULT_STEPS:,}; at most "
                        f"{TIME_CAP_S:g} s)")
    parser.add_argument("--seed", type=int, default=0, help="rollout seed (default 0)")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc}); write e.g. "
                                         f"'{{\"is_slippery\": false}}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"is_slippery\": false}'")
    return value


def _run(args: argparse.Namespace) -> int:
    rec = recommend(args.env_id, kwargs=args.env_kwargs, imports=args.imports,
                    steps=args.steps, seed=args.seed)
    path = write_starter(rec, args.out, force=args.force) if rec.choices else None
    if args.json:
        print(json.dumps({**rec.to_dict(), "starter": str(path) if path else None}))
        return 0
    _print(rec, path)
    return 0


def _print(rec: Recommendation, path: Path | None) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    env = rec.env
    console.print(f"[bold]{env.env_id}[/bold]" + ("  (torch-native)" if env.torch_native else ""))
    console.print(f"  observations: {env.observation_space} ({env.observation})")
    console.print(f"  actions:      {env.action_space} ({env.action})")
    console.print(f"  random policy, {env.steps:,} steps: {_episodes_line(env)}")
    console.print(f"  {_reward_line(env)}")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("rank", "algorithm", "backbone", "why"):
        table.add_column(column, overflow="fold")
    for i, choice in enumerate(rec.choices, 1):
        table.add_row(str(i), choice.algorithm, choice.backbone, choice.why)
    console.print(table)
    for note in rec.notes:
        console.print(f"- {note}", highlight=False)
    if path is not None:
        console.print(f"\nwrote {path}; train with: rlkit train {path}", highlight=False)
    sys.stdout.flush()


@hookimpl
def register_commands(cli: Any) -> None:
    """``rlkit recommend``, ``rlkit compare`` from :mod:`rlkit.workflow.compare` and
    ``rlkit tune`` from :mod:`rlkit.workflow.tune`: the workflow package's commands, through
    its one entry point."""
    from rlkit.workflow import compare, tune

    cli.add("recommend", help="rank algorithms for an env and write a starter experiment",
            description=RECOMMEND_HELP, configure=_configure, run=_run)
    compare.register(cli)
    tune.register(cli)
