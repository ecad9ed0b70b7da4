"""OpenAIBackend.stream against bench/fake_openai_server.py: the window stays full, nothing is lost.

Every check of the window reads the server's own count of the requests it is answering, never the
wall time. `WindowProbe` samples that count while some request has not been sent yet (the server
has seen fewer distinct bodies than there are requests): a streaming window keeps it at the
concurrency then, a window that waits (for a batch, a job, a kind, a backoff) does not.
"""

from __future__ import annotations

import statistics
import threading
import time

import pytest
from fake_openai_server import answer_text, prompt_logprobs

from evalmap.backends import base
from evalmap.backends.base import (
    Generation,
    GenerationRequest,
    LogLikelihood,
    LoglikelihoodRequest,
    split_context,
)
from evalmap.backends.openai_backend import OpenAIBackend, RequestRejectedError
from evalmap.errors import BackendUnavailableError

FAST = dict(backoff_base_s=0.01, backoff_max_s=0.05)


class RecordingSink:
    """A thread-safe sink that notes every delivery, and any index delivered twice."""

    def __init__(self):
        self.lock = threading.Lock()
        self.responses: dict[int, object] = {}
        self.failures: dict[int, Exception] = {}
        self.repeated: list[int] = []
        self.tokens_seen = 0

    def _note(self, index: int) -> None:
        if index in self.responses or index in self.failures:
            self.repeated.append(index)

    def response(self, index, response):
        with self.lock:
            self._note(index)
            self.responses[index] = response

    def failure(self, index, error):
        with self.lock:
            self._note(index)
            self.failures[index] = error

    def tokens(self, n):
        with self.lock:
            self.tokens_seen += n


class WindowProbe:
    """Samples the server's in-flight count every 2 ms while some of the n requests was never sent."""

    def __init__(self, server, n: int):
        self.server, self.n = server, n
        self.samples: list[int] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self.done.wait(0.002):
            if 0 < self.server.distinct_requests < self.n:
                self.samples.append(self.server.in_flight)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()

    def typical(self) -> float:
        """The median in-flight count. A full window dips only for a moment when replies come in
        together (the fake's latency is fixed); a window that waits stays below for a long stretch."""
        assert len(self.samples) >= 20, f"too few samples ({len(self.samples)}) to judge the window"
        return statistics.median(self.samples)


def backend_for(server, **kw) -> OpenAIBackend:
    return OpenAIBackend(server.base_url, "fake", **{**FAST, **kw})


def prompts(n: int, max_tokens: int = 12) -> list[GenerationRequest]:
    return [GenerationRequest(prompt=f"Question {i}: what is {i} + {i}?", max_tokens=max_tokens) for i in range(n)]


def expected(request):
    """What the fake server's answer to `request` becomes once the backend has read it."""
    if isinstance(request, LoglikelihoodRequest):
        context, continuation = split_context(request)
        text = context + continuation
        lp = prompt_logprobs(text)
        span = [i for i, offset in enumerate(lp["text_offset"]) if len(context) <= offset < len(text)]
        total = sum(lp["token_logprobs"][i] for i in span)
        greedy = all(max(lp["top_logprobs"][i].values()) <= lp["token_logprobs"][i] for i in span)
        return pytest.approx(total), greedy, len(span)
    if request.chat:
        return answer_text(messages=request.chat_messages(), max_tokens=request.max_tokens, stop=request.stop)
    return answer_text(request.prompt, max_tokens=request.max_tokens, stop=request.stop)


def check_answers(requests, sink: RecordingSink, indices) -> None:
    for i in indices:
        request, response = requests[i], sink.responses[i]
        if isinstance(request, LoglikelihoodRequest):
            assert isinstance(response, LogLikelihood)
            assert (response.logprob, response.is_greedy, response.continuation_tokens) == expected(request), i
        else:
            assert isinstance(response, Generation)
            assert response.text == expected(request), i
            assert response.completion_tokens == len(response.text.split())


