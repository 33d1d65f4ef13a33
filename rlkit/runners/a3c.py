"""The ``a3c`` runner: start the configured backend's workers and let the trainer drive them."""

from __future__ import annotations

from typing import Any

from rlkit.errors import RunError

__all__ = ["run"]


def run(trainer: Any, max_steps: int | None) -> dict[str, Any]:
    """Train ``trainer``'s A3C agent with ``algorithm.num_workers`` asynchronous workers."""
    params = trainer.experiment.algorithm.params
    if trainer.device.type != "cpu":
        raise RunError(f"train.device: a3c's workers share the global model through CPU "
                       f"memory, so it runs on the CPU, not {trainer.device}; use --device cpu, "
                       f"or a2c or ppo with a torch-native env to train on {trainer.device}.")
    if params.backend == "ray":
        from rlkit.runners.ray_backend import RayDriver

        driver: Any = RayDriver(trainer)
    else:
        from rlkit.runners.processes import ProcessDriver

        driver = ProcessDriver(trainer)
    return trainer.driven_loop(driver, max_steps)
