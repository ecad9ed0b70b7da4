"""SQLite store: runs, jobs, per-sample records, scores, and the response cache.

One file in WAL mode (readers never block the writer, a kill -9 loses at most the
open transaction). The response cache is keyed by (model fingerprint, request
hash) only, never by batch size or run, so any later run of the same model on the
same request is free.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evalmap.backends.base import Request, Response, response_from_dict

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, run_key TEXT NOT NULL, created REAL NOT NULL, finished REAL,
    status TEXT NOT NULL, args TEXT NOT NULL, seed INTEGER NOT NULL, catalog_version TEXT NOT NULL,
    versions TEXT NOT NULL, wall_seconds REAL
);
CREATE INDEX IF NOT EXISTS runs_key ON runs(run_key);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(id), model TEXT NOT NULL,
    dataset TEXT NOT NULL, backend TEXT NOT NULL, task_config TEXT NOT NULL, prompt_hash TEXT NOT NULL,
    status TEXT NOT NULL, n_items INTEGER NOT NULL, wall_seconds REAL NOT NULL DEFAULT 0,
    model_calls INTEGER NOT NULL DEFAULT 0, cache_hits INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
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
    ci_low REAL, ci_high REAL, n INTEGER NOT NULL, method TEXT NOT NULL, PRIMARY KEY (job_id, name)
);
CREATE TABLE IF NOT EXISTS responses (
    fingerprint TEXT NOT NULL, request_hash TEXT NOT NULL, kind TEXT NOT NULL, response TEXT NOT NULL,
    created REAL NOT NULL, PRIMARY KEY (fingerprint, request_hash)
);
"""


def default_home() -> Path:
    return Path(os.environ.get("EVALMAP_HOME", Path.home() / ".cache" / "evalmap"))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


class Store:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_home() / "store.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------ runs and jobs

    def open_run(self, run_key: str, args: dict, seed: int, catalog_version: str, versions: dict) -> tuple[str, bool]:
        """Resume the unfinished run with these arguments, or start a new one. Returns (id, resumed)."""
        row = self.db.execute(
            "SELECT id FROM runs WHERE run_key=? AND status!='finished' ORDER BY created DESC LIMIT 1",
            (run_key,),
        ).fetchone()
        if row:
            self.db.execute("UPDATE runs SET status='running' WHERE id=?", (row["id"],))
            return row["id"], True
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.db.execute(
            "INSERT INTO runs(id, run_key, created, status, args, seed, catalog_version, versions) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (run_id, run_key, time.time(), "running", _dumps(args), seed, catalog_version, _dumps(versions)),
        )
        return run_id, False

    def finish_run(self, run_id: str, status: str, wall_seconds: float) -> None:
        self.db.execute(
            "UPDATE runs SET status=?, finished=?, wall_seconds=COALESCE(wall_seconds,0)+? WHERE id=?",
            (status, time.time(), wall_seconds, run_id),
        )

    def open_job(
        self, run_id: str, model: str, dataset: str, backend: dict, task_config: dict, prompt_hash: str, n_items: int
    ) -> str:
        row = self.db.execute(
            "SELECT id FROM jobs WHERE run_id=? AND model=? AND dataset=?", (run_id, model, dataset)
        ).fetchone()
        if row:
            self.db.execute(
                "UPDATE jobs SET backend=?, status='running' WHERE id=?", (_dumps(backend), row["id"])
            )
            return row["id"]
        job_id = f"{run_id}/{model}/{dataset}"
        self.db.execute(
            "INSERT INTO jobs(id, run_id, model, dataset, backend, task_config, prompt_hash, status, n_items) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
            (job_id, run_id, model, dataset, _dumps(backend), _dumps(task_config), prompt_hash, "running", n_items),
        )
        return job_id

    def add_job_counters(self, job_id: str, **counters: float) -> None:
        sets = ", ".join(f"{k}={k}+?" for k in counters)
        self.db.execute(f"UPDATE jobs SET {sets} WHERE id=?", (*counters.values(), job_id))

    def finish_job(self, job_id: str, status: str) -> None:
        self.db.execute("UPDATE jobs SET status=? WHERE id=?", (status, job_id))

    def job(self, job_id: str) -> dict:
        row = self.db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _decode(dict(row), ("backend", "task_config"))

    def jobs(self, run_id: str) -> list[dict]:
        rows = self.db.execute("SELECT * FROM jobs WHERE run_id=? ORDER BY rowid", (run_id,)).fetchall()
        return [_decode(dict(r), ("backend", "task_config")) for r in rows]

    def run(self, run_id: str) -> dict | None:
        row = self.db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return _decode(dict(row), ("args", "versions")) if row else None

    def runs(self, limit: int = 50) -> list[dict]:
        rows = self.db.execute("SELECT * FROM runs ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        return [_decode(dict(r), ("args", "versions")) for r in rows]

    # ------------------------------------------------------------ samples and scores

    def done_items(self, job_id: str) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT item_id FROM samples WHERE job_id=?", (job_id,))}

    def add_samples(self, job_id: str, records: Iterable[dict]) -> None:
        rows = [
            (
                job_id, r["item_id"], r["position"], r["prompt"], _dumps(r["output"]), _dumps(r["extracted"]),
                _dumps(r["target"]), _dumps(r["metrics"]), _dumps(r["details"]), r["prompt_tokens"],
                r["completion_tokens"], r["latency_s"],
            )
            for r in records
        ]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR IGNORE INTO samples VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)

    def samples(self, job_id: str) -> list[dict]:
        rows = self.db.execute("SELECT * FROM samples WHERE job_id=? ORDER BY position", (job_id,)).fetchall()
        return [_decode(dict(r), ("output", "extracted", "target", "metrics", "details")) for r in rows]

    def set_scores(self, job_id: str, scores: list[dict]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM scores WHERE job_id=?", (job_id,))
            self.db.executemany(
                "INSERT INTO scores VALUES (?,?,?,?,?,?,?,?)",
                [
                    (job_id, s["name"], s["value"], s["stderr"], s["ci_low"], s["ci_high"], s["n"], s["method"])
                    for s in scores
                ],
            )

    def scores(self, job_id: str) -> list[dict]:
        return [dict(r) for r in self.db.execute("SELECT * FROM scores WHERE job_id=? ORDER BY rowid", (job_id,))]

    # ------------------------------------------------------------ response cache

    def cached(self, fingerprint: str, requests: list[Request]) -> dict[str, Response]:
        keys = list({r.key() for r in requests})
        found: dict[str, Response] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(
                f"SELECT request_hash, kind, response FROM responses WHERE fingerprint=? AND request_hash IN ({marks})",
                (fingerprint, *chunk),
            ):
                found[row["request_hash"]] = response_from_dict(row["kind"], json.loads(row["response"]))
        return found

    def cache(self, fingerprint: str, pairs: list[tuple[Request, Response]]) -> None:
        now = time.time()
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?)",
                [(fingerprint, req.key(), req.kind, _dumps(resp.to_dict()), now) for req, resp in pairs],
            )


def _decode(row: dict, fields: tuple[str, ...]) -> dict:
    for name in fields:
        if row.get(name) is not None:
            row[name] = json.loads(row[name])
    return row
