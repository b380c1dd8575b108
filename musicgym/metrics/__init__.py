"""Evaluation statistics: of token melodies (:mod:`musicgym.metrics.melody`, the RL Tuner's), of
four-part chorales (:mod:`musicgym.metrics.chorale`), and their confidence intervals
(:mod:`musicgym.metrics.confidence`).

The melody statistics keep their names here (``STATISTICS``, ``evaluate_melodies``, ...); the
chorale ones are here as ``CHORALE_STATISTICS``, ``evaluate_chorales`` and
``chorale_contributions`` (the rest under :mod:`musicgym.metrics.chorale`).
"""

from musicgym.metrics.chorale import STATISTICS as CHORALE_STATISTICS
from musicgym.metrics.chorale import chorale_contributions, evaluate_chorales
from musicgym.metrics.confidence import (
    CONFIDENCE,
    NOT_AVAILABLE,
    NOT_AVAILABLE_NOTE,
    T_QUANTILES,
    bootstrap_intervals,
    format_statistic,
    ratio_of_sums,
    t_interval,
    t_quantile,
)
from musicgym.metrics.melody import (
    HISTOGRAMS,
    INTERVAL_CLIP,
    KL_PSEUDO_COUNT,
    NOTE_LENGTH_CLIP,
    PUBLISHED,
    STATISTIC_SCALES,
    STATISTICS,
    distinct_ngrams,
    evaluate_melodies,
    interval_histogram,
    kl_divergence,
    note_length_histogram,
    pitch_class_histogram,
    statistic_contributions,
    step_contributions,
)

__all__ = [
    "CHORALE_STATISTICS",
    "CONFIDENCE",
    "HISTOGRAMS",
    "INTERVAL_CLIP",
    "KL_PSEUDO_COUNT",
    "NOTE_LENGTH_CLIP",
    "NOT_AVAILABLE",
    "NOT_AVAILABLE_NOTE",
    "PUBLISHED",
    "STATISTICS",
    "STATISTIC_SCALES",
    "T_QUANTILES",
    "bootstrap_intervals",
    "chorale_contributions",
    "distinct_ngrams",
    "evaluate_chorales",
    "evaluate_melodies",
    "format_statistic",
    "interval_histogram",
    "kl_divergence",
    "note_length_histogram",
    "pitch_class_histogram",
    "ratio_of_sums",
    "statistic_contributions",
    "step_contributions",
    "t_interval",
    "t_quantile",
]
