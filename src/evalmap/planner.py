"""Recommendations, the evaluation matrix, usage statistics, plans and their cost.

Everything here is computed from the catalog; nothing runs a model. The cost
model is deliberately simple and stated in docs/cost_model.md: prefill is
compute-bound (2 FLOPs per active parameter per token), decoding is bound by
reading the weights once per step, shared by the batch. Where the caller hands
in what a store has measured for a model on an engine, that job's estimate uses
the measured seconds per token instead (the planner itself never opens a store).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

from evalmap.catalog.loader import Catalog
from evalmap.catalog.schema import Dataset, Model, Pool

# ---------------------------------------------------------------- recommend


@dataclass
class Recommendation:
    category: str
    group: str
    priority: str
    tier: str
    dataset: str
    task_type: str
    status: str
    samples: int
    sample_limit: int | None


def recommend(catalog: Catalog, model_id: str) -> list[Recommendation]:
    """The datasets a model should be run on: its categories' groups, tier by tier.

    A dataset appears once per category and sample limit, under the first (highest)
    tier naming it; a tier with a per-dataset sample limit (the efficiency tiers, 5
    and 20 samples) reports that limit, so each limited tier keeps its own rows.
    """
    model = catalog.model(model_id)
    out: list[Recommendation] = []
    for group in catalog.mapping.groups:
        if group.category not in model.categories:
            continue
        seen: set[tuple[str, int | None]] = set()
        for tier in group.tiers:
            for ds_id in catalog.select_datasets(tier.datasets):
                if (ds_id, tier.sample_limit) in seen:
                    continue
                seen.add((ds_id, tier.sample_limit))
                ds = catalog.datasets[ds_id]
                samples = min(ds.count, tier.sample_limit) if tier.sample_limit else ds.count
                out.append(
                    Recommendation(
                        group.category, group.group, group.priority, tier.name, ds_id,
                        ds.task_type, ds.guide_status.value, samples, tier.sample_limit,
                    )
                )
    return out


# ---------------------------------------------------------------- matrix and usage


@dataclass
class PoolFigures:
    key: str
    label: str
    group: str
    models: list[str]
    datasets: list[str]
    samples: int
    samples_range: tuple[int, int] | None
    guide_models: int | None
    guide_datasets: int | None
    guide_samples: int | str | None
    guide_view_samples: int | None
    note: str

    @property
    def combinations(self) -> int:
        return len(self.models) * len(self.datasets)

    def to_dict(self) -> dict:
        return {**asdict(self), "combinations": self.combinations}


def _guide_count(ds: Dataset) -> int:
    return ds.guide_count if ds.guide_count is not None else ds.count


def pool_figures(catalog: Catalog, pool: Pool, whole_catalog: bool = False) -> PoolFigures:
    if whole_catalog:
        selectors = pool.catalog_models or [s.replace("guide:", "category:") for s in pool.models]
    else:
        selectors = pool.models
    models = catalog.select_models(selectors)
    datasets = catalog.select_datasets(pool.datasets)
    counts = [catalog.datasets[d].count for d in datasets]
    samples_range = None
    if pool.sample_limit:
        low, high = pool.sample_limit
        samples_range = (sum(min(c, low) for c in counts), sum(min(c, high) for c in counts))
    return PoolFigures(
        key=pool.key,
        label=pool.label,
        group=pool.group,
        models=models,
        datasets=datasets,
        samples=sum(counts),
        samples_range=samples_range,
        guide_models=pool.guide_models,
        guide_datasets=pool.guide_datasets,
        guide_samples=pool.guide_samples,
        guide_view_samples=sum(_guide_count(catalog.datasets[d]) for d in datasets),
        note=pool.note,
    )


def _pools(catalog: Catalog, keys: list[str]) -> list[Pool]:
    by_key = {p.key: p for p in catalog.mapping.pools}
    return [by_key[k] for k in keys]


def matrix(catalog: Catalog, which: str = "ready", whole_catalog: bool = False) -> list[PoolFigures]:
    """The guide's "Ready-to-Use" (`ready`) or "Expansion" (`expansion`) table, computed."""
    keys = catalog.mapping.ready_matrix if which == "ready" else catalog.mapping.expansion_matrix
    return [pool_figures(catalog, p, whole_catalog) for p in _pools(catalog, keys)]


