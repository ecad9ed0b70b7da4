"""Answer extraction on real-looking model output, and the math / competition specs' scoring."""

import pytest

from evalmap.backends.base import Generation
from evalmap.metrics.answers import (
    extract_answer_is,
    extract_choice_letter,
    extract_math_answer,
    extract_minerva_answer,
    math_equal,
    normalize_integer,
)
from evalmap.tasks.base import Item

MINERVA_OUT = (
    " We have $x^2-5x+6=(x-2)(x-3)$, so the roots are $2$ and $3$ and their sum is $\\boxed{5}$.\n"
    "Final Answer: The final answer is $5$. I hope it is correct.\n\n"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINERVA_OUT, "5"),
        (
            "...\nFinal Answer: The final answer is $\\frac{\\sqrt{3}}{2}$. I hope it is correct.",
            "\\frac{\\sqrt{3}}{2}",
        ),
        ("Final Answer: The final answer is 12", "12"),  # cut off before "I hope"
        ("No closing phrase, just \\boxed{4}.", None),
    ],
)
def test_minerva_phrase(text, expected):
    assert extract_minerva_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINERVA_OUT, "5"),  # \boxed first
        ("so $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$.", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("Final Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct.", "-\\frac{2}{3}"),
        ("Adding them up, the answer is 29.\nQ: next", "29"),
        ("She has $29.00 left over in total", "$29.00"),  # last number, raw (math_equal reads it)
        ("I am not sure.", None),
    ],
)
def test_math_answer(text, expected):
    assert extract_math_answer(text) == expected


def test_answer_is_variants():
    assert extract_answer_is("Therefore, the final answer is $x^2+1$.") == "x^2+1"
    assert extract_answer_is("The answer is: 7\n") == "7"


@pytest.mark.parametrize(
    ("pred", "gold"),
    [("0.5", "\\frac{1}{2}"), ("$29.00", "29"), ("\\dfrac{3}{4}", "\\frac34"), ("2\\sqrt{2}", "\\sqrt{8}")],
)
def test_math_equal_equivalents(pred, gold):
    assert math_equal(pred, gold)


def test_math_equal_rejects():
    assert not math_equal("3", "\\frac{1}{2}")
    assert not math_equal(None, "1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("033", "33"), ("$204$", "204"), ("70.0", "70"), ("1{,}000", "1000"), ("\\frac{1}{2}", None), (None, None)],
)
def test_aime_integer(text, expected):
    assert normalize_integer(text) == expected


@pytest.mark.parametrize(
    ("text", "letters", "expected"),
    [
        ("Ice melts because heat is added. The answer is (B).", "ABCD", "B"),
        ("Let's think. A plant needs light... so the answer is: **C**", "ABCD", "C"),
        ("Reasoning here.\nAnswer: d", "ABCDE", "D"),
        ("Option (A) is wrong and (C) fits best.", "ABCD", "C"),
        ("I think the best choice is D", "ABCD", "D"),
        ("A man walks into a bar. I guess B", "ABCD", "B"),
        ("The answer is (E).", "ABCD", None),  # not an option of this item
        ("", "ABCD", None),
    ],
)
def test_choice_letter(text, letters, expected):
    assert extract_choice_letter(text, letters) == expected


# -- specs -----------------------------------------------------------------------------


def test_math_prompt_is_minerva_four_shot(make_task):
    task = make_task("math")
    item = Item(id="x", data={"problem": "What is $1+1$?", "answer": "2", "subject": "algebra", "level": "1"})
    prompt = task.prompt(item)
    assert prompt.startswith(
        "Problem:\nFind the domain of the expression  $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.}\n\nSolution: "
        "The expressions inside each square root must be non-negative."
    )
    assert prompt.count("Problem:\n") == 5
    assert "I hope it is correct.\n\nProblem:\nIf $\\det \\mathbf{A} = 2$" in prompt
    assert prompt.endswith(
        "Final Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct.\n\n"
        "Problem:\nWhat is $1+1$?\n\nSolution:"
    )
    assert task.requests(item)[0].stop[0] == "Problem:"


def test_math_records_and_groups(make_task):
    task = make_task("math")
    items = task.items()
    assert len(items) == 5000
    first = items[0].data
    assert first["answer"] == "2" and first["subject"] == "algebra" and first["level"] == "3"
    m500 = make_task("math", variant="math500").items()
    assert len(m500) == 500 and {i.data["subject"] for i in m500} >= {"precalculus", "counting_and_probability"}


def test_math_scoring_and_aggregates(make_task):
    task = make_task("math")
    items = [
        Item(id="a", data={"problem": "p", "answer": "\\frac{1}{2}", "subject": "algebra", "level": "1"}),
        Item(id="b", data={"problem": "p", "answer": "3", "subject": "algebra", "level": "2"}),
        Item(id="c", data={"problem": "p", "answer": "10", "subject": "geometry", "level": "2"}),
    ]
    outs = [
        "so $\\boxed{0.5}$.\nFinal Answer: The final answer is $0.5$. I hope it is correct.",
        "the answer is $\\boxed{3}$",  # no Minerva phrase: exact_match misses it
        "\\boxed{11}",
    ]
    samples = [task.score(i, [Generation(o)]) for i, o in zip(items, outs, strict=True)]
    assert [s.metrics["math_verify_accuracy"] for s in samples] == [1.0, 1.0, 0.0]
    assert [s.metrics["exact_match"] for s in samples] == [1.0, 0.0, 0.0]
    scores = {s.name: s for s in task.aggregate(samples)}
    assert scores["math_verify_accuracy"].value == pytest.approx(2 / 3)
    assert scores["math_verify_accuracy/subject:algebra"].value == 1.0
    assert scores["math_verify_accuracy/subject:geometry"].value == 0.0
    assert scores["math_verify_accuracy/level:2"].n == 2
    assert scores["math_verify_accuracy/subject_macro"].value == pytest.approx(0.5)
    for s in scores.values():
        assert s.ci_low <= s.value <= s.ci_high


def test_aime_integer_scoring(make_task):
    task = make_task("aime")
    items = task.items()
    assert len(items) == 30 and all(i.data["answer"].isdigit() for i in items)
    item = Item(id="1", data={"problem": "p", "answer": "033"})
    assert task.score(item, [Generation("Thus $m+n = \\boxed{33}$.")]).metrics["math_verify_accuracy"] == 1.0
    assert task.score(item, [Generation("\\boxed{33.5}")]).metrics["math_verify_accuracy"] == 0.0
    assert len(make_task("aime", variant="aime25").items()) == 30
    prompt = task.prompt(item)
    assert prompt == "Problem:\np\nPlease reason step by step, and put your final answer within \\boxed{}.\n\nSolution:"


def test_amc_float_answers(make_task):
    task = make_task("math_competition")
    items = task.items()
    assert len(items) == 40 and items[0].data["answer"] == "27"
    assert task.score(items[0], [Generation("They meet at $\\boxed{27}$ miles.")]).metrics["math_verify_accuracy"] == 1


def test_unknown_variant(make_task):
    from evalmap.errors import EvalmapError

    with pytest.raises(EvalmapError, match="no variant"):
        make_task("math", variant="nope").items()
