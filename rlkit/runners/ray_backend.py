"""A3C's workers as Ray actors (``algorithm.backend: ray``), on this machine or a cluster.

A **parameter-server actor** holds the global network and its optimizer. Each **worker actor**
holds a :class:`~rlkit.runners.learner.Learner`; after each ``n_steps`` it pushes its gradient
to the parameter server, which applies it (one at a time, in arrival order) and returns the new
weights (:class:`ParameterServerStep`). Workers never wait for each other.

The trainer's process drives the workers in calls of at most :data:`CALL_S` seconds
(``Worker.run(until, seconds)``), each returning the episodes, metrics and env-step count of
that stretch, so it logs as the run goes and notices a failed actor at once (Ray raises
``RayActorError`` for a dead actor) or after ``worker_timeout`` seconds (a hung call; the
actor is killed). When an evaluation or checkpoint is due, the workers hold, and the global
network and optimizer are copied from the parameter server into the trainer's agent.

Ray itself starts on first use: ``ray.init()`` joins the cluster at ``RAY_ADDRESS`` when that
is set, otherwise it starts a local one; a program that called ``ray.init(...)`` before keeps
its own. Every node needs the same Python, rlkit with its ``ray`` extra, torch, gymnasium and
the env's package. All communication is Ray's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parameters_to_vector

from rlkit.errors import RunError
from rlkit.failures import describe
from rlkit.optim import load_optimizer_state, make_optimizer
from rlkit.runners.learner import Learner, RemoteLevel, worker_seed
from rlkit.runners.processes import _Pending, restart_or_stop
from rlkit.specs import Progress

__all__ = ["ParameterServerStep", "RayDriver"]

CALL_S = 0.5
"""Longest stretch a worker runs per call from the trainer's process."""
POLL_S = 0.05


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RunError('algorithm.backend: ray needs Ray, which is not installed; install it '
                       'with pip install -e ".[ray]" (or pip install "rlkit[ray]"), or use '
                       'backend: processes.') from None
    return ray


class ParameterServer:
    """The global network and optimizer (a Ray actor)."""

    def __init__(self, model: nn.Module, optimizer_config: Any, optimizer_state: Any,
                 env_steps: int) -> None:
        torch.set_num_threads(1)
        self.model = model
        self.params = list(model.parameters())
        self.optimizer = make_optimizer(self.params, optimizer_config)
        load_optimizer_state(self.optimizer, optimizer_state)
        self.env_steps = env_steps

    def apply(self, grad: torch.Tensor | None, lr: float,
              env_steps: int) -> tuple[torch.Tensor, int]:
        """Apply one worker's gradient (flat, one tensor; None: none yet); count its env
        steps; return the new weights (flat) and the run's env steps."""
        if grad is not None:
            offset = 0
            for p in self.params:
                p.grad = grad[offset:offset + p.numel()].view_as(p)
                offset += p.numel()
            self.optimizer.param_groups[0]["lr"] = lr
            self.optimizer.step()
            for p in self.params:
                p.grad = None
        self.env_steps += env_steps
        return parameters_to_vector(self.params).detach(), self.env_steps

    def state(self) -> tuple[dict[str, Any], dict[str, Any], int]:
        return self.model.state_dict(), self.optimizer.state_dict(), self.env_steps

    def load(self, model: dict[str, Any], optimizer: dict[str, Any]) -> None:
        """Replace the global network and optimizer state (a rollback in the trainer)."""
        self.model.load_state_dict(model)
        load_optimizer_state(self.optimizer, optimizer)


