"""MT-Bench (tasks.kinds.judge): the conversation, FastChat's judge prompts, rating and verdict parsing,
the pairwise swap, and the scores, driven by hand the way the runner drives a task (requests, then
follow_up after each round, then score) with a scripted judge."""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable

import pytest

from evalmap.backends.base import Generation, GenerationRequest
from evalmap.errors import DataMissingError, EvalmapError
from evalmap.tasks.base import Item, JudgeRequest, TaskConfig
from evalmap.tasks.data import DataFormatError
from evalmap.tasks.kinds.judge import RATING_PATTERNS, pair_outcome, parse_rating, parse_verdict
from evalmap.tasks.registry import build_task

PATTERNS = tuple(re.compile(p) for p in RATING_PATTERNS)
WRONG_GPT4_REFS = {"104", "105", "109", "111", "113", "114", "120", "122", "124", "125", "126", "128", "130"}


def _task(get_dataset, **config):
    """A task built without reading data (building is lazy): for scoring and aggregation by hand."""
    return build_task(get_dataset("mt_bench"), TaskConfig(**config))


def _item(qid: str, category: str, reference=None) -> Item:
    data = {"id": qid, "category": category, "turns": [f"Q1 of {qid}?", f"Q2 of {qid}?"], "reference": reference or []}
    return Item(id=qid, data=data)


def _drive(task, item: Item, answers: list[str], judge: Callable[[JudgeRequest], str]):
    """Run one item as the runner does: each round's requests answered (the model's in turn order, the
    judge's by `judge`), follow_up after every round until it says []; returns (rounds, result)."""
    rounds, responses, pending = [], [], task.requests(item)
    model_answers = iter(answers)
    while pending:
        rounds.append(pending)
        for request in pending:
            text = judge(request) if isinstance(request, JudgeRequest) else next(model_answers)
            responses.append(Generation(text))
        pending = task.follow_up(item, responses)
    return rounds, task.score(item, responses)


def _ratings(*texts: str) -> Callable[[JudgeRequest], str]:
    """A judge that answers its calls with these texts, in order."""
    queue = list(texts)
    return lambda request: queue.pop(0)


def _user(request) -> str:
    return dict(request.messages)["user"]


# -- the conversation -----------------------------------------------------------------


def test_turn_two_carries_the_models_own_first_answer(make_task):
    task = make_task("mt_bench")
    item = next(i for i in task.items() if i.id == "81")  # writing
    q1, q2 = item.data["turns"]
    (first,) = task.requests(item)
    assert type(first) is GenerationRequest and first.chat and first.messages == (("user", q1),)
    assert (first.max_tokens, first.temperature, first.seed) == (1024, 0.7, 1234)

    rounds, result = _drive(task, item, ["  my first answer \n", "my second answer"], _ratings("[[7]]", "[[5]]"))
    assert [len(r) for r in rounds] == [1, 2, 1]
    turn2, judge1 = rounds[1]
    assert type(turn2) is GenerationRequest
    assert turn2.messages == (("user", q1), ("assistant", "my first answer"), ("user", q2))  # stripped, as FastChat
    assert isinstance(judge1, JudgeRequest) and judge1.chat
    assert (judge1.temperature, judge1.max_tokens) == (0.0, 2048)
    assert judge1.messages[0] == ("system", "You are a helpful assistant.")
    assert "[Question]\n" + q1 in _user(judge1) and "my first answer\n[The End of Assistant's Answer]" in _user(judge1)
    (judge2,) = rounds[2]
    prompt2 = _user(judge2)
    assert "### Assistant A:\nmy first answer" in prompt2 and "### Assistant A:\nmy second answer" in prompt2
    assert q2 in _user(judge2) and "second user question" in judge2.messages[0][1]  # single-v1-multi-turn
    assert result.details["answers"] == ["my first answer", "my second answer"]


