"""rlkit: a plugin-based reinforcement-learning framework.

The pieces most programs need::

    from rlkit import Plugins, load_experiment, Trainer
    plugins = Plugins.load()
    summary = Trainer(load_experiment("experiments/cartpole.yaml", plugins), plugins).run()

A program that owns the loop tells an agent what happened with
``agent.observe(rlkit.transition(obs=..., action=..., ..., like=agent))``, which converts
numpy arrays and numbers and checks every field (:mod:`rlkit.transitions`).

The contracts for plugin authors live in :mod:`rlkit.interfaces` and :mod:`rlkit.hookspecs`;
``rlkit.testing`` holds the conformance checks they can run on their own algorithms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

PLUGIN_API = "1.0"
"""The version of the contract between rlkit and its plugins, ``"major.minor"``: the hooks,
the ``register`` signatures, the protocols in :mod:`rlkit.interfaces` and the helpers plugins
are documented to use. The major number changes when the contract breaks (a plugin written
for the old one may not work), the minor when it grows (plugins written for an older minor of
the same major keep working). A plugin module that sets ``RLKIT_PLUGIN_API = "1.0"`` is loaded
only by an rlkit whose major is the same and whose minor is the same or higher; see
docs/plugins.md ("Plugin API version")."""

__all__ = ["PLUGIN_API", "Agent", "Plugins", "Session", "Trainer", "Transition", "TransitionError",
           "TransitionSpec", "__version__", "begin_episodes", "check_transition", "hookimpl",
           "load_agent", "load_experiment", "load_policy", "separate_state", "transition"]

if TYPE_CHECKING:
    from rlkit.config import load_experiment
    from rlkit.deploy.agent import Agent
    from rlkit.deploy.policy import load_policy
    from rlkit.deploy.session import Session
    from rlkit.hookspecs import hookimpl
    from rlkit.interfaces import Transition, begin_episodes, separate_state
    from rlkit.loop import Trainer, load_agent
    from rlkit.plugins import Plugins
    from rlkit.transitions import TransitionError, TransitionSpec, check_transition, transition

_LAZY = {
    "Agent": "rlkit.deploy.agent",
    "Session": "rlkit.deploy.session",
    "Plugins": "rlkit.plugins",
    "Trainer": "rlkit.loop",
    "Transition": "rlkit.interfaces",
    "TransitionError": "rlkit.transitions",
    "TransitionSpec": "rlkit.transitions",
    "check_transition": "rlkit.transitions",
    "transition": "rlkit.transitions",
    "begin_episodes": "rlkit.interfaces",
    "separate_state": "rlkit.interfaces",
    "hookimpl": "rlkit.hookspecs",
    "load_agent": "rlkit.loop",
    "load_experiment": "rlkit.config",
    "load_policy": "rlkit.deploy.policy",
}


def __getattr__(name: str) -> Any:  # imports stay lazy so `rlkit --help` is instant
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rlkit' has no attribute {name!r}")
