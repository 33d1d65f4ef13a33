"""rlkit plugin: registers the torch-native environments' gymnasium ids (``rlkit/...``) and
vouches for the wrappers of :mod:`rlkit_envs.wrappers`."""

from __future__ import annotations

from collections.abc import Callable

from rlkit.hookspecs import hookimpl
from rlkit_envs.registration import register_all


@hookimpl
def register_envs(register: Callable[..., None]) -> None:
    register_all(register)


@hookimpl
def register_wrappers(register: Callable[..., None]) -> None:
    # by reference: the module is imported only when an env uses the wrapper
    register("rlkit_envs.wrappers:SelectObservation",
             description="keep some components of a flat Box observation (hide velocities)")
    register("rlkit_envs.wrappers:ShiftDiscreteActions",
             description="renumber a Discrete(n) action space to start elsewhere (start=-1)")
