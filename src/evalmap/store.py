"""SQLite store: runs, jobs, per-sample records, scores, and the response cache.

One file in WAL mode (readers never block the writer, a kill -9 loses at most the
open transaction). The response cache is keyed by (model fingerprint, request
hash) only, never by batch size or run, so any later run of the same model on the
same request is free.

The file carries evalmap's SQLite application id. Before anything is written, an
existing file is checked to be empty, an evalmap store, or a store of an earlier
evalmap (exactly evalmap's tables, no id yet; it is then stamped); a damaged or
foreign file is left untouched and the user is told what to do. Each run row names
the process that runs it (pid, host, boot id, process start time): a second process
cannot attach to a run whose owner is alive, and a run whose owner is gone
(kill -9, crash, reboot) reads as "interrupted" and resumes like any other.

Each finished job flags one of its scores as its headline (`scores.headline = 1`): the
metric that stands for the job in the terminal table, results.json, group scores, the
report and `evalmap compare`. It is chosen once, when the job finishes (runner.finish_job);
readers never choose again.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evalmap.backends.base import Request, Response, response_from_dict
from evalmap.errors import EvalmapError

APPLICATION_ID = 0x45564D50  # "EVMP" in the SQLite header: this file is an evalmap store
SCHEMA_VERSION = 6  # PRAGMA user_version; 0 = a store of an evalmap that did not stamp its files
# Schema history (columns and tables are only ever added): 1 = run owner columns; 2 = scores.headline;
# 3 = the failures table; 4 = responses.job_id (the job that asked); 5 = the judge of a judged job
# (JUDGE_COLUMNS: who judged, how many judge calls and tokens); 6 = runs.error (why a failed run failed).
TABLES = ("runs", "jobs", "samples", "scores", "responses", "failures")
LEGACY_TABLES = TABLES[:5]  # what an unstamped store of an earlier evalmap holds
OWNER_COLUMNS = ("pid", "host", "boot_id", "proc_start")  # who runs a run (added in schema 1)
# A judged job's judge (model, engine, fingerprint, judge prompt hash; JSON) and what judging cost (schema 5).
JUDGE_COLUMNS = {"judge": "TEXT", "judge_calls": "INTEGER NOT NULL DEFAULT 0",
                 "judge_tokens": "INTEGER NOT NULL DEFAULT 0"}
SQLITE_MAGIC = b"SQLite format 3\x00"
JOB_JSON = ("backend", "task_config", "judge")  # the JSON columns of a job row

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, run_key TEXT NOT NULL, created REAL NOT NULL, finished REAL,
    status TEXT NOT NULL, args TEXT NOT NULL, seed INTEGER NOT NULL, catalog_version TEXT NOT NULL,
    versions TEXT NOT NULL, wall_seconds REAL, pid INTEGER, host TEXT, boot_id TEXT, proc_start TEXT, error TEXT
);
CREATE INDEX IF NOT EXISTS runs_key ON runs(run_key);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(id), model TEXT NOT NULL,
    dataset TEXT NOT NULL, backend TEXT NOT NULL, task_config TEXT NOT NULL, prompt_hash TEXT NOT NULL,
    status TEXT NOT NULL, n_items INTEGER NOT NULL, wall_seconds REAL NOT NULL DEFAULT 0,
    model_calls INTEGER NOT NULL DEFAULT 0, cache_hits INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
    judge TEXT, judge_calls INTEGER NOT NULL DEFAULT 0, judge_tokens INTEGER NOT NULL DEFAULT 0,
    UNIQUE(run_id, model, dataset)
);
CREATE TABLE IF NOT EXISTS samples (
    job_id TEXT NOT NULL REFERENCES jobs(id), item_id TEXT NOT NULL, position INTEGER NOT NULL,
    prompt TEXT NOT NULL, output TEXT NOT NULL, extracted TEXT, target TEXT, metrics TEXT NOT NULL,
    details TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    latency_s REAL NOT NULL, PRIMARY KEY (job_id, item_id)
);
CREATE TABLE IF NOT EXISTS scores (
    job_id TEXT NOT NULL REFERENCES jobs(id), name TEXT NOT NULL, value REAL, stderr REAL,
    ci_low REAL, ci_high REAL, n INTEGER NOT NULL, method TEXT NOT NULL, headline INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, name)
);
CREATE TABLE IF NOT EXISTS responses (
    fingerprint TEXT NOT NULL, request_hash TEXT NOT NULL, kind TEXT NOT NULL, response TEXT NOT NULL,
    created REAL NOT NULL, job_id TEXT, PRIMARY KEY (fingerprint, request_hash)
);
"""
# Items the engine gave up on in a job's latest attempt (a rerun clears and retries them).
FAILURES_TABLE = """CREATE TABLE IF NOT EXISTS failures (
    job_id TEXT NOT NULL REFERENCES jobs(id), item_id TEXT NOT NULL, position INTEGER NOT NULL,
    error TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (job_id, item_id)
)"""


