"""Scores with their uncertainty: every number evalmap prints carries n and stderr."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)


@dataclass(frozen=True)
class Score:
    """One metric over a job's samples."""

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


def mean_score(name: str, values: list[float]) -> Score:
    """Mean with the sample standard error (ddof=1, as lm-eval reports) and a 95% CI.

    For 0/1 metrics the CI is Wilson's, which stays inside [0, 1] and is honest at
    small n where the normal interval collapses to zero width at 0% or 100%.
    """
    n = len(values)
    if n == 0:
        return Score(name, float("nan"), float("nan"), float("nan"), float("nan"), 0)
    mean = sum(values) / n
    if n > 1:
        var = sum((v - mean) ** 2 for v in values) / (n - 1)
        stderr = math.sqrt(var / n)
    else:
        stderr = float("nan")
    if all(v in (0.0, 1.0) for v in values):
        low, high = wilson_interval(mean, n)
        return Score(name, mean, stderr, low, high, n, "wilson")
    half = Z95 * stderr if n > 1 else float("nan")
    return Score(name, mean, stderr, mean - half, mean + half, n, "normal")


def wilson_interval(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
