"""Recommendations, the evaluation matrix, usage statistics, plans and their cost.

Everything here is a pure function of the catalog, the jobs' workloads (what the task renders, counted
by evalmap.workload) and what a store measured; nothing runs a model, opens a file or reads a prompt.
The cost model is stated in docs/cost_model.md: prefill is compute-bound (2 FLOPs per active parameter
per token), a decode step reads the weights once for its whole batch, and a static batch runs until
its longest answer ends. Measured history scales the reference profile's prefill and decode times to
this machine (fit_rates). `job_seconds` is the one public "seconds of a job on an engine".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from evalmap.catalog.loader import Catalog
from evalmap.catalog.schema import Dataset, Model, Pool
from evalmap.store import same_settings
from evalmap.workload import Lengths, RequestShape, Workload, catalog_workload

# ---------------------------------------------------------------- recommend


@dataclass
class Recommendation:
    """One dataset for a model: the first (highest) category tier naming it, every tier that does, and what a
    run of it covers (`sample_limit` None: every item; a number: the most that any recommending tier asks)."""

    dataset: str
    task_type: str
    guide_status: str
    runnable: bool  # evalmap has a task for it (a non-runnable row is listed, never estimated or run)
    category: str
    priority: str
    tier: str
    samples: int
    sample_limit: int | None
    recommended_by: list[str] = field(default_factory=list)  # "coding/Essential", "efficiency/Speed (5/dataset)"
    estimate: JobEstimate | None = None  # filled by evalmap.api.recommend, for runnable rows

    def to_dict(self) -> dict:
        return asdict(self)


def unsuitable(model: Model, ds: Dataset) -> str | None:
    """Why the model cannot take the dataset at all (None: it can): a text-only model has no eyes."""
    if ds.task_type == "multimodal" and model.modality == "text":
        return "needs images; the model reads text only"
    return None


def recommend(catalog: Catalog, model_id: str, include_all: bool = False) -> list[Recommendation]:
    """The datasets a model should be run on: its categories' groups, tier by tier, one row per dataset.

    A dataset named by several categories or tiers keeps the first (highest) one and lists them all; its
    sample limit is the largest any of them asks (none if one asks for every item), so one run serves
    all of them. Datasets the model cannot take (images for a text-only model) are left out unless
    `include_all`.
    """
    model = catalog.model(model_id)
    rows: dict[str, Recommendation] = {}
    for group in catalog.mapping.groups:
        if group.category not in model.categories:
            continue
        for tier in group.tiers:
            for ds_id in catalog.select_datasets(tier.datasets):
                ds = catalog.datasets[ds_id]
                if not include_all and unsuitable(model, ds):
                    continue
                limit = f" ({tier.sample_limit}/dataset)" if tier.sample_limit else ""
                reason = f"{group.category}/{tier.name}{limit}"
                row = rows.get(ds_id)
                if row is None:
                    row = rows[ds_id] = Recommendation(
                        ds_id, ds.task_type, ds.guide_status.value, ds.runnable, group.category, group.priority,
                        tier.name, 0, tier.sample_limit,
                    )
                elif row.sample_limit is not None:
                    row.sample_limit = None if tier.sample_limit is None else max(row.sample_limit, tier.sample_limit)
                if reason not in row.recommended_by:
                    row.recommended_by.append(reason)
                row.samples = min(ds.count, row.sample_limit) if row.sample_limit else ds.count
    return list(rows.values())


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
    """How one engine spends time on its reference hardware (docs/cost_model.md §2)."""

    name: str
    backend: str  # the backend that runs on it
    hardware: str  # the machine these numbers describe
    flops: float  # sustained FLOP/s for prefill (peak × utilisation)
    bandwidth: float  # sustained bytes/s reading weights during decode
    bytes_per_param: float
    batch: int  # sequences decoded together (the default of --batch-size where `batch_option`)
    memory_gb: float  # per device
    devices_per_tp: bool = True  # tensor parallel multiplies the devices (GPU engines only)
    step_overhead: float = 0.0  # seconds per decode step besides reading the weights (Python, kernel launches)
    reuse: str = "none"  # prompt tokens not computed again: "none", "context" (a context equal to the previous
    # request's), "prefix" (the leading tokens shared with the previous request), as llama.cpp and vLLM do
    load_fixed: float = 0.0  # seconds to start the engine and build the model
    load_rate: float = 1e9  # bytes/s of weights read from disk while loading
    batch_option: bool = False  # --batch-size sets the batch (transformers); others schedule their own
    kv_bytes: float = 2.0  # bytes per KV-cache value, which every decode step reads for each sequence

    @property
    def label(self) -> str:
        """The column header: the engine and the hardware behind it."""
        return f"{self.name} ({self.hardware})"


# The CPU rows were measured on the 2-core development machine (SmolLM2-135M, 2026-12-01, docs/cost_model.md
# §2; transformers' decode step refitted with the KV-cache term on four gsm8k/humaneval jobs: 69 ms a step, the
# weights' 67.5 ms and 1.5 ms besides, plus 3.97 bytes read per KV value at 8 GB/s, fp32's 4); the GPU rows are an
# H100 SXM's datasheet figures times a sustained utilisation.
ENGINES: dict[str, EngineProfile] = {
    "transformers-cpu": EngineProfile(
        "transformers-cpu", "transformers", "2-core CPU, fp32", 1.5e11, 8e9, 4.0, 8, 24, False,
        step_overhead=0.0015, load_fixed=3.0, load_rate=4e8, batch_option=True, kv_bytes=4.0,
    ),
    "llamacpp": EngineProfile(
        "llamacpp", "llamacpp", "2-core CPU, Q4 GGUF", 5e10, 8e9, 0.6, 1, 24, False,
        step_overhead=0.004, reuse="prefix", load_fixed=0.5, load_rate=1e9,
    ),
    "transformers": EngineProfile(
        "transformers", "transformers", "1× H100 80GB, bf16", 989e12 * 0.3, 3.35e12 * 0.5, 2.0, 16, 80,
        step_overhead=0.02, load_fixed=10.0, load_rate=2e9, batch_option=True,
    ),
    "vllm": EngineProfile(
        "vllm", "vllm", "1× H100 80GB per TP rank, bf16", 989e12 * 0.5, 3.35e12 * 0.75, 2.0, 128, 80,
        reuse="prefix", load_fixed=60.0, load_rate=2e9,
    ),
}
SANDBOX_SECONDS_PER_PROGRAM = 0.1


def reference_profile(backend: str, gpu: bool = False) -> str | None:
    """The profile of ENGINES that stands for a backend on this machine (None: openai, whose speed is
    the server's). transformers runs on the GPU when one is present (its device "auto"), else the CPU."""
    if backend == "transformers":
        return "transformers" if gpu else "transformers-cpu"
    return backend if backend in ENGINES else None


def engine_refusal(model: Model, backend: str) -> str | None:
    """Why `backend` cannot load `model` from its catalog entry (None: it can), as each backend's
    `from_catalog` decides: llama.cpp needs a GGUF, transformers a GGUF or Hugging Face weights, vLLM
    Hugging Face weights; a server (openai) holds its own."""
    hf = model.run.hf or model.hf_repo
    if backend == "llamacpp" and model.run.gguf is None:
        return "no GGUF"
    if backend == "transformers" and not (hf or model.run.gguf):
        return "no weights"
    if backend == "vllm" and not hf:
        return "no HF weights"
    return None


def gpus_needed(model: Model) -> int:
    """The reference table's estimate: bf16 weights + 20% on 80 GB cards (MoE: total params)."""
    return max(1, math.ceil(model.params_b * 2 * 1.2 / 80))


# ---------------------------------------------------------------- the work of a job on an engine


@dataclass(frozen=True)
class Work:
    """What an engine computes for a job: prompt tokens it must prefill and decode steps at a batch size."""

    prefill_tokens: float
    decode_steps: float
    batch: int
    programs: float = 0.0  # generations the sandbox runs
    kv_read: float = 0.0  # KV-cache values a decode step reads (batch × mean context × values per token)


def _expected_max(lengths: list[tuple[float, float]], draws: int) -> float:
    """E[max of `draws` independent picks] from (length, weight) pairs (the longest answer holds its batch's
    steps): the sum over sorted lengths of v · (F(v)^draws - F(v-)^draws), F the cumulative weight."""
    total, below, expected = sum(w for _, w in lengths), 0.0, 0.0
    for v, w in sorted(lengths):
        expected += v * (((below + w) / total) ** draws - (below / total) ** draws)
        below += w
    return expected


def _mean(lengths: list[tuple[float, float]]) -> float:
    """The mean of (length, weight) pairs."""
    return sum(v * w for v, w in lengths) / sum(w for _, w in lengths)


def _decode_steps(lengths: list[tuple[float, float]], generations: float, batch: int, continuous: bool) -> float:
    """Decode steps for `generations` answers whose lengths are distributed as the (length, weight) pairs
    `lengths`: batch 1 takes one step per token; a static batch runs until its longest answer ends;
    continuous batching (vLLM) refills a finished slot at once, so it takes total tokens / batch steps, at
    least the longest answer."""
    if generations <= 0 or not lengths:
        return 0.0
    mean = _mean(lengths)
    if batch <= 1:
        return generations * mean
    full, rest = divmod(generations, batch)
    if continuous:
        return max(generations * mean / batch, _expected_max(lengths, max(1, round(min(generations, batch)))))
    return full * _expected_max(lengths, batch) + (_expected_max(lengths, max(1, round(rest))) if rest >= 0.5 else 0)


def _weighted_lengths(workload: Workload, new_items: bool) -> list[tuple[float, float]]:
    """The job's known answer lengths (capped at max_tokens) as (length, weight) pairs. For `new_items`
    (answers not yet given) one more, at max_tokens, weighs UNSEEN_CAP_WEIGHT: twenty short answers do
    not show that the next twenty will all stop, and a static batch runs as long as its longest answer."""
    if workload.lengths is None or not workload.lengths.values:
        return []
    cap = workload.max_tokens
    pairs = [(float(min(v, cap)), 1.0) for v in workload.lengths.values]
    if new_items and cap > max(v for v, _ in pairs):
        pairs.append((float(cap), UNSEEN_CAP_WEIGHT))
    return pairs


def _batching(workload: Workload, profile: EngineProfile, batch: int | None) -> tuple[int, bool]:
    """(sequences decoded together, whether finished ones are replaced at once) for a job on an engine."""
    b = max(1, batch if batch and profile.batch_option else profile.batch)
    b = min(b, max(1, workload.generations))
    return b, profile.reuse == "prefix" and b > 1


def job_work(workload: Workload, profile: EngineProfile, batch: int | None = None, new_items: bool = False) -> Work:
    """The prefill tokens and decode steps of a workload on an engine (docs/cost_model.md §3), the steps
    at the expected answer lengths: those known (a stored job's own), or for `new_items` with room for an
    unseen answer at max_tokens (see _weighted_lengths)."""
    prefill = 0.0
    previous_context = -1
    for r in workload.requests:
        if r.kind == "loglikelihood":
            reused = r.prompt if profile.reuse != "none" and r.shared >= r.prompt == previous_context else 0
            prefill += r.prompt - reused + r.continuation
            previous_context = r.prompt
        else:
            prefill += r.prompt - (r.shared if profile.reuse == "prefix" else 0)
            previous_context = -1
    b, continuous = _batching(workload, profile, batch)
    pairs = _weighted_lengths(workload, new_items)
    steps = _decode_steps(pairs, workload.generations, b, continuous)
    prompts = [r.prompt for r in workload.requests if r.kind == "generate"]
    context = 0.0
    if prompts and pairs:  # a step attends to the prompt and, on average, half the answer so far
        context = sum(prompts) / len(prompts) + _mean(pairs) / 2
    return Work(prefill * workload.scale, steps, b, workload.generations if workload.sandboxed else 0.0,
                b * context * workload.kv_values)


# ---------------------------------------------------------------- the spread of generated lengths

LENGTH_REPLICATES = 400  # draws of a job's answers behind each interval
DRAWN_GENERATIONS = 4096  # a bigger job is drawn as this many answers, scaled up (its interval a little wide)
UNSEEN_CAP_WEIGHT = 0.5  # Dirichlet weight of an answer running to max_tokens that the stored ones may not show


def _length_draws(workload: Workload) -> tuple[np.ndarray, float] | None:
    """Possible answer lengths of the job's generations: LENGTH_REPLICATES rows of drawn lengths, and the
    factor from a row's answers to the job's (None: nothing generated).

    The lengths are heavy-tailed (a small model stops at once or runs to max_tokens), so the interval of
    a job of new items is not the normal one of a mean: each row first draws a distribution over the
    known lengths and an unseen one at max_tokens (a Bayesian bootstrap: Dirichlet weights, see
    _weighted_lengths), then the job's answers from it."""
    pairs, generations = _weighted_lengths(workload, new_items=True), workload.generations
    if not pairs or generations <= 0:
        return None
    return _drawn(tuple(pairs), generations)


@functools.lru_cache(maxsize=256)
def _drawn(pairs: tuple[tuple[float, float], ...], generations: int) -> tuple[np.ndarray, float]:
    """_length_draws's draws, made once per distribution and job size (every engine's interval reads them)."""
    values, weights = [v for v, _ in pairs], [w for _, w in pairs]
    rng = np.random.default_rng(0)  # a plan is reproducible
    mix = rng.dirichlet(weights, size=LENGTH_REPLICATES) if len(values) > 1 else np.ones((LENGTH_REPLICATES, 1))
    drawn = min(generations, DRAWN_GENERATIONS)
    rows = np.arange(LENGTH_REPLICATES)[:, None]
    cumulative = np.cumsum(mix, axis=1)
    cumulative[:, -1] = 1.0
    picks = np.searchsorted((cumulative + rows).ravel(), rng.random((LENGTH_REPLICATES, drawn)) + rows)
    index = np.clip(picks - rows * len(values), 0, len(values) - 1)
    lengths = np.asarray(values)[index]
    lengths.flags.writeable = False  # shared by every caller through the cache
    return lengths, generations / drawn


@dataclass(frozen=True)
class Spread:
    """An expected value and its 95% interval (of seconds, tokens or decode steps)."""

    value: float
    low: float
    high: float

    @classmethod
    def of(cls, value: float, samples: np.ndarray, ends: tuple[float, float] | None = None) -> Spread:
        """`value` with the 2.5%/97.5% quantiles of drawn samples around it, widened to `ends` if given."""
        low, high = (float(q) for q in np.quantile(samples, [0.025, 0.975]))
        if ends is not None:
            low, high = min(low, ends[0]), max(high, ends[1])
        return cls(value, min(low, value), max(high, value))


def _every_answer(workload: Workload, b: int, continuous: bool, length: float) -> float:
    """Decode steps when every answer is `length` tokens long."""
    generations = workload.generations
    if b <= 1:
        return generations * length
    return max(generations * length / b, length) if continuous else math.ceil(generations / b) * length


def _reference_ends(workload: Workload, b: int = 1, continuous: bool = False) -> tuple[float, float] | None:
    """Over reference answers (not the model's own) the interval runs from every answer stopping after one
    token to every answer running to max_tokens: references do not say how this model answers (SmolLM2's
    median humaneval answer is 2 tokens where the canonical solutions have about 70). None: the model's own."""
    if workload.lengths.observed:
        return None
    return _every_answer(workload, b, continuous, 1.0), _every_answer(workload, b, continuous, workload.max_tokens)


def generated_spread(workload: Workload) -> Spread:
    """The job's generated tokens (see _length_draws and _reference_ends)."""
    found = _length_draws(workload)
    if found is None:
        return Spread(0.0, 0.0, 0.0)
    lengths, factor = found
    mean = _mean(_weighted_lengths(workload, new_items=True))
    return Spread.of(workload.generations * mean, lengths.sum(axis=1) * factor, _reference_ends(workload))


def _steps_spread(workload: Workload, profile: EngineProfile, batch: int | None, expected: float) -> Spread | None:
    """A job's decode steps on an engine (`expected`: job_work's) with their interval from the drawn lengths
    (see _length_draws and _reference_ends): batch 1 takes a step per token, a static batch as many as its
    longest answer, continuous batching the tokens over the batch (at least the longest answer)."""
    found = _length_draws(workload)
    if found is None:
        return None
    lengths, factor = found
    b, continuous = _batching(workload, profile, batch)
    if b <= 1:
        steps = lengths.sum(axis=1)
    elif continuous:
        steps = np.maximum(lengths.sum(axis=1) / b, lengths.max(axis=1) / factor)
    else:
        padded = np.pad(lengths, ((0, 0), (0, -lengths.shape[1] % b)))
        steps = padded.reshape(LENGTH_REPLICATES, -1, b).max(axis=2).sum(axis=1)
    return Spread.of(expected, steps * factor, _reference_ends(workload, b, continuous))


@dataclass(frozen=True)
class Rates:
    """Seconds per prefill token and per decode step of a model on an engine: the reference profile's
    times `prefill` and `decode` factors fitted to this machine's history (1, 1: the profile itself)."""

    prefill: float = 1.0
    decode: float = 1.0
    source: str = ""
    spread: float = 0.0  # relative standard error of a job's seconds at these rates (how far the fit missed)


def profile_seconds(profile: EngineProfile, model: Model, work: Work) -> tuple[float, float] | None:
    """(prefill seconds, decode + sandbox seconds) of some work on a profile; None when the weights do not fit."""
    devices = max(model.run.tensor_parallel, 1) if profile.devices_per_tp else 1
    if model.params_b * profile.bytes_per_param * 1.2 > profile.memory_gb * devices:
        return None
    active = model.compute_params_b * 1e9
    prefill = 2 * active * work.prefill_tokens / (profile.flops * devices)
    step_bytes = model.params_b * 1e9 * profile.bytes_per_param / devices
    step = max(step_bytes / profile.bandwidth, 2 * active * work.batch / (profile.flops * devices))
    step += work.kv_read * profile.kv_bytes / (profile.bandwidth * devices)  # the KV cache, read every step
    decode = work.decode_steps * (step + profile.step_overhead)
    return prefill, decode + work.programs * SANDBOX_SECONDS_PER_PROGRAM


def job_seconds(
    model: Model, workload: Workload, engine: str | EngineProfile, *, batch: int | None = None,
    rates: Rates | None = None,
) -> Spread | None:
    """Estimated seconds of one job on one engine profile (model load excluded), with its interval from the
    answers' lengths: the public estimate, for plans and for packing jobs onto GPUs. `rates` scale the
    profile to measured speed (see fit_rates); None when the engine cannot load the model or its weights
    do not fit."""
    profile = ENGINES[engine] if isinstance(engine, str) else engine
    if engine_refusal(model, profile.backend):
        return None
    rates = rates or Rates()
    work = job_work(workload, profile, batch, new_items=True)
    steps = _steps_spread(workload, profile, batch, work.decode_steps) or Spread(*(work.decode_steps,) * 3)
    values = []
    for decode_steps in (steps.value, steps.low, steps.high):
        parts = profile_seconds(profile, model, replace(work, decode_steps=decode_steps))
        if parts is None:
            return None
        values.append(parts[0] * rates.prefill + parts[1] * rates.decode)
    value, low, high = values
    if rates.spread:  # the speed's own uncertainty and the lengths' are independent: add them in quadrature
        speed = 1.96 * rates.spread * value
        low, high = value - math.hypot(value - low, speed), value + math.hypot(high - value, speed)
    return Spread(value, max(0.0, low), high)


def load_seconds(model: Model, engine: str | EngineProfile) -> float:
    """Reference seconds to load a model once: the engine's start-up plus reading its weights."""
    profile = ENGINES[engine] if isinstance(engine, str) else engine
    return profile.load_fixed + model.params_b * 1e9 * profile.bytes_per_param / profile.load_rate


# ---------------------------------------------------------------- fitting rates to this machine's history


def _recorded_workload(job: Mapping, like: Workload | None, kv_values: int = 0) -> Workload | None:
    """A stored job as a workload: its recorded tokens, calls, items and answer lengths, laid out as `like`
    (the plan's rendering of the same dataset, so prompt reuse is counted the same way for both) or as one
    request shape repeated; None for a job mixing kinds or with no kind. Its wall and tokens are its model calls'
    only: requests the cache answered (`cache_hits`) are left out of its work, not its samples' lengths."""
    kinds = set(job.get("kinds") or [])
    calls, items = int(job["model_calls"]), max(int(job["n_items"]), 1)
    if len(kinds) != 1 or calls <= 0 or (kind := kinds.pop()) not in ("loglikelihood", "generate"):
        return None
    share = _computed_share(job)
    lengths = None
    if kind == "generate":
        per_item = calls / share / items
        values = [v / per_item for v in job.get("lengths") or []] or [job["completion_tokens"] / calls]
        lengths = Lengths(tuple(values), "recorded", observed=True)
    cap = math.ceil(max(lengths.values)) if lengths else 0
    shaped = like is not None and like.requests and {r.kind for r in like.requests} == {kind}
    if not shaped:
        continuation = job["completion_tokens"] / calls if kind == "loglikelihood" else 0
        shapes = [RequestShape(kind, round(job["prompt_tokens"] / calls), continuation=round(continuation),
                               max_tokens=cap)]
        return Workload(job["dataset"], calls, 1, shapes, lengths, "recorded", kv_values=kv_values)
    assert like is not None
    computed = items * share
    prompt = job["prompt_tokens"] / max(like.prompt_tokens / like.items * computed, 1)  # recorded / rendered
    cont = job["completion_tokens"] / max(like.continuation_tokens / like.items * computed, 1) if not lengths else 0
    shapes = [RequestShape(kind, round(r.prompt * prompt), round(r.shared * prompt), round(r.continuation * cont),
                           max(r.max_tokens, cap)) for r in like.requests]
    return Workload(job["dataset"], items, like.sampled, shapes, lengths, "recorded", turns=like.turns, share=share,
                    kv_values=like.kv_values)


def _computed_share(job: Mapping) -> float:
    """Of a stored job's requests, the share the engine computed (the rest the response cache answered)."""
    calls = int(job["model_calls"])
    return calls / max(calls + int(job.get("cache_hits") or 0), 1)


def _batch_of(job: Mapping) -> int | None:
    """The --batch-size a stored job ran with (None: the default), read from its run's arguments."""
    size = (job.get("args") or {}).get("batch_size")
    return int(size) if size else None


def engine_walls(jobs: list[Mapping]) -> list[float]:
    """Each stored job's wall seconds, re-divided among its run's jobs by the engine's time on each job's own
    requests. The runner charges the pipeline's time to the first unfinished job, while the engine already
    works on the next jobs' requests (transformers sorts a window of several jobs by length): SmolLM2's
    arc_challenge ahead of hellaswag took 11.1 s and hellaswag 5.3 s; in the other order 1.7 s and 14.2 s.
    The run's total is kept; a run with a job lacking engine seconds keeps its walls."""
    by_run: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        by_run.setdefault(job.get("run_id", ""), []).append(i)
    walls = [float(job["wall_seconds"]) for job in jobs]
    for members in by_run.values():
        engine = [float(jobs[i].get("engine_seconds") or 0) * _computed_share(jobs[i]) for i in members]
        if len(members) > 1 and all(e > 0 for e in engine):
            total = sum(walls[i] for i in members)
            for i, e in zip(members, engine, strict=True):
                walls[i] = total * e / sum(engine)
    return walls


def fit_rates(
    model: Model, profile: EngineProfile, history: Mapping | None, workloads: Mapping[str, Workload] | None = None,
    dataset: str | None = None, settings: Mapping | None = None,
) -> Rates | None:
    """Factors that turn the reference profile into this machine's measured speed (None: no usable history).

    `history` is Store.measured_jobs(model, engine), each job's wall as engine_walls re-divides it. Log-likelihood
    jobs of this very dataset under the same task `settings` (TaskConfig as a dict; seed and data folder aside)
    give one factor for the whole job (its per-request overheads are the dataset's own); otherwise log-likelihood
    jobs give the prefill factor and generation jobs the decode factor (their prefill taken out at that rate);
    with only one kind measured, one factor serves both. A generation dataset's own history sets its prefill
    factor (its prompts, prefix reuse and overheads) with the decode factor of all generation jobs (a decode
    step is the engine's): not one whole-job factor, since other items answer at other lengths and the share of
    decoding changes (fitted on SmolLM2's short humaneval answers, 341 tokens, it over-estimated 1,935 by 44%).
    `workloads` (dataset -> the plan's workload) tell how much of a stored job's prompt an engine reuses."""
    parts: list[tuple[str, str, float, float, float]] = []  # (dataset, kind, wall, prefill s, decode s)
    same: list[tuple[str, float, float, float]] = []  # this dataset's jobs: (kind, wall, prefill s, decode s)
    jobs = (history or {}).get("jobs", [])
    walls = engine_walls(jobs)
    kv_values = next((w.kv_values for w in (workloads or {}).values() if w.kv_values), 0)  # the model's own
    for job, wall in zip(jobs, walls, strict=True):
        recorded = _recorded_workload(job, (workloads or {}).get(job["dataset"]), kv_values)
        if recorded is None:
            continue
        seconds = profile_seconds(profile, model, job_work(recorded, profile, _batch_of(job)))
        if seconds is None or sum(seconds) <= 0:
            continue
        kind = recorded.requests[0].kind
        parts.append((job["dataset"], kind, wall, *seconds))
        if job["dataset"] == dataset and settings is not None and same_settings(job.get("task_config") or {}, settings):
            same.append((kind, wall, *seconds))
    if same and all(kind == "loglikelihood" for kind, *_ in same):
        factor = sum(p[1] for p in same) / sum(p[2] + p[3] for p in same)
        return Rates(factor, factor, f"measured on this machine ({_plural(len(same), f'{dataset} job')})")
    ll = [p for p in parts if p[1] == "loglikelihood"]
    gen = [p for p in parts if p[1] == "generate"]
    if not parts:
        return None
    prefill = sum(p[2] for p in ll) / sum(p[3] + p[4] for p in ll) if ll else None
    decode = None
    if gen and prefill is not None:
        left = sum(p[2] - prefill * p[3] for p in gen)
        decode = left / sum(p[4] for p in gen) if left > 0 and sum(p[4] for p in gen) > 0 else None
    if decode is None and gen:
        decode = sum(p[2] for p in gen) / sum(p[3] + p[4] for p in gen)
        prefill = prefill if prefill is not None else decode
    if decode is None:
        decode = prefill
    fitted = (f"{_plural(len(ll), 'log-likelihood job')}, " if ll else "") + (
        _plural(len(gen), "generation job") if gen else "")
    spread = _fit_spread(parts, prefill, decode)
    own = sum(p[1] - decode * p[3] for p in same)
    if same and own > 0:  # the dataset's own prompt work and overheads, at the engine's decode rate
        jobs_here = _plural(len(same), f"{dataset} job")
        return Rates(own / sum(p[2] for p in same), decode,
                     f"measured on this machine ({jobs_here}; decode rate of {_plural(len(gen), 'generation job')})",
                     spread)
    return Rates(prefill, decode, f"measured on this machine (rates of {fitted.rstrip(', ')})", spread)


def _fit_spread(parts: list[tuple[str, str, float, float, float]], prefill: float, decode: float) -> float:
    """How far two rates miss the stored jobs they were fitted on: the root mean square of wall / fitted - 1
    over the jobs, with two degrees of freedom spent (0 with fewer than three jobs: nothing to tell)."""
    if len(parts) < 3:
        return 0.0
    misses = [wall / (prefill * p + decode * d) - 1 for _, _, wall, p, d in parts if prefill * p + decode * d > 0]
    return math.sqrt(math.fsum(m * m for m in misses) / max(len(misses) - 2, 1))


def measured_setup(history: Mapping | None) -> float | None:
    """The fastest setup seconds (model and data loading) of this model's runs here (None: none stored): a
    first run also converted the GGUF (transformers, once per machine; 4.4 s, then 0.9 s for SmolLM2)."""
    setup = (history or {}).get("setup") or []
    return min(setup) if setup else None


# ---------------------------------------------------------------- a job's and a plan's estimate


# What a store measured for (model, backend): Store.measured_jobs's dict ({"jobs": [...], "setup": [...]})
# or None; a mapping keyed by (model, backend) or a callable taking (model, backend).
Measurements = Mapping[tuple[str, str], dict | None] | Callable[[str, str], dict | None]


@dataclass
class JobEstimate:
    model: str
    dataset: str
    samples: int
    requests: int
    prompt_tokens: int  # as sent (contexts and continuations of log-likelihood requests included)
    generated_tokens: int
    generated_range: tuple[int, int] = (0, 0)  # the 95% interval of the job's generated tokens (generated_spread)
    seconds: dict[str, float | None] = field(default_factory=dict)  # every reference profile (None: cannot run)
    unavailable: dict[str, str] = field(default_factory=dict)  # profile -> why it cannot run the model
    gpus: int = 0
    warnings: list[str] = field(default_factory=list)
    # The estimate for the engine that would run the job here (the model's run.default_backend unless one is
    # chosen), with its interval: measured rates when this machine's store has them, else its reference profile.
    engine: str = ""
    estimate_seconds: float | None = None
    estimate_range: tuple[float, float] | None = None
    source: str = ""  # "measured on this machine (...)" | "reference <hardware> profile (<profile>)" | "none: ..."
    tokens: str = ""  # how the tokens were counted
    lengths: str = ""  # where the generated lengths come from ("" for log-likelihood jobs)
    measured: dict | None = None  # the fitted Rates (prefill, decode factors) when measured
    # Requests (and items) the response cache already answers on `engine`: left out of requests, tokens and the
    # estimate, which are for what the engine computes (the reference columns are every request's).
    cached: int = 0
    cached_items: int = 0
    cache: str = ""  # how they were counted ("": none cached)

    @property
    def speed(self) -> str:
        """The source in one word, for the table: measured, ref, cached (every request) or none."""
        if self.measured is not None:
            return "measured"
        if self.cached and not self.requests:
            return "cached"
        return "ref" if self.source.startswith("reference") else "none"

    def to_dict(self) -> dict:
        """As JSON has it (intervals as lists)."""
        data = asdict(self)
        data["generated_range"] = list(self.generated_range)
        data["estimate_range"] = list(self.estimate_range) if self.estimate_range else None
        return data


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _lookup(measured: Measurements | None) -> Callable[[str, str], dict | None]:
    if measured is None:
        return lambda model, backend: None
    if isinstance(measured, Mapping):
        return lambda model, backend: measured.get((model, backend))
    return measured


def _reference_source(profile: EngineProfile) -> str:
    kind = "H100" if "H100" in profile.hardware else "2-core CPU"
    return f"reference {kind} profile ({profile.name}: {profile.hardware})"


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
    workload: Workload | None = None,
    workloads: Mapping[str, Workload] | None = None,
    settings: Mapping | None = None,
    batch: int | None = None,
) -> JobEstimate:
    """Requests, tokens and time of one job. `workload`: its requests as the task renders them (see
    evalmap.workload; default: the catalog's typical lengths); `backend`: the engine it would run on
    (default the model's run.default_backend); `measured`: this machine's history per (model, backend),
    see Measurements; `gpu`: whether transformers would run on a CUDA GPU here; `settings`: the run's task
    options (TaskConfig as a dict), so stored jobs under the same ones calibrate it directly; `batch`:
    --batch-size / --concurrency."""
    model, ds = catalog.model(model_id), catalog.dataset(dataset_id)
    if workload is None:
        items = min(samples, ds.count) if samples else ds.count
        workload = catalog_workload(ds, items, n_samples, "no rendered requests")
    whole, workload = workload, workload.uncached()  # the engine computes only what the cache does not answer
    tokens = generated_spread(workload)
    est = JobEstimate(
        model_id, dataset_id, workload.items, workload.request_count,
        workload.prompt_tokens + workload.continuation_tokens, round(tokens.value),
        (round(tokens.low), round(tokens.high)), gpus=gpus_needed(model), tokens=workload.tokens,
        lengths=workload.lengths.source if workload.lengths else "", cached=whole.cached,
        cached_items=whole.cached_items, cache=whole.cache,
    )
    for name, profile in ENGINES.items():
        refusal = engine_refusal(model, profile.backend)
        if refusal:
            est.unavailable[name] = refusal
        found = None if refusal else job_seconds(model, whole, profile, batch=batch)
        est.seconds[name] = found.value if found else None
    if model.run.tensor_parallel < est.gpus:
        est.warnings.append(
            f"{model_id} needs about {est.gpus} 80 GB GPUs in bf16 but its catalog entry sets "
            f"tensor_parallel={model.run.tensor_parallel}"
        )
    if model.user_weights and not (model.run.hf or model.run.gguf):
        est.warnings.append(f"{model_id} is a team fine-tune: pass --weights PATH (or run.hf in a catalog override)")
    if workload.turns > 1:
        est.warnings.append(f"{dataset_id} also needs judge-model calls, not included")
    est.warnings.extend(workload.notes)
    est.engine = backend or model.run.default_backend
    refusal = engine_refusal(model, est.engine)
    name = reference_profile(est.engine, gpu)
    if refusal:
        est.source = f"none: {est.engine} cannot load {model_id} ({refusal})"
        return est
    # cached programs are still scored: the sandbox runs each again
    rescored = (whole.generations - workload.generations) * SANDBOX_SECONDS_PER_PROGRAM if whole.sandboxed else 0.0
    if whole.cached and whole.cached >= whole.request_count:
        est.estimate_seconds, est.estimate_range = rescored, (rescored, rescored)
        est.source = f"all {whole.cached:,} requests cached on {est.engine}" + (
            f" (their {whole.generations:,} programs run in the sandbox again)" if rescored else "")
        return est
    history = _lookup(measured)(model_id, est.engine)
    profile = ENGINES[name] if name else None
    rates = fit_rates(model, profile, history, workloads, dataset_id, settings) if profile else None
    if profile is None:
        est.source = f"none: no reference profile for {est.engine} (its speed is the server's)"
        return est
    found = job_seconds(model, workload, profile, batch=batch, rates=rates)
    if found is None:
        est.source = f"none: {model_id} does not fit {profile.hardware}"
        return est
    est.estimate_seconds, est.estimate_range = found.value + rescored, (found.low + rescored, found.high + rescored)
    if rates is not None:
        est.source, est.measured = rates.source, asdict(rates)
    else:
        est.source = _reference_source(profile)
    return est


