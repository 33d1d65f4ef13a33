"""Built-in exploration controllers (a default plugin, registered like any other).

An exploration controller gives the current exploration level -- epsilon for DQN and the
tabular methods, the entropy coefficient for PPO, the action-noise scale sigma for
deterministic policies (DDPG, TD3) -- and is told the returns of finished episodes:

* ``schedule`` (:mod:`rlkit.exploration.schedule`) follows a fixed schedule over training;
* ``gaussian`` and ``ornstein_uhlenbeck`` (:mod:`rlkit.exploration.noise`) give sigma from a
  schedule and the noise process a deterministic policy adds to its actions, one per env.
* ``adaptive`` (:mod:`rlkit.exploration.adaptive`) raises the level when a change detector
  (:mod:`rlkit.exploration.detectors`) finds that returns dropped, and lets it decay back as
  they recover; for DDPG/TD3 it is also the noise process.

Registered by reference, so listing plugins imports neither torch nor these modules.
"""

from __future__ import annotations

from collections.abc import Callable

from rlkit.exploration.schedule import (
    ScheduleExploration,
    ScheduleExplorationConfig,
    build_schedule,
    linear,
)
from rlkit.hookspecs import hookimpl

__all__ = ["ScheduleExploration", "ScheduleExplorationConfig", "build_schedule", "linear"]


@hookimpl
def register_exploration(register: Callable[..., None]) -> None:
    register("schedule", "rlkit.exploration.schedule:ScheduleExplorationConfig",
             "rlkit.exploration.schedule:build_schedule",
             description="Exploration that follows a fixed schedule over training.")
    register("gaussian", "rlkit.exploration.noise:GaussianNoiseConfig",
             "rlkit.exploration.noise:build_gaussian",
             description="Gaussian action noise, drawn afresh for every env and step.")
    register("ornstein_uhlenbeck", "rlkit.exploration.noise:OrnsteinUhlenbeckConfig",
             "rlkit.exploration.noise:build_ornstein_uhlenbeck",
             description="Ornstein-Uhlenbeck action noise: correlated in time, one process "
                         "per env, restarted at every episode start.")
    register("adaptive", "rlkit.exploration.adaptive:AdaptiveExplorationConfig",
             "rlkit.exploration.adaptive:build_adaptive",
             description="Exploration that rises when returns drop (a Page-Hinkley test) "
                         "and decays back as they recover.")
