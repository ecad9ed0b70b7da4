"""Competitive-programming datasets: codecontests (AlphaCode, Li et al., 2022) and apps (Hendrycks et al., 2021).

Both have many hidden tests per problem. A stdin/stdout problem runs the program once per
test inside one sandbox (the harness starts a fresh interpreter per test, each with its
time limit; output is compared token by token, floats to 1e-6 relative); a call-based
apps problem (`fn_name`, possibly a LeetCode-style `class Solution`) calls the function
with each test's arguments, comparing as APPS does (tuples as lists, a one-element list
of outputs unwrapped). After the first timeout the remaining tests are not run and count
as failed. Metrics: pass@k where a sample passes when every test passes (the APPS paper's
"strict accuracy"), and test_case_pass_rate (its "test case average": the mean fraction of
tests passed); apps also per difficulty (`pass@1:interview`, ...).

Neither has a local copy: records come from the hub (deepmind/code_contests,
codeparrot/apps) in their own schema; `normalize_*` turn them into the code family's shape.
The prompt is the APPS paper's ("QUESTION: ... Use Standard Input format / Use Call-Based
format ANSWER:") for both, an instruction plus a fenced answer for chat models.
"""

from __future__ import annotations

import json
from typing import Any

from evalmap.tasks.code import CodeSpec
from evalmap.tasks.data import DataSource

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
    kind="io",
    source=DataSource(name="test", local_files=(), normalize=normalize_codecontests),
    variants={"valid": DataSource(name="valid", local_files=(), hub_split="valid", normalize=normalize_codecontests)},
    prompt_fn=_apps_prompt,
    instruct_fn=_instruct,
    instruct_template="contests-instruct-v1",
    stop=_STOP,
    max_tokens=1024,
    timeout_s=10.0,
    test_timeout_s=4.0,
    max_wall_s=300.0,
    test_case_rate=True,
)

APPS = CodeSpec(
    dataset_id="apps",
    kind="io",
    source=DataSource(name="test", local_files=(), normalize=normalize_apps),
    variants={d: DataSource(name=d, local_files=(), hub_config=d, normalize=normalize_apps) for d in APPS_DIFFICULTIES},
    prompt_fn=_apps_prompt,
    instruct_fn=_instruct,
    instruct_template="contests-instruct-v1",
    stop=_STOP,
    max_tokens=1024,
    timeout_s=10.0,
    test_timeout_s=4.0,
    max_wall_s=300.0,
    test_case_rate=True,
    group_field="difficulty",
)

CONTEST_SPECS = {"codecontests": CODECONTESTS, "apps": APPS}
GROUPS = {"apps": APPS_DIFFICULTIES}
