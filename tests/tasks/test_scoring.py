"""Scoring: log-likelihood multiple choice, gsm8k extraction, humaneval in the sandbox."""

import importlib.util
import math
from concurrent.futures import ThreadPoolExecutor

import pytest

from evalmap.backends.base import Generation, LogLikelihood
from evalmap.tasks.base import Item


def _ll(*values):
    return [LogLikelihood(logprob=v, is_greedy=False) for v in values]


# -- multiple choice -----------------------------------------------------------------


def test_acc_and_acc_norm_differ_on_lengths(make_task):
    """A short option wins on the raw sum, a long one per character (lm-eval's acc vs acc_norm)."""
    task = make_task("arc_challenge")
    item = Item(
        id="crafted",
        data={
            "id": "crafted",
            "question": "Which one?",
            "choices": {"text": ["Yes", "It depends on the weather outside"], "label": ["A", "B"]},
            "answerKey": "B",
        },
    )
    # sums: -4 > -9, so acc picks A; per char: -4/3 = -1.33 < -9/33 = -0.27, so acc_norm picks B.
    result = task.score(item, _ll(-4.0, -9.0))
    assert result.metrics == {"acc": 0.0, "acc_norm": 1.0}
    assert result.extracted == "A" and result.target == "B"
    assert result.details["logprobs"] == [-4.0, -9.0]
    assert result.details["pred"] == 0 and result.details["pred_norm"] == 1 and result.details["gold"] == 1
    assert result.details["choice_chars"] == [3, 33]  # the option text, without the leading space


def test_arc_real_item_correct(make_task):
    task = make_task("arc_challenge")
    item = next(it for it in task.items() if it.id == "Mercury_7175875")  # answer C
    result = task.score(item, _ll(-12.0, -11.0, -3.5, -9.0))
    assert result.metrics == {"acc": 1.0, "acc_norm": 1.0}
    assert (result.extracted, result.target) == ("C", "C")


def test_hellaswag_indices(make_task):
    task = make_task("hellaswag")
    item = task.items()[0]  # gold 3
    result = task.score(item, _ll(-20.0, -15.0, -30.0, -16.0))
    assert result.metrics["acc"] == 0.0
    # lengths 37, 27, 26, 36: -15/27 = -0.556 vs -16/36 = -0.444 -> ending 3 per character
    assert result.metrics["acc_norm"] == 1.0
    assert (result.extracted, result.target) == (1, 3)


def test_mmlu_letters_and_acc_only(make_task):
    task = make_task("mmlu")
    item = next(it for it in task.items() if it.id == "abstract_algebra/0")  # answer B
    result = task.score(item, _ll(-2.0, -0.5, -1.5, -3.0))
    assert result.metrics == {"acc": 1.0}
    assert (result.extracted, result.target) == ("B", "B")
    wrong = task.score(item, _ll(-0.1, -0.5, -1.5, -3.0))
    assert wrong.metrics == {"acc": 0.0} and wrong.extracted == "A"


def test_mc_ties_pick_the_first_option(make_task):
    task = make_task("mmlu")
    item = next(it for it in task.items() if it.id == "abstract_algebra/0")
    assert task.score(item, _ll(-1.0, -1.0, -1.0, -1.0)).extracted == "A"


def test_mc_aggregate(make_task):
    task = make_task("arc_challenge")
    items = task.items(limit=4, seed=0)
    samples = []
    for it in items:
        gold = it.data["choices"]["label"].index(it.data["answerKey"])
        lls = [-10.0] * len(it.data["choices"]["text"])
        lls[gold if it is not items[0] else (gold + 1) % len(lls)] = -1.0
        samples.append(task.score(it, _ll(*lls)))
    scores = {s.name: s for s in task.aggregate(samples)}
    assert list(scores) == ["acc", "acc_norm"]
    assert scores["acc"].value == pytest.approx(0.75) and scores["acc"].n == 4


# -- gsm8k ---------------------------------------------------------------------------


GSM8K_OUTPUTS = [
    # (model output, strict, flexible) for "Janet's ducks" (gold 18)
    (
        " Janet's ducks lay 16 eggs per day. She eats 3 and bakes 4, so 16 - 3 - 4 = 9 eggs are left. "
        "She sells them for $2 each, so 9 * 2 = 18 dollars. The answer is 18.",
        1.0,
        1.0,
    ),
    (" She has 16 - 3 - 4 = 9 eggs and makes 9 * 2 = $18.00 every day.", 0.0, 1.0),
    (" The answer is 18. Then again 16 - 3 - 4 = 9 and 9 * 3 = 27", 1.0, 0.0),
    (" 16 - 3 - 4 = 9 eggs, 9 * 2 = $18. The answer is $18.", 0.0, 1.0),
    (" She makes 16 * 2 = 32 dollars. The answer is 32.", 0.0, 0.0),
    ("", 0.0, 0.0),
]


