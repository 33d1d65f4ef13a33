"""``adaptive``: exploration that rises when returns drop and decays back as they recover.

The level is ``base`` (a number or a schedule) plus an *extra* level that the controller
adds when the returns of finished episodes drop, and lets decay again as they recover::

    level(step) = base(step) + min(extra(step), max(ceiling - base(step), 0))

* **Detection.** Every finished episode's return goes to a Page-Hinkley test for a drop in
  the mean (:class:`~rlkit.exploration.detectors.PageHinkley`), on returns standardised by
  their running standard deviation, so the same ``delta`` and ``threshold`` suit any reward
  scale.
* **Rise.** On an alarm the controller compares the returns since the estimated start of
  the drop, ``current``, with the best mean of ``window`` consecutive episodes seen so far,
  ``best``, relative to the progress made so far (``worst``: the lowest such mean, or
  ``current`` if lower)::

      drop = (best - current) / (best - worst)       # 0: no loss, 1: back to the worst
      extra = max(extra, min(gain * drop, ceiling - base))

  ``drop`` is the share of the learning progress that was lost: invariant to shifting and
  scaling the rewards, and at most 1. An alarm comes a few episodes into a drop, before the
  returns show all of it, so during the ``window`` episodes after it a deeper relative drop
  of the recent mean raises the extra level further, by the same law.
* **Decay.** The extra level decays exponentially with a half-life of ``decay`` env steps,
  shortened in proportion to the recovery: ``decay * clip(drop_now / drop_at_alarm, 1/4, 1)``,
  where ``drop_now`` is the relative drop of the recent mean (``window`` episodes, counted
  from the estimated start of the drop). Once the recent mean is back near the best, the
  extra level halves four times as fast; where returns never recover, it still goes back to
  ``base`` at the slower rate.

The controller is driven only by ``observe_returns`` (every ``train.log_every`` env steps in
rlkit's trainer), and ``value(step)`` is a pure function of its state and ``step``, so a
resumed run takes exactly the same levels. For DDPG and TD3 it is also the noise process
(:meth:`AdaptiveExploration.make_noise`, ``gaussian`` or ``ornstein_uhlenbeck`` from
:mod:`rlkit.exploration.noise`), the level being the noise scale sigma.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from rlkit.exploration.detectors import PageHinkley
from rlkit.exploration.noise import ActionNoise, GaussianNoise, OrnsteinUhlenbeckNoise
from rlkit.schedules import Scheduled, value_at
from rlkit.validation import param

__all__ = ["AdaptiveExploration", "AdaptiveExplorationConfig", "build_adaptive"]

FASTEST_DECAY = 0.25
"""The shortest half-life, as a share of ``decay``: once returns have recovered."""


@dataclass(kw_only=True)
class AdaptiveExplorationConfig:
    """Exploration that rises when returns drop and decays back as they recover."""

    base: Scheduled = param(0.1, ge=0.0)
    """The normal level (epsilon, entropy coefficient or noise sigma): a number or a schedule
    such as ``{kind: linear, start: 1.0, end: 0.05, fraction: 0.1}``."""
    ceiling: float = param(0.5, ge=0.0)
    """The highest level a drop can raise it to (a base above it is kept as it is)."""
    gain: float = param(1.0, ge=0.0)
    """Extra level per unit of relative drop: a drop back to the worst returns seen (1.0)
    adds ``gain``, half of the progress lost adds ``gain / 2``."""
    decay: int = param(10_000, ge=1)
    """Half-life of the extra level in env steps while returns stay low; four times shorter
    once they are back near the best."""
    delta: float = param(0.5, ge=0.0)
    """Page-Hinkley drift tolerance, in standard deviations of the returns: about half the
    smallest drop worth reacting to."""
    threshold: float = param(12.0, gt=0.0)
    """Page-Hinkley alarm threshold (lambda), in standard deviations of the returns: higher
    means fewer false alarms and later detection."""
    memory: int = param(50, ge=2)
    """Episodes the detector's running mean and standard deviation remember."""
    window: int = param(20, ge=1)
    """Episodes in the recent mean that is compared with the best."""
    noise: Literal["gaussian", "ornstein_uhlenbeck"] = "gaussian"
    """DDPG/TD3 only: the noise process the level scales (see ``exploration: gaussian`` and
    ``exploration: ornstein_uhlenbeck``)."""
    theta: float = param(0.15, gt=0.0)
    """``noise: ornstein_uhlenbeck`` only: mean reversion rate."""
    dt: float = param(1e-2, gt=0.0)
    """``noise: ornstein_uhlenbeck`` only: time step of the process."""

    def __post_init__(self) -> None:
        lowest = value_at(self.base, 1.0)
        if self.ceiling < lowest:
            raise ValueError(f"ceiling ({self.ceiling}) is below the base level ({lowest}), "
                             f"so exploration could never rise; raise exploration.ceiling or "
                             f"lower exploration.base")


