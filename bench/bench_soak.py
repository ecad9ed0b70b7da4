"""Soak: kill -9 `evalmap run` at random moments against a flaky server; the resumed result must equal
an uninterrupted run's.

A fake OpenAI-compatible server on 127.0.0.1 (tests/fuzz_helpers.py) answers every prompt with the same
deterministic text (and prompt logprobs); in flaky mode it also fails a deterministic fraction of
requests with HTTP 500, dropped connections and stalls, and delays some answers.

1. reference: `evalmap run ... --backend openai --base-url HEALTHY` with its own EVALMAP_HOME, to the end;
2. soak: the same command against the FLAKY server with another EVALMAP_HOME, started as a subprocess and
   killed with SIGKILL at a random moment, then started again, KILLS times; then left to finish;
3. the final samples (samples.jsonl: item ids, prompts, outputs, extracted answers, targets, metrics) and
   the scores (results.json) must equal the reference's, and the store must hold each item exactly once.

Run by hand (it is a bench, not a test), from the repository root:

    python bench/bench_soak.py                      # 20 kills, gsm8k + arc_challenge + humaneval
    python bench/bench_soak.py --kills 5 --samples 10 --seed 7

Needs ../shared/datasets (or --data-dir). Prints the numbers and PASS or FAIL (exit 0 or 1).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fuzz_helpers import FakeOpenAI  # noqa: E402

CLI = [sys.executable, "-c", "from evalmap.cli import main; main()"]
COMPARED = ("item_id", "position", "prompt", "output", "extracted", "target", "metrics")  # output: no latency


def run_args(url: str, args: argparse.Namespace, out: Path) -> list[str]:
    return [
        "run", "--models", "smollm2_135m", "--datasets", args.datasets, "--samples", str(args.samples),
        "--data-dir", str(args.data_dir), "--backend", "openai", "--base-url", url, "--concurrency", "4",
        "--timeout", "2", "--max-retries", "10", "--seed", "1234", "--quiet", "--output", str(out), "--overwrite",
    ]  # fmt: skip


def env_for(home: Path) -> dict[str, str]:
    env = {**os.environ, "EVALMAP_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("EVALMAP_CATALOG", None)
    env.pop("EVALMAP_DATA_DIR", None)
    return env


def start(url: str, args: argparse.Namespace, home: Path, out: Path, log: Path) -> subprocess.Popen:
    with log.open("ab") as fh:
        return subprocess.Popen(
            [*CLI, *run_args(url, args, out)], env=env_for(home), stdout=fh, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=str(ROOT),
        )


def _untimed(output):
    """A sample's output without timings (log-likelihood answers carry their latency)."""
    if isinstance(output, list):
        return [{k: v for k, v in o.items() if k != "latency_s"} if isinstance(o, dict) else o for o in output]
    return output


def samples_of(out: Path) -> dict[tuple[str, str, str], dict]:
    rows = {}
    for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        sample = {k: row.get(k) for k in COMPARED}
        sample["output"] = _untimed(sample["output"])
        rows[(row["model"], row["dataset"], row["item_id"])] = sample
    return rows


def scores_of(out: Path) -> dict[tuple[str, str], dict]:
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return {
        (j["model"], j["dataset"]): {name: (m["value"], m["stderr"], m["n"]) for name, m in j["metrics"].items()}
        for j in data["jobs"]
    }


