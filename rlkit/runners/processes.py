"""A3C's workers as processes on this machine (``torch.multiprocessing``).

The global network's parameters and the optimizer's statistics live in shared memory; each
worker process holds a :class:`~rlkit.runners.learner.Learner` and applies its gradients to
them directly (:class:`SharedModelStep`), lock-free unless ``lock: true``. The trainer's
process only supervises: it counts env steps (a shared counter), gathers finished episodes and
metrics from a pipe per worker (a worker killed while writing breaks only its own pipe, where
a shared queue's lock would block every other worker), and -- for each evaluation or
checkpoint -- asks the workers to hold at their next step boundary
(:meth:`ProcessDriver.run_until`).

Failures are bounded: a worker that raises reports its error on its pipe; one that dies
(SIGKILL, the out-of-memory killer) is seen by its exit code within :data:`POLL_S`; one that
stops reporting for ``worker_timeout`` seconds is killed. Each is restarted or ends the run
(``on_worker_failure``). Workers exit when the trainer's process is gone (a parent-death signal
on Linux, and a check at every step boundary), so none is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_for
from typing import Any

import torch
import torch.multiprocessing as tmp
from torch import nn

from rlkit.errors import RunError
from rlkit.failures import describe
from rlkit.optim import Optimizer
from rlkit.runners.learner import Learner, RemoteLevel, worker_seed
from rlkit.specs import Progress

__all__ = ["ProcessDriver", "SharedModelStep", "WorkerFailed", "restart_or_stop"]

POLL_S = 0.05
"""How often the supervisor looks at its workers' pipes and processes."""
REPORT_S = 0.25
"""How often a running worker reports its episodes and metrics."""
HOLD_POLL_S = 0.002
"""How often a holding worker checks whether it may go on."""


class WorkerFailed(RunError):
    """An A3C worker failed and is not restarted; the message names it and why."""


class SharedModelStep:
    """A worker's sink: the local gradients go to the shared global parameters, the shared
    optimizer steps them, and the global weights come back into the local parameters.

    :param lock: taken around all of it when given (``lock: true``); the worker's id is written
        to ``holder`` while it holds it, so that a worker killed while holding it can have it
        released for the others.
    """

    def __init__(self, local: list[nn.Parameter], model: nn.Module, optimizer: Optimizer,
                 lock: Any | None, holder: Any, worker: int) -> None:
        self.local: list[torch.Tensor] = list(local)
        self.shared: list[torch.Tensor] = list(model.parameters())
        self.optimizer = optimizer
        self.param_groups = optimizer.param_groups
        self.lock = lock
        self.holder = holder
        self.worker = worker

    def step(self) -> None:
        context = self._locked() if self.lock is not None else contextlib.nullcontext()
        with context:
            if self.local[0].grad is not None:
                for shared, local in zip(self.shared, self.local, strict=True):
                    shared.grad = local.grad
                self.optimizer.step()
                for shared in self.shared:
                    shared.grad = None
            with torch.no_grad():
                torch._foreach_copy_(self.local, self.shared)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock: Any = self.lock
        if not lock.acquire(timeout=60.0):
            raise RuntimeError("the update lock was not released for 60 s (a worker that held "
                               "it is stuck)")
        self.holder.value = self.worker + 1
        try:
            yield
        finally:
            self.holder.value = 0
            lock.release()

    def state_dict(self) -> dict[str, Any]:
        return {}  # the shared optimizer is saved with the global agent

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@dataclass
class _Control:
    """Shared counters and flags between the supervisor and its workers."""

    steps: Any          # the run's env steps (all workers)
    hold_at: Any        # workers hold once ``steps`` reaches this
    generation: Any     # bumped to let holding workers go on
    stop: Any           # an Event: workers exit
    lock: Any | None    # the update lock (lock: true)
    holder: Any         # 1 + id of the worker holding the lock, 0: nobody
    level: Any          # the exploration level the trainer's controller sets (NaN: none)


@dataclass
class _Worker:
    process: Any
    reader: Any  # the parent's end of the worker's pipe
    seen: float
    restarts: int = 0
    failed: bool = False
    eof: bool = False  # its pipe is closed: it exited (or is exiting)


@dataclass
class _Pending:
    """What the workers reported since the supervisor's last :class:`Progress`."""

    returns: list[float] = field(default_factory=list)
    length_sum: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)

    def add(self, returns: list[float], length_sum: int, metrics: Mapping[str, float]) -> None:
        self.returns.extend(returns)
        self.length_sum += length_sum
        if metrics:
            self.metrics = dict(metrics)

    def progress(self, steps: int, *, held: bool = False) -> Progress:
        report = Progress(env_steps=steps, returns=tuple(self.returns),
                          length_sum=self.length_sum, metrics=self.metrics,
                          messages=tuple(self.messages), held=held)
        self.returns, self.length_sum, self.metrics, self.messages = [], 0, {}, []
        return report


