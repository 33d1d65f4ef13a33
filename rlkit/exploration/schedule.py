"""``schedule``: an exploration level that follows a fixed schedule over training progress."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rlkit.schedules import Schedule, Scheduled, value_at
from rlkit.validation import param

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(kw_only=True)
class ScheduleExplorationConfig:
    """Exploration that follows a fixed schedule over training."""

    value: Scheduled = param(0.1, ge=0.0)
    """A number, or a schedule such as ``{kind: linear, start: 1.0, end: 0.05, fraction: 0.1}``."""


class ScheduleExploration:
    """Exploration level from a :class:`~rlkit.schedules.Schedule` over ``total_steps``."""

    def __init__(self, value: Scheduled, total_steps: int) -> None:
        self.schedule = value
        self.total_steps = max(int(total_steps), 1)

    def value(self, step: int) -> float:
        return value_at(self.schedule, step / self.total_steps)

    def observe_returns(self, returns: Tensor, step: int) -> None:
        """A fixed schedule ignores feedback."""

    def state_dict(self) -> dict[str, Any]:
        return {"total_steps": self.total_steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.total_steps = int(state["total_steps"])


def linear(start: float, end: float, fraction: float = 1.0) -> Schedule:
    """Shorthand for a linear :class:`Schedule` (used for algorithms' defaults)."""
    return Schedule(kind="linear", start=start, end=end, fraction=fraction)


def build_schedule(params: ScheduleExplorationConfig, total_steps: int) -> ScheduleExploration:
    return ScheduleExploration(params.value, total_steps)