@dataclass
class Usage:
    scope: str
    immediate: list[PoolFigures]
    comprehensive: list[PoolFigures]
    guide_totals: dict[str, int]

    @property
    def immediate_total(self) -> int:
        return sum(p.combinations for p in self.immediate)

    @property
    def comprehensive_total(self) -> int:
        return sum(p.combinations for p in self.comprehensive)

    def to_dict(self) -> dict:
        return {
            "scope": self.scope,
            "immediate_total": self.immediate_total,
            "comprehensive_total": self.comprehensive_total,
            "guide_totals": self.guide_totals,
            "immediate": [p.to_dict() for p in self.immediate],
            "comprehensive": [p.to_dict() for p in self.comprehensive],
        }


def usage(catalog: Catalog, whole_catalog: bool = False) -> Usage:
    """The guide's usage statistics (models × datasets per pool), for its models or the catalog's."""
    m = catalog.mapping
    return Usage(
        scope="catalog" if whole_catalog else "guide",
        immediate=[pool_figures(catalog, p, whole_catalog) for p in _pools(catalog, m.usage_immediate)],
        comprehensive=[
            pool_figures(catalog, p, whole_catalog) for p in _pools(catalog, m.usage_comprehensive)
        ],
        guide_totals=dict(m.guide_totals),
    )


# ---------------------------------------------------------------- plans and cost


@dataclass(frozen=True)
class EngineProfile:
    """Throughput assumptions for one engine on its reference hardware (docs/cost_model.md)."""

    name: str
    hardware: str
    flops: float  # sustained FLOP/s for prefill (peak × utilisation)
    bandwidth: float  # sustained bytes/s reading weights during decode
    bytes_per_param: float
    batch: int  # sequences decoded together
    memory_gb: float  # per device
    devices_per_tp: bool = True  # tensor parallel multiplies the devices (GPU engines only)


ENGINES: dict[str, EngineProfile] = {
    "transformers-cpu": EngineProfile("transformers-cpu", "2-core CPU, fp32", 6e10, 8e9, 4.0, 8, 24, False),
    "llamacpp": EngineProfile("llamacpp", "2-core CPU, Q4 GGUF", 8e10, 8e9, 0.6, 1, 24, False),
    "transformers": EngineProfile("transformers", "1× H100 80GB, bf16", 989e12 * 0.3, 3.35e12 * 0.5, 2.0, 16, 80),
    "vllm": EngineProfile("vllm", "1× H100 80GB per TP rank, bf16", 989e12 * 0.5, 3.35e12 * 0.75, 2.0, 128, 80),
}
SANDBOX_SECONDS_PER_PROGRAM = 0.1


# What a store measured for (model, backend): Store.measured_throughput's row (keys jobs,
# prompt_tokens, completion_tokens, wall_seconds, ...) or None. A mapping keyed by
# (model, backend) or a callable taking (model, backend).
Measurements = Mapping[tuple[str, str], dict | None] | Callable[[str, str], dict | None]


@dataclass(frozen=True)
class MeasuredRate:
    """Finished jobs of one model on one engine on this host, summed: fresh tokens and wall seconds."""

    jobs: int
    prompt_tokens: int
    completion_tokens: int
    wall_seconds: float

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def seconds_per_token(self) -> float:
        return self.wall_seconds / self.tokens

    @classmethod
    def from_row(cls, row: Mapping | None) -> MeasuredRate | None:
        """None when there is no row, or it has no tokens or no time to divide (nothing to measure by)."""
        if not row or not row.get("jobs"):
            return None
        rate = cls(
            int(row["jobs"]), int(row.get("prompt_tokens") or 0), int(row.get("completion_tokens") or 0),
            float(row.get("wall_seconds") or 0.0),
        )
        return rate if rate.tokens > 0 and rate.wall_seconds > 0 else None

    def to_dict(self) -> dict:
        return {**asdict(self), "seconds_per_token": self.seconds_per_token}


def reference_profile(backend: str, gpu: bool = False) -> str | None:
    """The profile of ENGINES that stands for a backend on this machine (None: openai, whose speed is
    the server's). transformers runs on the GPU when one is present (its device "auto"), else the CPU."""
    if backend == "transformers":
        return "transformers" if gpu else "transformers-cpu"
    return backend if backend in ENGINES else None


