"""Coding datasets (catalog task type `coding`), as data for the execute-code kind.

humaneval follows the Codex paper (Chen et al., 2021) and openai/human-eval: the prompt
is the problem's `prompt` (signature + docstring) for completion, greedy decoding with
the paper's stop sequences, and the program `prompt + completion + "\\n" + test +
"\\ncheck(entry_point)\\n"` is run in evalmap's sandbox; pass@k over n samples per item.
In chat mode the model gets an instruction with the prompt in a code fence and its
code is taken from the fenced block (or from after any leading prose).

mbpp follows the MBPP paper (Austin et al., 2021) and lm-eval: 3 shots (task ids 2, 3, 4)
in the `[BEGIN]` / `[DONE]` format, stop at `[DONE]`; the code plus `test_setup_code` is
loaded and each of the 3 asserts runs separately, so a sample's details say which passed.
bigcodebench (Zhuo et al., 2024): Complete mode prompts `complete_prompt` (completion),
Instruct mode (chat) prompts `instruct_prompt`; the answer is sanitized and calibrated as
bigcodebench's leaderboard does (`tasks.sanitize`), then the program plus the task's unittest
`TestCases` run as in bigcodebench's own checker (module `__test__`, skips count as passed).

codecontests (AlphaCode, Li et al., 2022) and apps (Hendrycks et al., 2021) have many hidden
tests per problem. A stdin/stdout problem runs the program once per test inside one sandbox
(the harness starts a fresh interpreter per test, each with its time limit; output is compared
token by token, floats to 1e-6 relative); a call-based apps problem (`fn_name`, possibly a
LeetCode-style `class Solution`) calls the function with each test's arguments, comparing as
APPS does (tuples as lists, a one-element list of outputs unwrapped). After the first timeout
the remaining tests are not run and count as failed. Metrics: pass@k where a sample passes
when every test passes (the APPS paper's "strict accuracy"), and test_case_pass_rate (its
"test case average": the mean fraction of tests passed); apps also per difficulty
(`pass@1:interview`, ...). Neither has a local copy: records come from the hub
(deepmind/code_contests, codeparrot/apps) in their own schema; `normalize_*` turn them into
the kind's shape. The prompt is the APPS paper's ("QUESTION: ... Use Standard Input format /
Use Call-Based format ANSWER:") for both, an instruction plus a fenced answer for chat models.

Variants (mbpp `sanitized`, bigcodebench `hard`, apps difficulties) are chosen with
`TaskConfig.variant`: the catalog's variant source replaces the dataset's hub source, and the
spec's variant `DataSource` says how to read it locally.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from evalmap.tasks.data import DataSource, Text, record_shape
from evalmap.tasks.kinds.execute_code import CodeSpec

# -- humaneval ---------------------------------------------------------------------

HUMANEVAL = CodeSpec(
    dataset_id="humaneval",
    source=DataSource(
        name="test",
        local_files=("HumanEval.jsonl.gz",),
        package_file=("human_eval", "data/HumanEval.jsonl.gz"),
        normalize=record_shape(
            {"task_id": Text, "prompt": Text, "canonical_solution": str, "test": Text, "entry_point": Text}
        )(
            lambda records, origin: [
                {k: r[k] for k in ("task_id", "prompt", "canonical_solution", "test", "entry_point")} for r in records
            ]
        ),
    ),
    instruct_template=(
        "Complete the following Python function so that it passes its tests. Reply with the whole "
        "function in a single ```python code block.\n\n```python\n{prompt}```"
    ),
    stop=("\nclass", "\ndef", "\n#", "\nif", "\nprint", "\n```"),
    chat_stop=(),
    max_tokens=512,
    timeout_s=10.0,
)

# -- mbpp --------------------------------------------------------------------------

MBPP_SHOT_IDS = (2, 3, 4)  # the MBPP paper's and lm-eval's three prompt problems
_MBPP_TEST_IDS = range(11, 511)


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n")


_MBPP_SHAPE = record_shape(
    {"task_id": Text, "text": Text, "canonical": str, "setup": str, "tests": list[str]},
    lambda r: None if r["tests"] else "has an empty 'test_list'",
)


def _mbpp_full(records: list[dict[str, Any]], ids: Any) -> list[dict[str, Any]]:
    return [
        {
            "task_id": f"Mbpp/{r['task_id']}",
            "text": r["text"],
            "canonical": _crlf(r["code"]),
            "setup": _crlf(r.get("test_setup_code") or ""),
            "tests": list(r["test_list"]),
        }
        for r in records
        if int(r["task_id"]) in ids
    ]


@_MBPP_SHAPE
def _mbpp_sanitized(records: list[dict[str, Any]], origin: str) -> list[dict[str, Any]]:
    return [
        {
            "task_id": f"Mbpp/{r['task_id']}",
            "text": r["prompt"],
            "canonical": _crlf(r["code"]),
            "setup": "\n".join(r.get("test_imports") or []),
            "tests": list(r["test_list"]),
        }
        for r in records
        if int(r["task_id"]) in _MBPP_TEST_IDS
    ]


def _mbpp_block(record: dict[str, Any]) -> str:
    tests = "\n".join(record["tests"])
    return (
        f"You are an expert Python programmer, and here is your task: {record['text']} "
        f"Your code should pass these tests:\n\n{tests}\n[BEGIN]\n"
    )


def _mbpp_prompt(record: dict[str, Any], shots: list[dict[str, Any]]) -> str:
    """lm-eval's mbpp: three solved shots, then the problem, ending at `[BEGIN]\\n`."""
    solved = [_mbpp_block(s) + s["canonical"].strip() + "\n[DONE]" for s in shots]
    return "\n\n".join([*solved, _mbpp_block(record)])


