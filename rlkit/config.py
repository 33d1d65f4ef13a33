"""Experiment files: YAML (``safe_load`` semantics) -> a validated, typed :class:`Experiment`.

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
import importlib.util
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rlkit import yaml_reader
from rlkit.components import backbone_lookup
from rlkit.plugins import Plugins, UnknownNameError
from rlkit.validation import (
    ConfigError,
    describe,
    from_data,
    hint_for,
    in_context,
    key_text,
    param,
    quote,
    suggest,
    to_data,
)

__all__ = [
    "ComponentConfig",
    "ConfigError",
    "EnvChangeConfig",
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

SEED_MAX = 2**32 - 1
"""The largest ``train.seed`` (seeds are 32-bit, as numpy's global generator takes them)."""


@dataclass(kw_only=True)
class WrapperConfig:
    """A gymnasium wrapper applied to each environment, innermost first."""

    name: str
    """``module:Class`` or a dotted path, e.g. ``gymnasium.wrappers.ClipReward``."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the wrapper's constructor."""


@dataclass(kw_only=True)
class EnvChangeConfig:
    """A change of the environments' parameters during the run (training and evaluation envs
    alike)."""

    at_step: int = param(ge=0)
    """The env step (summed over parallel envs) from which the envs run with the new values:
    they are set at the first step boundary where at least this many steps are done."""
    set: dict[str, Any]
    """Parameter names and their new values, e.g. ``{gravity: 15.0, length: 1.0}``: for
    rlkit's torch-native envs, the physical parameters their ``settable_params`` name; for
    other gymnasium envs, attributes of the unwrapped env (the ones its step reads)."""


@dataclass(kw_only=True)
class EnvConfig:
    """The training environment (evaluation uses separate instances of the same)."""

    id: str
    """A gymnasium id, e.g. ``CartPole-v1`` or ``my_package:MyEnv-v0``."""
    num_envs: int = param(1, ge=1)
    """Environments stepped in parallel."""
    vectorization: Literal["auto", "sync", "async", "vector_entry_point", "ray"] = "auto"
    """How they are batched: gymnasium.make_vec in one process (sync), in subprocesses (async),
    the env's own batched implementation (vector_entry_point), or sync batches in Ray actors on
    this machine or a Ray cluster (ray; needs the ``ray`` extra); auto picks vector_entry_point
    for torch-native batched envs and sync for everything else. Evaluation envs use sync
    instead of async or ray."""
    autoreset_mode: Literal["same_step", "next_step"] = "same_step"
    """Gymnasium's autoreset mode for sync/async/ray; vector_entry_point envs use their own."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the environment's constructor."""
    wrappers: list[WrapperConfig] = field(default_factory=list)
    """Wrappers applied to each single environment."""
    imports: list[str] = field(default_factory=list)
    """Modules imported before the env is made (packages that register gymnasium ids)."""
    step_timeout: float | None = param(60.0, gt=0)
    """With vectorization: async or ray, seconds to wait for the workers per reset or step before
    the run stops with an error naming the worker (null: wait forever); ignored otherwise. Ray
    actors get at least 60 s to start."""
    rollout_workers: int = param(2, ge=1)
    """With vectorization: ray, the number of Ray actors holding the envs; num_envs is split
    across them as evenly as possible, so it must be at least rollout_workers. Ignored
    otherwise."""
    rollout_worker_cpus: float = param(1.0, gt=0)
    """With vectorization: ray, the CPUs Ray reserves for each actor; a fraction (0.5) lets
    several actors share a core. Ignored otherwise."""
    changes: list[EnvChangeConfig] = field(default_factory=list)
    """Parameter changes during the run, in order of strictly increasing ``at_step``, each
    ``{at_step: N, set: {name: value, ...}}``; a name the env cannot set is refused before the
    run starts. Not with vectorization: ray."""


@dataclass(kw_only=True)
class TrainConfig:
    """Budget, seed, device and safety settings of a run."""

    total_steps: int = param(ge=1)
    """Environment steps to train for (summed over parallel envs)."""
    seed: int = param(0, ge=0, le=SEED_MAX)
    """Seed for networks, exploration, sampling and environments: 0 to 2**32 - 1."""
    device: str = "auto"
    """``auto`` (cuda if available), ``cpu``, ``cuda`` or ``cuda:N``."""
    checkpoint_every: int = param(0, ge=0)
    """Write a checkpoint every this many env steps (0: only at the end and on interrupt)."""
    keep_checkpoints: int = param(2, ge=1)
    """How many periodic checkpoints to keep besides ``latest.pt``."""
    nan_check: Literal["off", "warn", "raise"] = param("warn", from_bool=("off", "warn"))
    """What to do with NaN/inf in env outputs, losses and gradient norms. YAML reads unquoted
    ``off``/``no``/``false`` as false, which means ``off``, and ``on``/``yes``/``true`` as true,
    which means ``warn`` (the default)."""
    torch_threads: int | None = param(None, ge=1)
    """torch intra-op threads (default: 1 for small CPU workloads, which is fastest)."""
    log_every: int = param(1000, ge=1)
    """Log rollout statistics (episode return/length) every this many env steps."""
    plugin_errors: Literal["warn", "stop"] = "warn"
    """When a plugin's lifecycle hook raises: ``warn`` reports it once per plugin and hook and
    the run goes on; ``stop`` stops the run there with a checkpoint and a one-line error."""


@dataclass(kw_only=True)
class RollbackConfig:
    """Restore the best policy seen in evaluation when evaluation collapses."""

    drop: float = param(0.5, gt=0.0)
    """A collapse is an evaluation return below ``best - drop * |best|`` (0.5: lost half of
    the best return), and at least ``min_drop`` below the best."""
    min_drop: float = param(0.0, ge=0.0)
    """The smallest fall, in return units, that counts as a collapse (for returns near 0)."""
    patience: int = param(2, ge=1)
    """Consecutive collapsed evaluations before the best policy is restored."""


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
    rollback: RollbackConfig | None = None
    """Keep the best policy seen in evaluation and restore it, with its optimizer state, when
    evaluation collapses (``{drop: 0.5, patience: 2}``); null: never."""


@dataclass(kw_only=True)
class InitFromConfig:
    """Start from a trained agent's weights (fine-tuning) instead of from scratch."""

    path: str
    """A run directory (its latest checkpoint) or a checkpoint file."""
    transfer: Literal["all", "backbone"] = "all"
    """all: every network as it was; backbone: only the backbones (feature extractors), with
    fresh heads -- when the action space or the heads' shapes differ."""
    freeze_backbone_steps: int = param(0, ge=0)
    """Keep the transferred backbones frozen for this many env steps (0: train them at once)."""
    optimizer: Literal["keep", "reset"] = "reset"
    """keep: continue with the trained optimizer's state (moments, step counts; needs
    transfer: all); reset: a fresh optimizer."""
    buffer: Literal["keep", "reset"] = "reset"
    """keep: start with the trained run's replay buffer (off-policy algorithms, same buffer
    size); reset: an empty one."""
    normalizer: Literal["keep", "reset"] = "keep"
    """keep: start from the trained run's observation/reward normalisation statistics (the
    NormalizeObservation / NormalizeReward wrappers of env.wrappers); reset: fresh ones."""


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
    init_from: InitFromConfig | None = None
    """Fine-tune: the trained agent to start from (``rlkit finetune`` sets it)."""
    source: str | None = None
    """The file it came from (for messages)."""
    overrides: tuple[str, ...] = ()
    """The ``--set KEY=VALUE`` overrides applied to the file (for messages)."""

    def locate(self, exc: ConfigError, *, key: str,
               installed: Collection[str] | None = None) -> ConfigError:
        """An error raised while building from this experiment (``dqn`` on a Box action space,
        a buffer too large for memory), worded like a validation error: prefixed with the file
        or the ``--set`` that caused it, and a key path (``key`` unless it names its own)."""
        exc = in_context(exc, key=key, installed=installed)
        if exc.source is not None or self.source is None:
            return exc
        return ConfigError(blame(exc, self.source, self.overrides), key=exc.key,
                           source=self.source)

    def to_data(self) -> dict[str, Any]:
        """Plain data with every default filled in (written as ``config.yaml``)."""
        out: dict[str, Any] = {}
        for section in ("algorithm", "backbone", "exploration"):
            comp = getattr(self, section)
            if comp is not None:
                out[section] = {"name": comp.name, **to_data(comp.params)}
        for section in ("env", "train", "eval", "run"):
            out[section] = to_data(getattr(self, section))
        if self.init_from is not None:
            out["init_from"] = to_data(self.init_from)
        return out


_SECTIONS: dict[str, Any] = {
    "env": EnvConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "run": RunConfig,
    "init_from": InitFromConfig,
}
_COMPONENTS = ("algorithm", "backbone", "exploration")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read an experiment file (``safe_load`` semantics, see :mod:`rlkit.yaml_reader`); errors
    name the file and line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: experiment file not found. Pass the path of a YAML file, "
                          f"e.g. experiments/cartpole.yaml.")
    data = yaml_reader.read_file(p)
    if data is None:
        raise ConfigError(f"{p}: the file is empty (it holds no settings, only blank lines or "
                          f"comments); an experiment needs algorithm, env and train sections, "
                          f"e.g. experiments/cartpole.yaml.")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections "
                          f"(algorithm, env, train, ...), got {describe(data)}.")
    return data


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to a copy of ``data``.

    Errors start with ``--set KEY=VALUE:``, never with a file name.
    """
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        where = f"--set {key_text(item)}"
        if not sep or not key:
            raise ConfigError(f"{where}: expected KEY.PATH=VALUE, "
                              f"e.g. --set algorithm.optimizer.lr=1e-3")
        try:
            value = yaml_reader.parse(raw, where) if raw.strip() else None
        except yaml_reader.YAMLSyntaxError:
            value = raw  # not YAML: the text itself (e.g. a path with ': ')
        parts = key.split(".")
        if any(not part for part in parts):
            raise ConfigError(f"{where}: {quote(key)} is not a key path; write names "
                              f"separated by single dots, e.g. algorithm.optimizer.lr.")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part) if isinstance(node, dict) else None
            if child is None:
                child = {}
                node[part] = child
            if not isinstance(child, dict):
                raise ConfigError(f"{where}: {'.'.join(parts[: i + 1])} is not a mapping "
                                  f"(it holds {describe(child)}).")
            node = child
        node[parts[-1]] = value
    return data


def resolve(data: Mapping[str, Any], plugins: Plugins, source: str | None = None) -> Experiment:
    """Validate plain data against the schema and the plugins' hyperparameter dataclasses."""
    unknown = [k for k in data if k not in _SECTIONS and k not in _COMPONENTS]
    if unknown:
        valid = [*_COMPONENTS, *_SECTIONS]
        key = key_text(unknown[0])
        raise ConfigError(f"{key}: unknown section.{hint_for(key, valid)} Valid sections: "
                          f"{', '.join(valid)}.", key=key)
    for required in ("algorithm", "env", "train"):
        if data.get(required) is None:
            state = "is empty" if required in data else "is missing"
            raise ConfigError(f"{required}: required section {state}.", key=required)
    kwargs: dict[str, Any] = {"source": source}
    for name, cls in _SECTIONS.items():
        if name in data:
            kwargs[name] = from_data(cls, data[name], name)
    _check_env(kwargs["env"])
    # a component may name a backbone in its own parameters (lstm's encoder)
    with backbone_lookup({name: spec for name, (spec, _) in plugins.backbones.items()}):
        for name in _COMPONENTS:
            raw = data.get(name, {"name": "mlp"} if name == "backbone" else None)
            if raw is None:
                continue
            component = _component(name, raw, plugins)
            if component is not None:
                kwargs[name] = component
    return Experiment(**kwargs)


