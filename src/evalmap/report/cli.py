"""`evalmap report`, `evalmap compare` and `evalmap runs`: registered on the main Typer app by `register(app)`."""

from __future__ import annotations

import json
import math
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from evalmap.report.fit import Column, fit_table, terminal_width

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


class ReportFormat(StrEnum):
    html = "html"
    md = "md"


def _console() -> Console:
    return Console(width=terminal_width())


def _f(value: float, digits: int = 3, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


COMPARE_COLUMNS = (
    Column("dataset"), Column("model(s)", wrap=True, fold=True), Column("metric"),
    Column("n shared", "right", short="n"), Column("A ± stderr", "right", drop=2, short="A ± se"),
    Column("B ± stderr", "right", drop=2, short="B ± se"), Column("B − A ± stderr", "right", short="B − A ± se"),
    Column("95% CI", "right", drop=3), Column("test", drop=5), Column("p", "right", drop=4), Column("better"),
)


def comparison_table(c: Comparison, terminal: bool, width: int = 200) -> Table:
    """Every compared metric, the headline one first and starred; never wider than `width` (report/fit.py)."""
    rows = []
    for r in c.rows:
        res = r.result
        models = r.model_a if r.model_a == r.model_b else f"{r.model_a} → {r.model_b}"
        rows.append([
            r.dataset, models, f"{r.metric} *" if r.headline else r.metric, str(r.n_shared),
            f"{_f(r.score_a.value)} ± {_f(r.score_a.stderr)}", f"{_f(r.score_b.value)} ± {_f(r.score_b.stderr)}",
            f"{_f(res.diff, sign=True)} ± {_f(res.stderr)}",
            "n/a" if math.isnan(res.ci_low) else f"[{res.ci_low:+.3f}, {res.ci_high:+.3f}]",
            res.method + (f" {res.discordant[0]}/{res.discordant[1]}" if res.discordant else ""),
            "n/a" if math.isnan(res.p_value) else f"{res.p_value:.3g}", r.winner or "tie",
        ])
    side = "model" if c.within_run else "run"
    notes = [f"* headline metric. better: the {side} whose score is higher (lower for latencies) at p < 0.05; "
             "otherwise tie."]
    small = list(dict.fromkeys(f"{r.dataset} (n={r.n_shared})" for r in c.rows if r.n_shared < 30))
    if small:
        notes.append("Few shared items: " + ", ".join(small) + "; treat those differences as rough.")
    title = (f"Models of run {c.run_a}: B − A on shared items (A = each dataset's first model)" if c.within_run
             else f"B = {c.run_b}  vs  A = {c.run_a}  (B − A on shared items)")
    return fit_table(title, COMPARE_COLUMNS, rows, width, terminal, "\n".join([*notes, *c.notes]))


def settings_block(c: Comparison) -> str:
    """What the compared jobs were run with, where A and B differ: part of what B − A measures."""
    lines = c.settings_lines()
    if not lines:
        return "Settings: A and B were run with the same settings (few-shot, chat, mode, max tokens, variant, " \
               "engine, dtype)."
    return "\n".join(["Settings differ (part of what B − A measures):", *(f"  {line}" for line in lines)])


def register(app: typer.Typer) -> None:
    """Add `report`, `compare` and `runs` to the evalmap CLI."""
    from evalmap.report.history import runs_app

    app.add_typer(runs_app, name="runs")

    @app.command("report")
    def report(
        runs: Annotated[
            list[str] | None,
            typer.Argument(help="Run ids (or unique prefixes, `latest`, `latest~1`); default: the newest finished run.",
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
        fmt: Annotated[ReportFormat, typer.Option(
            "--format", help="html: write the report folder (its report.md and tables/*.md|csv too) and print "
            "index.html's path; md: print the matrix and leaderboards as Markdown, values as 0.533 ± 0.093 (n=30).",
        )] = ReportFormat.html,
    ) -> None:
        """Write a static HTML report (matrix, leaderboards, speed vs accuracy, transfer, samples); print its path."""
        from evalmap.catalog.loader import load_catalog
        from evalmap.report.data import open_store, resolve_runs
        from evalmap.report.html import build_report

        store = open_store(store_path)
        try:
            run_ids = resolve_runs(store, runs, last=last)
            cat = load_catalog([str(p) for p in catalog or []])
            if fmt is ReportFormat.md:
                from evalmap.report.tables import paper_markdown

                sys.stdout.write(paper_markdown(store, run_ids, cat))
                return
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
        run_a: Annotated[
            str, typer.Argument(help="Baseline run id (A); `latest~1` is the finished run before the newest.")
        ],
        run_b: Annotated[str, typer.Argument(help="Run id to compare (B); `latest` is the newest finished run.")],
        store_path: StoreOpt = None,
        fmt: Annotated[CompareFormat, typer.Option("--format", help="table for people, json for scripts.")] = (
            CompareFormat.table
        ),
        iters: Annotated[int, typer.Option("--iters", min=100, help="Bootstrap resamples for non-0/1 metrics.")] = (
            10000
        ),
        metric: Annotated[
            str | None, typer.Option("--metric", help="Compare only this metric (default: every metric both scored).")
        ] = None,
    ) -> None:
        """Paired comparison of two runs on the items they share: B − A per dataset and metric, 95% CI, McNemar or
        bootstrap, and the settings that differ. The same run twice (`latest latest`) compares its models."""
        from evalmap.report.compare import compare_selected
        from evalmap.report.data import open_store

        store = open_store(store_path)
        try:
            result = compare_selected(store, run_a, run_b, iters=iters, metric=metric)
        finally:
            store.close()
        if fmt is CompareFormat.json:
            sys.stdout.write(json.dumps(_nan_to_none(result.to_dict()), indent=2) + "\n")
            return
        out = _console()
        out.print(comparison_table(result, out.is_terminal, out.width))
        out.print(settings_block(result), highlight=False, markup=False)


def _nan_to_none(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return value
