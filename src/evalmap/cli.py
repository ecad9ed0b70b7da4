"""`evalmap ...`: a thin Typer + Rich layer over the catalog, planner, runner and report.

Every command takes `--format json` for scripts. Errors a user can cause print one
sentence and exit 2; tables degrade to plain ASCII when stdout is not a terminal.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from evalmap import planner
from evalmap.backends.registry import BACKENDS, known_backend
from evalmap.catalog.loader import Catalog, check_choice, load_catalog
from evalmap.catalog.schema import CATEGORIES, TASK_TYPES, Status
from evalmap.errors import EvalmapError
from evalmap.report.cli import register as register_report_commands
from evalmap.report.fit import Column, fit_table, terminal_width
from evalmap.tasks.base import MAX_N_SAMPLES

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Turn a model-to-dataset mapping guide into evaluations that really run.",
    pretty_exceptions_enable=False,
)
out = Console(width=terminal_width())
err = Console(stderr=True, soft_wrap=True)
INCOMPLETE_EXIT = 3  # the run finished, but some items failed (a server gave up on them): rerun to retry


class Format(StrEnum):
    table = "table"
    json = "json"


CatalogOpt = Annotated[
    list[Path] | None,
    typer.Option("--catalog", help="Extra catalog YAML (models, datasets, plans); repeatable.", show_default=False),
]
FormatOpt = Annotated[Format, typer.Option("--format", help="table for people, json for scripts.")]
EstimateBackendOpt = Annotated[
    str | None,
    typer.Option(help=f"The engine to estimate: {', '.join(BACKENDS)} (default: the model's run.default_backend)."),
]
MeasuredStoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="Store whose measured speeds to use (default ~/.cache/evalmap; never created)."),
]


def _catalog(paths: list[Path] | None) -> Catalog:
    return load_catalog([str(p) for p in paths or []])


def _split(values: list[str] | None) -> list[str]:
    """Accept both `--models a,b` and `--models a --models b`."""
    return [v.strip() for raw in values or [] for v in raw.split(",") if v.strip()]


# How a column gives way when its table is wider than the terminal (report/fit.py): free text wraps between
# words, ids and numbers never; the higher its rank here, the sooner a column is hidden; short headers are
# explained under the table. A column not named here is always shown.
_WRAPS = {"name", "categories", "description", "metrics", "source", "license", "dataset group", "model type", "note",
          "recommended by"}
_DROP = {
    "weights": 6, "license": 5, "name": 4, "backend": 3, "context": 2,  # models
    "source": 5, "guide count": 4, "request": 3, "metrics": 2,  # datasets
    **dict.fromkeys(planner.ENGINES, 10), "GPUs": 8, "prompt tok": 7, "gen tok": 7, "speed": 6, "requests": 5,  # plan
    "guide samples": 3, "guide": 2, "task type": 1,  # matrix, recommend
}
_SHORT = {"context": "ctx", "task type": "type", "guide count": "guide n", "requests": "reqs",
          "prompt tok": "p.tok", "gen tok": "g.tok", "guide samples": "g.samples", "= combinations": "= comb."}


def _column(header: str) -> Column:
    numeric = header.startswith(
        ("#", "n ", "samples", "params", "context", "count", "guide", "requests", "prompt", "gen ")
    )
    return Column(header, "right" if numeric else "left", wrap=header in _WRAPS, drop=_DROP.get(header, 0),
                  short=_SHORT.get(header, ""))


def _table(title: str, columns: list[str], rows: list[list], caption: str | None = None) -> Table:
    return fit_table(title, [_column(c) for c in columns], rows, out.width, out.is_terminal, caption)


def _json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _n(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "does not fit"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ---------------------------------------------------------------- catalog listings


@app.command()
def models(
    category: Annotated[str | None, typer.Option(help="Only this category.")] = None,
    catalog: CatalogOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """List the catalog's models."""
    cat = _catalog(catalog)
    check_choice("category", category, CATEGORIES)
    rows = [m for m in cat.models.values() if category is None or category in m.categories]
    if fmt is Format.json:
        return _json([m.model_dump(mode="json") for m in rows])
    out.print(
        _table(
            f"Models ({len(rows)})",
            ["id", "name", "categories", "params (B)", "context", "license", "backend", "weights"],
            [
                [
                    m.id, m.name, ",".join(m.categories),
                    f"{m.params_b:g}" + (f" ({m.active_params_b:g} act.)" if m.active_params_b else ""),
                    _n(m.context_length), m.license + (" (gated)" if m.gated else ""), m.run.default_backend,
                    m.hf_repo or (m.run.hf or f"user-supplied (base {m.base_model})"),
                ]
                for m in rows
            ],
        )
    )


