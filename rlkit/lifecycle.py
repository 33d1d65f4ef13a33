"""Lifecycle hooks with each plugin's failures kept to that plugin.

The trainer fires the coarse lifecycle hooks (``run_started``, ``update_finished``,
``evaluation_finished``, ``checkpoint_saved``, ``run_finished``) through
:class:`LifecycleHooks`, which calls every implementing plugin on its own. A plugin whose hook
raises -- ``sys.exit`` included -- is reported once per hook by name and distribution, and the
other plugins and the run go on; with ``train.plugin_errors: stop`` the failure is raised as a
:class:`~rlkit.errors.PluginError` once every plugin has had the hook, so the trainer stops at
that point with a checkpoint. Ctrl-C (``KeyboardInterrupt``) is never a plugin's failure.

These hooks fire per run, iteration, evaluation or checkpoint, never per environment step, so
calling each plugin separately (a few microseconds each) costs nothing measurable.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from rlkit.errors import PluginError
from rlkit.failures import describe
from rlkit.plugins import Plugins, Provider

__all__ = ["HookFailure", "LifecycleHooks"]

PluginErrors = Literal["warn", "stop"]


@dataclass
class HookFailure:
    """A plugin's hook that raised: who, which hook, the first error and how often."""

    provider: Provider
    hook: str
    error: str
    count: int = 1

    def message(self, stop: bool) -> str:
        """One line for the user: the plugin, its distribution, the hook and what follows."""
        if self.hook == "run_finished":
            then = "the run had ended already (summary.json is written)"
        elif stop:
            then = "the run stops here (train.plugin_errors: stop)"
        else:
            then = "the run goes on without it (set train.plugin_errors: stop to stop instead)"
        return f"{self.provider} failed in its {self.hook} hook: {self.error}; {then}."

    def to_data(self) -> dict[str, Any]:
        return {"plugin": self.provider.plugin, "distribution": self.provider.distribution,
                "hook": self.hook, "error": self.error, "count": self.count}


class LifecycleHooks:
    """Fires lifecycle hooks plugin by plugin.

    :param plugins: the run's plugin session.
    :param on_error: ``warn`` (report once per plugin and hook, go on) or ``stop`` (report and
        raise :class:`~rlkit.errors.PluginError` after the hook has reached every plugin).
    """

    def __init__(self, plugins: Plugins, on_error: PluginErrors = "warn") -> None:
        self.plugins = plugins
        self.on_error = on_error
        self.failures: dict[tuple[str, str], HookFailure] = {}
        """What failed so far, by (plugin, hook)."""
        self.stopping = False
        """Set once the run is stopping (after an error): failures are then only reported."""
        self._callers: dict[str, list[tuple[Provider, Callable[..., Any]]]] = {}

    def fire(self, hook: str, **kwargs: Any) -> None:
        """Call ``hook`` on every plugin that implements it, each failure kept to its plugin.

        :raises PluginError: with ``on_error="stop"``, after every plugin had the hook, if one
            of them failed.
        """
        callers = self._callers.get(hook)
        if callers is None:
            callers = self._callers[hook] = self.plugins.callers_by_plugin(hook)
        stop = self.on_error == "stop" and not self.stopping
        failed: tuple[HookFailure, BaseException] | None = None
        for provider, call in callers:
            try:
                call(**kwargs)
            except (Exception, SystemExit) as exc:
                failure = self._record(provider, hook, exc, stop)
                failed = failed or (failure, exc)
        if failed is not None and stop:
            self.stopping = True
            raise PluginError(failed[0].message(stop=True)) from failed[1]

    def _record(self, provider: Provider, hook: str, exc: BaseException,
                stopping: bool) -> HookFailure:
        key = (provider.plugin, hook)
        known = self.failures.get(key)
        if known is not None:
            known.count += 1
            return known
        failure = self.failures[key] = HookFailure(provider, hook, describe(exc))
        if not stopping:  # stop mode reports it as the run's error instead
            warnings.warn(failure.message(stop=False), RuntimeWarning, stacklevel=3)
        return failure

    def summary(self) -> list[dict[str, Any]]:
        """The failures as plain data, for ``summary.json``."""
        return [f.to_data() for f in self.failures.values()]