class ParameterServerStep:
    """A Ray worker's sink: push the local gradient to the parameter server and go on; the
    weights it returns are loaded at the next push (or :meth:`flush`), so that the round trip
    overlaps the next ``n_steps`` of acting. A worker's gradient is therefore computed with
    weights at most one of its own updates old -- asynchronous, as A3C is anyway."""

    def __init__(self, local: list[nn.Parameter], server: Any, steps_per_segment: int) -> None:
        self.local = local
        self.server = server
        self.steps_per_segment = steps_per_segment
        self.param_groups: list[dict[str, Any]] = [{"lr": 0.0}]
        self.env_steps = 0
        self._pending: Any = None

    def step(self) -> None:
        grad = None if self.local[0].grad is None else torch.cat(
            [p.grad.reshape(-1) for p in self.local])  # type: ignore[union-attr]
        self.flush()
        steps = 0 if grad is None else self.steps_per_segment
        self._pending = self.server.apply.remote(grad, float(self.param_groups[0]["lr"]), steps)
        if grad is None:
            self.flush()  # the first pull: start from the global weights

    def flush(self) -> None:
        """Wait for the last push and load the weights it returned."""
        if self._pending is None:
            return
        weights, self.env_steps = _ray().get(self._pending)
        self._pending = None
        with torch.no_grad():
            offset = 0
            for p in self.local:  # copied in place: the agent's tensors stay its own
                p.copy_(weights[offset:offset + p.numel()].view_as(p))
                offset += p.numel()

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Worker:
    """One A3C worker (a Ray actor)."""

    def __init__(self, config: Mapping[str, Any], seed: int, state: Any, server: Any,
                 level: float | None) -> None:
        self.learner = Learner(config, seed)
        self.level = level
        self.sink = ParameterServerStep(self.learner.agent.params, server,
                                        self.learner.steps_per_segment)
        self.learner.connect(self.sink)  # pulls the weights and the run's step count
        if state is not None:
            self.learner.restore(state, seed)
        if level is not None:  # the trainer's controller sets the level
            self.learner.agent.exploration = RemoteLevel(lambda: self.level)
        self.metrics: dict[str, float] = {}

    def run(self, until: int, seconds: float, level: float | None = None) -> dict[str, Any]:
        """Segments until the run has ``until`` env steps (then hold: the report carries this
        worker's state) or ``seconds`` have passed, at exploration ``level`` (None: as
        configured)."""
        if level is not None:
            self.level = level
        deadline = time.monotonic() + seconds
        held = False
        while True:
            if self.sink.env_steps >= until:
                self.sink.flush()  # the hold's state includes this worker's last update
                held = True
                break
            if time.monotonic() >= deadline:
                break
            self.metrics = self.learner.segment(self.sink.env_steps) or self.metrics
        returns, length_sum = self.learner.drain()
        report = {"returns": returns, "length_sum": length_sum, "metrics": self.metrics,
                  "env_steps": self.sink.env_steps, "held": held,
                  "state": self.learner.state() if held else None}
        self.metrics = {}
        return report


@dataclass
class _Actor:
    handle: Any
    call: Any | None = None
    since: float = 0.0
    restarts: int = 0


