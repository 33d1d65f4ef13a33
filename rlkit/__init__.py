"""rlkit: a plugin-based reinforcement-learning framework.

The pieces most programs need::

    from rlkit import Plugins, load_experiment, Trainer
    plugins = Plugins.load()
    summary = Trainer(load_experiment("experiments/cartpole.yaml", plugins), plugins).run()

The contracts for plugin authors live in :mod:`rlkit.interfaces` and :mod:`rlkit.hookspecs`;
``rlkit.testing`` holds the conformance checks they can run on their own algorithms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Plugins", "Trainer", "Transition", "__version__", "begin_episodes", "hookimpl",
           "load_agent", "load_experiment", "separate_state"]

if TYPE_CHECKING:
    from rlkit.config import load_experiment
    from rlkit.hookspecs import hookimpl
    from rlkit.interfaces import Transition, begin_episodes, separate_state
    from rlkit.loop import Trainer, load_agent
    from rlkit.plugins import Plugins

_LAZY = {
    "Plugins": "rlkit.plugins",
    "Trainer": "rlkit.loop",
    "Transition": "rlkit.interfaces",
    "begin_episodes": "rlkit.interfaces",
    "separate_state": "rlkit.interfaces",
    "hookimpl": "rlkit.hookspecs",
    "load_agent": "rlkit.loop",
    "load_experiment": "rlkit.config",
}


def __getattr__(name: str) -> Any:  # imports stay lazy so `rlkit --help` is instant
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rlkit' has no attribute {name!r}")