class ProcessDriver:
    """Runs ``num_workers`` A3C workers as processes (see the module docstring).

    :param trainer: the :class:`~rlkit.loop.Trainer` whose agent is the global model.
    """

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.agent = trainer.agent
        self.params = trainer.experiment.algorithm.params
        self.config = trainer.experiment.to_data()
        self.seed = int(trainer.experiment.train.seed)
        self.context = tmp.get_context(self.params.start_method)
        ctx = self.context
        self.control = _Control(
            steps=ctx.Value("q", int(trainer.env_steps)), hold_at=ctx.Value("q", 0),
            generation=ctx.Value("q", 0), stop=ctx.Event(),
            lock=ctx.Lock() if self.params.lock else None, holder=ctx.Value("i", 0),
            level=ctx.Value("d", float("nan")))
        self.exploration = trainer.exploration  # adaptive controllers see every worker's returns
        self.workers: dict[int, _Worker] = {}
        self.pending = _Pending()
        self.closed = False

    # --- the Driver protocol -------------------------------------------------------------

    def start(self) -> None:
        self.agent.model.share_memory()
        self.agent.optimizer.share_memory()
        n = self.params.num_workers
        states = self.agent.worker_states
        if states is not None and len(states) != n:
            self.pending.messages.append(
                f"the checkpoint holds {len(states)} workers' state and this run has "
                f"num_workers: {n}; the workers start from fresh environments")
            states = None
        self._share_level()
        for worker in range(n):
            self._spawn(worker, None if states is None else states[worker], restarts=0)

    def _share_level(self) -> None:
        if self.exploration is not None:
            self.control.level.value = float(self.exploration.value(
                int(self.control.steps.value)))

    def run_until(self, step: int, stop: Callable[[], bool]) -> Iterator[Progress]:
        control = self.control
        control.hold_at.value = step
        with control.generation.get_lock():
            control.generation.value += 1
            generation = control.generation.value
        held: dict[int, Any] = {}
        last_report = time.monotonic()
        while True:
            if stop() and control.hold_at.value != 0:
                control.hold_at.value = 0  # hold at the next step boundary
            self._read_pipes(generation, held)
            self._check_workers(held)
            self._share_level()
            now = time.monotonic()
            if len(held) == len(self.workers):
                self.agent.worker_states = [held[w] for w in sorted(held)]
                self.agent.env_steps = control.steps.value
                yield self.pending.progress(control.steps.value, held=True)
                return
            if now - last_report >= 0.5 or self.pending.messages:
                last_report = now
                yield self.pending.progress(control.steps.value)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.control.stop.set()
        with self.control.generation.get_lock():
            self.control.generation.value += 1
        deadline = time.monotonic() + 5.0
        for worker in self.workers.values():
            worker.process.join(timeout=max(deadline - time.monotonic(), 0.0))
        for worker in self.workers.values():
            _stop_process(worker.process)
            worker.reader.close()

    # --- supervision ---------------------------------------------------------------------

    def _spawn(self, worker: int, state: Any, *, restarts: int) -> None:
        seed = worker_seed(self.seed, worker, restarts, int(self.control.steps.value))
        reader, writer = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=_worker_main, name=f"rlkit-a3c-worker-{worker}", daemon=True,
            args=(worker, self.config, seed, state, self.agent.model, self.agent.optimizer,
                  self.control, writer, os.getpid()))
        process.start()
        writer.close()  # the worker holds the only writing end: its exit closes the pipe
        self.workers[worker] = _Worker(process=process, reader=reader, seen=time.monotonic(),
                                       restarts=restarts)

    def _read_pipes(self, generation: int, held: dict[int, Any]) -> None:
        live = {w.reader: (i, w) for i, w in self.workers.items() if not (w.failed or w.eof)}
        if not live:
            time.sleep(POLL_S)
            return
        ready: list[Any] = wait_for(list(live), timeout=POLL_S)
        for reader in ready:
            worker, record = live[reader]
            try:
                while reader.poll():
                    self._handle(worker, record, reader.recv(), generation, held)
                    if record.failed:
                        break
            except (EOFError, OSError):
                record.eof = True  # _check_workers sees its exit code

    def _handle(self, worker: int, record: _Worker, message: tuple[Any, ...], generation: int,
                held: dict[int, Any]) -> None:
        kind, *rest = message
        record.seen = time.monotonic()
        if kind == "progress":
            self.pending.add(*rest)
        elif kind == "held":
            returns, length_sum, metrics, state, gen = rest
            self.pending.add(returns, length_sum, metrics)
            if gen == generation:
                held[worker] = state
        elif kind == "error":
            self._failed(worker, f"raised {rest[0]}", held)

    def _check_workers(self, held: dict[int, Any]) -> None:
        now = time.monotonic()
        for worker, record in list(self.workers.items()):
            if record.failed:
                continue
            code = record.process.exitcode
            if code is None and record.eof:
                record.process.join(timeout=1.0)  # its pipe closed: it is exiting
                code = record.process.exitcode if record.process.exitcode is not None else -9
            if code is not None:
                self._failed(worker, f"died ({_exit_description(code)})", held)
            elif worker not in held and now - record.seen > self.params.worker_timeout:
                self._failed(worker, f"hung: nothing from it for {self.params.worker_timeout:g} "
                                     f"s (algorithm.worker_timeout); it was killed", held)

    def _failed(self, worker: int, why: str, held: dict[int, Any]) -> None:
        record = self.workers[worker]
        record.failed = True
        record.process.join(timeout=1.0)  # a worker that reported its error is exiting
        _stop_process(record.process)
        record.reader.close()
        held.pop(worker, None)
        control = self.control
        if control.lock is not None and control.holder.value == worker + 1:
            control.holder.value = 0
            control.lock.release()  # it died holding the update lock
        self.pending.messages.append(restart_or_stop(
            self.params, f"a3c worker {worker}", why, record.restarts, self.trainer.run_dir))
        self._spawn(worker, None, restarts=record.restarts + 1)