class RayDriver:
    """Runs ``num_workers`` A3C workers as Ray actors (see the module docstring)."""

    def __init__(self, trainer: Any) -> None:
        ray = _ray()
        self.ray = ray
        self.trainer = trainer
        self.agent = trainer.agent
        self.params = trainer.experiment.algorithm.params
        self.config = trainer.experiment.to_data()
        self.seed = int(trainer.experiment.train.seed)
        self.started_ray = False
        if not ray.is_initialized():  # before the trainer installs its signal handlers
            ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
                     logging_level="ERROR")
            self.started_ray = True
        self.server: Any = None
        self.actors: dict[int, _Actor] = {}
        self.pending = _Pending()
        self.env_steps = int(trainer.env_steps)
        self.closed = False

    # --- the Driver protocol -------------------------------------------------------------

    def start(self) -> None:
        ray, agent = self.ray, self.agent
        server_cls = ray.remote(num_cpus=0)(ParameterServer)
        self.server = server_cls.remote(agent.model, self.params.optimizer,
                                        agent.optimizer.state_dict(), self.env_steps)
        n = self.params.num_workers
        states = agent.worker_states
        if states is not None and len(states) != n:
            self.pending.messages.append(
                f"the checkpoint holds {len(states)} workers' state and this run has "
                f"num_workers: {n}; the workers start from fresh environments")
            states = None
        for worker in range(n):
            self._create(worker, None if states is None else states[worker], restarts=0)

    def run_until(self, step: int, stop: Callable[[], bool]) -> Iterator[Progress]:
        ray = self.ray
        held: dict[int, Any] = {}
        last_report = time.monotonic()
        for worker in self.actors:
            self._call(worker, step)
        while True:
            until = 0 if stop() else step
            calls = {a.call: w for w, a in self.actors.items() if a.call is not None}
            ready, _ = ray.wait(list(calls), num_returns=1, timeout=POLL_S) if calls else ([], [])
            for ref in ready:
                worker = calls[ref]
                self.actors[worker].call = None
                try:
                    report = ray.get(ref)
                except Exception as exc:
                    self._failed(worker, _actor_failure(exc), held)
                    continue
                self.env_steps = max(self.env_steps, int(report["env_steps"]))
                self.pending.add(report["returns"], report["length_sum"], report["metrics"])
                if report["held"]:
                    held[worker] = report["state"]
            for worker, actor in self.actors.items():
                if actor.call is None and worker not in held:  # went on, or was restarted
                    self._call(worker, until)
            now = time.monotonic()
            for worker, actor in list(self.actors.items()):
                if actor.call is not None and now - actor.since > self.params.worker_timeout:
                    self._failed(worker, f"hung: a call of {CALL_S:g} s did not return in "
                                         f"{self.params.worker_timeout:g} s "
                                         f"(algorithm.worker_timeout); it was killed", held)
            if len(held) == len(self.actors):
                self._pull(held)
                yield self.pending.progress(self.env_steps, held=True)
                return
            if now - last_report >= 0.5 or self.pending.messages:
                last_report = now
                yield self.pending.progress(self.env_steps)

    def agent_restored(self) -> None:
        """The trainer rolled its agent back (workers hold): the parameter server takes the
        restored network and optimizer, and the workers get them with their next update."""
        self.ray.get(self.server.load.remote(self.agent.model.state_dict(),
                                             self.agent.optimizer.state_dict()),
                     timeout=self.params.worker_timeout)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for actor in self.actors.values():
            self._kill(actor.handle)
        if self.server is not None:
            self._kill(self.server)
        if self.started_ray:
            self.ray.shutdown()

    # --- supervision ---------------------------------------------------------------------

    def _create(self, worker: int, state: Any, *, restarts: int) -> None:
        seed = worker_seed(self.seed, worker, restarts, self.env_steps)
        worker_cls = self.ray.remote(num_cpus=self.params.worker_cpus)(Worker)
        handle = worker_cls.options(name=None).remote(self.config, seed, state, self.server,
                                                      self._level())
        self.actors[worker] = _Actor(handle=handle, restarts=restarts)

    def _call(self, worker: int, until: int) -> None:
        actor = self.actors[worker]
        actor.call = actor.handle.run.remote(until, CALL_S, self._level())
        actor.since = time.monotonic()

    def _level(self) -> float | None:
        """The level of the trainer's exploration controller (None: the run has none)."""
        exploration = self.trainer.exploration
        return None if exploration is None else float(exploration.value(self.env_steps))

    def _pull(self, held: dict[int, Any]) -> None:
        """Copy the global network and optimizer into the trainer's agent (workers hold)."""
        try:
            model, optimizer, steps = self.ray.get(self.server.state.remote(),
                                                   timeout=self.params.worker_timeout)
        except Exception as exc:
            raise RunError(f"a3c's parameter server failed: {_actor_failure(exc)}; the "
                           f"checkpoint keeps the global model of the last hold") from None
        self.agent.model.load_state_dict(model)
        load_optimizer_state(self.agent.optimizer, optimizer)
        self.env_steps = int(steps)
        self.agent.env_steps = self.env_steps
        self.agent.worker_states = [held[w] for w in sorted(held)]

    def _failed(self, worker: int, why: str, held: dict[int, Any]) -> None:
        actor = self.actors[worker]
        self._kill(actor.handle)
        held.pop(worker, None)
        self.pending.messages.append(restart_or_stop(
            self.params, f"a3c worker {worker} (Ray actor)", why, actor.restarts,
            self.trainer.run_dir))
        self._create(worker, None, restarts=actor.restarts + 1)  # run_until calls it

    def _kill(self, handle: Any) -> None:
        try:
            self.ray.kill(handle, no_restart=True)
        except Exception as exc:  # already gone
            del exc


def _actor_failure(exc: BaseException) -> str:
    """A Ray error as one line: a dead actor, or the worker's own exception."""
    name = type(exc).__name__
    if "ActorDied" in name or "ActorError" in name or "ActorUnavailable" in name:
        return "died (its Ray actor is gone: killed, out of memory, or its node was lost)"
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"raised {describe(cause)}"
    return f"raised {describe(exc)}"
