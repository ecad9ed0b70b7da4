"""Any OpenAI-compatible server: vLLM, SGLang, TGI, Ollama, llama.cpp's servers.

The transport is a streaming window: `stream(requests, sink)` runs one event loop and one set
of httpx clients for all of a model's requests (both kinds, every job), and `concurrency`
workers pull them from one queue, so exactly that many requests are in flight while work
remains, across kinds and job boundaries. Prompt requests go to `/v1/completions`, chat
requests to `/v1/chat/completions`, log-likelihoods to `/v1/completions` with echoed prompt
logprobs. Every answer goes to the sink the moment it arrives.

A try that fails with 429, 5xx, a timeout (`timeout_s` per try) or a dropped or refused
connection goes back on the queue after its backoff (exponential with jitter, honouring
`Retry-After`); the worker takes the next request meanwhile, so retries never empty the window.
The first retries of a stream are logged as warnings ("retry 2/3 after no reply within 5 s ..."),
so a slow or hanging server is never silent, the rest at debug level. A request still failing
after `max_retries` retries goes to `sink.failure` and the stream goes on, until `breaker`
requests in a row have failed with no success between: then the server is taken for down.
That, a rejected request (4xx other than 429) and a reply that is not the JSON an
OpenAI-compatible server sends (no choices, a choice without text, non-numeric usage, an HTML
page) stop the stream: the tries in flight finish and deliver, and the error is raised in one
sentence naming the server, never a silent empty answer. `generate` and `loglikelihood` are the
same stream, stopped by the first request given up on.

Log-likelihoods come from prompt logprobs (`echo=True, logprobs=1`), which only some
servers compute correctly: vLLM does; llama.cpp's (llama-cpp-python's) server returns
them shifted by one token, so it is refused unless `loglikelihood_mode="force"`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import email.utils
import functools
import hashlib
import json
import logging
import math
import os
import random
import re
import ssl
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import httpx

from evalmap.backends import check_base_url, vision
from evalmap.backends.base import (
    BackendInfo,
    Capabilities,
    Generation,
    GenerationRequest,
    LogLikelihood,
    LoglikelihoodRequest,
    OnResponse,
    Request,
    Response,
    Sink,
    split_context,
)
from evalmap.errors import BackendUnavailableError, EvalmapError

if TYPE_CHECKING:
    from evalmap.backends import BackendOptions
    from evalmap.catalog.schema import Model

log = logging.getLogger(__name__)

LOGLIKELIHOOD_MODES = ("auto", "force", "off")
# Servers known to compute echo prompt logprobs correctly.
_CORRECT_PROMPT_LOGPROBS = {"vllm"}
# `owned_by` of /v1/models -> server kind.
_OWNED_BY = {
    "vllm": "vllm",
    "sglang": "sglang",
    "llamacpp": "llama.cpp",  # llama.cpp's own C++ llama-server
    "me": "llama-cpp-python",  # python -m llama_cpp.server
    "library": "ollama",
    "ollama": "ollama",
    "tgi": "tgi",
    "text-generation-inference": "tgi",
    "openai": "openai",
    "system": "openai",
    "openai-internal": "openai",
}
_LLAMA_CPP_KINDS = {"llama.cpp", "llama-cpp-python"}


class RequestRejectedError(BackendUnavailableError):
    """The server answered a request with a client error (4xx other than 429)."""


class MalformedReplyError(BackendUnavailableError):
    """The server answered, but not with what an OpenAI-compatible server sends."""


def _body_hint(response: httpx.Response, limit: int = 120) -> str:
    """A reply body in a few words: an API error's message, an HTML page's title, or the text's start."""
    text = response.text or ""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            return _short(str(error), limit)
    if _looks_html(response):
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
        return "an HTML page" + (f" titled {_short(title.group(1), 60)!r}" if title else "")
    return repr(_short(text, limit)) if text.strip() else "an empty body"


