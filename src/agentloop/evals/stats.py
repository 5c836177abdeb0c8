"""The statistics evaluation reports need, on the standard library alone.

Confidence intervals for a pass rate (Wilson score) and a mean (normal approximation),
percentiles, and two paired significance tests for comparing two runs over the same cases:

- ``mcnemar_exact``: pass/fail outcomes. Only the discordant cases count (passed in one run,
  failed in the other); under "no difference" each of them is equally likely to go either way,
  so the count one way is Binomial(n, 1/2) and the two-sided p-value is twice the smaller tail.
- ``paired_permutation``: scores in [0, 1]. Under "no difference" the sign of each per-case
  difference is a coin flip; the p-value is the share of the 2^n sign assignments whose mean
  difference is at least as far from zero as the observed one. Exact up to ``EXACT_LIMIT``
  non-zero differences, else Monte Carlo with a fixed seed (so reports are reproducible).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product

Z_95 = statistics.NormalDist().inv_cdf(0.975)
"""The two-sided 95 % normal quantile, about 1.96."""
EXACT_LIMIT = 12
"""Most non-zero differences for which the permutation test enumerates all sign flips."""
RESAMPLES = 20_000
SEED = 20240601


@dataclass(frozen=True)
class Significance:
    """A significance test's outcome: its name, the statistic, and the two-sided p-value."""

    test: str
    statistic: float
    p_value: float
    n: int
    """The observations the test used (discordant pairs, or non-zero differences)."""
    exact: bool = True


def wilson_interval(passed: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for ``passed`` successes out of ``n``; (0, 1) when ``n`` is 0.

    Unlike the textbook p ± z·se interval it stays inside [0, 1] and is sensible at 0 % and
    100 %, which small evals hit all the time.
    """
    if n == 0:
        return (0.0, 1.0)
    p = passed / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if passed == 0 else max(0.0, centre - half)  # exact at the ends, not 1e-17
    high = 1.0 if passed == n else min(1.0, centre + half)
    return (low, high)


def mean_interval(values: Sequence[float], z: float = Z_95) -> tuple[float, float]:
    """mean ± z · standard error, clipped to [0, 1] (scores live there); the mean twice for
    fewer than two values."""
    if not values:
        return (0.0, 1.0)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return (mean, mean)
    half = z * statistics.stdev(values) / math.sqrt(len(values))
    return (max(0.0, mean - half), min(1.0, mean + half))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks (numpy's
    default); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mcnemar_exact(only_a: int, only_b: int) -> Significance:
    """Exact two-sided McNemar test. ``only_a``: cases that passed in A only; ``only_b``: in B
    only. p = min(1, 2 · P(X <= min(only_a, only_b))) for X ~ Binomial(only_a + only_b, 1/2)."""
    n = only_a + only_b
    if n == 0:
        return Significance("mcnemar_exact", 0.0, 1.0, 0)
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return Significance("mcnemar_exact", float(k), min(1.0, 2 * tail), n)


def paired_permutation(
    differences: Sequence[float], *, resamples: int = RESAMPLES, seed: int = SEED
) -> Significance:
    """Two-sided paired sign-flip permutation test of "mean difference is zero".

    Zero differences cannot change sign and are dropped. With at most ``EXACT_LIMIT`` non-zero
    differences every sign assignment is counted (exact); beyond that ``resamples`` random
    ones are drawn with ``random.Random(seed)`` and p = (hits + 1) / (resamples + 1).
    """
    diffs = [d for d in differences if d != 0]
    n = len(diffs)
    if n == 0:
        return Significance("paired_permutation", 0.0, 1.0, 0)
    observed = abs(sum(diffs))
    tolerance = 1e-9 * max(1.0, observed)
    if n <= EXACT_LIMIT:
        hits = sum(
            abs(sum(s * d for s, d in zip(signs, diffs, strict=True))) >= observed - tolerance
            for signs in product((1, -1), repeat=n)
        )
        return Significance("paired_permutation", sum(diffs) / n, hits / 2**n, n)
    rng = random.Random(seed)
    hits = 0
    for _ in range(resamples):
        total = sum(d if rng.random() < 0.5 else -d for d in diffs)
        hits += abs(total) >= observed - tolerance
    p = (hits + 1) / (resamples + 1)
    return Significance("paired_permutation", sum(diffs) / n, p, n, exact=False)
