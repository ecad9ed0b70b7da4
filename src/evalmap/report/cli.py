"""`evalmap report` and `evalmap compare`: registered on the main Typer app by `register(app)`."""

from __future__ import annotations

import json
import math
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:  # numpy-backed; every CLI call imports this module, so load it only when comparing
    from evalmap.report.compare import Comparison

StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="SQLite store (default $EVALMAP_HOME/store.sqlite, ~/.cache/evalmap).",
                 show_default=False),
]


class CompareFormat(StrEnum):
    table = "table"
    json = "json"


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 200)


def _f(value: float, digits: int = 3, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def comparison_table(c: Comparison, terminal: bool) -> Table:
    table = Table(
        title=f"B = {c.run_b}  vs  A = {c.run_a}  (B − A on shared items)",
        box=box.SIMPLE_HEAVY if terminal else box.ASCII, title_justify="left", caption_justify="left",
        header_style="bold" if terminal else "",
    )
    for col, justify in (
        ("dataset", "left"), ("model(s)", "left"), ("metric", "left"), ("n shared", "right"),
        ("A ± stderr", "right"), ("B ± stderr", "right"), ("B − A ± stderr", "right"), ("95% CI", "right"),
        ("test", "left"), ("p", "right"), ("better", "left"),
    ):
        table.add_column(col, justify=justify)
    for r in c.rows:
        res = r.result
        models = r.model_a if r.model_a == r.model_b else f"{r.model_a} → {r.model_b}"
        table.add_row(
            r.dataset, models, r.metric, str(r.n_shared),
            f"{_f(r.score_a.value)} ± {_f(r.score_a.stderr)}", f"{_f(r.score_b.value)} ± {_f(r.score_b.stderr)}",
            f"{_f(res.diff, sign=True)} ± {_f(res.stderr)}",
            "n/a" if math.isnan(res.ci_low) else f"[{res.ci_low:+.3f}, {res.ci_high:+.3f}]",
            res.method + (f" {res.discordant[0]}/{res.discordant[1]}" if res.discordant else ""),
            "n/a" if math.isnan(res.p_value) else f"{res.p_value:.3g}", r.winner or "tie",
        )
    notes = ["better: the run whose score is higher (lower for latencies) at p < 0.05; otherwise tie."]
    small = list(dict.fromkeys(f"{r.dataset} (n={r.n_shared})" for r in c.rows if r.n_shared < 30))
    if small:
        notes.append("Few shared items: " + ", ".join(small) + "; treat those differences as rough.")
    table.caption = "\n".join([*notes, *c.notes])
    return table


def register(app: typer.Typer) -> None:
    """Add `report` and `compare` to the evalmap CLI."""

    @app.command("report")
    def report(
        runs: Annotated[
            list[str] | None,
            typer.Argument(help="Run ids (or unique prefixes, `latest`, `latest~1`); default: the newest run.",
                           show_default=False),
        ] = None,
        out_dir: Annotated[Path, typer.Option("--out", help="Folder to write index.html, figures and tables to.")] = (
            Path("evalmap-report")
        ),
        store_path: StoreOpt = None,
        catalog: Annotated[
            list[Path] | None,
            typer.Option("--catalog", help="Extra catalog YAML (models, datasets); repeatable.", show_default=False),
        ] = None,
        last: Annotated[int, typer.Option("--last", min=1, help="Without RUN ids: report the newest N runs.")] = 1,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the path of index.html.")] = False,
    ) -> None:
        """Write a static HTML report (matrix, leaderboards, speed vs accuracy, transfer, samples); print its path."""
        from evalmap.catalog.loader import load_catalog
        from evalmap.report.data import open_store, resolve_runs
        from evalmap.report.html import build_report

        store = open_store(store_path)
        try:
            run_ids = resolve_runs(store, runs, last=last)
            cat = load_catalog([str(p) for p in catalog or []])
            err = Console(stderr=True)
            with Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=err, transient=True, disable=quiet,
            ) as progress:
                bar = progress.add_task(f"report of {', '.join(run_ids)}: samples of each job", total=None)

                def on_job(done: int, total: int) -> None:
                    progress.update(bar, completed=done, total=total)

                result = build_report(store, run_ids, out_dir, cat, on_job=on_job)
            if not quiet:
                data = result.data
                err.print(
                    f"{len(data.runs)} run(s), {len(data.jobs)} jobs, {sum(j.n_samples for j in data.jobs)} samples, "
                    f"{len(data.gaps)} recommended cells not run; figures and tables in {result.out_dir}",
                    highlight=False,
                )
        finally:
            store.close()
        sys.stdout.write(f"{result.index.resolve()}\n")

    @app.command("compare")
    def compare(
        run_a: Annotated[str, typer.Argument(help="Baseline run id (A); `latest~1` is the one before the newest.")],
        run_b: Annotated[str, typer.Argument(help="Run id to compare (B); `latest` is the newest.")],
        store_path: StoreOpt = None,
        fmt: Annotated[CompareFormat, typer.Option("--format", help="table for people, json for scripts.")] = (
            CompareFormat.table
        ),
        iters: Annotated[int, typer.Option("--iters", min=100, help="Bootstrap resamples for non-0/1 metrics.")] = (
            10000
        ),
    ) -> None:
        """Paired comparison of two runs on the items they share: B − A per dataset, 95% CI, McNemar or bootstrap."""
        from evalmap.report.compare import compare_selected
        from evalmap.report.data import open_store

        store = open_store(store_path)
        try:
            result = compare_selected(store, run_a, run_b, iters=iters)
        finally:
            store.close()
        if fmt is CompareFormat.json:
            sys.stdout.write(json.dumps(_nan_to_none(result.to_dict()), indent=2) + "\n")
            return
        out = _console()
        out.print(comparison_table(result, out.is_terminal))


def _nan_to_none(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return value
