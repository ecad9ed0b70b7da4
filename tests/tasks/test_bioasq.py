"""bioasq: the PubMedQA stand-in (lm-eval's pubmedqa) and the BioASQ Task B variant, scored by hand."""

from __future__ import annotations

import json
import math

import pytest

import evalmap
from evalmap.backends.base import Generation, LogLikelihood
from evalmap.catalog.loader import load_catalog
from evalmap.errors import DataMissingError, EvalmapError
from evalmap.tasks.base import TaskConfig
from evalmap.tasks.kinds.biomedical_qa import extract_decision, list_prf, macro_f1, parse_answer_list
from evalmap.tasks.specs.life_science import BIOASQ


def task(data_dir, **config):
    return BIOASQ.build(load_catalog().dataset("bioasq"), TaskConfig(data_dir=str(data_dir), **config))


def ll(*values):
    return [LogLikelihood(logprob=v, is_greedy=False) for v in values]


def test_pubmedqa_loads_the_500_test_items_with_their_labels(shared_data):
    items = task(shared_data).items()
    assert len(items) == 500
    labels = [i.data["label"] for i in items]
    assert (labels.count("yes"), labels.count("no"), labels.count("maybe")) == (276, 169, 55)
    assert items[0].id == "12377809"


def test_prompt_is_lm_evals_pubmedqa_layout(shared_data):
    t = task(shared_data)
    item = t.items()[0]
    reqs = t.requests(item)
    ctx = "\n".join(item.data["contexts"])
    expected = f"Abstract: {ctx}\nQuestion: {item.data['question']}\nAnswer:"
    assert [r.context for r in reqs] == [expected] * 3
    assert [r.continuation for r in reqs] == [" yes", " no", " maybe"]
    assert item.data["question"] == "Is anorectal endosonography valuable in dyschesia?"
    (gen,) = task(shared_data, mode="generate").requests(item)
    assert gen.prompt.endswith(expected) and "yes, no or maybe" in gen.prompt


def test_loglikelihood_scoring_records_the_variant(shared_data):
    t = task(shared_data)
    item = t.items()[0]  # gold yes
    s = t.score(item, ll(-3.0, -1.0, -2.0))
    assert s.metrics == {"pubmedqa_accuracy": 0.0} and s.extracted == "no" and s.target == "yes"
    assert s.details["variant"] == "pubmedqa" and "PubMedQA" in s.details["benchmark"]
    assert t.score(item, ll(-0.5, -1.0, -2.0)).metrics["pubmedqa_accuracy"] == 1.0


@pytest.mark.parametrize(
    "text, expected",
    [
        (" yes", "yes"),
        ("No, the study found no benefit.", "no"),
        ("Maybe.", "maybe"),
        ("The results are mixed. The answer is maybe.", "maybe"),
        ("Answer: **No**", "no"),
        ("Based on the abstract, yes it is valuable.", "yes"),
        ("It is unclear from the data.", None),
        ("", None),
    ],
)
def test_extract_decision(text, expected):
    assert extract_decision(text) == expected


def test_yesno_extraction_ignores_maybe_for_bioasq():
    assert extract_decision("maybe, but yes overall", ("yes", "no")) == "yes"


def test_macro_f1_by_hand():
    golds = ["yes", "yes", "yes", "no", "no", "maybe"]
    preds = ["yes", "yes", "no", "no", "yes", None]
    # yes: tp 2 fp 1 fn 1 -> 4/6; no: tp 1 fp 1 fn 1 -> 2/4; maybe: tp 0 -> 0
    assert macro_f1(golds, preds) == pytest.approx((4 / 6 + 2 / 4 + 0) / 3)
    assert macro_f1(["yes", "no"], ["yes", "no"], ("yes", "no")) == 1.0


