"""A fake OpenAI-compatible server for benchmarks and tests: fixed latency, unlimited parallelism, faults.

Standard library only (no evalmap import), so a benchmark, a test or a shell can use it:

    python bench/fake_openai_server.py --latency 0.5 --port 8000

    with FakeOpenAIServer(latency_s=0.3, fail_rate=0.1) as server:
        ...  # point a client at server.base_url; read server.peak_in_flight afterwards

An asyncio server (one thread, its own event loop) speaks just enough HTTP/1.1 for httpx and
aiohttp: keep-alive, Content-Length or chunked request bodies, Content-Length replies. Every
POST sleeps `latency_s` while counted in `in_flight`, however many arrive at once, so the
server-side `peak_in_flight` is exactly the client's concurrency.

Answers are deterministic: a completion's text is derived from a hash of its prompt (or chat
messages) and max_tokens ("... The answer is 417."), cut at `stop` and at max_tokens words;
`echo=True, logprobs=1` on /v1/completions answers vLLM-shaped prompt logprobs (tokens are the
prompt's whitespace-led words). `answer_text` and `prompt_logprobs` compute the same values
without a server, so a test can check what a client delivered.

Faults are chosen per request from (seed, a hash of the request body, how many times that body
was seen before), so a rerun against a fresh server sees the same pattern while a retried request
draws again: with probability `fail_rate` an HTTP 500 with a JSON error, with probability
`hang_rate` no answer at all (held until the client disconnects or the server stops). A prompt in
`fail_prompts` always fails with 500, one in `reject_prompts` with 400 (a client error).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import re
import threading
import time

__all__ = ["FakeOpenAIServer", "answer_text", "message_images", "prompt_logprobs"]

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}
_MAX_HEADER_BYTES = 64 * 1024


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _unit(hex_digest: str, start: int = 0) -> float:
    """A number in [0, 1) from 13 hex digits of a digest."""
    return int(hex_digest[start : start + 13], 16) / 16**13


def _cut_at_stop(text: str, stop) -> str:
    if isinstance(stop, str):
        stop = [stop]
    for s in stop or ():
        if isinstance(s, str) and s and s in text:
            text = text[: text.index(s)]
    return text


def _answer(source, max_tokens, stop=()) -> tuple[str, str]:
    """(text, finish_reason) for a prompt (str) or chat messages (list of dicts)."""
    h = _digest("answer", source, max_tokens)
    words = f" Let me think step by step. The answer is {int(h[:8], 16) % 1000}.".split(" ")[1:]
    finish = "stop"
    try:
        limit = int(max_tokens)
    except (TypeError, ValueError):
        limit = 16
    if 0 <= limit < len(words):
        words, finish = words[:limit], "length"
    text = "".join(" " + w for w in words)
    cut = _cut_at_stop(text, stop)
    return cut, ("stop" if cut != text else finish)


def message_images(messages) -> list[tuple[str, bytes]]:
    """The images of OpenAI chat messages, in order: (MIME type, bytes) of each `image_url` part's base64
    data URL (what a `chat_reply` reads to answer from the picture); raises ValueError for any other URL."""
    found = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            if not (isinstance(part, dict) and part.get("type") == "image_url"):
                continue
            url = (part.get("image_url") or {}).get("url", "")
            head, _, data = url.partition(",")
            if not (head.startswith("data:") and head.endswith(";base64")):
                raise ValueError(f"not a base64 data URL: {url[:40]!r}")
            found.append((head[len("data:") : -len(";base64")], base64.b64decode(data, validate=True)))
    return found


def answer_text(prompt=None, *, messages=None, max_tokens=16, stop=()) -> str:
    """The text the server answers to this prompt (or these chat messages, as OpenAI dicts)."""
    return _answer(prompt if messages is None else list(messages), max_tokens, stop)[0]


def _tokens(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text) or [text]


def prompt_logprobs(text: str) -> dict:
    """The vLLM-shaped `logprobs` of an echoed prompt: tokens, text_offset, token_logprobs, top_logprobs.

    The first token has no logprob (None); every other token's is a deterministic negative number
    derived from the text before it and the token. Some tokens have a likelier alternative in
    top_logprobs (so they are not greedy), the others are the top choice.
    """
    tokens, offsets, lps, tops = _tokens(text), [], [], []
    pos = 0
    for i, tok in enumerate(tokens):
        offsets.append(pos)
        if i == 0:
            lps.append(None)
            tops.append(None)
        else:
            h = _digest("logprob", text[:pos], tok)
            lp = -round(0.05 + 4.0 * _unit(h), 4)
            lps.append(lp)
            top = {tok: lp}
            if _unit(h, 20) < 0.3:
                top = {" <alt>": round(lp / 2, 4), tok: lp}
            tops.append(top)
        pos += len(tok)
    return {"tokens": tokens, "text_offset": offsets, "token_logprobs": lps, "top_logprobs": tops}


class _BadRequest(Exception):
    pass


class FakeOpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1 in a background thread (a context manager).

    Counters (read them from any thread): `requests` POSTs received, `in_flight` POSTs being
    answered now (a hanging one counts until its client disconnects), `peak_in_flight` the most at
    once, `failures` 500s sent, `hangs` POSTs never answered, `rejections` 400s sent for
    `reject_prompts`; `started` / `finished` the (time.monotonic(), kind) of each POST taken in and
    each answer sent, kind "generate" or "loglikelihood" (echo). `reset_stats()` zeroes them (the
    fault pattern, which depends on how often each body was seen, is kept, and so is
    `distinct_requests`, the number of different bodies seen).
    """

    def __init__(
        self,
        latency_s: float = 0.5,
        fail_rate: float = 0.0,
        hang_rate: float = 0.0,
        seed: int = 0,
        owned_by: str = "vllm",
        model: str = "fake",
        *,
        fail_prompts=(),
        reject_prompts=(),
        host: str = "127.0.0.1",
        port: int = 0,
        max_model_len: int = 8192,
        chat_reply=None,
        tool_reply=None,
        listing_extra: dict | None = None,
    ):
        if not 0.0 <= fail_rate <= 1.0 or not 0.0 <= hang_rate <= 1.0 or fail_rate + hang_rate > 1.0:
            raise ValueError("fail_rate and hang_rate must be in [0, 1] and add up to at most 1.")
        self.latency_s = float(latency_s)
        self.fail_rate = float(fail_rate)
        self.hang_rate = float(hang_rate)
        self.seed = seed
        self.owned_by = owned_by
        self.model = model
        self.fail_prompts = set(fail_prompts)
        self.reject_prompts = set(reject_prompts)
        self.max_model_len = max_model_len
        self.chat_reply = chat_reply  # (messages) -> text, or None for the hashed answer: a scripted judge
        # (messages, tools) -> [{"name", "arguments"}] answered as native `tool_calls`, or None for a text answer
        self.tool_reply = tool_reply
        self.listing_extra = dict(listing_extra or {})  # more fields of the /v1/models entry (what it says it takes)
        self.host = host
        self.port = port
        self.base_url = ""
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.reset_stats()

    # ------------------------------------------------------------------ public

    def reset_stats(self) -> None:
        with self._lock:
            self.requests = 0
            self.failures = 0
            self.hangs = 0
            self.rejections = 0
            self.started: list[tuple[float, str]] = []  # (monotonic time, "generate" | "loglikelihood")
            self.finished: list[tuple[float, str]] = []  # the same when an answer (200) is sent
            self.in_flight = getattr(self, "in_flight", 0)
            self.peak_in_flight = self.in_flight

    def start(self) -> FakeOpenAIServer:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._serve_thread, name="fake-openai-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join()
        self._thread = None

    @property
    def distinct_requests(self) -> int:
        """How many different POST bodies were seen (a retry sends the same body again)."""
        return len(self._attempts)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"FakeOpenAIServer({self.base_url or 'not started'}, latency_s={self.latency_s}, "
            f"requests={self.requests}, peak_in_flight={self.peak_in_flight})"
        )

    # ------------------------------------------------------------------ serving

    def _serve_thread(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        connections: set[asyncio.Task] = set()

        async def on_connect(reader, writer):
            task = asyncio.current_task()
            connections.add(task)
            try:
                await self._connection(reader, writer)
            except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                connections.discard(task)
                writer.close()

        server = await asyncio.start_server(on_connect, self.host, self.port, backlog=4096)
        port = server.sockets[0].getsockname()[1]
        self.port = port
        self.base_url = f"http://{self.host}:{port}/v1"
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for task in list(connections):
                task.cancel()
            if connections:
                await asyncio.gather(*connections, return_exceptions=True)
            await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                await self._send(writer, 400, {"error": {"message": "headers too large"}}, close=True)
                return
            except asyncio.IncompleteReadError:
                return  # the client closed the connection between requests
            lines = head.decode("latin-1").split("\r\n")
            try:
                method, target, version = lines[0].split(" ", 2)
            except ValueError:
                await self._send(writer, 400, {"error": {"message": "bad request line"}}, close=True)
                return
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            try:
                body = await self._read_body(reader, headers)
            except _BadRequest as exc:
                await self._send(writer, 400, {"error": {"message": str(exc)}}, close=True)
                return
            close = headers.get("connection", "").lower() == "close" or version.upper() == "HTTP/1.0"
            path = target.split("?", 1)[0]
            if method == "GET":
                if path.rstrip("/") == "/v1/models":
                    await self._send(writer, 200, self._listing(), close)
                else:
                    await self._send(writer, 404, {"error": {"message": f"no route GET {path}"}}, close)
            elif method == "POST":
                keep = await self._post(reader, writer, path, body, close)
                if not keep:
                    return
            else:
                await self._send(writer, 405, {"error": {"message": f"method {method} not allowed"}}, close)
            if close:
                return

    async def _read_body(self, reader: asyncio.StreamReader, headers: dict) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _BadRequest("bad chunk size") from None
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _BadRequest("bad Content-Length") from None
        return await reader.readexactly(length) if length > 0 else b""

    async def _send(self, writer: asyncio.StreamWriter, status: int, body: dict, close: bool) -> None:
        data = json.dumps(body).encode("utf-8")
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n"
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + data)
        await writer.drain()

    async def _until_disconnect_or(self, reader: asyncio.StreamReader, awaitable) -> bool:
        """Wait for `awaitable`; False when the client disconnected (or the server stops) first."""
        main = asyncio.ensure_future(awaitable)
        eof = asyncio.ensure_future(reader.read(1))  # HTTP/1.1 clients send nothing while they wait
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            done, _ = await asyncio.wait({main, eof, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (main, eof, stopping):
                if not task.done():
                    task.cancel()
            await asyncio.gather(main, eof, stopping, return_exceptions=True)
        return main in done and eof not in done and stopping not in done

    def _listing(self) -> dict:
        entry = {"id": self.model, "object": "model", "owned_by": self.owned_by, "max_model_len": self.max_model_len}
        entry.update(self.listing_extra)
        return {"object": "list", "data": [entry]}

    def _fault(self, payload: dict) -> str | None:
        """None, "fail", "hang" or "reject" for this try of this body."""
        body_hash = _digest("body", payload)
        with self._lock:
            attempt = self._attempts.get(body_hash, 0)
            self._attempts[body_hash] = attempt + 1
        messages = payload.get("messages")
        if isinstance(messages, list):
            last = messages[-1] if messages else None
            source = last.get("content") if isinstance(last, dict) else None
        else:
            source = payload.get("prompt")
        if isinstance(source, str) and source in self.reject_prompts:
            return "reject"
        if isinstance(source, str) and source in self.fail_prompts:
            return "fail"
        u = _unit(_digest("fault", self.seed, body_hash, attempt))
        if u < self.fail_rate:
            return "fail"
        if u < self.fail_rate + self.hang_rate:
            return "hang"
        return None

    async def _post(self, reader, writer, path: str, raw: bytes, close: bool) -> bool:
        """Answer one POST; False when the connection is gone (or must go)."""
        with self._lock:
            self.requests += 1
        try:
            payload = json.loads(raw or b"{}")
            if not isinstance(payload, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            await self._send(writer, 400, {"error": {"message": f"the body is not a JSON object ({exc})"}}, close)
            return True
        route = path.rstrip("/")
        if route not in ("/v1/completions", "/v1/chat/completions"):
            await self._send(writer, 404, {"error": {"message": f"no route POST {path}"}}, close)
            return True
        fault = self._fault(payload)
        kind = "loglikelihood" if payload.get("echo") else "generate"
        with self._lock:
            self.started.append((time.monotonic(), kind))
            self.in_flight += 1  # a hanging request too, while its client waits for it
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            if fault == "hang":
                self.hangs += 1
        try:
            wait = self._stopping.wait() if fault == "hang" else asyncio.sleep(self.latency_s)
            answered_in_time = await self._until_disconnect_or(reader, wait)
        finally:
            with self._lock:
                self.in_flight -= 1
        if fault == "hang" or not answered_in_time:
            return False
        if fault == "reject":
            with self._lock:
                self.rejections += 1
            error = {"message": "fake server rejects this prompt", "type": "invalid_request_error", "code": 400}
            await self._send(writer, 400, {"error": error}, close)
            return True
        if fault == "fail":
            with self._lock:
                self.failures += 1
            error = {"message": "fake server failure", "type": "server_error", "code": 500}
            await self._send(writer, 500, {"error": error}, close)
            return True
        try:
            body = self._chat(payload) if route.endswith("/chat/completions") else self._completion(payload)
        except (TypeError, ValueError, KeyError) as exc:
            await self._send(writer, 400, {"error": {"message": f"bad request ({exc})"}}, close)
            return True
        with self._lock:
            self.finished.append((time.monotonic(), kind))
        await self._send(writer, 200, body, close)
        return True

    def _completion(self, payload: dict) -> dict:
        prompt = payload.get("prompt", "")
        if isinstance(prompt, list):
            prompt = prompt[0] if prompt else ""
        if not isinstance(prompt, str):
            raise TypeError("prompt must be a string")
        max_tokens = payload.get("max_tokens", 16)
        if payload.get("echo") and payload.get("logprobs") is not None:
            return self._echo(prompt, max_tokens)
        text, finish = _answer(prompt, max_tokens, payload.get("stop"))
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return self._envelope("text_completion", "cmpl", choice, len(prompt) // 4 + 1, len(text.split()))

    def _chat(self, payload: dict) -> dict:
        messages = payload.get("messages")
        if not isinstance(messages, list):
            raise TypeError("messages must be a list")
        tools = payload.get("tools")
        calls = self.tool_reply(messages, tools) if self.tool_reply is not None and tools else None
        if calls is not None:
            tool_calls = [
                {"id": f"call_{i}", "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for i, c in enumerate(calls)
            ]
            choice = {"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": tool_calls},
                      "finish_reason": "tool_calls"}  # fmt: skip
            return self._envelope("chat.completion", "chatcmpl", choice, len(json.dumps(tools)) // 4 + 1, len(calls))
        scripted = self.chat_reply(messages) if self.chat_reply is not None else None
        if scripted is not None:
            text, finish = scripted, "stop"
        else:
            text, finish = _answer(messages, payload.get("max_tokens", 16), payload.get("stop"))
        prompt_chars = sum(len(str(m.get("content", ""))) for m in messages if isinstance(m, dict))
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        return self._envelope("chat.completion", "chatcmpl", choice, prompt_chars // 4 + 1, len(text.split()))

    def _echo(self, prompt: str, max_tokens) -> dict:
        """vLLM's echo answer: the prompt's tokens with logprobs, then max_tokens (here at most 1) generated."""
        logprobs = prompt_logprobs(prompt)
        n_prompt = len(logprobs["tokens"])
        generated = " 42" if max_tokens else ""
        if generated:
            logprobs["tokens"].append(generated)
            logprobs["text_offset"].append(len(prompt))
            logprobs["token_logprobs"].append(-0.1)
            logprobs["top_logprobs"].append({generated: -0.1})
        choice = {"index": 0, "text": prompt + generated, "logprobs": logprobs, "finish_reason": "length"}
        return self._envelope("text_completion", "cmpl", choice, n_prompt, 1 if generated else 0)

    def _envelope(self, obj: str, prefix: str, choice: dict, prompt_tokens: int, completion_tokens: int) -> dict:
        return {
            "id": f"{prefix}-{_digest(obj, choice)[:16]}",
            "object": obj,
            "created": 0,
            "model": self.model,
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible server (fixed latency, faults).")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds each POST takes (default 0.5)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--hang-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--owned-by", default="vllm")
    parser.add_argument("--model", default="fake")
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(
        latency_s=args.latency, fail_rate=args.fail_rate, hang_rate=args.hang_rate, seed=args.seed,
        owned_by=args.owned_by, model=args.model, host=args.host, port=args.port,
    )  # fmt: skip
    with server:
        print(f"fake OpenAI server at {server.base_url} (latency {args.latency:g} s); Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    print(f"served {server.requests} requests (peak {server.peak_in_flight} in flight)", flush=True)


if __name__ == "__main__":
    main()