@dataclass
class ModelLoad:
    """Loading one model on its engine, once per plan: measured setup seconds here, else the reference."""

    model: str
    engine: str
    seconds: float | None
    source: str


def estimate_load(
    catalog: Catalog, model_id: str, engine: str, measured: Measurements | None = None, gpu: bool = False,
    converting: bool = False,
) -> ModelLoad:
    """Seconds to load a model (and its data) before its first job; `converting`: transformers converts a
    GGUF to safetensors first (once per machine), which costs about a reference load of the fp32 weights."""
    model = catalog.model(model_id)
    setup = measured_setup(_lookup(measured)(model_id, engine))
    name = reference_profile(engine, gpu)
    if setup is not None:
        conversion = load_seconds(model, name) if converting and name else 0.0
        return ModelLoad(model_id, engine, setup + conversion, "measured on this machine (fastest run setup)"
                         + (" + GGUF conversion" if conversion else ""))
    if name is None or engine_refusal(model, engine):
        return ModelLoad(model_id, engine, None, "none")
    seconds = load_seconds(model, name) * (2 if converting else 1)
    return ModelLoad(model_id, engine, seconds, _reference_source(ENGINES[name]) + (" + GGUF conversion"
                                                                                  if converting else ""))


@dataclass
class PlanEstimate:
    name: str
    jobs: list[JobEstimate]
    loads: list[ModelLoad] = field(default_factory=list)  # one per model (and engine) of the plan
    store: str | None = None  # the store the measured rates came from (None: none was read)
    notes: list[str] = field(default_factory=list)  # e.g. why no store was read

    def total(self, key: str) -> int:
        return sum(getattr(j, key) for j in self.jobs)

    def seconds(self, engine: str) -> float | None:
        values = [j.seconds.get(engine) for j in self.jobs]
        return None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]

    def load_seconds(self) -> float | None:
        values = [m.seconds for m in self.loads]
        return None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]

    def estimate_seconds(self) -> float | None:
        """The jobs' headline estimates plus loading each model once (None if any has none)."""
        values = [j.estimate_seconds for j in self.jobs]
        load = self.load_seconds()
        if any(v is None for v in values) or load is None:
            return None
        return sum(values) + load  # type: ignore[arg-type]

    def estimate_range(self) -> tuple[float, float] | None:
        """The plan's interval: the jobs' answer lengths vary independently, so their distances from the
        estimate add in quadrature (adding the jobs' 95% ends would make an interval far wider than 95%)."""
        total = self.estimate_seconds()
        ranges = [(j.estimate_seconds, *j.estimate_range) for j in self.jobs if j.estimate_range]
        if total is None or len(ranges) < len(self.jobs):
            return None
        below = math.fsum((value - low) ** 2 for value, low, _ in ranges) ** 0.5
        above = math.fsum((high - value) ** 2 for value, _, high in ranges) ** 0.5
        return total - below, total + above

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
            "loads": [asdict(m) for m in self.loads],
            "totals": {
                "jobs": len(self.jobs),
                "samples": self.total("samples"),
                "requests": self.total("requests"),
                "prompt_tokens": self.total("prompt_tokens"),
                "generated_tokens": self.total("generated_tokens"),
                "cached": self.total("cached"),
                "seconds": {e: self.seconds(e) for e in ENGINES},
                "load_seconds": self.load_seconds(),
                "estimate_seconds": self.estimate_seconds(),
                "estimate_range": list(span) if (span := self.estimate_range()) else None,
                "measured_jobs": self.measured_jobs,
                "speed": self.speed,
                "store": self.store,
                "notes": list(self.notes),
            },
            "engines": {name: {"backend": p.backend, "hardware": p.hardware} for name, p in ENGINES.items()},
        }