def test_pubmedqa_aggregate_accuracy_and_bootstrapped_macro_f1(shared_data):
    t = task(shared_data)
    items = t.items(40, seed=3)
    samples = [t.score(i, ll(-1.0, -2.0, -3.0)) for i in items]  # always "yes"
    scores = {s.name: s for s in t.aggregate(samples)}
    golds = [i.data["label"] for i in items]
    acc = scores["pubmedqa_accuracy"]
    assert acc.value == pytest.approx(golds.count("yes") / 40) and acc.n == 40 and acc.ci_low < acc.value
    f1 = scores["pubmedqa_macro_f1"]
    classes = sorted(set(golds) | {"yes"})
    p = golds.count("yes") / 40
    assert f1.value == pytest.approx(2 * p / (p + 1) / len(classes))  # F1(yes) = 2p/(p+1), the others 0
    assert f1.method == "bootstrap" and f1.ci_low <= f1.value <= f1.ci_high and f1.stderr > 0
    assert scores["pubmedqa_accuracy/gold:yes"].value == 1.0
    assert tuple(n for n in scores if "/" not in n) == BIOASQ.metric_names


def test_parse_answer_list():
    assert parse_answer_list('Answer: ["BRCA1", "brca1", "TP53"]', 5) == ["BRCA1", "TP53"]
    assert parse_answer_list("1. insulin\n2. glucagon\n- leptin", 5) == ["insulin", "glucagon", "leptin"]
    assert parse_answer_list("aspirin, ibuprofen; naproxen.", 2) == ["aspirin", "ibuprofen"]
    assert parse_answer_list('[["EGFR", "ErbB1"], "KRAS"]', 5) == ["EGFR", "KRAS"]
    assert parse_answer_list("", 5) == []


QUESTIONS = [
    {"id": "y1", "type": "yesno", "body": "Is A a gene?", "snippets": [{"text": "A is one."}], "exact_answer": "yes"},
    {"id": "y2", "type": "yesno", "body": "Is B a drug?", "snippets": [{"text": "B is not."}], "exact_answer": "no"},
    {"id": "y3", "type": "yesno", "body": "Is C a cell?", "snippets": [], "exact_answer": "yes"},
    {"id": "f1", "type": "factoid", "body": "Which gene?", "snippets": [{"text": "s"}],
     "exact_answer": [["BRCA1", "breast cancer 1"]]},
    {"id": "f2", "type": "factoid", "body": "Which drug?", "snippets": [{"text": "s"}], "exact_answer": [["aspirin"]]},
    {"id": "f3", "type": "factoid", "body": "Which cell?", "snippets": [{"text": "s"}], "exact_answer": ["neuron"]},
    {"id": "l1", "type": "list", "body": "Which genes?", "snippets": [{"text": "s"}],
     "exact_answer": [["TP53", "p53"], ["KRAS"], ["EGFR"]]},
    {"id": "l2", "type": "list", "body": "Which drugs?", "snippets": [{"text": "s"}], "exact_answer": [["x"], ["y"]]},
    {"id": "s1", "type": "summary", "body": "What is C?", "snippets": [{"text": "s"}], "ideal_answer": ["C is ..."]},
]  # fmt: skip

ANSWERS = {
    "y1": "Yes.",  # right
    "y2": "yes",  # wrong
    "y3": "No, it is not.",  # wrong
    "f1": '["Breast Cancer 1", "TP53"]',  # rank 1
    "f2": '["ibuprofen", "paracetamol", "Aspirin"]',  # rank 3
    "f3": "glia",  # not found
    "l1": '["p53", "TP53", "BRAF", "KRAS"]',  # 2 of 4 right (TP53 repeats p53), 2 of 3 found
    "l2": "I do not know",  # 0
    "s1": "C is a cell.",
}


def write_bioasq(tmp_path):
    folder = tmp_path / "bioasq"
    folder.mkdir()
    (folder / "12B1_golden.json").write_text(json.dumps({"questions": QUESTIONS[:5]}))
    (folder / "12B2_golden.json").write_text(json.dumps({"questions": QUESTIONS[5:]}))
    return tmp_path


