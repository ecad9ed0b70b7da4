"""Any OpenAI-compatible server: vLLM, SGLang, TGI, Ollama, llama.cpp's servers.

httpx.AsyncClient with a semaphore bounds the requests in flight; the public API is
synchronous (one event loop per batch). Prompt requests go to `/v1/completions`,
chat requests to `/v1/chat/completions`. Requests that fail with 429, 5xx, a timeout
(`timeout_s` per try) or a dropped connection are retried up to `max_retries` times
with exponential backoff and jitter, honouring `Retry-After`; each retry is logged as
a warning ("retry 2/3 after no reply within 5 s ..."), so a slow or hanging server is
never silent. Every answer is handed to `on_response` the moment it arrives; once a
request has failed for good no new request starts, the ones in flight finish, and
the first failure is raised. A reply that is not the JSON an OpenAI-compatible
server sends (no choices, a choice without text, non-numeric usage, an HTML page)
is an error in one sentence naming the server, never a silent empty answer.

Log-likelihoods come from prompt logprobs (`echo=True, logprobs=1`), which only some
servers compute correctly: vLLM does; llama.cpp's (llama-cpp-python's) server returns
them shifted by one token, so it is refused unless `loglikelihood_mode="force"`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import functools
import hashlib
import json
import logging
import os
import random
import re
import ssl
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import httpx

from evalmap.backends import check_base_url
from evalmap.backends.base import (
    BackendInfo,
    Capabilities,
    Generation,
    GenerationRequest,
    LogLikelihood,
    LoglikelihoodRequest,
    OnResponse,
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


class _Skipped(Exception):
    """Another request of the call failed for good, so this one was not (re)started."""


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


def _count(value, what: str, bad) -> int:
    """A token count from `usage`: a non-negative number (absent: 0)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 0:
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
    ):
        if loglikelihood_mode not in LOGLIKELIHOOD_MODES:
            raise ValueError(f"loglikelihood_mode must be one of {LOGLIKELIHOOD_MODES}, not {loglikelihood_mode!r}.")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1.")
        if not timeout_s > 0:
            raise EvalmapError(f"The request timeout must be a positive number of seconds (got {timeout_s}).")
        if max_retries < 0:
            raise EvalmapError(f"max_retries must be 0 or more (got {max_retries}).")
        self.base_url = check_base_url(base_url).rstrip("/")
        self._api = self.base_url if self.base_url.endswith("/v1") else self.base_url + "/v1"
        self.model = model
        self.concurrency = concurrency
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.loglikelihood_mode = loglikelihood_mode
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s

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
        self.capabilities = Capabilities(
            chat_template=True,
            logprobs=self._loglikelihood_refusal is None,
            images=False,
            tools=False,
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
                self._warn_retry("GET /v1/models", attempt, last, delay)
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

    def _warn_retry(self, what: str, attempt: int, last: str, delay: float) -> None:
        log.warning(
            "retry %d/%d after %s from the server at %s (%s); next try in %.2f s",
            attempt + 1, self.max_retries, last, self.base_url, what, delay,
        )  # fmt: skip

    async def _post(
        self, client: httpx.AsyncClient, sem: asyncio.Semaphore, stop: asyncio.Event, path: str, payload: dict
    ):
        """POST with retries; returns (json body, seconds of the successful attempt).

        Raises _Skipped instead of starting a try once `stop` is set (another request failed for good).
        """
        url = f"{self._api}{path}"
        last = ""
        for attempt in range(self.max_retries + 1):
            response = None
            async with sem:
                if stop.is_set():
                    raise _Skipped
                start = time.perf_counter()
                try:
                    response = await asyncio.wait_for(client.post(url, json=payload), self.timeout_s)
                except (TimeoutError, httpx.TransportError) as exc:  # timeouts, refused or dropped connections
                    last = _failure_name(exc, self.timeout_s)
                elapsed = time.perf_counter() - start
            if response is not None:
                status = response.status_code
                if status < 400:
                    try:
                        return response.json(), elapsed
                    except ValueError:
                        raise MalformedReplyError(
                            f"The server at {self.base_url} answered POST {path} with {_body_hint(response)} "
                            "instead of JSON; check that --base-url points at an OpenAI-compatible API "
                            "(e.g. http://127.0.0.1:8000/v1)."
                        ) from None
                elif status == 429 or status >= 500:
                    last = f"HTTP {status} ({_body_hint(response, 80)})"
                else:
                    raise RequestRejectedError(
                        f"The server at {self.base_url} rejected POST {path} with HTTP {status} "
                        f"({_body_hint(response)}); check --base-url and the model name it serves."
                    )
            if attempt < self.max_retries:
                if stop.is_set():
                    raise _Skipped
                delay = self._delay(attempt, response)
                self._warn_retry(f"POST {path}", attempt, last, delay)
                await asyncio.sleep(delay)
        tries = "once" if self.max_retries == 0 else f"{self.max_retries + 1} times"
        raise BackendUnavailableError(
            f"The server at {self.base_url} failed POST {path} {tries} (last: {last}); check that it is "
            "healthy and not overloaded, or raise --timeout / --max-retries."
        )

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            headers=self._headers,
            verify=_ssl_context(),
            timeout=httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
        )

    async def _gather(self, requests: list, one, on_response: OnResponse | None) -> list:
        """Run `one(client, sem, stop, request)` for every request, at most `concurrency` at a time.

        Each answer goes to `on_response` as it arrives. The first request that fails for good stops
        new tries from starting; the tries in flight finish (their answers are delivered too), then
        that first failure is raised.
        """
        sem = asyncio.Semaphore(self.concurrency)
        stop = asyncio.Event()
        results: list = [None] * len(requests)
        failures: list[BaseException] = []

        async def run(i: int, request) -> None:
            try:
                result = await one(client, sem, stop, request)
                results[i] = result
                if on_response is not None:
                    on_response(i, result)
            except _Skipped:
                pass
            except Exception as exc:  # noqa: BLE001 - kept and raised once the tries in flight are done
                failures.append(exc)
                stop.set()

        async with self._client() as client:
            await asyncio.gather(*(run(i, r) for i, r in enumerate(requests)))
        if failures:
            raise failures[0]
        return results

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
            payload["messages"] = request.chat_messages()
            return "/chat/completions", payload
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
        else:
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
        )

    async def _generate_one(self, client, sem, stop, request: GenerationRequest) -> Generation:
        path, payload = self._generation_payload(request)
        body, latency = await self._post(client, sem, stop, path, payload)
        return self._parse_generation(body, path, request.chat, latency)

    def generate(self, requests: list[GenerationRequest], on_response: OnResponse | None = None) -> list[Generation]:
        if not requests:
            return []
        return _run_sync(self._gather(requests, self._generate_one, on_response))

    # -------------------------------------------------------------- log-likelihood

    async def _loglikelihood_one(self, client, sem, stop, request: LoglikelihoodRequest) -> LogLikelihood:
        context, continuation = split_context(request)
        if not context:
            raise ValueError("Prompt-logprob log-likelihoods need a non-empty context.")
        text = context + continuation
        payload = {
            "model": self.model,
            "prompt": text,
            "max_tokens": 1,
            "temperature": 0.0,
            "echo": True,
            "logprobs": 1,
        }
        body, latency = await self._post(client, sem, stop, "/completions", payload)
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
        if not requests:
            return []
        if self._loglikelihood_refusal is not None:
            raise BackendUnavailableError(self._loglikelihood_refusal)
        return _run_sync(self._gather(requests, self._loglikelihood_one, on_response))

    def close(self) -> None:
        """Nothing held between calls: each batch opens and closes its own client."""

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:  # never shows headers (the API key)
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, server={self.server_kind!r})"