class StoreError(EvalmapError):
    """The store cannot be used: its folder is not writable, or the file is damaged or not evalmap's."""


class RunBusyError(EvalmapError):
    """Another live process is running this very run."""


def default_home() -> Path:
    return Path(os.environ.get("EVALMAP_HOME", Path.home() / ".cache" / "evalmap"))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


# ---------------------------------------------------------------- where the store lives, and what the file is

_WHAT_TO_DO = "set EVALMAP_HOME or pass --store to a file in a writable folder"


def _check_location(path: Path) -> None:
    """The store's folder exists (or is made) and is writable, and the path is not a folder."""
    if path.is_dir():
        raise StoreError(
            f"The store path {path} is a folder, not a file; pass --store with a file path such as "
            f"{path / 'store.sqlite'}."
        )
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise StoreError(
            f"Cannot create the store folder {folder}: {blocker} is a file, not a folder; {_WHAT_TO_DO}."
        ) from None
    except OSError as exc:
        raise StoreError(f"Cannot create the store folder {folder} ({exc.strerror}); {_WHAT_TO_DO}.") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"The store folder {folder} is not writable; {_WHAT_TO_DO}.")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"The store {path} is read-only; make it writable, or {_WHAT_TO_DO}.")


def _damaged(path: Path, why: str) -> StoreError:
    return StoreError(
        f"The store {path} is damaged ({why}); evalmap left it untouched: move it aside "
        f"(e.g. `mv {path} {path}.bad`) to start a new store there, or pass --store with another file."
    )


def _inspect(path: Path) -> str:
    """'new' (no file, or an empty one), 'legacy' (an unstamped store of an earlier evalmap) or 'evalmap'.

    Only reads: the header bytes, then (for an unstamped file) a read-only connection that creates
    no -wal/-shm files beside it unless they are in use already. Raises StoreError for a damaged
    file or another program's database, so neither is ever written to.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "new"
    if size == 0:
        return "new"
    with path.open("rb") as fh:
        header = fh.read(100)
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise _damaged(path, "it is not an SQLite database")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    size_known = pages > 0 and header[24:28] == header[92:96]  # SQLite's rule for a valid in-header size
    wal = Path(f"{path}-wal")
    wal_in_use = wal.exists() and wal.stat().st_size > 0
    if size_known and not wal_in_use and size < pages * page_size:
        raise _damaged(path, f"it is truncated: {size:,} of {pages * page_size:,} bytes")
    app_id, version = int.from_bytes(header[68:72], "big"), int.from_bytes(header[60:64], "big")
    tables: set[str] = set()
    if app_id == 0:  # an empty database, a store of an earlier evalmap, or another program's: look inside
        mode = "ro" if wal_in_use else "ro&immutable=1"  # immutable: no lock, no -shm; the file is all there is
        try:
            ro = sqlite3.connect(f"{path.resolve().as_uri()}?mode={mode}", uri=True, timeout=30)
            try:
                app_id = ro.execute("PRAGMA application_id").fetchone()[0]  # the header may lag the WAL
                version = ro.execute("PRAGMA user_version").fetchone()[0]
                tables = {
                    r[0] for r in ro.execute("SELECT name FROM sqlite_master WHERE type='table'")
                    if not r[0].startswith("sqlite_")
                }
            finally:
                ro.close()
        except sqlite3.OperationalError as exc:  # locked, unopenable, ...: not (known to be) the file's fault
            if getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
                raise _damaged(path, str(exc)) from None
            raise StoreError(f"Cannot read the store {path} ({exc}); {_WHAT_TO_DO}.") from None
        except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
            raise _damaged(path, str(exc)) from None
    if app_id == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"The store {path} was written by a newer evalmap (schema {version}; this one knows "
                f"{SCHEMA_VERSION}); upgrade evalmap, or pass --store with another file."
            )
        return "evalmap"
    if app_id == 0 and version == 0 and not tables:
        return "new"
    if app_id == 0 and version == 0 and tables == set(LEGACY_TABLES):
        return "legacy"
    what = f"tables: {', '.join(sorted(tables))}" if tables else f"application id {app_id}"
    raise StoreError(
        f"{path} is another program's SQLite database ({what}), not an evalmap store, and evalmap left it "
        f"untouched; pass --store with another file, or move that file aside."
    )


# ---------------------------------------------------------------- which process runs a run


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        try:
            import psutil

            return f"boot@{psutil.boot_time():.0f}"
        except Exception:  # noqa: BLE001 - no way to tell reboots apart: pid + start time still do
            return None


def _proc_state(pid: int) -> tuple[str | None, str | None]:
    """(state letter, start time) of a process, (None, None) where they cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return fields[0], f"ticks:{fields[19]}"
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        proc = psutil.Process(pid)
        return ("Z" if proc.status() == psutil.STATUS_ZOMBIE else "R"), f"t:{proc.create_time():.2f}"
    except Exception:  # noqa: BLE001 - psutil missing, or the process is gone
        return None, None


