"""The training loop: one run of an experiment, from an empty run directory (or a checkpoint)
to ``summary.json``.

Levels of the loop, outermost first:

* **run** -- build env, agent and logger from the validated :class:`~rlkit.config.Experiment`,
  write ``config.yaml`` and ``manifest.json``, fire ``run_started``; at the end a final
  evaluation, a final checkpoint, ``summary.json`` and ``run_finished``.
* **step** -- ``act -> env.step -> observe -> update``, all on the agent's device. The
  algorithm decides inside ``update`` whether it is time to learn (PPO when its rollout is full,
  DQN every ``train_freq`` steps, tabular methods every step).
* **periodic work** -- logging (every ``train.log_every`` steps), evaluation (``eval.every``)
  with early stop at ``eval.target_return``, checkpoints (``train.checkpoint_every``), and the
  coarse lifecycle hooks. None of it runs per step.

The loop never imports an algorithm: it gets one from the plugin session by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import yaml

from rlkit import checkpoint as ckpt
from rlkit import seeding
from rlkit.config import Experiment, resolve
from rlkit.environments import EnvOptions, TorchVectorEnv, make_env
from rlkit.evaluation import evaluate
from rlkit.interfaces import (
    Algorithm,
    BuildContext,
    EnvSpec,
    EvalResult,
    Exploration,
    NanCheck,
    NonFiniteError,
    RunInfo,
    Transition,
)
from rlkit.logger import RunLogger
from rlkit.metrics import EpisodeStats
from rlkit.plugins import Plugins
from rlkit.snapshot import SnapshotUnsupported

__all__ = ["Trainer", "build_agent", "env_options", "load_agent", "resolve_device"]


class RunError(Exception):
    """A run cannot start or continue; the message says why and what to do."""


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available, else cpu; errors say what is available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RunError(f"train.device: {name!r} is not a device; use auto, cpu, cuda or "
                       f"cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunError(f"train.device: {name!r} requested but CUDA is not available on this "
                       f"machine; use --device cpu (or auto).")
    return device


def env_options(experiment: Experiment, *, for_eval: bool = False) -> EnvOptions:
    env = experiment.env
    vectorization = env.vectorization
    if for_eval and vectorization == "async":
        vectorization = "sync"
    return EnvOptions(
        id=env.id,
        num_envs=env.num_envs,
        vectorization=vectorization,
        autoreset_mode=env.autoreset_mode,
        kwargs=env.kwargs,
        wrappers=tuple((w.name, w.kwargs) for w in env.wrappers),
        imports=tuple(env.imports),
    )


def build_agent(
    experiment: Experiment,
    plugins: Plugins,
    env_spec: EnvSpec,
    device: torch.device,
    nan_check: NanCheck | None = None,
) -> tuple[Algorithm, Exploration | None]:
    """Build the configured algorithm (and exploration controller) for ``env_spec``."""
    train = experiment.train
    backbone_spec = plugins.backbone(experiment.backbone.name)
    backbone_params = experiment.backbone.params

    def make_backbone(observation_space: Any) -> torch.nn.Module:
        return backbone_spec.build(backbone_params, observation_space)

    exploration: Exploration | None = None
    if experiment.exploration is not None:
        exp_spec = plugins.exploration_spec(experiment.exploration.name)
        exploration = exp_spec.build(experiment.exploration.params, train.total_steps)
    ctx = BuildContext(
        env=env_spec,
        device=device,
        seed=train.seed,
        total_steps=train.total_steps,
        backbone=make_backbone,
        exploration=exploration,
        nan_check=nan_check or NanCheck(train.nan_check),
    )
    spec = plugins.algorithm(experiment.algorithm.name)
    agent = spec.build(experiment.algorithm.params, ctx)
    if not isinstance(agent, Algorithm):
        raise RunError(f"algorithm {spec.name!r}: build() returned {type(agent).__name__}, which "
                       f"lacks act/observe/update/state_dict/load_state_dict.")
    return agent, exploration


def load_agent(
    path: str | Path,
    plugins: Plugins | None = None,
    *,
    device: str = "cpu",
) -> tuple[Algorithm, Experiment]:
    """The trained agent in a run directory or checkpoint file, ready to ``act``.

    For programs that own their loop (a simulator asking for actions)::

        agent, experiment = load_agent("runs/my-run")
        actions = agent.act(torch.as_tensor(obs), explore=False)

    :param path: a run directory (its ``checkpoints/latest.pt``) or a checkpoint file.
    :param plugins: the plugin session (default: :meth:`Plugins.load`).
    :param device: where the agent's tensors live (``auto``, ``cpu``, ``cuda``...).
    :returns: the agent and the experiment it was trained with.
    """
    plugins = plugins if plugins is not None else Plugins.load()
    file = ckpt.find_checkpoint(path)
    state = ckpt.load(file)
    experiment = resolve(state["config"], plugins, source=str(file))
    env = make_env(env_options(experiment, for_eval=True), num_envs=1)
    spec = EnvSpec(observation_space=env.single_observation_space,
                   action_space=env.single_action_space, num_envs=experiment.env.num_envs)
    env.close()
    agent, _ = build_agent(experiment, plugins, spec, resolve_device(device))
    agent.load_state_dict(state["agent"])
    return agent, experiment


class Trainer:
    """Runs one experiment. ``Trainer(experiment, plugins).run()`` returns the summary.

    :param experiment: the validated experiment.
    :param plugins: the plugin session that provides the algorithm, backbone and hooks.
    :param run_dir: the run directory (default: ``run.dir/run.name`` or a generated name).
    :param progress: show a progress bar on a terminal.
    """

    def __init__(
        self,
        experiment: Experiment,
        plugins: Plugins,
        *,
        run_dir: Path | None = None,
        progress: bool = True,
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
        self.env: TorchVectorEnv = make_env(env_options(experiment), device=self.device)
        spec = EnvSpec(observation_space=self.env.single_observation_space,
                       action_space=self.env.single_action_space, num_envs=self.env.num_envs)
        self.agent, self.exploration = build_agent(experiment, plugins, spec, self.device,
                                                   self.nan_check)
        self._eval_env: TorchVectorEnv | None = None
        self.stats = EpisodeStats(self.env.num_envs, self.device)
        self.run_dir = Path(run_dir) if run_dir is not None else _new_run_dir(experiment)
        self.progress = progress
        self.env_steps = 0
        self.evaluations = 0
        self.wall_time_s = 0.0
        self.last_eval: EvalResult | None = None
        self.last_eval_step = -1
        self.best_eval: float | None = None
        self.target_reached = False
        self.obs: torch.Tensor | None = None
        self._created = time.perf_counter()  # set-up time counts towards wall time
        self._segment_start = self._created
        self.status = "running"
        self._stop_signal: str | None = None
        self.info = RunInfo(run_dir=self.run_dir, config=experiment.to_data(),
                            algorithm=experiment.algorithm.name, seed=train.seed,
                            device=self.device)
        if not _resuming:
            self._write_run_dir()

    # --- resume --------------------------------------------------------------------------

    @classmethod
    def resume(cls, run_dir: str | Path, plugins: Plugins, *, progress: bool = True,
               device: str | None = None) -> Trainer:
        """Continue the run in ``run_dir`` from its latest checkpoint, exactly."""
        run_dir = Path(run_dir)
        path = ckpt.find_checkpoint(run_dir)
        if path.parent.name == "checkpoints":
            run_dir = path.parent.parent
        state = ckpt.load(path)
        data = state["config"]
        if device is not None:
            data["train"]["device"] = device
        experiment = resolve(data, plugins, source=str(run_dir / "config.yaml"))
        trainer = cls(experiment, plugins, run_dir=run_dir, progress=progress, _resuming=True)
        trainer._load(state, path)
        return trainer

    def _load(self, state: dict[str, Any], path: Path) -> None:
        if state.get("status") == "finished":
            raise RunError(f"{path}: this run already finished ({state['trainer']['env_steps']:,} "
                           f"env steps). Start a new run, or fine-tune from it.")
        self.agent.load_state_dict(state["agent"])  # tensors arrive on the CPU
        t = state["trainer"]
        self.env_steps = int(t["env_steps"])
        self.evaluations = int(t["evaluations"])
        self.wall_time_s = float(t["wall_time_s"])
        self.last_eval_step = int(t["last_eval_step"])
        self.best_eval = t["best_eval"]
        if t["last_eval"] is not None:
            self.last_eval = EvalResult(returns=tuple(t["last_eval"][0]),
                                        lengths=tuple(t["last_eval"][1]))
        self.stats.load_state_dict(t["episode_stats"])
        if state["env"] is not None:
            self.env.load_state_dict(state["env"])
            self.obs = state["obs"].to(self.device)
        else:
            warnings.warn("the checkpoint holds no environment state (async envs); the "
                          "environments restart from a reset, so the result will not be "
                          "bit-identical to an uninterrupted run.", RuntimeWarning, stacklevel=2)
            self.obs = self.env.reset(seed=self.experiment.train.seed + self.env_steps)
        seeding.set_rng_state(state["rng"])

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
        """The standard act / step / observe / update loop with evaluation and checkpoints."""
        exp, train = self.experiment, self.experiment.train
        resumed = self.obs is not None
        logger = RunLogger(self.run_dir, train.total_steps, progress=self.progress,
                           purge_step=self.env_steps if resumed else None)
        if not resumed:
            logger.text("config", "```\n" + yaml.safe_dump(self.info.config, sort_keys=False)
                        + "\n```")
            self.obs = self.env.reset(seed=train.seed)
        self.plugins.hook.run_started(run=self.info)
        n = self.env.num_envs
        eval_every = exp.eval.every
        next_eval = _next_multiple(self.env_steps, eval_every)
        next_ckpt = _next_multiple(self.env_steps, train.checkpoint_every)
        next_log = _next_multiple(self.env_steps, train.log_every)
        next_train_log = self.env_steps
        limit = train.total_steps if max_steps is None else min(max_steps, train.total_steps)
        agent, env, stats, nan = self.agent, self.env, self.stats, self.nan_check
        obs = self.obs
        assert obs is not None
        self._segment_start = self._created if not resumed else time.perf_counter()
        last_tick, tick_steps = time.perf_counter(), self.env_steps
        sps = 0.0
        try:
            with self._signals():
                while self.env_steps < limit and self._stop_signal is None:
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
                    if metrics and self.env_steps >= next_train_log:
                        next_train_log = self.env_steps + train.log_every
                        logger.scalars(metrics, self.env_steps)
                        self.plugins.hook.update_finished(run=self.info, step=self.env_steps,
                                                          metrics=metrics)
                    if self.env_steps >= next_log:
                        next_log = _next_multiple(self.env_steps, train.log_every)
                        now = time.perf_counter()
                        sps = (self.env_steps - tick_steps) / max(now - last_tick, 1e-9)
                        last_tick, tick_steps = now, self.env_steps
                        nan.flush()
                        self._log_rollout(logger, sps)
                    if eval_every and self.env_steps >= next_eval:
                        next_eval = _next_multiple(self.env_steps, eval_every)
                        self._evaluate(logger)
                        if self.target_reached:
                            break
                    if train.checkpoint_every and self.env_steps >= next_ckpt:
                        next_ckpt = _next_multiple(self.env_steps, train.checkpoint_every)
                        self._checkpoint(periodic=True)
                nan.flush()
                if self._stop_signal is not None:
                    self.status = "interrupted"
                elif self.target_reached:
                    self.status = "target_reached"
                elif self.env_steps >= train.total_steps:
                    self.status = "finished"
                else:
                    self.status = "paused"
                if self.status in ("finished", "target_reached") and (
                        self.last_eval_step != self.env_steps):
                    self._evaluate(logger)
                    if self.target_reached:
                        self.status = "target_reached"
                self._checkpoint(periodic=False)
        except NonFiniteError as exc:
            self.status = "non_finite"
            path = self._checkpoint(periodic=False, name="last_good.pt")
            logger.message(f"[red]training stopped:[/red] {exc}\nThe agent's last good state "
                           f"(before the offending update was applied) is in {path}.")
        except BaseException:
            self.status = "crashed"
            logger.close()
            raise
        self.wall_time_s = self._wall_time()
        self._segment_start = time.perf_counter()
        summary = self._summary()
        _write_json(self.run_dir / "summary.json", summary)
        self.plugins.hook.run_finished(run=self.info, summary=summary)
        logger.close()
        return summary

    # --- periodic work -------------------------------------------------------------------

    def _wall_time(self) -> float:
        return self.wall_time_s + time.perf_counter() - self._segment_start

    def _log_rollout(self, logger: RunLogger, sps: float) -> None:
        metrics, finished = self.stats.drain()
        if metrics:
            logger.last_return = metrics["rollout/ep_return_mean"]
        if finished and self.exploration is not None:
            self.exploration.observe_returns(torch.tensor(finished), self.env_steps)
        metrics["time/steps_per_second"] = sps
        metrics["time/elapsed_s"] = self._wall_time()
        logger.scalars(metrics, self.env_steps)
        logger.advance(self.env_steps, sps)

    def _evaluate(self, logger: RunLogger) -> EvalResult:
        exp = self.experiment
        if self._eval_env is None:
            n = exp.eval.num_envs or min(exp.eval.episodes, 32)
            self._eval_env = make_env(env_options(exp, for_eval=True), device=self.device,
                                      num_envs=n)
        seed = exp.train.seed * 7919 + 1_000_003 + self.evaluations
        result = evaluate(self.agent, self._eval_env, episodes=exp.eval.episodes, seed=seed,
                          deterministic=exp.eval.deterministic)
        self.evaluations += 1
        self.last_eval, self.last_eval_step = result, self.env_steps
        self.best_eval = result.mean if self.best_eval is None else max(self.best_eval,
                                                                       result.mean)
        logger.last_eval = result.mean
        logger.scalars({"eval/return_mean": result.mean, "eval/return_std": result.std,
                        "eval/ep_len_mean": sum(result.lengths) / len(result.lengths)},
                       self.env_steps)
        self.plugins.hook.evaluation_finished(run=self.info, step=self.env_steps, result=result)
        target = exp.eval.target_return
        if target is not None and result.mean >= target:
            self.target_reached = True
        return result

    def _checkpoint(self, *, periodic: bool,
                    name: str = "latest.pt") -> Path:
        directory = self.run_dir / "checkpoints"
        try:
            env_state: dict[str, Any] | None = self.env.state_dict()
        except SnapshotUnsupported:
            env_state = None
        state = {
            "rlkit_version": _version("rlkit"),
            "algorithm": self.experiment.algorithm.name,
            "config": self.experiment.to_data(),
            "status": self.status if not periodic else "running",
            "agent": self.agent.state_dict(),
            "env": env_state,
            "obs": self.obs,
            "rng": seeding.rng_state(),
            "trainer": {
                "env_steps": self.env_steps,
                "evaluations": self.evaluations,
                "wall_time_s": self._wall_time(),
                "last_eval_step": self.last_eval_step,
                "best_eval": self.best_eval,
                "last_eval": None if self.last_eval is None else
                [list(self.last_eval.returns), list(self.last_eval.lengths)],
                "episode_stats": self.stats.state_dict(),
            },
        }
        path = ckpt.save_atomic(state, directory / name)
        if periodic:
            keep = directory / f"step_{self.env_steps:012d}.pt"
            tmp = directory / f".{keep.name}.link"
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.link(path, tmp)
            os.replace(tmp, keep)
            old = sorted(directory.glob("step_*.pt"))[: -self.experiment.train.keep_checkpoints]
            for p in old:
                p.unlink(missing_ok=True)
        self.plugins.hook.checkpoint_saved(run=self.info, path=path, step=self.env_steps)
        return path

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
            "final_eval_return_mean": None if ev is None else ev.mean,
            "final_eval_return_std": None if ev is None else ev.std,
            "final_eval_episodes": None if ev is None else len(ev.returns),
            "final_eval_step": None if ev is None else self.last_eval_step,
            "best_eval_return_mean": self.best_eval,
            "target_return": exp.eval.target_return,
            "target_reached": self.target_reached,
            "run_dir": str(self.run_dir),
        }

    # --- run directory -------------------------------------------------------------------

    def _write_run_dir(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(
            yaml.safe_dump(self.info.config, sort_keys=False))
        _write_json(self.run_dir / "manifest.json", self._manifest())

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
        }

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


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str, allow_nan=True))
    os.replace(tmp, path)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"

