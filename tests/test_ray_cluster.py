"""`evalmap run --executor ray` against a two-node Ray cluster on 127.0.0.1 (`ray start --head` and
`ray start --address`, started and stopped here), one CPU per node, so the two replicas of the embedded
SmolLM2 (llama.cpp) land on different nodes: the same samples and scores as the local executor, and a
driver killed with SIGKILL resumes to them, asking the model only for what was not stored.

Each node is a `ray start --block` child of this test; stopping it (SIGTERM) stops that node's processes
and nothing else (never `ray stop`, which would stop every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import evalmap

pytest.importorskip("ray", reason="Ray is not installed (pip install 'evalmap[ray]')")
pytestmark = pytest.mark.slow

CLI = [sys.executable, "-c", "from evalmap.cli import main; main()"]
RAY = [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]
DATASETS = "arc_challenge,winogrande"
# A cluster that binds 127.0.0.1 only, for this test: no token to hand between the nodes and the driver.
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nodes(address: str) -> int:
    probe = (f"import ray; ray.init(address={address!r}, log_to_driver=False, logging_level='ERROR'); "
             "print(sum(n['Alive'] for n in ray.nodes()))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, timeout=120)
    return int(done.stdout.strip() or 0) if done.returncode == 0 else 0


@pytest.fixture(scope="module")
def two_nodes():
    folder = tempfile.mkdtemp(prefix="evr", dir="/tmp")  # short: Ray's socket paths live under it
    port = _free_port()
    address = f"127.0.0.1:{port}"
    small = ["--num-cpus", "1", "--object-store-memory", str(80 * 2**20), "--disable-usage-stats",
             "--node-ip-address", "127.0.0.1", "--block"]
    nodes = []
    try:
        with open(Path(folder) / "head.log", "w") as log:
            nodes.append(subprocess.Popen(
                [*RAY, "start", "--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir",
                 str(Path(folder) / "ray"), *small], stdout=log, stderr=subprocess.STDOUT, env=ENV,
            ))
        deadline = time.monotonic() + 120
        while _nodes(address) < 1:
            assert time.monotonic() < deadline and nodes[0].poll() is None, (Path(folder) / "head.log").read_text()
            time.sleep(1)
        with open(Path(folder) / "worker.log", "w") as log:
            nodes.append(subprocess.Popen([*RAY, "start", "--address", address, *small], stdout=log,
                                          stderr=subprocess.STDOUT, env=ENV))
        while _nodes(address) < 2:
            assert time.monotonic() < deadline and nodes[1].poll() is None, (Path(folder) / "worker.log").read_text()
            time.sleep(1)
        yield address
    finally:
        for node in reversed(nodes):
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                node.kill()
        shutil.rmtree(folder, ignore_errors=True)


def cli_run(address: str, store: Path, data: Path, samples: int, *extra: str, **popen):
    args = [*CLI, "run", "--models", "smollm2_135m", "--datasets", DATASETS, "--samples", str(samples),
            "--backend", "llamacpp", "--data-dir", str(data), "--store", str(store), "--executor", "ray",
            "--ray-address", address, "--replicas", "2", "--quiet", *extra]
    env = {**ENV, "EVALMAP_HOME": str(store.parent)}
    if popen:
        return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)


def timeless(sample: dict) -> dict:
    output = [{k: v for k, v in o.items() if k != "latency_s"} if isinstance(o, dict) else o
              for o in sample["output"]]
    return {**{k: v for k, v in sample.items() if k != "latency_s"}, "output": output}


def same_run(a, b) -> None:
    assert [timeless(s) for s in a.samples()] == [timeless(s) for s in b.samples()]
    assert {(j.dataset, s.name): (s.value, s.stderr, s.n) for j in a.jobs for s in j.scores} == \
        {(j.dataset, s.name): (s.value, s.stderr, s.n) for j in b.jobs for s in j.scores}


def local(tmp_path: Path, data: Path, samples: int):
    return evalmap.evaluate("smollm2_135m", DATASETS, samples, "llamacpp", data_dir=str(data),
                            store=tmp_path / "local.sqlite", quiet=True)


def test_two_nodes_run_the_replicas_and_score_as_locally(two_nodes, tmp_path, shared_data, embedded_on_llamacpp):
    store = tmp_path / "home" / "store.sqlite"
    done = cli_run(two_nodes, store, shared_data, 8, "--output", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    workers = json.loads((tmp_path / "out" / "results.json").read_text())["workers"]
    assert len({w["node_id"] for w in workers}) == 2  # one replica on each node
    assert sum(w["samples"] for w in workers) == 16 and all(w["tokens_per_s"] > 0 for w in workers)
    same_run(evalmap.load_run("latest", store=store), local(tmp_path, shared_data, 8))


def test_a_killed_driver_resumes_to_the_local_scores(two_nodes, tmp_path, shared_data, embedded_on_llamacpp):
    store = tmp_path / "home" / "store.sqlite"
    n = 24
    proc = cli_run(two_nodes, store, shared_data, n, popen=True)
    deadline, stored = time.monotonic() + 300, 0
    while time.monotonic() < deadline and proc.poll() is None and not stored:
        time.sleep(0.2)
        try:
            with sqlite3.connect(store) as db:
                stored = db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        except sqlite3.OperationalError:  # the file exists a moment before its tables do
            continue
    assert proc.poll() is None and 0 < stored < 2 * n, "the run finished or stored nothing before the kill"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    with sqlite3.connect(store) as db:
        calls_before = db.execute("SELECT SUM(model_calls) FROM jobs").fetchone()[0]
        stored = db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]

    resumed = cli_run(two_nodes, store, shared_data, n)
    assert resumed.returncode == 0, resumed.stderr
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*), MIN(status) FROM runs").fetchone() == (1, "finished")
        rows = db.execute("SELECT job_id, item_id, COUNT(*) FROM samples GROUP BY job_id, item_id").fetchall()
        calls_after = db.execute("SELECT SUM(model_calls) FROM jobs").fetchone()[0]
    assert len(rows) == 2 * n and all(count == 1 for *_, count in rows)
    reference = local(tmp_path, shared_data, n)
    # stored items' answers are cached: the resumed driver asks only for what was not stored (4 + 2 a pair)
    assert calls_after - calls_before <= (2 * n - stored) * 4
    assert calls_after <= reference.model_calls + 2 * 4  # at most what the two workers had in flight was lost
    same_run(evalmap.load_run("latest", store=store), reference)
