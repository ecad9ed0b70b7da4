"""Scores with their uncertainty: every number evalmap prints carries n and stderr."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)
NAN = float("nan")


@dataclass(frozen=True)
class Score:
    """One metric over a job's samples.

    `n` is the number of units the stderr was computed over (samples, or problems
    for pass@k); `method` says how the CI was made ("wilson", "normal", ...), so a
    report can tell a small-n binomial interval from a normal approximation.
    """

    name: str
    value: float
    stderr: float
    ci_low: float
    ci_high: float
    n: int
    method: str = "normal"

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self, digits: int = 3) -> str:
        return f"{self.value:.{digits}f} ± {self.stderr:.{digits}f} (n={self.n})"


def empty_score(name: str, method: str = "normal") -> Score:
    """A score over no samples: NaN everywhere and n=0, never a made-up zero."""
    return Score(name, NAN, NAN, NAN, NAN, 0, method)


def is_binary(values: Sequence[float]) -> bool:
    """True when every value is 0 or 1 (bools included): such data gets binomial methods."""
    return all(v == 0 or v == 1 for v in values)


def sample_stderr(values: Sequence[float], mean: float | None = None) -> float:
    """Standard error of the mean with ddof=1 (as lm-eval reports); NaN below 2 values.

    One value says nothing about spread, so NaN is more honest than 0.
    """
    n = len(values)
    if n < 2:
        return NAN
    if mean is None:
        mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return math.sqrt(var / n)


def normal_ci(value: float, stderr: float, z: float = Z95) -> tuple[float, float]:
    """value ± z·stderr; NaN when the stderr is unknown."""
    if math.isnan(stderr):
        return NAN, NAN
    half = z * stderr
    return value - half, value + half


def mean_score(name: str, values: Sequence[float]) -> Score:
    """Mean with the sample standard error (ddof=1, as lm-eval reports) and a 95% CI.

    For 0/1 metrics the CI is Wilson's, which stays inside [0, 1] and is honest at
    small n where the normal interval collapses to zero width at 0% or 100%.
    """
    n = len(values)
    if n == 0:
        return empty_score(name)
    mean = math.fsum(values) / n
    stderr = sample_stderr(values, mean)
    if is_binary(values):
        low, high = wilson_interval(mean, n)
        return Score(name, mean, stderr, low, high, n, "wilson")
    low, high = normal_ci(mean, stderr)
    return Score(name, mean, stderr, low, high, n, "normal")


def wilson_interval(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion `p` observed over `n` trials.

    Unlike p ± z·se it never leaves [0, 1] and keeps a sensible width at p = 0 or 1,
    which matters for the 5- and 20-sample runs evalmap allows.
    """
    if n <= 0:
        return NAN, NAN
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n)) / denom
    # At p = 0 (or 1) the bound is exactly 0 (or 1); say so rather than leave rounding noise.
    low = 0.0 if p <= 0.0 else max(0.0, centre - half)
    high = 1.0 if p >= 1.0 else min(1.0, centre + half)
    return low, high


def clustered_mean_score(name: str, clusters: Sequence[Sequence[float]]) -> Score:
    """Mean of every value, with a cluster-robust stderr: values in one cluster (the instructions of
    one ifeval prompt, the two turns of one MT-Bench question) are not independent, so the variance
    is summed over clusters (CR1: G/(G-1) · Σ_g (Σ_i∈g (y_i − ȳ))² / N²), never over values.

    `n` is the number of values; the method names the number of clusters the stderr rests on.
    """
    groups = [list(c) for c in clusters if len(c)]
    values = [v for g in groups for v in g]
    n, k = len(values), len(groups)
    method = f"cluster-robust({k} clusters)"
    if n == 0:
        return empty_score(name, method)
    mean = math.fsum(values) / n
    if k < 2:
        return Score(name, mean, NAN, NAN, NAN, n, method)
    spread = math.fsum(math.fsum(v - mean for v in g) ** 2 for g in groups)
    stderr = math.sqrt(k / (k - 1) * spread) / n
    if is_binary(values):
        if stderr == 0.0:
            low, high = wilson_interval(mean, k)
        else:
            low, high = max(0.0, mean - Z95 * stderr), min(1.0, mean + Z95 * stderr)
    else:
        low, high = normal_ci(mean, stderr)
    return Score(name, mean, stderr, low, high, n, method)