class AdaptiveExploration:
    """The ``adaptive`` controller (see the module docstring for the law).

    :param params: the validated ``exploration:`` section.
    :param total_steps: the run's budget in env steps (for a scheduled ``base``).
    """

    def __init__(self, params: AdaptiveExplorationConfig, total_steps: int) -> None:
        self.params = params
        self.total_steps = max(int(total_steps), 1)
        self.detector = PageHinkley(delta=params.delta, threshold=params.threshold,
                                    memory=params.memory)
        self.recent: list[float] = []
        """The last ``window`` returns, since the estimated start of the last drop."""
        self.best: float | None = None
        """Best mean of ``window`` consecutive returns (None until a window is full)."""
        self.worst: float | None = None
        """Lowest such mean."""
        self.alarms = 0
        """Drops detected below a known best (``explore/alarms``); each raises the level as far
        as the ceiling allows."""
        self.extra = 0.0
        """The extra level at env step :attr:`since`."""
        self.since = 0
        self.half_life = float(params.decay)
        """Current half-life of the extra level, in env steps."""
        self.drop_at_alarm = 0.0
        """Relative drop that set the extra level."""
        self.settling = 0
        """Episodes left, after an alarm, in which a deeper drop raises the level further."""
        self.drop_from: float | None = None
        """The best mean at the last alarm."""
        self.drop_to: float | None = None
        """The mean return since the estimated start of the drop, at the last alarm."""
        self.last_step = 0
        """Env step of the last :meth:`observe_returns`."""

    # --- the level -------------------------------------------------------------------------

    def base(self, step: int) -> float:
        """The normal level at env step ``step``."""
        return value_at(self.params.base, step / self.total_steps)

    def value(self, step: int) -> float:
        """The level at env step ``step``: ``base`` plus the decayed extra, at most
        ``ceiling`` (unless ``base`` is above it)."""
        base = self.base(step)
        extra = self._extra_at(step)
        return base + min(extra, max(self.params.ceiling - base, 0.0))

    def _extra_at(self, step: int) -> float:
        if self.extra == 0.0:
            return 0.0
        return self.extra * 0.5 ** (max(step - self.since, 0) / self.half_life)

    # --- feedback --------------------------------------------------------------------------

    def observe_returns(self, returns: Tensor, step: int) -> None:
        """Feed the returns of the episodes that just finished, in order, to the detector;
        raise the level on an alarm; set the decay from how far returns have recovered."""
        self.extra, self.since = self._extra_at(step), int(step)
        self.last_step = int(step)
        p = self.params
        for x in returns.detach().reshape(-1).double().tolist():
            self.recent.append(x)
            if self.detector.update(x):
                self._alarm(step)
            elif self.settling > 0:  # the drop may deepen after the alarm: follow it
                self.settling -= 1
                drop = self.relative_drop()
                if drop > self.drop_at_alarm:
                    self.extra = max(self.extra, self._rise(drop, step))
                    self.drop_at_alarm = drop
            if len(self.recent) > p.window:
                del self.recent[0]
            if len(self.recent) == p.window:
                mean = _mean(self.recent)
                self.best = mean if self.best is None else max(self.best, mean)
                self.worst = mean if self.worst is None else min(self.worst, mean)
        ratio = 1.0
        if self.drop_at_alarm > 0.0:
            ratio = min(max(self.relative_drop() / self.drop_at_alarm, FASTEST_DECAY), 1.0)
        self.half_life = p.decay * ratio

    def _alarm(self, step: int) -> None:
        """The detector found a drop: restart the recent mean where it began, and raise the
        extra level in proportion to how much of the progress was lost."""
        since_change = max(min(self.detector.alarm_run_length, len(self.recent)), 1)
        self.recent = self.recent[-since_change:]
        current = _mean(self.recent)
        if self.best is None or self.worst is None or current >= self.best:
            return
        self.worst = min(self.worst, current)
        drop = (self.best - current) / (self.best - self.worst)
        raised = self._rise(drop, step)
        self.alarms += 1
        self.drop_from, self.drop_to = self.best, current
        self.settling = self.params.window
        if raised >= self.extra:
            self.extra, self.drop_at_alarm = raised, drop

    def _rise(self, drop: float, step: int) -> float:
        """The extra level a relative drop calls for: ``gain * drop``, up to the ceiling."""
        return min(self.params.gain * drop, max(self.params.ceiling - self.base(step), 0.0))

    def relative_drop(self) -> float:
        """How far the recent mean is below the best, as a share of ``best - worst``."""
        if self.best is None or self.worst is None or not self.recent:
            return 0.0
        span = self.best - min(self.worst, _mean(self.recent))
        return max(self.best - _mean(self.recent), 0.0) / span if span > 0 else 0.0

    def metrics(self) -> dict[str, float]:
        """For the run's logs (``explore/...``), as of the last :meth:`observe_returns`:
        ``level``, the detector's ``statistic``, ``alarms``, ``best_mean`` and ``recent_mean``
        (once known), and ``drop_from``/``drop_to`` (the best mean and the mean since the
        drop began, at the last alarm)."""
        out = {"level": self.value(self.last_step), "statistic": self.detector.statistic,
               "alarms": float(self.alarms)}
        if self.best is not None:
            out["best_mean"] = self.best
        if self.recent:
            out["recent_mean"] = _mean(self.recent)
        if self.drop_from is not None and self.drop_to is not None:
            out["drop_from"], out["drop_to"] = self.drop_from, self.drop_to
        return out

    # --- DDPG/TD3 ----------------------------------------------------------------------------

    def make_noise(self, num_envs: int, action_dim: int, device: torch.device) -> ActionNoise:
        """The noise process the level scales, for ``num_envs`` envs of ``action_dim``
        actions."""
        if self.params.noise == "ornstein_uhlenbeck":
            return OrnsteinUhlenbeckNoise(num_envs, action_dim, device, theta=self.params.theta,
                                          dt=self.params.dt)
        return GaussianNoise(num_envs, action_dim, device)

    # --- state -------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers and lists only (checkpoints load with ``weights_only=True``)."""
        return {"total_steps": self.total_steps, "detector": self.detector.state_dict(),
                "recent": list(self.recent), "best": self.best, "worst": self.worst,
                "alarms": self.alarms, "extra": self.extra, "since": self.since,
                "half_life": self.half_life, "drop_at_alarm": self.drop_at_alarm,
                "settling": self.settling, "drop_from": self.drop_from,
                "drop_to": self.drop_to, "last_step": self.last_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.total_steps = int(state["total_steps"])
        self.detector.load_state_dict(state["detector"])
        self.recent = [float(x) for x in state["recent"]]
        self.best = None if state["best"] is None else float(state["best"])
        self.worst = None if state["worst"] is None else float(state["worst"])
        self.alarms = int(state["alarms"])
        self.extra = float(state["extra"])
        self.since = int(state["since"])
        self.half_life = float(state["half_life"])
        self.drop_at_alarm = float(state["drop_at_alarm"])
        self.settling = int(state["settling"])
        self.drop_from = None if state["drop_from"] is None else float(state["drop_from"])
        self.drop_to = None if state["drop_to"] is None else float(state["drop_to"])
        self.last_step = int(state["last_step"])


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def build_adaptive(params: AdaptiveExplorationConfig, total_steps: int) -> AdaptiveExploration:
    return AdaptiveExploration(params, total_steps)