def _check_env(env: EnvConfig) -> None:
    """Checks across the keys of ``env``: ``changes`` in order, each setting something, and not
    with Ray actors; ``vectorization: ray`` needs Ray installed and at least one env per
    rollout worker."""
    _check_changes(env)
    if env.vectorization != "ray":
        return
    if importlib.util.find_spec("ray") is None:  # found, not imported: that takes seconds
        raise ConfigError("env.vectorization: 'ray' needs Ray, which is not installed; install "
                          "it with pip install -e \".[ray]\" (or pip install \"rlkit[ray]\"), "
                          "or use sync or async.", key="env.vectorization")
    if env.rollout_workers > env.num_envs:
        raise ConfigError(
            f"env.rollout_workers: {env.rollout_workers} Ray actors cannot share "
            f"env.num_envs: {env.num_envs} env{'s' if env.num_envs != 1 else ''} (each holds at "
            f"least one); lower env.rollout_workers to at most {env.num_envs}, or raise "
            f"env.num_envs.", key="env.rollout_workers")


def _check_changes(env: EnvConfig) -> None:
    """``env.changes``: each sets at least one name, their ``at_step`` increase strictly, and
    the envs are not in Ray actors (whose envs cannot be changed)."""
    for i, change in enumerate(env.changes):
        if not change.set:
            key = f"env.changes[{i}].set"
            raise ConfigError(f"{key}: nothing to set; name at least one parameter and its new "
                              f"value, e.g. set: {{gravity: 15.0}}, or remove this change.",
                              key=key)
        if i and change.at_step <= env.changes[i - 1].at_step:
            key = f"env.changes[{i}].at_step"
            raise ConfigError(
                f"{key}: {change.at_step} does not come after env.changes[{i - 1}].at_step: "
                f"{env.changes[i - 1].at_step}; list the changes in order of strictly "
                f"increasing at_step (merge two changes at the same step into one set).",
                key=key)
    if env.changes and env.vectorization == "ray":
        raise ConfigError("env.changes: envs in Ray actors (vectorization: ray) cannot be "
                          "changed during a run; use vectorization: sync or async.",
                          key="env.changes")


