"""Experiment files: YAML (read with ``safe_load``) -> a validated, typed :class:`Experiment`.

An experiment file has these sections (only ``algorithm``, ``env`` and ``train.total_steps``
are required)::

    algorithm: {name: ppo, n_steps: 32, ...}    # name + the algorithm's hyperparameters
    backbone: {name: mlp, hidden_sizes: [64, 64]}
    exploration: {name: schedule, value: 0.1}   # optional; algorithms have defaults
    env: {id: CartPole-v1, num_envs: 8}
    train: {total_steps: 100000, seed: 0}
    eval: {every: 10000, episodes: 20, target_return: 475}
    run: {dir: runs}

The hyperparameters of ``algorithm``, ``backbone`` and ``exploration`` are validated against
the dataclass their plugin registered, so ``rlkit train`` fails before any work with the key
path of the first problem (``algorithm.optimizer.lr: expected a number ...``).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from rlkit.plugins import Plugins, UnknownNameError
from rlkit.validation import ConfigError, from_data, hint_for, param, to_data

__all__ = [
    "ComponentConfig",
    "ConfigError",
    "EnvConfig",
    "EvalConfig",
    "Experiment",
    "RunConfig",
    "TrainConfig",
    "WrapperConfig",
    "apply_overrides",
    "load_experiment",
    "read_yaml",
    "resolve",
]


@dataclass(kw_only=True)
class WrapperConfig:
    """A gymnasium wrapper applied to each environment, innermost first."""

    name: str
    """``module:Class`` or a dotted path, e.g. ``gymnasium.wrappers.ClipReward``."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the wrapper's constructor."""


@dataclass(kw_only=True)
class EnvConfig:
    """The training environment (evaluation uses separate instances of the same)."""

    id: str
    """A gymnasium id, e.g. ``CartPole-v1`` or ``my_package:MyEnv-v0``."""
    num_envs: int = param(1, ge=1)
    """Environments stepped in parallel."""
    vectorization: Literal["auto", "sync", "async", "vector_entry_point"] = "auto"
    """How gymnasium.make_vec batches them: one process (sync), subprocesses (async), or the
    env's own batched implementation (vector_entry_point); auto picks vector_entry_point for
    torch-native batched envs and sync for everything else."""
    autoreset_mode: Literal["same_step", "next_step"] = "same_step"
    """Gymnasium's autoreset mode for sync/async; vector_entry_point envs use their own."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the environment's constructor."""
    wrappers: list[WrapperConfig] = field(default_factory=list)
    """Wrappers applied to each single environment."""
    imports: list[str] = field(default_factory=list)
    """Modules imported before the env is made (packages that register gymnasium ids)."""


@dataclass(kw_only=True)
class TrainConfig:
    """Budget, seed, device and safety settings of a run."""

    total_steps: int = param(ge=1)
    """Environment steps to train for (summed over parallel envs)."""
    seed: int = param(0, ge=0)
    """Seed for networks, exploration, sampling and environments."""
    device: str = "auto"
    """``auto`` (cuda if available), ``cpu``, ``cuda`` or ``cuda:N``."""
    checkpoint_every: int = param(0, ge=0)
    """Write a checkpoint every this many env steps (0: only at the end and on interrupt)."""
    keep_checkpoints: int = param(2, ge=1)
    """How many periodic checkpoints to keep besides ``latest.pt``."""
    nan_check: Literal["off", "warn", "raise"] = "warn"
    """What to do with NaN/inf in env outputs, losses and gradient norms."""
    torch_threads: int | None = param(None, ge=1)
    """torch intra-op threads (default: 1 for small CPU workloads, which is fastest)."""
    log_every: int = param(1000, ge=1)
    """Log rollout statistics (episode return/length) every this many env steps."""


@dataclass(kw_only=True)
class EvalConfig:
    """Periodic evaluation on separate environment instances."""

    every: int = param(10_000, ge=0)
    """Evaluate every this many env steps (0: only at the end)."""
    episodes: int = param(10, ge=1)
    """Episodes per evaluation."""
    num_envs: int | None = param(None, ge=1)
    """Parallel evaluation envs (default: one per episode, at most 32)."""
    deterministic: bool = True
    """Act greedily / with the distribution's mean."""
    target_return: float | None = None
    """Stop training as soon as the mean evaluation return reaches this."""


