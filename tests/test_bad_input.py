"""Input a user can get wrong (issue 10), through the real CLI: one sentence, exit 2, no traceback,
no hang, nothing lost.

Bad dataset files, a missing --data-dir and bad --base-url values must fail before a model loads
(the fake server sees no traffic at all); malformed server replies name the server; a hanging
server is bounded by --timeout / --max-retries and says that it retries; a server that fails 40%
of requests keeps every answer it did give, so reruns finish the run with the same samples as a
healthy server. Every server here is a fake on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

CLI = [sys.executable, "-c", "from evalmap.cli import main; main()"]
GSM8K_OK = '{"question": "What is 2 + 3?", "answer": "2 + 3 = 5\\n#### 5"}\n'


class FakeServer:
    """An OpenAI-compatible server on 127.0.0.1: GET /v1/models, POST /v1/completions.

    mode "ok": a deterministic answer per prompt; "flaky": POSTs number 1, 3, 6, 8, 11, 13, ...
    (n % 5 in {1, 3}: 40%) answer HTTP 500; "hang": POSTs get no answer; ("raw", type, bytes):
    every POST gets that 200 body.
    """

    def __init__(self, mode="ok"):
        self.mode = mode
        self.posts = 0
        self.answered = 0  # POSTs that got a 200 answer
        self.gets = 0
        self.lock = threading.Lock()
        self.released = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, data: bytes, kind: str = "application/json"):
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                with fake.lock:
                    fake.gets += 1
                model = {"id": "fake-model", "object": "model", "owned_by": "fake"}
                self._send(200, json.dumps({"object": "list", "data": [model]}).encode())

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with fake.lock:
                    n = fake.posts
                    fake.posts += 1
                if fake.mode == "hang":
                    fake.released.wait(60)
                    self.close_connection = True
                    return
                if isinstance(fake.mode, tuple):
                    self._send(200, fake.mode[2], fake.mode[1])
                    return
                if fake.mode == "flaky" and n % 5 in (1, 3):
                    self._send(500, b'{"error": {"message": "flaky"}}')
                    return
                digest = int(hashlib.sha256(str(body.get("prompt")).encode()).hexdigest(), 16)
                choice = {"index": 0, "text": f" So the result is {digest % 9}. The answer is {digest % 9}.",
                          "finish_reason": "stop"}  # fmt: skip
                with fake.lock:
                    fake.answered += 1
                self._send(200, json.dumps({"choices": [choice], "usage": {"prompt_tokens": 5,
                                                                            "completion_tokens": 9}}).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_server():
    servers: list[FakeServer] = []

    def make(mode="ok") -> FakeServer:
        servers.append(FakeServer(mode))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def _env(home: Path) -> dict[str, str]:
    drop = {"EVALMAP_CATALOG", "EVALMAP_DATA_DIR"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(EVALMAP_HOME=str(home), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return env


def run_args(url: str, data_dir: Path | str, *extra: str) -> list[str]:
    return ["run", "--models", "smollm2_135m", "--datasets", "gsm8k", "--backend", "openai", "--base-url", url,
            "--data-dir", str(data_dir), "--quiet", *extra]  # fmt: skip


def one_error_line(proc: subprocess.CompletedProcess, allow_before: str | None = None) -> str:
    """The run's one-sentence error; lines before it are allowed only when they start with `allow_before`."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), proc.stderr
    assert all(allow_before and line.startswith(allow_before) for line in lines[:-1]), proc.stderr
    return lines[-1]


# ---------------------------------------------------------------- bad records, missing data: before any model


BAD_FILES = {
    "missing_field": ('{"foo": 1}\n', "test.jsonl line 1 has no field 'question'"),
    "array": (GSM8K_OK + "[1, 2, 3]\n", "test.jsonl line 2 is a JSON array, not an object"),
    "number_for_text": (
        GSM8K_OK + '{"question": "q", "answer": 42}\n', "test.jsonl line 2 has 'answer' = 42 (a number) where text"
    ),
    "not_json": (GSM8K_OK + GSM8K_OK + "{oops\n", "test.jsonl line 3 is not JSON"),
    "empty": ("", "test.jsonl holds no records"),
}


