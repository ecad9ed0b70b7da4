"""llama-bench's raw numbers from Python: prompt processing (ppN) and generation (tgN) tokens/s of a GGUF.

As llama-bench measures them: random tokens, one untimed warm-up, then `reps` repetitions each from an
empty KV cache; ppN decodes N tokens in batches of n_batch, tgN decodes N tokens one at a time (after
`depth` untimed context tokens: llama-bench's `-d`); no sampling, only the decode calls are timed. Each
is reported as mean ± sd over the repetitions (tokens / seconds of each repetition).

`bench(llm, ...)` runs on a loaded llama_cpp.Llama (the run's own engine, in its process, so evalmap's
timed path can be compared with it in the same process). `python -m evalmap.backends.llama_bench` runs one
GGUF file in a fresh process under device-like limits (threads, an address-space limit), which is how
mobile_benchmark gets a clean load time and peak RSS per file: it prints one JSON object (see `main`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from evalmap.backends.timed import Load, time_llama

WARMUP_TOKENS = 16


def _tokens(llm, n: int, rng: np.random.Generator) -> list[int]:
    return [int(t) for t in rng.integers(0, llm.n_vocab(), size=n)]


def bench(
    llm, n_prompt: int = 512, n_gen: int = 128, reps: int = 3, depth: int = 0, seed: int = 0,
    scope=contextlib.nullcontext,
) -> dict[str, list[float]]:
    """{"pp": tok/s per repetition of pp<n_prompt>, "tg": of tg<n_gen> at `depth`} (an empty list for 0).
    `scope()` wraps the decodes (LlamaCppBackend passes its last-logits-only switch)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {"pp": [], "tg": []}
    with scope():
        llm.reset()
        llm.eval(_tokens(llm, min(WARMUP_TOKENS, max(1, n_prompt)), rng))  # warm-up, untimed
        for _ in range(reps if n_prompt else 0):
            tokens = _tokens(llm, n_prompt, rng)
            llm.reset()
            start = time.perf_counter()
            llm.eval(tokens)
            out["pp"].append(n_prompt / (time.perf_counter() - start))
        for _ in range(reps if n_gen else 0):
            context, tokens = _tokens(llm, depth, rng), _tokens(llm, n_gen, rng)
            llm.reset()
            if context:
                llm.eval(context)
            start = time.perf_counter()
            for token in tokens:
                llm.eval([token])
            out["tg"].append(n_gen / (time.perf_counter() - start))
    llm.reset()
    return out


def logits(llm, tokens: list[int]) -> np.ndarray:
    """The logits row of every position of `tokens` (at most n_batch of them), from an empty cache."""
    saved = llm._logits_all
    llm._logits_all = True
    try:
        llm.reset()
        llm.eval(tokens)
        return np.array(llm.scores[: len(tokens)], dtype=np.float32)
    finally:
        llm._logits_all = saved
        llm.reset()


def peak_rss_bytes() -> int:
    """This process's peak resident set (Linux reports ru_maxrss in KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def main(argv: list[str] | None = None) -> int:
    """One GGUF file, one thread count: load, bench, time the prompts, dump logits; one JSON line on stdout:
    {load_s, pp, tg, n_params, size_bytes, timings: [Timed...], peak_rss_bytes} or {error}."""
    parser = argparse.ArgumentParser(prog="python -m evalmap.backends.llama_bench")
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--pp", type=int, default=512)
    parser.add_argument("--tg", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--memory-limit", type=int, default=0, help="address-space limit in bytes (0: none)")
    parser.add_argument("--prompts", default="", help="a JSON file: {prompts: [...], max_tokens: N}")
    parser.add_argument("--logits-out", default="", help="write the logits of --logits-text's tokens here (.npy)")
    parser.add_argument("--logits-text", default="")
    args = parser.parse_args(argv)
    if args.memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (args.memory_limit, args.memory_limit))
    result: dict = {}
    try:
        import llama_cpp

        start = time.perf_counter()
        llm = llama_cpp.Llama(
            model_path=args.model, n_ctx=args.n_ctx, n_batch=512, n_ubatch=512, n_threads=args.threads,
            n_threads_batch=args.threads, logits_all=False, verbose=False,
        )  # fmt: skip
        result["load_s"] = time.perf_counter() - start
        result["n_params"] = int(llm._model.n_params())
        result["size_bytes"] = os.path.getsize(args.model)
        result.update(bench(llm, args.pp, args.tg, args.reps))
        if args.prompts:
            spec = json.loads(Path(args.prompts).read_text(encoding="utf-8"))
            load = Load(prompts=tuple(spec["prompts"]), max_tokens=int(spec["max_tokens"]), concurrency=1)
            result["timings"] = [asdict(t) for t in time_llama(llm, load)]
        if args.logits_out:
            tokens = llm.tokenize(args.logits_text.encode("utf-8"), add_bos=True)[: llm.n_batch]
            np.save(args.logits_out, logits(llm, tokens))
        llm.close()
    except (MemoryError, ValueError, RuntimeError, OSError) as exc:  # llama.cpp's load or alloc failures
        result = {"error": f"{type(exc).__name__}: {exc}", **{k: v for k, v in result.items() if k == "load_s"}}
    result["peak_rss_bytes"] = peak_rss_bytes()
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
