"""Helpers for the property-based tests (tests/test_fuzz.py) and the soak bench (bench/bench_soak.py).

- `cli(args, env)`: `evalmap ARGS` in this process through `evalmap.cli.main` (the real entry point:
  user errors become exit 2), with stdout/stderr captured and a SIGALRM watchdog, so a hang fails
  the example instead of the whole session.
- `check_outcome(result)`: the property every command must keep: exit 0 with a result, or exit 2 with
  one sentence (an `error: ...` line, or Typer's usage error box), never a traceback nor exit 1.
- `FakeOpenAI`: an OpenAI-compatible server on 127.0.0.1 that answers POSTs from a script (status,
  headers, raw body bytes, dropped connections, delays, truncated bodies) and, once the script is
  used up, answers every request deterministically from its prompt (the same prompt always gets the
  same answer), optionally failing a deterministic fraction of requests (the soak bench's flaky mode).

All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# ---------------------------------------------------------------- running the CLI in process


class Hang(BaseException):  # noqa: N818 - a BaseException so `except Exception` in the code under test cannot swallow it
    """The command did not end within its time limit."""


@dataclass
class Outcome:
    args: list[str]
    code: int
    stdout: str
    stderr: str
    seconds: float
    exception: BaseException | None = None  # an exception that escaped main() (a bug: exit 1 with a traceback)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        exc = f"\nescaped: {type(self.exception).__name__}: {self.exception}" if self.exception else ""
        return (
            f"evalmap {' '.join(repr(a) if not a or ' ' in a else a for a in self.args)}\n"
            f"exit {self.code} after {self.seconds:.1f} s{exc}\n"
            f"--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}"
        )


@contextlib.contextmanager
def _environ(changes: dict[str, str | None]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in changes}
    try:
        for k, v in changes.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _watchdog(seconds: float) -> Iterator[None]:
    """Raise Hang in the main thread after `seconds`; then, if the code under test still hangs
    (e.g. waiting on a stuck thread), dump every thread's stack and end the process rather than
    hang the whole test session."""
    import faulthandler

    def fire(signum, frame):
        raise Hang(f"no exit within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(seconds + 60, exit=True, file=sys.__stderr__)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()


@contextlib.contextmanager
def _cwd(path: str | os.PathLike | None) -> Iterator[None]:
    if path is None:
        yield
        return
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def cli(args: list[str], env: dict[str, str | None] | None = None, timeout: float = 60.0,
        cwd: str | os.PathLike | None = None) -> Outcome:
    """`evalmap ARGS` through `evalmap.cli.main` in this process: (exit code, stdout, stderr).

    `cwd`: the working directory for the call (relative paths, e.g. `--output ""`, land there; default: a
    fresh temporary folder, never the repository).

    `env` sets (or, with None, removes) environment variables for the call. An exception other than
    SystemExit that escapes main() is what a user would see as a traceback and exit 1: it is returned
    as `exception` with code 1 and its traceback appended to stderr.
    """
    import traceback

    from evalmap.cli import main

    changes: dict[str, str | None] = {"EVALMAP_CATALOG": None, "EVALMAP_DATA_DIR": None, "COLUMNS": "200"}
    changes.update(env or {})
    stdout, stderr = io.StringIO(), io.StringIO()
    code, escaped = 0, None
    argv = sys.argv
    start = time.perf_counter()
    try:
        with _watchdog(timeout), _environ(changes), contextlib.redirect_stdout(stdout), \
                contextlib.redirect_stderr(stderr), tempfile.TemporaryDirectory(prefix="evalmap-cwd-") as fresh, \
                _cwd(cwd or fresh):
            sys.argv = ["evalmap", *args]
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Hang:
                raise
            except BaseException as exc:  # noqa: BLE001 - what the user would see as a traceback
                code, escaped = 1, exc
                stderr.write("".join(traceback.format_exception(exc)))
    finally:
        sys.argv = argv
    return Outcome(list(args), code, stdout.getvalue(), stderr.getvalue(), time.perf_counter() - start, escaped)


# Lines a failing command may print besides its one sentence: retry warnings of the OpenAI backend
# (logged as they happen, the first few of a stream) and `warning: ...` notes.
_NOISE = re.compile(r"^(retry \d+/\d+ after |further retries from the server |warning: |.*Warning: )")
# Typer's usage errors (bad option values, unknown commands): a box with a one-sentence message.
_USAGE = re.compile(r"^(Usage: |Try '|[╭╰│─ ]|Error: )")


def error_sentence(result: Outcome) -> str:
    """The one sentence of a command that ended with exit 2 (raises AssertionError otherwise)."""
    assert result.code == 2, result.describe()
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    if errors:
        others = [line for line in lines if not line.startswith("error: ") and not _NOISE.match(line)]
        if any("\n" in arg for arg in result.args):
            others = []  # the sentence quotes an argument (a path) that holds a line break
        assert len(errors) == 1 and not others, f"more than one sentence:\n{result.describe()}"
        assert result.stdout.strip() == "", f"an error also wrote to stdout:\n{result.describe()}"
        return errors[0][len("error: "):]
    # A usage error from Typer/Click: "Usage: ...", "Try '... --help'", and a box around one message; or, for an
    # option given without its value, Click's lone "Error: Option '--catalog' requires an argument."
    usage = any(line.startswith("Usage: ") for line in lines)
    lone = [line for line in lines if line.startswith("Error: ")]
    assert usage or len(lone) == 1, f"exit 2 without a message:\n{result.describe()}"
    assert all(_USAGE.match(line) or _NOISE.match(line) for line in lines), f"odd usage error:\n{result.describe()}"
    body = " ".join(line.strip("│ ╭╮╰╯─") for line in lines if line.startswith("│"))
    return body.strip() or (lone[0][len("Error: "):] if lone and not usage else lines[-1])


def check_outcome(result: Outcome, ok_codes: tuple[int, ...] = (0, 2, 3)) -> None:
    """The property: a result (exit 0), one sentence (exit 2), or a result whose failed items are counted
    in one sentence (exit 3: a server gave up on some); never a traceback, exit 1 or a hang."""
    assert result.exception is None, f"an exception escaped main():\n{result.describe()}"
    assert "Traceback (most recent call last)" not in result.output, f"a traceback:\n{result.describe()}"
    assert result.code in ok_codes, f"unexpected exit code:\n{result.describe()}"
    if result.code == 2:
        sentence = error_sentence(result)
        assert sentence.strip(), result.describe()
    if result.code == 3:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "failed and are not scored" in errors[0], result.describe()
        assert result.stdout.strip() or "--format" in result.args, f"exit 3 without results:\n{result.describe()}"


# ---------------------------------------------------------------- known bugs

# Bugs the fuzz tests found that are not fixed yet, by signature. Each has a deterministic reproduction
# in tests/test_fuzz.py (test_known_*, xfail strict): when one is fixed, its test XPASSes and fails, and
# its line here goes too. The property tests skip examples that only hit these (EVALMAP_FUZZ_STRICT=1:
# they do not), so they keep looking for new ones.
KNOWN_BUGS: dict = {}


def known_bug(result: Outcome) -> str | None:
    """The known bug this outcome shows (None: none, or EVALMAP_FUZZ_STRICT=1)."""
    if os.environ.get("EVALMAP_FUZZ_STRICT") == "1":
        return None
    return next((name for name, matches in KNOWN_BUGS.items() if matches(result)), None)


# ---------------------------------------------------------------- a fake OpenAI-compatible server


@dataclass
class Reply:
    """One scripted answer to a POST.

    `action`: "reply" (status + headers + body), "drop" (close without answering), "partial" (send
    headers with a longer Content-Length than the body, then close), "hang" (answer nothing until
    `delay_s` passed, then drop). `delay_s` is waited before any action.
    """

    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    action: str = "reply"
    delay_s: float = 0.0


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "big")


def healthy_answer(prompt: str) -> str:
    """A deterministic answer for a prompt: a number (gsm8k-like), a letter (multiple choice) and a tiny
    Python body, so extraction and scoring have something to chew on; 1 in 3 prompts gets "42"."""
    h = _digest(prompt)
    number = 42 if h % 3 == 0 else h % 1000
    letter = "ABCD"[h % 4]
    return f"Let me think. {letter}\nThe answer is {number}.\n#### {number}\n    return {number}\n"


def prompt_of(body: dict) -> str:
    if "messages" in body:
        return json.dumps(body.get("messages"), sort_keys=True)
    return str(body.get("prompt"))


def completion_body(body: dict, path: str) -> dict:
    """The healthy JSON reply to a completion or chat completion request."""
    text = healthy_answer(prompt_of(body))
    if body.get("echo"):  # prompt logprobs, vLLM-shaped: one "token" per 4 characters of the prompt
        prompt = str(body.get("prompt"))
        offsets = list(range(0, len(prompt), 4)) or [0]
        lps = [None] + [-((_digest(prompt[:o]) % 500) / 100.0) - 0.01 for o in offsets[1:]]
        logprobs = {"text_offset": offsets, "token_logprobs": lps, "tokens": ["t"] * len(offsets),
                    "top_logprobs": [None] + [{"t": v} for v in lps[1:]]}
        choice = {"index": 0, "text": prompt, "logprobs": logprobs, "finish_reason": "length"}
        return {"choices": [choice], "usage": {"prompt_tokens": len(offsets), "completion_tokens": 1}}
    if path.endswith("/chat/completions"):
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    else:
        choice = {"index": 0, "text": text, "finish_reason": "stop"}
    return {"choices": [choice], "usage": {"prompt_tokens": 10, "completion_tokens": 12}}


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-request (a killed run, a timeout) is normal here, not worth a traceback
    on stderr (which the fuzz tests read as evalmap's)."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass


class FakeOpenAI:
    """An OpenAI-compatible server on 127.0.0.1 (port chosen by the OS) in a daemon thread.

    POSTs consume `script` (a list of Reply); afterwards every POST gets the healthy answer, unless
    `flaky` is set: then a request is failed (HTTP 500, a dropped connection, or a reply delayed by
    `slow_s`) when a hash of (prompt, attempt number of that prompt) falls in the flaky fraction, so
    the pattern of failures is deterministic and every prompt succeeds within a few tries.
    GET /v1/models answers `models_reply` (default: one model owned by `owned_by`).
    """

    def __init__(self, script: list[Reply] | None = None, owned_by: str = "fake", models_reply: Reply | None = None,
                 flaky: float = 0.0, slow_s: float = 0.0, port: int = 0):
        self.script = list(script or [])
        self.owned_by = owned_by
        self.models_reply = models_reply
        self.flaky = flaky
        self.slow_s = slow_s
        self.lock = threading.Lock()
        self.posts = 0
        self.served = 0  # healthy answers sent
        self.failed = 0  # 500s, drops and hangs sent
        self.attempts: dict[str, int] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, reply: Reply) -> None:
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.action in ("drop", "hang"):
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                headers = {"Content-Type": "application/json", **reply.headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                if reply.action == "partial":
                    self.send_header("Content-Length", str(len(reply.body) + 100))
                    self.end_headers()
                    self.wfile.write(reply.body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def do_GET(self):
                if fake.models_reply is not None:
                    return self._send(fake.models_reply)
                if self.path.rstrip("/").endswith("/models"):
                    model = {"id": "fake-model", "object": "model", "owned_by": fake.owned_by}
                    return self._send(Reply(200, json.dumps({"object": "list", "data": [model]}).encode()))
                return self._send(Reply(404, b'{"error": "not found"}'))

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                with fake.lock:
                    fake.posts += 1
                    step = fake.script.pop(0) if fake.script else None
                    if step is None and fake.flaky:
                        key = self.path + "\0" + prompt_of(body)
                        attempt = fake.attempts.get(key, 0)
                        fake.attempts[key] = attempt + 1
                        roll = (_digest(f"{key}\0{attempt}") % 10_000) / 10_000
                        if roll < fake.flaky:
                            kind = _digest(f"kind\0{key}\0{attempt}") % 3
                            step = [Reply(500, b'{"error": {"message": "flaky"}}'), Reply(action="drop"),
                                    Reply(500, b'{"error": "slow then failed"}', delay_s=fake.slow_s)][kind]
                    if step is None:
                        fake.served += 1
                    else:
                        fake.failed += 1
                if step is None:
                    step = Reply(200, json.dumps(completion_body(body, self.path)).encode())
                    if fake.slow_s and _digest("slow\0" + prompt_of(body)) % 5 == 0:
                        step.delay_s = fake.slow_s
                self._send(step)

        self.httpd = _QuietServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_HELP: dict[str, str] = {}


def run_option(name: str) -> bool:
    """Whether `evalmap run` has the option `name` (e.g. --max-retries) in this checkout."""
    if "run" not in _HELP:
        _HELP["run"] = cli(["run", "--help"]).stdout
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", _HELP["run"]) is not None
