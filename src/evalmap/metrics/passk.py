"""pass@k: the chance that at least one of k sampled programs passes.

Estimated without bias from n >= k samples per problem of which c pass, as in the
Codex paper (Chen et al., 2021). Taking 1 - (1 - c/n)^k instead is biased low, and
drawing k of the n samples throws information away.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from evalmap.metrics.stats import Score, empty_score, mean_score

STANDARD_KS = (1, 10, 100)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: 1 - C(n-c, k) / C(n, k).

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), the paper's product form: the
    binomials overflow floats for n in the hundreds, the product stays in [0, 1].
    """
    if n < 0 or c < 0 or c > n:
        raise ValueError(f"pass@k needs 0 <= c <= n, got n={n}, c={c}.")
    if k < 1:
        raise ValueError(f"pass@k needs k >= 1, got k={k}.")
    if k > n:
        raise ValueError(
            f"pass@{k} needs at least {k} samples per problem, got n={n}; lower k or sample more."
        )
    if n - c < k:
        return 1.0  # every k-subset holds a passing sample
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_at_k_score(per_problem: Sequence[tuple[int, int]], k: int, name: str | None = None) -> Score:
    """Mean pass@k over problems, with stderr over problems (ddof=1) and a 95% CI.

    `per_problem` holds (n, c) = (samples drawn, samples passed) for each problem.
    The problem is the unit of sampling, so `Score.n` counts problems, not
    generations. The CI is Wilson's when every estimate is 0/1 (e.g. k = n = 1),
    otherwise normal, clipped to [0, 1] where pass@k lives.
    """
    label = name or f"pass@{k}"
    if not per_problem:
        return empty_score(label)
    estimates = [pass_at_k(n, c, k) for n, c in per_problem]
    score = mean_score(label, estimates)
    if score.method == "normal" and not math.isnan(score.ci_low):
        score = replace(score, ci_low=max(0.0, score.ci_low), ci_high=min(1.0, score.ci_high))
    return score


def ks_for(n_samples: int) -> list[int]:
    """The standard k of {1, 10, 100} that `n_samples` generations per problem can estimate."""
    return [k for k in STANDARD_KS if k <= n_samples]
