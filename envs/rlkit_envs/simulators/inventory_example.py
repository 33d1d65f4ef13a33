"""An rlkit agent learns to reorder stock inside a simulation that owns the loop.

:class:`~rlkit_envs.simulators.inventory.InventorySimulation` is not a gymnasium env: it runs
its own days and calls a controller every morning and evening. This example declares what
one warehouse observes and decides as gymnasium spaces, builds PPO for them with
:meth:`rlkit.Agent.from_config` (no env is built), and plugs it in as the controller:

* morning (:meth:`LearningController.decide`): ask -- ``agent.act(features)`` picks one of
  :data:`ORDER_QUANTITIES` for each of the 64 warehouses;
* evening (:meth:`LearningController.day_done`): tell -- the day's cost (negated and scaled)
  is the reward, tomorrow morning's features the next observation; ``agent.update()`` learns
  when PPO's rollout is full. The simulation never ends, so every ``period_days`` days the
  transition is marked truncated: the return of a period is reported, and the value of the
  next morning is bootstrapped from, as the days go on without a reset.

After training, the agent (greedy) and :class:`BaseStockController` -- order up to a fixed
level, the textbook newsvendor level for each warehouse's average demand -- run the same
fresh simulation (same seed, same customers) and their mean daily costs are compared::

    python -m rlkit_envs.simulators.inventory_example          # or:
    from rlkit_envs.simulators.inventory_example import run_inventory_example
    result = run_inventory_example(train_days=1000, seed=0)
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from statistics import NormalDist
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import rlkit
from rlkit.deploy.agent import Agent
from rlkit.deploy.session import Session
from rlkit_envs.simulators.inventory import DayReport, InventoryConfig, InventorySimulation

__all__ = ["AGENT_CONFIG", "ORDER_QUANTITIES", "BaseStockController", "LearningController",
           "features", "inventory_spaces", "run_inventory_example"]

ORDER_QUANTITIES = np.arange(0, 21)
"""The orders an agent can place: action ``i`` orders ``ORDER_QUANTITIES[i]`` units."""

SCALE = 10.0
"""Units and costs are divided by this in observations and rewards."""

AGENT_CONFIG: dict[str, Any] = {
    "algorithm": {"name": "ppo", "n_steps": 16, "batch_size": 256, "n_epochs": 4,
                  "gamma": 0.9, "gae_lambda": 0.9, "ent_coef": 0.0,
                  "optimizer": {"name": "adam", "lr": 1.0e-3}},
    "backbone": {"name": "mlp", "hidden_sizes": [64, 64]},
    "train": {"total_steps": 100_000, "seed": 0},
}
"""The agent's experiment config: no ``env`` section, as no env exists. ``train.total_steps``
is set to the training days times the warehouses."""


def inventory_spaces(config: InventoryConfig) -> tuple[gym.spaces.Box, gym.spaces.Discrete]:
    """What one warehouse observes and decides: :func:`features` and an index into
    :data:`ORDER_QUANTITIES`."""
    size = 1 + config.lead_time + config.lead_time + 1
    return (gym.spaces.Box(0.0, np.inf, (size,), np.float32),
            gym.spaces.Discrete(len(ORDER_QUANTITIES)))


def features(sim: InventorySimulation) -> np.ndarray[Any, Any]:
    """Each warehouse's morning, ``(num_warehouses, 2 * lead_time + 2)`` float32: units in
    stock, on order (by arrival day) and the mean demand forecast for today and the
    ``lead_time`` days after (what the next order must cover), all divided by :data:`SCALE`."""
    lead = sim.config.lead_time
    parts = [sim.stock[:, None], sim.pipeline, sim.forecast(lead + 1)]
    return (np.concatenate(parts, axis=1) / SCALE).astype(np.float32)


class BaseStockController:
    """Order up to a fixed level: ``level - (stock + on order)``, at least 0.

    The level covers the mean demand of the ``lead_time + 1`` days an order must last, at each
    warehouse's average over the season, plus safety stock for the newsvendor service level
    ``lost_sale_cost / (lost_sale_cost + holding_cost)``: ``S = m + z * sqrt(m)`` with
    ``m = (lead_time + 1) * base_demand`` (Poisson demand, normal approximation). It does
    not follow the season.
    """

    def __init__(self, sim: InventorySimulation) -> None:
        cfg = sim.config
        z = NormalDist().inv_cdf(cfg.lost_sale_cost / (cfg.lost_sale_cost + cfg.holding_cost))
        mean = (cfg.lead_time + 1) * sim.base_demand
        self.level = np.ceil(mean + z * np.sqrt(mean)).astype(np.int64)

    def decide(self, sim: InventorySimulation) -> np.ndarray[Any, Any]:
        return np.maximum(self.level - sim.position(), 0)

    def day_done(self, sim: InventorySimulation, report: DayReport) -> None:
        pass


class LearningController:
    """An rlkit agent as the simulation's controller: ask in the morning, tell in the evening.

    :param agent: built for :func:`inventory_spaces` and ``num_envs = num_warehouses``.
    :param learn: explore and learn from each day; ``False``: act greedily, learn nothing.
    :param period_days: mark every ``period_days``-th day truncated (a reporting period).
    :param session: record each transition there (logs, checkpoints), if given.
    """

    def __init__(self, agent: Agent, *, learn: bool = True, period_days: int = 100,
                 session: Session | None = None) -> None:
        self.agent = agent
        self.learn = learn
        self.period_days = period_days
        self.session = session
        self._obs: torch.Tensor | None = None
        self._action: torch.Tensor | None = None

    def decide(self, sim: InventorySimulation) -> np.ndarray[Any, Any]:
        obs = torch.from_numpy(features(sim))
        action = self.agent.act(obs, explore=self.learn)
        self._obs, self._action = obs, action
        return ORDER_QUANTITIES[action.cpu().numpy()]

    def day_done(self, sim: InventorySimulation, report: DayReport) -> None:
        if not self.learn:
            return
        assert self._obs is not None and self._action is not None
        # numpy arrays and plain bools (one for every warehouse), converted and checked
        transition = rlkit.transition(
            obs=self._obs, action=self._action, reward=-report.cost / SCALE,
            next_obs=features(sim), terminated=False,
            truncated=(report.day + 1) % self.period_days == 0, like=self.agent)
        self.agent.observe(transition)
        if self.session is not None:
            self.session.record(transition)
        metrics = self.agent.update()
        if metrics and self.session is not None:
            self.session.log(metrics)


def run_inventory_example(train_days: int = 1000, seed: int = 0, *, eval_days: int = 500,
                          config: InventoryConfig | None = None,
                          run_dir: str | Path | None = None) -> dict[str, Any]:
    """Train an agent inside a running simulation, then compare it with the base-stock
    policy on a fresh simulation with other customers.

    :param train_days: simulated days of online learning (each is one step of every
        warehouse: ``train_days * num_warehouses`` agent steps).
    :param seed: seeds the training simulation (``seed``), the agent (``seed``) and the
        comparison simulation (``seed + 1000``).
    :param eval_days: days of the comparison.
    :param config: the warehouses (default: :class:`InventoryConfig`'s 64).
    :param run_dir: keep logs, a checkpoint and ``summary.json`` there (:class:`rlkit.Session`).
    :returns: ``agent_cost`` and ``heuristic_cost`` (mean daily cost per warehouse in the
        comparison), ``improvement`` (the heuristic's cost saved, as a fraction),
        ``train_days``, ``agent_steps``, ``eval_days``, ``seed`` and ``wall_time_s`` (of the
        training).
    """
    config = config or InventoryConfig()
    observation_space, action_space = inventory_spaces(config)
    cfg = {**AGENT_CONFIG, "train": {**AGENT_CONFIG["train"], "seed": seed,
                                     "total_steps": train_days * config.num_warehouses}}
    agent = Agent.from_config(cfg, observation_space=observation_space,
                              action_space=action_space, num_envs=config.num_warehouses)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:  # the session, if any, is closed on the way out
        session = None if run_dir is None else stack.enter_context(
            Session(agent, run_dir=run_dir, log_every=100 * config.num_warehouses))
        learner = LearningController(agent, session=session)
        InventorySimulation(config, seed=seed).run(train_days, learner)
    wall_time = time.perf_counter() - started

    costs = {}
    for name in ("agent", "heuristic"):
        sim = InventorySimulation(config, seed=seed + 1000)
        controller = (LearningController(agent, learn=False) if name == "agent"
                      else BaseStockController(sim))
        costs[name] = float(sim.run(eval_days, controller).mean())
    return {"agent_cost": costs["agent"], "heuristic_cost": costs["heuristic"],
            "improvement": 1.0 - costs["agent"] / costs["heuristic"],
            "train_days": train_days, "agent_steps": train_days * config.num_warehouses,
            "eval_days": eval_days, "seed": seed, "wall_time_s": round(wall_time, 2)}


if __name__ == "__main__":
    torch.set_num_threads(1)
    result = run_inventory_example()
    print(f"mean daily cost per warehouse over {result['eval_days']} days: agent "
          f"{result['agent_cost']:.2f}, base-stock policy {result['heuristic_cost']:.2f} "
          f"({100 * result['improvement']:.0f}% less); trained {result['train_days']} days "
          f"({result['agent_steps']:,} agent steps) in {result['wall_time_s']:.1f} s")
