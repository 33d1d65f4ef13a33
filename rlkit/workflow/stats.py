"""Statistics for comparing runs over seeds, after Agarwal et al., "Deep Reinforcement Learning
at the Edge of the Statistical Precipice" (NeurIPS 2021).

Every function takes plain sequences of per-run scores (one score per seed) and uses numpy only.

Conventions:

* **IQM** (interquartile mean): sort the ``n`` scores, drop ``floor(n / 4)`` from each end, and
  take the mean of the rest -- the convention of ``scipy.stats.trim_mean(x, 0.25)``, which
  rliable uses. ``[1, 2, ..., 8]`` -> mean of ``[3, 4, 5, 6]`` = 4.5. With fewer than 4 runs
  nothing is dropped and the IQM is the mean.
* **Probability of improvement** ``P(X > Y)``: over every pair of a run of X and a run of Y,
  1 where X's score is higher, 1/2 for a tie, 0 otherwise; the mean of those.
* **Confidence intervals**: a stratified percentile bootstrap. Runs are resampled with
  replacement within each experiment (one task per experiment, so each experiment is one
  stratum); for a two-experiment statistic both are resampled independently. The interval is
  the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the statistic over
  :data:`DEFAULT_RESAMPLES` resamples, drawn from ``numpy.random.default_rng(seed)``: the same
  seed gives the same interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_RESAMPLES", "bootstrap_ci", "bootstrap_mean_band", "iqm", "mean",
           "probability_of_improvement", "probability_of_improvement_ci"]

DEFAULT_RESAMPLES = 2_000
"""Bootstrap resamples by default."""

Scores = Sequence[float] | npt.NDArray[np.float64]
Interval = tuple[float, float]


def _array(scores: Scores, what: str = "scores") -> npt.NDArray[np.float64]:
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{what}: need a non-empty 1-d sequence of per-run scores, got shape "
                         f"{values.shape}")
    return values


def mean(scores: Scores) -> float:
    """The mean of the runs' scores."""
    return float(_array(scores).mean())


def _iqm_rows(samples: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The IQM of each row of a 2-d array (the convention in the module docstring)."""
    n = samples.shape[1]
    cut = n // 4
    ordered = np.sort(samples, axis=1)
    return ordered[:, cut:n - cut].mean(axis=1)


def iqm(scores: Scores) -> float:
    """The interquartile mean: drop ``floor(n / 4)`` scores from each end, mean of the rest."""
    return float(_iqm_rows(_array(scores)[None, :])[0])


_VECTORISED: dict[str, Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]] = {
    "mean": lambda s: s.mean(axis=1),
    "iqm": _iqm_rows,
}


def bootstrap_ci(scores: Scores, statistic: str = "mean", *,
                 resamples: int = DEFAULT_RESAMPLES, confidence: float = 0.95,
                 seed: int = 0) -> Interval:
    """The percentile-bootstrap confidence interval of ``statistic`` (``mean`` or ``iqm``)
    over the runs' scores, resampling runs with replacement.

    :param resamples: how many bootstrap resamples.
    :param confidence: the interval's coverage (0.95: the 2.5th and 97.5th percentiles).
    :param seed: the resampling seed; the same seed gives the same interval.
    """
    if statistic not in _VECTORISED:
        raise ValueError(f"statistic: {statistic!r} is not one of {sorted(_VECTORISED)}")
    values = _array(scores)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, values.size, size=(resamples, values.size))
    return _percentiles(_VECTORISED[statistic](values[index]), confidence)


def probability_of_improvement(x: Scores, y: Scores) -> float:
    """``P(X > Y)``: the fraction of (run of X, run of Y) pairs where X scored higher, a tie
    counting 1/2."""
    a, b = _array(x, "x"), _array(y, "y")
    return float(_poi_rows(a[None, :], b[None, :])[0])


def _poi_rows(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]
              ) -> npt.NDArray[np.float64]:
    """P(X > Y) for each row pair of two 2-d arrays (resamples x runs)."""
    greater = (a[:, :, None] > b[:, None, :]).mean(axis=(1, 2))
    ties = (a[:, :, None] == b[:, None, :]).mean(axis=(1, 2))
    return greater + 0.5 * ties


def probability_of_improvement_ci(x: Scores, y: Scores, *,
                                  resamples: int = DEFAULT_RESAMPLES,
                                  confidence: float = 0.95, seed: int = 0) -> Interval:
    """The stratified-bootstrap confidence interval of ``P(X > Y)``: the runs of X and of Y
    are resampled with replacement, each within its own experiment."""
    a, b = _array(x, "x"), _array(y, "y")
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, a.size, size=(resamples, a.size))
    ib = rng.integers(0, b.size, size=(resamples, b.size))
    return _percentiles(_poi_rows(a[ia], b[ib]), confidence)


def bootstrap_mean_band(curves: npt.NDArray[np.float64], *,
                        resamples: int = DEFAULT_RESAMPLES, confidence: float = 0.95,
                        seed: int = 0) -> tuple[npt.NDArray[np.float64],
                                                npt.NDArray[np.float64],
                                                npt.NDArray[np.float64]]:
    """For curves of shape (runs, points), NaN where a run has no value: the mean at each
    point and its percentile-bootstrap band (resampling runs), over the runs with a value."""
    curves = np.asarray(curves, dtype=np.float64)
    points = curves.shape[1]
    centre, low, high = (np.full(points, np.nan) for _ in range(3))
    rng = np.random.default_rng(seed)
    for j in range(points):
        column = curves[:, j][~np.isnan(curves[:, j])]
        if column.size == 0:
            continue
        centre[j] = column.mean()
        index = rng.integers(0, column.size, size=(resamples, column.size))
        low[j], high[j] = _percentiles(column[index].mean(axis=1), confidence)
    return centre, low, high


def _percentiles(samples: npt.NDArray[np.float64], confidence: float) -> Interval:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: {confidence} must lie between 0 and 1 (e.g. 0.95)")
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)
