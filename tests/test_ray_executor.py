"""--executor ray on a real Ray cluster started in this process (`ray.init(num_cpus=2)`), running the embedded
SmolLM2 on llama.cpp in CPU actors: the same samples and scores as the local executor, each item stored once,
per-worker throughput in results.json, and a worker killed mid-run costs nothing but time.

Ray is kept small on the shared machine: 2 CPUs, an 80 MB object store, no dashboard.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading

import pytest

import evalmap
from evalmap.executors.local import Reporter

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'evalmap[ray]')")
psutil = pytest.importorskip("psutil")

CLI = [sys.executable, "-c", "from evalmap.cli import main; main()"]
DATASETS = "arc_challenge,winogrande"


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False)
    yield ray
    ray.shutdown()


def run(store, data, samples, **options):
    return evalmap.evaluate("smollm2_135m", DATASETS, samples, "llamacpp", data_dir=str(data), store=store,
                            quiet=True, **options)


def timeless(sample: dict) -> dict:
    """A stored sample less what differs between two runs of the same items: latencies."""
    output = [{k: v for k, v in o.items() if k != "latency_s"} if isinstance(o, dict) else o
              for o in sample["output"]]
    return {**{k: v for k, v in sample.items() if k != "latency_s"}, "output": output}


def same_run(a, b) -> None:
    """Two runs of the same items: equal samples (in dataset order) and equal scores."""
    assert [timeless(s) for s in a.samples()] == [timeless(s) for s in b.samples()]
    assert {(j.dataset, s.name): (s.value, s.stderr, s.n) for j in a.jobs for s in j.scores} == \
        {(j.dataset, s.name): (s.value, s.stderr, s.n) for j in b.jobs for s in j.scores}


def stored_once(store) -> tuple[int, int]:
    """(samples, distinct items) in a store."""
    with sqlite3.connect(store) as db:
        return db.execute("SELECT COUNT(*), COUNT(DISTINCT job_id || '/' || item_id) FROM samples").fetchone()


def test_without_ray_the_executor_says_how_to_install_it(tmp_path):
    """Ray made unimportable in a fresh interpreter: one sentence naming the extra, exit 2, nothing stored."""
    code = ("import sys; sys.modules['ray'] = None; from evalmap.cli import main; sys.argv = ['evalmap'] + "
            "sys.argv[1:]; main()")
    done = subprocess.run(
        [sys.executable, "-c", code, "run", "--models", "smollm2_135m", "--datasets", "arc_challenge", "--samples",
         "2", "--executor", "ray", "--store", str(tmp_path / "s.sqlite")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "EVALMAP_HOME": str(tmp_path)},
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: --executor ray needs Ray, which is not installed; install it with `pip install 'evalmap[ray]'`, "
        "or leave out --executor ray to run in this process."
    ]
    assert not (tmp_path / "s.sqlite").exists()


def test_ray_options_without_the_ray_executor_are_one_sentence(tmp_path):
    for options, sentence in (
        ({"replicas": 2}, "--ray-address and --replicas choose where --executor ray runs; add --executor ray."),
        ({"ray_address": "auto"}, "--ray-address and --replicas choose where --executor ray runs; add --executor ray."),
        ({"executor": "dask"}, "Unknown executor 'dask'; choose local or ray."),
        ({"executor": "ray", "replicas": 0}, "replicas must be a whole number, 1 or more (got 0)."),
    ):
        with pytest.raises(evalmap.EvalmapError) as caught:
            evalmap.evaluate("smollm2_135m", "winogrande", 2, store=tmp_path / "s.sqlite", quiet=True, **options)
        assert str(caught.value) == sentence
    assert not (tmp_path / "s.sqlite").exists()


def test_an_unreachable_cluster_is_one_sentence(tmp_path, shared_data):
    """Nothing listens at the address: exit 2 within seconds (Ray alone would retry for minutes), no run."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"  # closed again before the run: nothing listens there
    done = subprocess.run(
        [*CLI, "run", "--models", "smollm2_135m", "--datasets", "arc_challenge", "--samples", "2", "--backend",
         "llamacpp", "--executor", "ray", "--ray-address", address, "--store", str(tmp_path / "s.sqlite"),
         "--data-dir", str(shared_data)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "EVALMAP_HOME": str(tmp_path)},
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: Cannot reach the Ray cluster at {address} (Connection refused); start one with `ray start "
        "--head` and pass its address (HOST:6379) with --ray-address, or leave out --ray-address to start Ray "
        "in this process."
    ]
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


@pytest.mark.slow
def test_two_replicas_store_and_score_exactly_as_the_local_executor(ray_cluster, tmp_path, shared_data,
                                                                    embedded_on_llamacpp):
    local = run(tmp_path / "local.sqlite", shared_data, 8)
    on_ray = run(tmp_path / "ray.sqlite", shared_data, 8, executor="ray", replicas=2, output=tmp_path / "out")
    same_run(on_ray, local)
    assert on_ray.status == "finished" and on_ray.model_calls == local.model_calls == 8 * 4 + 8 * 2
    assert stored_once(tmp_path / "ray.sqlite") == (16, 16)
    workers = json.loads((tmp_path / "out" / "results.json").read_text())["workers"]
    assert len(workers) == 2 and {w["status"] for w in workers} == {"finished"}
    assert all(w["samples"] > 0 and w["tokens_per_s"] > 0 and w["busy_seconds"] > 0 for w in workers)
    assert sum(w["samples"] for w in workers) == 16 and sum(w["model_calls"] for w in workers) == 48

    again = run(tmp_path / "ray.sqlite", shared_data, 8, executor="ray", replicas=2)  # a finished run: all cached
    assert again.run_id != on_ray.run_id and again.model_calls == 0 and again.cache_hits == 48
    same_run(again, local)


class KillOneWorker(Reporter):
    """Once samples have come back, SIGKILL one worker process of this Ray session (a descendant of this test
    process: the in-process cluster's raylet starts them)."""

    def __init__(self):
        self.killed: int | None = None
        self.messages: list[str] = []
        self.lock = threading.Lock()

    def advance(self, model, dataset, n):
        with self.lock:
            if self.killed is None:
                for proc in psutil.Process().children(recursive=True):
                    try:
                        title = " ".join(proc.cmdline())
                    except psutil.Error:
                        continue
                    if title.startswith("ray::ModelWorker"):
                        proc.kill()
                        self.killed = proc.pid
                        break

    def message(self, text):
        self.messages.append(text)


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(ray_cluster, tmp_path, shared_data,
                                                             embedded_on_llamacpp):
    killer = KillOneWorker()
    on_ray = run(tmp_path / "ray.sqlite", shared_data, 24, executor="ray", replicas=2, reporter=killer)
    assert killer.killed is not None, "no worker was running when the first samples came back"
    assert any("died" in m and "go to another worker" in m for m in killer.messages), killer.messages
    assert on_ray.status == "finished" and on_ray.failed == 0
    assert stored_once(tmp_path / "ray.sqlite") == (48, 48)
    assert [w["pid"] for w in on_ray.workers if w["status"] == "died"] == [killer.killed]
    local = run(tmp_path / "local.sqlite", shared_data, 24)
    same_run(on_ray, local)
    # the dead worker's answers that came back are cached: at most what it had in flight is asked again
    assert local.model_calls <= on_ray.model_calls <= local.model_calls + 8