def test_category_temperatures_and_run_overrides(make_task):
    """FastChat's table per category; a run temperature above 0 applies to every category; --max-tokens is
    the model's (the judge keeps 2048 at temperature 0)."""
    task = make_task("mt_bench")
    by_cat = {i.data["category"]: i for i in task.items()}
    want = {"writing": 0.7, "roleplay": 0.7, "stem": 0.1, "humanities": 0.1, "math": 0.0, "coding": 0.0,
            "reasoning": 0.0, "extraction": 0.0}  # fmt: skip
    assert {c: task.requests(i)[0].temperature for c, i in by_cat.items()} == want

    hot = make_task("mt_bench", temperature=0.3, max_tokens=64, seed=7)
    for item in by_cat.values():
        (first,) = hot.requests(item)
        assert (first.temperature, first.max_tokens, first.seed) == (0.3, 64, 7)
        turn2, judge = hot.follow_up(item, [Generation("a")])
        assert (turn2.temperature, turn2.max_tokens) == (0.3, 64)
        assert (judge.temperature, judge.max_tokens, judge.seed) == (0.0, 2048, 7)


def test_math_reasoning_coding_are_judged_against_the_reference(make_task):
    task = make_task("mt_bench")
    items = {i.id: i for i in task.items()}
    for qid, category in (("111", "math"), ("101", "reasoning"), ("121", "coding")):
        item = items[qid]
        assert item.data["category"] == category and len(item.data["reference"]) == 2
        ref1, ref2 = item.data["reference"]
        rounds, result = _drive(task, item, ["a1", "a2"], _ratings("[[3]]", "[[4]]"))
        judge1, judge2 = rounds[1][1], rounds[2][0]
        assert "[The Start of Reference Answer]\n" + ref1 in _user(judge1)
        assert "### Reference answer:\n" + ref1 in _user(judge2) and "### Reference answer:\n" + ref2 in _user(judge2)
        assert result.details["judge_templates"] == ["single-math-v1", "single-math-v1-multi-turn"]
        assert result.details["reference"] == [ref1, ref2] and result.target == [ref1, ref2]
    writing = items["81"]
    rounds, result = _drive(task, writing, ["a1", "a2"], _ratings("[[3]]", "[[4]]"))
    assert "Reference" not in _user(rounds[1][1]) and "Reference" not in _user(rounds[2][0])
    assert result.details["judge_templates"] == ["single-v1", "single-v1-multi-turn"]
    assert result.details["reference"] is None


def test_the_shipped_data(make_task):
    task = make_task("mt_bench")
    items = task.items()
    assert len(items) == 80 and len({i.id for i in items}) == 80
    counts = {}
    for item in items:
        counts[item.data["category"]] = counts.get(item.data["category"], 0) + 1
    assert counts == dict.fromkeys(("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem",
                                    "humanities"), 10)  # fmt: skip
    assert sum(1 for i in items if i.data["reference"]) == 30
    assert len(task.items(limit=5, seed=1)) == 5


def test_known_wrong_gpt4_references_are_flagged(make_task):
    task = make_task("mt_bench")
    flagged = set()
    for item in task.items():
        result = task.score(item, [Generation(t) for t in ("a1", "a2", "[[5]]", "[[5]]")])
        if result.details.get("reference_known_wrong"):
            flagged.add(item.id)
    assert flagged == WRONG_GPT4_REFS


def test_a_rerun_asks_the_same_requests(make_task):
    """Resuming mid-judging: the same answers give the same follow-ups (request keys), so every request a
    first run made is a cache hit."""
    task, again = make_task("mt_bench"), make_task("mt_bench")
    item = next(i for i in task.items() if i.id == "111")
    answered = [Generation("a1"), Generation("a2"), Generation("Rating: [[6]]")]
    for n in (1, 3):
        assert [r.key() for r in task.follow_up(item, answered[:n])] == [
            r.key() for r in again.follow_up(item, answered[:n])
        ]
    assert task.prompt_hash() == again.prompt_hash()
    with pytest.raises(EvalmapError, match="2 answers do not end a round"):
        task.follow_up(item, answered[:2])