def _mbpp_instruct(record: dict[str, Any]) -> str:
    tests = "\n".join(record["tests"])
    return (
        f"You are an expert Python programmer, and here is your task: {record['text']} "
        f"Your code should pass these tests:\n\n{tests}\n\n"
        "Reply with your code in a single ```python code block."
    )


MBPP = CodeSpec(
    dataset_id="mbpp",
    tests_format="asserts",
    source=DataSource(
        name="test",
        local_files=("mbpp.jsonl",),
        normalize=_MBPP_SHAPE(lambda records, origin: _mbpp_full(records, _MBPP_TEST_IDS)),
    ),
    fewshot_source=DataSource(
        name="prompt",
        local_files=("mbpp.jsonl",),
        hub_config="full",
        hub_split="prompt",
        normalize=_MBPP_SHAPE(
            lambda records, origin: sorted(
                _mbpp_full(records, MBPP_SHOT_IDS), key=lambda r: int(r["task_id"].split("/")[1])
            )
        ),
    ),
    variants={
        "sanitized": DataSource(
            name="sanitized test",
            local_files=("sanitized-mbpp.json",),
            hub_config="sanitized",
            hub_split="test",
            normalize=_mbpp_sanitized,
        )  # fmt: skip
    },
    fewshot_ids=MBPP_SHOT_IDS,
    prompt_fn=_mbpp_prompt,
    instruct_fn=_mbpp_instruct,
    stop=("[DONE]",),
    max_tokens=512,
    timeout_s=10.0,
    test_timeout_s=6.0,
)

# -- bigcodebench -------------------------------------------------------------------


_BIGCODEBENCH_TEXT = ("task_id", "complete_prompt", "instruct_prompt", "code_prompt", "test", "entry_point")


@record_shape({**dict.fromkeys(_BIGCODEBENCH_TEXT, Text), "canonical": str, "libs": list[str]})
def _bigcodebench(records: list[dict[str, Any]], origin: str) -> list[dict[str, Any]]:
    keys = ("task_id", "complete_prompt", "instruct_prompt", "code_prompt", "test", "entry_point")
    out = []
    for r in records:
        libs = r.get("libs")
        if isinstance(libs, str):
            libs = re.findall(r"'([^']+)'", libs)
        out.append(
            {
                **{k: r[k] for k in keys},
                "canonical": r["complete_prompt"] + r["canonical_solution"]
                if not r["canonical_solution"].lstrip("\n").startswith(("import ", "from ", "def "))  # not nested
                else r["canonical_solution"],
                "libs": list(libs or []),
            }
        )
    return out


def _bigcodebench_instruct(record: dict[str, Any]) -> str:
    """bigcodebench's own chat prompt (make_raw_chat_prompt)."""
    return (
        "Please provide a self-contained Python script that solves the following problem in a markdown code block:\n"
        f"```\n{record['instruct_prompt'].strip()}\n```\n"
    )


BIGCODEBENCH = CodeSpec(
    dataset_id="bigcodebench",
    tests_format="unittest",
    source=DataSource(
        name="test",
        local_files=("BigCodeBench_v0.1.0_hf_format.jsonl.gz",),
        normalize=_bigcodebench,
    ),
    variants={
        # The local file has no hard-subset marker: `hard` comes from the hub (bigcode/bigcodebench-hard).
        "hard": DataSource(name="hard", local_files=("BigCodeBench-Hard.jsonl.gz",), normalize=_bigcodebench),
    },
    prompt_field="complete_prompt",
    instruct_fn=_bigcodebench_instruct,
    stop=("\nif __name__", "\ndef main(", "\nprint(", "\n```"),
    max_tokens=1280,
    timeout_s=30.0,
    test_timeout_s=30.0,
    max_wall_s=float(os.environ.get("EVALMAP_BIGCODEBENCH_TIMEOUT", "240")),  # bigcodebench's default total
    memory_mb=4096,
)

