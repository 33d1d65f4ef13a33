"""Change detectors on a stream of episode returns, for adaptive exploration.

:class:`PageHinkley` detects a *drop* in the mean of the returns (Page, 1954; Hinkley, 1971):
a sequential test that accumulates how far each return falls below the running mean, so a
sustained drop of any size is found after a delay that shrinks as the drop grows, while the
noise of a stationary stream almost never adds up to an alarm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["PageHinkley"]


class PageHinkley:
    """The Page-Hinkley test for a decrease in the mean, on standardised returns.

    Each return ``x_t`` is first standardised with the running mean and standard deviation of
    the returns *before* it, ``z_t = (x_t - mean_{t-1}) / scale_{t-1}``; then::

        m_t = sum_{i <= t} (z_i + delta)      cumulative deviation (falls when returns drop)
        M_t = max_{i <= t} m_i                its highest point so far
        PH_t = M_t - m_t                      the statistic; alarm when PH_t > threshold

    In a stationary stream ``z + delta`` has mean ``delta > 0``, so ``m_t`` climbs and
    ``PH_t`` stays near 0; once the mean drops by more than ``delta`` standard deviations,
    ``m_t`` falls and ``PH_t`` grows by about ``drop - delta`` per episode. The episode after
    the last peak ``M_t`` is the estimate of where the drop began (:attr:`run_length` counts
    the episodes since). After an alarm everything but the observed range is reset, so the
    test starts afresh on the new level.

    **Scale.** ``delta`` and ``threshold`` are in units of the returns' standard deviation
    (the classical CUSUM parametrisation: ``delta`` about half the smallest drop worth
    detecting, ``threshold`` the evidence required). Standardising makes the test invariant
    to shifting and scaling the rewards -- CartPole's 0..500 and Pendulum's -1,600..0 take
    the same defaults -- and makes the false-alarm rate on a stationary stream depend on
    ``delta`` and ``threshold`` only. Normalising by the best mean instead would depend on
    where zero happens to be (a best mean near 0 makes every wobble a huge relative drop).
    The standard deviation is floored at ``min_scale`` times the range of returns seen so
    far, so that a stream that has become constant (CartPole at 500 every episode) does not
    turn a one-point dip into an alarm.

    **Running estimates.** ``mean`` and the variance are averages over the returns since the
    last reset, exponentially weighted with weight ``1 / memory`` once there are ``memory`` of
    them, so they follow a policy that keeps improving. The first ``warmup`` returns after a
    reset only feed the estimates.

    :param delta: drift tolerated per episode, in standard deviations.
    :param threshold: ``lambda``, the statistic at which an alarm is raised, in standard
        deviations.
    :param memory: episodes the running mean and variance remember.
    :param warmup: returns after a reset that only feed the estimates.
    :param min_scale: floor on the standard deviation, as a fraction of the observed range.
    """

    def __init__(self, *, delta: float = 0.5, threshold: float = 12.0, memory: int = 50,
                 warmup: int = 5, min_scale: float = 0.02) -> None:
        if delta < 0 or threshold <= 0 or memory < 1 or warmup < 2 or min_scale < 0:
            raise ValueError(f"PageHinkley needs delta >= 0, threshold > 0, memory >= 1, "
                             f"warmup >= 2 and min_scale >= 0; got delta={delta}, "
                             f"threshold={threshold}, memory={memory}, warmup={warmup}, "
                             f"min_scale={min_scale}")
        self.delta = float(delta)
        self.threshold = float(threshold)
        self.memory = int(memory)
        self.warmup = int(warmup)
        self.min_scale = float(min_scale)
        self.low = math.inf
        """Lowest return seen (never reset)."""
        self.high = -math.inf
        """Highest return seen (never reset)."""
        self.alarms = 0
        """Alarms raised so far."""
        self.alarm_run_length = 0
        """:attr:`run_length` at the last alarm: how many of the latest returns came after the
        estimated start of the drop."""
        self.reset()

    def reset(self) -> None:
        """Start the test afresh (after an alarm): estimates, sums and counts; not the range."""
        self.count = 0
        """Returns seen since the last reset."""
        self.mean = 0.0
        self.var = 0.0
        self.cumulative = 0.0
        """``m_t``."""
        self.peak = 0.0
        """``M_t``."""
        self.run_length = 0
        """Returns since the last peak: since the estimated start of a drop."""

    @property
    def scale(self) -> float:
        """The standard deviation the returns are divided by (floored; see the class)."""
        floor = self.min_scale * (self.high - self.low) if self.high > self.low else 0.0
        return max(math.sqrt(self.var), floor, 1e-12)

    @property
    def statistic(self) -> float:
        """``PH_t = M_t - m_t``, in standard deviations."""
        return self.peak - self.cumulative

    def update(self, x: float) -> bool:
        """Take the next return; True when it completes an alarm (the test is then reset)."""
        x = float(x)
        if not math.isfinite(x):
            raise ValueError(f"episode return {x} is not finite; the change detector needs "
                             f"finite returns (check the env's rewards, or train.nan_check)")
        self.low, self.high = min(self.low, x), max(self.high, x)
        if self.count >= self.warmup:
            self.cumulative += (x - self.mean) / self.scale + self.delta
            if self.cumulative >= self.peak:
                self.peak, self.run_length = self.cumulative, 0
            else:
                self.run_length += 1
            if self.statistic > self.threshold:
                self.alarms += 1
                self.alarm_run_length = self.run_length
                self.reset()
                return True
        self._estimate(x)
        return False

    def _estimate(self, x: float) -> None:
        """Fold ``x`` into the running mean and variance (West's weighted update)."""
        self.count += 1
        weight = 1.0 / min(self.count, self.memory)
        diff = x - self.mean
        self.mean += weight * diff
        self.var = (1.0 - weight) * (self.var + weight * diff * diff)

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers only (checkpoints load with ``weights_only=True``)."""
        return {"count": self.count, "mean": self.mean, "var": self.var,
                "cumulative": self.cumulative, "peak": self.peak,
                "run_length": self.run_length, "low": self.low, "high": self.high,
                "alarms": self.alarms, "alarm_run_length": self.alarm_run_length}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.count = int(state["count"])
        self.mean = float(state["mean"])
        self.var = float(state["var"])
        self.cumulative = float(state["cumulative"])
        self.peak = float(state["peak"])
        self.run_length = int(state["run_length"])
        self.low = float(state["low"])
        self.high = float(state["high"])
        self.alarms = int(state["alarms"])
        self.alarm_run_length = int(state["alarm_run_length"])
