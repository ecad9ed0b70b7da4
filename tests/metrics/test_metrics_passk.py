import itertools
import math

import pytest

from evalmap.metrics import Score, ks_for, pass_at_k, pass_at_k_score


def brute_force(n: int, c: int, k: int) -> float:
    """Fraction of k-subsets of n samples (c passing) holding at least one pass."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


def test_hand_values():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 3, 10) == 1.0
    assert pass_at_k(5, 0, 1) == 0.0
    assert pass_at_k(5, 0, 5) == 0.0
    assert pass_at_k(5, 5, 1) == 1.0
    # 1 - C(7,2)/C(10,2) = 1 - 21/45
    assert pass_at_k(10, 3, 2) == pytest.approx(1 - 21 / 45)


@pytest.mark.parametrize("n", range(1, 9))
def test_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force(n, c, k), abs=1e-12)


def test_large_n_is_stable_and_matches_comb():
    exact = 1 - math.comb(900, 100) / math.comb(1000, 100)
    assert pass_at_k(1000, 100, 100) == pytest.approx(exact, rel=1e-9)
    assert 0.0 <= pass_at_k(1000, 1, 1) <= 1.0


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, -1, 1), (5, 1, 0), (5, 1, 6)])
def test_invalid_inputs(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_score_mean_and_stderr():
    per_problem = [(10, 3), (10, 0), (10, 10), (10, 5)]
    est = [0.3, 0.0, 1.0, 0.5]
    s = pass_at_k_score(per_problem, 1)
    mean = sum(est) / 4
    sd = math.sqrt(sum((e - mean) ** 2 for e in est) / 3)
    assert isinstance(s, Score)
    assert s.name == "pass@1"
    assert s.n == 4
    assert s.value == pytest.approx(mean)
    assert s.stderr == pytest.approx(sd / 2)
    assert s.method == "normal"
    assert 0.0 <= s.ci_low < s.value < s.ci_high <= 1.0


def test_score_ci_clipped_to_unit_interval():
    s = pass_at_k_score([(10, 10), (10, 10), (10, 9)], 1)
    assert s.ci_high == 1.0
    assert s.ci_low < s.value


def test_score_binary_uses_wilson():
    s = pass_at_k_score([(1, 1), (1, 0), (1, 1)], 1, name="humaneval")
    assert s.method == "wilson"
    assert s.name == "humaneval"


def test_score_edge_cases():
    empty = pass_at_k_score([], 1)
    assert empty.n == 0 and math.isnan(empty.value)
    one = pass_at_k_score([(10, 3)], 1)
    assert one.n == 1 and one.value == pytest.approx(0.3) and math.isnan(one.stderr)
    with pytest.raises(ValueError):
        pass_at_k_score([(5, 1)], 10)


def test_ks_for():
    assert ks_for(0) == []
    assert ks_for(1) == [1]
    assert ks_for(9) == [1]
    assert ks_for(10) == [1, 10]
    assert ks_for(200) == [1, 10, 100]