def this_process() -> dict:
    """The owner columns of a run row for the calling process."""
    return {
        "pid": os.getpid(), "host": socket.gethostname(), "boot_id": _boot_id(),
        "proc_start": _proc_state(os.getpid())[1],
    }


def owner_alive(row: sqlite3.Row | dict) -> bool:
    """Is the process named by a run row still the one running it? A reused pid is not (start time)."""
    pid = row["pid"]
    if pid is None:
        return False  # an earlier evalmap's row, or a crash before the owner was recorded
    if row["host"] and row["host"] != socket.gethostname():
        return True  # another machine sharing the store: cannot tell, so never steal its run
    boot = _boot_id()
    if row["boot_id"] and boot and row["boot_id"] != boot:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        try:
            import psutil

            return psutil.pid_exists(pid)
        except ImportError:
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    state, start = _proc_state(pid)
    if state == "Z":
        return False
    return not (row["proc_start"] and start and start != row["proc_start"])


class Store:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_home() / "store.sqlite"
        _check_location(self.path)
        state = _inspect(self.path)
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot open the store {self.path} ({exc}); {_WHAT_TO_DO}.") from None
        self.db.row_factory = sqlite3.Row
        try:
            if state != "evalmap":
                with self._write():  # user_version stays as it was: _migrate brings older tables up
                    for statement in [*SCHEMA.split(";"), FAILURES_TABLE]:
                        if statement.strip():
                            self.db.execute(statement)
                    self.db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self._migrate()
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.mark_interrupted()
        except sqlite3.Error as exc:
            self.db.close()
            if not isinstance(exc, sqlite3.OperationalError) or getattr(exc, "sqlite_errorname", "") in (
                "SQLITE_CORRUPT", "SQLITE_NOTADB"
            ):
                raise _damaged(self.path, str(exc)) from None
            raise StoreError(f"Cannot write to the store {self.path} ({exc}); {_WHAT_TO_DO}.") from None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction, taken up front so a read-then-write cannot interleave with another writer
        (inside a transaction that is already open, its statements simply join that one)."""
        if self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _migrate(self) -> None:
        """Bring a store of an earlier schema up to this one (columns are only ever added)."""
        if self.db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        with self._write():
            have = {r[1] for r in self.db.execute("PRAGMA table_info(runs)")}
            kinds = ("INTEGER", "TEXT", "TEXT", "TEXT", "TEXT")
            for column, kind in zip((*OWNER_COLUMNS, "error"), kinds, strict=True):
                if column not in have:
                    self.db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
            if "headline" not in {r[1] for r in self.db.execute("PRAGMA table_info(scores)")}:
                self.db.execute("ALTER TABLE scores ADD COLUMN headline INTEGER NOT NULL DEFAULT 0")
            self.db.execute(FAILURES_TABLE)
            if "job_id" not in {r[1] for r in self.db.execute("PRAGMA table_info(responses)")}:
                self.db.execute("ALTER TABLE responses ADD COLUMN job_id TEXT")
            have = {r[1] for r in self.db.execute("PRAGMA table_info(jobs)")}
            for column, kind in JUDGE_COLUMNS.items():
                if column not in have:
                    self.db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
            self._flag_earlier_headlines()
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _flag_earlier_headlines(self) -> None:
        """Jobs scored before the headline was stored get it now, by the rule finish_job applies."""
        rows = self.db.execute(
            "SELECT id, dataset, task_config FROM jobs j WHERE EXISTS (SELECT 1 FROM scores s WHERE s.job_id=j.id) "
            "AND NOT EXISTS (SELECT 1 FROM scores s WHERE s.job_id=j.id AND s.headline=1)"
        ).fetchall()
        if not rows:
            return
        from evalmap.tasks.registry import headline_metric

        for row in rows:
            try:
                mode = (json.loads(row["task_config"]) or {}).get("mode")
            except (ValueError, AttributeError):
                mode = None
            self.flag_headline(row["id"], headline_metric(row["dataset"], mode))

    # ------------------------------------------------------------ runs and jobs

    def mark_interrupted(self) -> list[str]:
        """Runs left "running" by a process that is gone (kill -9, crash, reboot) become "interrupted"."""
        rows = self.db.execute(
            "SELECT id, pid, host, boot_id, proc_start FROM runs WHERE status='running'"
        ).fetchall()
        gone = [r for r in rows if not owner_alive(r)]
        marked = []
        if gone:
            with self._write():
                for r in gone:
                    changed = self.db.execute(
                        "UPDATE runs SET status='interrupted' WHERE id=? AND status='running' "
                        "AND pid IS ? AND boot_id IS ? AND proc_start IS ?",
                        (r["id"], r["pid"], r["boot_id"], r["proc_start"]),
                    ).rowcount
                    if changed:
                        self.db.execute(
                            "UPDATE jobs SET status='interrupted' WHERE run_id=? AND status='running'", (r["id"],)
                        )
                        marked.append(r["id"])
        return marked

    def open_run(self, run_key: str, args: dict, seed: int, catalog_version: str, versions: dict) -> tuple[str, bool]:
        """Resume the unfinished run with these arguments, or start a new one. Returns (id, resumed).

        Raises RunBusyError when a live process is running that same run.
        """
        me = this_process()
        owner = (me["pid"], me["host"], me["boot_id"], me["proc_start"])
        with self._write():
            row = self.db.execute(
                "SELECT id, status, pid, host, boot_id, proc_start FROM runs WHERE run_key=? AND status!='finished' "
                "ORDER BY created DESC LIMIT 1",
                (run_key,),
            ).fetchone()
            if row:
                if row["status"] == "running" and owner_alive(row):
                    where = f" on {row['host']}" if row["host"] and row["host"] != me["host"] else ""
                    raise RunBusyError(
                        f"This run is already running (pid {row['pid']}{where}, run {row['id']}); wait for it to "
                        "finish, or stop that process and run the same command again to resume it."
                    )
                self.db.execute(
                    "UPDATE runs SET status='running', pid=?, host=?, boot_id=?, proc_start=? WHERE id=?",
                    (*owner, row["id"]),
                )
                return row["id"], True
            run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
            self.db.execute(
                "INSERT INTO runs(id, run_key, created, status, args, seed, catalog_version, versions, "
                "pid, host, boot_id, proc_start) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, run_key, time.time(), "running", _dumps(args), seed, catalog_version, _dumps(versions),
                 *owner),
            )
            return run_id, False

    def finish_run(self, run_id: str, status: str, wall_seconds: float, error: str | None = None) -> None:
        """End a run: finished, incomplete (items failed), interrupted (Ctrl-C) or failed (with its error,
        kept until the run is resumed and ends again)."""
        with self._write():
            self.db.execute(
                "UPDATE runs SET status=?, finished=?, wall_seconds=COALESCE(wall_seconds,0)+?, error=? WHERE id=?",
                (status, time.time(), wall_seconds, error, run_id),
            )
            if status != "finished":
                self.db.execute("UPDATE jobs SET status=? WHERE run_id=? AND status='running'", (status, run_id))

    def open_job(
        self, run_id: str, model: str, dataset: str, backend: dict, task_config: dict, prompt_hash: str, n_items: int,
        judge: dict | None = None,
    ) -> str:
        """The job's id (opened again on a resume); `judge` is a judged job's judge (model, engine, ...)."""
        judged = _dumps(judge) if judge is not None else None
        row = self.db.execute(
            "SELECT id FROM jobs WHERE run_id=? AND model=? AND dataset=?", (run_id, model, dataset)
        ).fetchone()
        if row:
            self.db.execute(
                "UPDATE jobs SET backend=?, judge=?, status='running' WHERE id=?", (_dumps(backend), judged, row["id"])
            )
            return row["id"]
        job_id = f"{run_id}/{model}/{dataset}"
        self.db.execute(
            "INSERT INTO jobs(id, run_id, model, dataset, backend, task_config, prompt_hash, status, n_items, judge) "
            "VALUES (?,?,?,?,?,?,?,?,?,?)",
            (job_id, run_id, model, dataset, _dumps(backend), _dumps(task_config), prompt_hash, "running", n_items,
             judged),
        )
        return job_id

    def add_job_counters(self, job_id: str, **counters: float) -> None:
        sets = ", ".join(f"{k}={k}+?" for k in counters)
        self.db.execute(f"UPDATE jobs SET {sets} WHERE id=?", (*counters.values(), job_id))

    def finish_job(self, job_id: str, status: str) -> None:
        self.db.execute("UPDATE jobs SET status=? WHERE id=?", (status, job_id))

    def job(self, job_id: str) -> dict:
        row = self.db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _decode(dict(row), JOB_JSON)

    def jobs(self, run_id: str) -> list[dict]:
        rows = self.db.execute("SELECT * FROM jobs WHERE run_id=? ORDER BY rowid", (run_id,)).fetchall()
        return [_decode(dict(r), JOB_JSON) for r in rows]

    def jobs_of(self, dataset: str, model: str | None = None, run: str | None = None) -> list[dict]:
        """A dataset's jobs, newest run first: of one model, and/or of runs whose id is or starts with `run`."""
        sql = "SELECT j.* FROM jobs j JOIN runs r ON r.id = j.run_id WHERE j.dataset=?"
        args: list = [dataset]
        if model is not None:
            sql += " AND j.model=?"
            args.append(model)
        if run is not None:
            sql += " AND (r.id=? OR substr(r.id, 1, ?)=?)"
            args += [run, len(run), run]
        rows = self.db.execute(sql + " ORDER BY r.created DESC, j.rowid", args).fetchall()
        return [_decode(dict(r), JOB_JSON) for r in rows]

    def run(self, run_id: str) -> dict | None:
        row = self.db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return _decode(dict(row), ("args", "versions")) if row else None

    def runs(self, limit: int = 50) -> list[dict]:
        self.mark_interrupted()
        rows = self.db.execute("SELECT * FROM runs ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        return [_decode(dict(r), ("args", "versions")) for r in rows]

    def run_history(self, limit: int | None = None) -> list[dict]:
        """Runs newest first, each with its models, datasets (in job order; a run stopped before its first job
        names those it was asked for) and scored samples counted."""
        self.mark_interrupted()
        rows = self.db.execute(
            "SELECT r.id, r.created, r.finished, r.status, r.error, r.wall_seconds, r.seed, r.args, "
            "(SELECT json_group_array(model) FROM (SELECT DISTINCT model FROM jobs WHERE run_id=r.id ORDER BY rowid)) "
            "AS models, (SELECT json_group_array(dataset) FROM (SELECT DISTINCT dataset FROM jobs WHERE run_id=r.id "
            "ORDER BY rowid)) AS datasets, (SELECT COUNT(*) FROM jobs WHERE run_id=r.id) AS jobs, "
            "(SELECT COUNT(*) FROM samples s JOIN jobs j ON j.id=s.job_id WHERE j.run_id=r.id) AS samples "
            "FROM runs r ORDER BY r.created DESC, r.rowid DESC LIMIT ?",
            (-1 if limit is None else limit,),
        ).fetchall()
        history = []
        for row in rows:
            run = _decode(dict(row), ("models", "datasets", "args"))
            pairs = (run.pop("args") or {}).get("pairs") or []
            if not run["jobs"] and isinstance(pairs, list):
                run["models"] = list(dict.fromkeys(p[0] for p in pairs if isinstance(p, list | tuple) and p))
                run["datasets"] = list(dict.fromkeys(p[1] for p in pairs if isinstance(p, list | tuple) and len(p) > 1))
            history.append(run)
        return history

    def remove_run(self, run_id: str) -> int:
        """Delete a run with its jobs, samples, scores and failures; the response cache stays (it is keyed by
        model and request, so a rerun still costs no model call). Returns the number of samples deleted."""
        with self._write():
            row = self.db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"No run {run_id!r} in {self.path}; `evalmap runs` lists the runs.")
            if row["status"] == "running" and owner_alive(row):
                raise RunBusyError(
                    f"Run {run_id} is running (pid {row['pid']}); stop that process before removing the run."
                )
            jobs = "SELECT id FROM jobs WHERE run_id=?"
            samples = self.db.execute(f"DELETE FROM samples WHERE job_id IN ({jobs})", (run_id,)).rowcount
            for table in ("scores", "failures"):
                self.db.execute(f"DELETE FROM {table} WHERE job_id IN ({jobs})", (run_id,))
            self.db.execute(f"UPDATE responses SET job_id=NULL WHERE job_id IN ({jobs})", (run_id,))
            self.db.execute("DELETE FROM jobs WHERE run_id=?", (run_id,))
            self.db.execute("DELETE FROM runs WHERE id=?", (run_id,))
        return samples

    # ------------------------------------------------------------ samples and scores

    def done_items(self, job_id: str) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT item_id FROM samples WHERE job_id=?", (job_id,))}

    def add_samples(
        self, job_id: str, records: Iterable[dict], failures: Iterable[tuple[str, int, str]] = (), **counters: float
    ) -> None:
        """One transaction: scored samples, items that failed (item id, position, error) and the job's
        counters (model_calls, cache_hits, wall_seconds, tokens: added to what is stored)."""
        rows = [
            (
                job_id, r["item_id"], r["position"], r["prompt"], _dumps(r["output"]), _dumps(r["extracted"]),
                _dumps(r["target"]), _dumps(r["metrics"]), _dumps(r["details"]), r["prompt_tokens"],
                r["completion_tokens"], r["latency_s"],
            )
            for r in records
        ]
        now = time.time()
        with self._write():
            self.db.executemany("INSERT OR IGNORE INTO samples VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            self.db.executemany(
                "INSERT OR REPLACE INTO failures VALUES (?,?,?,?,?)",
                [(job_id, item, position, error, now) for item, position, error in failures],
            )
            if counters:
                self.add_job_counters(job_id, **counters)

    def count_samples(self, job_id: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM samples WHERE job_id=?", (job_id,)).fetchone()[0]

    def failures(self, job_id: str) -> list[dict]:
        """The items of the job's latest attempt that the engine gave up on, in dataset order."""
        rows = self.db.execute("SELECT * FROM failures WHERE job_id=? ORDER BY position", (job_id,))
        return [dict(r) for r in rows]

    def clear_failures(self, job_id: str) -> None:
        with self._write():
            self.db.execute("DELETE FROM failures WHERE job_id=?", (job_id,))

    def samples(self, job_id: str) -> list[dict]:
        rows = self.db.execute("SELECT * FROM samples WHERE job_id=? ORDER BY position", (job_id,)).fetchall()
        return [_decode(dict(r), ("output", "extracted", "target", "metrics", "details")) for r in rows]

    def set_scores(self, job_id: str, scores: list[dict], headline: str | None = None) -> None:
        """Replace the job's scores; `headline` names the one that stands for the job (see flag_headline)."""
        with self._write():
            self.db.execute("DELETE FROM scores WHERE job_id=?", (job_id,))
            self.db.executemany(
                "INSERT INTO scores(job_id, name, value, stderr, ci_low, ci_high, n, method) VALUES (?,?,?,?,?,?,?,?)",
                [
                    (job_id, s["name"], s["value"], s["stderr"], s["ci_low"], s["ci_high"], s["n"], s["method"])
                    for s in scores
                ],
            )
            self.flag_headline(job_id, headline)

    def flag_headline(self, job_id: str, name: str | None) -> None:
        """Flag the job's score `name` as its headline; a job without that score gets its first score."""
        with self._write():
            self.db.execute("UPDATE scores SET headline=0 WHERE job_id=?", (job_id,))
            if name is not None and self.db.execute(
                "UPDATE scores SET headline=1 WHERE job_id=? AND name=?", (job_id, name)
            ).rowcount:
                return
            self.db.execute(
                "UPDATE scores SET headline=1 WHERE rowid=(SELECT MIN(rowid) FROM scores WHERE job_id=?)", (job_id,)
            )

    def scores(self, job_id: str) -> list[dict]:
        """The job's scores in the order its task gave them; `headline` is True on the one that stands for it."""
        rows = self.db.execute("SELECT * FROM scores WHERE job_id=? ORDER BY rowid", (job_id,))
        return [{**dict(r), "headline": bool(r["headline"])} for r in rows]

    def headline(self, job_id: str) -> dict | None:
        """The job's headline score, None while the job has no scores."""
        return next((s for s in self.scores(job_id) if s["headline"]), None)

    # ------------------------------------------------------------ measured speed

    def measured_jobs(self, model: str, backend: str, host: str | None = None) -> dict:
        """Per-job history of a model on an engine on `host` (default this machine), for the planner's fit:
        `jobs` (finished, unjudged jobs that called the model: dataset, task settings, fresh tokens, calls,
        cache hits, items, wall seconds, the engine's seconds on its samples' requests (each answer's share of its
        batch), the request kinds answered, each sample's generated tokens, the run's args)
        and `setup` (per finished run of this model alone: run wall minus its jobs' walls, i.e. loading
        the model and the data, less a GGUF conversion done once per machine)."""
        where = (model, backend, host or socket.gethostname())
        rows = self.db.execute(
            "SELECT j.id, j.run_id, j.dataset, j.task_config, j.prompt_tokens, j.completion_tokens, j.model_calls, "
            "j.cache_hits, j.n_items, j.wall_seconds, r.args, (SELECT json_group_array(kind) FROM (SELECT DISTINCT "
            "kind FROM responses WHERE job_id=j.id)) AS kinds, (SELECT json_group_array(completion_tokens) FROM "
            "samples WHERE job_id=j.id) AS lengths, (SELECT SUM(latency_s) FROM samples WHERE job_id=j.id) AS "
            "engine_seconds FROM jobs j JOIN runs r ON r.id = j.run_id WHERE j.model=? AND "
            "json_extract(j.backend, '$.name')=? AND r.host=? AND j.status='finished' AND j.model_calls > 0 "
            "AND j.wall_seconds > 0 AND j.judge IS NULL ORDER BY r.created, j.rowid",
            where,
        ).fetchall()
        setup = self.db.execute(
            "SELECT r.wall_seconds - SUM(j.wall_seconds) - COALESCE(MAX(json_extract(j.backend, "
            "'$.conversion_seconds')), 0) AS seconds FROM runs r JOIN jobs j ON j.run_id = r.id "
            "WHERE r.status='finished' AND r.host=? GROUP BY r.id HAVING COUNT(DISTINCT j.model)=1 AND "
            "MIN(j.model)=? AND SUM(json_extract(j.backend, '$.name')=?)=COUNT(*) AND SUM(j.model_calls) > 0",
            (where[2], model, backend),
        ).fetchall()
        return {
            "jobs": [_decode(dict(r), ("args", "kinds", "lengths", "task_config")) for r in rows],
            "setup": [r["seconds"] for r in setup if r["seconds"] is not None and r["seconds"] > 0],
        }

    def generated_lengths(self, model: str, dataset: str, settings: dict, engine: str | None = None) -> list[int]:
        """Generated tokens per model call in this model's finished jobs on a dataset under these task settings
        (its TaskConfig as stored, less seed and data_dir; on `engine`, or any; any host): each scored sample's
        completion tokens over its job's requests per item (model calls and cache hits: a sample holds both).
        An item asked again (a larger run over a smaller one's items) counts once, as last answered."""
        rows = self.db.execute(
            "SELECT s.item_id, s.prompt, s.completion_tokens, "
            "CAST(j.model_calls + j.cache_hits AS REAL) / MAX(j.n_items, 1) AS calls, j.task_config "
            "FROM samples s JOIN jobs j ON j.id = s.job_id JOIN runs r ON r.id = j.run_id WHERE j.model=? AND "
            "j.dataset=? AND j.status='finished' AND j.model_calls > 0 AND (? IS NULL OR "
            "json_extract(j.backend, '$.name') = ?) ORDER BY r.created, j.rowid",
            (model, dataset, engine, engine),
        ).fetchall()
        latest = {
            (r["item_id"], r["prompt"]): round(r["completion_tokens"] / max(r["calls"], 1.0)) for r in rows
            if same_settings(json.loads(r["task_config"] or "{}"), settings)
        }
        return list(latest.values())

    def chars_per_token(self, model: str) -> float | None:
        """Characters per prompt token in this model's stored samples of one call per item (None: none)."""
        row = self.db.execute(
            "SELECT SUM(LENGTH(s.prompt)) AS chars, SUM(s.prompt_tokens) AS tokens FROM samples s JOIN jobs j "
            "ON j.id = s.job_id WHERE j.model=? AND j.model_calls = j.n_items AND s.prompt_tokens > 0",
            (model,),
        ).fetchone()
        return row["chars"] / row["tokens"] if row and row["tokens"] else None

    # ------------------------------------------------------------ response cache

    def cached(self, fingerprint: str, requests: list[Request]) -> tuple[dict[str, Response], dict[str, str]]:
        """The cached answers to these requests by request key, and the job that asked for each (answers
        cached before schema 4 have none)."""
        found: dict[str, Response] = {}
        askers: dict[str, str] = {}
        for row in self._cached_rows(fingerprint, {r.key() for r in requests}, "kind, response, job_id"):
            found[row["request_hash"]] = response_from_dict(row["kind"], json.loads(row["response"]))
            if row["job_id"] is not None:
                askers[row["request_hash"]] = row["job_id"]
        return found, askers

    def _cached_rows(self, fingerprint: str, keys: Iterable[str], columns: str = "") -> Iterator[sqlite3.Row]:
        """The response cache's rows (request_hash and `columns`) for these request keys under a fingerprint,
        asked 500 keys at a time (SQLite's variable limit)."""
        wanted = list(set(keys))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            yield from self.db.execute(
                f"SELECT request_hash{', ' + columns if columns else ''} FROM responses WHERE fingerprint=? "
                f"AND request_hash IN ({','.join('?' * len(chunk))})",
                (fingerprint, *chunk),
            )

    def _planned_fingerprint(self, model: str, engine: str) -> str | None:
        """The cache fingerprint (engine:weights) of this model's newest job on this engine, which is what its next
        run there looks up unless its weights changed since (a plan cannot load them to tell); None: no such job."""
        row = self.db.execute(
            "SELECT json_extract(j.backend, '$.fingerprint') AS weights FROM jobs j JOIN runs r ON r.id = j.run_id "
            "WHERE j.model=? AND json_extract(j.backend, '$.name')=? "
            "AND json_extract(j.backend, '$.fingerprint') IS NOT NULL ORDER BY r.created DESC, j.rowid DESC LIMIT 1",
            (model, engine),
        ).fetchone()
        return f"{engine}:{row['weights']}" if row else None

    def holds_answers(self, model: str, engine: str) -> bool:
        """Does the response cache hold any answer of this model on this engine (see cached_keys)?"""
        fingerprint = self._planned_fingerprint(model, engine)
        return fingerprint is not None and self.db.execute(
            "SELECT 1 FROM responses WHERE fingerprint=? LIMIT 1", (fingerprint,)
        ).fetchone() is not None

    def cached_keys(self, model: str, engine: str, keys: Iterable[str]) -> set[str]:
        """Which of these request keys a run of this model on this engine would find answered in the cache (the
        fingerprint of its newest job there): the planner counts them as free."""
        fingerprint = self._planned_fingerprint(model, engine)
        return {row["request_hash"] for row in self._cached_rows(fingerprint, keys)} if fingerprint else set()

    def cache(
        self,
        fingerprint: str,
        answers: list[tuple[Request, Response, str | None]],
        counters: dict[str, dict] | None = None,
    ) -> None:
        """Cache fresh answers (request, response, the job that asked); `counters` ({job id: {model_calls: ..,
        prompt_tokens: .., ...}}) are added to the jobs in the same transaction, so a kill never leaves a
        cached answer uncounted."""
        now = time.time()
        with self._write():
            self.db.executemany(
                "INSERT OR REPLACE INTO responses(fingerprint, request_hash, kind, response, created, job_id) "
                "VALUES (?,?,?,?,?,?)",
                [(fingerprint, req.key(), req.kind, _dumps(resp.to_dict()), now, job) for req, resp, job in answers],
            )
            for job_id, values in (counters or {}).items():
                self.add_job_counters(job_id, **values)


UNSETTLED = ("seed", "data_dir")  # task options that change which items run or where they load from, not their prompts


def same_settings(stored: dict, settings: dict) -> bool:
    """Do a stored job's task settings equal these (seed and data folder aside)?"""
    return {k: v for k, v in stored.items() if k not in UNSETTLED} == {
        k: v for k, v in settings.items() if k not in UNSETTLED
    }


def _decode(row: dict, fields: tuple[str, ...]) -> dict:
    for name in fields:
        if row.get(name) is not None:
            row[name] = json.loads(row[name])
    return row
