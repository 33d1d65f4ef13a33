"""The training loop: one run of an experiment, from an empty run directory (or a checkpoint)
to ``summary.json``.

Levels of the loop, outermost first:

* **run** -- build env, agent and logger from the validated :class:`~rlkit.config.Experiment`,
  write ``config.yaml`` and ``manifest.json``, fire ``run_started``; at the end a final
  evaluation, a final checkpoint, ``summary.json`` and ``run_finished``. A run that an error
  ends writes them too (status ``crashed``): a checkpoint of its last consistent state (the
  state between two steps), ``summary.json`` with the error in one line and ``crash.log``.
* **step** -- ``act -> env.step -> observe -> update``, all on the agent's device. The
  algorithm decides inside ``update`` whether it is time to learn (PPO when its rollout is full,
  DQN every ``train_freq`` steps, tabular methods every step). The changes of ``env.changes``
  are given to the training and evaluation envs between two steps, once each is due (and
  again to the fresh envs of a resumed run).
* **periodic work** -- logging (every ``train.log_every`` steps), evaluation (``eval.every``)
  with early stop at ``eval.target_return``, checkpoints (``train.checkpoint_every``), and the
  coarse lifecycle hooks (each plugin's failure kept to it, :mod:`rlkit.lifecycle`). None of it
  runs per step.

The loop never imports an algorithm: it gets one from the plugin session by name.
"""

from __future__ import annotations

import contextlib
import json
import platform
import re
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from rich.markup import escape

from rlkit import PLUGIN_API, seeding
from rlkit import checkpoint as ckpt
from rlkit.buffers import allocation_failure
from rlkit.config import Experiment, default_backbone, resolve
from rlkit.environments import (
    EnvOptions,
    TorchVectorEnv,
    make_env,
    refuse_untrusted,
    untrusted_code,
)
from rlkit.errors import CheckpointError, RunError
from rlkit.evaluation import evaluate
from rlkit.failures import (
    DiskFullError,
    NonFiniteState,
    describe,
    disk_full,
    disk_full_message,
    non_finite_entries,
    tensor_bytes,
)
from rlkit.interfaces import (
    Algorithm,
    BuildContext,
    Driver,
    EnvSpec,
    EvalResult,
    Exploration,
    NanCheck,
    NonFiniteError,
    RunInfo,
    Transition,
    begin_episodes,
)
from rlkit.lifecycle import LifecycleHooks
from rlkit.logger import RunLogger, check_scalars_csv
from rlkit.metrics import EpisodeStats
from rlkit.plugins import Plugins, not_installed_message, recorded_providers
from rlkit.snapshot import SnapshotUnsupported
from rlkit.spaces import space_to_data
from rlkit.transfer import Rollback, carry_normalizers, freeze, transfer
from rlkit.validation import ConfigError, in_context

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Trainer", "build_agent", "env_options", "load_agent", "resolve_device"]