# -- single grading ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("judgment", "rating"),
    [
        ("Good answer.\n\nRating: [[7]]", 7.0),
        ("Rating: [[7.5]]", 7.5),
        ("Rating: [[7.]]", 7.0),
        ("Rating: [[07]]", 7.0),
        ("Rating: [[10]]", 10.0),
        ("Rating: [[1]]", 1.0),
        ("Rating: [8]", 8.0),  # FastChat's backup pattern
        ("[[8]] at first, on reflection [[3]]", 8.0),  # the first match, as FastChat
        ("Cites [2], then rates it [[9]]", 9.0),  # [[n]] is looked for first
    ],
)
def test_ratings_are_read_as_fastchat_reads_them(judgment, rating):
    assert parse_rating(judgment, PATTERNS) == (rating, None)


@pytest.mark.parametrize(
    ("judgment", "why"),
    [
        ("A fine answer, I would give it a seven.", "no [[rating]]"),
        ("Rating: [[ 7 ]]", "no [[rating]]"),
        ("Rating: [[seven]]", "no [[rating]]"),
        ("", "empty"),
        ("  \n", "empty"),
        ("Rating: [[0]]", "outside 1-10"),  # FastChat would average a 0
        ("Rating: [[11]]", "outside 1-10"),
        ("As shown in [42], the answer is right.", "outside 1-10"),  # a citation caught by the backup pattern
    ],
)
def test_unreadable_or_off_scale_ratings_are_failures(judgment, why):
    rating, failure = parse_rating(judgment, PATTERNS)
    assert rating is None and why in failure


def test_a_failed_judgment_is_counted_and_kept(get_dataset):
    task = _task(get_dataset)  # scoring reads no data
    item = _item("90", "writing")
    responses = [Generation(t) for t in ("a1", "a2", "Rating: [[6]]", "I refuse to rate this.")]
    result = task.score(item, responses)
    assert result.metrics == {"turn_1": 6.0, "judge_score": 6.0, "judge_failures": 1.0}
    assert result.extracted == [6.0, None]
    turn1, turn2 = result.details["turns"]
    assert turn1 == {"turn": 1, "template": "single-v1", "judgment": "Rating: [[6]]", "rating": 6.0, "failure": None}
    assert turn2["judgment"] == "I refuse to rate this." and turn2["rating"] is None
    assert "no [[rating]]" in turn2["failure"]
    both_failed = task.score(item, [Generation(t) for t in ("a1", "a2", "?", "?")])
    assert both_failed.metrics == {"judge_failures": 2.0}  # no judge_score at all, never a made-up 0


