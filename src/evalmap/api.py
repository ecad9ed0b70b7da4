"""The public Python API: `evaluate`, `plan`, `load_run` and the `RunResult` they hand back.

    import evalmap

    result = evalmap.evaluate("smollm2_135m", "gsm8k", samples=2, data_dir="datasets/")
    print(result.score("gsm8k"))       # the headline score, with stderr and n
    result.to_dict()                   # = results.json = `evalmap run --format json`

`evaluate` is what `evalmap run` does, minus the printing (as lm-eval's `simple_evaluate` and
Inspect's `eval()`): the same resumable, cached run in the same store, with the same checks
and one-sentence errors (`EvalmapError`). `RunResult.to_dict()` is the one JSON shape of a run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalmap import planner
from evalmap.catalog.loader import Catalog, load_catalog
from evalmap.errors import EvalmapError

if TYPE_CHECKING:  # the run machinery (torch-free, but numpy and the tasks) loads on the first evaluate / load_run
    from evalmap.executors.local import Reporter
    from evalmap.metrics.stats import Score
    from evalmap.report.tables import GroupResult
    from evalmap.runner import JobResult
    from evalmap.store import Store

Pairs = list[tuple[str, str, int | None]]

# What evalmap writes under an output folder (results.json, samples.jsonl, the HTML report);
# `overwrite` removes these and only these.
OUTPUT_FILES = (
    "results.json", "samples.jsonl", "report/index.html", "report/report.md", "report/tables/*.csv",
    "report/tables/*.md", "report/figures/*.png", "report/figures/*.svg", "report/samples/*.js",
)
OUTPUT_FOLDERS = ("report/tables", "report/figures", "report/samples", "report")
EARLIER_RUN_MARKERS = ("results.json", "samples.jsonl", "report/index.html")
# evaluate()'s own keywords; every other option is a BackendOptions or TaskConfig field.
RUN_KEYWORDS = (
    "plan", "seed", "catalog", "store", "output", "overwrite", "quiet", "reporter", "weights", "unsafe_no_sandbox",
    "executor", "ray_address", "replicas",
)
EXECUTORS = ("local", "ray")


# ---------------------------------------------------------------- the result of a run


def _finite(value: Any) -> Any:
    """NaN and infinities become None, so the JSON is strict (a 1-sample stderr is null, not NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _entry(score: Score) -> dict:
    return {"value": score.value, "stderr": score.stderr, "ci95": [score.ci_low, score.ci_high], "n": score.n,
            "ci_method": score.method}


def _job_dict(job: JobResult) -> dict:
    return {
        "model": job.model,
        "dataset": job.dataset,
        "n": job.n,
        "headline": job.headline,
        "metrics": {s.name: _entry(s) for s in job.scores},
        "model_calls": job.model_calls,
        "cache_hits": job.cache_hits,
        "failed": job.failed,
        "failure": job.failure,
        "wall_seconds": job.wall_seconds,
        "tokens": {"prompt": job.prompt_tokens, "completion": job.completion_tokens, "total": job.tokens},
        "backend": {k: job.backend.get(k) for k in ("name", "version", "model", "fingerprint", "extra")},
        "prompt_hash": job.prompt_hash,
        "task_config": job.task_config,
        "judge": job.judge,
    }


@dataclass
class RunResult:
    """One run: its jobs (each with every score and its headline), its task-type groups and how it ran.

    `to_dict()` is the one JSON shape of a run: results.json and `evalmap run --format json` print it.
    """

    run_id: str
    status: str
    jobs: list[JobResult]
    groups: list[GroupResult]
    seed: int
    catalog_version: str
    versions: dict
    args: dict
    store_path: Path
    wall_seconds: float  # the run's time in all the processes that worked on it (resumes add up)
    resumed: bool = False
    outputs: dict[str, Path] = field(default_factory=dict)  # results / samples / report, when written
    workers: list[dict] = field(default_factory=list)  # --executor ray: each worker's node, samples and throughput

    @property
    def model_calls(self) -> int:
        return sum(j.model_calls for j in self.jobs)

    @property
    def cache_hits(self) -> int:
        return sum(j.cache_hits for j in self.jobs)

    @property
    def failed(self) -> int:
        """Items the engine gave up on (not scored); running the same command again retries them."""
        return sum(j.failed for j in self.jobs)

    def job(self, dataset: str, model: str | None = None) -> JobResult:
        """The job of a dataset (and model, when the run has several)."""
        found = [j for j in self.jobs if j.dataset == dataset and model in (None, j.model)]
        if len(found) != 1:
            which = f"{model} on {dataset}" if model else dataset
            more = "; name the model too" if len(found) > 1 else ""
            raise EvalmapError(f"Run {self.run_id} has {len(found)} jobs for {which}{more}.")
        return found[0]

    def score(self, dataset: str, model: str | None = None) -> Score | None:
        """The headline score of a dataset's job (value, stderr, CI, n)."""
        return self.job(dataset, model).headline_score

    def samples(self, dataset: str | None = None, model: str | None = None) -> list[dict]:
        """The stored samples (prompt, output, extracted answer, target, metrics) of the run's jobs."""
        from evalmap.store import Store

        store = Store(self.store_path)
        try:
            return [
                {"model": j.model, "dataset": j.dataset, **{k: v for k, v in s.items() if k != "job_id"}}
                for j in self.jobs if dataset in (None, j.dataset) and model in (None, j.model)
                for s in store.samples(j.job_id)
            ]
        finally:
            store.close()

    def to_dict(self) -> dict:
        return _finite({
            "run_id": self.run_id,
            "status": self.status,
            "resumed": self.resumed,
            "seed": self.seed,
            "catalog_version": self.catalog_version,
            "versions": self.versions,
            "args": self.args,
            "store": str(self.store_path),
            "wall_seconds": self.wall_seconds,
            "model_calls": self.model_calls,
            "cache_hits": self.cache_hits,
            "failed": self.failed,
            "jobs": [_job_dict(j) for j in self.jobs],
            "groups": [{"model": g.model, "group": g.group, "members": list(g.members), **_entry(g.score)}
                       for g in self.groups],
            **({"workers": self.workers} if self.workers else {}),
        })


def _task_type(catalog: Catalog):
    from evalmap.report.data import UNCATALOGUED

    return lambda dataset: catalog.datasets[dataset].task_type if dataset in catalog.datasets else UNCATALOGUED


def _run_result(store: Store, run_id: str, jobs: list[JobResult], catalog: Catalog, resumed: bool) -> RunResult:
    from evalmap.report.tables import run_groups

    row = store.run(run_id) or {}
    groups = run_groups([(j.model, j.dataset, j.headline_score) for j in jobs], _task_type(catalog))
    return RunResult(
        run_id=run_id, status=row.get("status", "unknown"), jobs=jobs, groups=groups, seed=row.get("seed", 0),
        catalog_version=row.get("catalog_version", ""), versions=row.get("versions") or {},
        args=row.get("args") or {}, store_path=store.path, wall_seconds=row.get("wall_seconds") or 0.0,
        resumed=resumed,
    )


def load_run(
    run_id: str = "latest", store: Store | str | Path | None = None, catalog: Catalog | None = None
) -> RunResult:
    """A stored run as a RunResult: `run_id` may be an id, a unique prefix, `latest` or `latest~N`;
    `store` a Store or a path (default $EVALMAP_HOME/store.sqlite)."""
    from evalmap.metrics.stats import NAN, Score
    from evalmap.report.data import open_store, resolve_runs
    from evalmap.runner import stored_job
    from evalmap.store import Store

    opened = not isinstance(store, Store)
    db = open_store(store) if opened else store
    try:
        rid = resolve_runs(db, [run_id])[0]
        jobs = []
        for row in db.jobs(rid):
            stored = db.scores(row["id"])
            scores = [
                Score(s["name"], *(NAN if s[k] is None else s[k] for k in ("value", "stderr", "ci_low", "ci_high")),
                      s["n"], s["method"])
                for s in stored
            ]
            jobs.append(stored_job(db, row["id"], scores))
        return _run_result(db, rid, jobs, catalog or load_catalog(), resumed=False)
    finally:
        if opened:
            db.close()


# ---------------------------------------------------------------- choosing jobs, and the planner's estimate


def _ids(value: str | Sequence[str] | None) -> list[str]:
    """"a,b", ["a", "b"] or ["a,b"]: the ids or selectors, in order."""
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    return [v.strip() for raw in values for v in str(raw).split(",") if v.strip()]


def _catalog(catalog: Catalog | str | Path | Sequence[str | Path] | None) -> Catalog:
    """A Catalog as given, or the packaged one plus these override YAML files."""
    if isinstance(catalog, Catalog):
        return catalog
    files = [catalog] if isinstance(catalog, str | Path) else list(catalog or [])
    return load_catalog([str(p) for p in files])


Samples = int | dict[str, int] | None  # items per dataset: one number for all, or {dataset id: N}


def _limit(samples: Samples, dataset: str) -> int | None:
    return samples.get(dataset) if isinstance(samples, dict) else samples


def select_jobs(
    catalog: Catalog, plan: str | None, models: str | Sequence[str] | None, datasets: str | Sequence[str] | None,
    samples: Samples = None,
) -> tuple[str, Pairs]:
    """(title, jobs) of a named plan (with `samples` replacing its limits) or of a models × datasets pick."""
    if plan:
        title, pairs = planner.named_plan_pairs(catalog, plan)
        return title, [(m, d, _limit(samples, d) or s) for m, d, s in pairs]
    if not (_ids(models) and _ids(datasets)):
        raise EvalmapError("Give a plan name (A, B, C) or both models and datasets.")
    pairs = planner.plan_pairs(catalog, _ids(models), _ids(datasets))
    return "Ad-hoc plan", [(m, d, _limit(samples, d)) for m, d, _ in pairs]


def plan(
    models: str | Sequence[str] | None = None,
    datasets: str | Sequence[str] | None = None,
    samples: Samples = None,
    *,
    plan: str | None = None,
    n_samples: int = 1,
    catalog: Catalog | str | Path | Sequence[str | Path] | None = None,
    backend: str | None = None,
    store: Store | str | Path | None = None,
    gpu: bool | None = None,
    seed: int = 1234,
    batch_size: int | None = None,
    **options: Any,
) -> planner.PlanEstimate:
    """The jobs of a named plan (`plan="A"`) or of models × datasets, with requests, tokens and the
    estimated time per engine (`evalmap plan`); `.to_dict()` for JSON.

    Tokens are counted from what the run would send: a seeded sample of each job's items rendered by its
    task under the same options (`options`: any TaskConfig field, e.g. data_dir, num_fewshot, chat, mode,
    max_tokens, variant; `seed` as in evaluate) and counted with the model's tokenizer where it is here.
    Each job's headline estimate is for the engine that would run it (`backend`, default the model's
    run.default_backend): this machine's history in the store (a Store or a file, default
    $EVALMAP_HOME/store.sqlite) fitted to that engine's profile where it has finished jobs of that model
    on that engine, else the engine's reference profile; each model's load is counted once. Requests the
    store's response cache already answers for that model on that engine cost nothing: each job's requests,
    tokens and time are for the rest (`cached` says how many). A missing
    store file is not created. `gpu`: whether transformers would run on a GPU here (default: detected);
    `batch_size`: --batch-size (transformers) or --concurrency (a server) of the planned run."""
    from evalmap.backends.registry import known_backend
    from evalmap.tasks.base import MAX_N_SAMPLES, TaskConfig
    from evalmap.workload import plan_workloads

    if not (isinstance(n_samples, int) and 1 <= n_samples <= MAX_N_SAMPLES):
        raise EvalmapError(f"n_samples (generations per item) must be 1 to {MAX_N_SAMPLES} (got {n_samples!r}).")
    cat = _catalog(catalog).with_model_refs(_ids(models))
    title, pairs = select_jobs(cat, plan, models, datasets, samples)
    if backend is not None:
        known_backend(backend)
    runnable = [p for p in pairs if cat.datasets[p[1]].runnable]
    gpu = _gpu_present() if gpu is None else gpu
    task_fields = {f.name for f in dataclasses.fields(TaskConfig)} - {"seed", "n_samples"}
    unknown = sorted(set(options) - task_fields)
    if unknown:
        raise EvalmapError(f"Unknown option(s) for evalmap.plan: {', '.join(unknown)}; known: "
                           f"{', '.join(sorted(task_fields))}.")
    config = TaskConfig(**{k: v for k, v in options.items() if v is not None}, n_samples=n_samples, seed=seed)
    with _measurements(store) as (db, where, note):
        workloads, rendered = plan_workloads(cat, runnable, config, seed, db, backend)
        est = planner.estimate_plan(
            cat, title, runnable, n_samples, backend=backend, measured=db.measured_jobs if db else None, gpu=gpu,
            workloads=workloads, settings=dataclasses.asdict(config), batch=batch_size,
            converting=_converting(cat, runnable, backend),
        )
    est.notes.extend(rendered)
    est.store = where
    est.notes.extend([note] if note else [])
    skipped = list(dict.fromkeys(d for _, d, _ in pairs if not cat.datasets[d].runnable))
    if skipped:
        est.notes.append(
            f"not estimated: {len(pairs) - len(runnable)} job(s) on {', '.join(skipped)}, which evalmap cannot run "
            "(no task implementation yet; `evalmap datasets --runnable` lists what it can)"
        )
    return est


def recommend(
    model: str,
    *,
    include_all: bool = False,
    catalog: Catalog | str | Path | Sequence[str | Path] | None = None,
    backend: str | None = None,
    store: Store | str | Path | None = None,
    gpu: bool | None = None,
) -> list[planner.Recommendation]:
    """The datasets a model should run (`evalmap recommend`): one row per dataset, each runnable one with the
    planner's time estimate on `backend` (default the model's engine; measured where the store has it),
    the others flagged as not runnable. `include_all`: also datasets the model cannot take (images for a
    text-only model). `model`: a catalog id, a catalog model's HF repo id, or a reference (hf:, openai:, path)."""
    cat = _catalog(catalog).with_model_refs([model])
    model_id = cat.model_id(model)
    recs = planner.recommend(cat, model_id, include_all)
    runnable = [r for r in recs if r.runnable]
    if runnable:
        est = plan(
            model_id, [r.dataset for r in runnable], {r.dataset: r.sample_limit or r.samples for r in runnable},
            catalog=cat, backend=backend, store=store, gpu=gpu,
        )
        for rec, job in zip(runnable, est.jobs, strict=True):
            rec.estimate = job
    return recs


@contextlib.contextmanager
def _measurements(store: Store | str | Path | None):
    """(the Store or None, the store's path or None, a note on why none was read).

    An existing store file is opened as any reader opens it; a missing one is not created, and a
    store that cannot be opened leaves the plan on reference profiles (a plan is only an estimate)."""
    from evalmap.store import Store, default_home

    if isinstance(store, Store):
        yield store, str(store.path), None
        return
    path = Path(store) if store else default_home() / "store.sqlite"
    if not path.is_file():  # nothing run yet is no news; a --store that is not there is worth a note
        yield None, None, f"no store at {path}: reference profiles only" if store else None
        return
    try:
        db = Store(path)
    except EvalmapError as exc:
        yield None, None, f"the store {path} was not read ({exc}): reference profiles only"
        return
    try:
        yield db, str(path), None
    finally:
        db.close()


def _converting(catalog: Catalog, pairs: Pairs, backend: str | None) -> set[str]:
    """Models transformers would first convert from GGUF (no converted copy on this machine yet)."""
    from evalmap.backends.weights import converted_dir, file_fingerprint, has_converted_copy
    from evalmap.workload import local_gguf

    found = set()
    for model_id in dict.fromkeys(m for m, _, _ in pairs):
        model = catalog.model(model_id)
        source = model.run.gguf
        if (backend or model.run.default_backend) != "transformers" or not (source and (source.package or source.path)):
            continue
        path = local_gguf(model)
        if path is not None and not has_converted_copy(converted_dir(file_fingerprint(path))):
            found.add(model_id)
    return found


def _gpu_present() -> bool:
    """Would transformers (device "auto") run on a CUDA GPU here? Without importing torch when it is not
    loaded yet: the NVIDIA driver's GPU list, unless CUDA_VISIBLE_DEVICES hides every device."""
    import os
    import sys

    if os.environ.get("CUDA_VISIBLE_DEVICES", "x").strip() in ("", "-1"):
        return False
    torch = sys.modules.get("torch")
    if torch is not None:
        with contextlib.suppress(Exception):
            return bool(torch.cuda.is_available())
    with contextlib.suppress(OSError):
        return any(Path("/proc/driver/nvidia/gpus").iterdir())
    return False


# ---------------------------------------------------------------- running


def _options(samples: int | None, backend: str | None, seed: int, options: dict):
    from evalmap.backends import BackendOptions
    from evalmap.executors.local import RunOptions
    from evalmap.tasks.base import TaskConfig
    from evalmap.tasks.data import encodable

    backend_fields = {f.name for f in dataclasses.fields(BackendOptions)} - {"backend"}
    task_fields = {f.name for f in dataclasses.fields(TaskConfig)} - {"seed"}
    # the judge's engine: judge_<any BackendOptions field> (judge_backend, judge_base_url, ...), else the run's
    judge_fields = {f"judge_{name}" for name in {*backend_fields, "backend"}}
    for prefix in ("", "judge_"):
        if f"{prefix}timeout" in options:  # the CLI's name for it
            options[f"{prefix}timeout_s"] = options.pop(f"{prefix}timeout")
    unknown = sorted(set(options) - backend_fields - task_fields - judge_fields)
    if unknown:
        known = ", ".join(sorted({*RUN_KEYWORDS, "samples", "backend", "timeout", *backend_fields, *task_fields,
                                  "judge_backend", "judge_base_url", "judge_api_key_env"}))
        raise EvalmapError(f"Unknown option(s) for evalmap.evaluate: {', '.join(unknown)}; known: {known}.")
    if options.get("data_dir") is not None:
        options["data_dir"] = str(options["data_dir"])
    for name, value in options.items():  # an undecodable byte in an argument would break the store's JSON
        if not encodable(value):
            raise EvalmapError(f"--{name.replace('_', '-')} {value!r} is not valid text (an undecodable byte); "
                               "pass it as UTF-8.")
    run_backend = BackendOptions(backend=backend, **{k: v for k, v in options.items() if k in backend_fields})
    judge_engine = {k.removeprefix("judge_"): v for k, v in options.items() if k in judge_fields and v is not None}
    if judge_engine and not options.get("judge"):
        raise EvalmapError(
            f"--judge-{'/--judge-'.join(k.replace('_', '-') for k in sorted(judge_engine))} choose the judge's "
            "engine; name the judge model too, with --judge-model ID (a catalog model)."
        )
    return RunOptions(
        samples=samples,
        seed=seed,
        backend=run_backend,
        task=TaskConfig(**{k: v for k, v in options.items() if k in task_fields}, seed=seed),
        judge_backend=dataclasses.replace(run_backend, **judge_engine) if judge_engine else None,
    )


def evaluate(
    models: str | Sequence[str] | None = None,
    datasets: str | Sequence[str] | None = None,
    samples: Samples = None,
    backend: str | None = None,
    *,
    plan: str | None = None,
    seed: int = 1234,
    catalog: Catalog | str | Path | Sequence[str | Path] | None = None,
    store: Store | str | Path | None = None,
    output: str | Path | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    reporter: Reporter | None = None,
    weights: str | Sequence[str] | dict[str, str] | None = None,
    unsafe_no_sandbox: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
    replicas: int | None = None,
    **options: Any,
) -> RunResult:
    """Evaluate models on datasets (or a named `plan`), as `evalmap run` does; returns the RunResult.

    models, datasets: ids or selectors ("smollm2_135m", ["gsm8k", "arc_challenge"], "a,b"); a model may also
    be a catalog model's HF repo id or a model outside the catalog: "hf:ORG/NAME", "openai:NAME", a local
    folder or .gguf file (catalog/refs.py). samples: how many items of each dataset (lm-eval's `limit`;
    a deterministic subset), or {dataset: N} (default: all); not n_samples, the generations per item.
    backend: transformers,
    llamacpp, openai, vllm, ... (default: the model's). options: any BackendOptions field (base_url,
    api_key_env, batch_size, concurrency, device, dtype, timeout, max_retries, ...) or TaskConfig field
    (data_dir, chat, num_fewshot, mode, variant, n_samples, temperature, judge, pairwise_against, ...); a
    judged dataset (mt_bench) is graded by `judge` (a catalog model id; default: each model itself, said
    loudly) on the run's engine settings, or on judge_backend / judge_base_url / judge_api_key_env / any
    judge_<backend option>. store: a Store or a file
    (default $EVALMAP_HOME/store.sqlite). output: a folder to write results.json, samples.jsonl and the
    HTML report into (an earlier run's results there need overwrite=True). quiet: no progress bars
    (they go to stderr). unsafe_no_sandbox: where bubblewrap cannot run, execute model-written code
    with resource limits only (without it, such a run stops before it starts). executor: "local" (this
    process) or "ray" (a Ray cluster at ray_address, else $RAY_ADDRESS, else Ray started here; `replicas`
    copies of each model, default from the free GPUs; docs/ray.md). A rerun with the same
    arguments resumes an unfinished run or answers from the response cache. Errors a user can cause
    raise EvalmapError with one sentence saying what to do.
    """
    from evalmap.executors.local import run_plan
    from evalmap.store import Store

    if executor not in EXECUTORS:
        raise EvalmapError(f"Unknown executor {executor!r}; choose local or ray.")
    if executor == "local" and (ray_address is not None or replicas is not None):
        raise EvalmapError("--ray-address and --replicas choose where --executor ray runs; add --executor ray.")
    if replicas is not None and not (isinstance(replicas, int) and not isinstance(replicas, bool) and replicas >= 1):
        raise EvalmapError(f"replicas must be a whole number, 1 or more (got {replicas!r}).")
    if executor == "ray":
        from evalmap.executors.ray_executor import import_ray, run_plan_on_ray

        import_ray()  # not installed: one sentence before anything is opened
        run_plan = functools.partial(run_plan_on_ray, address=ray_address, replicas=replicas,
                                     unsafe_no_sandbox=unsafe_no_sandbox)
    temperature = options.get("temperature", 0.0)
    if not (isinstance(temperature, int | float) and math.isfinite(temperature)):
        raise EvalmapError(f"--temperature {temperature} is not a finite number; pass 0 (greedy) or e.g. 0.8.")
    limits = list(samples.values()) if isinstance(samples, dict) else [] if samples is None else [samples]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in limits):
        raise EvalmapError(f"samples must be a whole number of items per dataset, 1 or more (got {samples!r}).")
    if not (isinstance(seed, int) and -(2**63) <= seed < 2**63):
        raise EvalmapError(f"seed must be a whole number within 64 bits (got {seed!r}).")
    if output is not None and not str(output).strip():
        raise EvalmapError("--output is empty; pass the folder to write results into, e.g. --output evalmap-out.")
    out_dir = Path(output) if output is not None else None
    judge = options.get("judge")
    cat = _catalog(catalog).with_model_refs([*_ids(models), *([judge] if judge else [])])
    if judge:
        options["judge"] = cat.model_id(judge)  # a judge outside the catalog too (openai:NAME, hf:ORG/NAME)
    _, pairs = select_jobs(cat, plan, models, datasets, samples)
    check_runnable(cat, pairs)
    chosen_weights = _weights(weights, list(dict.fromkeys(m for m, _, _ in pairs)), cat)
    cat = cat.with_weights(chosen_weights)
    run_options = _options(None if isinstance(samples, dict) else samples, backend, seed, dict(options))
    if out_dir:
        check_output_dir(out_dir, overwrite)  # before the store opens or a model loads
    sandbox_allowed = check_sandbox(cat, pairs, unsafe_no_sandbox)
    db = store if isinstance(store, Store) else Store(store)
    args = {"pairs": pairs, "backend": backend, "base_url": options.get("base_url"), "samples": samples,
            "seed": seed, **({"weights": chosen_weights} if chosen_weights else {}),
            **({"executor": executor, "replicas": replicas} if executor != "local" else {}),
            **{k: options[k] for k in ("batch_size", "concurrency") if k in options}}  # the planner's measured batch
    try:
        with sandbox_allowed, _progress(reporter, quiet) as shown:
            summary = run_plan(cat, pairs, run_options, db, shown, args=args)
        result = _run_result(db, summary.run_id, summary.results, cat, summary.resumed)
        result.workers = summary.metadata.get("workers", [])
        if out_dir:
            if overwrite:
                remove_outputs(out_dir)  # only now: an interrupted run leaves the earlier results in place
            result.outputs = write_outputs(result, db, out_dir)
            from evalmap.report.html import build_report

            result.outputs["report"] = build_report(db, [result.run_id], out_dir / "report", cat).index
        return result
    finally:
        if db is not store:
            db.close()


