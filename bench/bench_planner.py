"""Does the plan predict the run? Plan, then run, a mixed CPU job set with the embedded model: cold (no history
on this machine), then after one calibration run.

    python bench/bench_planner.py [--backend transformers|llamacpp] [--samples 20] [--data-dir DIR]

Two log-likelihood datasets (arc_challenge, hellaswag) and two generative ones (gsm8k, humaneval), 20 items
each. Cold: `evalmap.plan` on an empty store (reference profiles), then `evalmap.evaluate` of the same jobs
(each run in a new process, as `evalmap run` is). Calibrated: `plan` with a new seed (other items) reading the
first run's store, then the run of those jobs in a fresh store (so no answer comes from the cache).

Prints estimate / actual per job, for the model's load (run wall minus its jobs) and for the whole run; goal:
within ±50% cold, ±20% calibrated, and the actual inside the plan's 95% interval. A job's actual is its share
of the run's job walls by the engine's time on its own requests (planner.engine_walls: the runner charges the
pipeline to the first unfinished job while the engine already works on the next job's requests). "given
lengths" is the planner's time model fed the lengths the run actually generated: it separates the speed model
from the answers' lengths, which new items make unknowable (the planner's interval is for those). Timings on a
shared machine are noisy: run it on a quiet one, twice.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path

import evalmap
from evalmap import planner
from evalmap.api import _catalog
from evalmap.store import Store
from evalmap.tasks.base import TaskConfig
from evalmap.workload import Lengths, plan_workloads

print = functools.partial(print, flush=True)  # noqa: A001 - progress shows as it happens, also into a file
DATASETS = "arc_challenge,hellaswag,gsm8k,humaneval"
GOALS = {"cold": 0.5, "calibrated": 0.2}


def _ratio(estimate: float | None, actual: float) -> str:
    return "   -  " if estimate is None or actual <= 0 else f"{estimate / actual:6.2f}"


def _within(estimate: float | None, actual: float, goal: float, span: tuple[float, float] | None = None) -> str:
    if estimate is None or actual <= 0:
        return "no estimate"
    verdict = "ok" if abs(estimate / actual - 1) <= goal else "MISS"
    if span is not None and span[1] > span[0]:  # the interval is the answers' lengths' (none: log-likelihood)
        verdict += ", in 95%" if span[0] <= actual <= span[1] else ", OUT of 95%"
    return verdict


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _evaluate(kwargs: dict):
    return evalmap.evaluate(**kwargs)


def _run(**kwargs):
    """evalmap.evaluate in a new process, as `evalmap run` is: it imports torch and transformers itself (about
    3.5 s of a transformers run's setup that a second run in one process would not pay)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_evaluate, (kwargs,))


def _run_facts(run_store: Path, result) -> tuple[list[float], dict[str, list[int]]]:
    """Each job's share of the run's job walls by engine time, and each job's generated tokens per sample."""
    store = Store(run_store)
    try:
        model, backend = result.jobs[0].model, result.jobs[0].backend["name"]
        history = {j["id"]: j for j in store.measured_jobs(model, backend)["jobs"]}
        query = "SELECT completion_tokens FROM samples WHERE job_id=? ORDER BY position"
        lengths = {j.dataset: [r[0] for r in store.db.execute(query, (j.job_id,))] for j in result.jobs}
    finally:
        store.close()
    jobs = [history[j.job_id] for j in result.jobs]
    return planner.engine_walls(jobs), lengths


def _given_lengths(args, seed: int, job, lengths: list[int]) -> float | None:
    """The planner's seconds for this job had it known the lengths the run generated (its rates as planned)."""
    catalog = _catalog(None)
    model = catalog.model(args.model)
    engine = args.backend or model.run.default_backend
    config = TaskConfig(data_dir=args.data_dir, seed=seed)
    workloads, _ = plan_workloads(catalog, [(args.model, job.dataset, args.samples)], config, seed, None, engine)
    workload = workloads.get((args.model, job.dataset))
    name = planner.reference_profile(engine)
    if workload is None or name is None:
        return None
    if workload.lengths is not None:
        workload.lengths = Lengths(tuple(lengths), "the run's", observed=True)
    profile = planner.ENGINES[name]
    rates = planner.Rates(job.measured["prefill"], job.measured["decode"]) if job.measured else planner.Rates()
    parts = planner.profile_seconds(profile, model, planner.job_work(workload, profile))
    return None if parts is None else parts[0] * rates.prefill + parts[1] * rates.decode


def phase(name: str, args: argparse.Namespace, seed: int, history: Path, run_store: Path) -> list[tuple]:
    """Plan from `history`, run in `run_store`; print and return (job, estimate, actual) rows."""
    common = dict(samples=args.samples, backend=args.backend, data_dir=args.data_dir, seed=seed)
    est = evalmap.plan(args.model, args.datasets, store=history, **common)
    given = {}
    load_before, cpu_before, wall_before = os.getloadavg()[0], _cpu_seconds(), time.perf_counter()
    result = _run(models=args.model, datasets=args.datasets, store=run_store, quiet=True, **common)
    share = (_cpu_seconds() - cpu_before) / (time.perf_counter() - wall_before)
    walls, lengths = _run_facts(run_store, result)
    for job in est.jobs:
        given[job.dataset] = _given_lengths(args, seed, job, lengths[job.dataset])
    goal = GOALS[name]
    print(f"\n{name} (seed {seed}; estimate from {est.store or 'no history: reference profiles'}; goal ±{goal:.0%})")
    print(f"machine: 1-min load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"this run used {share:.2f} CPU-seconds per wall second")
    print(f"{'job':<14}{'sent tok est/act':>17}{'gen tok est [95%] / act':>27}{'seconds est [95%]':>22}"
          f"{'wall':>7}{'actual':>7}{'est/act':>8}{'given lengths':>14}  verdict")
    rows = []
    for job, actual, wall in zip(est.jobs, result.jobs, walls, strict=True):
        interval = f"[{job.estimate_range[0]:.0f}-{job.estimate_range[1]:.0f}]" if job.estimate_range else ""
        gen = f"{job.generated_tokens} [{job.generated_range[0]}-{job.generated_range[1]}] / {actual.completion_tokens}"
        if not job.generated_tokens:
            gen = f"0 / {actual.completion_tokens} (cont.)"
        seconds = f"{job.estimate_seconds:.1f} {interval}" if job.estimate_seconds is not None else "-"
        sent = actual.prompt_tokens + (actual.completion_tokens if not job.generated_tokens else 0)  # contexts+conts
        known = given[job.dataset]
        print(f"{job.dataset:<14}{f'{job.prompt_tokens} / {sent}':>17}{gen:>27}{seconds:>22}"
              f"{actual.wall_seconds:7.1f}{wall:7.1f}{_ratio(job.estimate_seconds, wall):>8}"
              f"{_ratio(known, wall):>14}  {_within(job.estimate_seconds, wall, goal, job.estimate_range)}")
        rows.append((job.dataset, job.estimate_seconds, wall))
    load_actual = result.wall_seconds - sum(j.wall_seconds for j in result.jobs)
    load = est.loads[0]
    print(f"{'model load':<14}{'':>66}{load.seconds or 0:>7.1f}{load_actual:7.1f}{_ratio(load.seconds, load_actual):>8}"
          f"{'':>14}  {_within(load.seconds, load_actual, goal)}  ({load.source})")
    total = est.estimate_seconds()
    span = est.estimate_range()
    interval = f"[{span[0]:.0f}-{span[1]:.0f}]" if span else ""
    print(f"{'whole run':<14}{'':>44}{f'{total or 0:.1f} {interval}':>22}{'':>7}{result.wall_seconds:7.1f}"
          f"{_ratio(total, result.wall_seconds):>8}{'':>14}  {_within(total, result.wall_seconds, goal, span)}")
    print("sources: " + "; ".join(f"{j.dataset}: {j.source}" for j in est.jobs))
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