def test_single_scores_per_turn_category_and_overall(get_dataset, data_dir):
    task = _task(get_dataset, data_dir=data_dir)
    judged = [  # (item, turn-1 judgment, turn-2 judgment)
        (_item("81", "writing"), "[[8]]", "[[6]]"),
        (_item("82", "writing"), "[[4]]", "no verdict"),
        (_item("111", "math", ["r1", "r2"]), "[[10]]", "[[2]]"),
    ]
    samples = [_drive(task, item, ["a1", "a2"], _ratings(j1, j2))[1] for item, j1, j2 in judged]
    assert [s.metrics.get("judge_score") for s in samples] == [7.0, 4.0, 6.0]
    scores = {s.name: s for s in task.aggregate(samples)}
    assert list(scores)[:3] == ["judge_score", "judge_score/turn:1", "judge_score/turn:2"]
    assert list(scores)[3:] == ["judge_score/category:writing", "judge_score/category:math", "judge_failures"]

    overall = scores["judge_score"]  # the mean of all 5 valid turn ratings, clustered by question
    assert overall.value == pytest.approx(6.0) and overall.n == 5 and "3 clusters" in overall.method
    # CR1: G/(G-1) * sum_g (sum_i (y_i - mean))^2 / N^2 = 3/2 * ((2 + 0)^2 + (-2)^2 + (4 - 4)^2) / 25
    assert overall.stderr == pytest.approx(math.sqrt(1.5 * 8) / 5)
    assert overall.ci_low == pytest.approx(6.0 - 1.959964 * overall.stderr, rel=1e-5)

    turn1, turn2 = scores["judge_score/turn:1"], scores["judge_score/turn:2"]
    assert (turn1.value, turn1.n, turn1.method) == (pytest.approx(22 / 3), 3, "normal")
    mean1 = 22 / 3
    assert turn1.stderr == pytest.approx(math.sqrt(((8 - mean1) ** 2 + (4 - mean1) ** 2 + (10 - mean1) ** 2) / 2 / 3))
    assert (turn2.value, turn2.n) == (pytest.approx(4.0), 2)
    writing = scores["judge_score/category:writing"]
    assert (writing.value, writing.n) == (pytest.approx(6.0), 3)
    assert scores["judge_score/category:math"].n == 2 and math.isnan(scores["judge_score/category:math"].stderr)

    failures = scores["judge_failures"]  # a count over the 6 judgments asked
    assert (failures.value, failures.n) == (1.0, 6) and failures.method.startswith("count")
    assert failures.ci_low >= 0.0 and failures.ci_high > 1.0


def test_all_ones_are_a_rating_not_a_proportion(get_dataset):
    """A 1-10 mean is never given a Wilson interval, even when every rating is 1 (a 0/1-looking sample)."""
    task = _task(get_dataset)
    samples = [task.score(_item(str(i), "writing"), [Generation(t) for t in ("a", "b", "[[1]]", "[[1]]")])
               for i in range(4)]  # fmt: skip
    score = task.aggregate(samples)[0]
    assert (score.value, score.stderr, score.ci_low, score.ci_high) == (1.0, 0.0, 1.0, 1.0)


def test_no_failures_is_a_zero_count_with_an_upper_bound(get_dataset):
    task = _task(get_dataset)
    samples = [task.score(_item(str(i), "stem"), [Generation(t) for t in ("a", "b", "[[5]]", "[[6]]")])
               for i in range(10)]  # fmt: skip
    failures = task.aggregate(samples)[-1]
    assert failures.name == "judge_failures" and (failures.value, failures.n, failures.ci_low) == (0.0, 20, 0.0)
    assert 0.0 < failures.ci_high < 20


# -- pairwise -----------------------------------------------------------------------------


def _pairwise(get_dataset, opponent: dict | None = None, data_dir: str | None = None):
    task = _task(get_dataset, pairwise_against="baseline_model", data_dir=data_dir)
    if opponent is not None:
        task.set_opponent("baseline_model", opponent)
    return task


def _answers_in(request) -> tuple[str, str]:
    """Who is assistant A and who is B in a pairwise prompt whose answers read 'MODEL ...' and 'OPP ...'."""
    prompt = _user(request)
    return ("MODEL", "OPP") if prompt.index("MODEL") < prompt.index("OPP") else ("OPP", "MODEL")


