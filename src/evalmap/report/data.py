"""Load runs from the store into flat records that every table, figure and page shares.

One pass over the store: runs, their jobs, each job's scores and a per-job summary
of its samples (count, model latency, tokens) computed in SQL, so a 25 × 26 × 500
store loads in well under a second. The samples themselves are read later, job by
job, only when the report writes the samples browser.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evalmap.catalog.loader import Catalog
from evalmap.catalog.schema import CATEGORIES, TASK_TYPES
from evalmap.errors import EvalmapError
from evalmap.metrics.stats import NAN, Score, empty_score
from evalmap.store import Store, default_home

# Metrics where a smaller number is the better one (seconds); everything else is "higher is better".
LOWER_IS_BETTER_PREFIXES = ("latency",)
# Metrics that are not proportions, even when a run's values happen to fall in 0-1: never averaged with accuracies.
NOT_PROPORTIONS = frozenset({"spearman", "mcc", "judge_score", "tokens_per_second", "output_tok_s", "tg128_tok_s"})
UNCATALOGUED = "uncatalogued"
ENDED = ("finished", "incomplete")  # runs whose jobs all ran to the end (incomplete: some items failed)
# What a job was run with, beyond model and dataset: two scores differing in any of these are not one measurement.
SETTINGS = ("num_fewshot", "chat", "mode", "max_tokens", "variant", "n_samples", "temperature", "top_p", "judge",
            "pairwise_against", "backend", "dtype")

# The task types a model category is built for: the rest of a transfer row is "away" play.
HOME_TASK_TYPES: dict[str, tuple[str, ...]] = {
    "coding": ("coding",),
    "math": ("mathematics",),
    "text": ("reasoning", "knowledge", "instruction_following"),
    "multimodal": ("multimodal",),
    "efficiency": ("efficiency",),
    "genomics": ("life_science",),
}


def lower_is_better(metric: str) -> bool:
    return metric.startswith(LOWER_IS_BETTER_PREFIXES)


def averageable(metric: str, value: float) -> bool:
    """A 0-1 score where higher is better: the only kind averaged across datasets (groups, leaderboards);
    a correlation, a 1-10 judge score or a speed is shown per dataset only."""
    return not lower_is_better(metric) and metric not in NOT_PROPORTIONS and 0.0 <= value <= 1.0


def _float(value) -> float:
    return NAN if value is None else float(value)


def job_settings(task_config: dict | None, backend: dict | None) -> dict[str, str]:
    """The SETTINGS of a job as text ("default" where the run left the dataset's own choice)."""
    config, backend = task_config or {}, backend or {}
    extra = backend.get("extra") or {}
    values = {k: config.get(k) for k in SETTINGS[:-2]}
    values["backend"] = backend.get("name")
    values["dtype"] = extra.get("dtype")
    return {k: "default" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in values.items()}


def settings_diff(a: dict[str, str], b: dict[str, str]) -> dict[str, tuple[str, str]]:
    """{setting: (a's value, b's value)} for every setting the two differ in."""
    return {k: (a[k], b[k]) for k in SETTINGS if a.get(k) != b.get(k)}


@dataclass
class RunRecord:
    id: str
    created: float
    finished: float | None
    status: str
    seed: int
    catalog_version: str
    versions: dict
    args: dict
    wall_seconds: float | None
    n_jobs: int = 0
    model_calls: int = 0
    cache_hits: int = 0
    samples: int = 0


@dataclass
class JobRecord:
    """One (model, dataset) job of a run, with its scores and a summary of its samples."""

    key: str  # short, file-name-safe id used by the HTML page ("j0007")
    id: str
    run_id: str
    model: str
    dataset: str
    status: str
    backend: dict
    task_config: dict
    prompt_hash: str
    n_items: int
    wall_seconds: float
    model_calls: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    scores: list[Score] = field(default_factory=list)
    headline: str | None = None  # the stored headline metric's name (store.py: scores.headline)
    n_samples: int = 0
    latency_sum: float = 0.0
    latency_sq: float = 0.0
    sample_tokens: int = 0
    category: str = UNCATALOGUED
    categories: tuple[str, ...] = ()
    task_type: str = UNCATALOGUED
    judge: dict | None = None  # a judged job's judge (store.py JUDGE_COLUMNS), with its calls and tokens
    row: str = ""  # its matrix row: the model, plus the settings that set it apart when runs mixed them

    @property
    def settings(self) -> dict[str, str]:
        return job_settings(self.task_config, self.backend)

    @property
    def primary(self) -> Score | None:
        """The job's headline score, as stored when the job finished; None while it has no scores."""
        return next((s for s in self.scores if s.name == self.headline), self.scores[0] if self.scores else None)

    @property
    def value(self) -> float:
        return self.primary.value if self.primary else NAN

    @property
    def backend_label(self) -> str:
        name, version = self.backend.get("name"), self.backend.get("version")
        return " ".join(str(x) for x in (name, version) if x) or "unknown"

    @property
    def judge_label(self) -> str:
        """Who graded a judged job: "model on engine", marked when it graded itself; "" when not judged."""
        j = self.judge
        if not j:
            return ""
        mode = f" · pairwise vs {j['pairwise_against']}" if j.get("pairwise_against") else ""
        return (f"{j.get('model')} on {j.get('engine')}" + (" (itself)" if j.get("self") else "")
                + f" · prompts {str(j.get('prompt_hash', ''))[:12]} · {j.get('calls', 0)} judge calls{mode}")

    def seconds_per_sample(self) -> Score:
        """Mean model latency per sample (as the backend measured it, cached or not) with its stderr.

        Falls back to the job's wall time / samples when the backend reported no latency.
        """
        n = self.n_samples
        if n == 0:
            return empty_score("seconds_per_sample")
        if self.latency_sum <= 0:
            mean = self.wall_seconds / n if self.wall_seconds > 0 else NAN
            return Score("seconds_per_sample", mean, NAN, NAN, NAN, n, "wall")
        mean = self.latency_sum / n
        if n < 2:
            return Score("seconds_per_sample", mean, NAN, NAN, NAN, n, "latency")
        var = max(self.latency_sq - n * mean * mean, 0.0) / (n - 1)
        se = math.sqrt(var / n)
        return Score("seconds_per_sample", mean, se, mean - 1.96 * se, mean + 1.96 * se, n, "latency")

    def tokens_per_second(self) -> float:
        """(prompt + completion) tokens per second of model time; NaN when unknown."""
        if self.latency_sum > 0 and self.sample_tokens > 0:
            return self.sample_tokens / self.latency_sum
        tokens = self.prompt_tokens + self.completion_tokens
        if self.model_calls and self.wall_seconds > 0 and tokens:
            return tokens / self.wall_seconds
        return NAN


@dataclass
class ReportData:
    store_path: str
    runs: list[RunRecord]
    jobs: list[JobRecord]
    cells: dict[tuple[str, str], JobRecord]
    models: list[str]
    datasets: list[str]
    model_categories: dict[str, tuple[str, ...]]
    dataset_task_type: dict[str, str]
    recommended: dict[str, dict[str, str]]
    catalog: Catalog | None = None
    split_by: tuple[str, ...] = ()  # the SETTINGS that differ within a dataset's column, so they label the rows
    model_of: dict[str, str] = field(default_factory=dict)  # matrix row -> its model
    _bounded: dict[str, bool] = field(default_factory=dict, repr=False)

    def model_category(self, model: str) -> str:
        cats = self.model_categories.get(model) or (UNCATALOGUED,)
        return cats[0]

    def primary_metric(self, dataset: str) -> str | None:
        for m in self.models:
            job = self.cells.get((m, dataset))
            if job and job.primary:
                return job.primary.name
        return None

    def bounded(self, dataset: str) -> bool:
        """True when the dataset's headline metric is a 0-1 score where higher is better.

        Only those are averaged into leaderboards and transfer tables; latencies,
        judge scores on a 1-10 scale and correlations are shown per dataset only.
        """
        if dataset not in self._bounded:
            metric = self.primary_metric(dataset)
            values = [
                j.value for m in self.models if (j := self.cells.get((m, dataset))) and not math.isnan(j.value)
            ]
            self._bounded[dataset] = (
                metric is not None and bool(values) and all(averageable(metric, v) for v in values)
            )
        return self._bounded[dataset]

    def shown_datasets(self, gaps: bool = True) -> list[str]:
        """A matrix's columns: the datasets with a cell run, or (with `gaps`) a recommended cell not run; a column
        that would be all empty is left out."""
        return [d for d in self.datasets
                if any((m, d) in self.cells or (gaps and self.gap(m, d)) for m in self.models)]

    def gap(self, model: str, dataset: str) -> str | None:
        """The catalog's reason to run this pair when the model ran it in no row, else None (`model` is a row)."""
        base = self.model_of.get(model, model)
        if any((r, dataset) in self.cells for r in self.models if self.model_of.get(r, r) == base):
            return None
        return self.recommended.get(model, {}).get(dataset)

    @property
    def gaps(self) -> list[tuple[str, str, str]]:
        return [(m, d, why) for m in self.models for d in self.datasets if (why := self.gap(m, d))]


# ---------------------------------------------------------------- store and run selection


def open_store(path: str | Path | None) -> Store:
    """Open an existing store for reading; a missing file is the user's mistake, not a new empty store."""
    target = Path(path) if path else default_home() / "store.sqlite"
    if not target.is_file():
        raise EvalmapError(
            f"No evalmap store at {target}; run `evalmap run` first or pass --store PATH."
        )
    return Store(target)


def all_run_ids(store: Store, ended: bool = False) -> list[str]:
    """Every run id in the store, newest first; with `ended`, only runs that ran to the end (ENDED)."""
    where = f" WHERE status IN ({_marks(ENDED)})" if ended else ""
    return [r[0] for r in store.db.execute(
        f"SELECT id FROM runs{where} ORDER BY created DESC, rowid DESC", ENDED if ended else ()
    )]


def resolve_runs(
    store: Store, selectors: Sequence[str] | None, last: int = 1, allow_failed: bool = False
) -> list[str]:
    """Turn run ids, unique prefixes, `latest` or `latest~N` into run ids (default: the newest `last` runs).

    `latest` and the default count only runs that ran to the end: a failed or interrupted run is skipped; named
    by its id, an interrupted (or still running) run is shown as far as it got, a failed one is refused with its
    error (unless `allow_failed`: `evalmap runs show` and `runs rm` name any run)."""
    known = all_run_ids(store)
    if not known:
        raise EvalmapError(f"The store at {store.path} has no runs yet; run `evalmap run` first.")
    ended = all_run_ids(store, ended=True)
    if not selectors:
        if not ended:
            raise EvalmapError(
                f"The store at {store.path} has no finished run yet (`evalmap runs` lists them all); "
                "name a run id to see an unfinished one."
            )
        return ended[: max(1, last)]
    chosen: list[str] = []
    for sel in selectors:
        run_id = _resolve_one(store, known, ended, sel, allow_failed)
        if run_id not in chosen:
            chosen.append(run_id)
    return chosen


def _resolve_one(store: Store, known: list[str], ended: list[str], sel: str, allow_failed: bool) -> str:
    if sel == "latest" or (sel.startswith("latest~") and sel[7:].isdigit()):
        back = 0 if sel == "latest" else int(sel[7:])
        if back < len(ended):
            return ended[back]
        raise EvalmapError(
            f"Run {sel!r} does not exist: the store at {store.path} holds {len(ended)} finished runs "
            f"({len(known)} in all; `evalmap runs` lists them)."
        )
    run_id = _match(store, known, sel)
    row = store.run(run_id) or {}
    if row.get("status") == "failed" and not allow_failed:
        raise EvalmapError(
            f"Run {run_id} failed ({row.get('error') or 'no error recorded'}), so it has no results to show; "
            f"run its command again to resume it, or `evalmap runs rm {run_id}`."
        )
    return run_id


def _match(store: Store, known: list[str], sel: str) -> str:
    if sel in known:
        return sel
    matches = [r for r in known if r.startswith(sel) or r.endswith(sel)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise EvalmapError(f"Run id {sel!r} is ambiguous ({', '.join(matches[:4])}); give more of it.")
    recent = ", ".join(known[:5])
    raise EvalmapError(f"Unknown run id {sel!r}; the newest runs in {store.path} are: {recent}.")


# ---------------------------------------------------------------- loading


def _marks(values: Sequence) -> str:
    return ",".join("?" * len(values))


def load_report_data(store: Store, run_ids: Sequence[str], catalog: Catalog | None) -> ReportData:
    """Runs (in the given order), their jobs, scores and sample summaries, arranged for the report."""
    runs: list[RunRecord] = []
    for run_id in run_ids:
        row = store.run(run_id)
        if row is None:
            raise EvalmapError(f"Unknown run id {run_id!r} in {store.path}.")
        runs.append(
            RunRecord(
                id=row["id"], created=row["created"], finished=row["finished"], status=row["status"],
                seed=row["seed"], catalog_version=row["catalog_version"], versions=row["versions"] or {},
                args=row["args"] or {}, wall_seconds=row["wall_seconds"],
            )
        )
    jobs: list[JobRecord] = []
    by_id: dict[str, JobRecord] = {}
    for run in runs:
        for row in store.jobs(run.id):
            job = JobRecord(
                key=f"j{len(jobs) + 1:04d}", id=row["id"], run_id=row["run_id"], model=row["model"],
                dataset=row["dataset"], status=row["status"], backend=row["backend"] or {},
                task_config=row["task_config"] or {}, prompt_hash=row["prompt_hash"], n_items=row["n_items"],
                wall_seconds=row["wall_seconds"], model_calls=row["model_calls"], cache_hits=row["cache_hits"],
                prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"],
                judge={**row["judge"], "calls": row["judge_calls"], "tokens": row["judge_tokens"]}
                if row.get("judge") else None,
            )
            jobs.append(job)
            by_id[job.id] = job
    _attach_scores(store, by_id)
    _attach_sample_summaries(store, by_id)

    for run in runs:
        mine = [j for j in jobs if j.run_id == run.id]
        run.n_jobs = len(mine)
        run.model_calls = sum(j.model_calls for j in mine)
        run.cache_hits = sum(j.cache_hits for j in mine)
        run.samples = sum(j.n_samples for j in mine)

    # A cell is one measurement: where a dataset's jobs differ in settings (0- vs 3-shot, two engines), each
    # model gets a row per settings, labelled with them; within a row the newest run wins the cell.
    split_by = _split_by(jobs)
    for job in jobs:
        job.row = job.model + (f" [{', '.join(f'{k}={job.settings[k]}' for k in split_by)}]" if split_by else "")
    cells: dict[tuple[str, str], JobRecord] = {}
    for run in sorted(runs, key=lambda r: r.created):
        for job in jobs:
            if job.run_id == run.id:
                cells[(job.row, job.dataset)] = job

    model_categories: dict[str, tuple[str, ...]] = {}
    dataset_task_type: dict[str, str] = {}
    recommended: dict[str, dict[str, str]] = {}
    run_models = list(dict.fromkeys(j.model for j in jobs))
    run_rows = list(dict.fromkeys(j.row for j in jobs))
    run_datasets = list(dict.fromkeys(j.dataset for j in jobs))
    for m in run_models:
        recommended[m] = _recommended(catalog, m)
    model_of = {j.row: j.model for j in jobs}
    for r in run_rows:
        m = model_of[r]
        model_categories[r] = tuple(catalog.models[m].categories) if catalog and m in catalog.models else ()
    wanted = set(run_datasets) | {d for r in recommended.values() for d in r}
    for d in wanted:
        dataset_task_type[d] = catalog.datasets[d].task_type if catalog and d in catalog.datasets else UNCATALOGUED
    for job in jobs:
        job.categories = model_categories.get(job.row, ())
        job.category = job.categories[0] if job.categories else UNCATALOGUED
        job.task_type = dataset_task_type.get(job.dataset, UNCATALOGUED)

    cat_order = {c: i for i, c in enumerate((*CATEGORIES, UNCATALOGUED))}
    tt_order = {t: i for i, t in enumerate((*TASK_TYPES, UNCATALOGUED))}
    model_pos = {m: i for i, m in enumerate(catalog.models)} if catalog else {}
    ds_pos = {d: i for i, d in enumerate(catalog.datasets)} if catalog else {}

    def model_key(r: str) -> tuple:
        cats = model_categories.get(r) or (UNCATALOGUED,)
        return (cat_order.get(cats[0], 99), model_pos.get(model_of[r], 10_000), r)

    def dataset_key(d: str) -> tuple:
        return (tt_order.get(dataset_task_type.get(d, UNCATALOGUED), 99), ds_pos.get(d, 10_000), d)

    return ReportData(
        store_path=str(store.path),
        runs=runs,
        jobs=jobs,
        cells=cells,
        models=sorted(run_rows, key=model_key),
        datasets=sorted(wanted, key=dataset_key),
        model_categories=model_categories,
        dataset_task_type=dataset_task_type,
        recommended={r: recommended[model_of[r]] for r in run_rows if r == _fullest(r, run_rows, model_of, cells)},
        catalog=catalog,
        split_by=split_by,
        model_of=model_of,
    )


def _fullest(row: str, rows: list[str], model_of: dict[str, str], cells: dict) -> str:
    """Of a model's rows, the one with the most cells run (the first such): it shows the model's gaps."""
    mine = [r for r in rows if model_of[r] == model_of[row]]
    return max(mine, key=lambda r: (sum(k[0] == r for k in cells), -mine.index(r)))


def _split_by(jobs: Sequence[JobRecord]) -> tuple[str, ...]:
    """The SETTINGS whose values differ between jobs of one dataset (in any of the datasets)."""
    seen: dict[tuple[str, str], set[str]] = {}
    for job in jobs:
        for k, v in job.settings.items():
            seen.setdefault((job.dataset, k), set()).add(v)
    return tuple(k for k in SETTINGS if any(len(seen.get((d, k), ())) > 1 for d in {j.dataset for j in jobs}))


def _recommended(catalog: Catalog | None, model: str) -> dict[str, str]:
    """dataset -> "category · tier" for the catalog's recommendations of this model (first tier wins)."""
    if catalog is None or model not in catalog.models:
        return {}
    from evalmap.planner import recommend

    out: dict[str, str] = {}
    for rec in recommend(catalog, model):
        out.setdefault(rec.dataset, f"{rec.category} · {rec.tier}")
    return out


def _attach_scores(store: Store, by_id: dict[str, JobRecord]) -> None:
    ids = list(by_id)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = store.db.execute(
            f"SELECT job_id, name, value, stderr, ci_low, ci_high, n, method, headline FROM scores "
            f"WHERE job_id IN ({_marks(chunk)}) ORDER BY rowid",
            chunk,
        )
        for r in rows:
            job = by_id[r[0]]
            job.scores.append(Score(r[1], _float(r[2]), _float(r[3]), _float(r[4]), _float(r[5]), int(r[6]), r[7]))
            if r[8]:
                job.headline = r[1]


def _attach_sample_summaries(store: Store, by_id: dict[str, JobRecord]) -> None:
    ids = list(by_id)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = store.db.execute(
            f"SELECT job_id, COUNT(*), SUM(latency_s), SUM(latency_s * latency_s), "
            f"SUM(prompt_tokens + completion_tokens) FROM samples WHERE job_id IN ({_marks(chunk)}) GROUP BY job_id",
            chunk,
        )
        for job_id, n, lat, lat_sq, tokens in rows:
            job = by_id[job_id]
            job.n_samples = int(n)
            job.latency_sum = float(lat or 0.0)
            job.latency_sq = float(lat_sq or 0.0)
            job.sample_tokens = int(tokens or 0)


def iter_sample_rows(store: Store, job_id: str):
    """(item_id, prompt, output, extracted, target, metrics, details) with the JSON columns left as JSON text."""
    return store.db.execute(
        "SELECT item_id, prompt, output, extracted, target, metrics, details FROM samples "
        "WHERE job_id=? ORDER BY position",
        (job_id,),
    )


def item_metric(store: Store, job_id: str, metric: str) -> dict[str, float]:
    """item_id -> that metric's value for every sample of the job that has it (NaN and missing left out)."""
    out: dict[str, float] = {}
    for item_id, metrics in store.db.execute("SELECT item_id, metrics FROM samples WHERE job_id=?", (job_id,)):
        value = json.loads(metrics).get(metric)
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, int | float) and not math.isnan(value):
            out[item_id] = float(value)
    return out
