"""Paired comparison of two runs on the same items: is run B really better than run A?

Two runs scored on shared items are correlated: an item that is hard for one model
is usually hard for the other. Testing the per-item differences (rather than two
independent means) removes that shared noise, so real gaps show at smaller n.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from evalmap.metrics.aggregate import bootstrap_distribution
from evalmap.metrics.stats import NAN, Z95, is_binary, normal_ci, sample_stderr

# Below this many discordant pairs the chi-square approximation is poor; use the
# exact binomial test (the usual rule of thumb).
EXACT_BELOW = 25


@dataclass(frozen=True)
class PairedResult:
    """B minus A on shared items, with its uncertainty and a two-sided p-value.

    `discordant` is (a_only, b_only) for McNemar: items only A got right and items
    only B got right; the concordant items say nothing about which run is better.
    """

    diff: float
    stderr: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    method: str
    discordant: tuple[int, int] | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self, digits: int = 3) -> str:
        return (
            f"{self.diff:+.{digits}f} ± {self.stderr:.{digits}f} "
            f"[{self.ci_low:.{digits}f}, {self.ci_high:.{digits}f}] "
            f"p={self.p_value:.{digits}g} (n={self.n}, {self.method})"
        )


def _check_pair(a: Sequence[float], b: Sequence[float]) -> None:
    if len(a) != len(b):
        raise ValueError(
            f"Paired comparison needs the same items in both runs, got {len(a)} and {len(b)} scores; "
            "align the runs by item id first."
        )


def _empty(method: str) -> PairedResult:
    return PairedResult(NAN, NAN, NAN, NAN, NAN, 0, method)


def chi2_1_sf(x: float) -> float:
    """Survival function of chi-square with 1 degree of freedom: P(X >= x) = erfc(sqrt(x/2))."""
    if x <= 0:
        return 1.0
    return math.erfc(math.sqrt(x / 2.0))


def binomial_two_sided_p(k: int, m: int) -> float:
    """Exact two-sided p of k successes in m fair coin flips: 2 · P(X <= min(k, m-k)), capped at 1."""
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(min(k, m - k) + 1))
    return min(1.0, 2 * tail / 2**m)


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> PairedResult:
    """McNemar's test for two 0/1 runs on the same items.

    Only discordant pairs matter: under "no difference" an item that one run alone
    gets right is equally likely to be A's or B's. With fewer than 25 discordant
    pairs the p-value is the exact binomial one, otherwise chi-square with the
    continuity correction, (|b-c|-1)^2 / (b+c). `diff` is acc(B) - acc(A) with the
    stderr of the per-item differences (ddof=1) and a normal 95% CI.
    """
    _check_pair(a, b)
    if not (is_binary(a) and is_binary(b)):
        raise ValueError("McNemar's test needs 0/1 scores; use paired_bootstrap for other metrics.")
    n = len(a)
    a_only = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    b_only = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    m = a_only + b_only
    if m < EXACT_BELOW:
        method = "mcnemar-exact"
        p = binomial_two_sided_p(b_only, m)
    else:
        method = "mcnemar-chi2"
        p = chi2_1_sf((abs(a_only - b_only) - 1) ** 2 / m)
    if n == 0:
        return PairedResult(NAN, NAN, NAN, NAN, NAN, 0, method, (0, 0))
    diff = (b_only - a_only) / n
    d = [float(y) - float(x) for x, y in zip(a, b, strict=True)]
    stderr = sample_stderr(d, diff)
    low, high = normal_ci(diff, stderr, Z95)
    if not math.isnan(low):
        low, high = max(-1.0, low), min(1.0, high)
    return PairedResult(diff, stderr, low, high, p, n, method, (a_only, b_only))


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], iters: int = 10000, seed: int = 0, level: float = 0.95
) -> PairedResult:
    """Paired bootstrap of mean(B - A) for any per-item metric (F1, BLEU, judge scores...).

    Items are resampled as pairs, so each resample keeps both runs' score for an
    item together. CI: percentile. p-value: two-sided, from the bootstrap
    distribution shifted to the null of no difference, (1 + #{|d* - d| >= |d|}) /
    (1 + iters), which is never an impossible 0. Fewer than 2 items give NaN: one
    item cannot tell two runs apart.
    """
    _check_pair(a, b)
    method = "paired-bootstrap"
    n = len(a)
    if n == 0:
        return _empty(method)
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    diff = float(d.mean())
    if n < 2:
        return PairedResult(diff, NAN, NAN, NAN, NAN, n, method)
    stderr = sample_stderr(d.tolist(), diff)
    dist = bootstrap_distribution(d, np.mean, iters, seed)
    alpha = (1.0 - level) / 2
    low, high = (float(q) for q in np.quantile(dist, [alpha, 1.0 - alpha]))
    # Tolerance so an all-equal run (every resample exactly equal to diff) gives p = 1.
    extreme = np.abs(dist - diff) >= abs(diff) - 1e-12
    p = float((1 + np.count_nonzero(extreme)) / (1 + dist.size))
    return PairedResult(diff, stderr, low, high, p, n, method)


def compare_paired(a: Sequence[float], b: Sequence[float], iters: int = 10000, seed: int = 0) -> PairedResult:
    """McNemar for 0/1 scores (accuracy, exact match, pass@1), paired bootstrap otherwise."""
    if is_binary(a) and is_binary(b):
        return mcnemar(a, b)
    return paired_bootstrap(a, b, iters=iters, seed=seed)