@pytest.mark.parametrize(
    ("first", "second", "outcome"),
    [
        ("[[A]]", "[[B]]", "win"),  # the model's answer wins in both positions
        ("[[B]]", "[[A]]", "loss"),
        ("[[A]]", "[[A]]", "tie"),  # position bias: the orders disagree
        ("[[B]]", "[[B]]", "tie"),
        ("[[C]]", "[[C]]", "tie"),
        ("[[A]]", "[[C]]", "tie"),  # a win in one order only
        ("[[C]]", "[[B]]", "tie"),
        ("I cannot decide.", "[[B]]", None),  # a judge failure, not a tie
        ("[[A]]", "", None),
    ],
)
def test_pairwise_verdicts_in_both_orders(get_dataset, data_dir, first, second, outcome):
    task = _pairwise(get_dataset, {"81": ["OPP one", "OPP two"]}, data_dir)
    item = _item("81", "writing")
    verdicts = iter([first, second, first, second])
    rounds, result = _drive(task, item, ["MODEL one", "MODEL two"], lambda request: next(verdicts))
    assert [len(r) for r in rounds] == [1, 3, 2]
    g1, g2 = rounds[1][1:]
    assert _answers_in(g1) == ("MODEL", "OPP") and _answers_in(g2) == ("OPP", "MODEL")
    assert "[[A]]" in g1.messages[0][1] and (g1.temperature, g1.max_tokens) == (0.0, 2048)
    m1, m2 = rounds[2]
    assert _answers_in(m1) == ("MODEL", "OPP") and _answers_in(m2) == ("OPP", "MODEL")
    assert "OPP two" in _user(m1) and "MODEL two" in _user(m2)
    assert result.extracted == [outcome, outcome]
    turn1 = result.details["turns"][0]
    assert turn1["judgments"] == [first, second] and turn1["outcome"] == outcome
    if outcome is None:
        assert "no [[A]], [[B]] or [[C]]" in turn1["failure"] and "win_rate_adjusted" not in result.metrics
        assert result.metrics["judge_failures"] == 2.0
    else:
        assert result.metrics["win_rate_adjusted"] == {"win": 1.0, "tie": 0.5, "loss": 0.0}[outcome]
        assert result.metrics["judge_failures"] == 0.0
    assert result.details["opponent"] == "baseline_model"
    assert result.details["opponent_answers"] == ["OPP one", "OPP two"]
    assert result.details["answers"] == ["MODEL one", "MODEL two"]
    assert result.details["judge_templates"] == ["pair-v2", "pair-v2-multi-turn"]


def test_fastchat_verdict_precedence():
    assert parse_verdict("[[A]] ... or rather [[B]]") == "A"
    assert parse_verdict("Final verdict: [[C]]") == "tie"
    assert parse_verdict("[A]") is None
    assert pair_outcome("model", "model") == "win" and pair_outcome("opponent", "opponent") == "loss"
    assert pair_outcome("tie", "tie") == "tie" and pair_outcome("model", None) is None


def test_pairwise_reference_templates(get_dataset, data_dir):
    task = _pairwise(get_dataset, {"111": ["OPP one", "OPP two"]}, data_dir)
    item = _item("111", "math", ["REF one", "REF two"])
    rounds, result = _drive(task, item, ["MODEL one", "MODEL two"], lambda request: "[[A]]")
    assert "[The Start of Reference Answer]\nREF one" in _user(rounds[1][1])
    assert "### Reference answer:\nREF two" in _user(rounds[2][0])
    assert result.details["judge_templates"] == ["pair-math-v1", "pair-math-v1-multi-turn"]