def store_counts(home: Path) -> tuple[int, int]:
    """(samples rows, distinct (job, item) pairs) over every store file under `home`."""
    rows = distinct = 0
    for path in home.rglob("*.sqlite"):
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows += con.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
            distinct += con.execute("SELECT COUNT(*) FROM (SELECT DISTINCT job_id, item_id FROM samples)").fetchone()[0]
        finally:
            con.close()
    return rows, distinct


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--datasets", default="gsm8k,arc_challenge,humaneval")
    parser.add_argument("--flaky", type=float, default=0.3, help="fraction of requests the flaky server fails")
    parser.add_argument("--slow", type=float, default=0.3, help="seconds of a stall / a delayed answer")
    parser.add_argument("--horizon", type=float, default=4.0, help="kill at 0.3..HORIZON s after each start")
    parser.add_argument("--seed", type=int, default=20261130, help="seeds the kill moments")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and print it")
    args = parser.parse_args()
    if not args.data_dir.is_dir():
        print(f"FAIL: no data folder {args.data_dir} (pass --data-dir)")
        return 1
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="evalmap-soak-"))
    problems: list[str] = []
    began = time.perf_counter()

    # 1. the uninterrupted reference against a healthy server
    with FakeOpenAI(owned_by="vllm") as healthy:
        t0 = time.perf_counter()
        ref = subprocess.run(
            [*CLI, *run_args(healthy.url, args, work / "ref-out")], env=env_for(work / "ref-home"),
            capture_output=True, text=True, cwd=str(ROOT), timeout=1800,
        )
        ref_seconds = time.perf_counter() - t0
        ref_served = healthy.served
    if ref.returncode != 0:
        print(ref.stdout[-3000:], ref.stderr[-3000:])
        print(f"FAIL: the reference run exited {ref.returncode}")
        return 1
    print(f"reference: {ref_seconds:.1f} s, {ref_served} requests served, exit 0")

    # 2. kill -9 at random moments against a flaky server, rerunning the same command each time
    flaky = FakeOpenAI(owned_by="vllm", flaky=args.flaky, slow_s=args.slow)
    home, out, log = work / "soak-home", work / "soak-out", work / "soak.log"
    kills = finished_early = 0
    exits: Counter[str] = Counter()
    starts = 0
    # Start-up (imports, catalog, data, store) takes ~1.5 s: kills land before, during and after it, and
    # each rerun makes a little progress, so the run is still unfinished after the last kill.
    horizon = args.horizon
    try:
        while kills < args.kills:
            proc = start(flaky.url, args, home, out, log)
            starts += 1
            delay = rng.uniform(0.3, horizon)
            try:
                code = proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                kills += 1
                continue
            exits[str(code)] += 1
            if code == 0:
                # Finished before its kill: later kills would hit a run with nothing left to do.
                finished_early += 1
                problems.append(f"the run finished after {kills} kills (of {args.kills}); raise --samples")
                break
            if starts > args.kills * 5:
                problems.append(f"{starts} starts for {kills} kills: the run keeps failing (see {log})")
                break
        # 3. let it finish
        t0 = time.perf_counter()
        last = subprocess.run(
            [*CLI, *run_args(flaky.url, args, out)], env=env_for(home), capture_output=True, text=True,
            cwd=str(ROOT), timeout=1800,
        )
        starts += 1
        final_seconds = time.perf_counter() - t0
    finally:
        flaky.close()
    exits[f"{last.returncode} (final)"] += 1
    with log.open("a") as fh:
        fh.write(last.stdout + last.stderr)
    log_text = log.read_text(errors="replace")
    tracebacks = log_text.count("Traceback (most recent call last)")
    if last.returncode != 0:
        problems.append(f"the final run exited {last.returncode}: {last.stderr.strip()[-500:]}")
    if tracebacks:
        problems.append(f"{tracebacks} tracebacks in the reruns' output ({log})")

    # 4. compare
    if last.returncode == 0:
        want, got = samples_of(work / "ref-out"), samples_of(out)
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        differ = sorted(k for k in set(want) & set(got) if want[k] != got[k])
        if missing:
            problems.append(f"{len(missing)} samples missing, e.g. {missing[:3]}")
        if extra:
            problems.append(f"{len(extra)} samples that the reference has not, e.g. {extra[:3]}")
        for key in differ[:5]:
            fields = [f for f in COMPARED if want[key][f] != got[key][f]]
            first = fields[0]
            problems.append(f"sample {key} differs in {fields}: {got[key][first]!r:.200} != {want[key][first]!r:.200}")
        if len(differ) > 5:
            problems.append(f"... and {len(differ) - 5} more differing samples")
        if scores_of(work / "ref-out") != scores_of(out):
            problems.append(f"scores differ: {scores_of(out)} != {scores_of(work / 'ref-out')}")
        rows, distinct = store_counts(home)
        if rows != distinct:
            problems.append(f"the store holds {rows} sample rows for {distinct} distinct items")
        print(f"compared {len(want)} samples ({len(differ)} differ, {len(missing)} missing, {len(extra)} extra); "
              f"store: {rows} sample rows, {distinct} distinct items")

    wall = time.perf_counter() - began
    print(f"kills: {kills} (SIGKILL at 0.3-{horizon:.1f} s after start), starts: {starts}, "
          f"reruns: {starts - 1}, finished before the kill: {finished_early}")
    print(f"exit codes of runs that ended on their own: {dict(exits)}")
    print(f"flaky server: {flaky.posts} POSTs, {flaky.served} answered, {flaky.failed} failed on purpose "
          f"({args.flaky:.0%} target, 500s / drops / {args.slow:g} s stalls); reference needed {ref_served}")
    print(f"final run: {final_seconds:.1f} s; wall time: {wall:.1f} s (reference {ref_seconds:.1f} s)")
    if args.keep or problems:
        print(f"work folder: {work}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    for p in problems:
        print(f"  - {p}")
    print("PASS" if not problems else "FAIL")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