def resolve_device(name: str, *, what: str = "train.device",
                   instead: str = "--device cpu (or auto)") -> torch.device:
    """``auto`` -> cuda if available, else cpu; errors say what is available.

    :param what: how errors name the setting; ``instead``: what they suggest without CUDA.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RunError(f"{what}: {name!r} is not a device; use auto, cpu, cuda or "
                       f"cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunError(f"{what}: {name!r} requested but CUDA is not available on this "
                       f"machine; use {instead}.")
    return device


def env_options(experiment: Experiment, *, for_eval: bool = False) -> EnvOptions:
    env = experiment.env
    vectorization = env.vectorization
    if for_eval and vectorization in ("async", "ray"):
        vectorization = "sync"
    return EnvOptions(
        id=env.id,
        num_envs=env.num_envs,
        vectorization=vectorization,
        autoreset_mode=env.autoreset_mode,
        kwargs=env.kwargs,
        wrappers=tuple((w.name, w.kwargs) for w in env.wrappers),
        imports=tuple(env.imports),
        step_timeout=env.step_timeout,
        rollout_workers=env.rollout_workers,
        rollout_worker_cpus=env.rollout_worker_cpus,
    )


def build_agent(
    experiment: Experiment,
    plugins: Plugins,
    env_spec: EnvSpec,
    device: torch.device,
    nan_check: NanCheck | None = None,
    backbones: list[torch.nn.Module] | None = None,
) -> tuple[Algorithm, Exploration | None]:
    """Build the configured algorithm (and exploration controller) for ``env_spec``.

    :param backbones: when given, every backbone module built for the agent is appended (what
        fine-tuning transfers or freezes).
    """
    train = experiment.train
    backbone_spec = plugins.backbone(experiment.backbone.name)
    backbone_params = experiment.backbone.params
    algorithm_name = experiment.algorithm.name
    is_recurrent_spec = bool(getattr(backbone_spec.config, "recurrent", False))
    accepted = False  # whether the algorithm asked for a backbone it can run recurrently
    used = False  # whether it asked for a backbone at all

    def refuse_recurrent() -> ConfigError:
        return experiment.locate(ConfigError(
            f"backbone.name: {backbone_spec.name!r} is a recurrent backbone, and algorithm "
            f"{algorithm_name!r} cannot use one (it keeps no per-env state). Use a "
            f"feed-forward backbone (mlp, cnn), or an algorithm that takes recurrent backbones "
            f"(ppo, dqn, ddpg and td3 among the built-ins).", key="backbone.name"),
            key="backbone.name")

    def backbone(observation_space: Any, *, recurrent: bool = False) -> torch.nn.Module:
        """The configured backbone; ``recurrent=True``: the caller can run a recurrent one."""
        nonlocal accepted, used
        used = True
        if is_recurrent_spec and not recurrent:
            raise refuse_recurrent()
        accepted = accepted or recurrent
        try:
            module = backbone_spec.build(backbone_params, observation_space)
            if backbones is not None:
                backbones.append(module)
            return module
        except ConfigError as exc:
            raise in_context(exc, key="backbone.name") from None

    exploration: Exploration | None = None
    if experiment.exploration is not None:
        exp_spec = plugins.exploration_spec(experiment.exploration.name)
        exploration = exp_spec.build(experiment.exploration.params, train.total_steps)
    ctx = BuildContext(
        env=env_spec,
        device=device,
        seed=train.seed,
        total_steps=train.total_steps,
        backbone=backbone,
        exploration=exploration,
        nan_check=nan_check or NanCheck(train.nan_check),
    )
    spec = plugins.algorithm(experiment.algorithm.name)
    try:
        agent = spec.build(experiment.algorithm.params, ctx)
    except ConfigError as exc:  # e.g. dqn on a Box action space: name the file and the key
        raise experiment.locate(exc, key="algorithm.name", installed=plugins.algorithms) from None
    except (MemoryError, RuntimeError) as exc:  # networks too large to allocate
        asked = allocation_failure(exc)
        if asked is None:
            raise
        raise experiment.locate(ConfigError(
            f"algorithm: building {spec.name!r} with backbone {experiment.backbone.name!r} ran "
            f"out of memory{f' (it asked for {asked})' if asked else ''}; lower the network "
            f"sizes (backbone.hidden_sizes, channels) or the buffer sizes.", key="algorithm"),
            key="algorithm") from None
    if not isinstance(agent, Algorithm):
        raise RunError(f"algorithm {spec.name!r}: build() returned {type(agent).__name__}, which "
                       f"lacks act/observe/update/state_dict/load_state_dict.")
    if is_recurrent_spec and not accepted:  # built without asking for one (tabular methods)
        raise refuse_recurrent()
    if not used and experiment.backbone != default_backbone(plugins):
        # tabular methods, and algorithms that build their networks themselves (rlkit-sb3)
        raise experiment.locate(ConfigError(
            f"backbone: algorithm {algorithm_name!r} does not use a backbone (it has no "
            f"network, or builds its own from its algorithm: settings; see `rlkit plugins "
            f"{algorithm_name}`), so this backbone section ({experiment.backbone.name!r}) "
            f"would be ignored; remove it.", key="backbone"), key="backbone")
    return agent, exploration


def load_agent(
    path: str | Path,
    plugins: Plugins | None = None,
    *,
    device: str = "cpu",
    trust_config: bool = False,
) -> tuple[Algorithm, Experiment]:
    """The trained agent in a run directory or checkpoint file, ready to ``act``.

    For programs that own their loop (a simulator asking for actions)::

        agent, experiment = load_agent("runs/my-run")
        actions = agent.act(torch.as_tensor(obs), explore=False)

    :param path: a run directory (its newest checkpoint that loads: ``checkpoints/latest.pt``,
        else the newest ``step_*.pt``, with a warning) or a checkpoint file (that file only).
    :param plugins: the plugin session (default: :meth:`Plugins.load`).
    :param device: where the agent's tensors live (``auto``, ``cpu``, ``cuda``...).
    :param trust_config: build the env even if the stored config imports modules or uses
        wrappers that neither gymnasium nor a plugin provides (only for runs you trust).
    :returns: the agent and the experiment it was trained with (its ``source`` is the
        checkpoint file used).
    :raises UntrustedConfigError: naming them, without ``trust_config``.
    """
    plugins = plugins if plugins is not None else Plugins.load()
    file, state = ckpt.load_run(path)  # the newest checkpoint that loads, verified
    experiment = _stored_experiment(state["config"], plugins, file)
    if not trust_config:
        refuse_untrusted(env_options(experiment), plugins.wrappers, source=str(file))
    env = make_env(env_options(experiment, for_eval=True), num_envs=1)
    spec = EnvSpec(observation_space=env.single_observation_space,
                   action_space=env.single_action_space, num_envs=experiment.env.num_envs)
    env.close()
    agent, _ = build_agent(experiment, plugins, spec, resolve_device(device))
    ckpt.restore_agent(agent, state["agent"], file, experiment.algorithm.name)
    return agent, experiment


def _stored_experiment(data: Any, plugins: Plugins, path: Path) -> Experiment:
    """The experiment a checkpoint's stored config describes; its errors name the checkpoint
    (and, through ``source``, so do errors raised while building from it)."""
    try:
        return resolve(data, plugins, source=str(path))
    except ConfigError as exc:
        missing = _missing_plugin(exc, data, plugins, path)
        raise ConfigError(f"{path}: in the config stored in this checkpoint: {missing or exc}",
                          key=exc.key, source=str(path)) from None


def _missing_plugin(exc: ConfigError, data: Any, plugins: Plugins, path: Path) -> str | None:
    """``exc`` reworded where the stored config names an algorithm, backbone or exploration
    strategy this session lacks and the run's ``manifest.json`` says which plugin provided it
    (what to install); None otherwise."""
    section = (exc.key or "").removesuffix(".name")
    tables: dict[str, Mapping[str, Any]] = {
        "algorithm": plugins.algorithms, "backbone": plugins.backbones,
        "exploration": plugins.exploration}
    if section not in tables or exc.key != f"{section}.name" or not isinstance(data, dict):
        return None
    raw = data.get(section)
    name = raw.get("name") if isinstance(raw, dict) else raw
    if not isinstance(name, str) or name in tables[section]:
        return None
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    providers = recorded_providers(manifest, section, name, plugins.providers)
    if not providers:
        return None
    return f"{exc.key}: {not_installed_message(section, name, providers)}"


class Trainer:
    """Runs one experiment. ``Trainer(experiment, plugins).run()`` returns the summary.

    :param experiment: the validated experiment.
    :param plugins: the plugin session that provides the algorithm, backbone and hooks.
    :param run_dir: the run directory (default: ``run.dir/run.name`` or a generated name).
    :param progress: show progress: a bar on a terminal, a line now and then elsewhere.
    :param console: where progress goes (default: stderr).

    A run that ends with an exception (an env error, a plugin hook under
    ``train.plugin_errors: stop``, Ctrl-C twice, a full disk) still writes ``summary.json``
    (status ``crashed``) and, where the agent's state is consistent, a checkpoint; then the
    exception propagates, and :attr:`error` says in one line what happened and what was saved.
    """

    def __init__(
        self,
        experiment: Experiment,
        plugins: Plugins,
        *,
        run_dir: Path | None = None,
        progress: bool = True,
        console: Console | None = None,
        _resuming: bool = False,
    ) -> None:
        self.experiment = experiment
        self.plugins = plugins
        self.device = resolve_device(experiment.train.device)
        self.nan_check = NanCheck(experiment.train.nan_check)
        train = experiment.train
        if train.torch_threads is not None:
            torch.set_num_threads(train.torch_threads)
        elif self.device.type == "cpu":
            # Small networks on the CPU: one intra-op thread is fastest (thread hand-off costs
            # more than the work it splits); see benchmarks/RESULTS.md.
            torch.set_num_threads(1)
        seeding.seed_everything(train.seed)
        self._refuse_changes_with_runner()
        self.env: TorchVectorEnv = make_env(env_options(experiment), device=self.device)
        self._check_changes()
        spec = EnvSpec(observation_space=self.env.single_observation_space,
                       action_space=self.env.single_action_space, num_envs=self.env.num_envs)
        self.backbones: list[torch.nn.Module] = []
        """The agent's backbone modules (what fine-tuning transfers or freezes)."""
        self.agent: Algorithm
        """The agent being trained (public): between two ``run(max_steps=...)`` slices a
        program may act with it (``explore=False`` for the trained policy, inside
        ``rlkit.separate_state(trainer.agent, n)`` for envs of its own) and the next slice goes
        on learning from where it was."""
        self.agent, self.exploration = build_agent(experiment, plugins, spec, self.device,
                                                   self.nan_check, self.backbones)
        # built now, so that an evaluation env count that cannot be built is refused before
        # training (naming eval.num_envs), not at the first evaluation
        self._eval_env: TorchVectorEnv = make_env(
            env_options(experiment, for_eval=True), device=self.device,
            num_envs=experiment.eval.num_envs or min(experiment.eval.episodes, 32))
        self.stats = EpisodeStats(self.env.num_envs, self.device)
        self._spaces = _recorded_spaces(spec)
        """The spaces the agent was built for, kept in every checkpoint: ``load_policy`` and
        ``Agent.load`` rebuild the agent from them without building the env."""
        rollback = experiment.eval.rollback
        self.rollback: Rollback | None = None if rollback is None else Rollback(
            drop=rollback.drop, min_drop=rollback.min_drop, patience=rollback.patience)
        self.transferred: list[str] = []
        """What fine-tuning (``init_from``) loaded, one line per part (empty otherwise)."""
        self._frozen_until = 0  # env step until which the transferred backbones stay frozen
        if experiment.init_from is not None and not _resuming:
            self._init_from(experiment)
        self.run_dir = Path(run_dir) if run_dir is not None else _new_run_dir(experiment)
        self.progress = progress
        self.console = console
        self.hooks = LifecycleHooks(plugins, train.plugin_errors)
        self.env_steps = 0
        self.evaluations = 0
        self.wall_time_s = 0.0
        self.summary_extra: dict[str, Any] = {}
        """More entries for ``summary.json``, from a loop body (:meth:`custom_loop`)."""
        self.eval_time_s = 0.0
        """Of ``wall_time_s``, the time spent in evaluations (training time is the rest)."""
        self.last_eval: EvalResult | None = None
        self.last_eval_step = -1
        self.best_eval: float | None = None
        self.target_reached = False
        self.obs: torch.Tensor | None = None
        self._changes_applied = 0
        """How many of ``env.changes`` the envs have been given (they apply in order)."""
        self._created = time.perf_counter()  # set-up time counts towards wall time
        self._segment_start = self._created
        self.status = "running"
        self.error: str | None = None
        """Why the run crashed, in one line (None unless it did)."""
        self.checkpoint_step: int | None = None
        """The env step of ``checkpoints/latest.pt`` (None before the first checkpoint)."""
        self._stop_signal: str | None = None
        self._mid_step = False  # True from act() until update() returns: the state may be half-new
        self._driver: Driver | None = None  # the driven loop's, while it runs
        self._logger: RunLogger | None = None  # the running loop's, flushed at each checkpoint
        self.info = RunInfo(run_dir=self.run_dir, config=experiment.to_data(),
                            algorithm=experiment.algorithm.name, seed=train.seed,
                            device=self.device)
        if not _resuming:
            self._write_run_dir()

    # --- fine-tuning ---------------------------------------------------------------------

    def _init_from(self, experiment: Experiment) -> None:
        """Load the trained agent ``init_from`` names into the fresh agent (see
        :mod:`rlkit.transfer`); freeze the backbones if asked."""
        init = experiment.init_from
        assert init is not None
        if init.freeze_backbone_steps and experiment.algorithm.name == "a3c":
            raise experiment.locate(ConfigError(
                "init_from.freeze_backbone_steps: a3c's workers cannot freeze layers; use 0 "
                "(or fine-tune with a2c).", key="init_from.freeze_backbone_steps"),
                key="init_from.freeze_backbone_steps")
        try:
            file, state = ckpt.load_run(init.path)
        except CheckpointError as exc:
            raise experiment.locate(ConfigError(f"init_from.path: {exc}", key="init_from.path"),
                                    key="init_from.path") from None
        try:
            self.transferred = transfer(self.agent, state["agent"], mode=init.transfer,
                                        optimizer=init.optimizer, buffer=init.buffer,
                                        backbones=self.backbones, source=str(file))
        except ConfigError as exc:
            raise experiment.locate(exc, key=exc.key or "init_from") from None
        if init.normalizer == "keep":
            count = carry_normalizers(self.env, state.get("env"))
            if count:
                carry_normalizers(self._eval_env, state.get("env"))
                self.transferred.append(f"normalisation statistics: {count} kept")
        if init.freeze_backbone_steps:
            if not self.backbones:
                raise experiment.locate(ConfigError(
                    "init_from.freeze_backbone_steps: this algorithm has no backbone to "
                    "freeze; use 0.", key="init_from.freeze_backbone_steps"),
                    key="init_from.freeze_backbone_steps")
            self._frozen_until = init.freeze_backbone_steps
            freeze(self.backbones, True)
            self.transferred.append(f"backbones frozen for the first "
                                    f"{init.freeze_backbone_steps:,} env steps")
        self.transferred.insert(0, f"fine-tuning from {file} (transfer: {init.transfer})")

    def _unfreeze_if_due(self, logger: RunLogger) -> None:
        if self._frozen_until and self.env_steps >= self._frozen_until:
            freeze(self.backbones, False)
            self._frozen_until = 0
            logger.message(f"backbones unfrozen at env step {self.env_steps:,}")

    # --- resume --------------------------------------------------------------------------

    @classmethod
    def resume(cls, run_dir: str | Path, plugins: Plugins, *, progress: bool = True,
               device: str | None = None, trust_config: bool = False) -> Trainer:
        """Continue the run in ``run_dir`` from its latest checkpoint, exactly.

        :param run_dir: a run directory (its newest checkpoint that loads, with a warning for
            each damaged one passed over) or a checkpoint file (that file, or an error).
        :param trust_config: build the env even if the stored config imports modules or uses
            wrappers that neither gymnasium nor a plugin provides (only for runs you trust);
            without it such a config raises :class:`~rlkit.environments.UntrustedConfigError`.
        :raises CheckpointError: naming the file and what is wrong, when no checkpoint loads,
            is complete, or fits the agent its config builds.
        """
        run_dir = Path(run_dir)
        # the newest checkpoint that loads (verified, complete); stale temporary files removed
        path, state = ckpt.load_run(run_dir, resume=True)
        if path.parent.name == "checkpoints":
            run_dir = path.parent.parent
        check_scalars_csv(run_dir / RunLogger.CSV_NAME)  # before anything is built
        data = state["config"]
        if device is not None and isinstance(data.get("train"), dict):
            data["train"]["device"] = device
        experiment = _stored_experiment(data, plugins, path)
        if not trust_config:
            refuse_untrusted(env_options(experiment), plugins.wrappers, source=str(path))
        try:
            trainer = cls(experiment, plugins, run_dir=run_dir, progress=progress,
                          _resuming=True)
        except ConfigError as exc:  # building from the stored config: name the checkpoint
            raise experiment.locate(exc, key=exc.key or "env") from None
        trainer._load(state, path)
        return trainer

    def _load(self, state: dict[str, Any], path: Path) -> None:
        self._refuse_finished(state, path)
        # tensors arrive on the CPU; load_run has checked the fields and their types
        ckpt.restore_agent(self.agent, state["agent"], path, self.experiment.algorithm.name)
        t = state["trainer"]
        self.env_steps = int(t["env_steps"])
        self.evaluations = int(t["evaluations"])
        self.wall_time_s = float(t["wall_time_s"])
        self.eval_time_s = float(t.get("eval_time_s", 0.0))  # absent before rlkit recorded it
        self.last_eval_step = int(t["last_eval_step"])
        self.best_eval = t["best_eval"]
        self.target_reached = bool(t.get("target_reached",
                                         state.get("status") == "target_reached"))
        self.checkpoint_step = self.env_steps
        if t["last_eval"] is not None:
            self.last_eval = EvalResult(returns=tuple(t["last_eval"][0]),
                                        lengths=tuple(t["last_eval"][1]))
        with ckpt.restoring(path, "trainer.episode_stats"):
            self.stats.load_state_dict(t["episode_stats"])
        if self.rollback is not None and t.get("rollback") is not None:
            with ckpt.restoring(path, "trainer.rollback"):
                self.rollback.load_state_dict(t["rollback"])
        self._frozen_until = int(t.get("frozen_until", 0))
        if self._frozen_until > self.env_steps:
            freeze(self.backbones, True)
        if state["obs"] is None:
            pass  # a driven run (A3C): its envs live in its workers, whose state the agent holds
        elif state["env"] is not None:
            with ckpt.restoring(path, "env"):
                self.env.load_state_dict(state["env"])
                self.obs = state["obs"].to(self.device)
        else:
            why = ("was written after a crash in the middle of a step, when no consistent "
                   "checkpoint existed" if state.get("exact", True) is False else
                   "holds no environment state (async envs)")
            warnings.warn(f"{path} {why}; the environments restart from a reset, so the result "
                          f"will not be bit-identical to an uninterrupted run.", RuntimeWarning,
                          stacklevel=2)
            self.obs = self.env.reset(seed=self.experiment.train.seed + self.env_steps)
            begin_episodes(self.agent)  # the envs restart: so do their episodes' memories
        # whatever the restored env state holds, the envs run with the changes due by now
        self._apply_changes(None)
        with ckpt.restoring(path, "rng"):
            seeding.set_rng_state(state["rng"])

    def _refuse_finished(self, state: dict[str, Any], path: Path) -> None:
        """A run whose budget is spent has nothing to resume; the message says what can be done
        with it instead. A run that stopped early at its
        target has budget left and continues."""
        status = state.get("status")
        trainer = state.get("trainer")
        steps = trainer.get("env_steps") if isinstance(trainer, dict) else None
        total = self.experiment.train.total_steps
        run = self.run_dir
        if status not in ("finished", "target_reached") or not isinstance(steps, int) or (
                steps < total):
            return
        trust = (" --trust-config" if untrusted_code(env_options(self.experiment),
                                                     self.plugins.wrappers) else "")
        raise RunError(
            f"{path}: this run already finished: it spent its whole budget of {total:,} env "
            f"steps (train.total_steps). To train longer, start a new run from its config with "
            f"a larger budget (rlkit train {run / 'config.yaml'} --set "
            f"train.total_steps={2 * total}); to measure this one: rlkit eval {run}{trust}.")

    @property
    def stop_requested(self) -> bool:
        """Ctrl-C, SIGTERM or :meth:`request_stop` asked the running loop to stop."""
        return self._stop_signal is not None

    @contextlib.contextmanager
    def stepping(self) -> Iterator[None]:
        """A block that changes the agent's and the envs' state together (act, step, observe,
        update). A crash inside it leaves them out of step, so the crash checkpoint leaves the
        envs out and a resume resets them."""
        self._mid_step = True
        yield
        self._mid_step = False

    def request_stop(self, reason: str = "requested") -> None:
        """Stop the running loop at its next step boundary, as Ctrl-C does: the current step
        finishes, a checkpoint and ``summary.json`` (status ``interrupted``) are written, and
        :meth:`run` returns. For hooks and programs that decide a run should end early (a
        pruned hyperparameter trial)."""
        self._stop_signal = reason

    # --- the loop ------------------------------------------------------------------------

    def run(self, max_steps: int | None = None) -> dict[str, Any]:
        """Train until the budget, the target return or an interrupt; return the summary.

        A runner registered for the algorithm (``register_runners``) takes over here; otherwise
        :meth:`default_loop` runs.

        :param max_steps: stop (with a checkpoint, status ``paused``) once this many env steps
            are done in total -- for embedding programs that train in slices.
        """
        runner = self.plugins.runner_for(self.experiment.algorithm.name)
        if runner is not None:
            return runner.run(self, max_steps)
        return self.default_loop(max_steps)

    def default_loop(self, max_steps: int | None = None) -> dict[str, Any]:
        """The standard act / step / observe / update loop with evaluation and checkpoints.

        A run that reached its target before and is continued (``--resume``, or ``run()``
        again) trains on to its budget: the target no longer stops it.
        """
        return self.custom_loop(self._step_loop, max_steps)

    def driven_loop(self, driver: Driver, max_steps: int | None = None) -> dict[str, Any]:
        """The loop for a run whose env steps happen elsewhere -- worker processes or Ray
        actors that learn on their own (A3C) -- with the same logging, evaluation, early stop,
        checkpoints, signals and summary as :meth:`default_loop`.

        The workers run until the next evaluation or checkpoint is due, then hold
        (:meth:`Driver.run_until <rlkit.specs.Driver.run_until>`) while the trainer evaluates
        and checkpoints ``self.agent`` -- which the driver keeps up to date -- and run on. A
        stop (Ctrl-C, SIGTERM, the budget, the target) holds them, checkpoints, and closes the
        driver; so does an error, before the crash checkpoint is written.
        """
        return self.custom_loop(lambda logger, limit, stop_at_target: self._driven(
            driver, logger, limit, stop_at_target), max_steps)

    def custom_loop(self, body: Callable[[RunLogger, int, bool], None],
                    max_steps: int | None = None) -> dict[str, Any]:
        """Run ``body(logger, limit, stop_at_target)`` as this run's loop, with what every loop
        shares: the logger and progress bar, Ctrl-C and SIGTERM, lifecycle hooks, the final
        evaluation and checkpoint, ``summary.json``, and the crash handling.

        ``body`` trains until ``limit`` env steps, :attr:`stop_requested`, or -- where
        ``stop_at_target`` -- the target return (:attr:`target_reached` after
        :meth:`evaluate`). It keeps :attr:`env_steps` and :attr:`obs` current and wraps each
        step that changes the agent and the envs in :meth:`stepping`, so that a crash inside
        one is checkpointed without the envs' half-new state. :meth:`default_loop` and
        :meth:`driven_loop` are such bodies; so is distillation (:mod:`rlkit.deploy.distill`).
        Anything in :attr:`summary_extra` is added to the summary.
        """
        train = self.experiment.train
        resumed = self.env_steps > 0 or self.obs is not None
        self.error, self.hooks.stopping = None, False
        logger: RunLogger | None = None
        self._mid_step = False
        try:
            logger = RunLogger(self.run_dir, train.total_steps, progress=self.progress,
                               purge_step=self.env_steps if resumed else None,
                               console=self.console)
            self._logger = logger  # _checkpoint flushes it
            with self._signals():
                if not resumed:
                    logger.text("config", "```\n" + yaml.safe_dump(self.info.config,
                                                                   sort_keys=False) + "\n```")
                self.hooks.fire("run_started", run=self.info)
                if not resumed:
                    for line in self.transferred:
                        logger.message(line)
                limit = train.total_steps if max_steps is None else min(max_steps,
                                                                        train.total_steps)
                stop_at_target = not self.target_reached
                if self._evaluation_missed():  # a crash cut the last one short
                    self.evaluate(logger)
                    if stop_at_target and self.target_reached:
                        limit = self.env_steps
                self._segment_start = self._created if not resumed else time.perf_counter()
                body(logger, limit, stop_at_target)
                self.nan_check.flush()
                if self._stop_signal is not None:
                    self.status = "interrupted"
                elif stop_at_target and self.target_reached:
                    self.status = "target_reached"
                elif self.env_steps >= train.total_steps:
                    self.status = "finished"
                else:
                    self.status = "paused"
                if self.status in ("finished", "target_reached") and (
                        self.last_eval_step != self.env_steps):
                    self.evaluate(logger)
                    if stop_at_target and self.target_reached:
                        self.status = "target_reached"
                self._checkpoint(periodic=False)
                logger.finish(self.env_steps)
                summary = self._write_summary()
        except NonFiniteError as exc:
            assert logger is not None  # RunLogger raises no NonFiniteError
            try:
                summary = self._stopped_non_finite(exc, logger)
            except BaseException as second:  # e.g. the disk is full for last_good.pt
                replacement = self._crashed(second, logger, consistent=True)
                if replacement is None:
                    raise
                raise replacement from second
        except BaseException as exc:
            replacement = self._crashed(exc, logger, consistent=not self._mid_step)
            if replacement is None:
                raise
            raise replacement from exc
        try:
            self.hooks.fire("run_finished", run=self.info, summary=summary)
        finally:
            logger.close()
        return summary

    def _step_loop(self, logger: RunLogger, limit: int, stop_at_target: bool) -> None:
        """act -> env.step -> observe -> update until ``limit``, the target or a stop; every
        step inside it is "mid step" (a crash there leaves a half-new state)."""
        exp, train = self.experiment, self.experiment.train
        if self.obs is None:
            self.obs = self.env.reset(seed=train.seed)
        n = self.env.num_envs
        eval_every = exp.eval.every
        next_eval = _next_multiple(self.env_steps, eval_every)
        next_ckpt = _next_multiple(self.env_steps, train.checkpoint_every)
        next_log = _next_multiple(self.env_steps, train.log_every)
        next_train_log = self.env_steps
        agent, env, stats, nan = self.agent, self.env, self.stats, self.nan_check
        obs = self.obs
        next_change = self._apply_changes(logger)
        last_tick, tick_steps = time.perf_counter(), self.env_steps
        sps = 0.0
        while self.env_steps < limit and self._stop_signal is None:
            self._mid_step = True
            action = agent.act(obs)
            step = env.step(action)
            if nan.enabled:
                nan.check("env/reward", step.reward, f"the environment {exp.env.id!r} "
                          f"returned a non-finite reward")
                nan.check("env/obs", step.next_obs, f"the environment {exp.env.id!r} "
                          f"returned a non-finite observation")
            agent.observe(Transition(obs, action, step.reward, step.next_obs,
                                     step.terminated, step.truncated, step.valid))
            stats.record(step.reward, step.terminated, step.truncated, step.valid)
            obs = self.obs = step.obs
            self.env_steps += n
            metrics = agent.update()
            self._mid_step = False
            if self.env_steps >= next_change:  # a step boundary: the next step has them
                next_change = self._apply_changes(logger)
            if self._frozen_until:
                self._unfreeze_if_due(logger)
            if metrics and self.env_steps >= next_train_log:
                next_train_log = self.env_steps + train.log_every
                logger.scalars(metrics, self.env_steps)
                self.hooks.fire("update_finished", run=self.info, step=self.env_steps,
                                metrics=metrics)
            if self.env_steps >= next_log:
                next_log = _next_multiple(self.env_steps, train.log_every)
                now = time.perf_counter()
                sps = (self.env_steps - tick_steps) / max(now - last_tick, 1e-9)
                last_tick, tick_steps = now, self.env_steps
                nan.flush()
                self._log_rollout(logger, sps)
            if self.env_steps >= next_eval or self.env_steps >= next_ckpt:
                next_eval, next_ckpt, stop = self._periodic(logger, next_eval, next_ckpt,
                                                            stop_at_target)
                if stop:
                    return

    def _periodic(self, logger: RunLogger, next_eval: int, next_ckpt: int,
                  stop_at_target: bool) -> tuple[int, int, bool]:
        """The evaluation and checkpoint due at this step (``next_eval``/``next_ckpt`` are
        ``sys.maxsize`` when never due); returns the next ones, and True when the run stops at
        its target."""
        every, checkpoint_every = self.experiment.eval.every, self.experiment.train.checkpoint_every
        if every and self.env_steps >= next_eval:
            next_eval = _next_multiple(self.env_steps, every)
            self.evaluate(logger)
            if stop_at_target and self.target_reached:
                return next_eval, next_ckpt, True
        if checkpoint_every and self.env_steps >= next_ckpt:
            next_ckpt = _next_multiple(self.env_steps, checkpoint_every)
            self._checkpoint(periodic=True)
        return next_eval, next_ckpt, False

    def _driven(self, driver: Driver, logger: RunLogger, limit: int,
                stop_at_target: bool) -> None:
        """:meth:`driven_loop`'s body: run the driver's workers to each evaluation or
        checkpoint, hold them there, do it, and go on; the driver is closed on the way out."""
        exp, train = self.experiment, self.experiment.train
        eval_every = exp.eval.every
        next_eval = _next_multiple(self.env_steps, eval_every)
        next_ckpt = _next_multiple(self.env_steps, train.checkpoint_every)
        next_log = _next_multiple(self.env_steps, train.log_every)
        next_train_log = self.env_steps
        last_tick, tick_steps = time.perf_counter(), self.env_steps
        self._driver = driver
        try:
            driver.start()
            while self.env_steps < limit and self._stop_signal is None:
                due = min(limit, next_eval if eval_every else limit,
                          next_ckpt if train.checkpoint_every else limit)
                for progress in driver.run_until(due, lambda: self._stop_signal is not None):
                    self.env_steps = progress.env_steps
                    self.stats.add_finished(progress.returns, progress.length_sum)
                    for message in progress.messages:
                        logger.message(message)
                    if progress.metrics and self.env_steps >= next_train_log:
                        next_train_log = self.env_steps + train.log_every
                        logger.scalars(dict(progress.metrics), self.env_steps)
                        self.hooks.fire("update_finished", run=self.info, step=self.env_steps,
                                        metrics=dict(progress.metrics))
                    if self.env_steps >= next_log:
                        next_log = _next_multiple(self.env_steps, train.log_every)
                        now = time.perf_counter()
                        sps = (self.env_steps - tick_steps) / max(now - last_tick, 1e-9)
                        last_tick, tick_steps = now, self.env_steps
                        self._log_rollout(logger, sps)
                if self._stop_signal is not None:
                    break
                next_eval, next_ckpt, stop = self._periodic(logger, next_eval, next_ckpt,
                                                            stop_at_target)
                if stop:
                    return
        finally:
            self._driver = None
            driver.close()

    # --- environments that change during the run ------------------------------------------

    def _refuse_changes_with_runner(self) -> None:
        """``env.changes`` are applied by the trainer's own loop; an algorithm with a runner of
        its own (A3C) steps its envs in its workers, out of their reach."""
        name = self.experiment.algorithm.name
        if self.experiment.env.changes and self.plugins.runner_for(name) is not None:
            raise self.experiment.locate(ConfigError(
                f"env.changes: algorithm {name!r} runs its own loop, with its envs in its "
                f"workers (processes or Ray actors), where env.changes cannot reach them; "
                f"remove env.changes, or use an algorithm that runs in rlkit's loop (a2c is "
                f"a3c's synchronous counterpart).", key="env.changes"), key="env.changes")

    def _check_changes(self) -> None:
        """Refuse, before the run starts, a change the training envs cannot make: the error
        names its key (``env.changes[1].set.gravty``) and what can be set."""
        for i, change in enumerate(self.experiment.env.changes):
            try:
                problems = self.env.change_problems(change.set)
            except ConfigError as exc:  # envs that cannot be changed at all
                self.env.close()
                raise self.experiment.locate(exc, key="env.changes") from None
            for name, problem in problems.items():
                self.env.close()
                key = f"env.changes[{i}].set.{name}"
                raise self.experiment.locate(ConfigError(f"{key}: {problem}", key=key),
                                             key=key)

    def _apply_changes(self, logger: RunLogger | None) -> int:
        """Give the training and evaluation envs every change of ``env.changes`` due by
        :attr:`env_steps` that they lack, with a message and an ``env/changes`` scalar (the
        number applied) where ``logger`` is given; return the ``at_step`` of the next change
        (``sys.maxsize`` when none is left)."""
        changes = self.experiment.env.changes
        while (self._changes_applied < len(changes)
               and changes[self._changes_applied].at_step <= self.env_steps):
            i = self._changes_applied
            change = changes[i]
            self.env.apply_change(change.set)
            self._eval_env.apply_change(change.set)
            self._changes_applied += 1
            if logger is not None:
                shown = ", ".join(f"{name}={value!r}" for name, value in change.set.items())
                logger.message(f"env step {self.env_steps:,}: env.changes[{i}] (at_step "
                               f"{change.at_step:,}) applied: {escape(shown)}")
                logger.scalars({"env/changes": i + 1}, self.env_steps)
        pending = changes[self._changes_applied:]
        return pending[0].at_step if pending else sys.maxsize

    # --- how a run ends ------------------------------------------------------------------

    def _write_summary(self) -> dict[str, Any]:
        self.wall_time_s = self._wall_time()
        self._segment_start = time.perf_counter()
        summary = self._summary()
        ckpt.write_json_atomic(self.run_dir / "summary.json", summary)
        return summary

    def _stopped_non_finite(self, exc: NonFiniteError, logger: RunLogger) -> dict[str, Any]:
        """``nan_check`` found NaN/inf: keep the last good state where there is one."""
        self.status = "non_finite"
        if isinstance(exc, NonFiniteState):  # the state itself is bad: nothing good to save
            kept = ("" if self.checkpoint_step is None else
                    f" The last checkpoint with finite values is "
                    f"{self.run_dir / 'checkpoints' / 'latest.pt'} (env step "
                    f"{self.checkpoint_step:,}).")
            text = f"{exc}{kept}"
        else:
            try:
                path = self._checkpoint(periodic=False, name="last_good.pt")
                text = (f"{exc} The agent's last good state (before the offending update was "
                        f"applied) is in {path}.")
            except NonFiniteState as bad:
                text = f"{exc} {bad}"
        self.error = " ".join(text.split())
        logger.finish(self.env_steps)
        logger.message(f"[red]training stopped:[/red] {escape(text)}")
        return self._write_summary()

    def _crashed(self, exc: BaseException, logger: RunLogger | None,
                 consistent: bool) -> BaseException | None:
        """``exc`` ends the run: write a checkpoint (of a consistent state only, unless there
        is no checkpoint at all) and ``summary.json`` without masking ``exc``, and set
        :attr:`error`. Returns the exception to raise instead of ``exc`` (a full disk becomes
        a :class:`RunError` that says how much space is needed), or None."""
        self.status = "crashed"
        self.hooks.stopping = True  # a failing hook is only reported from here on
        directory = self.run_dir / "checkpoints"
        full = exc if isinstance(exc, DiskFullError) else None
        if full is None and disk_full(exc, self.run_dir):
            full = DiskFullError(disk_full_message(self.run_dir, self._checkpoint_size(), exc))
        note, salvaged = "", False
        if full is None and (consistent or self.checkpoint_step is None):
            try:
                self._checkpoint(periodic=False, exact=consistent)
                salvaged = not consistent
            except Exception as second:  # never mask the error that ended the run
                why = str(second) if isinstance(second, (DiskFullError, NonFiniteState)) else \
                    describe(second)
                note = f"; no checkpoint could be written: {why}"
        where = " in the middle of a step" if not consistent else ""
        if isinstance(exc, KeyboardInterrupt):
            text = (f"the run was stopped at once at env step {self.env_steps:,}{where} (Ctrl-C "
                    f"or SIGTERM a second time){note}")
        else:
            cause = (str(full) if full is not None else describe(exc)).rstrip(".")
            text = f"the run crashed at env step {self.env_steps:,}{where}: {cause}{note}"
        if full is None:
            log = self.run_dir / "crash.log"
            with contextlib.suppress(OSError):
                log.write_text("".join(traceback.format_exception(type(exc), exc,
                                                                  exc.__traceback__)))
                text += f" (traceback in {log})"
        if self.checkpoint_step is None:
            text += "; nothing was saved to resume from"
        else:
            text += (f"; its state at env step {self.checkpoint_step:,} is in "
                     f"{directory / 'latest.pt'}")
            if salvaged:
                text += (" (saved mid-step, as no earlier checkpoint existed: resuming restarts "
                         "the environments and is not bit-identical)")
        self.error = text
        if logger is not None:
            with contextlib.suppress(Exception):
                logger.finish(self.env_steps)
        try:
            summary = self._write_summary()
        except Exception as third:
            self.error = text = f"{text}; summary.json could not be written: {describe(third)}"
        else:
            self.hooks.fire("run_finished", run=self.info, summary=summary)
        if logger is not None:
            with contextlib.suppress(Exception):
                logger.close()
        if full is not None:
            return DiskFullError(text)
        return None

    def _checkpoint_size(self) -> int:
        """About what the next checkpoint needs on disk: the last one's size, or the tensors."""
        try:
            return (self.run_dir / "checkpoints" / "latest.pt").stat().st_size
        except OSError:
            return tensor_bytes(self.agent.state_dict())

    def _evaluation_missed(self) -> bool:
        """Whether the evaluation due at or before this step never finished (a crash in it)."""
        every = self.experiment.eval.every
        due = self.env_steps // every * every if every else 0
        return due > 0 and self.last_eval_step < due

    # --- periodic work -------------------------------------------------------------------

    def _wall_time(self) -> float:
        return self.wall_time_s + time.perf_counter() - self._segment_start

    def _log_rollout(self, logger: RunLogger, sps: float) -> None:
        metrics, finished = self.stats.drain()
        if metrics:
            logger.last_return = metrics["rollout/ep_return_mean"]
        explore = getattr(self.exploration, "metrics", None)  # optional (adaptive controllers)
        alarms = explore().get("alarms", 0.0) if explore is not None else 0.0
        if finished and self.exploration is not None:
            self.exploration.observe_returns(torch.tensor(finished), self.env_steps)
        metrics["time/steps_per_second"] = sps
        metrics["time/elapsed_s"] = self._wall_time()
        logger.scalars(metrics, self.env_steps)
        if explore is not None:
            state = explore()
            logger.scalars({f"explore/{k}": v for k, v in state.items()}, self.env_steps)
            if state.get("alarms", 0.0) > alarms:
                nan = float("nan")
                before = state.get("drop_from", state.get("best_mean", nan))
                after = state.get("drop_to", state.get("recent_mean", nan))
                logger.message(f"exploration raised to {state.get('level', nan):.3g} at env "
                               f"step {self.env_steps:,}: returns dropped from {before:,.4g} "
                               f"to {after:,.4g}")
        logger.advance(self.env_steps, sps)

    def evaluate(self, logger: RunLogger) -> EvalResult:
        """Evaluate the agent now (``eval:`` settings, separate envs), log it, count it towards
        the target and the rollback; for loop bodies (:meth:`custom_loop`)."""
        exp = self.experiment
        seed = exp.train.seed * 7919 + 1_000_003 + self.evaluations
        started = time.perf_counter()
        result = evaluate(self.agent, self._eval_env, episodes=exp.eval.episodes, seed=seed,
                          deterministic=exp.eval.deterministic)
        self.eval_time_s += time.perf_counter() - started
        self.evaluations += 1
        self.last_eval, self.last_eval_step = result, self.env_steps
        self.best_eval = result.mean if self.best_eval is None else max(self.best_eval,
                                                                       result.mean)
        target = exp.eval.target_return
        if target is not None and result.mean >= target:
            self.target_reached = True
        logger.scalars({"eval/return_mean": result.mean, "eval/return_std": result.std,
                        "eval/ep_len_mean": sum(result.lengths) / len(result.lengths)},
                       self.env_steps)
        logger.evaluation(self.env_steps, result.mean)
        if self.rollback is not None:
            event = self.rollback.after_evaluation(self.agent, result.mean, self.env_steps)
            if event is not None:
                restored = getattr(self._driver, "agent_restored", None)
                if restored is not None:  # workers elsewhere (Ray) learn from the restored state
                    restored()
                logger.scalars({"eval/rollback": float(len(self.rollback.events))},
                               self.env_steps)
                if event["kind"] == "restore":
                    logger.message(
                        f"[yellow]rollback:[/yellow] evaluation return {result.mean:.1f} at env "
                        f"step {self.env_steps:,} stayed below {self.rollback.threshold():.1f} "
                        f"{self.rollback.patience} time(s) in a row; restored the policy and "
                        f"optimizer of env step {event['best_step']:,} (return "
                        f"{event['best_return']:.1f})")
                else:
                    logger.message(
                        f"[yellow]rollback:[/yellow] the restored policy of env step "
                        f"{event['best_step']:,} scores {result.mean:.1f} as well: the "
                        f"environment has changed, so its best ({event['best_return']:.1f}) is "
                        f"no longer the reference; learning goes on from here")
        self.hooks.fire("evaluation_finished", run=self.info, step=self.env_steps, result=result)
        return result

    def _checkpoint(self, *, periodic: bool,
                    name: str = "latest.pt", exact: bool = True) -> Path:
        """Write the run's state to ``checkpoints/<name>`` (and ``step_<N>.pt`` if periodic).

        :param exact: False for a state caught in the middle of a step (a crash with no
            earlier checkpoint): the environments' state is left out, so a resume resets them.
        :raises NonFiniteState: before writing, where ``nan_check`` is on and the agent's
            state holds NaN/inf (such a state is never saved as a checkpoint).
        """
        directory = self.run_dir / "checkpoints"
        try:
            env_state: dict[str, Any] | None = (
                self.env.state_dict() if exact and self.obs is not None else None)
        except SnapshotUnsupported:
            env_state = None
        state = {
            "rlkit_version": _version("rlkit"),
            "algorithm": self.experiment.algorithm.name,
            "config": self.experiment.to_data(),
            "status": self.status if not periodic else "running",
            "agent": self.agent.state_dict(),
            "env": env_state,
            "exact": exact,
            "obs": self.obs,
            "spaces": self._spaces,
            "rng": seeding.rng_state(),
            "trainer": {
                "env_steps": self.env_steps,
                "evaluations": self.evaluations,
                "wall_time_s": self._wall_time(),
                "eval_time_s": self.eval_time_s,
                "last_eval_step": self.last_eval_step,
                "best_eval": self.best_eval,
                "target_reached": self.target_reached,
                "last_eval": None if self.last_eval is None else
                [list(self.last_eval.returns), list(self.last_eval.lengths)],
                "episode_stats": self.stats.state_dict(),
                "rollback": None if self.rollback is None else self.rollback.state_dict(),
                "frozen_until": self._frozen_until,
            },
        }
        if self.nan_check.enabled:
            self._refuse_non_finite(state["agent"])
        if self._logger is not None:  # every row up to this step is on disk before the file
            self._logger.flush()
        path = self._save(state, directory / name)
        if name == "latest.pt":
            self.checkpoint_step = self.env_steps
        if periodic:
            ckpt.keep_link(path, directory / f"step_{self.env_steps:012d}.pt")
            old = sorted(directory.glob("step_*.pt"))[: -self.experiment.train.keep_checkpoints]
            for p in old:
                p.unlink(missing_ok=True)
        self.hooks.fire("checkpoint_saved", run=self.info, path=path, step=self.env_steps)
        return path

    def _save(self, state: dict[str, Any], path: Path) -> Path:
        """:func:`rlkit.checkpoint.save_atomic`, with a full disk reported as a
        :class:`DiskFullError` that names the directory and the space needed."""
        try:
            return ckpt.save_atomic(state, path)
        except Exception as exc:
            needed = tensor_bytes(state)
            if disk_full(exc, path.parent, needed):
                raise DiskFullError(disk_full_message(path.parent, needed, exc)) from exc
            raise

    def _refuse_non_finite(self, agent_state: Any) -> None:
        bad = non_finite_entries(agent_state)
        if bad:
            raise NonFiniteState(
                f"the agent's state holds NaN or infinity at env step {self.env_steps:,} (in "
                f"{', '.join(bad)}), so it is not saved as a checkpoint and the run is not "
                f"reported finished. Likely cause: the warnings above (train.nan_check: "
                f"{self.nan_check.mode}); lower algorithm.optimizer.lr or scale rewards and "
                f"observations, and use train.nan_check: raise to stop at the first bad value "
                f"with the last good state kept.")

    def _summary(self) -> dict[str, Any]:
        exp = self.experiment
        ev = self.last_eval
        return {
            "status": self.status,
            "algorithm": exp.algorithm.name,
            "env_id": exp.env.id,
            "seed": exp.train.seed,
            "env_steps": self.env_steps,
            "wall_time_s": round(self.wall_time_s, 3),
            "eval_time_s": round(self.eval_time_s, 3),
            "final_eval_return_mean": None if ev is None else ev.mean,
            "final_eval_return_std": None if ev is None else ev.std,
            "final_eval_episodes": None if ev is None else len(ev.returns),
            "final_eval_step": None if ev is None else self.last_eval_step,
            "best_eval_return_mean": self.best_eval,
            "target_return": exp.eval.target_return,
            "target_reached": self.target_reached,
            "checkpoint_step": self.checkpoint_step,
            "rollbacks": [] if self.rollback is None else self.rollback.events,
            "fine_tuned_from": None if exp.init_from is None else exp.init_from.path,
            "error": self.error,
            "plugin_errors": self.hooks.summary(),
            "run_dir": str(self.run_dir),
            **self.summary_extra,
        }

    # --- run directory -------------------------------------------------------------------

    def _write_run_dir(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(
            yaml.safe_dump(self.info.config, sort_keys=False))
        ckpt.write_json_atomic(self.run_dir / "manifest.json", self._manifest())

    def _manifest(self) -> dict[str, Any]:
        return {
            "created": datetime.now().isoformat(timespec="seconds"),
            "command": sys.argv,
            "source": self.experiment.source,
            "rlkit": _version("rlkit"),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "gymnasium": _version("gymnasium"),
            "numpy": _version("numpy"),
            "platform": platform.platform(),
            "device": str(self.device),
            "torch_threads": torch.get_num_threads(),
            "plugins": self.plugins.versions(),
            "plugin_api": PLUGIN_API,
            "components": self._components(),
        }

    def _components(self) -> dict[str, dict[str, str]]:
        """Which plugin (entry point) provided the run's algorithm, backbone and exploration
        strategy: what to install where one is missing later."""
        exp, plugins = self.experiment, self.plugins
        chosen = (("algorithm", exp.algorithm, plugins.algorithms),
                  ("backbone", exp.backbone, plugins.backbones),
                  ("exploration", exp.exploration, plugins.exploration))
        return {section: {"name": comp.name, "plugin": table[comp.name][1].plugin}
                for section, comp, table in chosen if comp is not None and comp.name in table}

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """Ctrl-C / SIGTERM: finish the current step, checkpoint, stop. Twice: stop now."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self._stop_signal is not None:
                raise KeyboardInterrupt
            self._stop_signal = signal.Signals(signum).name

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def _recorded_spaces(spec: EnvSpec) -> dict[str, Any] | None:
    """``spec``'s spaces as checkpoint data (:mod:`rlkit.spaces`); None for a space type that
    cannot be recorded (then loaders build the env to read them)."""
    try:
        return {"observation": space_to_data(spec.observation_space, "spaces.observation"),
                "action": space_to_data(spec.action_space, "spaces.action"),
                "num_envs": int(spec.num_envs)}
    except (ValueError, TypeError):
        return None


def _next_multiple(steps: int, every: int) -> int:
    if not every:
        return sys.maxsize
    return (steps // every + 1) * every


def _new_run_dir(experiment: Experiment) -> Path:
    parent = Path(experiment.run.dir)
    name = experiment.run.name
    if name is None:
        env = re.sub(r"[^A-Za-z0-9.-]+", "_", experiment.env.id)
        name = f"{experiment.algorithm.name}-{env}-{datetime.now():%Y%m%d-%H%M%S}"
    path = parent / name
    suffix = 1
    while path.exists() and any(path.iterdir()):
        path = parent / f"{name}-{suffix}"
        suffix += 1
    return path


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"