@pytest.mark.parametrize(("output", "strict", "flexible"), GSM8K_OUTPUTS)
def test_gsm8k_strict_vs_flexible(make_task, output, strict, flexible):
    task = make_task("gsm8k")
    item = task.items()[0]
    result = task.score(item, [Generation(text=output)])
    assert result.metrics == {"exact_match_strict": strict, "exact_match_flexible": flexible}
    assert result.target == "18"


def test_gsm8k_normalises_gold_and_prediction(make_task):
    task = make_task("gsm8k")
    item = Item(id="x", data={"id": "x", "question": "?", "answer": "So 1,000 in all.\n#### 1,000"})
    result = task.score(item, [Generation(text=" The total is $1,000.00. The answer is 1,000.")])
    assert result.target == "1000"
    assert result.extracted == {"exact_match_strict": "1000", "exact_match_flexible": "1000"}
    assert result.metrics == {"exact_match_strict": 1.0, "exact_match_flexible": 1.0}


def test_gsm8k_several_samples_average(make_task):
    task = make_task("gsm8k", n_samples=2, temperature=0.7)
    item = task.items()[0]
    result = task.score(item, [Generation(text=" The answer is 18."), Generation(text=" The answer is 17.")])
    assert result.metrics == {"exact_match_strict": 0.5, "exact_match_flexible": 0.5}


def test_gsm8k_scoring_is_thread_safe_and_aggregates(make_task):
    task = make_task("gsm8k")
    items = task.items()[:8]
    outputs = [Generation(text=f" The answer is {i}.") for i in range(8)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda p: task.score(*p), [(it, [o]) for it, o in zip(items, outputs, strict=True)]))
    assert results == [task.score(it, [o]) for it, o in zip(items, outputs, strict=True)]
    scores = task.aggregate(results)
    assert [s.name for s in scores] == ["exact_match_strict", "exact_match_flexible"]
    assert all(s.n == 8 for s in scores)


# -- humaneval -----------------------------------------------------------------------

needs_sandbox = pytest.mark.skipif(
    importlib.util.find_spec("evalmap.sandbox.executor") is None, reason="evalmap.sandbox not built yet"
)


@needs_sandbox
def test_humaneval_canonical_solutions_pass(make_task):
    task = make_task("humaneval")
    items = task.items()[:10]
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda it: task.score(it, [Generation(text=it.data["canonical_solution"])]), items))
    failures = {it.id: r.details for it, r in zip(items, results, strict=True) if r.metrics["pass@1"] != 1.0}
    assert not failures
    assert all(r.details["status"] == "passed" and r.details["wall_s"] < 10 for r in results)
    (score,) = task.aggregate(results)
    assert score.name == "pass@1" and score.value == 1.0 and score.n == 10


@needs_sandbox
def test_humaneval_wrong_and_broken_solutions_fail(make_task):
    task = make_task("humaneval")
    item = task.items()[0]
    wrong = task.score(item, [Generation(text="    return False\n")])
    assert wrong.metrics == {"pass@1": 0.0}
    assert wrong.details["status"] == "failed" and wrong.details["error_type"] == "AssertionError"
    broken = task.score(item, [Generation(text="    return (\n")])
    assert broken.metrics == {"pass@1": 0.0} and broken.details["status"] == "error"
    assert len(broken.details["stderr"]) <= 1000


@needs_sandbox
def test_humaneval_pass_at_k_over_samples(make_task):
    task = make_task("humaneval", n_samples=10, temperature=0.8)
    item = task.items()[0]
    good = Generation(text=item.data["canonical_solution"])
    bad = Generation(text="    return False\n")
    result = task.score(item, [good, good, good] + [bad] * 7)
    assert result.metrics["pass@1"] == pytest.approx(0.3)
    assert result.metrics["pass@10"] == 1.0
    assert result.details["n"] == 10 and result.details["passed"] == 3
    assert [s.name for s in task.aggregate([result])] == ["pass@1", "pass@10"]
    assert math.isnan(task.aggregate([result])[0].stderr)  # one problem: no spread


@needs_sandbox
def test_humaneval_chat_answer_passes(make_task):
    task = make_task("humaneval", chat=True)
    item = task.items()[2]  # truncate_number
    answer = (
        "Here is the function:\n\n```python\ndef truncate_number(number: float) -> float:\n    return number % 1.0\n```"
    )
    result = task.score(item, [Generation(text=answer)])
    assert result.metrics == {"pass@1": 1.0}, result.details
