"""One A3C actor-learner, wherever it runs (a worker process, a Ray actor): its own
environments and a local copy of the agent, built from the run's configuration exactly as the
trainer builds them, and a *sink* that takes the place of the agent's optimizer: where the
agent would step its own optimizer, the sink applies the local gradient to the global model and
copies the global weights back.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Protocol

import torch
from torch import Tensor

from rlkit import seeding
from rlkit.config import resolve
from rlkit.environments import TorchVectorEnv, make_env
from rlkit.interfaces import EnvSpec, Transition
from rlkit.loop import build_agent, env_options
from rlkit.metrics import EpisodeStats
from rlkit.plugins import Plugins
from rlkit.snapshot import SnapshotUnsupported

__all__ = ["Learner", "RemoteLevel", "Sink", "worker_seed"]


class Sink(Protocol):
    """What an A3C worker's agent calls instead of its optimizer: ``step()`` applies the
    gradients in the local parameters' ``.grad`` to the global model and loads the global
    weights into the local parameters; ``param_groups`` carries the learning rate the agent
    sets before each update."""

    param_groups: list[dict[str, Any]]

    def step(self) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class RemoteLevel:
    """A worker's exploration controller when the run has one: the level the trainer's
    controller sets (it sees every worker's returns), read by the worker's agent through the
    controller interface."""

    def __init__(self, read: Any) -> None:
        self.read = read  # () -> float

    def value(self, step: int) -> float:
        return float(self.read())

    def observe_returns(self, returns: Tensor, step: int) -> None:
        pass  # the trainer's controller gets the returns

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


def worker_seed(seed: int, worker: int, restarts: int, env_steps: int) -> int:
    """The seed of worker ``worker`` after ``restarts`` restarts, started at ``env_steps``:
    different for every worker and every start, the same in every run with the same seed."""
    return (seed * 1_000_003 + 7_919 * (worker + 1) + 104_729 * restarts + env_steps) % 2**31


class Learner:
    """A worker's envs and local agent.

    :param config: the run's resolved configuration as plain data (``Experiment.to_data()``).
    :param seed: this worker's seed (its envs, its sampling, its network's initial weights --
        which the sink replaces by the global ones).
    """

    def __init__(self, config: Mapping[str, Any], seed: int) -> None:
        torch.set_num_threads(1)  # one core per worker: that is the point of having workers
        data = copy.deepcopy(dict(config))
        data["train"] = {**data["train"], "seed": seed, "device": "cpu"}
        plugins = Plugins.load()
        experiment = resolve(data, plugins)
        seeding.seed_everything(seed)
        self.env: TorchVectorEnv = make_env(env_options(experiment), device="cpu")
        spec = EnvSpec(observation_space=self.env.single_observation_space,
                       action_space=self.env.single_action_space, num_envs=self.env.num_envs)
        agent: Any = build_agent(experiment, plugins, spec, torch.device("cpu"))[0]
        self.agent = agent  # an A2C (the a3c algorithm's local learner)
        self.n_steps = int(agent.config.n_steps)
        self.steps_per_segment = self.n_steps * self.env.num_envs
        self.stats = EpisodeStats(self.env.num_envs, torch.device("cpu"))
        self.obs: Tensor = self.env.reset(seed=seed)
        # gymnasium seeds a space's own generator from entropy when something (its env
        # checker) first samples it; seeded here, a worker's env state is reproducible
        vector = self.env.env
        for i, space_owner in enumerate([vector, *getattr(vector, "envs", ())]):
            space_owner.action_space.seed(seed + i)
            space_owner.observation_space.seed(seed + i)

    def connect(self, sink: Sink) -> None:
        """Learn through ``sink`` from now on (and start from the global weights)."""
        self.agent.optimizer = sink
        sink.step()  # no gradient yet: only copies the global weights in

    def segment(self, run_steps: int) -> dict[str, float]:
        """``n_steps`` steps of every env, then one update through the sink.

        :param run_steps: the run's env steps so far (all workers), for the schedules.
        :returns: the update's metrics.
        """
        agent, env, stats = self.agent, self.env, self.stats
        agent.env_steps = run_steps  # learning-rate and entropy schedules follow the run
        obs = self.obs
        for _ in range(self.n_steps):
            action = agent.act(obs)
            step = env.step(action)
            agent.observe(Transition(obs, action, step.reward, step.next_obs,
                                     step.terminated, step.truncated, step.valid))
            stats.record(step.reward, step.terminated, step.truncated, step.valid)
            obs = step.obs
        self.obs = obs
        metrics: dict[str, float] = agent.update()
        return metrics

    def drain(self) -> tuple[list[float], int]:
        """Returns and summed lengths of the episodes finished since the last call."""
        metrics, returns = self.stats.drain()
        episodes = int(metrics.get("rollout/episodes", 0))
        return returns, round(metrics.get("rollout/ep_len_mean", 0.0) * episodes)

    # --- state, for checkpoints (taken while the worker holds: between two segments) -----

    def state(self) -> dict[str, Any]:
        """Everything but the weights (the global model's) to continue this worker exactly."""
        agent_state = dict(self.agent.state_dict())
        agent_state.pop("model", None)
        agent_state.pop("optimizer", None)
        try:
            env_state: dict[str, Any] | None = self.env.state_dict()
        except SnapshotUnsupported:
            env_state = None
        return {"agent": agent_state, "env": env_state, "obs": self.obs.clone(),
                "stats": self.stats.state_dict(), "rng": seeding.rng_state()}

    def restore(self, state: Mapping[str, Any], seed: int) -> None:
        """Continue from :meth:`state` (after :meth:`connect`); envs whose state was not kept
        restart from a reset with ``seed``."""
        agent_state = dict(state["agent"])
        agent_state["model"] = self.agent.model.state_dict()
        agent_state["optimizer"] = {}
        self.agent.load_state_dict(agent_state)
        if state.get("env") is not None:
            self.env.load_state_dict(state["env"])
            self.obs = state["obs"].clone()
        else:
            self.obs = self.env.reset(seed=seed)
            self.agent.begin_episodes(None)
        self.stats.load_state_dict(state["stats"])
        seeding.set_rng_state(state["rng"])

    def close(self) -> None:
        self.env.close()
