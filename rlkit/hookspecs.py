"""The plugin contract: every hook rlkit calls, with its exact signature.

A plugin is a module (or object) with functions decorated by :data:`hookimpl` whose names match
the specifications below, exposed through an entry point in the ``rlkit`` group::

    [project.entry-points.rlkit]
    my_algo = "my_package.plugin"

Registration hooks run once per plugin session and receive a ``register`` callback.
Lifecycle hooks run once per run, update iteration, evaluation or checkpoint -- never per
environment step. A hook implementation may accept any subset of a spec's arguments.
``docs/plugins.md`` documents each hook; a test fails when one is missing there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pluggy

from rlkit.specs import EvalResult, RunInfo

PROJECT = "rlkit"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- registration ------------------------------------------------------------------------


@hookspec
def register_algorithms(register: Callable[..., None]) -> None:
    """Register algorithms.

    Call ``register(name, config, build, *, description="")`` once per algorithm:
    ``config`` is a dataclass of hyperparameters (validated against the YAML's ``algorithm:``
    section) and ``build(params, ctx: BuildContext) -> Algorithm`` constructs the agent. Either
    may be a ``"package.module:attribute"`` string, imported on first use, so that listing
    plugins needs no torch (see :mod:`rlkit.specs`); the same holds for backbones and
    exploration controllers.
    """


@hookspec
def register_backbones(register: Callable[..., None]) -> None:
    """Register policy backbones (feature extractors).

    Call ``register(name, config, build, *, description="")``: ``build(params,
    observation_space) -> torch.nn.Module`` returns a module with an ``output_dim`` attribute.
    """


@hookspec
def register_envs(register: Callable[..., None]) -> None:
    """Register environments as gymnasium ids.

    Call ``register(env_id, *, entry_point=None, vector_entry_point=None, description="",
    **kwargs)``; the arguments are those of :func:`gymnasium.register`, so that
    ``gymnasium.make``/``make_vec`` and rlkit's YAML ``env.id`` find the environment.
    """


@hookspec
def register_wrappers(register: Callable[..., None]) -> None:
    """Vouch for gymnasium wrappers that runs may name in ``env.wrappers``.

    Call ``register(wrapper, *, description="")``: ``wrapper`` is a subclass of
    ``gymnasium.Wrapper`` or its ``"package.module:Class"`` reference (imported only when an env
    uses it). A run or checkpoint whose stored config names a registered wrapper loads without
    ``--trust-config``; YAML names it ``package.module:Class`` or ``package.module.Class``.
    """


@hookspec
def register_exploration(register: Callable[..., None]) -> None:
    """Register exploration controllers (schedules, adaptive controllers).

    Call ``register(name, config, build, *, description="")``: ``build(params, total_steps)``
    returns an object following :class:`rlkit.interfaces.Exploration`.
    """


@hookspec
def register_runners(register: Callable[..., None]) -> None:
    """Register loops for algorithms that must own their loop.

    Call ``register(name, run, *, algorithms, description="")``: ``run(trainer, max_steps)``
    is used instead of the default loop when the configured algorithm is in ``algorithms``
    (see :class:`rlkit.interfaces.RunnerSpec`).
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add sub-commands to the ``rlkit`` command line.

    ``cli.add(name, *, help, configure, run)``: ``configure(parser)`` adds arguments to an
    :class:`argparse.ArgumentParser`, ``run(args) -> int`` executes the command.
    """


# --- lifecycle ---------------------------------------------------------------------------


@hookspec
def run_started(run: RunInfo) -> None:
    """A training run starts (after the run directory is written, before the first step)."""


@hookspec
def update_finished(run: RunInfo, step: int, metrics: Mapping[str, float]) -> None:
    """The agent learned: ``metrics`` is what ``Algorithm.update`` returned at env step ``step``."""


@hookspec
def evaluation_finished(run: RunInfo, step: int, result: EvalResult) -> None:
    """A periodic or final evaluation finished at env step ``step``."""


@hookspec
def checkpoint_saved(run: RunInfo, path: Path, step: int) -> None:
    """A checkpoint was written atomically to ``path`` at env step ``step``."""


@hookspec
def run_finished(run: RunInfo, summary: Mapping[str, Any]) -> None:
    """A run ended: target reached, budget spent, interrupted, crashed or stopped on a
    non-finite value (``summary["status"]``); ``summary`` is summary.json."""