@dataclass
class JobEstimate:
    model: str
    dataset: str
    samples: int
    requests: int
    prompt_tokens: int
    generated_tokens: int
    seconds: dict[str, float | None] = field(default_factory=dict)  # every reference profile
    gpus: int = 0
    warnings: list[str] = field(default_factory=list)
    # The estimate for the engine that would run the job here (the model's run.default_backend
    # unless one is chosen): measured seconds per token when the store has them, else its profile's.
    engine: str = ""
    estimate_seconds: float | None = None
    source: str = ""  # "measured (k jobs on this host)" | "reference <profile>" | "no reference profile for <engine>"
    measured: dict | None = None  # MeasuredRate.to_dict() of the rate used

    @property
    def speed(self) -> str:
        """The source in one word, for the table: measured, ref or none."""
        if self.measured is not None:
            return "measured"
        return "ref" if self.source.startswith("reference") else "none"

    def to_dict(self) -> dict:
        return asdict(self)


def gpus_needed(model: Model) -> int:
    """The reference table's estimate: bf16 weights + 20% on 80 GB cards (MoE: total params)."""
    return max(1, math.ceil(model.params_b * 2 * 1.2 / 80))


def _engine_seconds(
    profile: EngineProfile, model: Model, prefill_tokens: int, gen_tokens: int, sequences: int
) -> float | None:
    weights_gb = model.params_b * profile.bytes_per_param
    devices = max(model.run.tensor_parallel, 1) if profile.devices_per_tp else 1
    if weights_gb * 1.2 > profile.memory_gb * devices:
        return None  # does not fit
    active = model.compute_params_b * 1e9
    prefill = 2 * active * prefill_tokens / (profile.flops * devices)
    if gen_tokens == 0:
        return prefill
    batch = max(1, min(profile.batch, sequences))
    step_bytes = model.params_b * 1e9 * profile.bytes_per_param / devices
    step = max(step_bytes / profile.bandwidth, 2 * active * batch / (profile.flops * devices))
    decode = gen_tokens / batch * step
    return prefill + decode


def _lookup(measured: Measurements | None) -> Callable[[str, str], dict | None]:
    if measured is None:
        return lambda model, backend: None
    if isinstance(measured, Mapping):
        return lambda model, backend: measured.get((model, backend))
    return measured


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _apply_speed(est: JobEstimate, rate: MeasuredRate | None, profile: str | None) -> None:
    """The job's headline estimate: measured seconds per (prompt + generated) token, else the profile's."""
    if rate is not None:
        est.estimate_seconds = rate.seconds_per_token * (est.prompt_tokens + est.generated_tokens)
        est.source = f"measured ({_plural(rate.jobs, 'job')} on this host)"
        est.measured = rate.to_dict()
        # prefill and decode cost very different amounts per token: a rate is only fair to a job with a
        # similar share of generated tokens (within a factor of 2; none vs some is never similar)
        job_share = est.generated_tokens / max(est.prompt_tokens + est.generated_tokens, 1)
        measured_share = rate.completion_tokens / rate.tokens
        low, high = sorted((job_share, measured_share))
        if high > 0 and (low == 0 or high / low > 2):
            est.warnings.append(
                f"{est.model} on {est.engine}: the measured rate comes from jobs with {measured_share:.0%} "
                f"generated tokens, {est.dataset} has {job_share:.0%}; one rate per token mixes prefill and "
                "decode, so this estimate is rough (docs/cost_model.md)"
            )
    elif profile is not None:
        est.estimate_seconds = est.seconds[profile]
        est.source = f"reference {profile}"
    else:
        est.source = f"no reference profile for {est.engine}"


