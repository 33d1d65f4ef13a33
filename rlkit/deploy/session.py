"""Logs and checkpoints for an embedded agent, without the trainer.

A program that owns its loop keeps what a training run writes by recording each transition
it tells the agent about::

    with Session(agent, run_dir="runs/inventory", log_every=10_000) as session:
        for day in range(days):
            ...
            agent.observe(transition)
            session.record(transition)                 # episode returns, periodic work
            metrics = agent.update()
            if metrics:
                session.log(metrics)
    # runs/inventory: config.yaml, TensorBoard events, scalars.csv, checkpoints/latest.pt,
    # summary.json

Scalars use the trainer's names (``rollout/ep_return_mean``, ``rollout/ep_len_mean``,
``rollout/episodes``, ``time/steps_per_second``, ``time/elapsed_s``; the algorithm's
``train/...``) and go to TensorBoard and ``scalars.csv`` through :class:`rlkit.logger.RunLogger`.
Checkpoints are :meth:`Agent.save <rlkit.deploy.agent.Agent.save>`'s, plus the session's
counters, so ``Agent.load(run_dir)`` reads them. Nothing here runs per step but a few tensor
additions; the rest happens every ``log_every`` and ``checkpoint_every`` steps.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
import yaml

from rlkit import checkpoint as ckpt
from rlkit.deploy.agent import Agent
from rlkit.failures import describe
from rlkit.interfaces import Transition
from rlkit.logger import RunLogger
from rlkit.metrics import EpisodeStats

__all__ = ["Session"]


class Session:
    """Logging and checkpointing for an embedded :class:`~rlkit.deploy.agent.Agent`.

    :param agent: the agent whose transitions are recorded and whose state is checkpointed.
    :param run_dir: the run directory (created; an existing one gets more rows appended).
    :param log_every: log episode statistics every this many steps (summed over units).
    :param checkpoint_every: write ``checkpoints/latest.pt`` every this many steps (0: only
        at :meth:`close`).

    Use it as a context manager, or call :meth:`close`: an exception leaving the block
    writes ``summary.json`` with status ``crashed`` and the error in one line (the last
    checkpoint stays as it was).
    """

    def __init__(self, agent: Agent, *, run_dir: str | Path, log_every: int = 1000,
                 checkpoint_every: int = 0) -> None:
        if log_every < 1 or checkpoint_every < 0:
            raise ValueError(f"Session: log_every must be >= 1 and checkpoint_every >= 0 "
                             f"(0: only at close), got {log_every} and {checkpoint_every}.")
        self.agent = agent
        self.run_dir = Path(run_dir)
        self.log_every = log_every
        self.checkpoint_every = checkpoint_every
        self.env_steps = 0
        """Steps recorded so far, summed over units."""
        self.episodes = 0
        """Episodes that ended in recorded transitions."""
        self.checkpoint_step: int | None = None
        """The step of ``checkpoints/latest.pt`` (None before the first)."""
        self.status = "running"
        self.error: str | None = None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config = agent.experiment.to_data()
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.logger = RunLogger(self.run_dir, agent.experiment.train.total_steps, progress=False)
        self.stats = EpisodeStats(agent.num_envs, agent.device)
        self._started = self._last_tick = time.perf_counter()
        self._stopped: float | None = None  # when the session was closed
        self._tick_steps = 0
        self._next_log = log_every
        self._next_checkpoint = checkpoint_every or None

    def record(self, transition: Transition) -> None:
        """Count a transition's steps and the returns of the episodes it ends; log and
        checkpoint when due."""
        self.stats.record(transition.reward, transition.terminated, transition.truncated,
                          transition.valid)
        self.env_steps += int(transition.reward.shape[0])
        if self.env_steps >= self._next_log:
            self._next_log = (self.env_steps // self.log_every + 1) * self.log_every
            self._log_rollout()
        if self._next_checkpoint is not None and self.env_steps >= self._next_checkpoint:
            every = self.checkpoint_every
            self._next_checkpoint = (self.env_steps // every + 1) * every
            self.checkpoint()

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Write scalars (``train/...`` from ``agent.update()``, or your own) at ``step``
        (default: the steps recorded so far)."""
        self.logger.scalars(metrics, self.env_steps if step is None else step)

    def checkpoint(self) -> Path:
        """Write ``checkpoints/latest.pt`` atomically: the agent as :meth:`Agent.save` writes
        it, plus this session's counters; ``Agent.load(run_dir)`` reads it."""
        state = self.agent.checkpoint_state()
        state["session"] = {"env_steps": self.env_steps, "episodes": self.episodes,
                            "wall_time_s": self._wall_time(),
                            "episode_stats": self.stats.state_dict()}
        self.logger.flush()  # every row up to this step is on disk before the checkpoint
        path = ckpt.save_atomic(state, self.run_dir / "checkpoints" / "latest.pt")
        self.checkpoint_step = self.env_steps
        return path

    def close(self, *, checkpoint: bool = True) -> dict[str, Any]:
        """Log what is left, write a final checkpoint (unless ``checkpoint=False``) and
        ``summary.json``; return the summary. Closing twice does nothing more."""
        if self.status != "running":
            return self.summary()
        try:
            self._log_rollout()
            if checkpoint:
                self.checkpoint()
            self.status = "finished"
        finally:
            if self.status == "running":
                self.status = "crashed"
            self._stopped = time.perf_counter()
            self.logger.close()
            ckpt.write_json_atomic(self.run_dir / "summary.json", self.summary())
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """The fields of the trainer's ``summary.json`` that apply, and ``episodes``."""
        experiment = self.agent.experiment
        return {
            "status": self.status,
            "algorithm": experiment.algorithm.name,
            "env_id": self.agent.env_id,
            "seed": experiment.train.seed,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "wall_time_s": round(self._wall_time(), 3),
            "checkpoint_step": self.checkpoint_step,
            "error": self.error,
            "run_dir": str(self.run_dir),
        }

    def __enter__(self) -> Session:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.status != "running":
            return
        if exc is None:
            self.close()
            return
        self.error = describe(exc)
        self.status = "crashed"
        self._stopped = time.perf_counter()
        self.logger.close()
        ckpt.write_json_atomic(self.run_dir / "summary.json", self.summary())

    def _wall_time(self) -> float:
        end = self._stopped if self._stopped is not None else time.perf_counter()
        return end - self._started

    def _log_rollout(self) -> None:
        metrics, finished = self.stats.drain()
        self.episodes += int(metrics.get("rollout/episodes", 0))
        exploration = self.agent.exploration
        if finished and exploration is not None:
            exploration.observe_returns(torch.tensor(finished), self.env_steps)
        now = time.perf_counter()
        metrics["time/steps_per_second"] = ((self.env_steps - self._tick_steps)
                                            / max(now - self._last_tick, 1e-9))
        metrics["time/elapsed_s"] = self._wall_time()
        self._last_tick, self._tick_steps = now, self.env_steps
        self.logger.scalars(metrics, self.env_steps)

