"""Serving metrics by hand (vLLM benchmark_serving's definitions), SLO parsing, quantisation siblings,
the sonnet prompts, and a latency job's scores from hand-made measurements."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evalmap.catalog.loader import load_catalog
from evalmap.metrics.serving import RequestTiming, SloError, meets_slo, parse_slo, serving_scores, time_scores
from evalmap.tasks.base import TaskConfig
from evalmap.tasks.kinds.latency import BASE_PROMPT, quant_files, quant_tag
from evalmap.tasks.registry import build_task

# three requests, all sent at t=0 (seconds): ttft, latency, itl gaps, prompt and output tokens
REQUESTS = [
    RequestTiming(0.0, 0.10, 0.50, (0.1, 0.1, 0.1, 0.1), 100, 5),
    RequestTiming(0.0, 0.20, 1.00, (0.2, 0.2, 0.2, 0.2), 100, 5),
    RequestTiming(0.5, 0.30, 1.50, (0.4, 0.4, 0.4), 120, 4),
]


def named(scores):
    return {s.name: s for s in scores}


def test_tpot_is_decode_time_over_tokens_after_the_first():
    assert REQUESTS[0].tpot == pytest.approx((0.50 - 0.10) / 4)
    assert REQUESTS[2].tpot == pytest.approx((1.50 - 0.30) / 3)
    assert RequestTiming(0, 0.1, 0.1, (), 10, 1).tpot is None  # one token: no TPOT (vLLM leaves it out)


def test_serving_scores_by_hand():
    s = named(serving_scores(REQUESTS, failed=1, slo={"ttft": 250, "tpot": 150}))
    duration = 2.0  # first sent at 0, last ends at 0.5 + 1.5
    assert s["output_tok_s"].value == pytest.approx(14 / duration)
    assert s["request_per_s"].value == pytest.approx(3 / duration)
    assert s["total_tok_s"].value == pytest.approx((320 + 14) / duration)
    # SLO: request 0 (ttft 100 ms, tpot 100 ms) meets both; 1 has tpot 200 ms; 2 has ttft 300 ms
    assert s["goodput_req_s"].value == pytest.approx(1 / duration)
    assert s["ttft_ms_mean"].value == pytest.approx(200.0)
    assert s["ttft_ms_p50"].value == pytest.approx(200.0)
    assert s["e2el_ms_p99"].value == pytest.approx(np.percentile([500, 1000, 1500], 99))
    assert s["itl_ms_mean"].n == 11 and s["itl_ms_mean"].value == pytest.approx(1000 * (0.4 + 0.8 + 1.2) / 11)
    assert s["tpot_ms_mean"].value == pytest.approx(1000 * np.mean([0.1, 0.2, 0.4]))
    assert s["failed"].value == pytest.approx(0.25) and s["failed"].n == 4
    for score in s.values():  # every number carries n and an uncertainty
        assert score.n >= 3 and not math.isnan(score.stderr), score


def test_percentiles_are_ordered_and_carry_intervals():
    values = list(np.random.default_rng(0).exponential(0.2, size=200))
    scores = named(time_scores("ttft", values))
    p50, p90, p99 = (scores[f"ttft_ms_p{q}"] for q in (50, 90, 99))
    assert p50.value <= p90.value <= p99.value
    for p in (p50, p90, p99):
        assert p.ci_low <= p.value <= p.ci_high and p.n == 200


def test_throughput_stderr_shrinks_with_more_requests():
    rng = np.random.default_rng(1)

    def run(n):
        lat = rng.uniform(0.5, 1.5, size=n)
        sent = np.concatenate([[0.0], np.cumsum(lat)[:-1]])  # one at a time
        tokens = rng.integers(20, 40, size=n)
        rows = zip(sent, lat, tokens, strict=True)
        timings = [RequestTiming(float(s), 0.1, float(x), (), 10, int(k)) for s, x, k in rows]
        return named(serving_scores(timings, 0, {}))["output_tok_s"]

    small, large = run(8), run(200)
    assert large.stderr < small.stderr and small.ci_low < small.value < small.ci_high


def test_slo_parsing_and_meeting():
    assert parse_slo("ttft=500,tpot=50") == {"ttft": 500.0, "tpot": 50.0}
    assert parse_slo("") == {}
    for bad in ("ttft", "ttft=fast", "latency=5", "tpot=-1"):
        with pytest.raises(SloError, match="--slo"):
            parse_slo(bad)
    assert meets_slo(REQUESTS[0], {"e2el": 500}) and not meets_slo(REQUESTS[0], {"e2el": 499})


def test_quantisation_siblings(tmp_path):
    for name in ("Model-1B.Q4_1.gguf", "Model-1B.Q8_0.gguf", "Model-1B-f16.gguf", "Other.Q4_0.gguf", "Model-1B.txt"):
        (tmp_path / name).write_bytes(b"")
    files = quant_files(tmp_path / "Model-1B.Q4_1.gguf")
    assert [quant_tag(p) for p in files] == ["Q4_1", "F16", "Q8_0"]
    (tmp_path / "plain.gguf").write_bytes(b"")
    assert quant_files(tmp_path / "plain.gguf") == [tmp_path / "plain.gguf"]


@pytest.fixture
def efficiency_task(shared_data):
    dataset = load_catalog().dataset("efficiency_bench")
    return build_task(dataset, TaskConfig(data_dir=str(shared_data)))


def test_sonnet_prompts(efficiency_task):
    task = efficiency_task
    assert len(task.lines()) == task.dataset.count == 518  # the verse lines of sonnet.txt
    items = task.items(5)
    assert [it.id for it in items] == [f"request-{i}" for i in range(5)]
    assert len(task.items()) == task.spec.requests_per_point
    a, b = task.prompt(items[0], "c=1", 20), task.prompt(items[0], "c=4", 20)
    assert a.startswith(BASE_PROMPT) and a.count("\n") == 21
    assert a == task.prompt(items[0], "c=1", 20) and a != b  # seeded per point: no prefix cache across points
    (request,) = task.requests(items[0])
    assert request.max_tokens == 128 and request.temperature == 0.0 and not request.chat
    assert len(task.prompt_hash()) == 64


def _details(point, ttft, latency, out=8, ok=True):
    return {"part": "request", "point": point, "ok": ok, "sent": 0.0, "ttft": ttft, "latency": latency,
            "itl": [0.01] * (out - 1), "prompt_tokens": 50, "output_tokens": out}


def test_aggregate_names_points_and_ratios(efficiency_task):
    from evalmap.tasks.base import SampleResult

    details = [_details("c=1", 0.1, 0.5), _details("c=1", 0.12, 0.52), _details("c=4", 0.3, 0.9),
               _details("c=4", 0.3, 0.9, ok=False),
               {"part": "memory", "point": "c=1", "peak_rss_bytes": 300 * 2**20}]
    details += [{"part": "raw", "test": "pp", "n": 50, "depth": 0, "rep": i, "tok_s": 500.0 + i} for i in range(2)]
    details += [{"part": "raw", "test": "tg", "n": 8, "depth": 50, "rep": i, "tok_s": 20.0 + i} for i in range(2)]
    scores = named(efficiency_task.aggregate([SampleResult({}, details=d) for d in details]))
    assert scores["peak_rss_mb"].value == pytest.approx(300.0)
    assert scores["failed:c=4"].value == pytest.approx(0.5) and "failed" in scores
    assert scores["raw_pp50_tok_s"].value == pytest.approx(500.5)
    assert scores["raw_tg8_d50_tok_s"].value == pytest.approx(20.5)
    prefill = np.mean([50 / 0.1, 50 / 0.12])
    assert scores["prefill_tok_s"].value == pytest.approx(prefill)
    assert scores["prefill_vs_raw"].value == pytest.approx(prefill / 500.5)
    decode = np.mean([7 / 0.4, 7 / 0.4])
    assert scores["decode_vs_raw"].value == pytest.approx(decode / 20.5)
    assert "output_tok_s:c=1" not in scores  # the first point is the unsuffixed one
    assert efficiency_task.spec.headline_metric() in scores


def test_the_run_slo_replaces_the_spec_default(shared_data):
    dataset = load_catalog().dataset("efficiency_bench")
    assert build_task(dataset, TaskConfig(data_dir=str(shared_data))).slo == parse_slo(
        build_task(dataset, TaskConfig()).spec.slo
    )
    task = build_task(dataset, TaskConfig(data_dir=str(shared_data), slo="ttft=500,e2el=9000"))
    assert task.slo == {"ttft": 500.0, "e2el": 9000.0}
    with pytest.raises(SloError, match="--slo 'tpot' is not"):
        build_task(dataset, TaskConfig(slo="tpot"))
