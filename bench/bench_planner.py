"""Does the plan predict the run? Plan, then run, a mixed CPU job set with the embedded model: cold (no history
on this machine), then after one calibration run.

    python bench/bench_planner.py [--backend transformers|llamacpp] [--samples 20] [--data-dir DIR]

Two log-likelihood datasets (arc_challenge, hellaswag) and two generative ones (gsm8k, humaneval), 20 items
each. Cold: `evalmap.plan` on an empty store (reference profiles), then `evalmap.evaluate` of the same jobs.
Calibrated: `plan` with a new seed (other items) reading the first run's store, then the run of those jobs in
a fresh store (so no answer comes from the cache). Prints estimate / actual per job (job wall seconds, model
load excluded), for the model's load (run wall minus its jobs) and for the whole run; goal: within ±50% cold,
±20% calibrated. Timings on a shared machine are noisy: run it twice.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import tempfile
import time
from pathlib import Path

import evalmap

print = functools.partial(print, flush=True)  # noqa: A001 - progress shows as it happens, also into a file
DATASETS = "arc_challenge,hellaswag,gsm8k,humaneval"
GOALS = {"cold": 0.5, "calibrated": 0.2}


def _ratio(estimate: float | None, actual: float) -> str:
    return "   -  " if estimate is None or actual <= 0 else f"{estimate / actual:6.2f}"


def _within(estimate: float | None, actual: float, goal: float) -> str:
    if estimate is None or actual <= 0:
        return "no estimate"
    return "ok" if abs(estimate / actual - 1) <= goal else "MISS"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def phase(name: str, args: argparse.Namespace, seed: int, history: Path, run_store: Path) -> list[tuple]:
    """Plan from `history`, run in `run_store`; print and return (job, estimate, actual) rows."""
    common = dict(samples=args.samples, backend=args.backend, data_dir=args.data_dir, seed=seed)
    est = evalmap.plan(args.model, args.datasets, store=history, **common)
    load_before, cpu_before, wall_before = os.getloadavg()[0], _cpu_seconds(), time.perf_counter()
    result = evalmap.evaluate(args.model, args.datasets, store=run_store, quiet=True, **common)
    share = (_cpu_seconds() - cpu_before) / (time.perf_counter() - wall_before)
    goal = GOALS[name]
    print(f"\n{name} (seed {seed}; estimate from {est.store or 'no history: reference profiles'}; goal ±{goal:.0%})")
    print(f"machine: 1-min load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"this run used {share:.2f} CPU-seconds per wall second")
    print(f"{'job':<16}{'sent tok est/act':>20}{'gen tok est [interval] / act':>32}"
          f"{'seconds est [interval]':>26}{'actual':>9}{'est/act':>8}  verdict  source")
    rows = []
    for job, actual in zip(est.jobs, result.jobs, strict=True):
        interval = f"[{job.estimate_range[0]:.0f}-{job.estimate_range[1]:.0f}]" if job.estimate_range else ""
        gen = f"{job.generated_tokens} [{job.generated_range[0]}-{job.generated_range[1]}] / {actual.completion_tokens}"
        if not job.generated_tokens:
            gen = f"0 / {actual.completion_tokens} (continuations)"
        seconds = f"{job.estimate_seconds:.1f} {interval}" if job.estimate_seconds is not None else "-"
        sent = actual.prompt_tokens + (actual.completion_tokens if not job.generated_tokens else 0)  # contexts+conts
        print(f"{job.dataset:<16}{f'{job.prompt_tokens} / {sent}':>20}{gen:>32}{seconds:>26}"
              f"{actual.wall_seconds:9.1f}{_ratio(job.estimate_seconds, actual.wall_seconds):>8}  "
              f"{_within(job.estimate_seconds, actual.wall_seconds, goal):<8} {job.source}")
        rows.append((job.dataset, job.estimate_seconds, actual.wall_seconds))
    load_actual = result.wall_seconds - sum(j.wall_seconds for j in result.jobs)
    load = est.loads[0]
    print(f"{'model load':<16}{'':>78}{load.seconds or 0:>10.1f}{load_actual:9.1f}"
          f"{_ratio(load.seconds, load_actual):>8}  {_within(load.seconds, load_actual, goal):<8} {load.source}")
    total = est.estimate_seconds()
    span = est.estimate_range()
    interval = f"[{span[0]:.0f}-{span[1]:.0f}]" if span else ""
    print(f"{'whole run':<16}{'':>68}{f'{total or 0:.1f} {interval}':>26}{result.wall_seconds:9.1f}"
          f"{_ratio(total, result.wall_seconds):>8}  {_within(total, result.wall_seconds, goal)}")
    for note in est.notes:
        print(f"note: {note}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2_135m")
    parser.add_argument("--datasets", default=DATASETS)
    parser.add_argument("--backend", default=None, help="default: the model's run.default_backend")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    parser.add_argument("--seeds", default="1234,4321", help="the cold run's seed, then the calibrated run's")
    args = parser.parse_args()
    first, second = (int(s) for s in args.seeds.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-planner-") as tmp:
        calibration = Path(tmp) / "calibration.sqlite"
        phase("cold", args, first, calibration, calibration)  # plans on an empty store, then fills it
        phase("calibrated", args, second, calibration, Path(tmp) / "fresh.sqlite")


if __name__ == "__main__":
    main()
