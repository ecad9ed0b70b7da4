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

import evalmap

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def timed_run(store: Path, args: argparse.Namespace) -> tuple[float, evalmap.RunResult]:
    began = time.perf_counter()
    result = evalmap.evaluate(
        "smollm2_135m", ["gsm8k", "arc_challenge"], {"gsm8k": args.gsm8k, "arc_challenge": args.arc},
        backend=args.backend, batch_size=args.batch_size, data_dir=args.data_dir, store=store, quiet=True,
    )
    return time.perf_counter() - began, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="transformers")
    parser.add_argument("--gsm8k", type=int, default=30)
    parser.add_argument("--arc", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "bench.sqlite"
        cold_s, cold = timed_run(store, args)
        # A second run with the same arguments is a new run: every response must come from the cache.
        warm_s, warm = timed_run(store, args)
    samples = sum(r.n for r in cold.jobs)
    tokens = sum(r.tokens for r in cold.jobs)
    print(f"backend: {args.backend}, batch size {args.batch_size}, jobs: {[(j.dataset, j.n) for j in cold.jobs]}")
    for r in cold.jobs:
        head = r.headline_score
        print(f"  {r.dataset:14s} {head.name} {head.format()}  {r.model_calls} calls, {r.wall_seconds:.1f} s")
    print(f"cold:   {cold_s:8.2f} s  {samples / cold_s:7.2f} samples/s  {tokens / cold_s:8.1f} tokens/s "
          f"({cold.model_calls} model calls; includes model load)")
    print(f"cached: {warm_s:8.2f} s  {samples / warm_s:7.2f} samples/s  ({warm.model_calls} model calls, "
          f"{warm.cache_hits} cache hits)")
    print(f"cached/cold time ratio: {warm_s / cold_s:.4f}")


if __name__ == "__main__":
    main()
