"""Statistics of an evaluation: bootstrap confidence intervals and paired tests with Holm's
correction."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float, int]:
    """Mean over images with a percentile bootstrap confidence interval.

    NaN values (an image a metric is undefined on) are left out.

    Args:
        values: ``N`` per-image values.
        resamples: bootstrap resamples (images drawn with replacement).
        seed: the resampling seed (the same seed gives the same interval).
        level: the interval's coverage.

    Returns:
        ``(mean, low, high, n)``; NaNs when no value is finite, the mean itself as both bounds
        for a single value.
    """
    data = np.asarray(values, dtype=np.float64)
    data = data[np.isfinite(data)]
    n = int(data.size)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(data.mean())
    if n == 1:
        return mean, mean, mean, 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    means = data[draws].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return mean, float(low), float(high), n


def wilcoxon_p(a: Sequence[float], b: Sequence[float]) -> tuple[float, int]:
    """Two-sided Wilcoxon signed-rank p-value of paired values (scipy), over the pairs where
    both are finite.

    Returns:
        ``(p, n_pairs)``; ``p`` is NaN with fewer than 2 pairs, and 1 when every difference is 0.
    """
    from scipy.stats import wilcoxon

    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    both = np.isfinite(x) & np.isfinite(y)
    x, y = x[both], y[both]
    n = int(x.size)
    if n < 2:
        return math.nan, n
    if np.all(x == y):
        return 1.0, n
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on ties and small samples; p stays exact
        return float(wilcoxon(x, y, zero_method="wilcox").pvalue), n


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (NaNs stay NaN and do not count in the family).

    The ``i``-th smallest of ``m`` p-values is multiplied by ``m - i`` (``i`` from 0), the
    running maximum is taken so adjusted values keep their order, and values are capped at 1.
    """
    finite = [(p, i) for i, p in enumerate(pvalues) if p == p]
    finite.sort()
    m = len(finite)
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(finite):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
