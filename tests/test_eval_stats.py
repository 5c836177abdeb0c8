"""Statistics for eval reports, checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from agentloop.evals.stats import (
    mcnemar_exact,
    mean_interval,
    paired_permutation,
    percentile,
    wilson_interval,
)


def test_wilson_interval_known_values() -> None:
    # 0 of 10: the upper bound is z²/(n + z²) = 3.8415/13.8415 = 0.27753
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.27753, abs=1e-5)
    # 5 of 10: centre 0.5, half-width z·sqrt(0.025 + z²/400)/(1 + z²/10) = 0.26341,
    # so 0.23659..0.76341
    low, high = wilson_interval(5, 10)
    assert (low, high) == (pytest.approx(0.23659, abs=1e-5), pytest.approx(0.76341, abs=1e-5))
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(10, 10)[1] == 1.0


def test_mean_interval_and_percentiles() -> None:
    # mean 0.5, stdev sqrt(1/3) = 0.57735, se = 0.28868, half-width 0.56580
    low, high = mean_interval([0.0, 0.0, 1.0, 1.0])
    assert low == 0.0 and high == 1.0  # clipped to [0, 1]
    low, high = mean_interval([0.4, 0.5, 0.6])
    # stdev 0.1, se 0.057735, half 0.11316
    assert (low, high) == (pytest.approx(0.38684, abs=1e-5), pytest.approx(0.61316, abs=1e-5))
    assert mean_interval([0.3]) == (0.3, 0.3)
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 95) == pytest.approx(4 + 0.8 * 6)  # rank 3.8: 4 + 0.8·(10 - 4)
    assert percentile([], 50) == 0.0 and percentile([7.0], 95) == 7.0


def test_exact_mcnemar() -> None:
    # 1 case passed only in A, 7 only in B: n = 8, k = 1;
    # p = 2·(C(8,0) + C(8,1))/2^8 = 2·9/256 = 0.0703125
    result = mcnemar_exact(1, 7)
    assert (result.p_value, result.n, result.statistic) == (18 / 256, 8, 1.0)
    # 0 vs 6: p = 2/64 = 0.03125, significant at 0.05
    assert mcnemar_exact(0, 6).p_value == 2 / 64
    assert mcnemar_exact(3, 3).p_value == 1.0  # capped at 1
    assert mcnemar_exact(0, 0).p_value == 1.0


def test_paired_permutation_exact() -> None:
    # Differences +.5 +.5 +.5 -.5: |sum| = 1. Of the 16 sign flips, |sum| >= 1 needs
    # |Σ signs| >= 2: 1 (all +) + 4 (one -) + 4 (one +) + 1 (all -) = 10, p = 10/16.
    result = paired_permutation([0.5, 0.5, 0.5, -0.5, 0.0])
    assert (result.p_value, result.n, result.exact) == (10 / 16, 4, True)
    # Five equal positive differences: only all-plus and all-minus reach 5: p = 2/32.
    assert paired_permutation([1.0] * 5).p_value == 2 / 32
    assert paired_permutation([0.0, 0.0]).p_value == 1.0


def test_paired_permutation_sampled_is_reproducible() -> None:
    diffs = [0.25] * 20  # exact p = 2/2^20; sampled: no hit in 20000 draws -> 1/20001
    first, second = paired_permutation(diffs), paired_permutation(diffs)
    assert first == second and not first.exact
    assert first.p_value == pytest.approx(1 / 20001)
    mixed = [0.1 * ((-1) ** i) * (i % 5 + 1) for i in range(30)]
    result = paired_permutation(mixed)
    assert 0.2 < result.p_value <= 1.0 and math.isfinite(result.statistic)
