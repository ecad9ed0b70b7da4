"""Timed load on an engine: every request streamed and timed per chunk, as vLLM's benchmark_serving does.

`run_load(backend, load)` sends `load.prompts` (completion prompts) under one schedule: arrivals at once
(`rate=None`) or Poisson at `rate` requests/s (exponential gaps, seeded), at most `concurrency` in flight
(None: no cap). Nothing here goes through the response cache: a latency is never served from a store.

- An OpenAI-compatible server (OpenAIBackend) is streamed over SSE (`/v1/completions`, `stream=true`,
  `stream_options.include_usage`); token counts come from the final usage chunk where the server sends
  one (vLLM, SGLang), else from a non-streamed `max_tokens=1` call of the same prompt (prompt tokens) and
  the content chunks of the stream (llama-cpp-python sends one chunk per token). `ignore_eos` and
  `min_tokens = max_tokens` ask for exactly max_tokens (vLLM and llama.cpp honour them; OpenAI itself is
  not sent them). A stream that sends nothing for `stall_s` is cut and counted as failed.
- llama.cpp in process (LlamaCppBackend) is timed through `create_completion(stream=True)`, EOS banned by
  a logit bias; prompt tokens from its tokenizer, output tokens = content chunks (one per token). It serves
  one request at a time, so a request waits for the ones before it (FIFO), as with a one-slot server; its
  TTFT and E2E latency run from when a client would have sent it (its arrival, or the end of the request
  `concurrency` places before it), so queueing is in them, measured on one thread without contention.
- transformers in process (TransformersBackend) is timed through its decode loop's per-step `on_tokens`,
  one request at a time (FIFO, as llama.cpp); token counts are the engine's; EOS is not banned there.
Other engines (vLLM in process) have no per-token timing here: one sentence says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from dataclasses import dataclass, field

import httpx

from evalmap.backends.base import Backend
from evalmap.errors import EvalmapError

STALL_S = 60.0  # a stream silent this long is cut and its request counted as failed


class TimingUnsupportedError(EvalmapError):
    """The run's engine cannot be timed per token."""


@dataclass(frozen=True)
class Load:
    """One sweep point: these prompts, this schedule, `max_tokens` each."""

    prompts: tuple[str, ...]
    max_tokens: int
    concurrency: int | None = None  # None: no cap
    rate: float | None = None  # requests/s, Poisson arrivals; None: all at once
    seed: int = 0
    ignore_eos: bool = True
    stall_s: float = STALL_S

    def arrivals(self) -> list[float]:
        """Send times (s from the start) before any concurrency cap: 0 for all, or Poisson gaps."""
        if self.rate is None or math.isinf(self.rate):
            return [0.0] * len(self.prompts)
        rng = random.Random(self.seed)
        t, out = 0.0, []
        for _ in self.prompts:
            out.append(t)
            t += rng.expovariate(self.rate)
        return out


@dataclass
class Timed:
    """One request as the client saw it (vLLM's RequestFuncOutput); seconds from the sweep point's start."""

    ok: bool
    sent: float = 0.0
    ttft: float = 0.0
    latency: float = 0.0
    itl: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    output_tokens: int = 0
    token_source: str = "usage"  # "usage" (the engine's count) or "chunks" (content chunks of the stream)
    finish_reason: str | None = None  # None: the stream ended without one (cut: counted as failed)
    error: str = ""
    text: str = ""


def run_load(backend: Backend, load: Load) -> list[Timed]:
    """Every prompt of `load`, timed, in prompt order."""
    from evalmap.backends.llamacpp_backend import LlamaCppBackend
    from evalmap.backends.openai_backend import OpenAIBackend
    from evalmap.backends.transformers_backend import TransformersBackend

    if isinstance(backend, OpenAIBackend):
        return asyncio.run(_ServerLoad(backend, load).run())
    if isinstance(backend, LlamaCppBackend):
        try:
            return time_llama(backend._llm, load, backend._last_logits_only)
        finally:
            backend._cache_from_generation = False  # its next generation starts from an empty cache
    if isinstance(backend, TransformersBackend):
        return time_transformers(backend, load)
    raise TimingUnsupportedError(
        f"Per-token timing needs the llamacpp or transformers backend or an OpenAI-compatible server, not "
        f"{backend.info.name}; run the efficiency datasets with --backend llamacpp, or serve the model (vLLM, "
        "llama.cpp) and use --backend openai --base-url URL."
    )