@app.command()
def datasets(
    task_type: Annotated[str | None, typer.Option("--task-type", help="Only this task type.")] = None,
    status: Annotated[
        str | None, typer.Option(help="The guide's label: ready or expansion (not whether evalmap can run it).")
    ] = None,
    runnable: Annotated[
        bool | None, typer.Option("--runnable/--not-runnable", help="Only what evalmap can run (has a task for).")
    ] = None,
    catalog: CatalogOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """List the catalog's datasets: the guide's label (status) and whether evalmap can run each (runs)."""
    cat = _catalog(catalog)
    check_choice("task type", task_type, TASK_TYPES)
    check_choice("status (the guide's label)", status, [s.value for s in Status])
    rows = [
        d for d in cat.datasets.values()
        if (task_type is None or d.task_type == task_type) and (status is None or d.guide_status.value == status)
        and runnable in (None, d.runnable)
    ]
    if fmt is Format.json:
        return _json([d.model_dump(mode="json") for d in rows])
    out.print(
        _table(
            f"Datasets ({len(rows)})",
            ["id", "task type", "status", "runs", "count", "guide count", "request", "metrics", "source"],
            [
                [
                    d.id, d.task_type, d.guide_status.value, "yes" if d.runnable else "no task", _n(d.count),
                    _n(d.guide_count), d.request_kind, ", ".join(d.metrics), f"{d.source.id}:{d.source.split}",
                ]
                for d in rows
            ],
            caption="status: the mapping guide's label; runs: whether evalmap has a task for it (`no task`: "
            "listed, never run or estimated).",
        )
    )


# ---------------------------------------------------------------- planner views


@app.command()
def recommend(
    model: Annotated[str, typer.Argument(help="Model id (qwen25_7b), its HF repo id, or hf:ORG/NAME.")],
    include_all: Annotated[
        bool, typer.Option("--all", help="Also datasets the model cannot take (images for a text-only model).")
    ] = False,
    backend: EstimateBackendOpt = None,
    store_path: MeasuredStoreOpt = None,
    catalog: CatalogOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """The datasets a model should be run on, one row each, with the estimated time on the chosen engine;
    run them all with `evalmap run --models MODEL --datasets recommended`."""
    from evalmap.api import recommend as recommendations

    cat = _catalog(catalog)
    backend = None if backend is None else known_backend(backend)
    recs = recommendations(model, include_all=include_all, catalog=cat, backend=backend, store=store_path)
    cat = cat.with_model_refs([model])
    m = cat.model(model)
    shown = {r.dataset for r in recs}
    hidden = [r.dataset for r in planner.recommend(cat, m.id, include_all=True) if r.dataset not in shown]
    if fmt is Format.json:
        return _json({"model": model, "recommendations": [r.to_dict() for r in recs], "left_out": hidden})
    rows = [
        [r.dataset, r.task_type, r.guide_status, _why(r.recommended_by),
         _n(r.samples) + (f" (limit {r.sample_limit})" if r.sample_limit else ""),
         _plan_time(r.estimate) if r.estimate else "cannot run (no task)", r.estimate.speed if r.estimate else ""]
        for r in recs
    ]
    runnable = [r for r in recs if r.estimate]
    parts = [f"{len(recs)} datasets, {len(runnable)} runnable ({sum(r.samples for r in runnable):,} samples)"]
    if runnable:
        times = [r.estimate.estimate_seconds for r in runnable]
        first = runnable[0].estimate
        total = "unknown" if None in times else _duration(sum(times))
        parts.append(f"time: on {first.engine}, {first.source}; all runnable: {total}")
    if hidden:
        parts.append(f"left out: {', '.join(hidden)} ({planner.unsuitable(m, cat.datasets[hidden[0]])}; --all)")
    parts.append(f"run them: evalmap run --models {model} --datasets recommended")
    out.print(
        _table(
            f"Recommended for {m.id} ({m.name}; categories: {', '.join(m.categories)})",
            ["dataset", "task type", "status", "recommended by", "samples", "time", "speed"],
            rows,
            caption=". ".join(parts) + ".",
        )
    )


def _why(reasons: list[str]) -> str:
    """The first tier of each recommending category: `text/Core, efficiency/Speed (5/dataset)`."""
    firsts: dict[str, str] = {}
    for reason in reasons:
        firsts.setdefault(reason.split("/", 1)[0], reason)
    return ", ".join(firsts.values())


def _pool_rows(figures: list[planner.PoolFigures]) -> list[list]:
    rows = []
    for f in figures:
        samples = (
            f"{f.samples_range[0]:,}-{f.samples_range[1]:,} (limits)" if f.samples_range else _n(f.samples)
        )
        rows.append(
            [f.label, f.group, len(f.models), _n(f.guide_models), len(f.datasets), _n(f.guide_datasets),
             samples, f.guide_samples if isinstance(f.guide_samples, str) else _n(f.guide_samples)]
        )
    return rows


@app.command()
def matrix(
    whole_catalog: Annotated[bool, typer.Option("--whole-catalog", help="Use every catalog model.")] = False,
    catalog: CatalogOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """The guide's Ready-to-Use and Expansion tables, computed from the catalog."""
    cat = _catalog(catalog)
    ready = planner.matrix(cat, "ready", whole_catalog)
    expansion = planner.matrix(cat, "expansion", whole_catalog)
    if fmt is Format.json:
        return _json({"ready": [f.to_dict() for f in ready], "expansion": [f.to_dict() for f in expansion]})
    cols = ["model type", "dataset group", "models", "guide", "datasets", "guide", "samples", "guide samples"]
    scope = "whole catalog" if whole_catalog else "guide's models"
    out.print(_table(f"Ready-to-Use combinations ({scope})", cols, _pool_rows(ready)))
    out.print(_table(f"Expansion opportunities ({scope})", cols, _pool_rows(expansion)))
    notes = [f"{f.label}/{f.group}: {f.note}" for f in ready + expansion if f.note]
    for line in dict.fromkeys(notes + cat.mapping.notes):
        out.print(f"- {line}", highlight=False)


@app.command()
def stats(catalog: CatalogOpt = None, fmt: FormatOpt = Format.table) -> None:
    """The guide's usage statistics (67 immediate, 429 comprehensive), and the whole catalog's."""
    cat = _catalog(catalog)
    guide, whole = planner.usage(cat), planner.usage(cat, whole_catalog=True)
    if fmt is Format.json:
        return _json({"guide": guide.to_dict(), "catalog": whole.to_dict()})
    for usage_ in (guide, whole):
        title = "the guide's models" if usage_.scope == "guide" else "the whole catalog"
        for label, rows, total, guide_total in (
            ("Current usage (ready datasets)", usage_.immediate, usage_.immediate_total,
             usage_.guide_totals.get("immediate")),
            ("Full implementation (all datasets)", usage_.comprehensive, usage_.comprehensive_total,
             usage_.guide_totals.get("comprehensive")),
        ):
            out.print(
                _table(
                    f"{label}: {title}",
                    ["models", "pool", "datasets", "× models", "= combinations"],
                    [[f.label, f.group, len(f.datasets), len(f.models), f.combinations] for f in rows],
                    caption=f"Total: {total} evaluation combinations"
                    + (f" (the guide says ~{guide_total})" if usage_.scope == "guide" else ""),
                )
            )


@app.command("plans")
def list_plans(catalog: CatalogOpt = None, fmt: FormatOpt = Format.table) -> None:
    """List the named plans (the guide's A, B, C and any from --catalog files)."""
    cat = _catalog(catalog)
    if fmt is Format.json:
        return _json([p.model_dump(mode="json") for p in cat.plans.values()])
    rows = [
        [p.id, p.name, len(planner.named_plan_pairs(cat, p.id)[1]), p.description] for p in cat.plans.values()
    ]
    out.print(_table("Plans", ["id", "name", "jobs", "description"], rows))


@app.command()
def plan(
    name: Annotated[str | None, typer.Argument(help="A named plan: A, B, C or a plan id.")] = None,
    models_: Annotated[
        list[str] | None,
        typer.Option("--models", help="Model ids or selectors; hf:ORG/NAME, openai:NAME or a path for a model "
                     "outside the catalog."),
    ] = None,
    datasets_: Annotated[
        list[str] | None,
        typer.Option("--datasets", help="Dataset ids or selectors: recommended, runnable, task_type:TYPE, "
                     "status:ready|expansion, all."),
    ] = None,
    samples: Annotated[
        int | None, typer.Option(help="ITEMS per dataset (lm-eval's --limit; default: all); not --n-samples.", min=1)
    ] = None,
    n_samples: Annotated[
        int, typer.Option("--n-samples", help=f"GENERATIONS per item (pass@k), up to {MAX_N_SAMPLES}; not --samples.",
                          min=1, max=MAX_N_SAMPLES)
    ] = 1,
    backend: EstimateBackendOpt = None,
    store_path: MeasuredStoreOpt = None,
    executor: Annotated[
        str, typer.Option("--executor", help="local, or ray: pack the jobs onto --gpus GPUs of a cluster.")
    ] = "local",
    gpus: Annotated[int | None, typer.Option("--gpus", min=1, help="GPUs of the Ray cluster (--executor ray).")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Local dataset folder, as for run (prompts are rendered from it).")
    ] = None,
    seed: Annotated[int, typer.Option(min=-(2**63), max=2**63 - 1, help="The run's seed (which items).")] = 1234,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="The run's --batch-size, or --concurrency for a server.")
    ] = None,
    chat: Annotated[bool | None, typer.Option("--chat/--no-chat", help="As for run.")] = None,
    num_fewshot: Annotated[int | None, typer.Option("--num-fewshot", min=0, help="As for run.")] = None,
    mode: Annotated[str | None, typer.Option(help="As for run.")] = None,
    variant: Annotated[str | None, typer.Option(help="As for run.")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=1, help="As for run.")] = None,
    catalog: CatalogOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """The jobs of a plan with requests, tokens and estimated time: on the engine that would run each job
    (this machine's measured speed where the store has it, else its reference profile) and on every reference
    profile; with --executor ray --gpus N, the jobs packed onto N GPUs and the plan's wall time. Prompts are
    rendered from the data (--data-dir) with the run's options, as `evalmap run` would send them."""
    from evalmap.api import plan as estimate

    cat = _catalog(catalog)
    if not name and not (models_ and datasets_):
        raise EvalmapError("Give a plan name (A, B, C) or both --models and --datasets.")
    if executor not in ("local", "ray"):
        raise EvalmapError(f"Unknown executor {executor!r}; choose local or ray.")
    if (executor == "ray") != (gpus is not None):
        raise EvalmapError("--executor ray and --gpus N go together: `evalmap plan B --executor ray --gpus 8`.")
    est = estimate(
        _split(models_), _split(datasets_), samples, plan=name, n_samples=n_samples, catalog=cat,
        backend=None if backend is None else known_backend(backend), store=store_path,
        gpu=True if gpus else None, seed=seed, batch_size=batch_size, data_dir=data_dir and str(data_dir), chat=chat,
        num_fewshot=num_fewshot, mode=mode, variant=variant, max_tokens=max_tokens,
    )
    packing = None
    if gpus:
        from evalmap.executors.packing import pack_plan

        packing = pack_plan(cat, est, gpus, backend=backend)
    if fmt is Format.json:
        return _json({**est.to_dict(), **({"ray": packing.to_dict()} if packing else {})})
    print_plan(est)
    if packing:
        print_packing(packing)


def print_packing(packing) -> None:
    rows = [
        [m.model, m.engine, m.gpus or "CPU", m.replicas, m.jobs, _duration(m.work_seconds),
         _duration(m.load_seconds), _duration(m.unit_seconds), _duration(m.start_seconds),
         _duration(m.end_seconds), m.speed]
        for m in sorted(packing.models, key=lambda m: (m.start_seconds, m.model))
    ]
    use = f"{packing.utilization:.0%}" if packing.utilization is not None else "-"
    wall = "nothing placed" if packing.wall_seconds is None else _duration(packing.wall_seconds)
    low, high = (_duration(t) for t in packing.wall_range or (None, None))
    if low != high:
        wall += f" ({low} to {high})"
    out.print(
        _table(
            f"Ray: the plan on {packing.gpus} GPUs ({packing.gpus_per_node} a node): {wall} wall, "
            f"{use} of GPU time busy",
            ["model", "engine", "GPUs each", "replicas", "jobs", "work", "load", "per replica", "starts", "ends",
             "speed"],
            rows,
            caption="work: all the model's jobs on one replica; per replica: its share plus its load; starts/ends: "
            "when its replicas run in the packed schedule.",
        )
    )
    for line in packing.skipped:
        err.print(f"warning: not packed: {line}", highlight=False)
    for note in packing.notes:
        err.print(f"note: {note}", highlight=False)


def _span(value: float | None, span: tuple[float, float] | None) -> str:
    """A duration with its interval in the same unit ("87 s (81-95)"), or the duration alone."""
    if value is not None and value < 0.5:
        return "<1 s"
    if value is None or span is None or round(span[0]) == round(span[1]):
        return _duration(value)
    unit, scale = ("s", 1) if value < 120 else ("min", 60) if value < 7200 else ("h", 3600)
    digits = 1 if unit == "h" else 0
    return f"{value / scale:.{digits}f} {unit} ({span[0] / scale:.{digits}f}-{span[1] / scale:.{digits}f})"


def _plan_time(job: planner.JobEstimate) -> str:
    if job.estimate_seconds is None:
        return "cannot run" if job.source.startswith(f"none: {job.engine} cannot") else "no profile"
    return _span(job.estimate_seconds, job.estimate_range)


def _tokens_span(value: int, span: tuple[int, int]) -> str:
    return _n(value) if span[0] == span[1] else f"{_n(value)} ({_n(span[0])}-{_n(span[1])})"


def print_plan(est: planner.PlanEstimate) -> None:
    engines = list(planner.ENGINES)

    def reference(job: planner.JobEstimate, engine: str) -> str:
        return job.unavailable.get(engine) or _span(job.seconds[engine], None)

    rows = [
        [j.model, j.dataset, _n(j.samples), _n(j.requests) + (f" +{_n(j.cached)} cached" if j.cached else ""),
         _n(j.prompt_tokens), _tokens_span(j.generated_tokens, j.generated_range), j.gpus, j.engine, _plan_time(j),
         j.speed,
         *[reference(j, e) for e in engines]]
        for j in est.jobs
    ]
    rows += [
        [m.model, "(model load)", "", "", "", "", "", m.engine, _duration(m.seconds) if m.seconds is not None else "-",
         "measured" if m.source.startswith("measured") else "ref", *[""] * len(engines)]
        for m in est.loads
    ]
    total, cached = est.estimate_seconds(), est.total("cached")
    rows.append(
        ["total", f"{len(est.jobs)} jobs", _n(est.total("samples")),
         _n(est.total("requests")) + (f" +{_n(cached)} cached" if cached else ""),
         _n(est.total("prompt_tokens")), _n(est.total("generated_tokens")), "", "",
         "unknown" if total is None else _span(total, est.estimate_range()), est.speed,
         *[_duration(est.seconds(e)) if not any(e in j.unavailable for j in est.jobs) else "-" for e in engines]]
    )
    hardware = "; ".join(f"{name} = {p.hardware}" for name, p in planner.ENGINES.items())
    out.print(
        _table(
            est.name,
            ["model", "dataset", "samples", "requests", "prompt tok", "gen tok", "GPUs", "engine", "time", "speed",
             *engines],
            rows,
            caption="requests, tokens and time: what the engine computes (+N cached: requests the store's response "
            "cache already answers for that model on that engine, free); "
            "time: on the engine that would run the job, model load once per model, (low-high) from the "
            "spread of generated lengths; speed: measured = this machine's finished jobs"
            + (f" in {est.store}" if est.store else "") + " fitted to the engine's profile, ref = the engine's "
            f"reference profile, cached = every request cached. Reference columns ({hardware}) count every "
            "request and leave out loading; 'does not fit' = weights exceed "
            "that engine's memory, 'no GGUF' etc. = that engine cannot load the model (docs/cost_model.md).",
        )
    )
    for warning in dict.fromkeys(w for j in est.jobs for w in j.warnings):
        err.print(f"warning: {warning}", highlight=False)
    for j in est.jobs:
        if j.cache:
            err.print(f"note: {j.model} · {j.dataset}: {j.cache}", highlight=False)
    for line in dict.fromkeys(f"{j.model} · {j.dataset}: tokens by {j.tokens}" + (
                              f"; generated lengths from {j.lengths}" if j.lengths else "") for j in est.jobs):
        err.print(f"note: {line}", highlight=False)
    for note in est.notes:
        err.print(f"note: {note}", highlight=False)


# ---------------------------------------------------------------- run


def _backend_option(name: str | None) -> str | None:
    return None if name is None else known_backend(name)


@app.command()
def run(
    models_: Annotated[
        list[str] | None,
        typer.Option("--models", help="Model ids or selectors (comma-separated); also a catalog model's HF repo id, "
                     "or a model outside the catalog: hf:ORG/NAME, openai:NAME (with --base-url), a local folder or "
                     ".gguf file."),
    ] = None,
    datasets_: Annotated[
        list[str] | None,
        typer.Option("--datasets", help="Dataset ids or selectors (comma-separated): recommended, runnable, "
                     "task_type:TYPE, status:ready|expansion, all."),
    ] = None,
    samples: Annotated[
        int | None,
        typer.Option(help="ITEMS per dataset: a deterministic subset of N items (lm-eval's --limit); not --n-samples.",
                     min=1),
    ] = None,
    plan_name: Annotated[str | None, typer.Option("--plan", help="Run a named plan (A, B, C, ...).")] = None,
    backend: Annotated[
        str | None,
        # read from the backends table (evalmap/backends/registry.py) each time the command is built
        typer.Option(
            help=f"{', '.join(BACKENDS)} (default: the model's run.default_backend).", callback=_backend_option
        ),
    ] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible server URL.")] = None,
    api_key_env: Annotated[
        str | None, typer.Option("--api-key-env", help="Name of the env var holding the API key.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Local dataset folder (default $EVALMAP_DATA_DIR, else hub).")
    ] = None,
    output_arg: Annotated[
        str | None, typer.Option("--output", help="Write results.json, samples.jsonl and report/ into this folder.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier run's results in --output (only evalmap's files).")
    ] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    concurrency: Annotated[int, typer.Option(min=1, help="Parallel requests to a server.")] = 8,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.001, help="Seconds a server may take per request (per try).")
    ] = 120.0,
    max_retries: Annotated[
        int,
        typer.Option("--max-retries", min=0, help="Retries per request after a timeout, 429 or 5xx (each reported)."),
    ] = 5,
    seed: Annotated[int, typer.Option(min=-(2**63), max=2**63 - 1)] = 1234,
    chat: Annotated[bool | None, typer.Option("--chat/--no-chat", help="Use the chat template.")] = None,
    num_fewshot: Annotated[int | None, typer.Option("--num-fewshot", min=0)] = None,
    mode: Annotated[
        str | None, typer.Option(help="loglikelihood or generate (multiple choice), prompt or native tools (bfcl), "
        "masked_marginals (protein_sequences on a masked LM); default: the dataset's.")
    ] = None,
    variant: Annotated[
        str | None, typer.Option(help="A dataset variant, e.g. sanitized (mbpp), math500, aime25.")
    ] = None,
    n_samples: Annotated[
        int,
        typer.Option("--n-samples", min=1, max=MAX_N_SAMPLES,
                     help=f"GENERATIONS per item (pass@k), up to {MAX_N_SAMPLES}; not --samples (items per dataset)."),
    ] = 1,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.0,
    max_tokens: Annotated[
        int | None,
        typer.Option("--max-tokens", min=1, help="Most tokens per generated answer (default: each dataset's own)."),
    ] = None,
    unsafe_no_sandbox: Annotated[
        bool,
        typer.Option("--unsafe-no-sandbox", help="Where bubblewrap cannot run, execute model-written code (coding "
                     "datasets) with resource limits only; without it such a run stops before it starts."),
    ] = False,
    judge_model: Annotated[
        str | None,
        typer.Option("--judge-model", help="The model that grades judged datasets (mt_bench): an id or a reference "
                     "(openai:NAME, hf:ORG/NAME); default: "
                     "each model itself, a weak judge (said when it runs)."),
    ] = None,
    judge_backend: Annotated[
        str | None, typer.Option("--judge-backend", help="The judge's engine (default: the run's --backend).",
                                 callback=_backend_option),
    ] = None,
    judge_base_url: Annotated[
        str | None, typer.Option("--judge-base-url", help="The judge's OpenAI-compatible server (default: --base-url).")
    ] = None,
    judge_api_key_env: Annotated[
        str | None, typer.Option("--judge-api-key-env", help="Env var holding the judge server's API key.")
    ] = None,
    pairwise_against: Annotated[
        str | None,
        typer.Option("--pairwise-against", help="Judge mt_bench pairwise against a stored run id, or a model id "
                     "(its newest stored answers), instead of single 1-10 grades."),
    ] = None,
    slo: Annotated[
        str | None,
        typer.Option("--slo", help="Goodput SLOs of efficiency_bench in ms, e.g. ttft=500,tpot=50 (keys ttft, tpot, "
                     "e2el; default: the dataset's)."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    dtype: Annotated[str | None, typer.Option(help="auto, float32, bfloat16, float16.")] = None,
    store_path: Annotated[Path | None, typer.Option("--store", help="SQLite store (default ~/.cache/evalmap).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    weights: Annotated[
        list[str] | None,
        typer.Option("--weights", help="Local weights: PATH (a run of one model) or MODEL=PATH, repeatable; a folder "
                     "with config.json or a .gguf file (team fine-tunes)."),
    ] = None,
    executor: Annotated[
        str, typer.Option("--executor", help="local (this process) or ray (a Ray cluster; docs/ray.md).")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="The Ray cluster (HOST:6379; default $RAY_ADDRESS, else "
                                 "Ray started here).")
    ] = None,
    replicas: Annotated[
        int | None, typer.Option("--replicas", min=1, help="Copies of each model on Ray (default: from free GPUs).")
    ] = None,
    catalog: CatalogOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Evaluate models on datasets; resumable, cached, every score with n and stderr."""
    from evalmap.api import evaluate
    from evalmap.report.terminal import group_table, score_table

    try:
        result = evaluate(
            _split(models_) or ["smollm2_135m"], _split(datasets_) or ["humaneval"], samples, backend,
            plan=plan_name, seed=seed, catalog=catalog, store=store_path, output=output_arg,
            overwrite=overwrite, quiet=quiet or fmt is Format.json, base_url=base_url, api_key_env=api_key_env,
            batch_size=batch_size, concurrency=concurrency, device=device, dtype=dtype, timeout_s=timeout,
            max_retries=max_retries, data_dir=data_dir, chat=chat, num_fewshot=num_fewshot, mode=mode,
            variant=variant, n_samples=n_samples, temperature=temperature, judge=judge_model,
            pairwise_against=pairwise_against, judge_backend=judge_backend, judge_base_url=judge_base_url,
            judge_api_key_env=judge_api_key_env, weights=weights, max_tokens=max_tokens,
            unsafe_no_sandbox=unsafe_no_sandbox, executor=executor, ray_address=ray_address,
            replicas=replicas, slo=slo,
        )
    except KeyboardInterrupt:
        err.print("Interrupted: finished samples are saved; run the same command again to resume.")
        raise SystemExit(130) from None
    if fmt is Format.json:
        _json(result.to_dict())
        if result.failed:
            raise SystemExit(INCOMPLETE_EXIT)
        return
    out.print(score_table(result.run_id, result.jobs, out.is_terminal, out.width))
    groups = group_table(result.groups, out.is_terminal, out.width)
    if groups is not None:
        out.print(groups)
    for w in result.workers:  # --executor ray
        rate = f"{w['tokens_per_s']:,.1f} tokens/s" if w["tokens_per_s"] else "no model calls"
        out.print(f"worker {w['worker']} ({w['status']}) on {w['host']} {w['node']}: {w['samples']} samples, "
                  f"{rate} over {w['busy_seconds']:.1f} s busy", highlight=False, markup=False)
    for job in result.jobs:
        if job.judge:
            j = job.judge
            out.print(
                f"{job.model} · {job.dataset}: judged by {j['model']} on {j['engine']}, {j['calls']} judge calls"
                + (" — by itself: a weak, lenient judge, not comparable with another judge's scores (--judge-model)"
                   if j.get("self") else ""),
                highlight=False, markup=False,
            )
    calls = result.model_calls
    out.print(
        f"{calls} model calls, {result.cache_hits} cache hits"
        + (" (everything came from the cache)" if calls == 0 and result.cache_hits else "")
        + f"; store: {result.store_path}",
        highlight=False,
    )
    if result.outputs:
        paths = result.outputs
        out.print(
            f"results: {paths['results']}\nsamples: {paths['samples']}\nreport:  {paths['report']}\n"
            f"tables:  {paths['report'].parent / 'report.md'} (every table in Markdown), "
            f"{paths['report'].parent / 'tables'}/*.md|csv; `evalmap report --format md` prints the matrix",
            highlight=False
        )
    if result.failed:
        first = next(j for j in result.jobs if j.failed)
        err.print(
            f"error: {result.failed} item(s) failed and are not scored ({first.model} · {first.dataset}: "
            f"{first.failure}); the scores cover the rest, and running the same command again retries them.",
            highlight=False, markup=False,
        )
        raise SystemExit(INCOMPLETE_EXIT)


register_report_commands(app)


def _version(value: bool) -> None:
    if value:
        import evalmap

        sys.stdout.write(f"evalmap {evalmap.__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", help="Print evalmap's version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    """Turn a model-to-dataset mapping guide into evaluations that really run."""


def main() -> None:
    """Entry point: user errors become one sentence and exit code 2."""
    try:
        app(standalone_mode=False)
    except EvalmapError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        err.print("Aborted.")
        raise SystemExit(130) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except Exception as exc:  # usage errors: typer vendors its own click, so match by shape
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        raise
