"""mbpp, bigcodebench, codecontests and apps: prompts, per-test outcomes, ground truth, time scaling."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib.util
import json
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from evalmap.backends.base import Generation
from evalmap.errors import EvalmapError
from evalmap.sandbox import protocol
from evalmap.tasks import data as data_module

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("evalmap.sandbox.executor") is None, reason="evalmap.sandbox not built yet"
)


def score_all(task, items, texts, workers=4):
    with ThreadPoolExecutor(workers) as pool:
        return list(
            pool.map(lambda pair: task.score(pair[0], [Generation(text=pair[1])]), zip(items, texts, strict=True))
        )


def failures(items, results):
    return {it.id: r.details for it, r in zip(items, results, strict=True) if r.metrics["pass@1"] != 1.0}


# -- mbpp ----------------------------------------------------------------------------


def test_mbpp_items_and_three_shot_prompt(make_task):
    task = make_task("mbpp")
    items = task.items()
    assert len(items) == 500 and items[0].id == "Mbpp/11" and items[-1].id == "Mbpp/510"
    prompt = task.prompt(items[0])
    assert prompt.startswith("You are an expert Python programmer, and here is your task: Write a function to find the")
    assert prompt.count("[BEGIN]") == 4 and prompt.count("[DONE]") == 3 and prompt.endswith("[BEGIN]\n")
    assert "def similar_elements" in prompt and "def is_not_prime" in prompt and "def heap_queue_largest" in prompt
    assert "\r" not in prompt
    assert 'assert remove_Occ("hello","l") == "heo"\n' in prompt
    (request,) = task.requests(items[0])
    assert request.stop == ("[DONE]",) and request.prompt == prompt


def test_mbpp_sanitized_variant_and_unknown_variant(make_task):
    task = make_task("mbpp", variant="sanitized")
    items = task.items()
    assert len(items) == 257 and all(11 <= int(it.id.split("/")[1]) <= 510 for it in items)
    assert make_task("mbpp").prompt_hash() != task.prompt_hash()
    with pytest.raises(EvalmapError, match="no variant 'tiny'"):
        make_task("mbpp", variant="tiny")


def test_mbpp_canonical_subset_passes(make_task):
    task = make_task("mbpp")
    items = task.items(limit=20)
    results = score_all(task, items, [it.data["canonical"] + "\n[DONE]" for it in items])
    assert not failures(items, results)
    assert all(r.details["tests_passed"] == r.details["tests_total"] >= 3 for r in results)


def test_mbpp_sanitized_canonical_subset_passes(make_task):
    task = make_task("mbpp", variant="sanitized")
    items = task.items(limit=10)
    results = score_all(task, items, [it.data["canonical"] for it in items])
    assert not failures(items, results)


def test_mbpp_per_test_outcomes(make_task):
    task = make_task("mbpp")
    item = task.items()[0]  # remove_Occ: "hello"/"l" -> "heo", "abcda"/"a" -> "bcd", "PHP"/"P" -> "H"
    wrong = task.score(item, [Generation(text="def remove_Occ(s, ch):\n    return s\n")])
    assert wrong.details["status"] == "failed" and wrong.details["tests_passed"] == 0
    assert {t["error_type"] for t in wrong.details["tests"].values()} == {"AssertionError"}
    half = task.score(item, [Generation(text="def remove_Occ(s, ch):\n    return {'hello': 'heo'}.get(s, s)\n")])
    assert [t["status"] for t in half.details["tests"].values()] == ["passed", "failed", "failed"]
    broken = task.score(item, [Generation(text="def remove_Occ(s, ch):\n    return (\n")])
    assert broken.details["status"] == "error" and broken.details["error_type"] == "SyntaxError"
    assert {t["status"] for t in broken.details["tests"].values()} == {"not_run"}
    exits = task.score(item, [Generation(text="import sys\nsys.exit(0)\n")])
    assert exits.metrics == {"pass@1": 0.0} and exits.details["error_type"] == "SystemExit"
    forged = task.score(item, [Generation(text='print(\'@@evalmap-0@@{"test": 0, "status": "passed"}\')\n')])
    assert forged.metrics == {"pass@1": 0.0}


def test_mbpp_timeout_stops_the_rest(make_task):
    task = make_task("mbpp")
    task.spec = dataclasses.replace(task.spec, test_timeout_s=1.0)
    item = task.items()[0]
    result = task.check(item, "def remove_Occ(s, ch):\n    while True:\n        pass\n", scale=False)
    assert [t["status"] for t in result["tests"].values()] == ["timeout", "not_run", "not_run"]
    assert result["status"] == "timeout" and not result["passed"] and result["wall_s"] < 8


def test_mbpp_chat_answer_and_pass_at_k(make_task):
    task = make_task("mbpp", chat=True, n_samples=4, temperature=0.8)
    item = task.items()[0]
    (message,) = task.requests(item)[0].messages
    assert "```python" in message[1] and "remove_Occ" in message[1]
    good = "Sure! Here it is:\n\n```python\n" + item.data["canonical"] + "\n```\nThis removes both."
    bad = "```python\ndef remove_Occ(s, ch):\n    return s\n```"
    result = task.score(item, [Generation(text=t) for t in (good, bad, bad, good)])
    assert result.metrics == {"pass@1": 0.5}
    assert result.details["n"] == 4 and result.details["passed"] == 2 and len(result.details["runs"]) == 4


@pytest.mark.slow
def test_mbpp_all_canonical_solutions_pass(make_task):
    task = make_task("mbpp")
    items = task.items()
    results = score_all(task, items, [it.data["canonical"] for it in items], workers=8)
    assert not failures(items, results)
    assert len(results) == 500


@pytest.mark.slow
def test_humaneval_all_canonical_solutions_pass(make_task):
    task = make_task("humaneval")
    items = task.items()
    results = score_all(task, items, [it.data["canonical_solution"] for it in items], workers=8)
    assert not failures(items, results) and len(results) == 164


# -- bigcodebench ---------------------------------------------------------------------

STDLIB_BCB = ("BigCodeBench/3", "BigCodeBench/5", "BigCodeBench/7")


def imported_modules(*sources: str) -> set[str]:
    """Top-level module names a program imports (the tests import more than a task's `libs` list)."""
    names: set[str] = set()
    for source in sources:
        with contextlib.suppress(SyntaxError):
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
    return names


def missing_modules(data: dict) -> set[str]:
    """Modules a bigcodebench task (its libs, canonical solution and tests) needs that are not installed."""
    wanted = imported_modules(data["canonical"], data["test"]) | {lib.split(".")[0] for lib in data["libs"]}
    return {name for name in wanted if importlib.util.find_spec(name) is None}


def test_bigcodebench_prompts(make_task):
    task = make_task("bigcodebench")
    items = task.items()
    assert len(items) == 1140
    item = items[0]
    assert task.prompt(item) == item.data["complete_prompt"]
    chat = make_task("bigcodebench", chat=True)
    (message,) = chat.requests(item)[0].messages
    assert message[1].startswith("Please provide a self-contained Python script") and "task_func" in message[1]
    with pytest.raises(EvalmapError, match="variant"):
        make_task("bigcodebench", variant="easy")


def test_bigcodebench_canonical_passes_and_wrong_fails(make_task):
    task = make_task("bigcodebench")
    items = [it for it in task.items() if it.id in STDLIB_BCB]
    assert len(items) == 3
    results = score_all(task, items, [it.data["canonical"][len(it.data["complete_prompt"]) :] for it in items])
    assert not failures(items, results)
    assert all(set(t["status"] for t in r.details["tests"].values()) == {"passed"} for r in results)
    wrong = task.score(items[0], [Generation(text="    return None\n")])
    assert wrong.metrics == {"pass@1": 0.0} and wrong.details["tests_passed"] < wrong.details["tests_total"]
    assert {t["status"] for t in wrong.details["tests"].values()} & {"failed", "error"}


def test_bigcodebench_instruct_answer(make_task):
    task = make_task("bigcodebench", chat=True)
    item = next(it for it in task.items() if it.id == STDLIB_BCB[0])
    answer = f"Here you go:\n```python\n{item.data['canonical']}\n```"
    assert task.score(item, [Generation(text=answer)]).metrics == {"pass@1": 1.0}


@pytest.mark.slow
def test_bigcodebench_canonical_solutions_with_installed_libs(make_task):
    """Every canonical solution is a body for `complete_prompt`: run through Complete mode, sanitized and
    calibrated. Failures left here come from the environment (no network, newer pandas/numpy), listed."""
    task = make_task("bigcodebench")
    everything = task.items()
    assert all(it.data["canonical"].startswith(it.data["complete_prompt"]) for it in everything)
    items = [it for it in everything if not missing_modules(it.data)]
    missing = Counter(name for it in everything for name in missing_modules(it.data))
    print(f"bigcodebench: {len(everything) - len(items)} tasks need modules not installed: {missing.most_common()}")
    results = score_all(task, items, [it.data["canonical"][len(it.data["complete_prompt"]) :] for it in items], 2)
    bad = failures(items, results)
    print(f"bigcodebench: {len(items) - len(bad)}/{len(items)} pass with installed libs (of 1140)")
    for task_id, details in sorted(bad.items()):
        tests = details.get("tests") or {}
        why = sorted({f"{t['status']}:{t.get('error_type') or ''}: {(t.get('message') or '')[:80]}"
                      for t in tests.values() if t["status"] != "passed"})
        print(f"  {task_id}: {details.get('status')} {why} {(details.get('stderr') or '')[-120:]!r}")
    assert len(bad) <= 0.1 * len(items), sorted(bad)


# -- codecontests and apps (hub schema, written here) ------------------------------------

CONTESTS = [
    {
        "name": "1_sum",
        "description": "Read two integers and print their sum.",
        "public_tests": {"input": ["1 2\n"], "output": ["3\n"]},
        "private_tests": {"input": ["10 20\n", "-5 5\n"], "output": ["30\n", "0\n"]},
        "generated_tests": {"input": ["100 1\n", "7 7\n"], "output": ["101\n", "14\n"]},
        "solutions": {
            "language": [2, 3],
            "solution": ["int main(){}", "a, b = map(int, input().split())\nprint(a + b)\n"],
        },
        "time_limit": {"seconds": 1, "nanos": 0},
        "difficulty": 7,
    },
    {
        "name": "2_half",
        "description": "Print n / 2 for the given n.",
        "public_tests": {"input": ["3\n"], "output": ["1.5\n"]},
        "private_tests": {"input": [], "output": []},
        "generated_tests": {"input": ["1\n"], "output": ["0.500000000\n"]},
        "solutions": {"language": [3], "solution": ["print(int(input()) / 2)\n"]},
        "time_limit": None,
        "difficulty": 1,
    },
    {"name": "3_no_tests", "description": "x", "public_tests": {"input": [], "output": []}},
]

APPS = [
    {
        "problem_id": 1,
        "question": "Given a list, return its sum.",
        "solutions": json.dumps(["class Solution:\n    def total(self, xs):\n        return sum(xs)\n"]),
        "input_output": json.dumps({"inputs": [[[1, 2]], [[]], [[5]]], "outputs": [[3], [0], 5], "fn_name": "total"}),
        "difficulty": "interview",
        "starter_code": "class Solution:\n    def total(self, xs):\n",
    },
    {
        "problem_id": 2,
        "question": "Print the input reversed.",
        "solutions": json.dumps(["print(input()[::-1])\n"]),
        "input_output": json.dumps({"inputs": ["abc\n", "x\n"], "outputs": ["cba\n", "x\n"]}),
        "difficulty": "introductory",
        "starter_code": "",
    },
    {"problem_id": 3, "question": "broken", "solutions": "[]", "input_output": "", "difficulty": "competition"},
]


@pytest.fixture
def hub(monkeypatch):
    calls = []

    def fake(hub_id, config, split, revision):
        calls.append((hub_id, config, split))
        return CONTESTS if "code_contests" in hub_id else APPS

    monkeypatch.setattr(data_module, "_load_hub", fake)
    return calls


def test_codecontests_strict_and_test_case_rate(make_task, hub):
    task = make_task("codecontests")
    items = task.items()
    assert [it.id for it in items] == ["1_sum", "2_half"] and len(items[0].data["tests"]) == 5
    assert hub == [("deepmind/code_contests", None, "test")]
    prompt = task.prompt(items[0])
    assert "QUESTION:\nRead two integers" in prompt and prompt.endswith("Use Standard Input format\nANSWER:\n")
    good = task.score(items[0], [Generation(text=items[0].data["canonical"])])
    assert good.metrics == {"pass@1": 1.0, "test_case_pass_rate": 1.0}
    half = task.score(items[1], [Generation(text=items[1].data["canonical"])])  # float output within 1e-6
    assert half.metrics["pass@1"] == 1.0
    partial = task.score(items[0], [Generation(text="a, b = map(int, input().split())\nprint(abs(a) + b)\n")])
    assert partial.metrics == {"pass@1": 0.0, "test_case_pass_rate": pytest.approx(0.8)}
    statuses = [t["status"] for t in partial.details["tests"].values()]
    assert statuses == ["passed", "passed", "failed", "passed", "passed"]
    assert partial.details["tests"]["2"]["error_type"] == "WrongAnswer"
    crash = task.score(items[0], [Generation(text="raise ValueError('no')\n")])
    assert crash.details["tests"]["0"]["error_type"] == "ValueError" and crash.metrics["test_case_pass_rate"] == 0
    scores = {s.name: s.value for s in task.aggregate([good, partial])}
    assert scores == {"pass@1": 0.5, "test_case_pass_rate": pytest.approx(0.9)}


def test_codecontests_timeout_skips_the_rest(make_task, hub):
    task = make_task("codecontests")
    item = task.items()[0]
    result = task.check(item, "while True:\n    pass\n", scale=False)
    assert [t["status"] for t in result["tests"].values()] == ["timeout"] + ["not_run"] * 4
    assert result["test_pass_rate"] == 0.0


def test_apps_call_based_stdio_and_difficulty(make_task, hub):
    task = make_task("apps")
    items = task.items()
    assert [it.id for it in items] == ["apps/1", "apps/2"]
    call, stdio = items
    assert task.prompt(call).endswith("Use Call-Based format\nANSWER:\n") and "class Solution" in task.prompt(call)
    results = [task.score(it, [Generation(text=it.data["canonical"])]) for it in items]
    assert [r.metrics["pass@1"] for r in results] == [1.0, 1.0]
    assert results[0].metrics["pass@1:interview"] == 1.0 and "pass@1:introductory" in results[1].metrics
    wrong = task.score(call, [Generation(text="def total(xs):\n    return len(xs)\n")])
    assert [t["status"] for t in wrong.details["tests"].values()] == ["failed", "passed", "failed"]
    assert wrong.metrics["test_case_pass_rate"] == pytest.approx(1 / 3)
    names = [s.name for s in task.aggregate([*results, wrong])]
    assert names == ["pass@1", "test_case_pass_rate", "pass@1:introductory", "test_case_pass_rate:introductory",
                     "pass@1:interview", "test_case_pass_rate:interview"]  # fmt: skip
    chat = make_task("apps", chat=True)
    (message,) = chat.requests(stdio)[0].messages
    assert "standard input" in message[1] and "```python" in message[1]
    make_task("apps", variant="competition").items()
    assert hub[-1] == ("codeparrot/apps", "competition", "test")


# -- time limits scaled by the reference solution ---------------------------------------------


def test_time_limit_scales_with_reference(make_task, hub, tmp_path, monkeypatch):
    monkeypatch.setenv(protocol.RUNTIME_CACHE_ENV, str(tmp_path / "runtimes.json"))
    task = make_task("apps")
    item = task.items()[1]
    item.data["canonical"] = "import time\ntime.sleep(0.4)\nprint(input()[::-1])\n"
    task.spec = dataclasses.replace(task.spec, test_timeout_s=0.5)
    slow = "import time\ntime.sleep(0.7)\nprint(input()[::-1])\n"
    result = task.check(item, slow)
    assert result["passed"] and result["scaled_limit_s"] > 0.7
    cache = json.loads((tmp_path / "runtimes.json").read_text())
    assert len(cache) == 1 and 0.8 < next(iter(cache.values())) < 5
    assert not task.check(item, "while True:\n    pass\n")["passed"]
    assert re.search(r"timeout", task.check(item, slow, scale=False)["status"])