# ---------------------------------------------------------------------- a server, over SSE


class _ServerLoad:
    def __init__(self, backend, load: Load):
        self.backend, self.load = backend, load
        self.url = backend._api + "/completions"

    def payload(self, prompt: str, stream: bool, max_tokens: int) -> dict:
        body = {
            "model": self.backend.model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0,
            "seed": self.load.seed, **self.backend._sampling_extras(),
        }  # fmt: skip
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        if self.load.ignore_eos and self.backend.server_kind != "openai":
            body.update(ignore_eos=True, min_tokens=max_tokens)
        return body

    async def run(self) -> list[Timed]:
        load = self.load
        n = len(load.prompts)
        cap = n if load.concurrency is None else max(1, min(load.concurrency, n))
        limits = httpx.Limits(max_connections=cap, max_keepalive_connections=cap)
        timeout = httpx.Timeout(self.backend.timeout_s, connect=min(self.backend.timeout_s, 10.0), read=load.stall_s)
        results: list[Timed | None] = [None] * n
        async with httpx.AsyncClient(headers=self.backend._headers, limits=limits, timeout=timeout) as client:
            slots = asyncio.Semaphore(cap)
            start = time.perf_counter()

            async def one(i: int, at: float) -> None:
                delay = at - (time.perf_counter() - start)
                if delay > 0:
                    await asyncio.sleep(delay)
                async with slots:
                    results[i] = await self.stream(client, load.prompts[i], start)

            await asyncio.gather(*(one(i, at) for i, at in enumerate(load.arrivals())))
            done = [r for r in results if r is not None]
            if any(r.ok and r.token_source == "chunks" for r in done):
                await self.prompt_tokens(client, done)
        return done

    async def stream(self, client: httpx.AsyncClient, prompt: str, start: float) -> Timed:
        """vLLM's async_request_openai_completions: TTFT at the first chunk with choices, ITL between them."""
        sent = time.perf_counter()
        out = Timed(ok=False, sent=sent - start, token_source="chunks")
        last, seen, chunks, usage, text = sent, False, 0, None, []
        try:
            async with client.stream("POST", self.url, json=self.payload(prompt, True, self.load.max_tokens)) as reply:
                if reply.status_code != 200:
                    await reply.aread()
                    out.error = f"HTTP {reply.status_code}: {reply.text[:200]}"
                    return out
                async for line in reply.aiter_lines():  # the client's read timeout is stall_s
                    line = line.strip()
                    if not line.startswith("data:"):  # an SSE comment (a keep-alive ping) is no progress
                        if time.perf_counter() - last > self.load.stall_s:
                            raise TimeoutError
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    body = json.loads(data)
                    now = time.perf_counter()
                    if body.get("choices"):
                        piece = body["choices"][0].get("text") or ""
                        out.finish_reason = body["choices"][0].get("finish_reason") or out.finish_reason
                        if not seen:
                            out.ttft, seen = now - sent, True
                        else:
                            out.itl.append(now - last)
                        last = now
                        if piece:
                            chunks += 1
                            text.append(piece)
                    if isinstance(body.get("usage"), dict):
                        usage = body["usage"]
        except (TimeoutError, httpx.TimeoutException):
            out.error = f"the stream stalled: nothing for {self.load.stall_s:g} s after {chunks} chunks"
            return out
        except (httpx.TransportError, ValueError) as exc:
            out.error = f"{type(exc).__name__}: {exc}"
            return out
        out.latency = time.perf_counter() - sent
        out.text = "".join(text)
        if usage and usage.get("completion_tokens") is not None:
            out.prompt_tokens, out.output_tokens = int(usage.get("prompt_tokens") or 0), int(usage["completion_tokens"])
            out.token_source = "usage"
        else:
            out.output_tokens = chunks
        out.ok = chunks > 0 and out.finish_reason is not None
        if not chunks:
            out.error = "the stream carried no text"
        elif out.finish_reason is None:
            out.error = (
                f"the stream ended after {chunks} chunks without a finish reason (cut by the server; "
                "llama-cpp-python's server cuts a request when another arrives unless started with "
                "--interrupt_requests False)"
            )
        return out

    async def prompt_tokens(self, client: httpx.AsyncClient, timed: list[Timed]) -> None:
        """Prompt tokens from the server's usage of a non-streamed 1-token call (after the timing, not in it)."""
        counts: dict[str, int] = {}
        for prompt, t in zip(self.load.prompts, timed, strict=True):
            if not (t.ok and t.token_source == "chunks"):
                continue
            if prompt not in counts:
                reply = await client.post(self.url, json=self.payload(prompt, False, 1))
                counts[prompt] = int(((reply.json() or {}).get("usage") or {}).get("prompt_tokens") or 0)
            t.prompt_tokens = counts[prompt]


