"""Bootstrap intervals, paired tests and Holm's correction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import wilcoxon

from hagxai.report.stats import bootstrap_ci, holm, wilcoxon_p


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(1).normal(0.5, 0.1, 50)
    first = bootstrap_ci(values, 500, seed=3)
    assert first == bootstrap_ci(values, 500, seed=3)
    mean, low, high, n = first
    assert n == 50 and mean == pytest.approx(values.mean())
    assert low < mean < high
    # about ±1.96 standard errors
    assert high - low == pytest.approx(2 * 1.96 * values.std() / math.sqrt(50), rel=0.25)


def test_bootstrap_ci_leaves_nan_out_and_handles_tiny_samples():
    assert bootstrap_ci([1.0, math.nan, 3.0], 200)[3] == 2
    assert bootstrap_ci([2.0], 200)[:3] == (2.0, 2.0, 2.0)
    assert all(math.isnan(v) for v in bootstrap_ci([math.nan], 200)[:3])


def test_holm_matches_the_definition():
    p = [0.01, 0.04, 0.03, math.nan, 0.5]
    # sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1 -> 0.04, 0.09, 0.08 -> running max 0.09
    assert holm(p)[:3] == pytest.approx([0.04, 0.09, 0.09])
    assert math.isnan(holm(p)[3]) and holm(p)[4] == 0.5
    assert holm([0.9, 0.8]) == [1.0, 1.0]


def test_wilcoxon_p_is_scipys_on_finite_pairs():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=30), rng.normal(0.5, 1, 30)
    a_nan = np.append(a, math.nan)
    b_nan = np.append(b, 1.0)
    p, n = wilcoxon_p(a_nan, b_nan)
    assert n == 30 and p == pytest.approx(wilcoxon(a, b).pvalue)
    assert wilcoxon_p(a, a) == (1.0, 30)
    assert math.isnan(wilcoxon_p([1.0], [2.0])[0])
