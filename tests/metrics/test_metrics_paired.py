import math

import numpy as np
import pytest

from evalmap.metrics import PairedResult, compare_paired, mcnemar, paired_bootstrap


def runs(a_only: int, b_only: int, both: int = 0, neither: int = 0) -> tuple[list[bool], list[bool]]:
    a = [True] * a_only + [False] * b_only + [True] * both + [False] * neither
    b = [False] * a_only + [True] * b_only + [True] * both + [False] * neither
    return a, b


def test_mcnemar_exact_by_hand():
    # 2 vs 8 discordant: p = 2 * (C(10,0)+C(10,1)+C(10,2)) / 2^10 = 2 * 56 / 1024
    a, b = runs(2, 8, both=5, neither=5)
    r = mcnemar(a, b)
    assert r.method == "mcnemar-exact"
    assert r.discordant == (2, 8)
    assert r.p_value == pytest.approx(112 / 1024)
    assert r.n == 20
    assert r.diff == pytest.approx(6 / 20)
    assert r.ci_low < r.diff < r.ci_high


def test_mcnemar_chi2_known_value():
    a, b = runs(10, 30, both=40, neither=20)
    r = mcnemar(a, b)
    assert r.method == "mcnemar-chi2"
    assert r.discordant == (10, 30)
    # chi2 = (|30-10|-1)^2 / 40 = 9.025
    assert r.p_value == pytest.approx(0.0026631, rel=1e-4)
    assert r.diff == pytest.approx(0.2)
    d = np.array([int(y) - int(x) for x, y in zip(a, b, strict=True)])
    assert r.stderr == pytest.approx(d.std(ddof=1) / math.sqrt(d.size))


def test_mcnemar_switches_at_25():
    chi2 = mcnemar(*runs(15, 10))  # 25 discordant pairs
    assert chi2.method == "mcnemar-chi2"
    assert chi2.p_value == pytest.approx(math.erfc(math.sqrt((5 - 1) ** 2 / 25 / 2)))
    exact = mcnemar(*runs(12, 12))  # 24 discordant pairs
    assert exact.method == "mcnemar-exact" and exact.p_value == 1.0


def test_mcnemar_edge_cases():
    r = mcnemar([], [])
    assert r.n == 0 and math.isnan(r.diff)
    same = mcnemar([True, False, True], [True, False, True])
    assert same.p_value == 1.0 and same.diff == 0.0 and same.discordant == (0, 0)
    one = mcnemar([False], [True])
    assert one.p_value == 1.0 and one.diff == 1.0 and math.isnan(one.stderr)
    with pytest.raises(ValueError):
        mcnemar([True], [True, False])
    with pytest.raises(ValueError):
        mcnemar([0.5], [1.0])  # type: ignore[list-item]


def test_paired_bootstrap_covers_true_difference():
    rng = np.random.default_rng(0)
    difficulty = rng.normal(0.0, 1.0, size=300)  # shared per item: what pairing removes
    a = difficulty + rng.normal(0.0, 0.2, size=300)
    b = difficulty + 0.1 + rng.normal(0.0, 0.2, size=300)
    r = paired_bootstrap(a.tolist(), b.tolist(), iters=4000)
    assert isinstance(r, PairedResult)
    assert r.method == "paired-bootstrap" and r.n == 300
    assert r.ci_low < 0.1 < r.ci_high
    assert r.ci_low > 0  # pairing makes a 0.1 gap visible despite sd 1 per item
    assert r.p_value < 0.01
    assert r.stderr == pytest.approx((b - a).std(ddof=1) / math.sqrt(300))
    assert paired_bootstrap(a.tolist(), b.tolist(), iters=4000) == r


def test_paired_bootstrap_no_difference():
    rng = np.random.default_rng(3)
    a = rng.normal(size=200)
    b = a + rng.normal(0.0, 0.3, size=200)
    r = paired_bootstrap(a.tolist(), b.tolist(), iters=2000)
    assert r.ci_low < 0.0 < r.ci_high
    assert r.p_value > 0.05


def test_paired_bootstrap_edge_cases():
    assert paired_bootstrap([], []).n == 0
    one = paired_bootstrap([0.2], [0.5])
    assert one.diff == pytest.approx(0.3) and math.isnan(one.p_value) and math.isnan(one.ci_low)
    same = paired_bootstrap([0.1, 0.5, 0.9], [0.1, 0.5, 0.9], iters=500)
    assert same.diff == 0.0 and same.p_value == 1.0 and same.stderr == 0.0
    assert same.ci_low == 0.0 and same.ci_high == 0.0
    shifted = paired_bootstrap([0.1, 0.5, 0.9], [0.3, 0.7, 1.1], iters=500)
    assert shifted.diff == pytest.approx(0.2) and shifted.p_value == pytest.approx(1 / 501)
    with pytest.raises(ValueError):
        paired_bootstrap([0.1], [0.1, 0.2])


def test_compare_paired_picks_method():
    assert compare_paired([1, 0, 1], [1, 1, 1]).method == "mcnemar-exact"
    assert compare_paired([1.0, 0.0], [True, False]).method == "mcnemar-exact"
    assert compare_paired([0.5, 0.2, 0.9], [0.6, 0.1, 1.0], iters=200).method == "paired-bootstrap"


def test_format():
    text = mcnemar(*runs(2, 8)).format()
    assert "n=10" in text and "mcnemar-exact" in text and text.startswith("+0.600")
