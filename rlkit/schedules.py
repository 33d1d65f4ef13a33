"""Values that change with training progress: learning rates, clip ranges, epsilon.

In YAML a scheduled value is either a number (constant) or a mapping::

    learning_rate: {kind: linear, start: 1.0e-3, end: 0.0}
    epsilon: {kind: linear, start: 1.0, end: 0.04, fraction: 0.16}

``progress`` runs from 0 (first step) to 1 (``train.total_steps``); a schedule reaches ``end``
after ``fraction`` of the run and stays there.

A key's range (``param(..., gt=0.0)``) applies to every value its schedule takes: ``start`` and
``end`` (only ``start`` for ``kind: constant``), so ``lr: {start: 3.0e-4, end: -1.0}`` is
refused like ``lr: -1.0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from rlkit.validation import param


@dataclass(kw_only=True, frozen=True)
class Schedule:
    """A value interpolated over training progress."""

    kind: Literal["constant", "linear", "exponential"] = "linear"
    """How to move from ``start`` to ``end``: exponential interpolates the logarithm."""
    start: float
    """Value at the first step."""
    end: float = 0.0
    """Value once ``fraction`` of training is done."""
    fraction: float = param(1.0, gt=0.0, le=1.0)
    """Share of ``train.total_steps`` over which the value moves from start to end."""

    def __post_init__(self) -> None:
        if self.kind == "exponential" and (self.start <= 0 or self.end <= 0):
            raise ValueError("an exponential schedule needs start > 0 and end > 0")

    def ranged_values(self) -> dict[str, float]:
        """The values the key's range applies to, by name (what the schedule can take)."""
        if self.kind == "constant":
            return {"start": self.start}
        return {"start": self.start, "end": self.end}


Scheduled = float | Schedule


def value_at(value: Scheduled, progress: float) -> float:
    """The value of a number or :class:`Schedule` at ``progress`` in [0, 1]."""
    if not isinstance(value, Schedule):
        return float(value)
    if value.kind == "constant":
        return value.start
    t = min(max(progress / value.fraction, 0.0), 1.0)
    if value.kind == "linear":
        return value.start + t * (value.end - value.start)
    return math.exp(math.log(value.start) + t * (math.log(value.end) - math.log(value.start)))