def estimate_job(
    catalog: Catalog,
    model_id: str,
    dataset_id: str,
    samples: int | None,
    n_samples: int = 1,
    *,
    backend: str | None = None,
    measured: Measurements | None = None,
    gpu: bool = False,
) -> JobEstimate:
    """Requests, tokens and time of one job. `backend`: the engine it would run on (default the model's
    run.default_backend); `measured`: what a store measured per (model, backend), see Measurements;
    `gpu`: whether this machine has a CUDA GPU (which profile stands for transformers)."""
    model, ds = catalog.model(model_id), catalog.dataset(dataset_id)
    items = min(samples, ds.count) if samples else ds.count
    if ds.request_kind == "loglikelihood":
        choices = ds.choices or 4
        requests = items * choices
        # one forward over the shared context, then each choice's continuation
        prompt = items * (ds.prompt_tokens + choices * ds.answer_tokens)
        generated = 0
    else:
        turns = 2 if ds.request_kind == "judge" else 1
        requests = items * n_samples * turns
        prompt = items * n_samples * ds.prompt_tokens * turns
        generated = items * n_samples * ds.answer_tokens * turns
    est = JobEstimate(model_id, dataset_id, items, requests, prompt, generated, gpus=gpus_needed(model))
    for name, profile in ENGINES.items():
        seconds = _engine_seconds(profile, model, prompt, generated, requests)
        if seconds is not None and ds.request_kind == "execute":
            seconds += items * n_samples * SANDBOX_SECONDS_PER_PROGRAM
        est.seconds[name] = seconds
    if model.run.tensor_parallel < est.gpus:
        est.warnings.append(
            f"{model_id} needs about {est.gpus} 80 GB GPUs in bf16 but its catalog entry sets "
            f"tensor_parallel={model.run.tensor_parallel}"
        )
    if model.user_weights and not (model.run.hf or model.run.gguf):
        est.warnings.append(f"{model_id} is a team fine-tune: pass --weights PATH (or run.hf in a catalog override)")
    if ds.request_kind == "judge":
        est.warnings.append(f"{dataset_id} also needs judge-model calls, not included")
    est.engine = backend or model.run.default_backend
    rate = MeasuredRate.from_row(_lookup(measured)(model_id, est.engine))
    _apply_speed(est, rate, reference_profile(est.engine, gpu))
    return est


@dataclass
class PlanEstimate:
    name: str
    jobs: list[JobEstimate]
    store: str | None = None  # the store the measured rates came from (None: none was read)
    notes: list[str] = field(default_factory=list)  # e.g. why no store was read

    def total(self, key: str) -> int:
        return sum(getattr(j, key) for j in self.jobs)

    def seconds(self, engine: str) -> float | None:
        values = [j.seconds.get(engine) for j in self.jobs]
        return None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]

    def estimate_seconds(self) -> float | None:
        """The sum of the jobs' headline estimates (None if any job has none)."""
        values = [j.estimate_seconds for j in self.jobs]
        return None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]

    @property
    def measured_jobs(self) -> int:
        return sum(j.measured is not None for j in self.jobs)

    @property
    def speed(self) -> str:
        return f"{self.measured_jobs}/{len(self.jobs)} measured"

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "jobs": [j.to_dict() for j in self.jobs],
            "totals": {
                "jobs": len(self.jobs),
                "samples": self.total("samples"),
                "requests": self.total("requests"),
                "prompt_tokens": self.total("prompt_tokens"),
                "generated_tokens": self.total("generated_tokens"),
                "seconds": {e: self.seconds(e) for e in ENGINES},
                "estimate_seconds": self.estimate_seconds(),
                "measured_jobs": self.measured_jobs,
                "speed": self.speed,
                "store": self.store,
                "notes": list(self.notes),
            },
        }


def plan_pairs(
    catalog: Catalog, models: list[str], datasets: list[str], samples: int | None = None
) -> list[tuple[str, str, int | None]]:
    """(model, dataset, samples) jobs of an ad-hoc selection, in model-major order."""
    model_ids = catalog.select_models(models)
    dataset_ids = catalog.select_datasets(datasets)
    return [(m, d, samples) for m in model_ids for d in dataset_ids]


def named_plan_pairs(catalog: Catalog, plan_id: str) -> tuple[str, list[tuple[str, str, int | None]]]:
    plan = catalog.plan(plan_id)
    pairs: list[tuple[str, str, int | None]] = []
    for step in plan.steps:
        for pair in plan_pairs(catalog, step.models, step.datasets, step.samples):
            if pair[:2] not in {p[:2] for p in pairs}:
                pairs.append(pair)
    return plan.name, pairs


def estimate_plan(
    catalog: Catalog,
    name: str,
    pairs: list[tuple[str, str, int | None]],
    n_samples: int = 1,
    *,
    backend: str | None = None,
    measured: Measurements | None = None,
    gpu: bool = False,
) -> PlanEstimate:
    """Every job's estimate (see estimate_job); `measured` is asked once per (model, backend)."""
    lookup, seen = _lookup(measured), {}

    def once(model: str, engine: str) -> dict | None:
        if (model, engine) not in seen:
            seen[(model, engine)] = lookup(model, engine)
        return seen[(model, engine)]

    return PlanEstimate(
        name,
        [estimate_job(catalog, m, d, s, n_samples, backend=backend, measured=once, gpu=gpu) for m, d, s in pairs],
    )