# ---------------------------------------------------------------------- llama.cpp in process


def _one_at_a_time(load: Load, timed_call) -> list[Timed]:
    """An in-process engine serves one request at a time, so a request waits for the ones before it (FIFO),
    as with a one-slot server: each is sent at its arrival once a slot is free (the request `concurrency`
    places back has ended), and `timed_call(prompt, t, start)` fills its timings from `start`'s clock."""
    arrivals = load.arrivals()
    cap = len(load.prompts) if load.concurrency is None else max(1, load.concurrency)
    ends: list[float] = []
    out: list[Timed] = []
    start = time.perf_counter()
    for i, prompt in enumerate(load.prompts):
        sent = max(arrivals[i], ends[i - cap] if i >= cap else 0.0)
        wait = sent - (time.perf_counter() - start)
        if wait > 0:
            time.sleep(wait)
        t = Timed(ok=False, sent=sent)
        timed_call(prompt, t, start)
        end = time.perf_counter() - start
        t.latency, t.ok = end - sent, t.output_tokens > 0
        if not t.ok:
            t.error = "the stream carried no text"
        ends.append(end)
        out.append(t)
    return out


def time_llama(llm, load: Load, scope=contextlib.nullcontext) -> list[Timed]:
    """`load` on a llama_cpp.Llama, one request at a time; `scope()` wraps each generation (the backend's
    last-logits-only switch)."""
    ban = {llm.token_eos(): -math.inf} if load.ignore_eos else None

    def timed_call(prompt: str, t: Timed, start: float) -> None:
        t.token_source = "chunks"
        t.prompt_tokens = len(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False))
        llm.reset()  # no prefix reuse from the request before: each is timed from an empty cache
        last, text = None, []
        with scope():
            for chunk in llm.create_completion(
                prompt, max_tokens=load.max_tokens, temperature=0.0, top_k=0, min_p=0.0, repeat_penalty=1.0,
                seed=load.seed, stream=True, logit_bias=ban,
            ):  # fmt: skip
                now = time.perf_counter() - start
                if last is None:
                    t.ttft = now - t.sent
                else:
                    t.itl.append(now - last)
                last = now
                piece = chunk["choices"][0].get("text") or ""
                t.finish_reason = chunk["choices"][0].get("finish_reason") or t.finish_reason
                if piece:
                    t.output_tokens += 1
                    text.append(piece)
        t.text = "".join(text)

    return _one_at_a_time(load, timed_call)


def time_transformers(backend, load: Load) -> list[Timed]:
    """`load` on a TransformersBackend, one request at a time, each token timed when its decode loop reports
    it (`on_tokens`, after every step; the first step is the prefill's token). Token counts are the engine's.
    EOS cannot be banned there, so a request may end before max_tokens (its TPOT is over what it made)."""
    from evalmap.backends.base import GenerationRequest

    def timed_call(prompt: str, t: Timed, start: float) -> None:
        marks: list[float] = []
        (answer,) = backend.generate(
            [GenerationRequest(prompt=prompt, max_tokens=load.max_tokens, seed=load.seed)],
            on_tokens=lambda n: marks.append(time.perf_counter() - start),
        )
        if marks:
            t.ttft = marks[0] - t.sent
            t.itl = [b - a for a, b in zip(marks, marks[1:], strict=False)]
        t.prompt_tokens, t.output_tokens = answer.prompt_tokens, answer.completion_tokens
        t.finish_reason, t.text = answer.finish_reason, answer.text

    return _one_at_a_time(load, timed_call)