@pytest.fixture(scope="module")
def before_model(tmp_path_factory):
    """Every 'refused before a model loads' case as a real process, all started together (2 cores: ~10 s)."""
    tmp = tmp_path_factory.mktemp("bad_input")
    server = FakeServer()
    commands: dict[str, list[str]] = {}
    for name, (text, _) in BAD_FILES.items():
        (tmp / name / "gsm8k").mkdir(parents=True)
        (tmp / name / "gsm8k" / "test.jsonl").write_text(text, encoding="utf-8")
        commands[name] = run_args(server.url, tmp / name, "--samples", "2")
    commands["no_data_dir"] = run_args(server.url, tmp / "no-such-folder")
    for name, url in (("not_a_url", "not-a-url"), ("ftp", "ftp://127.0.0.1/v1"), ("no_host", "http:///v1")):
        commands[name] = run_args(url, tmp / "missing_field")
    began = time.perf_counter()
    procs = {
        name: subprocess.Popen([*CLI, *args], env=_env(tmp / f"home-{name}"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)  # fmt: skip
        for name, args in commands.items()
    }
    done = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=180)
        done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    done["_wall"] = time.perf_counter() - began  # type: ignore[assignment]
    done["_tmp"] = tmp  # type: ignore[assignment]
    done["_server"] = server  # type: ignore[assignment]
    yield done
    server.close()


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_records_fail_at_load_naming_file_line_and_field(before_model, name):
    line = one_error_line(before_model[name])
    path = before_model["_tmp"] / name / "gsm8k" / "test.jsonl"
    assert str(path.parent) in line and BAD_FILES[name][1] in line, line
    assert line.startswith("error: Dataset 'gsm8k' (test split): ")


def test_missing_data_dir_is_refused_at_once(before_model):
    line = one_error_line(before_model["no_data_dir"])
    assert "--data-dir" in line and "no-such-folder does not exist" in line


@pytest.mark.parametrize(
    ("name", "needle"),
    [("not_a_url", "'not-a-url' is not a URL"), ("ftp", "uses ftp://"), ("no_host", "names no host")],
)
def test_bad_base_urls_are_refused_before_anything_runs(before_model, name, needle):
    line = one_error_line(before_model[name])
    assert needle in line and "http://127.0.0.1:8000/v1" in line
    assert not (before_model["_tmp"] / f"home-{name}" / "store.sqlite").exists()  # no store, no run


def test_nothing_reached_the_server(before_model):
    """Records, data folders and URLs are checked before a model loads: not even GET /v1/models."""
    server = before_model["_server"]
    assert (server.gets, server.posts) == (0, 0)
    assert before_model["_wall"] < 120