def default_backbone(plugins: Plugins) -> ComponentConfig | None:
    """The ``backbone:`` section an experiment without one gets (``mlp`` with its defaults)."""
    return _component("backbone", {"name": "mlp"}, plugins)


def _component(section: str, raw: Any, plugins: Plugins) -> ComponentConfig | None:
    """Validate one plugin-provided section: ``{name: <registered name>, **params}``."""
    tables: dict[str, tuple[dict[str, Any], Callable[[str], Any]]] = {
        "algorithm": (plugins.algorithms, plugins.algorithm),
        "backbone": (plugins.backbones, plugins.backbone),
        "exploration": (plugins.exploration, plugins.exploration_spec),
    }
    table, lookup = tables[section]
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{section}: expected a mapping with a 'name' key, got "
                          f"{describe(raw)}.", key=section)
    if "name" not in raw:
        misspelt = [k for k in raw if isinstance(k, str) and suggest(k, ["name"]) == "name"]
        if misspelt:
            raise ConfigError(f"{section}.{key_text(misspelt[0])}: unknown key. Did you mean "
                              f"'name'?", key=f"{section}.{key_text(misspelt[0])}")
        if section == "backbone":
            raw = {"name": "mlp", **raw}
        else:
            raise ConfigError(f"{section}.name: required key is missing; give one of: "
                              f"{', '.join(sorted(table)) or 'none installed'}.",
                              key=f"{section}.name")
    comp_name = raw["name"]
    if not isinstance(comp_name, str):
        raise ConfigError(f"{section}.name: expected a registered name (one of "
                          f"{', '.join(sorted(table)) or 'none installed'}), got "
                          f"{describe(comp_name)}.", key=f"{section}.name")
    if len(comp_name) > 200:
        raise ConfigError(f"{section}.name: {quote(comp_name)} is not a registered name; one "
                          f"of: {', '.join(sorted(table)) or 'none installed'}.",
                          key=f"{section}.name")
    try:
        spec = lookup(comp_name)
    except UnknownNameError as exc:
        raise ConfigError(str(exc), key=f"{section}.name") from None
    params = {k: v for k, v in raw.items() if k != "name"}
    return ComponentConfig(name=spec.name, params=from_data(spec.config, params, section))