def test_the_window_holds_exactly_the_concurrency(fake_openai):
    server = fake_openai(latency_s=0.3)
    backend = backend_for(server, concurrency=32)
    requests = prompts(200)
    sink = RecordingSink()
    with WindowProbe(server, len(requests)) as probe:
        base.stream(backend, requests, sink)
    assert server.peak_in_flight == 32  # never more than the concurrency, and reached
    assert probe.typical() >= 31
    assert sorted(sink.responses) == list(range(200)) and not sink.failures and not sink.repeated
    assert server.requests == 200
    check_answers(requests, sink, range(200))
    assert sink.tokens_seen == sum(r.completion_tokens for r in sink.responses.values()) > 0


def test_the_window_spans_kinds_and_jobs(fake_openai):
    # Jobs of 20 requests, alternating kinds: a window per kind or per job would hold at most 20.
    server = fake_openai(latency_s=0.2)
    backend = backend_for(server, concurrency=32)
    requests = []
    for job in range(8):
        for i in range(20):
            if job % 2:
                requests.append(LoglikelihoodRequest(f"Job {job} item {i}: the sky is", " blue today"))
            elif job % 4 == 2:
                requests.append(GenerationRequest(messages=(("user", f"job {job} item {i}"),), chat=True, max_tokens=6))
            else:
                requests.append(GenerationRequest(prompt=f"job {job} item {i}", max_tokens=9, stop=("answer",)))
    sink = RecordingSink()
    with WindowProbe(server, len(requests)) as probe:
        backend.stream(requests, sink)
    assert server.peak_in_flight == 32
    assert probe.typical() >= 31
    assert sorted(sink.responses) == list(range(160)) and not sink.failures and not sink.repeated
    check_answers(requests, sink, range(160))


def test_retries_keep_the_window_full(fake_openai, caplog):
    # Backoffs about as long as a reply: a retry that held its place while waiting would keep ~1/5 of
    # the window empty (a median near 27), so this test uses slower backoff settings than FAST on purpose.
    server = fake_openai(latency_s=0.2, fail_rate=0.3, seed=1)
    backend = backend_for(server, concurrency=32, max_retries=5, backoff_base_s=0.2, backoff_max_s=0.2)
    requests = prompts(200)
    sink = RecordingSink()
    with (
        caplog.at_level("DEBUG", logger="evalmap.backends.openai_backend"),
        WindowProbe(server, len(requests)) as probe,
    ):
        backend.stream(requests, sink)
    assert server.failures > 40 and server.requests == 200 + server.failures
    assert server.peak_in_flight == 32
    assert probe.typical() >= 31
    assert sorted(sink.responses) == list(range(200)) and not sink.failures and not sink.repeated
    check_answers(requests, sink, range(200))
    # The first retries are warnings, then one line says the rest are at debug level.
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    debug = [r.getMessage() for r in caplog.records if r.levelname == "DEBUG" and r.getMessage().startswith("retry")]
    assert len(warnings) == 6 and all(w.startswith("retry ") for w in warnings[:5])
    assert "further retries" in warnings[5] and "debug level" in warnings[5]
    assert len(debug) == server.failures - 5


def test_a_request_that_keeps_failing_is_given_up_and_the_stream_goes_on(fake_openai):
    requests = prompts(100)
    doomed = {3, 17, 50}
    server = fake_openai(latency_s=0.05, fail_prompts={requests[i].prompt for i in doomed})
    backend = backend_for(server, concurrency=8, max_retries=1)
    sink = RecordingSink()
    backend.stream(requests, sink)
    assert set(sink.failures) == doomed and not sink.repeated
    assert sorted(sink.responses) == sorted(set(range(100)) - doomed)
    assert server.requests == 100 + len(doomed)  # each doomed request tried twice
    for error in sink.failures.values():
        message = str(error)
        assert isinstance(error, BackendUnavailableError) and "\n" not in message
        assert message.startswith(f"The server at {backend.base_url} failed POST /completions 2 times (last: HTTP 500")
        assert message.endswith("or raise --timeout / --max-retries.")
    check_answers(requests, sink, sink.responses)


