"""ifeval: every checker's pass and fail edges (as lm-eval 0.4.13 decides them; bench/bench_ifeval_agreement.py
feeds EDGE_CASES to lm-eval too), strict vs loose, arguments built once per item, the aggregate, the missing
punkt model, and one run on the embedded model."""

from __future__ import annotations

import json
import math

import pytest

from evalmap.backends.base import Generation
from evalmap.errors import EvalmapError
from evalmap.metrics.stats import clustered_mean_score
from evalmap.tasks.base import Item, SampleResult
from evalmap.tasks.kinds import instructions as ins
from evalmap.tasks.kinds.instructions import CHECKERS, Instruction, build_instructions, response_variants, verdicts

try:
    ins.check_tools()
except ins.InstructionToolsMissing as missing:  # nltk, langdetect or punkt_tab: scripts/install.sh installs them
    pytest.skip(str(missing), allow_module_level=True)

LESS, LEAST = "less than", "at least"
ENGLISH = "The weather today is pleasant and the children are playing happily in the park near the river."
FRENCH = "Le temps est agréable aujourd'hui et les enfants jouent joyeusement dans le parc près de la rivière."

# (instruction id, kwargs as the data gives them, response, strict verdict): a pass and a fail at each edge.
EDGE_CASES: list[tuple[str, dict, str, bool]] = [
    ("keywords:existence", {"keywords": ["apple", "pie"]}, "I like Apple PIE a lot.", True),
    ("keywords:existence", {"keywords": ["apple", "pie"]}, "I like apple a lot.", False),
    ("keywords:existence", {"keywords": ["apple", "pie"]}, "pineapple pies", True),  # substrings count
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": LESS}, "one cat here", True),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": LESS}, "cat and Cat", False),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": LEAST}, "a cat, a CAT", True),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": LEAST}, "one cat here", False),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": LEAST}, "concatenate cat", True),
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "This was badly done.", True),  # whole words only
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "That was BAD.", False),
    ("keywords:forbidden_words", {"forbidden_words": ["bad", "worse"]}, "Good, better, best.", True),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 3, "let_relation": LEAST}, "zZz", True),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 3, "let_relation": LEAST}, "zz top", False),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 3, "let_relation": LESS}, "zz top", True),
    ("keywords:letter_frequency", {"letter": "Z", "let_frequency": 3, "let_relation": LESS}, "z z z", False),
    ("language:response_language", {"language": "en"}, ENGLISH, True),
    ("language:response_language", {"language": "en"}, FRENCH, False),
    ("language:response_language", {"language": "fr"}, FRENCH, True),
    ("language:response_language", {"language": "de"}, "12345 !!! 678", True),  # undetectable counts as followed
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": LESS}, "One. Two.", True),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": LESS}, "One. Two. Three.", False),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": LEAST}, "One. Two. Three!", True),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": LEAST}, "Mr. Smith left. He is.", False),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": LEAST}, "Dr. No met Mrs. Lee.", False),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First.\n***\nSecond.", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "A.\n***\nB.\n***\nC.", False),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "***\nA.\n***\nB.\n***", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "A.\n***\n***\nB.", False),  # empty middle
    ("length_constraints:number_words", {"num_words": 5, "relation": LESS}, "one two three four", True),
    ("length_constraints:number_words", {"num_words": 5, "relation": LESS}, "one two three four five", False),
    ("length_constraints:number_words", {"num_words": 5, "relation": LEAST}, "one two three four five", True),
    ("length_constraints:number_words", {"num_words": 5, "relation": LEAST}, "don't stop me now", True),  # don, t, ...
    ("length_constraints:number_words", {"num_words": 5, "relation": LEAST}, "one two three four", False),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "so"},
        "Intro here.\n\nSo, we end.",
        True,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "so"},
        "Intro here.\n\nSome end.",
        False,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "So"},
        'Intro here.\n\n"So" we end.',
        True,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "so"},
        "Intro.\n\nSo end.\n\nExtra.",
        False,
    ),
    (  # an empty leading paragraph is not counted, but the nth is still taken from the raw split
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "so"},
        "\n\nIntro.\n\nSo end.",
        False,
    ),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name] at [address].", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name].", False),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "[a] and []", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hello.\nP.S. see you", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hello. PS see you", False),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hello.\np. s. lower case", True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Hello.\nP.P.S. more", True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Hello.\nP.S. only", False),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n- two\n* three", False),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "**Bold**\n* one\n  - two", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one", False),
    ("detectable_format:constrained_response", {}, "My answer is yes.", True),
    ("detectable_format:constrained_response", {}, "Well... My answer is maybe. Sure.", True),
    ("detectable_format:constrained_response", {}, "My answer is yes", False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and *two*", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and * *", False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "**bold** only", False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "**bold** and *it*", True),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "Section", "num_sections": 2},
        "Section 1\nA\nSection 2\nB",
        True,
    ),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2}, "Section 1\nA", False),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "Section", "num_sections": 2},
        "SECTION 1\nA\nSECTION 2\nB",
        False,
    ),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', True),
    ("detectable_format:json_format", {}, '{"a": 1} and more', False),
    ("detectable_format:json_format", {}, "```\n[1, 2]\n```", True),
    ("detectable_format:json_format", {}, '```JSON\n{"a": [1, 2}\n```', False),
    ("detectable_format:title", {}, "<<My Title>>\nText", True),
    ("detectable_format:title", {}, "<<   >>\nText", False),
    ("detectable_format:title", {}, "<<My\nTitle>>", False),
    ("combination:two_responses", {}, "Answer one.\n******\nAnswer two.", True),
    ("combination:two_responses", {}, "Same.\n******\nSame.", False),
    ("combination:two_responses", {}, "A.\n******\n******\nB.", False),
    ("combination:two_responses", {}, "******\nA.\n******\nB.\n******", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "write a POEM. Here it is.", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "Sure! Write a poem.", False),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Done. Any other questions?", True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, 'Done. "any other questions?"', True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Any other questions? Yes.", False),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": LESS}, "HELLO world", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": LESS}, "HI BIG world", False),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": LEAST}, "HI BIG world", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": LEAST}, "I am here", False),
    ("change_case:english_capital", {}, ENGLISH.upper(), True),
    ("change_case:english_capital", {}, ENGLISH, False),
    ("change_case:english_capital", {}, FRENCH.upper(), True),  # langdetect reads upper-case French as English
    ("change_case:english_capital", {}, "DAS WETTER IST HEUTE SCHÖN UND DIE KINDER SPIELEN IM PARK AM FLUSS.", False),
    ("change_case:english_lowercase", {}, ENGLISH.lower(), True),
    ("change_case:english_lowercase", {}, ENGLISH, False),
    ("change_case:english_lowercase", {}, FRENCH.lower(), False),
    ("punctuation:no_comma", {}, "No commas here.", True),
    ("punctuation:no_comma", {}, "Yes, one.", False),
    ("punctuation:no_comma", {}, "   ", False),  # an empty answer never follows
    ("startend:quotation", {}, '"All quoted."', True),
    ("startend:quotation", {}, '  "Padded."\n', True),
    ("startend:quotation", {}, '"', False),
    ("startend:quotation", {}, 'Not "all" quoted', False),
]