@dataclass(kw_only=True)
class RunConfig:
    """Where the run directory goes."""

    dir: str = "runs"
    """Parent directory of run directories."""
    name: str | None = None
    """Run directory name (default: <algorithm>-<env>-<date>-<time>)."""


@dataclass(kw_only=True)
class ComponentConfig:
    """A plugin-provided component: its registered name and its validated parameters."""

    name: str
    params: Any = None


@dataclass(kw_only=True)
class Experiment:
    """A validated experiment: what ``rlkit train`` runs."""

    algorithm: ComponentConfig
    env: EnvConfig
    train: TrainConfig
    backbone: ComponentConfig = field(default_factory=lambda: ComponentConfig(name="mlp"))
    exploration: ComponentConfig | None = None
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)
    source: str | None = None
    """The file it came from (for messages)."""

    def to_data(self) -> dict[str, Any]:
        """Plain data with every default filled in (written as ``config.yaml``)."""
        out: dict[str, Any] = {}
        for section in ("algorithm", "backbone", "exploration"):
            comp = getattr(self, section)
            if comp is not None:
                out[section] = {"name": comp.name, **to_data(comp.params)}
        for section in ("env", "train", "eval", "run"):
            out[section] = to_data(getattr(self, section))
        return out


_SECTIONS: dict[str, Any] = {
    "env": EnvConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "run": RunConfig,
}
_COMPONENTS = ("algorithm", "backbone", "exploration")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read an experiment file with ``yaml.safe_load``; errors name the file (and line)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: experiment file not found. Pass the path of a YAML file, "
                          f"e.g. experiments/cartpole.yaml.")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{p}{where}: not valid YAML: {problem}.") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections "
                          f"(algorithm, env, train, ...), got {type(data).__name__}.")
    return data


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to a copy of ``data``."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, "
                              f"e.g. --set algorithm.optimizer.lr=1e-3")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        parts = key.split(".")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part) if isinstance(node, dict) else None
            if child is None:
                child = {}
                node[part] = child
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a mapping.")
            node = child
        node[parts[-1]] = value
    return data


def resolve(data: Mapping[str, Any], plugins: Plugins, source: str | None = None) -> Experiment:
    """Validate plain data against the schema and the plugins' hyperparameter dataclasses."""
    unknown = [k for k in data if k not in _SECTIONS and k not in _COMPONENTS]
    if unknown:
        valid = [*_COMPONENTS, *_SECTIONS]
        hint = hint_for(str(unknown[0]), valid)
        raise ConfigError(f"{unknown[0]}: unknown section.{hint} Valid sections: "
                          f"{', '.join(valid)}.")
    for required in ("algorithm", "env", "train"):
        if data.get(required) is None:
            raise ConfigError(f"{required}: required section is missing.")
    kwargs: dict[str, Any] = {"source": source}
    for name, cls in _SECTIONS.items():
        if name in data:
            kwargs[name] = from_data(cls, data[name], name)
    specs: dict[str, Callable[[str], Any]] = {
        "algorithm": plugins.algorithm,
        "backbone": plugins.backbone,
        "exploration": plugins.exploration_spec,
    }
    for name in _COMPONENTS:
        raw = data.get(name, {"name": "mlp"} if name == "backbone" else None)
        if raw is None:
            continue
        if isinstance(raw, str):
            raw = {"name": raw}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{name}: expected a mapping with a 'name' key, got {raw!r}.")
        if "name" not in raw and name == "backbone":
            raw = {"name": "mlp", **raw}
        if "name" not in raw:
            raise ConfigError(f"{name}.name: required key is missing.")
        comp_name = raw["name"]
        try:
            spec = specs[name](str(comp_name))
        except UnknownNameError as exc:
            raise ConfigError(str(exc)) from None
        params = {k: v for k, v in raw.items() if k != "name"}
        kwargs[name] = ComponentConfig(name=spec.name,
                                       params=from_data(spec.config, params, name))
    return Experiment(**kwargs)


def load_experiment(
    path: str | Path, plugins: Plugins, overrides: Sequence[str] = ()
) -> Experiment:
    """Read, override and validate an experiment file; errors are prefixed with the file."""
    data = apply_overrides(read_yaml(path), overrides)
    try:
        return resolve(data, plugins, source=str(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def replace_params(component: ComponentConfig, **changes: Any) -> ComponentConfig:
    """A copy of ``component`` with some hyperparameters changed (re-validated by dataclass)."""
    return ComponentConfig(name=component.name,
                           params=dataclasses.replace(component.params, **changes))
