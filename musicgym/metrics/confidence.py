"""Statistics of summed per-piece contributions, and their 95% confidence intervals over seeds
(:func:`t_interval`) and over pieces (:func:`bootstrap_intervals`); shared by the melody and the
chorale statistics."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np


def ratio_of_sums(sums: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``scale * numerator / denominator`` of summed contributions ``(..., 2)`` (see
    :func:`musicgym.metrics.melody.statistic_contributions`), NaN where the denominator is 0;
    shape ``(...)``."""
    sums = np.asarray(sums, dtype=float)
    numerator, denominator = sums[..., 0], sums[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, scale * numerator / denominator, np.nan)


CONFIDENCE = 0.95
"""Level of every confidence interval."""
T_QUANTILES = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
"""The 0.975 quantile of Student's t for 1..30 degrees of freedom (a printed table; scipy is not
a dependency): the half-width of a two-sided 95% interval in standard errors."""


def t_quantile(degrees_of_freedom: int) -> float:
    """The 0.975 quantile of Student's t: :data:`T_QUANTILES` up to 30 degrees of freedom, beyond
    them the Cornish-Fisher expansion around the normal quantile (error below 1e-5 there)."""
    if degrees_of_freedom < 1:
        raise ValueError(f"degrees_of_freedom must be >= 1, got {degrees_of_freedom}")
    if degrees_of_freedom <= len(T_QUANTILES):
        return T_QUANTILES[degrees_of_freedom - 1]
    z, n = 1.959964, degrees_of_freedom
    return (
        z
        + (z**3 + z) / (4 * n)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * n**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * n**3)
    )


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """``(mean, low, high)`` of ``values`` (one per seed; NaN ones left out): the mean and its 95%
    confidence interval ``mean ± t_{0.975, n-1} * s / sqrt(n)``, ``s`` the sample standard
    deviation (``ddof=1``); the bounds are NaN with fewer than two values, all three without any."""
    finite = np.asarray(values, dtype=float)
    finite = finite[~np.isnan(finite)]
    if not finite.size:
        return math.nan, math.nan, math.nan
    mean = float(finite.mean())
    if finite.size < 2:
        return mean, math.nan, math.nan
    half_width = t_quantile(finite.size - 1) * float(finite.std(ddof=1)) / math.sqrt(finite.size)
    return mean, mean - half_width, mean + half_width


def bootstrap_intervals(
    contributions: dict[str, np.ndarray],
    statistics: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% percentile-bootstrap intervals over melodies of statistics of summed per-melody
    contributions.

    Each of ``resamples`` resamples draws the ``M`` melodies with replacement (seeded); the
    contributions ``(M, ...)`` of the drawn melodies are summed (as the drawn counts times the
    rows) and ``statistics`` maps those sums, ``(resamples, ...)`` per name, to each statistic's
    values ``(resamples,)``. A bound is the 2.5th or 97.5th percentile of the values that are not
    NaN (both NaN when all are).

    Args:
        contributions: per name, the rows ``(M, ...)`` that ``statistics`` reads summed.
        statistics: summed contributions -> statistic name -> values; called once, vectorised.
        resamples: bootstrap resamples.
        seed: seed of the resampling; the same for every statistic, so they are resampled alike.
    """
    num_melodies = len(next(iter(contributions.values())))
    drawn = np.random.default_rng(seed).integers(0, num_melodies, (resamples, num_melodies))
    offsets = num_melodies * np.arange(resamples)[:, None]
    weights = np.bincount((drawn + offsets).ravel(), minlength=resamples * num_melodies)
    weights = weights.reshape(resamples, num_melodies).astype(float)  # (B, M) draws per melody
    sums = {
        name: np.tensordot(weights, np.asarray(rows, dtype=float), axes=1)
        for name, rows in contributions.items()
    }
    tail = 100 * (1 - CONFIDENCE) / 2
    intervals = {}
    for name, values in statistics(sums).items():
        finite = values[~np.isnan(values)]
        low, high = np.percentile(finite, [tail, 100 - tail]) if finite.size else (math.nan,) * 2
        intervals[name] = (float(low), float(high))
    return intervals


NOT_AVAILABLE = "n/a"
"""What a table prints for a statistic that is NaN: it had nothing to count in these pieces."""
NOT_AVAILABLE_NOTE = (
    "n/a: nothing to count in these pieces (e.g. leaps resolved without a leap); "
    "more or longer pieces give it a value"
)


def format_statistic(value: float, spec: str = ".2f", width: int = 0) -> str:
    """``value`` in ``spec``, right-aligned in ``width``; :data:`NOT_AVAILABLE` for NaN."""
    text = NOT_AVAILABLE if math.isnan(value) else format(value, spec)
    return f"{text:>{width}}"