PYTHON3 = 3  # deepmind/code_contests solutions.language: 1 python2, 2 c++, 3 python3, 4 java
APPS_DIFFICULTIES = ("introductory", "interview", "competition")


def _as_text(value: Any) -> str:
    return "\n".join(map(str, value)) + "\n" if isinstance(value, list) else str(value)


def normalize_codecontests(records: list[dict[str, Any]], origin: str = "hub") -> list[dict[str, Any]]:
    out = []
    for r in records:
        tests: list[list[str]] = []
        for group in ("public_tests", "private_tests", "generated_tests"):
            block = r.get(group) or {}
            tests += [[i, o] for i, o in zip(block.get("input") or [], block.get("output") or [], strict=False)]
        solutions = r.get("solutions") or {}
        python = [s for lang, s in zip(solutions.get("language") or [], solutions.get("solution") or [], strict=False)
                  if lang == PYTHON3]  # fmt: skip
        limit = r.get("time_limit") or {}
        seconds = float(limit.get("seconds") or 0) + float(limit.get("nanos") or 0) / 1e9 if limit else 0.0
        if not tests:
            continue  # nothing to check against: skipped, as the papers do
        out.append(
            {
                "task_id": r["name"],
                "question": r["description"],
                "starter_code": "",
                "fn_name": None,
                "tests": tests,
                "canonical": python[0] if python else None,
                "time_limit_s": seconds or None,
                "difficulty": str(r.get("difficulty", "")),
            }
        )
    return out


def normalize_apps(records: list[dict[str, Any]], origin: str = "hub") -> list[dict[str, Any]]:
    out = []
    for r in records:
        try:
            io = json.loads(r["input_output"]) if isinstance(r["input_output"], str) else r["input_output"]
        except (ValueError, TypeError):
            io = None
        if not io or not io.get("inputs"):
            continue  # a few test problems have no or malformed tests: skipped, as usual
        fn_name = io.get("fn_name") or r.get("fn_name")
        pairs = zip(io["inputs"], io["outputs"], strict=False)
        tests = [[i, o] for i, o in pairs] if fn_name else [[_as_text(i), _as_text(o)] for i, o in pairs]
        try:
            solutions = json.loads(r["solutions"]) if isinstance(r.get("solutions"), str) else r.get("solutions")
        except ValueError:
            solutions = None
        out.append(
            {
                "task_id": f"apps/{r['problem_id']}",
                "question": r["question"],
                "starter_code": r.get("starter_code") or "",
                "fn_name": fn_name,
                "tests": tests,
                "canonical": solutions[0] if solutions else None,
                "time_limit_s": None,
                "difficulty": r.get("difficulty"),
            }
        )
    return out


def _apps_prompt(record: dict[str, Any], shots: list[dict[str, Any]]) -> str:
    """The APPS paper's prompt (its generate_gpt_codes.py)."""
    fmt = "Use Call-Based format" if record.get("fn_name") else "Use Standard Input format"
    starter = record.get("starter_code") or ""
    return f"\nQUESTION:\n{record['question']}\n{starter}\n{fmt}\nANSWER:\n"


def _instruct(record: dict[str, Any]) -> str:
    if record.get("fn_name"):
        how = (
            f"Write the function `{record['fn_name']}` in Python 3, starting from:\n```python\n"
            + (record.get("starter_code") or "").rstrip()
            + "\n```"
        )
    else:
        how = "Write a complete Python 3 program that reads from standard input and writes to standard output."
    return (
        f"Solve the following programming problem.\n\n{record['question'].strip()}\n\n{how}\n"
        "Reply with your code in a single ```python code block."
    )


_STOP = ("\nQUESTION:", "\n```", "\n\n\n\n")

CODECONTESTS = CodeSpec(
    dataset_id="codecontests",
    tests_format="io",
    source=DataSource(name="test", local_files=(), normalize=normalize_codecontests),
    variants={"valid": DataSource(name="valid", local_files=(), hub_split="valid", normalize=normalize_codecontests)},
    prompt_fn=_apps_prompt,
    instruct_fn=_instruct,
    stop=_STOP,
    max_tokens=1024,
    timeout_s=10.0,
    test_timeout_s=4.0,
    max_wall_s=300.0,
    metrics=("pass@1", "test_case_pass_rate"),
)

APPS = CodeSpec(
    dataset_id="apps",
    tests_format="io",
    source=DataSource(name="test", local_files=(), normalize=normalize_apps),
    variants={d: DataSource(name=d, local_files=(), hub_config=d, normalize=normalize_apps) for d in APPS_DIFFICULTIES},
    prompt_fn=_apps_prompt,
    instruct_fn=_instruct,
    stop=_STOP,
    max_tokens=1024,
    timeout_s=10.0,
    test_timeout_s=4.0,
    max_wall_s=300.0,
    metrics=("pass@1", "test_case_pass_rate"),
    group_field="difficulty",
    group_values=APPS_DIFFICULTIES,
)
