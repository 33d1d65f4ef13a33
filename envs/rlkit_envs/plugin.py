"""rlkit plugin: registers the torch-native environments' gymnasium ids (``rlkit/...``)."""

from __future__ import annotations

from collections.abc import Callable

from rlkit.hookspecs import hookimpl
from rlkit_envs.registration import register_all


@hookimpl
def register_envs(register: Callable[..., None]) -> None:
    register_all(register)