# ---------------------------------------------------------------- malformed replies and a hanging server


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (("raw", "application/json", b'{"choices": ["str"]}'), "with a choice that is not an object"),
        (("raw", "text/html", b"<html><head><title>502 Bad Gateway</title></head></html>"),
         "with an HTML page titled '502 Bad Gateway' instead of JSON"),
    ],
)  # fmt: skip
def test_malformed_server_replies_name_the_server(fake_server, shared_data, tmp_path, body, needle):
    server = fake_server(body)
    proc = subprocess.run([*CLI, *run_args(server.url, shared_data, "--samples", "2")], env=_env(tmp_path),
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    line = one_error_line(proc)
    assert f"The server at {server.url}" in line and needle in line


def test_a_hanging_server_is_bounded_and_its_retries_are_shown(fake_server, shared_data, tmp_path):
    """Every try hangs: each is cut at --timeout, retried, and the item is counted as failed (exit 3)."""
    server = fake_server("hang")
    began = time.perf_counter()
    proc = subprocess.run(
        [*CLI, *run_args(server.url, shared_data, "--samples", "1", "--timeout", "1", "--max-retries", "2")],
        env=_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    wall = time.perf_counter() - began
    line = incomplete_line(proc, allow_before="retry ")
    assert line.startswith("error: 1 item(s) failed and are not scored (smollm2_135m · gsm8k: ")
    assert "failed POST /completions 3 times (last: no reply within 1 s" in line and "--timeout" in line
    retries = [x for x in proc.stderr.splitlines() if x.startswith("retry ")]
    assert [x.split(" after ")[0] for x in retries] == ["retry 1/2", "retry 2/2"]
    assert all("no reply within 1 s" in x and server.url.removesuffix("/v1") in x for x in retries)
    assert wall < 30, wall  # 3 tries of 1 s + backoff + start-up, not 733 s


def incomplete_line(proc: subprocess.CompletedProcess, allow_before: str | None = None) -> str:
    """The one sentence of a run that finished with failed items (exit 3, the score table on stdout)."""
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "value ± stderr (n)" in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and "running the same command again retries them" in lines[-1]
    assert all(allow_before and line.startswith(allow_before) for line in lines[:-1]), proc.stderr
    return lines[-1]


# ---------------------------------------------------------------- a flaky server: nothing it answered is lost


def _samples(home: Path) -> dict[str, tuple]:
    with sqlite3.connect(home / "store.sqlite") as db:
        rows = db.execute("SELECT item_id, output, extracted, target, metrics FROM samples").fetchall()
    return {r[0]: r[1:] for r in rows}


def _cached(home: Path) -> int:
    with sqlite3.connect(home / "store.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


def test_a_server_failing_40_percent_loses_nothing_and_reruns_finish(fake_server, shared_data, tmp_path):
    items = 12
    args = ("--samples", str(items), "--concurrency", "4", "--max-retries", "0")
    flaky = fake_server("flaky")
    home = tmp_path / "flaky"
    runs = []
    for attempt in range(15):
        timeout = ("--timeout", str(30 + attempt))  # how patiently a server is asked is no part of the run
        proc = subprocess.run([*CLI, *run_args(flaky.url, shared_data, *args, *timeout)], env=_env(home),
                              capture_output=True, text=True, timeout=180)  # fmt: skip
        runs.append((proc.returncode, _cached(home), len(_samples(home))))
        if proc.returncode == 0:
            break
        line = incomplete_line(proc, allow_before="retry ")  # the run went on past each failure
        assert "failed POST /completions once (last: HTTP 500 (flaky))" in line
        assert runs[-1][2] == runs[-1][1]  # every answer that arrived was scored and stored (one per item)
    first_code, first_cached, _ = runs[0]
    assert first_code == 3 and first_cached > 0, runs  # the first failing run kept what was answered
    assert runs[-1][0] == 0, runs
    assert all(b[1] >= a[1] and b[2] >= a[2] for a, b in zip(runs, runs[1:], strict=False)), runs  # never lost
    assert flaky.answered == items  # each request was answered exactly once over all the reruns
    with sqlite3.connect(home / "store.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1  # every rerun resumed the same run

    healthy = fake_server("ok")
    home_ok = tmp_path / "healthy"
    proc = subprocess.run([*CLI, *run_args(healthy.url, shared_data, *args)], env=_env(home_ok),
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert _samples(home) == _samples(home_ok) and len(_samples(home)) == items


def _plan(tmp_path, shared_data, open_backend_fn, samples=10):
    from evalmap.backends import BackendOptions
    from evalmap.catalog.loader import load_catalog
    from evalmap.executors.local import RunOptions, run_plan
    from evalmap.store import Store
    from evalmap.tasks.base import TaskConfig

    store = Store(tmp_path / "store.sqlite")
    options = RunOptions(backend=BackendOptions(), task=TaskConfig(data_dir=str(shared_data)))
    return store, lambda: run_plan(
        load_catalog(), [("smollm2_135m", "gsm8k", samples)], options, store, open_backend_fn=open_backend_fn
    )


def test_a_failing_server_fails_items_not_the_run(fake_server, shared_data, tmp_path):
    """In process: 40% of POSTs fail, none is retried; the run goes on, every answer that arrived is
    cached and scored, the rest are counted as failed with their error, and the job reads incomplete."""
    from evalmap.backends.openai_backend import OpenAIBackend

    flaky = fake_server("flaky")
    store, run = _plan(tmp_path, shared_data, lambda model, options: OpenAIBackend(flaky.url, "m", max_retries=0))
    (job,) = run().results
    cached = store.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    samples = store.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    assert cached == flaky.answered > 0 and samples == cached == job.n  # one request per gsm8k item
    assert job.failed == 10 - job.n > 0 and "HTTP 500" in job.failure
    assert store.db.execute("SELECT status FROM jobs").fetchone()[0] == "incomplete"
    assert store.db.execute("SELECT COUNT(*) FROM failures").fetchone()[0] == job.failed


class _OldStyleBackend:
    """An engine written before `on_response` existed: it answers whole calls."""

    def __init__(self):
        from evalmap.backends.base import BackendInfo, Capabilities

        self.info = BackendInfo("old", "1", "m", "fp")
        self.capabilities = Capabilities()
        self.calls = 0

    def generate(self, requests):
        from evalmap.backends.base import Generation

        self.calls += len(requests)
        return [Generation(text=f"The answer is {len(r.prompt) % 7}.") for r in requests]

    def loglikelihood(self, requests):
        raise AssertionError("not asked")

    def close(self):
        pass


def test_engines_without_on_response_still_work_and_are_cached(shared_data, tmp_path):
    engine = _OldStyleBackend()
    store, run = _plan(tmp_path, shared_data, lambda model, options: engine, samples=5)
    assert run().results[0].n == 5 and engine.calls == 5
    assert store.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 5
