"""genomics_benchmark: Genomic Benchmarks promoters + enhancers as prompted yes/no classification."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import evalmap
from evalmap.backends.base import Generation, GenerationRequest, LogLikelihood, LoglikelihoodRequest
from evalmap.catalog.loader import load_catalog
from evalmap.errors import EvalmapError
from evalmap.tasks.base import SampleResult, TaskConfig
from evalmap.tasks.kinds.sequence_classification import (
    HOLDOUT_PER_CLASS,
    METRICS,
    classification_scores,
    confusion_codes,
    extract_label,
    macro_f1_stat,
    mcc_stat,
)
from evalmap.tasks.specs.life_science import GENOMICS_BENCHMARK


def task(data_dir, **options):
    return GENOMICS_BENCHMARK.build(
        load_catalog().dataset("genomics_benchmark"), TaskConfig(data_dir=str(data_dir), **options)
    )


def test_both_test_sets_load_with_their_counts(shared_data):
    t = task(shared_data)
    items = t.items()
    by = {name: [i for i in items if i.data["subset"] == name] for name in ("promoters", "enhancers")}
    assert len(by["promoters"]) == 9034 and len(by["enhancers"]) == 6948
    assert sum(i.data["label"] for i in by["promoters"]) == 4915
    assert sum(i.data["label"] for i in by["enhancers"]) == 3474
    assert {len(i.data["seq"]) for i in by["promoters"]} == {251}
    assert {len(i.data["seq"]) for i in by["enhancers"]} == {500}
    assert len(task(shared_data, variant="enhancers").items()) == 6948
    assert len(task(shared_data, variant="human_nontata_promoters").items()) == 9034  # the hub config name too


def test_samples_split_evenly_over_the_subsets(shared_data):
    t = task(shared_data)
    chosen = t.items(7, seed=1)
    assert [i.data["subset"] for i in chosen].count("promoters") == 4
    assert [i.data["subset"] for i in chosen].count("enhancers") == 3
    assert [i.id for i in chosen] == [i.id for i in t.items(7, seed=1)]
    assert len(task(shared_data, variant="promoters").items(5)) == 5


def test_fewshot_is_balanced_seeded_and_held_out_of_the_scored_items(shared_data):
    t = task(shared_data, num_fewshot=4)  # the hub is offline in tests: the local held-out slice
    items = t.items()
    assert len(items) == 9034 + 6948 - 2 * 2 * HOLDOUT_PER_CLASS
    scored = {i.id for i in items}
    for subset in t.subsets:
        pool = t.pool(subset)
        assert "held-out slice" in pool.source and len(pool.held_out) == 2 * HOLDOUT_PER_CLASS
        assert not (pool.held_out & scored)
    for item in t.items(6, seed=3):
        shots = t.exemplars(item)
        assert sorted(s["label"] for s in shots) == [0, 0, 1, 1]
        assert all(s["id"] not in scored and s["subset"] == item.data["subset"] for s in shots)
        assert shots == t.exemplars(item)  # deterministic
        assert t.prompt(item).count("\nAnswer: ") == 4
    item = t.items(1)[0]
    response = Generation(text="yes")
    details = t.score(item, [response]).details
    assert "held-out slice" in details["fewshot_source"] and details["held_out"] == 16
    assert (
        task(shared_data).items(3) != [] and "fewshot_source" not in task(shared_data).score(item, [response]).details
    )
    with pytest.raises(EvalmapError, match="even"):
        task(shared_data, num_fewshot=3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", "yes"),
        (" No.", "no"),
        ("**Yes**, it is a promoter.", "yes"),
        ("The answer is no", "no"),
        ("Answer: yes", "yes"),
        ("This sequence is not a promoter.", "no"),
        ("It is a non-promoter region.", "no"),
        ("This looks like a promoter region.", "yes"),
        ("Based on the GC content, I would say yes.", "yes"),
        ("yes or no: no", "no"),
        ("ACGTACGT", None),
        ("", None),
        ("I cannot tell.", None),
    ],
)
def test_extract_label(text, expected):
    assert extract_label(text, "promoter") == expected


def test_mcc_and_macro_f1_by_hand():
    # tp=3, fn=1, fp=2, tn=4
    golds = ["yes"] * 4 + ["no"] * 6
    preds = ["yes", "yes", "yes", "no", "yes", "yes", "no", "no", "no", "no"]
    codes = confusion_codes(golds, preds)[None, :]
    assert mcc_stat(codes, axis=1)[0] == pytest.approx(10 / math.sqrt(600))  # (3·4 − 2·1) / sqrt(5·4·6·5)
    assert macro_f1_stat(codes, axis=1)[0] == pytest.approx((6 / 9 + 8 / 11) / 2)
    constant = confusion_codes(golds, ["yes"] * 10)[None, :]
    assert mcc_stat(constant, axis=1)[0] == 0.0  # a constant answer: 0 by convention
    assert macro_f1_stat(constant, axis=1)[0] == pytest.approx((8 / 14 + 0) / 2)
    # unextracted counts as the wrong label
    assert confusion_codes(["yes", "no"], [None, None]).tolist() == [2.0, 1.0]


def _sample(subset, gold, pred):
    return SampleResult(
        metrics={"accuracy": float(gold == pred), "unextracted": float(pred is None)},
        details={"subset": subset, "gold": gold, "pred": pred},
    )


def test_aggregate_scores_baselines_and_subsets(shared_data):
    golds = ["yes"] * 4 + ["no"] * 6
    preds = ["yes", "yes", "yes", "no", "yes", "yes", "no", "no", "no", None]
    samples = [_sample("promoters", g, p) for g, p in zip(golds, preds, strict=True)]
    samples += [_sample("enhancers", "yes", "yes"), _sample("enhancers", "no", "yes")]
    scores = {s.name: s for s in task(shared_data).aggregate(samples)}
    assert [n for n in scores if "/" not in n] == list(METRICS) == list(GENOMICS_BENCHMARK.metric_names)
    acc = scores["accuracy/subset:promoters"]
    assert acc.value == pytest.approx(0.6) and acc.n == 10 and acc.method == "wilson"
    mcc = scores["mcc/subset:promoters"]  # the unextracted "no" counts as "yes": tp=3, fn=1, fp=3, tn=3
    assert (
        mcc.value == pytest.approx((3 * 3 - 3 * 1) / math.sqrt(6 * 4 * 6 * 4))
        and mcc.n == 10
        and mcc.method == "bootstrap"
    )
    assert mcc.ci_low <= mcc.value <= mcc.ci_high and mcc.stderr > 0
    assert scores["unextracted/subset:promoters"].value == pytest.approx(0.1)
    assert scores["majority_baseline/subset:promoters"].value == pytest.approx(0.6)
    assert scores["chance_baseline"].value == 0.5 and scores["chance_baseline"].n == 12
    assert scores["chance_baseline_mcc"].stderr == pytest.approx(1 / math.sqrt(12))
    assert scores["accuracy"].value == pytest.approx(7 / 12) and scores["accuracy/subset:enhancers"].n == 2
    again = {s.name: s for s in task(shared_data).aggregate(samples)}
    assert again["mcc"] == scores["mcc"]  # seeded bootstrap


def test_both_modes_requests_and_scoring(shared_data):
    gen = task(shared_data)
    item = gen.items(2)[-1]  # an enhancer
    (request,) = gen.requests(item)
    assert isinstance(request, GenerationRequest) and not request.chat
    assert item.data["seq"] in request.prompt and request.prompt.endswith("Answer yes or no.\nAnswer:")
    assert "enhancer" in request.prompt and request.max_tokens == 16
    result = gen.score(item, [Generation(text="Not an enhancer.")])
    assert result.extracted == "no" and result.details["mode"] == "generate"
    assert result.metrics["accuracy"] == float(item.data["label"] == 0)
    unread = gen.score(item, [Generation(text="GATTACA")])
    assert unread.metrics == {"accuracy": 0.0, "unextracted": 1.0}

    chat = task(shared_data, chat=True).requests(item)[0]
    assert chat.chat and chat.messages[-1][0] == "user" and "enhancer" in chat.messages[0][1]

    ll = task(shared_data, mode="loglikelihood")
    reqs = ll.requests(item)
    assert all(isinstance(r, LoglikelihoodRequest) for r in reqs)
    assert [r.continuation for r in reqs] == [" yes", " no"] and reqs[0].context == request.prompt
    scored = ll.score(item, [LogLikelihood(-1.0, False), LogLikelihood(-2.0, True)])
    assert scored.extracted == "yes" and scored.details["mode"] == "loglikelihood"
    assert scored.details["logprobs"] == {"yes": -1.0, "no": -2.0}
    with pytest.raises(EvalmapError, match="--mode"):
        task(shared_data, mode="prompt")
    with pytest.raises(EvalmapError, match="no variant"):
        task(shared_data, variant="splice_sites")


def test_classification_scores_over_no_samples_are_empty():
    scores = classification_scores([], "", 0)
    assert [s.name for s in scores] == list(METRICS) and all(s.n == 0 for s in scores)


def test_embedded_model_end_to_end(embedded_on_llamacpp, shared_data):
    from evalmap.backends.llamacpp_backend import LlamaCppBackend

    backend = LlamaCppBackend(str(embedded_on_llamacpp))
    for mode in ("generate", "loglikelihood"):
        t = task(shared_data, mode=mode)
        samples = []
        for item in t.items(4):
            reqs = t.requests(item)
            call = backend.generate if mode == "generate" else backend.loglikelihood
            samples.append(t.score(item, list(call(reqs))))
        scores = {s.name: s for s in t.aggregate(samples)}
        assert scores["accuracy"].n == 4 and 0 <= scores["accuracy"].value <= 1
        assert scores["accuracy/subset:promoters"].n == 2 and scores["accuracy/subset:enhancers"].n == 2
        assert all(s.details["mode"] == mode for s in samples)
        assert not np.isnan(scores["mcc"].value)


def test_evaluate_runs_genomics_benchmark(embedded_on_llamacpp, shared_data, tmp_path):
    result = evalmap.evaluate(
        "smollm2_135m",
        "genomics_benchmark",
        8,
        "llamacpp",
        data_dir=str(shared_data),
        store=tmp_path / "s.sqlite",
        quiet=True,
    )
    text = json.dumps(result.to_dict() if hasattr(result, "to_dict") else str(result), default=str)
    assert "accuracy" in text and "majority_baseline" in text
