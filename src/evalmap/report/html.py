"""Build the report folder: index.html (self-contained, no network), figures, tables, lazily loaded samples.

Layout of `out_dir`:
    index.html                 the page: inline CSS/JS, inline SVG figures, every number with n and ± stderr
    samples/<job>.js           one file per job, loaded on demand by a <script> tag (file:// forbids fetch())
    figures/*.png, *.svg       the matplotlib figures
    tables/*.csv, *.md         matrix, leaderboards, speed, transfer, comparisons, runs, jobs
    report.md                  all Markdown tables in one file
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib.metadata
import json
import math
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from evalmap.catalog.loader import Catalog
from evalmap.errors import EvalmapError
from evalmap.metrics.stats import Score
from evalmap.report import figures as figs
from evalmap.report import tables as T
from evalmap.report.compare import Comparison, compare_runs
from evalmap.report.data import HOME_TASK_TYPES, ReportData, iter_sample_rows, load_report_data, lower_is_better
from evalmap.store import Store

TEMPLATES = Path(__file__).parent / "templates"
PAGE_SIZE = 25

# viridis at 11 evenly spaced stops, so colours need no matplotlib
_VIRIDIS = [
    (68, 1, 84), (72, 36, 117), (65, 68, 135), (53, 95, 141), (42, 120, 142), (33, 145, 140),
    (34, 168, 132), (68, 191, 112), (122, 209, 81), (189, 223, 38), (253, 231, 37),
]


def colour(pos: float) -> tuple[str, str]:
    """(background, text colour) for a 0..1 position on viridis."""
    if pos is None or math.isnan(pos):
        return "#d9d9d9", "#000000"
    pos = min(1.0, max(0.0, pos)) * (len(_VIRIDIS) - 1)
    i = min(int(pos), len(_VIRIDIS) - 2)
    f = pos - i
    rgb = [round(a + (b - a) * f) for a, b in zip(_VIRIDIS[i], _VIRIDIS[i + 1], strict=True)]
    lum = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) / 255
    return "#{:02x}{:02x}{:02x}".format(*rgb), "#000000" if lum > 0.55 else "#ffffff"


def _clean(value):
    """JSON-safe: NaN/inf become null (JSON has no NaN)."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _json_script(payload) -> Markup:
    """JSON for a <script type="application/json"> block: no `</script>` can end it early."""
    text = json.dumps(_clean(payload), ensure_ascii=False, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


@dataclass
class ReportResult:
    index: Path
    out_dir: Path
    data: ReportData
    comparisons: list[Comparison]
    files: list[Path]
    timings: dict[str, float]


# ---------------------------------------------------------------- samples


def write_samples(
    store: Store, data: ReportData, out_dir: Path, on_job: Callable[[int, int], None] | None = None
) -> None:
    """samples/<key>.js per job: `evalmapSamples(key, [[item, prompt, output, extracted, target, metrics, details]])`.

    The JSON columns of the store are spliced in as they are (JSON is valid JavaScript,
    NaN and Infinity included), so writing 300k samples costs no decode/encode round trip.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    dumps = json.dumps
    for done, job in enumerate(data.jobs, start=1):
        parts = [f"evalmapSamples({dumps(job.key)},["]
        first = True
        for item_id, prompt, output, extracted, target, metrics, details in iter_sample_rows(store, job.id):
            parts.append(
                ("" if first else ",")
                + f"[{dumps(item_id, ensure_ascii=False)},{dumps(prompt, ensure_ascii=False)},{output},"
                f"{extracted or 'null'},{target or 'null'},{metrics},{details}]\n"
            )
            first = False
        parts.append("]);\n")
        (out_dir / f"{job.key}.js").write_text("".join(parts), encoding="utf-8")
        if on_job:
            on_job(done, len(data.jobs))


# ---------------------------------------------------------------- view models for the template


def _score_dict(s: Score | None) -> dict:
    if s is None:
        return {"text": "n/a (n=0)", "value": "n/a", "se": "n/a", "n": 0, "ci": "n/a", "method": ""}
    return {
        "text": T.fmt_score(s), "value": T.fmt(s.value), "se": T.fmt(s.stderr), "n": s.n, "ci": T.fmt_ci(s),
        "method": s.method,
    }


def _matrix_view(data: ReportData) -> dict:
    datasets = data.shown_datasets()
    col_groups = []
    for d in datasets:
        tt = data.dataset_task_type[d]
        if col_groups and col_groups[-1]["name"] == tt:
            col_groups[-1]["span"] += 1
        else:
            col_groups.append({"name": tt, "span": 1})
    columns = []
    for d in datasets:
        ds = data.catalog.datasets.get(d) if data.catalog else None
        metric = data.primary_metric(d) or (ds.metrics[0] if ds else "")
        direction = "lower is better" if lower_is_better(metric) else "higher is better"
        scale = "0-1" if data.bounded(d) else "colour scaled within column"
        columns.append({"id": d, "metric": metric, "title": f"{ds.name if ds else d}: {metric} ({direction}; {scale})"})
    rows = []
    prev_cat = None
    counts: dict[str, int] = {}
    for m in data.models:
        counts[data.model_category(m)] = counts.get(data.model_category(m), 0) + 1
    for m in data.models:
        cat = data.model_category(m)
        cells = []
        for d in datasets:
            job = data.cells.get((m, d))
            if job is None:
                gap = data.gap(m, d)
                cells.append({"kind": "gap" if gap else "empty", "title": f"{m} · {d}: recommended by {gap}, not run"
                              if gap else f"{m} · {d}: not recommended, not run"})
                continue
            s = job.primary
            bg, fg = colour(T.cell_position(data, d, s.value) if s else math.nan)
            title = (
                f"{m} · {d}: {s.name} {T.fmt_score(s)}, 95% CI {T.fmt_ci(s)} ({s.method}); run {job.run_id}"
                if s else f"{m} · {d}: no score yet (job {job.status}, {job.n_samples} samples)"
            )
            cells.append({"kind": "cell", "job": job.key, "bg": bg, "fg": fg, "title": title,
                          "score": _score_dict(s), "status": job.status})
        rows.append({"model": m, "category": cat, "first": cat != prev_cat, "span": counts[cat],
                     "categories": ", ".join(data.model_categories.get(m, ())) or "uncatalogued", "cells": cells})
        prev_cat = cat
    gaps = len(data.gaps)
    return {"col_groups": col_groups, "columns": columns, "rows": rows, "gaps": gaps, "run_cells": len(data.cells),
            "split_by": ", ".join(data.split_by), "fill": T.fill_commands(data) if gaps else [],
            "mostly_gaps": gaps > len(data.cells)}


def _board_view(board: T.Leaderboard) -> dict:
    entries = []
    for e in board.entries:
        s = e.score
        lo = 0.0 if T.isnan(s.ci_low) else max(0.0, s.ci_low)
        hi = 1.0 if T.isnan(s.ci_high) else min(1.0, s.ci_high)
        entries.append({
            "rank": f"{e.rank}{'=' if e.tied else ''}", "tied": e.tied, "model": e.model, "score": _score_dict(s),
            "bar": 0.0 if T.isnan(s.value) else max(0.0, min(1.0, s.value)) * 100, "lo": lo * 100,
            "width": max(0.0, hi - lo) * 100, "coverage": f"{len(e.datasets)}/{len(board.datasets)}",
            "datasets": ", ".join(e.datasets), "partial": len(e.datasets) < len(board.datasets),
        })
    return {"slug": board.slug, "name": board.name, "label": board.name.replace("_", " "),
            "datasets": board.datasets, "excluded": board.excluded, "entries": entries, "partial": board.partial}


def _speed_view(points: list[T.SpeedPoint]) -> list[dict]:
    return [
        {"model": p.model, "dataset": p.dataset, "score": _score_dict(p.score),
         "seconds": T.fmt_seconds(p.seconds.value),
         "seconds_se": T.fmt_seconds(p.seconds.stderr), "seconds_n": p.seconds.n,
         "tps": "n/a" if T.isnan(p.tokens_per_s) else f"{p.tokens_per_s:,.1f}", "pareto": p.pareto,
         "datasets": p.datasets}
        for p in sorted(points, key=lambda p: (not p.pareto, p.seconds.value if not T.isnan(p.seconds.value) else 1e9))
    ]


def _transfer_view(categories, task_types, cells) -> dict:
    rows = []
    for c in categories:
        out = []
        for t in task_types:
            cell = cells.get((c, t))
            if cell is None:
                out.append(None)
                continue
            bg, fg = colour(cell.score.value)
            out.append({"bg": bg, "fg": fg, "score": _score_dict(cell.score), "home": cell.home,
                        "models": len(cell.models), "title": f"{c} models on {t}: {T.fmt_score(cell.score)}, "
                        f"95% CI {T.fmt_ci(cell.score)}, {len(cell.models)} models ({', '.join(cell.models)})"})
        rows.append({"category": c, "home": ", ".join(HOME_TASK_TYPES.get(c, ())), "cells": out})
    return {"task_types": task_types, "rows": rows}


def _comparison_view(c: Comparison) -> dict:
    rows = []
    for r in c.rows:
        res = r.result
        rows.append({
            "dataset": r.dataset, "models": r.model_a if r.model_a == r.model_b else f"{r.model_a} → {r.model_b}",
            "metric": r.metric, "headline": r.headline, "n": r.n_shared, "a": _score_dict(r.score_a),
            "b": _score_dict(r.score_b),
            "diff": f"{res.diff:+.3f} ± {T.fmt(res.stderr)}" if not T.isnan(res.diff) else "n/a",
            "ci": "n/a" if T.isnan(res.ci_low) else f"[{res.ci_low:+.3f}, {res.ci_high:+.3f}]",
            "method": res.method, "p": "n/a" if T.isnan(res.p_value) else f"{res.p_value:.3g}",
            "discordant": f"{res.discordant[0]} / {res.discordant[1]}" if res.discordant else "",
            "winner": r.winner, "significant": r.significant,
        })
    return {"run_a": c.run_a, "run_b": c.run_b, "rows": rows, "notes": c.notes, "settings": c.settings_lines(),
            "within_run": c.within_run}


def _fmt_time(ts: float | None) -> str:
    if not ts:
        return "n/a"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _meta_view(data: ReportData) -> dict:
    runs = []
    for r in data.runs:
        backends = sorted({j.backend_label for j in data.jobs if j.run_id == r.id})
        runs.append({
            "id": r.id, "status": r.status, "created": _fmt_time(r.created), "finished": _fmt_time(r.finished),
            "wall": "n/a" if r.wall_seconds is None else f"{r.wall_seconds:.1f} s", "seed": r.seed,
            "catalog_version": r.catalog_version, "jobs": r.n_jobs, "samples": r.samples,
            "model_calls": r.model_calls, "cache_hits": r.cache_hits, "backends": ", ".join(backends),
            "versions": r.versions, "args": json.dumps(r.args, indent=1, default=str, ensure_ascii=False),
        })
    jobs = []
    for j in data.jobs:
        secs = j.seconds_per_sample()
        jobs.append({
            "key": j.key, "run": j.run_id, "model": j.model, "dataset": j.dataset, "status": j.status,
            "backend": j.backend_label, "fingerprint": str(j.backend.get("fingerprint", ""))[:16],
            "prompt_hash": j.prompt_hash[:16], "n": j.n_samples, "wall": f"{j.wall_seconds:.2f} s",
            "calls": j.model_calls, "cache_hits": j.cache_hits, "tokens": j.prompt_tokens + j.completion_tokens,
            "seconds": T.fmt_seconds(secs.value), "scores": "; ".join(T.fmt_score(s) + f" {s.name}" for s in j.scores),
            "judge": j.judge_label,
        })
    return {"runs": runs, "jobs": jobs}


def _sample_index(data: ReportData) -> list[dict]:
    out = []
    for j in data.jobs:
        s = j.primary
        out.append({
            "key": j.key, "run": j.run_id, "model": j.model, "dataset": j.dataset, "task_type": j.task_type,
            "metric": s.name if s else None, "value": s.value if s else None, "stderr": s.stderr if s else None,
            "n": j.n_samples, "lower_better": bool(s and lower_is_better(s.name)),
        })
    return out


def _start_figures(args: tuple):
    """Render the figures in a forked child (matplotlib is CPU-bound; the samples are written meanwhile)."""
    if not figs.HAVE_MATPLOTLIB or (os.cpu_count() or 1) < 2 or "fork" not in mp.get_all_start_methods():
        return None
    proc = mp.get_context("fork").Process(target=figs.write_figures, args=args, daemon=True)
    proc.start()
    return proc


def _finish_figures(proc, args: tuple) -> dict[str, dict[str, Path]]:
    if proc is None:
        return figs.write_figures(*args)
    proc.join()
    if proc.exitcode != 0:  # render here, so a real error surfaces with its traceback
        return figs.write_figures(*args)
    return figs.expected_figures(*args)


def _data_uri(path: Path) -> str:
    mime = "image/svg+xml" if path.suffix == ".svg" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


# ---------------------------------------------------------------- the whole report


def build_report(
    store: Store,
    run_ids: list[str],
    out_dir: str | Path,
    catalog: Catalog | None,
    compare_iters: int = 10000,
    on_job: Callable[[int, int], None] | None = None,
) -> ReportResult:
    """Write the report folder for these runs and return where index.html is.

    `on_job(done, total)` is called after each job's samples file is written (for a progress bar).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    data = load_report_data(store, run_ids, catalog)
    if not data.jobs:
        raise EvalmapError(f"Run {', '.join(run_ids)} has no jobs yet, so there is nothing to report.")
    by_category, by_task = T.leaderboards(data)
    overall, per_dataset = T.speed_points(data)
    transfer_parts = T.transfer(data)

    comparisons: list[Comparison] = []
    compare_notes: list[str] = []
    for other in data.runs[1:]:
        try:
            comparisons.append(compare_runs(store, data.runs[0].id, other.id, iters=compare_iters))
        except EvalmapError as exc:
            compare_notes.append(str(exc))

    lap("load + analyse + compare")
    # tables
    tables = [
        T.matrix_table(data),
        T.leaderboard_table(by_category, "category"),
        T.leaderboard_table(by_task, "task_type"),
        T.speed_table(overall, per_dataset),
        T.transfer_table(*transfer_parts),
        T.runs_table(data),
        T.jobs_table(data),
    ]
    for i, c in enumerate(comparisons, start=1):
        tables.append(comparison_table(c, f"compare_{i}"))
    table_dir = out / "tables"
    table_dir.mkdir(exist_ok=True)
    files: list[Path] = []
    md_parts = [f"# evalmap report: {', '.join(r.id for r in data.runs)}\n", T.matrix_markdown(data)]
    for t in tables:
        files.append(T.write_csv(t, table_dir / f"{t.name}.csv"))
        md = T.markdown(t)
        (table_dir / f"{t.name}.md").write_text(md, encoding="utf-8")
        files.append(table_dir / f"{t.name}.md")
        if t.name != "jobs":
            md_parts.append(md)
    (table_dir / "matrix_grid.md").write_text(T.matrix_markdown(data), encoding="utf-8")
    (out / "report.md").write_text("\n".join(md_parts), encoding="utf-8")

    lap("tables")
    # figures (in a forked process where possible, while this one writes the samples)
    figure_args = (data, by_category, by_task, overall, per_dataset, transfer_parts, out / "figures")
    worker = _start_figures(figure_args)
    write_samples(store, data, out / "samples", on_job)
    lap("samples")
    made = _finish_figures(worker, figure_args)
    lap("figures (rest)")
    for paths in made.values():
        files.extend(paths.values())
    inline = {name: _data_uri(paths["svg"]) for name, paths in made.items() if name == "speed_accuracy"}
    figure_links = {name: {ext: f"figures/{p.name}" for ext, p in paths.items()} for name, paths in made.items()}

    try:
        version = importlib.metadata.version("evalmap")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    page = env.get_template("report.html.j2").render(
        title=f"evalmap report — {', '.join(r.id for r in data.runs)}",
        css=Markup((TEMPLATES / "report.css").read_text(encoding="utf-8")),
        js=Markup((TEMPLATES / "report.js").read_text(encoding="utf-8")),
        payload=_json_script({"jobs": _sample_index(data), "pageSize": PAGE_SIZE}),
        matrix=_matrix_view(data),
        boards_category=[_board_view(b) for b in by_category],
        boards_task=[_board_view(b) for b in by_task],
        speed_overall=_speed_view(overall),
        speed_datasets={d: _speed_view(p) for d, p in per_dataset.items()},
        transfer=_transfer_view(*transfer_parts),
        comparisons=[_comparison_view(c) for c in comparisons],
        compare_notes=compare_notes,
        meta=_meta_view(data),
        inline=inline,
        figures=figure_links,
        have_figures=figs.HAVE_MATPLOTLIB,
        unbounded=[d for d in data.datasets if not data.bounded(d) and any((m, d) in data.cells for m in data.models)],
        store_path=data.store_path,
        generated=dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        version=version,
        n_runs=len(data.runs),
        n_jobs=len(data.jobs),
        n_samples=sum(j.n_samples for j in data.jobs),
        multi_runs=len(data.runs) > 1,
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    files.insert(0, index)
    lap("html")
    return ReportResult(index, out, data, comparisons, files, timings)


def comparison_table(c: Comparison, name: str = "compare") -> T.Table:
    rows = []
    for r in c.rows:
        res = r.result
        rows.append([
            r.dataset, r.model_a, r.model_b, r.metric, "yes" if r.headline else "", r.n_shared,
            T._num(r.score_a.value), T._num(r.score_a.stderr),
            T._num(r.score_b.value), T._num(r.score_b.stderr), T._num(res.diff), T._num(res.stderr),
            T._num(res.ci_low), T._num(res.ci_high), res.method, T._num(res.p_value, 6),
            f"{res.discordant[0]}/{res.discordant[1]}" if res.discordant else "", r.winner,
        ])
    return T.Table(
        name, f"Paired comparison: {c.run_b} (B) vs {c.run_a} (A)",
        ["dataset", "model_a", "model_b", "metric", "headline", "n_shared", "a", "a_stderr", "b", "b_stderr",
         "diff_b_minus_a", "diff_stderr", "ci_low", "ci_high", "test", "p_value", "discordant_a_only/b_only", "winner"],
        rows,
        "diff = B − A on items both runs scored; McNemar for 0/1 metrics, paired bootstrap otherwise."
        + ("" if not c.settings else " Settings differ: " + "; ".join(c.settings_lines()) + "."),
    )
