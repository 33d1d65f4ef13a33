"""What plugins register, and what lifecycle hooks receive: plain data, importable without torch.

Listing plugins (``rlkit plugins``, ``rlkit --help``) reads only these records, so it never
imports torch or an algorithm's module. A registration may therefore name its hyperparameter
dataclass and its ``build`` function lazily, as ``"module:attribute"`` strings, resolved the
first time they are used (validating a config, building the agent)::

    register("ppo", "rlkit.algorithms.ppo:PPOConfig", "rlkit.algorithms.ppo:build_ppo",
             description="Proximal Policy Optimization (clipped surrogate, GAE)")

Objects work as well (``register("ppo", PPOConfig, build_ppo)``); then the module that defines
them is imported when the plugin loads.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from rlkit.errors import PluginError

if TYPE_CHECKING:
    import torch

__all__ = [
    "AlgorithmSpec",
    "BackboneSpec",
    "ComponentSpec",
    "EvalResult",
    "ExplorationSpec",
    "RunInfo",
    "Driver",
    "Progress",
    "RunnerSpec",
    "resolve_reference",
]


def resolve_reference(reference: str, what: str) -> Any:
    """The object a ``"package.module:attribute"`` string names.

    :param what: the registration it belongs to, for the error message.
    :raises PluginError: naming the reference and what failed.
    """
    module_name, sep, attr = reference.partition(":")
    if not sep or not module_name or not attr:
        raise PluginError(f"{what}: {reference!r} is not a 'package.module:attribute' "
                          f"reference.")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise PluginError(f"{what}: cannot load {reference!r} ({type(exc).__name__}: {exc}). "
                          f"Reinstall the package that provides it.") from exc
    return obj


class ComponentSpec:
    """A registered component: a name, its hyperparameter dataclass and how to build it.

    ``config`` and ``build`` may be given as ``"module:attribute"`` strings; they are imported
    (and checked) on first access.

    :param name: the name YAML files use (``algorithm.name: ppo``).
    :param config: the hyperparameter dataclass, or a reference to it.
    :param build: the build function, or a reference to it.
    :param description: one line for ``rlkit plugins`` (default: the first line of the
        config's docstring, which imports it).
    :param origin: who registered it, for messages.
    """

    kind = "component"

    def __init__(self, *, name: str, config: type | str, build: Callable[..., Any] | str,
                 description: str = "", origin: str = "") -> None:
        self.name = name
        self._config = config
        self._build = build
        self._description = description
        self.origin = origin

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, config={self._config!r})"

    def _what(self) -> str:
        where = f" registered by {self.origin}" if self.origin else ""
        return f"{self.kind} {self.name!r}{where}"

    @cached_property
    def config(self) -> type:
        """The hyperparameter dataclass (imported on first access when given by reference)."""
        config = self._config
        if isinstance(config, str):
            config = resolve_reference(config, self._what())
        if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
            raise PluginError(f"{self._what()}: config must be a dataclass type, got "
                              f"{config!r}.")
        return config

    @cached_property
    def build(self) -> Callable[..., Any]:
        """The build function (imported on first access when given by reference)."""
        build = self._build
        if isinstance(build, str):
            build = resolve_reference(build, self._what())
        if not callable(build):
            raise PluginError(f"{self._what()}: build must be callable, got {build!r}.")
        return build

    @property
    def description(self) -> str:
        if not self._description:
            self._description = (_first_line(self.config.__doc__)
                                 or _first_line(getattr(self.build, "__doc__", None)))
        return self._description


class AlgorithmSpec(ComponentSpec):
    """A registered algorithm: ``build(params, ctx: BuildContext) -> Algorithm``."""

    kind = "algorithm"


class BackboneSpec(ComponentSpec):
    """A registered backbone: ``build(params, observation_space) -> nn.Module``."""

    kind = "backbone"


class ExplorationSpec(ComponentSpec):
    """A registered exploration controller: ``build(params, total_steps) -> Exploration``."""

    kind = "exploration strategy"


@dataclass(frozen=True, kw_only=True)
class RunnerSpec:
    """A loop for algorithms that must own it (e.g. asynchronous workers).

    ``run(trainer, max_steps)`` replaces :meth:`rlkit.loop.Trainer.run` for the algorithms
    listed in ``algorithms`` and returns the run summary. It may set things up (worker
    processes, shared parameters) and then call ``trainer.default_loop(max_steps)``, which
    keeps evaluation, checkpoints, logging and hooks as they are.
    """

    name: str
    algorithms: tuple[str, ...]
    run: Callable[[Any, int | None], dict[str, Any]]
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class Progress:
    """What the workers of a driven loop (:meth:`rlkit.loop.Trainer.driven_loop`) did since
    the previous report.

    :param env_steps: env steps of the whole run so far, all workers together.
    :param returns: the returns of the episodes that finished since the previous report.
    :param length_sum: the summed lengths of those episodes.
    :param metrics: the latest training metrics (``train/...``), empty when nobody learned.
    :param messages: events to show the user (a worker that failed and was restarted, ...).
    :param held: every worker holds: it has stopped at a step boundary at or past the step
        asked for (or because a stop was asked for) and waits; the run's state is consistent.
    """

    env_steps: int
    returns: tuple[float, ...] = ()
    length_sum: int = 0
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)
    messages: tuple[str, ...] = ()
    held: bool = False


class Driver(Protocol):
    """Workers that produce a run's env steps outside the trainer's process or thread (A3C's
    worker processes, Ray actors), driven by :meth:`rlkit.loop.Trainer.driven_loop`, which
    keeps logging, evaluation, checkpoints, early stop and signals as for every run."""

    def start(self) -> None:
        """Start the workers (they hold until the first :meth:`run_until`)."""

    def run_until(self, step: int, stop: Callable[[], bool]) -> Iterator[Progress]:
        """Let the workers run until the run has done ``step`` env steps, then hold them.

        Yields a :class:`Progress` now and then (at least every second while workers run),
        the last one with ``held=True``. When ``stop()`` turns true, the workers hold at their
        next step boundary instead. A worker that fails is restarted or ends the run with an
        exception naming it (the driver's policy); the waits are bounded.
        """
        ...

    def close(self) -> None:
        """Stop every worker and release what they hold (bounded, idempotent)."""


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    """What lifecycle hooks learn about the run they observe.

    :param run_dir: the run directory (config, manifest, events, checkpoints, summary).
    :param config: the resolved configuration as plain data (as written to ``config.yaml``).
    :param algorithm: the algorithm's registered name.
    :param seed: the run's seed.
    :param device: the device the agent lives on.
    """

    run_dir: Any
    config: Mapping[str, Any]
    algorithm: str
    seed: int
    device: torch.device


@dataclass(frozen=True, kw_only=True)
class EvalResult:
    """The outcome of one deterministic evaluation.

    :param returns: the undiscounted return of every evaluated episode.
    :param lengths: the length of every evaluated episode.
    """

    returns: tuple[float, ...]
    lengths: tuple[int, ...]

    @property
    def mean(self) -> float:
        return float(sum(self.returns) / max(len(self.returns), 1))

    @property
    def std(self) -> float:
        n = len(self.returns)
        if n == 0:
            return 0.0
        m = self.mean
        return float((sum((r - m) ** 2 for r in self.returns) / n) ** 0.5)


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0].strip() if doc and doc.strip() else ""