def _looks_html(response: httpx.Response) -> bool:
    kind = response.headers.get("content-type", "").lower()
    return "html" in kind or response.text.lstrip()[:1] == "<"


def _failure_name(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return f"no reply within {timeout_s:g} s ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"no connection ({type(exc).__name__})"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return f"a dropped connection ({type(exc).__name__})"
    return type(exc).__name__


def _positive_int(value) -> int | None:
    """An optional size from the /v1/models listing (max_model_len): a positive whole number, else None."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 2**31:
        return None
    return int(value)


def _tool_calls(calls, bad) -> list[dict] | None:
    """A chat message's `tool_calls` as [{"name", "arguments"}] (arguments as the JSON text the server
    sent: decoding it is the task's job, so a malformed one is scored, not a transport error)."""
    if calls is None or calls == []:
        return None
    if not isinstance(calls, list):
        raise bad("tool_calls that are not a list")
    out = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad("a tool call without a function name")
        arguments = function.get("arguments", "")
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        out.append({"name": function["name"], "arguments": text})
    return out


def _listed_images(entry: dict) -> bool | None:
    """Does the /v1/models entry say whether the model takes images? OpenRouter-style listings give
    `architecture.input_modalities`, LM Studio's a `type` ("vlm"), Ollama-style ones `capabilities`
    ("vision"); vLLM, SGLang, TGI and llama.cpp say nothing (None)."""
    architecture = entry.get("architecture")
    modalities = architecture.get("input_modalities") if isinstance(architecture, dict) else None
    if isinstance(modalities, list):
        return "image" in modalities
    if entry.get("type") in ("vlm", "llm"):
        return entry["type"] == "vlm"
    capabilities = entry.get("capabilities")
    if isinstance(capabilities, list) and capabilities and all(isinstance(c, str) for c in capabilities):
        return "vision" in capabilities
    return None


def _count(value, what: str, bad) -> int:
    """A token count from `usage`: a finite non-negative number (absent: 0)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise bad(f"a non-numeric usage.{what} ({_short(json.dumps(value), 40)})")
    return int(value)


RETRY_AFTER_MAX_S = 60.0


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One TLS context per process: building it costs ~0.1 s, every client reuses it."""
    return httpx.create_ssl_context()


def _run_sync(coro):
    """asyncio.run, or the same in a helper thread when a loop already runs here (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


# Retries logged at WARNING per stream; the rest go to DEBUG (a flaky server under a 10,000-request
# stream would otherwise print thousands of lines), after one WARNING line saying so.
RETRY_WARNINGS = 5


CLIENT_CONNECTIONS = 4  # connections per httpx client (see OpenAIBackend._clients)


def default_breaker(concurrency: int) -> int:
    """Requests given up on in a row (no success between) after which the server is taken for down.

    Counted in windows: `concurrency` requests are in flight together, so one incident (a restart,
    an overload spike) can fail a whole window at once; two windows failing in a row with no success
    is a dead server whatever the concurrency. At least 8, so that at a low concurrency a handful of
    prompts the server always fails on (say, too long for it) do not stop the run.
    """
    return max(8, 2 * concurrency)


class _Window:
    """One `stream` call: `concurrency` workers keep that many tries in flight until all is delivered.

    Requests wait in a queue ordered by index, so a retry goes ahead of later requests and the answers
    arrive roughly in job order. A try that fails transiently puts its request back on the queue once
    its backoff has passed (a loop timer, not a sleeping worker), so the worker takes the next request
    at once and the window stays full. Each request is in exactly one place (the queue, a try, a timer),
    so it is delivered once: to `sink.response`, or to `sink.failure` after its last retry.
    """

    def __init__(self, backend: OpenAIBackend, requests: Sequence[Request], calls: list, sink: Sink, clients: list):
        self.backend = backend
        self.requests = requests
        self.calls = calls  # (path, payload) per request
        self.sink = sink
        self.clients = clients  # worker i sends through clients[i % len(clients)]
        self.queue: asyncio.PriorityQueue[tuple[int, int]] = asyncio.PriorityQueue()  # (index, attempt)
        for index in range(len(requests)):
            self.queue.put_nowait((index, 0))
        self.timers: dict[int, asyncio.TimerHandle] = {}  # index -> the end of its backoff
        self.left = len(requests)  # not yet delivered
        self.trying = 0
        self.given_up_in_row = 0
        self.retries = 0
        self.fatal: BaseException | None = None
        self.finished = asyncio.Event()

    async def run(self) -> None:
        n = min(self.backend.concurrency, self.left)
        workers = [asyncio.create_task(self._worker(self.clients[i % len(self.clients)])) for i in range(n)]
        try:
            await self.finished.wait()
        finally:
            for timer in self.timers.values():
                timer.cancel()
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        if self.fatal is not None:
            raise self.fatal

    async def _worker(self, client: httpx.AsyncClient) -> None:
        while True:
            index, attempt = await self.queue.get()
            if self.fatal is not None:
                return
            self.trying += 1
            try:
                await self._try(index, attempt, client)
            except Exception as exc:  # noqa: BLE001 - stops the stream; raised by run() once the tries end
                self._stop(exc)
            finally:
                self.trying -= 1
                if self.left == 0 or (self.fatal is not None and self.trying == 0):
                    self.finished.set()

    def _stop(self, exc: BaseException) -> None:
        if self.fatal is None:
            self.fatal = exc
            for timer in self.timers.values():
                timer.cancel()
            self.timers.clear()

    def _requeue(self, index: int, attempt: int) -> None:
        del self.timers[index]
        self.queue.put_nowait((index, attempt))

    async def _try(self, index: int, attempt: int, client: httpx.AsyncClient) -> None:
        backend = self.backend
        request = self.requests[index]
        path, payload = self.calls[index]
        response, last = None, ""
        start = time.perf_counter()
        try:
            response = await asyncio.wait_for(client.post(backend._api + path, json=payload), backend.timeout_s)
        except (TimeoutError, httpx.TransportError) as exc:  # timeouts, refused or dropped connections
            last = _failure_name(exc, backend.timeout_s)
        latency = time.perf_counter() - start
        if response is not None:
            last = backend._transient(response, path)
            if last is None:
                result = backend._parse(request, path, backend._json(response, path), latency)
                self.left -= 1
                self.given_up_in_row = 0
                self.sink.response(index, result)
                if isinstance(result, Generation) and result.completion_tokens:
                    self.sink.tokens(result.completion_tokens)
                return
        if attempt < backend.max_retries:
            if self.fatal is None:  # a stopping stream starts no new try
                delay = backend._delay(attempt, response)
                self._log_retry(f"POST {path}", attempt, last, delay)
                self.timers[index] = asyncio.get_running_loop().call_later(delay, self._requeue, index, attempt + 1)
            return
        self.left -= 1
        self.given_up_in_row += 1
        self.sink.failure(index, backend._gave_up(path, last))
        if self.given_up_in_row >= backend.breaker:
            tries = "once" if backend.max_retries == 0 else f"{backend.max_retries + 1} times"
            raise BackendUnavailableError(
                f"The server at {backend.base_url} failed {self.given_up_in_row} requests in a row, each tried "
                f"{tries} (last: {last}), so evalmap stopped sending it requests; is it healthy?"
            )

    def _log_retry(self, what: str, attempt: int, last: str, delay: float) -> None:
        self.retries += 1
        if self.retries == RETRY_WARNINGS + 1:
            log.warning(
                "further retries from the server at %s in this stream are logged at debug level",
                self.backend.base_url,
            )
        level = logging.WARNING if self.retries <= RETRY_WARNINGS else logging.DEBUG
        self.backend._log_retry(what, attempt, last, delay, level)


class _Collect:
    """The sink of `generate` / `loglikelihood`: the answers in order; the first failure stops the stream."""

    def __init__(self, n: int, on_response: OnResponse | None):
        self.results: list = [None] * n
        self.on_response = on_response

    def response(self, index: int, response: Response) -> None:
        self.results[index] = response
        if self.on_response is not None:
            self.on_response(index, response)

    def failure(self, index: int, error: Exception) -> None:
        raise error  # a sink that raises stops the stream, which raises this error once its tries end

    def tokens(self, n: int) -> None:
        pass


class OpenAIBackend:
    """A model behind an OpenAI-compatible HTTP server."""

    loads_weights = False  # the server holds them: a team fine-tune needs no run.hf here

    @classmethod
    def from_catalog(cls, model: Model, options: BackendOptions) -> OpenAIBackend:
        if not options.base_url:
            raise EvalmapError("The openai backend needs --base-url, e.g. http://127.0.0.1:8000/v1.")
        served = model.run.server_model or model.run.hf or model.hf_repo or model.id
        return cls(
            options.base_url, served, api_key_env=options.api_key_env, concurrency=options.concurrency,
            timeout_s=options.timeout_s, max_retries=options.max_retries,
            images=model.modality == "vision-language",
        )

    @classmethod
    def capabilities_before_load(cls, model: Model, options: BackendOptions) -> Capabilities:
        """What the server says of itself (GET /v1/models, maybe /version): no request reaches the model.
        Its context is the listing's max_model_len, else the catalog's."""
        probe = cls.from_catalog(model, options)
        return replace(probe.capabilities, max_context=probe.reported_context or model.context_length)

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 120,
        max_retries: int = 5,
        loglikelihood_mode: str = "auto",
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        breaker: int | None = None,
        images: bool = False,
    ):
        """`images`: the model takes images (the catalog calls it vision-language); what the server's
        /v1/models listing says about image input, where it says anything, wins."""
        if loglikelihood_mode not in LOGLIKELIHOOD_MODES:
            raise ValueError(f"loglikelihood_mode must be one of {LOGLIKELIHOOD_MODES}, not {loglikelihood_mode!r}.")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1.")
        if not timeout_s > 0:
            raise EvalmapError(f"The request timeout must be a positive number of seconds (got {timeout_s}).")
        if max_retries < 0:
            raise EvalmapError(f"max_retries must be 0 or more (got {max_retries}).")
        if breaker is not None and breaker < 1:
            raise ValueError("breaker must be at least 1.")
        self.base_url = check_base_url(base_url).rstrip("/")
        self._api = self.base_url if self.base_url.endswith("/v1") else self.base_url + "/v1"
        self.model = model
        self.concurrency = concurrency
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.loglikelihood_mode = loglikelihood_mode
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.breaker = default_breaker(concurrency) if breaker is None else breaker

        self._headers = {"Content-Type": "application/json"}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise BackendUnavailableError(
                    f"The environment variable {api_key_env} (api_key_env) is not set; export the API key there."
                )
            if not (key.isascii() and key.isprintable()):
                raise BackendUnavailableError(
                    f"The API key in ${api_key_env} holds characters an HTTP header cannot carry (non-ASCII or "
                    "control characters); check that the variable holds the key itself."
                )
            self._headers["Authorization"] = f"Bearer {key}"

        listing = self._probe()
        data = listing.get("data")
        entries = [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []
        entry = next((e for e in entries if e.get("id") == model), entries[0] if entries else {})
        server_model_id = str(entry.get("id", ""))
        owned_by = str(entry.get("owned_by", ""))
        self.server_kind = _OWNED_BY.get(owned_by.lower(), "unknown")
        if self.server_kind == "unknown":
            self.server_kind = self._probe_version()

        fingerprint = hashlib.sha256(
            json.dumps([self.base_url, model, server_model_id, owned_by]).encode("utf-8")
        ).hexdigest()[:16]
        self.info = BackendInfo(
            name="openai",
            version=f"httpx {httpx.__version__}",
            model=model,
            fingerprint=fingerprint,
            extra={"server": self.server_kind, "server_model_id": server_model_id, "owned_by": owned_by},
        )
        self._loglikelihood_refusal = self._refusal()
        if loglikelihood_mode == "force" and self.server_kind not in _CORRECT_PROMPT_LOGPROBS:
            why = "are shifted by one token" if self.server_kind in _LLAMA_CPP_KINDS else "are not verified"
            message = (
                f"Log-likelihoods are forced on the {self.server_kind} server at {self.base_url}, whose echo "
                f"prompt logprobs {why}; its log-likelihood scores may be wrong."
            )
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        self.reported_context = _positive_int(entry.get("max_model_len"))  # None: the server did not say
        listed = _listed_images(entry)
        self.capabilities = Capabilities(
            chat_template=True,
            logprobs=self._loglikelihood_refusal is None,
            images=images if listed is None else listed,
            tools=True,
            max_context=self.reported_context or Capabilities().max_context,
        )

    # ------------------------------------------------------------------ probing

    def _probe(self) -> dict:
        """GET /v1/models: fails fast (one sentence) when nobody listens.

        A server that is still loading (429/5xx) or slow to answer is retried like any
        request; a refused connection is not.
        """
        url = f"{self._api}/models"
        timeout = httpx.Timeout(min(self.timeout_s, 10.0))
        with httpx.Client(timeout=timeout, headers=self._headers, verify=_ssl_context()) as client:
            for attempt in range(self.max_retries + 1):
                response, last = None, ""
                try:
                    response = client.get(url)
                except httpx.ConnectError as exc:
                    raise BackendUnavailableError(
                        f"Cannot reach the server at {self.base_url} ({type(exc).__name__}); is it running?"
                    ) from exc
                except httpx.TransportError as exc:
                    last = _failure_name(exc, timeout.read or 10.0)
                if response is not None:
                    if response.status_code != 429 and response.status_code < 500:
                        break
                    last = f"HTTP {response.status_code}"
                if attempt == self.max_retries:
                    raise BackendUnavailableError(
                        f"The server at {self.base_url} did not answer GET /v1/models ({last}); "
                        "is it running and healthy?"
                    )
                delay = self._delay(attempt, response)
                self._log_retry("GET /v1/models", attempt, last, delay)
                time.sleep(delay)
        if response.status_code in (401, 403):
            raise BackendUnavailableError(
                f"The server at {self.base_url} refused the credentials (HTTP {response.status_code}); "
                "set api_key_env to the variable holding a valid key."
            )
        if response.status_code >= 400:
            # Some servers have no /v1/models; generation may still work.
            log.info("GET %s answered HTTP %s", url, response.status_code)
            return {}
        try:
            data = response.json()
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def _probe_version(self) -> str:
        """vLLM answers GET /version; anything else stays 'unknown'."""
        root = self._api[: -len("/v1")]
        try:
            timeout = httpx.Timeout(min(self.timeout_s, 5.0))
            with httpx.Client(timeout=timeout, headers=self._headers, verify=_ssl_context()) as client:
                response = client.get(f"{root}/version")
        except httpx.TransportError:
            return "unknown"
        if response.status_code == 200:
            try:
                data = response.json()
            except ValueError:
                return "unknown"
            if isinstance(data, dict) and set(data) == {"version"}:
                return "vllm"
        return "unknown"

    def _refusal(self) -> str | None:
        """Why log-likelihoods are refused here (None: they are served)."""
        if self.loglikelihood_mode == "off":
            return "Log-likelihoods are off for this backend (loglikelihood_mode='off')."
        if self.loglikelihood_mode == "force" or self.server_kind in _CORRECT_PROMPT_LOGPROBS:
            return None
        if self.server_kind in _LLAMA_CPP_KINDS:
            return (
                f"The {self.server_kind} server at {self.base_url} returns echo prompt logprobs shifted "
                "by one token, so evalmap refuses log-likelihood requests there; use the llamacpp backend "
                "on the GGUF file instead (or loglikelihood_mode='force' to accept wrong scores)."
            )
        return (
            f"The {self.server_kind} server at {self.base_url} is not known to compute echo prompt logprobs "
            "correctly (only vLLM is), so evalmap refuses log-likelihood requests; pass "
            "loglikelihood_mode='force' if you have checked it."
        )

    # ------------------------------------------------------------------ transport

    def _sampling_extras(self) -> dict:
        # llama.cpp's servers default to top_k=40, min_p=0.05, repeat_penalty=1.1; OpenAI
        # semantics (what vLLM does) is temperature and top_p only.
        if self.server_kind in _LLAMA_CPP_KINDS:
            return {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}
        return {}

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        backoff = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        delay = backoff * random.uniform(0.5, 1.0)
        retry_after = _retry_after_s(response) if response is not None else None
        if retry_after is not None:  # honoured up to a minute: a server asking for hours is not waited for
            delay = max(delay, min(retry_after, RETRY_AFTER_MAX_S))
        return delay

    def _log_retry(self, what: str, attempt: int, last: str, delay: float, level: int = logging.WARNING) -> None:
        log.log(
            level, "retry %d/%d after %s from the server at %s (%s); next try in %.2f s",
            attempt + 1, self.max_retries, last, self.base_url, what, delay,
        )  # fmt: skip

    def _transient(self, response: httpx.Response, path: str) -> str | None:
        """What went wrong when a reply is worth another try (429, 5xx), None for a success; raises
        RequestRejectedError for any other client error."""
        status = response.status_code
        if status < 400:
            return None
        if status == 429 or status >= 500:
            return f"HTTP {status} ({_body_hint(response, 80)})"
        raise RequestRejectedError(
            f"The server at {self.base_url} rejected POST {path} with HTTP {status} "
            f"({_body_hint(response)}); check --base-url and the model name it serves."
        )

    def _json(self, response: httpx.Response, path: str):
        try:
            return response.json()
        except ValueError:
            raise MalformedReplyError(
                f"The server at {self.base_url} answered POST {path} with {_body_hint(response)} "
                "instead of JSON; check that --base-url points at an OpenAI-compatible API "
                "(e.g. http://127.0.0.1:8000/v1)."
            ) from None

    def _gave_up(self, path: str, last: str) -> BackendUnavailableError:
        tries = "once" if self.max_retries == 0 else f"{self.max_retries + 1} times"
        return BackendUnavailableError(
            f"The server at {self.base_url} failed POST {path} {tries} (last: {last}); check that it is "
            "healthy and not overloaded, or raise --timeout / --max-retries."
        )

    def _clients(self, workers: int) -> list[httpx.AsyncClient]:
        """Enough clients of at most CLIENT_CONNECTIONS connections each for `workers` tries at once (the
        window: `concurrency`, or fewer when fewer requests are asked; --concurrency 1e9 is no 1e9 clients).

        httpcore's pool scans every connection on each request start and end (encode/httpcore#1035), so
        one client with 256 connections spends the CPU the window needs. 1000 gsm8k requests against a
        0.25 s server (ideal 1.0 s at c=256, 4.0 s at c=64; a 2-core machine) took, cold, 24.8 s / 18.4 s
        through one client, 6.2 s / 5.2 s through clients of 16, 3.0 s / 4.7 s through clients of 8 and
        2.7 s / 4.7 s through clients of 4 (bench/bench_server_throughput.py, docs/throughput.md).
        """
        count = -(-workers // CLIENT_CONNECTIONS)
        per_client = -(-workers // count)
        return [
            httpx.AsyncClient(
                headers=self._headers,
                verify=_ssl_context(),
                timeout=httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 10.0)),
                limits=httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client),
            )
            for _ in range(count)
        ]

    def _payload(self, request: Request) -> tuple[str, dict]:
        if isinstance(request, LoglikelihoodRequest):
            return self._loglikelihood_payload(request)
        return self._generation_payload(request)

    def _parse(self, request: Request, path: str, body, latency: float) -> Response:
        if isinstance(request, LoglikelihoodRequest):
            return self._parse_loglikelihood(request, body, latency)
        return self._parse_generation(body, path, request.chat, latency)

    def stream(self, requests: Sequence[Request], sink: Sink) -> None:
        """Answer every request (both kinds, any mix) through `sink`, `concurrency` tries in flight at all
        times while work remains; one event loop and one set of clients for the whole call.

        A request the server keeps failing (429, 5xx, no reply within `timeout_s`, a dropped connection)
        after `max_retries` retries goes to `sink.failure` and the stream goes on. These stop it: a
        rejected request (4xx other than 429), a reply that is not an OpenAI answer, `breaker` requests
        in a row given up on, or an exception raised by the sink. Then no new try starts, the tries in
        flight finish and deliver their answers, and the first such error is raised; requests still
        waiting are delivered neither way. Log-likelihoods on a server that cannot serve them, or a
        request without a payload (a log-likelihood with an empty context), raise before anything is sent.
        """
        if not requests:
            return
        if self._loglikelihood_refusal is not None and any(isinstance(r, LoglikelihoodRequest) for r in requests):
            raise BackendUnavailableError(self._loglikelihood_refusal)
        calls = [self._payload(r) for r in requests]

        async def run() -> None:
            async with contextlib.AsyncExitStack() as stack:
                workers = min(self.concurrency, len(requests))
                clients = [await stack.enter_async_context(client) for client in self._clients(workers)]
                await _Window(self, requests, calls, sink, clients).run()

        _run_sync(run())

    def _call(self, requests: list, on_response: OnResponse | None) -> list:
        """generate / loglikelihood: stream with a sink that collects the answers in order."""
        if not requests:
            return []
        sink = _Collect(len(requests), on_response)
        self.stream(requests, sink)
        return sink.results

    # ------------------------------------------------------------------ generation

    def _generation_payload(self, request: GenerationRequest) -> tuple[str, dict]:
        payload: dict = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "seed": request.seed,
            **self._sampling_extras(),
        }
        if request.stop:
            payload["stop"] = list(request.stop)
        if request.chat:
            payload["messages"] = vision.openai_messages(request)
            if request.tools:
                payload["tools"] = request.tool_list()
            return "/chat/completions", payload
        if request.images:
            raise EvalmapError(
                f"A completion-style request with images cannot go to the server at {self.base_url} (OpenAI's "
                "/v1/completions takes text only); images need chat requests."
            )
        payload["prompt"] = request.prompt
        return "/completions", payload

    def _malformed(self, path: str, body) -> Callable[[str], MalformedReplyError]:
        """An error factory: `bad(what)` -> one sentence naming the server, the call and what was wrong."""

        def bad(what: str) -> MalformedReplyError:
            return MalformedReplyError(
                f"The server at {self.base_url} answered POST {path} with {what} "
                f"({_short(json.dumps(body, default=str), 120)}); check that --base-url points at an "
                "OpenAI-compatible server."
            )

        return bad

    def _parse_generation(self, body, path: str, chat: bool, latency: float) -> Generation:
        bad = self._malformed(path, body)
        if not isinstance(body, dict):
            raise bad("JSON that is not an object")
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices:
            raise bad("no choices")
        choice = choices[0]
        if not isinstance(choice, dict):
            raise bad("a choice that is not an object")
        if chat:
            message = choice.get("message")
            if not isinstance(message, dict):
                raise bad("a choice without a message")
            text = message.get("content")
            tool_calls = _tool_calls(message.get("tool_calls"), bad)
        else:
            tool_calls = None
            if "text" not in choice:
                raise bad("a choice without text")
            text = choice.get("text")
        if text is not None and not isinstance(text, str):
            raise bad("an answer that is not text")
        usage = body.get("usage")
        if usage is not None and not isinstance(usage, dict):
            raise bad("a usage that is not an object")
        usage = usage or {}
        finish = choice.get("finish_reason")
        return Generation(
            text=text or "",
            prompt_tokens=_count(usage.get("prompt_tokens"), "prompt_tokens", bad),
            completion_tokens=_count(usage.get("completion_tokens"), "completion_tokens", bad),
            finish_reason=str(finish) if finish else "stop",
            latency_s=latency,
            tool_calls=tool_calls,
        )

    def generate(self, requests: list[GenerationRequest], on_response: OnResponse | None = None) -> list[Generation]:
        """The answers in order, each also handed to `on_response(index, answer)` as it arrives.

        Unlike `stream`, the first request given up on stops the call (no new try starts, the tries in
        flight finish and are delivered) and is raised: a caller that gets a list back gets every answer.
        """
        return self._call(requests, on_response)

    # -------------------------------------------------------------- log-likelihood

    def _loglikelihood_payload(self, request: LoglikelihoodRequest) -> tuple[str, dict]:
        context, continuation = split_context(request)
        if not context:
            raise ValueError("Prompt-logprob log-likelihoods need a non-empty context.")
        payload = {
            "model": self.model,
            "prompt": context + continuation,
            "max_tokens": 1,
            "temperature": 0.0,
            "echo": True,
            "logprobs": 1,
        }
        return "/completions", payload

    def _parse_loglikelihood(self, request: LoglikelihoodRequest, body, latency: float) -> LogLikelihood:
        context, continuation = split_context(request)
        text = context + continuation
        bad = self._malformed("/completions", body)
        try:
            logprobs = body["choices"][0]["logprobs"]
            offsets = logprobs["text_offset"]
            token_logprobs = logprobs["token_logprobs"]
            tops = logprobs.get("top_logprobs") or [None] * len(token_logprobs)
            if not (isinstance(offsets, list) and isinstance(token_logprobs, list) and isinstance(tops, list)):
                raise TypeError("logprobs lists")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendUnavailableError(
                f"The server at {self.base_url} returned no echo prompt logprobs; it cannot serve log-likelihoods."
            ) from exc
        usage = body.get("usage")
        if usage is not None and not isinstance(usage, dict):
            raise bad("a usage that is not an object")
        n_prompt = _count((usage or {}).get("prompt_tokens"), "prompt_tokens", bad) or len(offsets)
        if not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets[:n_prompt]):
            raise bad("non-numeric logprobs.text_offset entries")
        # Continuation tokens: those starting inside the continuation's text span.
        span = [i for i in range(min(n_prompt, len(offsets))) if len(context) <= offsets[i] < len(text)]
        total, greedy = 0.0, True
        for i in span:
            value = token_logprobs[i]
            if value is None:
                raise BackendUnavailableError(
                    f"The server at {self.base_url} gave no logprob for prompt token {i}; "
                    "it cannot serve this log-likelihood."
                )
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad(f"a non-numeric logprob for prompt token {i} ({_short(json.dumps(value), 40)})")
            total += float(value)
            top = tops[i] if i < len(tops) else None
            if top:
                if not isinstance(top, dict) or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) for v in top.values()
                ):
                    raise bad(f"malformed top_logprobs for prompt token {i}")
                best = max(float(v) for v in top.values())
                greedy = greedy and float(value) >= best - 1e-6
        return LogLikelihood(
            logprob=total,
            is_greedy=greedy,
            continuation_tokens=len(span),
            context_tokens=(span[0] if span else n_prompt),
            latency_s=latency,
        )

    def loglikelihood(
        self, requests: list[LoglikelihoodRequest], on_response: OnResponse | None = None
    ) -> list[LogLikelihood]:
        """Like `generate`: the answers in order, the first request given up on stops the call and is raised."""
        return self._call(requests, on_response)

    def close(self) -> None:
        """Nothing held between calls: each stream opens and closes its own client."""

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:  # never shows headers (the API key)
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, server={self.server_kind!r})"
