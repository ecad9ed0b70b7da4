"""Time `evalmap report` on a large synthetic store: 25 models × 26 datasets × 500 samples.

    python bench/bench_report.py [--models 25] [--samples 500] [--keep DIR]

The store is written through the Store API with real catalog ids and realistic
shapes (0/1 metrics, a 1-10 judge score, latencies, code test results, prompts of
a few hundred characters). Prints the store build time (not part of the target),
the report build time (target: under 60 s on 2 cores), the size of index.html
(samples are lazy, so it must stay small) and of the samples folder.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from evalmap.catalog.loader import load_catalog
from evalmap.metrics.stats import mean_score
from evalmap.report.html import build_report
from evalmap.store import Store

WORDS = ("the", "model", "answer", "number", "function", "returns", "list", "value", "question", "because",
         "therefore", "step", "compute", "total", "each", "item", "result", "given", "find", "string")


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def synthesise(path: Path, n_models: int, n_samples: int, seed: int = 0) -> tuple[Store, str]:
    catalog = load_catalog()
    rng = random.Random(seed)
    store = Store(path)
    models = list(catalog.models)[:n_models]
    run_id, _ = store.open_run("bench", {"bench": True}, seed, catalog.version, {"python": "3.11", "evalmap": "bench"})
    for mi, model in enumerate(models):
        skill = 0.25 + 0.6 * rng.random()
        speed = 0.05 * (1 + catalog.models[model].params_b) ** 0.7
        backend = {"name": "vllm", "version": "0.33.0", "model": model, "fingerprint": f"{mi:08x}" * 4, "extra": {}}
        for ds in catalog.datasets.values():
            job = store.open_job(run_id, model, ds.id, backend, {"chat": True}, f"{hash(ds.id) & 0xFFFFFFFF:08x}",
                                 n_samples)
            p = min(0.97, max(0.02, skill + rng.uniform(-0.2, 0.2)))
            records = []
            for i in range(n_samples):
                latency = speed * rng.lognormvariate(0, 0.3)
                ok = rng.random() < p
                metrics: dict[str, float] = {}
                for k, name in enumerate(ds.metrics):
                    if name.startswith("latency"):
                        metrics[name] = latency * (1.0 if name.endswith("p50") else 1.6)
                    elif name == "tokens_per_second":
                        metrics[name] = 120 / latency
                    elif name == "judge_score":
                        metrics[name] = float(max(1, min(10, round(p * 10 + rng.gauss(0, 1.5)))))
                    elif name in ("spearman", "mcc"):
                        metrics[name] = rng.uniform(-0.2, 0.8)
                    else:
                        metrics[name] = float(ok if k == 0 else rng.random() < p)
                details: dict = {}
                if ds.request_kind == "execute":
                    details = {"status": "passed" if ok else rng.choice(["failed", "timeout", "error"]),
                               "error_type": None if ok else "AssertionError",
                               "stderr": "" if ok else "Traceback (most recent call last):\n" + _text(rng, 30),
                               "wall_s": 0.1, "n": 1, "passed": int(ok)}
                records.append({
                    "item_id": f"{ds.id}/{i}", "position": i, "prompt": _text(rng, 90 + (i % 7) * 20),
                    "output": [_text(rng, 40)], "extracted": str(i if ok else i + 1), "target": str(i),
                    "metrics": metrics, "details": details, "prompt_tokens": 180, "completion_tokens": 60,
                    "latency_s": latency,
                })
            store.add_samples(job, records)
            store.set_scores(job, [mean_score(m, [r["metrics"][m] for r in records]).to_dict() for m in ds.metrics])
            store.add_job_counters(job, wall_seconds=sum(r["latency_s"] for r in records), model_calls=n_samples,
                                   prompt_tokens=180 * n_samples, completion_tokens=60 * n_samples)
            store.finish_job(job, "finished")
    store.finish_run(run_id, "finished", 3600.0)
    return store, run_id


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=25)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--keep", type=Path, help="Write the report here and keep it.")
    parser.add_argument("--store", type=Path, help="Reuse this synthetic store (made there on first use).")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="evalmap-bench-report-"))
    try:
        began = time.perf_counter()
        if args.store and args.store.is_file():
            store = Store(args.store)
            run_id = store.runs(1)[0]["id"]
        else:
            store, run_id = synthesise(args.store or tmp / "store.sqlite", args.models, args.samples)
        built = time.perf_counter() - began
        n_jobs = len(store.jobs(run_id))
        catalog = load_catalog()
        out = args.keep or tmp / "report"
        began, cpu = time.perf_counter(), time.process_time()
        result = build_report(store, [run_id], out, catalog)
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
        index_kb = result.index.stat().st_size / 1024
        samples_mb = _size(out / "samples") / 2**20
        biggest = max((f.stat().st_size for f in (out / "samples").iterdir()), default=0) / 2**20
        print(f"store: {args.models} models × {n_jobs // max(args.models, 1)} datasets × {args.samples} samples "
              f"= {n_jobs} jobs, {n_jobs * args.samples} samples (synthesised or opened in {built:.1f} s)")
        print(f"report: {elapsed:.1f} s wall, {cpu:.1f} s CPU in this process, on {os.cpu_count()} CPUs "
              f"(load average {os.getloadavg()[0]:.1f}; target < 60 s)")
        print(f"index.html: {index_kb:.0f} KiB; samples/: {samples_mb:.1f} MiB in {n_jobs} lazily loaded files "
              f"(largest {biggest:.2f} MiB); whole report {_size(out) / 2**20:.1f} MiB")
        print("stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()))
        print(f"index: {result.index}")
        store.close()
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