def test_bioasq_variant_scored_end_to_end_against_hand_values(tmp_path):
    t = task(write_bioasq(tmp_path), variant="bioasq")
    assert t.mode == "generate" and t.metric_names[0] == "bioasq_yesno_accuracy"
    items = t.items()
    assert [i.id for i in items] == [q["id"] for q in QUESTIONS]
    (req,) = t.requests(items[0])
    assert req.prompt == "Snippets:\n- A is one.\nQuestion: Is A a gene?\nAnswer with yes or no.\nAnswer:"
    samples = [t.score(i, [Generation(text=ANSWERS[i.id])]) for i in items]
    assert samples[-1].metrics == {} and samples[-1].details["scored"] is False
    s = {x.name: x for x in t.aggregate(samples)}
    assert s["bioasq_yesno_accuracy"].value == pytest.approx(1 / 3) and s["bioasq_yesno_accuracy"].n == 3
    # yes: tp 1 fp 1 fn 1 -> 1/2; no: tp 0 -> 0
    assert s["bioasq_yesno_macro_f1"].value == pytest.approx(0.25) and s["bioasq_yesno_macro_f1"].method == "bootstrap"
    assert s["bioasq_factoid_strict_accuracy"].value == pytest.approx(1 / 3)
    assert s["bioasq_factoid_lenient_accuracy"].value == pytest.approx(2 / 3)
    assert s["bioasq_factoid_mrr"].value == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert s["bioasq_list_precision"].value == pytest.approx((2 / 4 + 0) / 2)
    assert s["bioasq_list_recall"].value == pytest.approx((2 / 3 + 0) / 2)
    f1_l1 = 2 * 0.5 * (2 / 3) / (0.5 + 2 / 3)
    assert s["bioasq_list_f1"].value == pytest.approx(f1_l1 / 2)
    assert s["bioasq_summary_not_scored"].value == 1 and s["bioasq_summary_not_scored"].n == 1
    assert tuple(s) == t.metric_names
    for score in s.values():
        assert score.n > 0 and not math.isnan(score.stderr)
    assert all(x.details["variant"] == "bioasq" for x in samples)


def test_bioasq_yesno_by_loglikelihood(tmp_path):
    t = task(write_bioasq(tmp_path), variant="bioasq", mode="loglikelihood")
    item = t.items()[0]
    reqs = t.requests(item)
    assert [r.continuation for r in reqs] == [" yes", " no"]
    assert t.score(item, ll(-1.0, -2.0)).metrics == {"bioasq_yesno_accuracy": 1.0}
    assert list_prf([], [["a"]]) == (0.0, 0.0, 0.0)


def test_bioasq_missing_files_is_one_sentence(tmp_path):
    with pytest.raises(DataMissingError) as err:
        task(tmp_path, variant="bioasq").items()
    text = str(err.value)
    assert str(tmp_path / "bioasq") in text and "bioasq.org" in text and text.replace("e.g. ", "").count(". ") == 0
    with pytest.raises(EvalmapError, match="no variant"):
        task(tmp_path, variant="nope")


def test_embedded_model_end_to_end(embedded_on_llamacpp, shared_data):
    from evalmap.backends.llamacpp_backend import LlamaCppBackend

    t = BIOASQ.build(load_catalog().dataset("bioasq"), TaskConfig(data_dir=str(shared_data)))
    backend = LlamaCppBackend(str(embedded_on_llamacpp))
    items = t.items(4)
    samples = []
    for item in items:
        reqs = t.requests(item)
        responses = backend.loglikelihood(reqs)
        samples.append(t.score(item, list(responses)))
    scores = {s.name: s for s in t.aggregate(samples)}
    assert scores["pubmedqa_accuracy"].n == 4 and 0 <= scores["pubmedqa_accuracy"].value <= 1
    assert all(len(s.details["logprobs"]) == 3 for s in samples)


def test_evaluate_runs_bioasq(embedded_on_llamacpp, shared_data, tmp_path):
    result = evalmap.evaluate(
        "smollm2_135m", "bioasq", 6, "llamacpp", data_dir=str(shared_data), store=tmp_path / "s.sqlite", quiet=True
    )
    text = json.dumps(result.to_dict() if hasattr(result, "to_dict") else str(result), default=str)
    assert "pubmedqa_accuracy" in text
