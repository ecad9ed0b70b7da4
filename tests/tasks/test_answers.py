"""Answer extraction on real-looking model outputs (evalmap.metrics.answers)."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from evalmap.metrics.answers import (
    extract_boxed,
    extract_last_number,
    extract_strict_gsm8k,
    math_equal,
    normalize_number,
)

COT_OK = (
    " Janet's ducks lay 16 eggs per day. She eats 3 for breakfast and bakes muffins with 4, so she has "
    "16 - 3 - 4 = 9 eggs left. She sells them for $2 each, so she makes 9 * 2 = $18. The answer is 18."
)
COT_NO_PHRASE = " She has 16 - 3 - 4 = 9 eggs left and sells each for $2, so she makes $18 every day.\n"
COT_CHANGES_MIND = " The answer is 18. Wait, she also sells 1 more egg, so 10 * 2 = 20"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (COT_OK, "18"),
        (COT_NO_PHRASE, None),
        (COT_CHANGES_MIND, "18."),  # the pattern's final "." matches the space; normalize drops "."
        (" So 5 + 4 = 9. The answer is 9.\n\n", "9"),  # "." does not match a newline
        (" The answer is -3.5 degrees.", "-3.5"),
        (" The answer is 1,250.", "1,250"),
        (" The answer is $18.", None),  # lm-eval's pattern has no "$": strict-match misses it
        (" The answer is 18", "1"),  # lm-eval's trailing "." eats a digit when nothing follows
        ("", None),
        (None, None),
    ],
)
def test_extract_strict_gsm8k(text, expected):
    assert extract_strict_gsm8k(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (COT_OK, "18."),
        (COT_NO_PHRASE, "$18"),
        (COT_CHANGES_MIND, "20"),
        (" I have 3 apples and 4.5 pears.", "4.5"),
        (" The total is $1,000.00 in all", "$1,000.00"),
        (" It drops to -7 overnight", "-7"),
        (" no numbers here", None),
        (12, None),
    ],
)
def test_extract_last_number(text, expected):
    assert extract_last_number(text) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("$29.00", "29"),
        ("1,000", "1000"),
        ("18.", "18"),
        ("$18", "18"),
        ("-3.50", "-3.5"),
        ("0.50", "0.5"),
        ("-0", "0"),
        ("Janet makes $18 a day.\n#### 18", "18"),
        ("#### 1,234", "1234"),
        ("  42  ", "42"),
        ("Eighteen", "eighteen"),
        ("$", None),
        ("...", None),
        ("", None),
        (None, None),
    ],
)
def test_normalize_number(raw, expected):
    assert normalize_number(raw) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So the area is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("First \\boxed{1}, then on reflection \\boxed{2}.", "2"),
        ("\\boxed{\\left\\{ 1, 2 \\right\\}}", "\\left\\{ 1, 2 \\right\\}"),
        ("The answer is \\boxed{x^{2}+1} and done", "x^{2}+1"),
        ("\\fbox{7}", "7"),
        ("Final: \\boxed 5$", "5"),
        ("\\boxed{3} and then \\boxed{4", "3"),  # unclosed last box: the earlier complete one
        ("\\boxed{12", None),
        ("no box at all", None),
        (None, None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("pred", "gold", "equal"),
    [
        ("\\frac{1}{2}", "0.5", True),
        ("The final answer is $\\boxed{2\\sqrt{2}}$.", "\\sqrt{8}", True),
        ("\\dfrac{3}{4}", "\\frac34", True),
        ("x^2+2x+1", "(x+1)^2", True),
        ("$18.00", "18", True),
        ("3", "4", False),
        ("}}{{\\frac", "1", False),
        ("((", "))", False),
        ("", "1", False),
        (None, "1", False),
        ("1", None, False),
        ("\\boxed{" * 50, "1", False),
    ],
)
def test_math_equal(pred, gold, equal):
    assert math_equal(pred, gold) is equal


def test_math_equal_in_threads():
    """The runner scores from a thread pool, where math-verify's SIGALRM timeouts cannot run."""
    pairs = [("\\frac{1}{2}", "0.5"), ("3", "4"), ("\\sqrt{8}", "2\\sqrt{2}")] * 4
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda p: math_equal(*p), pairs))
    assert got == [True, False, True] * 4
