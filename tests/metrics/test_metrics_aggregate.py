import math

import numpy as np
import pytest

from evalmap.metrics import Score, bootstrap_ci, pooled_group_score

A = Score("gsm8k", 0.8, 0.04, 0.72, 0.88, 100)
B = Score("math", 0.4, 0.03, 0.34, 0.46, 300)


def test_macro_by_hand():
    s = pooled_group_score("mathematics", [A, B], "macro")
    assert s.value == pytest.approx(0.6)
    assert s.stderr == pytest.approx(math.sqrt(0.04**2 + 0.03**2) / 2)  # 0.025
    assert s.stderr == pytest.approx(0.025)
    assert s.n == 400
    assert s.ci_low == pytest.approx(0.6 - 1.959964 * 0.025, rel=1e-6)
    assert s.method == "normal-macro"


def test_micro_by_hand():
    s = pooled_group_score("mathematics", [A, B], "micro")
    assert s.value == pytest.approx(0.25 * 0.8 + 0.75 * 0.4)  # 0.5
    assert s.stderr == pytest.approx(math.sqrt((0.25 * 0.04) ** 2 + (0.75 * 0.03) ** 2))
    assert s.n == 400
    assert s.method == "normal-micro"


def test_group_edge_cases():
    assert math.isnan(pooled_group_score("g", []).value)
    assert pooled_group_score("g", []).n == 0
    empty = Score("x", float("nan"), float("nan"), float("nan"), float("nan"), 0)
    s = pooled_group_score("g", [A, empty])
    assert s.value == pytest.approx(0.8) and s.stderr == pytest.approx(0.04) and s.n == 100
    with pytest.raises(ValueError):
        pooled_group_score("g", [A], "median")  # type: ignore[arg-type]


def test_bootstrap_ci_covers_mean_and_is_deterministic():
    rng = np.random.default_rng(1)
    values = rng.normal(0.5, 0.1, size=400)
    low, high = bootstrap_ci(values)
    assert low < values.mean() < high
    # close to the normal interval
    se = values.std(ddof=1) / math.sqrt(values.size)
    assert high - low == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert bootstrap_ci(values) == (low, high)
    assert bootstrap_ci(values, seed=1) != (low, high)


def test_bootstrap_ci_custom_stat_and_edges():
    values = list(range(101))
    low, high = bootstrap_ci(values, stat=np.median, iters=500)
    assert low < 50 < high
    low2, _ = bootstrap_ci(values, stat=lambda v: float(np.max(v)), iters=200)  # no axis argument
    assert low2 <= 100
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    assert bootstrap_ci([3.0]) == (3.0, 3.0)
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)


def test_pooled_interval_of_proportions_stays_in_unit_range():
    zero = Score("humaneval", 0.0, 0.0, 0.0, 0.161, 20, "wilson")
    low = Score("mbpp", 0.05, 0.05, 0.009, 0.236, 20, "wilson")
    s = pooled_group_score("coding", [zero, low])
    assert s.value == 0.025 and s.stderr == 0.025 and s.ci_low == 0.0 and s.ci_high > 0.025
    unbounded = Score("latency", 0.05, 0.05, -0.048, 0.148, 20, "normal")  # not a proportion: no clipping
    assert pooled_group_score("g", [unbounded, low]).ci_low < 0


def test_all_zero_proportions_keep_an_honest_interval():
    """Every subject at 0% has stderr 0; a zero-width [0, 0] interval would overstate certainty."""
    zeros = [Score(f"s{i}", 0.0, 0.0, 0.0, 0.5, 5, "wilson") for i in range(6)]
    s = pooled_group_score("math", zeros)
    assert s.value == 0.0 and s.stderr == 0.0 and s.ci_low == 0.0
    assert s.ci_high == pytest.approx(0.1135, abs=1e-3)  # Wilson at 0/30