def restart_or_stop(params: Any, who: str, why: str, restarts: int, run_dir: Any) -> str:
    """The failure policy (``on_worker_failure``, ``max_restarts``) for a worker that has been
    restarted ``restarts`` times: the message announcing its restart, or :class:`WorkerFailed`
    saying why the run stops."""
    if params.on_worker_failure == "restart" and restarts < params.max_restarts:
        return (f"{who} {why}; restarted it ({restarts + 1} of algorithm.max_restarts: "
                f"{params.max_restarts})")
    reason = ("algorithm.on_worker_failure: stop" if params.on_worker_failure == "stop"
              else f"it was restarted {restarts} times already (algorithm.max_restarts: "
                   f"{params.max_restarts})")
    raise WorkerFailed(f"{who} {why}; the run stops ({reason}). The global model is kept in "
                       f"the checkpoint; fix the cause and resume with rlkit train --resume "
                       f"{run_dir}.")


def _worker_main(worker: int, config: Mapping[str, Any], seed: int, state: Any,
                 model: nn.Module, optimizer: Optimizer, control: _Control, pipe: Any,
                 parent: int) -> None:
    """A worker process: build the learner, then segments until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    _die_with_parent()
    learner: Learner | None = None
    try:
        learner = Learner(config, seed)
        learner.connect(SharedModelStep(learner.agent.params, model, optimizer, control.lock,
                                        control.holder, worker))
        if state is not None:
            learner.restore(state, seed)
        if not math.isnan(control.level.value):  # the trainer's controller sets the level
            learner.agent.exploration = RemoteLevel(lambda: control.level.value)
        metrics: dict[str, float] = {}
        last_report = time.monotonic()
        while not control.stop.is_set():
            if os.getppid() != parent:
                return  # the supervisor is gone
            generation = control.generation.value
            if control.steps.value >= control.hold_at.value:
                pipe.send(("held", *learner.drain(), metrics, learner.state(), generation))
                metrics = {}
                while (control.generation.value == generation and not control.stop.is_set()
                       and os.getppid() == parent):
                    time.sleep(HOLD_POLL_S)
                last_report = time.monotonic()
                continue
            metrics = learner.segment(int(control.steps.value)) or metrics
            with control.steps.get_lock():
                control.steps.value += learner.steps_per_segment
            now = time.monotonic()
            if now - last_report >= REPORT_S:
                last_report = now
                pipe.send(("progress", *learner.drain(), metrics))
                metrics = {}
    except BaseException as exc:  # reported, then the process ends
        with contextlib.suppress(Exception):
            pipe.send(("error", describe(exc), traceback.format_exc()))
    finally:
        if learner is not None:
            with contextlib.suppress(Exception):
                learner.close()
        pipe.close()


def _die_with_parent() -> None:
    """Linux: ask the kernel to SIGKILL this process when its parent dies (else the step
    boundary check notices)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _stop_process(process: Any) -> None:
    """Terminate, then kill, a process that is still running; reap it."""
    if process.exitcode is None:
        process.terminate()
        process.join(timeout=2.0)
    if process.exitcode is None:
        process.kill()
        process.join(timeout=2.0)


def _exit_description(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
