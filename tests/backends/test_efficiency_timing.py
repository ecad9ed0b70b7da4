"""Timed load (backends.timed) against a real llama.cpp OpenAI-compatible server on 127.0.0.1 (streamed SSE),
llama.cpp in process, and a server that stalls mid-stream; llama-bench's raw numbers (backends.llama_bench).
Timings on a shared machine are noisy: these tests assert relations, never speeds."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from evalmap.backends.timed import Load, run_load
from evalmap.metrics.serving import RequestTiming, serving_scores

PROMPTS = (
    "Pick as many lines as you can from these poem lines:\nFROM fairest creatures we desire increase,\n",
    "Pick as many lines as you can from these poem lines:\nThat thereby beauty's rose might never die,\n",
    "Pick as many lines as you can from these poem lines:\nBut as the riper should by time decease,\n",
)


def _sane(t, max_tokens: int) -> None:
    assert t.ok, t.error
    assert 0 < t.ttft <= t.latency
    assert t.output_tokens == max_tokens  # EOS ignored
    assert len(t.itl) >= t.output_tokens - 1
    assert sum(t.itl) <= t.latency - t.ttft + 1e-6


def test_llama_cpp_server_streamed(llama_server_url, smollm2_backend):
    from evalmap.backends.openai_backend import OpenAIBackend

    backend = OpenAIBackend(llama_server_url, "smollm2", max_retries=0)
    timed = run_load(backend, Load(PROMPTS, max_tokens=8, concurrency=1))
    for prompt, t in zip(PROMPTS, timed, strict=True):
        _sane(t, 8)
        assert t.finish_reason == "length"
        assert t.token_source == "chunks"  # llama-cpp-python's stream carries no usage
        # the same request, not streamed: the engine's usage agrees with the chunks and the text
        body = {"model": "smollm2", "prompt": prompt, "max_tokens": 8, "temperature": 0.0, "min_tokens": 8,
                **backend._sampling_extras()}
        reply = httpx.post(f"{llama_server_url}/v1/completions", json=body, timeout=120).json()
        assert reply["usage"]["completion_tokens"] == t.output_tokens
        assert reply["usage"]["prompt_tokens"] == t.prompt_tokens
        assert reply["choices"][0]["text"] == t.text
        assert t.prompt_tokens == len(smollm2_backend._llm.tokenize(prompt.encode(), add_bos=True))
    for before, after in zip(timed, timed[1:], strict=False):  # one in flight: sent once the one before ended
        assert after.sent >= before.sent + before.latency - 0.01
    # the server's memory is read from the process listening on its port
    import psutil

    from evalmap.tasks.kinds.latency import engine_pid

    assert "llama_cpp.server" in " ".join(psutil.Process(engine_pid(backend)).cmdline())


def test_streams_the_server_cuts_are_counted_as_failed(llama_server_url):
    """llama-cpp-python's server (started without --interrupt_requests False) stops a stream when the next
    request arrives: such a stream ends without a finish reason and is a failed request, not a short one."""
    from evalmap.backends.openai_backend import OpenAIBackend

    backend = OpenAIBackend(llama_server_url, "smollm2", max_retries=0)
    timed = run_load(backend, Load(PROMPTS, max_tokens=8))  # all three at once
    assert any(t.ok for t in timed)
    for t in timed:
        if t.ok:
            _sane(t, 8)
        else:
            assert "without a finish reason" in t.error and t.output_tokens < 8


def test_llama_cpp_in_process(smollm2_backend):
    timed = run_load(smollm2_backend, Load(PROMPTS, max_tokens=6, concurrency=1))
    for prompt, t in zip(PROMPTS, timed, strict=True):
        _sane(t, 6)
        assert t.prompt_tokens == len(smollm2_backend._llm.tokenize(prompt.encode(), add_bos=True))
    for before, after in zip(timed, timed[1:], strict=False):  # one slot: each is sent when the one before ends
        assert after.sent == pytest.approx(before.sent + before.latency, abs=0.05)
    # all sent at once to an engine serving one at a time: the queue is in TTFT and latency
    queued = run_load(smollm2_backend, Load(PROMPTS, max_tokens=6))
    assert all(t.sent == 0.0 for t in queued)
    assert queued[2].ttft >= queued[0].latency + (queued[1].latency - queued[1].ttft)
    timings = [RequestTiming(t.sent, t.ttft, t.latency, tuple(t.itl), t.prompt_tokens, t.output_tokens) for t in queued]
    scores = {s.name: s for s in serving_scores(timings, 0, {})}
    assert scores["ttft_ms_p50"].value <= scores["ttft_ms_p90"].value <= scores["ttft_ms_p99"].value
    assert scores["output_tok_s"].value == pytest.approx(18 / max(t.sent + t.latency for t in queued))
    # the backend's next generation starts from an empty cache, as the timed ones did: the same greedy text
    from evalmap.backends.base import GenerationRequest

    assert smollm2_backend.generate([GenerationRequest(prompt=PROMPTS[2], max_tokens=6)])[0].text == queued[2].text


def test_poisson_arrivals_are_seeded_and_respected(smollm2_backend):
    load = Load(PROMPTS[:2], max_tokens=2, rate=4.0, seed=3)
    arrivals = load.arrivals()
    assert arrivals == Load(PROMPTS[:2], max_tokens=2, rate=4.0, seed=3).arrivals() and arrivals[0] == 0.0
    assert arrivals[1] > 0
    timed = run_load(smollm2_backend, load)
    assert timed[1].sent >= arrivals[1]


def test_llama_bench_numbers(smollm2_backend):
    from evalmap.backends.llama_bench import bench

    numbers = bench(smollm2_backend._llm, n_prompt=32, n_gen=4, reps=2, depth=16,
                    scope=smollm2_backend._last_logits_only)
    assert len(numbers["pp"]) == len(numbers["tg"]) == 2
    assert all(x > 0 for x in numbers["pp"] + numbers["tg"])


class _StallingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    """An OpenAI-compatible stream: three chunks and a usage chunk, or two chunks and then silence
    (a prompt containing "stall") until the test releases it."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self._send(200, "application/json", json.dumps({"data": [{"id": "m", "owned_by": "vllm"}]}).encode())

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in ("a", "b"):
            self._event({"choices": [{"text": piece}]})
            time.sleep(0.01)
        if "stall" in body["prompt"]:
            self.server.release.wait(10)
            return
        self._event({"choices": [{"text": "c", "finish_reason": "length"}]})
        self._event({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}})
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, data: dict) -> None:
        self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    def _send(self, status: int, kind: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def stalling_server():
    server = _StallingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def test_a_stalled_stream_is_cut_and_counted(stalling_server):
    from evalmap.backends.openai_backend import OpenAIBackend

    backend = OpenAIBackend(stalling_server.url, "m", max_retries=0)
    began = time.perf_counter()
    timed = run_load(backend, Load(("one", "stall here", "two"), max_tokens=3, stall_s=0.5))
    assert time.perf_counter() - began < 5  # cut after 0.5 s of silence, not left to hang
    ok = [t for t in timed if t.ok]
    assert [t.ok for t in timed] == [True, False, True]
    assert "stalled" in timed[1].error
    for t in ok:
        assert t.token_source == "usage" and (t.prompt_tokens, t.output_tokens) == (5, 3) and t.text == "abc"
        assert len(t.itl) == 2 and t.ttft <= t.latency
    timings = [RequestTiming(t.sent, t.ttft, t.latency, tuple(t.itl), t.prompt_tokens, t.output_tokens) for t in ok]
    failed = {s.name: s for s in serving_scores(timings, 1, {})}["failed"]
    assert failed.value == pytest.approx(1 / 3) and failed.n == 3