def load_experiment(
    path: str | Path, plugins: Plugins, overrides: Sequence[str] = ()
) -> Experiment:
    """Read, override and validate an experiment file.

    Errors are prefixed with the file, or with ``--set KEY=VALUE`` where an override set the
    key that is wrong (``--set algorithm.lerning_rate=1e-3: algorithm.lerning_rate: unknown
    key. Did you mean algorithm.optimizer.lr?``).
    """
    data = apply_overrides(read_yaml(path), overrides)
    try:
        experiment = resolve(data, plugins, source=str(path))
    except ConfigError as exc:
        raise ConfigError(blame(exc, path, overrides), key=exc.key, source=str(path)) from None
    experiment.overrides = tuple(overrides)
    return experiment


def blame(exc: ConfigError, path: str | Path, overrides: Sequence[str]) -> str:
    """``exc``'s message prefixed with where the wrong value came from: the ``--set`` that set
    its key (or a key inside it), else the file (naming any ``--set`` in the same mapping)."""
    key = exc.key
    sets = [(item.partition("=")[0].strip(), item) for item in overrides]
    if key:
        for set_key, item in reversed(sets):
            if _within(key, set_key):
                return f"--set {key_text(item)}: {exc}"
        parent = key.rpartition(".")[0]
        related = [item for set_key, item in sets
                   if _within(set_key, key) or (parent and _within(set_key, parent))]
        if related:
            shown = ", ".join(f"--set {key_text(i)}" for i in related[-3:])
            return f"{path} (with {shown}): {exc}"
    return f"{path}: {exc}"


def _within(key: str, prefix: str) -> bool:
    """``key`` is ``prefix`` or a key path below it (``a.b.c``, ``a.b[0]`` within ``a.b``)."""
    return key == prefix or key.startswith((f"{prefix}.", f"{prefix}["))


def replace_params(component: ComponentConfig, **changes: Any) -> ComponentConfig:
    """A copy of ``component`` with some hyperparameters changed (re-validated by dataclass)."""
    return ComponentConfig(name=component.name,
                           params=dataclasses.replace(component.params, **changes))
