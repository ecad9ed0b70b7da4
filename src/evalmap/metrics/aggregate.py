"""Scores over groups of datasets, and bootstrap intervals for any statistic.

A category average ("mathematics" over GSM8K, MATH, ...) must carry an honest
stderr too; the datasets are independent samples, so their variances add.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from evalmap.metrics.stats import Score, empty_score, normal_ci, wilson_interval

# Resample in chunks of at most this many drawn values, so a 2000 × 100k bootstrap
# does not allocate gigabytes at once.
_CHUNK_ELEMENTS = 4_000_000

Weighting = Literal["macro", "micro"]


def pooled_group_score(name: str, scores: Sequence[Score], weighting: Weighting = "macro") -> Score:
    """Combine per-dataset scores into one group score with a normal 95% CI.

    macro: the unweighted mean of dataset means, so a 100-item dataset counts as
    much as a 10k-item one (how leaderboards average); stderr sqrt(sum se_i^2) / k.
    micro: the sample-weighted mean (as if all samples were pooled); stderr
    sqrt(sum (n_i/N)^2 se_i^2). Both assume independent datasets. Scores with
    n = 0 carry no information and are left out; `n` is the total sample count. When every
    input interval lies in [0, 1] (proportions), the interval comes from `proportion_ci`.
    """
    if weighting not in ("macro", "micro"):
        raise ValueError(f"weighting must be 'macro' or 'micro', got {weighting!r}.")
    method = f"normal-{weighting}"
    used = [s for s in scores if s.n > 0]
    if not used:
        return empty_score(name, method)
    total = sum(s.n for s in used)
    if weighting == "macro":
        k = len(used)
        value = math.fsum(s.value for s in used) / k
        stderr = math.sqrt(math.fsum(s.stderr**2 for s in used)) / k
    else:
        weights = [s.n / total for s in used]
        value = math.fsum(w * s.value for w, s in zip(weights, used, strict=True))
        stderr = math.sqrt(math.fsum((w * s.stderr) ** 2 for w, s in zip(weights, used, strict=True)))
    if all(s.ci_low >= 0.0 and s.ci_high <= 1.0 for s in used):  # proportions
        low, high = proportion_ci(value, stderr, total)
    else:
        low, high = normal_ci(value, stderr)
    return Score(name, value, stderr, low, high, total, method)


def proportion_ci(value: float, stderr: float, n: int) -> tuple[float, float]:
    """A 95% CI for a mean of 0-1 scores: value ± 1.96·stderr clipped to [0, 1]; where the stderr
    is 0 (every part at 0% or 100%) the normal interval would have no width, so Wilson's at n."""
    if stderr == 0.0 and n > 0:
        return wilson_interval(min(max(value, 0.0), 1.0), n)
    low, high = normal_ci(value, stderr)
    return max(low, 0.0), min(high, 1.0)


def bootstrap_distribution(
    values: Sequence[float] | np.ndarray,
    stat: Callable[..., np.ndarray] = np.mean,
    iters: int = 2000,
    seed: int = 0,
) -> np.ndarray:
    """`iters` values of `stat` over resamples (with replacement) of `values`.

    Resampling is vectorised: each chunk draws an (rows, n) index matrix and calls
    `stat(x, axis=1)` once; a `stat` without an `axis` argument is applied per row.
    """
    x = np.asarray(values, dtype=float)
    n = x.size
    if n == 0 or iters < 1:
        return np.empty(0)
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_ELEMENTS // n)
    out = np.empty(iters)
    for start in range(0, iters, rows):
        stop = min(iters, start + rows)
        sample = x[rng.integers(0, n, size=(stop - start, n))]
        try:
            out[start:stop] = stat(sample, axis=1)
        except TypeError:
            out[start:stop] = np.apply_along_axis(stat, 1, sample)
    return out


def bootstrap_statistic(
    name: str, values: Sequence[float] | np.ndarray, stat: Callable[..., np.ndarray], value: float, seed: int = 0,
    iters: int = 2000,
) -> Score:
    """A statistic with no stderr formula (MCC, macro-F1, Spearman, ...) as a Score: `value` over all items, a
    percentile-bootstrap 95% CI over resamples of `values` (one number per item, `stat(x, axis=1)` per
    resample row), the bootstrap sd as stderr, n = the items. Resamples where the statistic is undefined
    (NaN: a constant resample) are left out; below 2 items or 2 defined resamples the spread is NaN."""
    n = len(values)
    if n == 0:
        return empty_score(name, "bootstrap")
    dist = bootstrap_distribution(values, stat, iters, seed) if n >= 2 else np.empty(0)
    dist = dist[np.isfinite(dist)]
    if dist.size < 2:
        return Score(name, value, math.nan, math.nan, math.nan, n, "bootstrap")
    low, high = np.quantile(dist, [0.025, 0.975])
    return Score(name, value, float(np.std(dist, ddof=1)), float(low), float(high), n, "bootstrap")


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    stat: Callable[..., np.ndarray] = np.mean,
    iters: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap CI of `stat` over `values`: for statistics with no stderr formula.

    Deterministic for a given seed, so a rerun reports the same interval. NaN for
    empty input.
    """
    dist = bootstrap_distribution(values, stat, iters, seed)
    if dist.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2
    low, high = np.quantile(dist, [alpha, 1.0 - alpha])
    return float(low), float(high)
