"""rlkit plugin: registers the built-in runners (entry point ``runners``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlkit.hookspecs import hookimpl


def run_a3c(trainer: Any, max_steps: int | None) -> dict[str, Any]:
    """A3C's workers (processes or Ray actors, ``algorithm.backend``) driven by the trainer."""
    from rlkit.runners.a3c import run  # the runner's modules load only for a3c runs

    return run(trainer, max_steps)


@hookimpl
def register_runners(register: Callable[..., None]) -> None:
    register("a3c", run_a3c, algorithms=["a3c"],
             description="A3C's asynchronous workers: processes sharing the model's memory, "
                         "or Ray actors with a parameter server.")
