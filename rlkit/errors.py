"""The errors rlkit reports to a user as one line, without a traceback.

They live in one module that imports nothing heavy, so that the command line can tell a user's
mistake from a bug before torch is imported (``rlkit --help`` never imports it). Each is
re-exported where it is raised: ``rlkit.plugins.PluginError``, ``rlkit.loop.RunError``,
``rlkit.checkpoint.CheckpointError``; :class:`~rlkit.validation.ConfigError` stays in
:mod:`rlkit.validation`.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "PluginError", "RunError"]


class PluginError(Exception):
    """A plugin is broken or two plugins conflict; the message names them."""


class RunError(Exception):
    """A run cannot start or continue; the message says why and what to do."""


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable or not an rlkit checkpoint (the message names it)."""
