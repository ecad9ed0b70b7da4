"""Time a fixed evaluation cold, then again from the response cache, in one process.

    python bench/bench_engine.py [--backend transformers|llamacpp] [--gsm8k 30] [--arc 100]

Prints samples/s and tokens/s of the cold run and the cached/cold wall-time ratio.
Data comes from ../shared/datasets (or --data-dir).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from evalmap.backends import BackendOptions
from evalmap.catalog.loader import load_catalog
from evalmap.executors.local import RunOptions, run_plan
from evalmap.store import Store
from evalmap.tasks.base import TaskConfig

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def timed_run(catalog, pairs, options, store) -> tuple[float, object]:
    began = time.perf_counter()
    summary = run_plan(catalog, pairs, options, store)
    return time.perf_counter() - began, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="transformers")
    parser.add_argument("--gsm8k", type=int, default=30)
    parser.add_argument("--arc", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    args = parser.parse_args()

    catalog = load_catalog()
    pairs = [("smollm2_135m", "gsm8k", args.gsm8k), ("smollm2_135m", "arc_challenge", args.arc)]
    options = RunOptions(
        backend=BackendOptions(backend=args.backend, batch_size=args.batch_size),
        task=TaskConfig(data_dir=args.data_dir),
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.sqlite")
        cold_s, cold = timed_run(catalog, pairs, options, store)
        # A second run with the same arguments is a new run: every response must come from the cache.
        warm_s, warm = timed_run(catalog, pairs, options, store)
    samples = sum(r.n for r in cold.results)
    tokens = sum(r.tokens for r in cold.results)
    print(f"backend: {args.backend}, batch size {args.batch_size}, jobs: {pairs}")
    for r in cold.results:
        first = r.scores[0]
        print(f"  {r.dataset:14s} {first.name} {first.format()}  {r.model_calls} calls, {r.wall_seconds:.1f} s")
    print(f"cold:   {cold_s:8.2f} s  {samples / cold_s:7.2f} samples/s  {tokens / cold_s:8.1f} tokens/s "
          f"({cold.model_calls} model calls; includes model load)")
    print(f"cached: {warm_s:8.2f} s  {samples / warm_s:7.2f} samples/s  ({warm.model_calls} model calls, "
          f"{warm.cache_hits} cache hits)")
    print(f"cached/cold time ratio: {warm_s / cold_s:.4f}")


if __name__ == "__main__":
    main()
