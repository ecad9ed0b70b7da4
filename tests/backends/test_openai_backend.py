"""OpenAIBackend against a real llama.cpp server and against tiny fake servers.

All traffic stays on 127.0.0.1: a real `python -m llama_cpp.server` (see conftest)
and scripted http.server fakes for retries, API keys and vLLM-shaped logprobs.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from evalmap.backends.base import Backend, GenerationRequest, LoglikelihoodRequest
from evalmap.backends.openai_backend import OpenAIBackend
from evalmap.errors import BackendUnavailableError

SERVER_MODEL = "smollm2"
FAST = dict(backoff_base_s=0.01, backoff_max_s=0.05)


# ---------------------------------------------------------------- fake servers


class FakeServer:
    """An OpenAI-ish server on 127.0.0.1 that answers POSTs from a script.

    `script` items are consumed one per POST: an int status (with a JSON error body),
    (status, headers), "drop" (close the connection without answering), "hang" (answer
    nothing until the server closes), a dict (a 200 JSON reply with that body) or
    ("raw", content type, bytes) (a 200 reply with that body); when the script is empty
    every POST succeeds.
    """

    def __init__(self, owned_by="fake", script=(), logprobs=None, models_script=(), listing=None):
        self.owned_by = owned_by
        self.listing = listing  # a raw GET /v1/models body (bytes) instead of the usual listing
        self.script = list(script)
        self.models_script = list(models_script)  # statuses for GET /v1/models, then 200
        self.logprobs = logprobs
        self.seen: list[tuple[str, str, dict, dict]] = []  # method, path, headers, body
        self.lock = threading.Lock()
        self.released = threading.Event()  # ends "hang" replies
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status, body, headers=None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                with fake.lock:
                    fake.seen.append(("GET", self.path, dict(self.headers), {}))
                    step = fake.models_script.pop(0) if fake.models_script else None
                if step is not None:
                    self._reply(step, {"error": "loading"})
                elif self.path == "/v1/models" and fake.listing is not None:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(fake.listing)))
                    self.end_headers()
                    self.wfile.write(fake.listing)
                elif self.path == "/v1/models":
                    model = {"id": "fake-model", "object": "model", "owned_by": fake.owned_by}
                    self._reply(200, {"object": "list", "data": [model]})
                else:
                    self._reply(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with fake.lock:
                    fake.seen.append(("POST", self.path, dict(self.headers), body))
                    step = fake.script.pop(0) if fake.script else None
                if step == "drop":
                    self.close_connection = True
                    return
                if step == "hang":
                    fake.released.wait(30)
                    self.close_connection = True
                    return
                if isinstance(step, dict):
                    self._reply(200, step)
                    return
                if isinstance(step, tuple) and step[0] == "raw":
                    _, kind, data = step
                    self.send_response(200)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if step is not None:
                    status, headers = step if isinstance(step, tuple) else (step, {})
                    self._reply(status, {"error": {"message": f"scripted {status}"}}, headers)
                    return
                if body.get("echo"):
                    self._reply(200, fake.logprobs(body))
                elif self.path.endswith("/chat/completions"):
                    message = {"role": "assistant", "content": "chat ok"}
                    choice = {"index": 0, "message": message, "finish_reason": "stop"}
                    usage = {"prompt_tokens": 9, "completion_tokens": 2}
                    self._reply(200, {"choices": [choice], "usage": usage})
                else:
                    choice = {"index": 0, "text": f"echo:{body.get('prompt')}", "finish_reason": "length"}
                    usage = {"prompt_tokens": 3, "completion_tokens": 4}
                    self._reply(200, {"choices": [choice], "usage": usage})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def posts(self):
        return [s for s in self.seen if s[0] == "POST"]

    def close(self):
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_server():
    servers: list[FakeServer] = []

    def make(**kw) -> FakeServer:
        servers.append(FakeServer(**kw))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def prompt(text: str, **kw) -> GenerationRequest:
    return GenerationRequest(prompt=text, max_tokens=kw.pop("max_tokens", 12), temperature=0.0, **kw)


# ---------------------------------------------------------------- without a model


def test_unreachable_server_fails_fast(free_port):
    start = time.perf_counter()
    with pytest.raises(BackendUnavailableError, match=r"Cannot reach the server at .*; is it running\?"):
        OpenAIBackend(f"http://127.0.0.1:{free_port}", "m")
    assert time.perf_counter() - start < 5


def test_a_loading_server_is_waited_for(fake_server):
    fake = fake_server(owned_by="vllm", models_script=[503, 503])
    backend = OpenAIBackend(fake.url, "fake-model", max_retries=3, **FAST)
    assert backend.info.extra["server"] == "vllm"
    down = fake_server(models_script=[503] * 5)
    with pytest.raises(BackendUnavailableError, match=r"did not answer GET /v1/models \(HTTP 503\)"):
        OpenAIBackend(down.url, "fake-model", max_retries=2, **FAST)


def test_retries_503_then_succeeds(fake_server):
    fake = fake_server(script=[503, (503, {"Retry-After": "0"})])
    backend = OpenAIBackend(fake.url, "fake-model", max_retries=3, **FAST)
    [out] = backend.generate([prompt("hi")])
    assert out.text == "echo:hi" and out.completion_tokens == 4 and out.finish_reason == "length"
    assert len(fake.posts()) == 3


def test_retries_429_and_dropped_connections(fake_server):
    fake = fake_server(script=["drop", 429, "drop"])
    backend = OpenAIBackend(fake.url, "fake-model", max_retries=3, **FAST)
    assert backend.generate([prompt("x")])[0].text == "echo:x"
    assert len(fake.posts()) == 4


def test_retry_after_is_honoured(fake_server):
    fake = fake_server(script=[(429, {"Retry-After": "1"})])
    backend = OpenAIBackend(fake.url, "fake-model", **FAST)
    start = time.perf_counter()
    backend.generate([prompt("x")])
    assert time.perf_counter() - start >= 0.95  # backoff alone would wait <= 0.05 s


def test_always_500_gives_up_with_one_sentence(fake_server):
    fake = fake_server(script=[500] * 10)
    backend = OpenAIBackend(fake.url, "fake-model", max_retries=2, **FAST)
    with pytest.raises(
        BackendUnavailableError, match=r"failed POST /completions 3 times \(last: HTTP 500 \(scripted 500\)\)"
    ):
        backend.generate([prompt("x")])
    assert len(fake.posts()) == 3


def test_client_errors_are_not_retried(fake_server):
    fake = fake_server(script=[400])
    backend = OpenAIBackend(fake.url, "fake-model", **FAST)
    with pytest.raises(BackendUnavailableError, match="HTTP 400"):
        backend.generate([prompt("x")])
    assert len(fake.posts()) == 1


def test_api_key_is_sent_as_bearer_and_kept_out_of_info(fake_server, monkeypatch):
    secret = "sk-test-not-a-real-key-123"
    monkeypatch.setenv("EVALMAP_TEST_API_KEY", secret)
    fake = fake_server()
    backend = OpenAIBackend(fake.url, "fake-model", api_key_env="EVALMAP_TEST_API_KEY", **FAST)
    backend.generate([prompt("a"), GenerationRequest(messages=(("user", "hi"),), chat=True)])
    auth = [{k.lower(): v for k, v in headers.items()}.get("authorization") for _, _, headers, _ in fake.seen]
    assert auth and all(a == f"Bearer {secret}" for a in auth)  # GET /v1/models and both POSTs
    assert secret not in json.dumps(dataclasses.asdict(backend.info)) + repr(backend) + repr(backend.info)

    plain = fake_server()
    OpenAIBackend(plain.url, "fake-model", **FAST).generate([prompt("a")])
    assert all("authorization" not in {k.lower() for k in headers} for _, _, headers, _ in plain.seen)


def test_missing_api_key_variable(fake_server, monkeypatch):
    monkeypatch.delenv("EVALMAP_TEST_API_KEY", raising=False)
    fake = fake_server()
    with pytest.raises(BackendUnavailableError, match="EVALMAP_TEST_API_KEY"):
        OpenAIBackend(fake.url, "fake-model", api_key_env="EVALMAP_TEST_API_KEY")


def test_payload_passes_sampling_params_and_keeps_order(fake_server):
    fake = fake_server()
    backend = OpenAIBackend(fake.url, "fake-model", concurrency=3, **FAST)
    reqs = [
        GenerationRequest(prompt=f"p{i}", max_tokens=5, temperature=0.7, top_p=0.9, stop=("\n",), seed=i)
        for i in range(10)
    ]
    outs = backend.generate(reqs)
    assert [o.text for o in outs] == [f"echo:p{i}" for i in range(10)]
    body = next(b for _, _, _, b in fake.posts() if b["prompt"] == "p3")
    assert body == {
        "model": "fake-model", "prompt": "p3", "max_tokens": 5, "temperature": 0.7,
        "top_p": 0.9, "seed": 3, "stop": ["\n"],
    }  # fmt: skip
    [chat] = backend.generate([GenerationRequest(messages=(("system", "s"), ("user", "u")), chat=True)])
    assert chat.text == "chat ok"
    assert fake.posts()[-1][1] == "/v1/chat/completions"
    assert fake.posts()[-1][3]["messages"] == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
    ]


def test_llama_cpp_servers_get_neutral_sampling_defaults(fake_server):
    # llama.cpp's servers default to repeat_penalty=1.1, top_k=40, min_p=0.05, which change
    # even greedy output; OpenAI semantics (and vLLM) are temperature and top_p only.
    for owned_by, kind in (("me", "llama-cpp-python"), ("llamacpp", "llama.cpp")):
        fake = fake_server(owned_by=owned_by)
        backend = OpenAIBackend(fake.url, "fake-model", **FAST)
        assert backend.info.extra["server"] == kind and backend.capabilities.logprobs is False
        backend.generate([prompt("x")])
        body = fake.posts()[-1][3]
        assert (body["repeat_penalty"], body["top_k"], body["min_p"]) == (1.0, 0, 0.0)


def _vllm_logprobs(body):
    """vLLM-shaped echo answer for 'The sky is blue' split into 4 tokens (+1 generated)."""
    assert body["prompt"] == "The sky is blue" and body["echo"] is True and body["logprobs"] == 1
    tokens = ["The", " sky", " is", " blue", "."]
    offsets = [0, 3, 7, 10, 15]
    lps = [None, -5.0, -1.0, -2.0, -0.5]
    tops = [None, {" sky": -5.0, " sun": -1.0}, {" is": -1.0}, {" blue": -2.0}, {".": -0.5}]
    logprobs = {"tokens": tokens, "text_offset": offsets, "token_logprobs": lps, "top_logprobs": tops}
    choice = {"index": 0, "text": "The sky is blue.", "logprobs": logprobs, "finish_reason": "length"}
    return {"choices": [choice], "usage": {"prompt_tokens": 4, "completion_tokens": 1}}


def test_vllm_prompt_logprobs_are_used(fake_server):
    fake = fake_server(owned_by="vllm", logprobs=_vllm_logprobs)
    backend = OpenAIBackend(fake.url, "fake-model", **FAST)
    assert backend.info.extra["server"] == "vllm" and backend.capabilities.logprobs is True
    # Trailing space of the context moves to the continuation, as in lm-eval.
    [a, b] = backend.loglikelihood(
        [LoglikelihoodRequest("The sky ", "is blue"), LoglikelihoodRequest("The", " sky is blue")]
    )
    assert a.logprob == -3.0 and a.is_greedy is True and a.continuation_tokens == 2 and a.context_tokens == 2
    assert b.logprob == -8.0 and b.is_greedy is False and b.continuation_tokens == 3


def test_loglikelihood_modes(fake_server):
    unknown = fake_server(owned_by="someone")
    with pytest.raises(BackendUnavailableError, match="not known to compute echo prompt logprobs"):
        OpenAIBackend(unknown.url, "fake-model").loglikelihood([LoglikelihoodRequest("a", "b")])
    vllm = fake_server(owned_by="vllm", logprobs=_vllm_logprobs)
    off = OpenAIBackend(vllm.url, "fake-model", loglikelihood_mode="off")
    assert off.capabilities.logprobs is False
    with pytest.raises(BackendUnavailableError, match="off"):
        off.loglikelihood([LoglikelihoodRequest("The sky", " is blue")])
    with pytest.raises(ValueError):
        OpenAIBackend(vllm.url, "fake-model", loglikelihood_mode="sometimes")


def test_sync_api_works_inside_a_running_loop(fake_server):
    import asyncio

    fake = fake_server()
    backend = OpenAIBackend(fake.url, "fake-model", **FAST)

    async def inside():
        return backend.generate([prompt("loop")])

    assert asyncio.run(inside())[0].text == "echo:loop"


# ---------------------------------------------------------------- a real llama.cpp server


@pytest.fixture(scope="module")
def server_backend(llama_server_url):
    return OpenAIBackend(llama_server_url, SERVER_MODEL, concurrency=4, timeout_s=60)


def test_llama_server_info(server_backend, llama_server_url):
    b = server_backend
    assert isinstance(b, Backend)
    assert b.info.name == "openai" and b.info.version.startswith("httpx ")
    assert b.info.extra["server"] == "llama-cpp-python"
    assert b.info.extra["server_model_id"] == SERVER_MODEL
    assert b.capabilities.logprobs is False and b.capabilities.chat_template is True
    assert OpenAIBackend(llama_server_url, SERVER_MODEL).info.fingerprint == b.info.fingerprint
    assert OpenAIBackend(llama_server_url, "other").info.fingerprint != b.info.fingerprint


def test_llama_server_completions_and_chat(server_backend):
    comp, chat = server_backend.generate(
        [
            prompt("The capital of France is", max_tokens=8),
            GenerationRequest(
                messages=(("user", "What is the capital of France? One word."),), chat=True, max_tokens=8
            ),
        ]
    )
    assert comp.text.strip() and comp.completion_tokens == 8 and comp.prompt_tokens >= 5
    assert "Paris" in chat.text and chat.prompt_tokens > 20 and chat.latency_s > 0


PROMPTS = ["The capital of France is", "def add(a, b):", "Water boils at", "1, 2, 3, 4,", "My favourite colour is"]


def test_llama_server_greedy_is_concurrency_invariant(llama_server_url):
    reqs = [prompt(p, max_tokens=10) for p in PROMPTS]
    one = OpenAIBackend(llama_server_url, SERVER_MODEL, concurrency=1).generate(reqs)
    four = OpenAIBackend(llama_server_url, SERVER_MODEL, concurrency=4).generate(reqs)
    assert [g.text for g in one] == [g.text for g in four]


def test_llama_server_greedy_equals_in_process_llamacpp(server_backend, smollm2_backend):
    reqs = [prompt(p, max_tokens=16) for p in PROMPTS[:3]]
    served = [g.text for g in server_backend.generate(reqs)]
    local = [g.text for g in smollm2_backend.generate(reqs)]
    assert served == local


def test_llama_server_loglikelihood_is_refused(server_backend):
    with pytest.raises(BackendUnavailableError, match="shifted by one token"):
        server_backend.loglikelihood([LoglikelihoodRequest("The capital of France is", " Paris")])


def test_llama_server_forced_loglikelihood_warns(llama_server_url):
    with pytest.warns(RuntimeWarning, match="shifted by one token"):
        forced = OpenAIBackend(llama_server_url, SERVER_MODEL, loglikelihood_mode="force")
    assert forced.capabilities.logprobs is True


# ---------------------------------------------------------------- bad replies, hangs, bad URLs (issue 10)


@pytest.mark.parametrize(
    ("reply", "needle"),
    [
        ({"choices": ["str"]}, "a choice that is not an object"),
        ({"choices": []}, "no choices"),
        ({"choices": [{"index": 0, "finish_reason": "stop"}]}, "a choice without text"),
        ({"choices": [{"text": "ok"}], "usage": {"prompt_tokens": "many"}}, "non-numeric usage.prompt_tokens"),
        ({"choices": [{"text": "ok"}], "usage": [1, 2]}, "a usage that is not an object"),
        ({"choices": [{"text": 7}]}, "an answer that is not text"),
        (("raw", "application/json", b'["not", "an", "object"]'), "JSON that is not an object"),
        (("raw", "text/plain", b"hello, not json"), "'hello, not json' instead of JSON"),
        (("raw", "text/html", b"<html><title>Welcome to nginx</title><body>hi</body></html>"),
         "an HTML page titled 'Welcome to nginx' instead of JSON"),
    ],
)  # fmt: skip
def test_malformed_replies_are_one_sentence_naming_the_server(fake_server, reply, needle):
    fake = fake_server(script=[reply])
    backend = OpenAIBackend(fake.url, "fake-model", max_retries=3, **FAST)
    with pytest.raises(BackendUnavailableError) as err:
        backend.generate([prompt("x")])
    message = str(err.value)
    assert message.startswith(f"The server at {fake.url} answered POST /completions with ")
    assert needle in message
    assert "\n" not in message and message.endswith(".")
    assert len(fake.posts()) == 1  # a malformed reply is not retried


def test_chat_reply_without_message_is_refused(fake_server):
    fake = fake_server(script=[{"choices": [{"index": 0, "text": "completion-shaped"}]}])
    backend = OpenAIBackend(fake.url, "fake-model", **FAST)
    with pytest.raises(BackendUnavailableError, match="POST /chat/completions with a choice without a message"):
        backend.generate([GenerationRequest(messages=(("user", "hi"),), chat=True)])


def test_a_hanging_server_times_out_per_try_and_says_so(fake_server, caplog):
    fake = fake_server(script=["hang", "hang", "hang"])
    backend = OpenAIBackend(fake.url, "fake-model", timeout_s=0.5, max_retries=1, **FAST)
    start = time.perf_counter()
    with caplog.at_level("WARNING", logger="evalmap.backends.openai_backend"), pytest.raises(
        BackendUnavailableError
    ) as err:
        backend.generate([prompt("x")])
    elapsed = time.perf_counter() - start
    assert 0.9 < elapsed < 5, elapsed
    assert "failed POST /completions 2 times (last: no reply within 0.5 s" in str(err.value)
    assert "--timeout" in str(err.value)
    retries = [r.getMessage() for r in caplog.records]
    assert len(retries) == 1 and retries[0].startswith("retry 1/1 after no reply within 0.5 s")
    assert fake.url in retries[0]


def test_responses_arrive_one_by_one_and_a_failure_stops_new_requests(fake_server):
    # concurrency 1: request 0 succeeds, request 1 fails for good, requests 2.. never start
    fake = fake_server(script=[{"choices": [{"text": "first"}]}, 500])
    backend = OpenAIBackend(fake.url, "fake-model", concurrency=1, max_retries=0, **FAST)
    seen = []
    with pytest.raises(BackendUnavailableError, match="failed POST /completions once"):
        backend.generate([prompt(f"p{i}") for i in range(6)], on_response=lambda i, r: seen.append((i, r.text)))
    assert seen == [(0, "first")]
    assert len(fake.posts()) == 2


def test_every_answer_is_delivered_once_with_its_index(fake_server):
    fake = fake_server()
    backend = OpenAIBackend(fake.url, "fake-model", concurrency=3, **FAST)
    seen = {}
    outs = backend.generate([prompt(f"p{i}") for i in range(7)], on_response=lambda i, r: seen.setdefault(i, r))
    assert sorted(seen) == list(range(7)) and all(seen[i] is outs[i] for i in range(7))


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("not-a-url", "is not a URL"),
        ("ftp://127.0.0.1/v1", "uses ftp://"),
        ("http:///v1", "names no host"),
        ("http://127.0.0.1:99999/v1", "not a valid URL"),
    ],
)
def test_bad_urls_are_refused_before_any_traffic(url, needle):
    from evalmap.backends import BackendOptions
    from evalmap.errors import EvalmapError

    start = time.perf_counter()
    with pytest.raises(EvalmapError, match=needle):
        OpenAIBackend(url, "m")
    with pytest.raises(EvalmapError, match=needle):
        BackendOptions(base_url=url)
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize(
    "listing",
    [
        b'{"data": 5}',
        b'{"data": [{"id": "m", "max_model_len": "big"}]}',
        b'{"data": [{"id": "m", "max_model_len": [1]}]}',
        b'{"data": [{"id": "m", "max_model_len": 1e400}]}',
        b'["not", "a", "listing"]',
    ],
)
def test_a_models_listing_of_the_wrong_shape_is_only_information(fake_server, listing):
    """GET /v1/models only says what the server is: a listing of the wrong shape leaves the defaults."""
    fake = fake_server(listing=listing)
    backend = OpenAIBackend(fake.url, "fake-model", **FAST)
    assert backend.capabilities.max_context == 2048
    assert backend.generate([prompt("x")])[0].text == "echo:x"


@pytest.mark.parametrize("key", ["clé", "sk-abc\n", "sk-\x07"])
def test_an_api_key_a_header_cannot_carry_is_one_sentence(fake_server, monkeypatch, key):
    monkeypatch.setenv("EVALMAP_TEST_API_KEY", key)
    fake = fake_server()
    with pytest.raises(BackendUnavailableError, match=r"The API key in \$EVALMAP_TEST_API_KEY holds characters"):
        OpenAIBackend(fake.url, "fake-model", api_key_env="EVALMAP_TEST_API_KEY", **FAST)
    assert fake.seen == []  # refused before any request carries it
