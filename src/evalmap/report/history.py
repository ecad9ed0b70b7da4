"""`evalmap runs`: the store's run history, one run in detail, and removing a run.

A run's status says how it ended: finished, incomplete (some items failed and are not
scored), interrupted (Ctrl-C or a killed process; the same command resumes it),
failed (an error stopped it; the error is kept) or running.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from evalmap.errors import EvalmapError
from evalmap.report.fit import Column, fit_table, terminal_width

runs_app = typer.Typer(help="The runs in the store: list them, show one, remove one.", no_args_is_help=False)

StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="SQLite store (default $EVALMAP_HOME/store.sqlite, ~/.cache/evalmap).",
                 show_default=False),
]
RunArg = Annotated[str, typer.Argument(help="A run id, a unique prefix or suffix of one, `latest` or `latest~N`.")]


class Format(StrEnum):
    table = "table"
    json = "json"


FormatOpt = Annotated[Format, typer.Option("--format", help="table for people, json for scripts.")]

RUN_COLUMNS = (
    Column("run"), Column("date", drop=3), Column("status", wrap=True), Column("models", wrap=True),
    Column("datasets", wrap=True), Column("n", "right"), Column("wall", "right", drop=2),
)
JOB_COLUMNS = (
    Column("model", fold=True), Column("dataset"), Column("status"),
    Column("headline metric: value ± stderr (n)", wrap=True),
    Column("wall", "right", drop=2), Column("calls", "right", drop=3), Column("cache hits", "right", drop=4),
)


def _date(ts: float | None) -> str:
    return "" if not ts else dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _wall(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _console() -> Console:
    return Console(width=terminal_width())


def _open(store_path: Path | None):
    from evalmap.report.data import open_store

    return open_store(store_path)


@runs_app.callback(invoke_without_command=True)
def list_runs(
    ctx: typer.Context,
    store_path: StoreOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show the newest N runs.")] = 20,
    fmt: FormatOpt = Format.table,
) -> None:
    """List the runs, newest first: date, models, datasets, status, samples scored (n) and wall time."""
    if ctx.invoked_subcommand is not None:
        return
    store = _open(store_path)
    try:
        history = store.run_history()
    finally:
        store.close()
    if fmt is Format.json:
        sys.stdout.write(json.dumps(history[:limit], indent=2) + "\n")
        return
    out = _console()
    if not history:
        out.print(f"No runs in {store.path} yet; `evalmap run` makes one.", highlight=False, markup=False)
        return
    rows = [
        [r["id"], _date(r["created"]), f"{r['status']}: {r['error']}" if r["error"] else r["status"],
         ", ".join(r["models"]), ", ".join(r["datasets"]), f"{r['samples']:,}", _wall(r["wall_seconds"])]
        for r in history[:limit]
    ]
    more = f"; {len(history) - limit} older runs not shown (--limit)" if len(history) > limit else ""
    out.print(fit_table(
        f"Runs in {store.path} ({len(history)})", RUN_COLUMNS, rows, out.width, out.is_terminal,
        "n = samples scored. `latest` = the newest finished (or incomplete) run; "
        f"`evalmap runs show ID` shows one run, `evalmap runs rm ID` removes one{more}.",
    ))


def run_details(store, run_id: str) -> dict:
    """A run with its jobs and their headline scores (the `runs show` view, JSON-ready)."""
    from evalmap.report.tables import fmt_score

    row = store.run(run_id) or {}
    summary = next(r for r in store.run_history() if r["id"] == run_id)
    jobs = []
    for job in store.jobs(run_id):
        head = store.headline(job["id"])
        score = None
        if head:
            from evalmap.metrics.stats import Score

            nan = float("nan")
            score = Score(head["name"], *(nan if head[k] is None else head[k]
                                          for k in ("value", "stderr", "ci_low", "ci_high")), head["n"], head["method"])
        jobs.append({
            "model": job["model"], "dataset": job["dataset"], "status": job["status"],
            "samples": store.count_samples(job["id"]), "items": job["n_items"],
            "metric": head["name"] if head else None, "score": fmt_score(score) if score else "n/a (no score yet)",
            "wall_seconds": job["wall_seconds"], "model_calls": job["model_calls"], "cache_hits": job["cache_hits"],
        })
    return {
        "id": run_id, "status": row.get("status"), "error": row.get("error"), "created": row.get("created"),
        "finished": row.get("finished"), "wall_seconds": row.get("wall_seconds"), "seed": row.get("seed"),
        "catalog_version": row.get("catalog_version"), "samples": summary["samples"], "args": row.get("args"),
        "versions": row.get("versions"), "jobs": jobs,
    }


@runs_app.command("show")
def show_run(run: RunArg, store_path: StoreOpt = None, fmt: FormatOpt = Format.table) -> None:
    """One run: how it ended (with its error if it failed), its options, and every job with its headline score."""
    from evalmap.report.data import resolve_runs

    store = _open(store_path)
    try:
        run_id = resolve_runs(store, [run], allow_failed=True)[0]
        info = run_details(store, run_id)
    finally:
        store.close()
    if fmt is Format.json:
        sys.stdout.write(json.dumps(info, indent=2, default=str) + "\n")
        return
    out = _console()
    lines = [
        f"run      {info['id']}",
        f"status   {info['status']}" + (f": {info['error']}" if info["error"] else ""),
        f"started  {_date(info['created'])}" + (f", ended {_date(info['finished'])}" if info["finished"] else ""),
        f"wall     {_wall(info['wall_seconds']) or 'n/a'}; seed {info['seed']}; catalog {info['catalog_version']}",
        f"samples  {info['samples']:,} scored",
    ]
    args = {k: v for k, v in (info["args"] or {}).items() if v not in (None, [], {}, False)}
    if args:
        lines.append("options  " + ", ".join(f"{k}={v}" for k, v in args.items()))
    out.print("\n".join(lines), highlight=False, markup=False)
    rows = [
        [j["model"], j["dataset"], j["status"], f"{j['metric']}: {j['score']}" if j["metric"] else j["score"],
         _wall(j["wall_seconds"]),
         str(j["model_calls"]), str(j["cache_hits"])]
        for j in info["jobs"]
    ]
    if rows:
        out.print(fit_table(f"Jobs ({len(rows)})", JOB_COLUMNS, rows, out.width, out.is_terminal))
    else:
        out.print("No jobs: the run stopped before its first job started.", highlight=False)


@runs_app.command("rm")
def remove_run(
    run: RunArg,
    store_path: StoreOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove a run with its jobs, samples and scores (the response cache keeps its answers: a rerun is free)."""
    from evalmap.report.data import resolve_runs

    store = _open(store_path)
    try:
        run_id = resolve_runs(store, [run], allow_failed=True)[0]
        summary = next(r for r in store.run_history() if r["id"] == run_id)
        what = f"run {run_id} ({summary['status']}, {summary['jobs']} jobs, {summary['samples']:,} samples)"
        if not yes:
            if not sys.stdin.isatty():
                raise EvalmapError(f"Removing {what} needs confirmation; pass --yes to remove it without asking.")
            typer.confirm(f"Remove {what}?", abort=True)
        store.remove_run(run_id)
    finally:
        store.close()
    sys.stdout.write(f"Removed {what}; the response cache keeps its answers.\n")