# (instruction id, kwargs, response, strict, loose): the loose variants (first / last line cut, `*` removed).
LOOSE_CASES: list[tuple[str, dict, str, bool, bool]] = [
    ("punctuation:no_comma", {}, "Sure, here it is:\nNo commas at all.", False, True),
    ("startend:quotation", {}, 'Here it is:\n"All quoted."', False, True),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```\nHope this helps!', False, True),
    ("detectable_format:json_format", {}, 'Here:\n```json\n{"a": 1}\n```\nHope this helps!', False, True),
    (
        "startend:end_checker",
        {"end_phrase": "Is there anything else I can help with?"},
        "Done. *Is there anything else I can help with?*",
        False,
        True,
    ),  # fmt: skip
    ("detectable_format:title", {}, "<<*Title*>>", True, True),
    ("punctuation:no_comma", {}, "a, b\nc, d\ne, f", False, False),
]


def edge_record(index: int, instruction_id: str, kwargs: dict) -> tuple[Instruction, ...]:
    return build_instructions(f"edge-{index}", [instruction_id], [kwargs])


def test_the_25_instruction_ids():
    assert len(CHECKERS) == 25
    assert {case[0] for case in EDGE_CASES} == set(CHECKERS)


@pytest.mark.parametrize(("index", "case"), list(enumerate(EDGE_CASES)), ids=lambda v: str(v)[:60])
def test_checker_edges(index, case):
    instruction_id, kwargs, response, expected = case
    (instruction,) = edge_record(index, instruction_id, kwargs)
    assert instruction.followed_by(response) is expected


@pytest.mark.parametrize("case", LOOSE_CASES, ids=lambda c: f"{c[0]}:{c[2][:20]}")
def test_strict_and_loose(case):
    instruction_id, kwargs, response, strict, loose = case
    instructions = build_instructions("loose", [instruction_id], [kwargs])
    assert verdicts(instructions, response) == [(strict, loose)]


def test_response_variants_in_reference_order():
    assert response_variants("*a*\nb*\nc") == ["*a*\nb*\nc", "a\nb\nc", "b*\nc", "*a*\nb*", "b*", "b\nc", "a\nb", "b"]
    assert response_variants("one line") == ["one line", "one line", "", "", "", "", "", ""]


def test_relations_at_the_boundary():
    """Exactly N: `less than N` fails and `at least N` passes, for every counted instruction."""
    counted = [
        ("length_constraints:number_words", "num_words", "relation", "w " * 7),
        ("length_constraints:number_sentences", "num_sentences", "relation", "Yes. " * 7),
        ("keywords:frequency", "frequency", "relation", "cat " * 7),
        ("keywords:letter_frequency", "let_frequency", "let_relation", "q" * 7),
        ("change_case:capital_word_frequency", "capital_frequency", "capital_relation", "WORD " * 7),
    ]
    extra = {"keywords:frequency": {"keyword": "cat"}, "keywords:letter_frequency": {"letter": "q"}}
    for instruction_id, count, relation, text in counted:
        for threshold, less, least in ((7, False, True), (8, True, False), (6, False, True)):
            for rel, expected in ((LESS, less), (LEAST, least)):
                kwargs = {**extra.get(instruction_id, {}), count: threshold, relation: rel}
                (instruction,) = build_instructions("b", [instruction_id], [kwargs])
                assert instruction.followed_by(text) is expected, (instruction_id, threshold, rel)


# -- arguments: resolved once per item ------------------------------------------------------------


def test_unset_arguments_are_drawn_once_per_item_and_reproducibly():
    ids = ["length_constraints:number_words", "detectable_format:number_bullet_lists", "startend:end_checker"]
    first = build_instructions("1234", ids, [{}, {"num_bullets": None}, {"end_phrase": ""}])
    again = build_instructions("1234", ids, [{}, {"num_bullets": None}, {"end_phrase": ""}])
    assert first == again
    words, bullets, end = first
    assert words.drawn == ("num_words", "relation") and bullets.drawn == ("num_bullets",)
    assert words.args["relation"] in ("less than", "at least") and 100 <= words.args["num_words"] <= 500
    assert 1 <= bullets.args["num_bullets"] <= 5
    assert end.args["end_phrase"] in ins.ENDINGS
    others = {build_instructions(str(k), ids[:1], [{}])[0].args["num_words"] for k in range(20)}
    assert len(others) > 1  # seeded by the item: different prompts draw differently


def test_drawn_arguments_are_named(make_task):
    """Prompt 1122 asks for 4 '#': the reference replaces a letter outside a-z by a random one."""
    (letter,) = build_instructions("1122", ["keywords:letter_frequency"], [{"letter": "#", "let_frequency": 4,
                                                                            "let_relation": "at least"}])  # fmt: skip
    assert letter.drawn == ("letter",) and letter.args["letter"] in "abcdefghijklmnopqrstuvwxyz"
    assert letter.args["let_frequency"] == 4
    (row,) = (
        make_task("ifeval").score(Item("1122", {"instructions": (letter,)}), [Generation("x")]).details["instructions"]
    )
    assert row["drawn"] == ["letter"]
    assert build_instructions("1", ["punctuation:no_comma"], [{}])[0].drawn == ()


def test_loose_is_never_below_strict_with_drawn_arguments():
    """With arguments drawn at check time (the reference), loose could be checked against a stricter rule than
    strict; drawn once per item, the same rule serves both."""
    drawable = {  # every argument these instructions can draw is left unset
        "length_constraints:number_words": {},
        "length_constraints:number_sentences": {},
        "length_constraints:number_paragraphs": {},
        "length_constraints:nth_paragraph_first_word": {"first_word": "the"},
        "detectable_format:number_bullet_lists": {},
        "detectable_format:number_highlighted_sections": {},
        "detectable_format:multiple_sections": {},
        "detectable_content:number_placeholders": {},
        "detectable_content:postscript": {},
        "keywords:frequency": {"keyword": "the"},
        "keywords:letter_frequency": {},
        "change_case:capital_word_frequency": {},
        "startend:end_checker": {},
        "language:response_language": {},
    }
    responses = [case[2] for case in EDGE_CASES[::3]] + [case[2] for case in LOOSE_CASES]
    for key in range(3):
        instructions = build_instructions(f"k{key}", list(drawable), list(drawable.values()))
        assert instructions == build_instructions(f"k{key}", list(drawable), list(drawable.values()))
        for response in responses:
            assert all(loose >= strict for strict, loose in verdicts(instructions, response))


def test_every_prompt_builds_and_loose_never_below_strict(data_dir, make_task):
    task = make_task("ifeval")
    items = task.items()
    assert len(items) == 541
    responses = [ENGLISH, "Sure, here it is:\n" + ENGLISH.upper() + "\n\nP.S. done", '"a, b"\n***\n*x* [y]']
    for item in items:
        assert item.data["instructions"] == build_instructions(item.id, item.data["instruction_id_list"],
                                                               item.data["kwargs"])  # fmt: skip
        for response in responses:
            assert all(loose >= strict for strict, loose in verdicts(item.data["instructions"], response))


@pytest.mark.parametrize(
    ("ids", "kwargs", "message"),
    [
        (["keywords:nope"], [{}], "unknown instruction id 'keywords:nope'"),
        (["keywords:existence"], [{}], "keywords:existence: has no keywords"),
        (["length_constraints:number_words"], [{"num_words": 5, "relation": "at most"}], "'less than' or 'at least'"),
        (["length_constraints:number_words"], [{"num_words": "5"}], "num_words must be a whole number"),
        (["punctuation:no_comma"], [{"num_words": 5}], "gives punctuation:no_comma the argument 'num_words'"),
        (["punctuation:no_comma"], [], "has 1 instruction ids but 0 kwargs"),
        (["keywords:existence"], [{"keywords": ["f(x"]}], r"keywords 'f\(x' is not a valid regular expression"),
        ([], [], "has no instructions"),
    ],
)
def test_bad_instruction_data_is_named(ids, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_instructions("x", ids, kwargs)


def test_bad_record_stops_the_load_naming_file_and_line(tmp_path, get_dataset):
    from evalmap.tasks.base import TaskConfig
    from evalmap.tasks.data import DataFormatError
    from evalmap.tasks.registry import build_task

    folder = tmp_path / "ifeval"
    folder.mkdir()
    good = {"key": 1, "prompt": "Hi", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    bad = {**good, "key": 2, "instruction_id_list": ["keywords:existence"], "kwargs": [{"keywords": None}]}
    (folder / "input_data.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    task = build_task(get_dataset("ifeval"), TaskConfig(data_dir=str(tmp_path)))
    with pytest.raises(DataFormatError, match=r"input_data.jsonl line 2 .*keywords:existence: has no keywords"):
        task.items()


# -- tools ----------------------------------------------------------------------------------


def test_missing_punkt_stops_the_task_in_one_sentence(monkeypatch, get_dataset):
    import nltk.data

    from evalmap.tasks.base import TaskConfig
    from evalmap.tasks.registry import build_task

    def not_installed(resource, *args, **kwargs):
        raise LookupError(resource)

    monkeypatch.setattr(nltk.data, "find", not_installed)
    monkeypatch.setattr(ins, "package_data_path", lambda package, relative: None)
    ins.sentence_splitter.cache_clear()
    try:
        with pytest.raises(EvalmapError) as caught:
            build_task(get_dataset("ifeval"), TaskConfig())
    finally:
        ins.sentence_splitter.cache_clear()
    message = str(caught.value)
    assert message.count(". ") == 0 and message.endswith(".")
    assert "punkt_tab" in message and "pip install --no-deps llama-index-core==0.14.25" in message


def test_punkt_comes_from_nltk_path_or_llama_index_without_importing_it():
    import sys

    assert ins.count_sentences("Mr. Smith went to Washington. He arrived at 3 p.m. on Monday! Did he?") == 3
    assert ins.nltk_words("THE U.S. is big.") == ["THE", "U.S.", "is", "big", "."]
    assert "llama_index.core" not in sys.modules


# -- scoring and aggregation ----------------------------------------------------------------


def sample(rows: list[tuple[str, float, float]]) -> SampleResult:
    details = {"instructions": [{"id": i, "args": {}, "strict": s, "loose": lo} for i, s, lo in rows]}
    metrics = {
        "prompt_level_strict_acc": float(all(s for _, s, _ in rows)),
        "prompt_level_loose_acc": float(all(lo for _, _, lo in rows)),
    }
    return SampleResult(metrics, details=details)


def test_score_details_and_metrics(make_task):
    task = make_task("ifeval")
    item = Item("7", {"instructions": build_instructions("7", ["punctuation:no_comma", "startend:quotation"],
                                                          [{}, {}])})  # fmt: skip
    result = task.score(item, [Generation('Here it is:\n"No commas."')])
    assert result.metrics == {
        "prompt_level_strict_acc": 0.0,
        "inst_level_strict_acc": 0.5,
        "prompt_level_loose_acc": 1.0,
        "inst_level_loose_acc": 1.0,
    }
    assert result.details["instructions"] == [
        {"id": "punctuation:no_comma", "args": {}, "strict": 1.0, "loose": 1.0},
        {"id": "startend:quotation", "args": {}, "strict": 0.0, "loose": 1.0},
    ]
    assert result.target == ["punctuation:no_comma", "startend:quotation"]
    assert result.extracted == ["punctuation:no_comma"]
    two = task.score(item, [Generation('"No commas."'), Generation("Yes, commas.")])
    assert two.metrics["prompt_level_strict_acc"] == 0.5
    assert [row["strict"] for row in two.details["instructions"]] == [0.5, 0.5]


def test_aggregate_clusters_instructions_by_prompt(make_task):
    task = make_task("ifeval")
    samples = [
        sample([("punctuation:no_comma", 1.0, 1.0), ("startend:quotation", 0.0, 1.0)]),
        sample([("punctuation:no_comma", 0.0, 0.0)]),
        sample([("punctuation:no_comma", 1.0, 1.0), ("detectable_format:title", 1.0, 1.0)]),
    ]
    scores = {s.name: s for s in task.aggregate(samples)}
    assert list(scores)[:4] == list(ins.METRICS)
    assert scores["prompt_level_strict_acc"].value == pytest.approx(1 / 3) and scores["prompt_level_strict_acc"].n == 3
    inst = scores["inst_level_strict_acc"]
    assert inst.value == pytest.approx(3 / 5) and inst.n == 5 and inst.method == "cluster-robust(3 clusters)"
    expected = clustered_mean_score("x", [[1.0, 0.0], [0.0], [1.0, 1.0]])
    assert inst.stderr == pytest.approx(expected.stderr)
    # by hand: CR1 = sqrt(G/(G-1) * sum_g (sum_i (y - 0.6))^2) / N
    by_hand = math.sqrt(1.5 * ((0.4 - 0.6) ** 2 + (-0.6) ** 2 + 0.8**2)) / 5
    assert inst.stderr == pytest.approx(by_hand)
    assert scores["inst_level_loose_acc"].value == pytest.approx(4 / 5)
    per = scores["inst_level_strict_acc/instruction:punctuation:no_comma"]
    assert per.value == pytest.approx(2 / 3) and per.n == 3
    assert scores["inst_level_loose_acc/instruction:startend:quotation"].value == 1.0
    assert scores["inst_level_strict_acc/instruction:detectable_format:title"].n == 1


def test_spec_defaults(make_task):
    task = make_task("ifeval")
    (request,) = task.requests(task.items(1)[0])
    assert request.chat and request.max_tokens == 1280 and request.temperature == 0.0 and request.stop == ()
    assert request.messages == (("user", task.items(1)[0].data["prompt"]),)
    (plain,) = make_task("ifeval", chat=False).requests(task.items(1)[0])
    assert not plain.chat and plain.prompt == task.items(1)[0].data["prompt"]


# -- end to end ------------------------------------------------------------------------------


def test_embedded_model_runs_ifeval(tmp_path, data_dir, embedded_on_llamacpp):
    """Two prompts on the embedded model (short answers keep it quick): stored samples carry verdicts per
    instruction and the run reports the 4 metrics, instruction level clustered by prompt."""
    import evalmap

    result = evalmap.evaluate(
        "smollm2_135m", "ifeval", samples=2, backend="llamacpp", data_dir=data_dir, store=tmp_path / "s.sqlite",
        quiet=True, max_tokens=48,
    )  # fmt: skip
    (job,) = result.jobs
    names = [s.name for s in job.scores]
    assert names[:4] == list(ins.METRICS) and job.n == 2
    assert job.scores[1].method.startswith("cluster-robust(2 clusters)")
    for stored in result.samples():
        rows = stored["details"]["instructions"]
        assert rows and all({"id", "args", "strict", "loose"} <= set(row) for row in rows)
        assert all(row["loose"] >= row["strict"] for row in rows)
