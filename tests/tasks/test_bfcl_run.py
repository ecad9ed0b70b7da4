"""bfcl end to end: requests in both modes, a server that answers with native `tool_calls`, scripted
prompt-mode answers, the embedded SmolLM2 on llama.cpp, and the leaderboard's sections.

The checker itself is tested on every entry's own possible answer in tests/tasks/test_function_calls.py.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

import evalmap
from evalmap.backends.base import Generation
from evalmap.catalog.loader import load_catalog
from evalmap.errors import EvalmapError
from evalmap.metrics.aggregate import pooled_group_score
from evalmap.tasks.base import SampleResult, TaskConfig
from evalmap.tasks.registry import build_task

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from fake_openai_server import FakeOpenAIServer  # noqa: E402

SCORED = 13  # single-turn categories


def task(data: Path, **config):
    return build_task(load_catalog().dataset("bfcl"), TaskConfig(data_dir=str(data), **config))


def gold_calls(item) -> list[tuple[str, dict]]:
    """An entry's possible answer as calls: the first allowed value of each parameter, optional ones
    whose first allowed value is "" (omitted) left out."""
    calls = []
    for call in item.data["ground_truth"] or []:
        ((name, params),) = call.items()
        calls.append((name, {k: v[0] for k, v in params.items() if v and v[0] != ""}))
    return calls


def by_question(data: Path) -> dict[str, object]:
    return {item.data["question"][-1]["content"]: item for item in task(data).items()}


def test_every_scored_category_loads_and_small_runs_keep_each_of_them(shared_data):
    t = task(shared_data)
    items = t.items()
    assert len(items) == 3641 == load_catalog().dataset("bfcl").count
    sub = t.items(26, seed=7)
    assert len(sub) == 26 and {i.data["category"] for i in sub} == {c.name for c in t.categories}
    assert [i.id for i in t.items(26, seed=7)] == [i.id for i in sub]  # the same subset every time


def test_prompt_mode_is_bfcls_system_prompt_and_native_mode_sends_tools(shared_data):
    t = task(shared_data)
    (item,) = [i for i in t.items() if i.id == "simple_python_1"]
    (request,) = t.requests(item)
    role, system = request.messages[0]
    assert role == "system" and system.startswith("You are an expert in composing functions.You are given")
    docs = json.loads(system.split("that you can invoke.\n", 1)[1])
    assert docs[0]["name"] == "math.factorial"
    assert docs[0]["description"].endswith(" Note that the provided function is in Python 3 syntax.")
    assert request.messages[1] == ("user", item.data["question"][0]["content"]) and not request.tools

    (native,) = task(shared_data, mode="native").requests(item)
    assert [role for role, _ in native.messages] == ["user"]
    (tool,) = json.loads(native.tools)
    assert tool["type"] == "function" and tool["function"]["name"] == "math_factorial"  # OpenAI names: no dots
    assert native.key() != request.key()


def test_java_parameters_reach_the_model_as_strings_and_the_checker_sees_the_original_types(shared_data):
    t = task(shared_data)
    item = next(i for i in t.items() if i.data["category"] == "simple_java")
    system = t.requests(item)[0].messages[0][1]
    shown = json.loads(system.split("that you can invoke.\n", 1)[1])
    assert all(p["type"] == "string" for p in shown[0]["parameters"]["properties"].values())
    assert "Java 8 SDK syntax" in shown[0]["description"]
    assert item.data["function"][0]["parameters"]["properties"]["controller"]["type"] == "any"  # untouched


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"mode": "json"}, "--mode must be prompt or native"),
        ({"variant": "multi_turn"}, "simulated APIs"),
        ({"variant": "agentic"}, "web search"),
        ({"variant": "nope"}, "no variant 'nope'"),
        ({"chat": False}, "drop --no-chat"),
    ],
)
def test_what_bfcl_cannot_do_is_one_sentence(shared_data, config, words):
    with pytest.raises(EvalmapError, match=words):
        task(shared_data, **config).items()


def test_sections_follow_the_leaderboard():
    """non_live_ast = unweighted mean of (simple = unweighted mean of py/java/js), multiple, parallel,
    parallel_multiple; live_ast weighted by count; irrelevance = unweighted mean of its two; the headline
    is the unweighted mean of those three sections."""
    from evalmap.tasks.specs.function_calling import BFCL

    t = BFCL.build(load_catalog().dataset("bfcl"), TaskConfig())
    correct = {"simple_python": [1, 1], "simple_java": [0, 0], "simple_javascript": [1, 0], "multiple": [1, 1],
               "parallel": [0, 1], "parallel_multiple": [0, 0], "irrelevance": [1, 1], "live_simple": [1, 1, 1],
               "live_multiple": [0], "live_parallel": [1], "live_parallel_multiple": [0], "live_irrelevance": [1, 0],
               "live_relevance": [1]}  # fmt: skip
    samples = [
        SampleResult(metrics={"accuracy": float(v)}, details={"groups": {"category": c}})
        for c, values in correct.items()
        for v in values
    ]
    scores = {s.name: s for s in t.aggregate(samples)}
    simple = (1 + 0 + 0.5) / 3
    non_live = (simple + 1 + 0.5 + 0) / 4
    live = 4 / 6
    irrelevance = (1 + 0.5) / 2
    assert scores["non_live_ast"].value == pytest.approx(non_live)
    assert scores["live_ast"].value == pytest.approx(live)
    assert scores["irrelevance"].value == pytest.approx(irrelevance)
    assert scores["relevance"].value == 1.0 and scores["relevance"].n == 1
    assert scores["single_turn_overall"].value == pytest.approx((non_live + live + irrelevance) / 3)
    assert scores["accuracy"].n == len(samples)
    assert scores["accuracy/category:parallel"].value == 0.5
    assert scores["accuracy/category_macro"].value == pytest.approx(
        sum(sum(v) / len(v) for v in correct.values()) / SCORED
    )
    parts = [scores[f"accuracy/category:{c}"] for c in ("simple_python", "simple_java", "simple_javascript")]
    assert scores["non_live_ast"].stderr == pytest.approx(  # categories of 2+ samples: the pooled formula
        math.sqrt((pooled_group_score("simple", parts).stderr / 4) ** 2
                  + sum((scores[f"accuracy/category:{c}"].stderr / 4) ** 2
                        for c in ("multiple", "parallel", "parallel_multiple")))
    )  # fmt: skip
    assert math.isnan(scores["accuracy/category:live_parallel"].stderr)  # one sample: no spread of its own
    assert 0 < scores["live_ast"].stderr < 1  # ... so the section's pooled sd stands in for it
    assert all(s.ci_low <= s.value <= s.ci_high for s in scores.values() if s.n > 1)


def test_text_tool_calls_of_a_local_template_are_read_in_native_mode(shared_data):
    t = task(shared_data, mode="native")
    item = next(i for i in t.items() if i.id == "simple_python_1")
    text = '<tool_call>\n{"name": "math_factorial", "arguments": {"number": 5}}\n</tool_call>'
    result = t.score(item, [Generation(text=text)])
    assert result.metrics["accuracy"] == 1.0, result.details
    wrong = t.score(item, [Generation(text='<tool_call>\n{"name": "math_factorial", "arguments": {"number": 6}}\n'
                                          "</tool_call>")])  # fmt: skip
    assert wrong.metrics["accuracy"] == 0.0 and wrong.details["reason"] == "value"


def native_answer(items):
    """A server that answers each question with its gold calls as native tool_calls, except in
    `parallel`, where it leaves the last call out; relevance entries get a call, irrelevance ones and
    Java / JavaScript ones text (their values would have to be written as Java or JavaScript source)."""

    def reply(messages, tools):
        item = items.get(messages[-1]["content"])
        if item is None or item.data["category"] in ("irrelevance", "live_irrelevance", "simple_java",
                                                     "simple_javascript"):  # fmt: skip
            return None
        if item.data["category"] == "live_relevance":
            return [{"name": tools[0]["function"]["name"], "arguments": "{}"}]
        calls = gold_calls(item)
        if item.data["category"] == "parallel":
            calls = calls[:-1]
        return [{"name": name.replace(".", "_"), "arguments": json.dumps(args)} for name, args in calls]

    return reply


def test_a_server_answering_with_native_tool_calls_is_scored_end_to_end(tmp_path, shared_data):
    items = by_question(shared_data)
    with FakeOpenAIServer(latency_s=0.0, tool_reply=native_answer(items)) as server:
        result = evalmap.evaluate(
            "qwen25_7b", "bfcl", SCORED * 2, "openai", base_url=server.base_url, mode="native",
            store=tmp_path / "s.sqlite", quiet=True, data_dir=str(shared_data), max_retries=0,
        )  # fmt: skip
        assert server.requests == SCORED * 2
    (job,) = result.jobs
    assert job.task_config["mode"] == "native" and job.headline == "single_turn_overall"
    scores = {s.name: s for s in job.scores}
    for name, score in scores.items():
        if name.startswith("accuracy/category:"):
            expected = 0.0 if name.endswith((":parallel", ":simple_java", ":simple_javascript")) else 1.0
            assert score.value == expected and score.n == 2, (name, score)
    samples = result.samples("bfcl")
    failed = [s for s in samples if s["details"]["category"] == "parallel"]
    assert {s["details"]["reason"] for s in failed} == {"wrong_count"}
    assert all(isinstance(s["details"]["output"], list) for s in failed)
    assert scores["non_live_ast"].value == pytest.approx((1 / 3 + 1 + 0 + 1) / 4)
    assert scores["single_turn_overall"].value == pytest.approx(((1 / 3 + 2) / 4 + 1 + 1) / 3)


def prompt_answer(items):
    """Prompt-mode answers: the gold calls in Python syntax for Python categories, a refusal otherwise."""

    def reply(messages):
        item = items.get(messages[-1]["content"])
        if item is None or item.data["ground_truth"] is None or item.data["category"].startswith("simple_j"):
            return "I cannot answer that with these functions."
        calls = ", ".join(f"{n}({', '.join(f'{k}={v!r}' for k, v in args.items())})" for n, args in gold_calls(item))
        return f"[{calls}]"

    return reply


def test_prompt_mode_answers_are_decoded_from_python_call_syntax(tmp_path, shared_data):
    items = by_question(shared_data)
    with FakeOpenAIServer(latency_s=0.0, chat_reply=prompt_answer(items)) as server:
        result = evalmap.evaluate(
            "qwen25_7b", "bfcl", SCORED, "openai", base_url=server.base_url, store=tmp_path / "s.sqlite",
            quiet=True, data_dir=str(shared_data), max_retries=0,
        )  # fmt: skip
    (job,) = result.jobs
    assert job.task_config["mode"] is None  # the default, prompt, as recorded
    per = {s.name.split(":")[1]: s.value for s in job.scores if s.name.startswith("accuracy/category:")}
    assert per.pop("simple_java") == per.pop("simple_javascript") == per.pop("live_relevance") == 0.0
    assert set(per.values()) == {1.0}, per  # irrelevance: the refusal is the right abstention
    reasons = {s["details"]["category"]: s["details"]["reason"] for s in result.samples("bfcl")}
    assert reasons["simple_java"] == "unparsable" and reasons["live_relevance"] == "no_call"


def test_native_mode_on_a_model_whose_template_has_no_tools_is_refused_before_loading(tmp_path, shared_data):
    with pytest.raises(EvalmapError, match="cannot pass tools"):
        evalmap.evaluate("smollm2_135m", "bfcl", 2, "llamacpp", mode="native", store=tmp_path / "s.sqlite",
                         quiet=True, data_dir=str(shared_data))  # fmt: skip


def test_the_embedded_model_runs_bfcl_in_prompt_mode(tmp_path, shared_data, embedded_on_llamacpp):
    result = evalmap.evaluate(
        "smollm2_135m", "bfcl", SCORED, "llamacpp", store=tmp_path / "s.sqlite", quiet=True,
        data_dir=str(shared_data), max_tokens=48,
    )  # fmt: skip
    (job,) = result.jobs
    assert job.n == SCORED and job.model_calls == SCORED
    scores = {s.name: s for s in job.scores}
    assert {"single_turn_overall", "non_live_ast", "live_ast", "irrelevance", "relevance"} <= set(scores)
    for sample in result.samples("bfcl"):
        details = sample["details"]
        assert details["mode"] == "prompt" and isinstance(details["output"], str)
        assert details["data_version"] == "BFCL_v4 (ShishirPatil/gorilla@6ea57973c7a6)"
        assert details["valid"] == (sample["metrics"]["accuracy"] == 1.0)
        assert details["valid"] or details["reason"]
