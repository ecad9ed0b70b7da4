import math

import pytest

from evalmap.metrics import Score, mean_score, wilson_interval


def test_mean_score_stderr_by_hand():
    values = [0.2, 0.4, 0.9]
    mean = 0.5
    var = ((0.2 - mean) ** 2 + (0.4 - mean) ** 2 + (0.9 - mean) ** 2) / 2  # = 0.13
    s = mean_score("f1", values)
    assert s.value == pytest.approx(mean)
    assert s.stderr == pytest.approx(math.sqrt(var / 3))
    assert s.method == "normal"
    assert s.ci_low == pytest.approx(mean - 1.959964 * s.stderr, rel=1e-6)
    assert s.n == 3


def test_binary_uses_wilson():
    s = mean_score("acc", [1, 0, 1, 1, 0, 0, 1, 0, 1, 0])
    assert s.method == "wilson"
    assert (s.ci_low, s.ci_high) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert s.stderr == pytest.approx(math.sqrt(0.5 * 0.5 * 10 / 9 / 10))
    assert mean_score("acc", [True, False]).method == "wilson"


def test_wilson_known_value_and_bounds():
    assert wilson_interval(0.5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    low, high = wilson_interval(0.0, 5)
    assert low == 0.0 and 0.0 < high < 1.0
    low, high = wilson_interval(1.0, 5)
    assert high == 1.0 and 0.0 < low < 1.0
    assert all(math.isnan(x) for x in wilson_interval(0.5, 0))


def test_edge_cases():
    empty = mean_score("acc", [])
    assert empty.n == 0 and math.isnan(empty.value) and math.isnan(empty.stderr)
    one = mean_score("f1", [0.7])
    assert one.n == 1 and one.value == 0.7 and math.isnan(one.stderr) and math.isnan(one.ci_low)
    one_binary = mean_score("acc", [1])
    assert one_binary.method == "wilson" and one_binary.ci_high == 1.0 and one_binary.ci_low > 0
    same = mean_score("f1", [0.3, 0.3, 0.3])
    assert same.stderr == 0.0 and same.ci_low == pytest.approx(0.3) and same.ci_high == pytest.approx(0.3)


def test_score_format_and_dict():
    s = Score("acc", 0.5, 0.1, 0.3, 0.7, 10, "wilson")
    assert s.format() == "0.500 ± 0.100 (n=10)"
    assert s.to_dict()["method"] == "wilson"