def check_runnable(catalog: Catalog, pairs: Pairs) -> None:
    """A dataset without a task fails here, before a store is opened or a run recorded."""
    missing = list(dict.fromkeys(d for _, d, _ in pairs if not catalog.datasets[d].runnable))
    if missing:
        runnable = ", ".join(d.id for d in catalog.datasets.values() if d.runnable)
        raise EvalmapError(
            f"evalmap cannot run {', '.join(missing)} yet (no task implementation); leave "
            f"{'it' if len(missing) == 1 else 'them'} out or pick runnable datasets: {runnable}."
        )


def check_sandbox(catalog: Catalog, pairs: Pairs, unsafe_no_sandbox: bool) -> contextlib.AbstractContextManager:
    """Before a run that executes model-written code: bubblewrap works here, or the user said
    --unsafe-no-sandbox (then the fallback is said once, now); else one sentence. Returns the context
    that lets the run's scorers use the fallback."""
    from evalmap.sandbox.isolation import isolation_available, unsandboxed_allowed

    allowed = unsandboxed_allowed(unsafe_no_sandbox)
    if any(catalog.datasets[d].request_kind == "execute" for _, d, _ in pairs):
        with unsandboxed_allowed(unsafe_no_sandbox):
            isolation_available()
    return allowed


def _weights(
    given: str | Sequence[str] | dict[str, str] | None, models: list[str], catalog: Catalog
) -> dict[str, str]:
    """`--weights PATH` (a run of one model) or `--weights MODEL=PATH` (repeatable) as {model id: path};
    MODEL may be any name of the model (its HF repo id too)."""
    if not given:
        return {}

    def model_id(ref: str) -> str:
        try:
            return catalog.model_id(ref)
        except EvalmapError:
            return ref

    if isinstance(given, dict):
        chosen = {model_id(m): p for m, p in given.items()}
    else:
        chosen = {}
        for entry in [given] if isinstance(given, str) else list(given):
            ref, sep, path = entry.partition("=")
            model = model_id(ref) if sep else ref
            if sep and model in models:
                chosen[model] = path
            elif len(models) == 1:
                chosen[models[0]] = entry
            else:
                raise EvalmapError(
                    f"--weights {entry} names no model of this run ({', '.join(models)}); write --weights MODEL=PATH."
                )
    strangers = sorted(set(chosen) - set(models))
    if strangers:
        raise EvalmapError(f"--weights names {', '.join(strangers)}, which this run does not evaluate.")
    return chosen


@contextlib.contextmanager
def _progress(reporter: Reporter | None, quiet: bool):
    """The caller's reporter, else progress bars on stderr (none when quiet)."""
    if reporter is not None:
        yield reporter
        return
    from rich.console import Console

    from evalmap.report.terminal import RichReporter

    with RichReporter(Console(stderr=True), quiet=quiet) as bars:
        yield bars


# ---------------------------------------------------------------- the output folder


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


def write_outputs(result: RunResult, store: Store, out_dir: Path) -> dict[str, Path]:
    """results.json (`RunResult.to_dict()`) and samples.jsonl (one stored sample a line)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.json"
    results_path.write_text(json.dumps(result.to_dict(), indent=2, default=str))
    samples_path = out_dir / "samples.jsonl"
    with samples_path.open("w", encoding="utf-8") as fh:
        for job in result.jobs:
            for s in store.samples(job.job_id):
                row = {"model": job.model, "dataset": job.dataset, **{k: v for k, v in s.items() if k != "job_id"}}
                fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return {"results": results_path, "samples": samples_path}