def plan_pairs(
    catalog: Catalog, models: list[str], datasets: list[str], samples: int | None = None
) -> list[tuple[str, str, int | None]]:
    """(model, dataset, samples) jobs of an ad-hoc selection, in model-major order. The `recommended`
    selector adds each model's own runnable recommendations (with their tier's sample limit unless
    `samples` is given)."""
    model_ids = catalog.select_models(models)
    dataset_ids = catalog.select_datasets([d for d in datasets if d != "recommended"])
    pairs: list[tuple[str, str, int | None]] = []
    for m in model_ids:
        limits: dict[str, int | None] = dict.fromkeys(dataset_ids, samples)
        if "recommended" in datasets:
            for rec in recommend(catalog, m):
                if rec.runnable:
                    limits.setdefault(rec.dataset, samples or rec.sample_limit)
        pairs.extend((m, d, n) for d, n in limits.items())
    return pairs


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
    workloads: Mapping[tuple[str, str], Workload] | None = None,
    settings: Mapping | None = None,
    batch: int | None = None,
    converting: Collection[str] = (),
) -> PlanEstimate:
    """Every job's estimate (see estimate_job) and each model's load, once; `workloads`: (model, dataset) ->
    the job's rendered workload; `settings`: the run's task options; `converting`: models whose GGUF
    transformers would convert first. `measured` is asked once per (model, engine)."""
    lookup, seen = _lookup(measured), {}

    def once(model: str, engine: str) -> dict | None:
        if (model, engine) not in seen:
            seen[(model, engine)] = lookup(model, engine)
        return seen[(model, engine)]

    workloads = workloads or {}
    jobs = []
    for m, d, s in pairs:
        own = {ds: w for (mm, ds), w in workloads.items() if mm == m}
        jobs.append(estimate_job(
            catalog, m, d, s, n_samples, backend=backend, measured=once, gpu=gpu, workload=workloads.get((m, d)),
            workloads=own, settings=settings, batch=batch,
        ))
    loads = [
        estimate_load(catalog, m, backend or catalog.model(m).run.default_backend, once, gpu, m in converting)
        for m in dict.fromkeys(m for m, _, _ in pairs)
    ]
    return PlanEstimate(name, jobs, loads)