def test_pairwise_scores(get_dataset):
    task = _pairwise(get_dataset, {str(i): ["OPP", "OPP"] for i in range(5)})
    verdicts = {  # per item: (turn 1 in both orders, turn 2 in both orders)
        "0": ("[[A]]", "[[B]]", "[[A]]", "[[B]]"),  # win, win
        "1": ("[[B]]", "[[A]]", "[[C]]", "[[C]]"),  # loss, tie
        "2": ("[[A]]", "[[A]]", "[[A]]", "[[B]]"),  # tie (inconsistent), win
        "3": ("[[A]]", "[[B]]", "??", "[[B]]"),  # win, failure
        "4": ("[[B]]", "[[A]]", "[[B]]", "[[A]]"),  # loss, loss
    }
    samples = [
        task.score(_item(qid, "writing" if qid < "3" else "stem"), [Generation(t) for t in ("a", "b", g1, g2, m1, m2)])
        for qid, (g1, g2, m1, m2) in verdicts.items()
    ]
    scores = task.aggregate(samples)
    names = [s.name for s in scores]
    assert names[0] == "win_rate_adjusted"  # first: the job's headline in pairwise mode
    assert names[1:7] == ["win_rate", "tie_rate", "loss_rate", "wins", "ties", "losses"]
    assert names[7:] == ["win_rate_adjusted/turn:1", "win_rate_adjusted/turn:2", "win_rate_adjusted/category:writing",
                         "win_rate_adjusted/category:stem", "judge_failures"]  # fmt: skip
    by = {s.name: s for s in scores}
    # 9 readable pairs: 4 wins, 2 ties, 3 losses -> (4 + 0.5 * 2) / 9
    assert (by["win_rate_adjusted"].value, by["win_rate_adjusted"].n) == (pytest.approx(5 / 9), 9)
    assert "5 clusters" in by["win_rate_adjusted"].method
    assert 0.0 <= by["win_rate_adjusted"].ci_low < 5 / 9 < by["win_rate_adjusted"].ci_high <= 1.0
    assert (by["win_rate"].value, by["tie_rate"].value, by["loss_rate"].value) == (
        pytest.approx(4 / 9), pytest.approx(2 / 9), pytest.approx(3 / 9))  # fmt: skip
    assert (by["wins"].value, by["ties"].value, by["losses"].value, by["wins"].n) == (4.0, 2.0, 3.0, 9)
    assert by["wins"].ci_high == pytest.approx(by["win_rate"].ci_high * 9)
    assert (by["win_rate_adjusted/turn:1"].value, by["win_rate_adjusted/turn:1"].n) == (pytest.approx(2.5 / 5), 5)
    assert (by["win_rate_adjusted/turn:2"].value, by["win_rate_adjusted/turn:2"].n) == (pytest.approx(2.5 / 4), 4)
    assert by["win_rate_adjusted/category:stem"].value == pytest.approx(1 / 3)
    assert (by["judge_failures"].value, by["judge_failures"].n) == (1.0, 20)  # one of 20 judgments


def test_pairwise_needs_the_opponent(get_dataset, make_task):
    item = _item("81", "writing")
    task = _pairwise(get_dataset)
    with pytest.raises(EvalmapError, match=r"graded pairwise against 'baseline_model', but the task was given no "):
        task.requests(item)
    task.set_opponent("baseline_model", {"82": ["x", "y"]})
    with pytest.raises(EvalmapError) as err:
        task.requests(item)
    msg = str(err.value)
    assert "baseline_model has no stored answer to mt_bench item 81" in msg and msg.endswith("first.")
    assert "\n" not in msg and ". " not in msg
    with pytest.raises(EvalmapError, match="item 82 is not 2 turns of text"):
        task.set_opponent("baseline_model", {"82": ["only one"]})
    single = make_task("mt_bench")
    assert single.requests(item)  # single grading needs no opponent


# -- hashes, options, data ------------------------------------------------------------------


def test_prompt_and_judge_hashes(make_task, get_dataset):
    single = make_task("mt_bench")
    pairwise = make_task("mt_bench", pairwise_against="other")
    assert single.prompt_hash() != pairwise.prompt_hash()
    assert single.judge_prompt_hash() != pairwise.judge_prompt_hash()
    assert single.judge_prompt_hash() == make_task("mt_bench", temperature=0.5).judge_prompt_hash()
    assert single.prompt_hash() != make_task("mt_bench", temperature=0.5).prompt_hash()
    assert re.fullmatch(r"[0-9a-f]{64}", single.judge_prompt_hash())


def test_options_it_cannot_honour_are_refused(get_dataset):
    refused = [
        (dict(chat=False), "--no-chat"),
        (dict(n_samples=3), "--n-samples"),
        (dict(num_fewshot=2), "--num-fewshot"),
        (dict(mode="loglikelihood"), "only generates"),
    ]
    for config, words in refused:
        with pytest.raises(EvalmapError, match=words):
            _task(get_dataset, **config)
    assert _task(get_dataset).judged is True