def test_hanging_requests_are_bounded_by_the_timeout(fake_openai):
    server = fake_openai(latency_s=0.05, hang_rate=0.1, seed=3)
    backend = backend_for(server, concurrency=16, timeout_s=0.5, max_retries=5)
    requests = prompts(100)
    sink = RecordingSink()
    start = time.perf_counter()
    backend.stream(requests, sink)
    assert time.perf_counter() - start < 8
    assert server.hangs > 0 and server.peak_in_flight >= 16
    assert sorted(sink.responses) == list(range(100)) and not sink.failures and not sink.repeated
    check_answers(requests, sink, range(100))
    deadline = time.monotonic() + 2
    while server.in_flight and time.monotonic() < deadline:  # the client closed every hung connection
        time.sleep(0.01)
    assert server.in_flight == 0


def test_a_server_that_fails_everything_trips_the_breaker_quickly(fake_openai):
    server = fake_openai(latency_s=0.02, fail_rate=1.0)
    backend = backend_for(server, concurrency=8, max_retries=3)
    assert backend.breaker == 16
    requests = prompts(400)
    sink = RecordingSink()
    start = time.perf_counter()
    with pytest.raises(BackendUnavailableError) as err:
        backend.stream(requests, sink)
    elapsed = time.perf_counter() - start
    message = str(err.value)
    assert message.startswith(f"The server at {backend.base_url} failed 16 requests in a row, each tried 4 times")
    assert message.endswith("is it healthy?") and "\n" not in message
    # Retrying all 400 requests would take 400 * 4 tries * 20 ms / 8 = 4 s and more.
    assert elapsed < 2 and server.requests < 400
    assert len(sink.failures) >= 16 and not sink.responses and not sink.repeated


def test_a_rejected_request_stops_the_stream_and_the_tries_in_flight_are_delivered(fake_openai):
    requests = prompts(200)
    server = fake_openai(latency_s=0.05, reject_prompts={requests[30].prompt})
    backend = backend_for(server, concurrency=8)
    sink = RecordingSink()
    with pytest.raises(RequestRejectedError, match=r"rejected POST /completions with HTTP 400 \(fake server rejects"):
        backend.stream(requests, sink)
    assert server.rejections == 1
    assert server.requests <= 31 + 8  # nothing started after the rejection came back
    assert 30 not in sink.responses and not sink.failures and not sink.repeated
    assert len(sink.responses) == server.requests - 1  # every other try was delivered
    check_answers(requests, sink, sink.responses)


def test_loglikelihoods_a_server_cannot_serve_are_refused_before_anything_is_sent(fake_openai):
    server = fake_openai(latency_s=0.01, owned_by="someone")
    backend = backend_for(server)
    with pytest.raises(BackendUnavailableError, match="not known to compute echo prompt logprobs"):
        backend.stream([*prompts(3), LoglikelihoodRequest("a", " b")], RecordingSink())
    assert server.requests == 0


def test_the_sync_wrappers_are_the_same_stream(fake_openai):
    server = fake_openai(latency_s=0.05)
    backend = backend_for(server, concurrency=4)
    gens, lls = prompts(10), [LoglikelihoodRequest(f"Context {i} is", " here") for i in range(6)]
    seen = {}
    out = backend.generate(gens, on_response=lambda i, r: seen.setdefault(i, r))
    assert [g.text for g in out] == [expected(r) for r in gens] and all(seen[i] is out[i] for i in range(10))
    scored = backend.loglikelihood(lls)
    assert [(s.logprob, s.is_greedy, s.continuation_tokens) for s in scored] == [expected(r) for r in lls]
    assert server.peak_in_flight == 4 and backend.generate([]) == [] and backend.loglikelihood([]) == []