def _jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _copy_data(data_dir, tmp_path, *names):
    folder = tmp_path / "mt_bench"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(f"{data_dir}/mt_bench/{name}", folder / name)
    return folder


def test_without_local_files_it_says_the_hub_cannot_stand_in(offline, get_dataset, data_dir, tmp_path):
    with pytest.raises(DataMissingError) as err:
        _task(get_dataset, data_dir=None).items()
    msg = str(err.value)
    assert "no --data-dir or $EVALMAP_DATA_DIR was given" in msg and "HuggingFaceH4/mt_bench_prompts" in msg
    assert "\n" not in msg and msg.endswith("pass --data-dir.")
    _copy_data(data_dir, tmp_path, "question.jsonl", "reference_answer_gpt-4.jsonl")
    with pytest.raises(DataMissingError, match=r"there is no .*mt_bench/judge_prompts\.jsonl"):
        _task(get_dataset, data_dir=str(tmp_path)).items()


def test_judge_templates_are_checked(get_dataset, data_dir, tmp_path):
    folder = _copy_data(data_dir, tmp_path, "question.jsonl", "reference_answer_gpt-4.jsonl")
    prompts = _jsonl(f"{data_dir}/mt_bench/judge_prompts.jsonl")
    kept = [p for p in prompts if p["name"] != "single-math-v1"]
    (folder / "judge_prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in kept), encoding="utf-8")
    task = _task(get_dataset, data_dir=str(tmp_path))
    with pytest.raises(DataFormatError, match="has no judge template 'single-math-v1'"):
        task.judge_prompt_hash()
    assert _task(get_dataset, data_dir=str(tmp_path), pairwise_against="x").judge_prompt_hash()  # pairwise needs none

    for p in prompts:
        if p["name"] == "single-v1":
            p["prompt_template"] += "\n{answer_2}"  # turn 1 has no second answer yet
    (folder / "judge_prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts), encoding="utf-8")
    with pytest.raises(DataFormatError, match="'single-v1' .* asks for answer_2, which turn 1 cannot fill"):
        _task(get_dataset, data_dir=str(tmp_path)).judge_prompt_hash()


def test_corrected_references_variant(get_dataset, data_dir, tmp_path):
    """--variant corrected_references reads PR 3158's reference file from the data folder (here a stand-in
    with the same layout) and flags nothing; a missing reference stops the run naming the question."""
    folder = _copy_data(data_dir, tmp_path, "question.jsonl", "judge_prompts.jsonl")
    task = _task(get_dataset, data_dir=str(tmp_path), variant="corrected_references")
    with pytest.raises(DataMissingError, match="reference_answer_gpt-4-0125-preview.jsonl"):
        task.items()
    refs = _jsonl(f"{data_dir}/mt_bench/reference_answer_gpt-4.jsonl")
    for r in refs:
        r["model_id"] = "gpt-4-0125-preview"
        r["choices"][0]["turns"] = [f"corrected {r['question_id']} turn {t}" for t in (1, 2)]
    path = folder / "reference_answer_gpt-4-0125-preview.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in refs), encoding="utf-8")
    task = _task(get_dataset, data_dir=str(tmp_path), variant="corrected_references")
    item = next(i for i in task.items() if i.id == "111")
    assert item.data["reference"] == ["corrected 111 turn 1", "corrected 111 turn 2"]
    (_, judge) = task.follow_up(item, [Generation("a1")])
    assert "corrected 111 turn 1" in _user(judge)
    result = task.score(item, [Generation(t) for t in ("a1", "a2", "[[5]]", "[[5]]")])
    assert "reference_known_wrong" not in result.details
    assert task.prompt_hash() != _task(get_dataset, data_dir=data_dir).prompt_hash()

    path.write_text("".join(json.dumps(r) + "\n" for r in refs if r["question_id"] != 125), encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"question 125 \(coding\) has no reference answer of 2 turns"):
        _task(get_dataset, data_dir=str(tmp_path), variant="corrected_references").items()
