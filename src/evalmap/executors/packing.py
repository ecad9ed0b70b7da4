"""How long a plan takes on N GPUs of a Ray cluster (`evalmap plan B --executor ray --gpus 8`).

Nothing runs: the planner's per-job estimates (measured seconds per token where the store has them for
that model and engine, else the engine's reference profile; planner.estimate_job) are packed onto GPUs:

- one replica of a model takes the GPUs `resources.replica_resources` gives it on the cluster (its tensor
  parallel), raised to what its bf16 weights need (`planner.gpus_needed`, said in a note), all on one node
  (STRICT_PACK);
- a model's jobs run as one work unit per replica (the executor's shards): its replicas split the work
  evenly and each pays the model's load (the planner's: measured setup here, else the engine's reference);
- units are placed longest first, each on the node and GPUs where it can start earliest (list scheduling);
  a model gets another replica while that shortens the whole plan and GPUs allow;
- CPU engines (llama.cpp, an OpenAI-compatible client) are CPU actors beside the GPUs: they bound the wall
  time only when they are the longest unit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from evalmap import planner
from evalmap.backends import BackendOptions, backend_name
from evalmap.catalog.loader import Catalog
from evalmap.errors import EvalmapError
from evalmap.executors.resources import replica_resources

GPU_MEMORY_GB = 80  # the reference profiles' H100 80 GB (docs/cost_model.md)
MAX_REPLICA_ROUNDS = 256


@dataclass
class ModelPacking:
    model: str
    engine: str
    gpus: int  # per replica (0: a CPU actor)
    replicas: int
    jobs: int
    work_seconds: float  # all of the model's jobs on one replica, without loading
    work_range: tuple[float, float]  # its interval (the jobs' estimate ranges summed)
    load_seconds: float  # per replica
    measured_jobs: int
    start_seconds: float = 0.0
    end_seconds: float = 0.0
    placements: list[tuple[int, list[int], float, float]] = field(default_factory=list)  # (node, GPUs, start, end)

    @property
    def unit_seconds(self) -> float:
        return self.work_seconds / self.replicas + self.load_seconds

    def unit(self, which: int) -> float:
        """A replica's seconds with the work at its estimate (-1), the interval's low (0) or high (1) end."""
        work = self.work_seconds if which < 0 else self.work_range[which]
        return work / self.replicas + self.load_seconds

    @property
    def speed(self) -> str:
        return f"{self.measured_jobs}/{self.jobs} measured"


@dataclass
class Packing:
    gpus: int
    gpus_per_node: int
    models: list[ModelPacking]
    wall_seconds: float | None  # None when nothing could be placed
    wall_range: tuple[float, float] | None  # the same packing with every job at its interval's low / high end
    skipped: list[str] = field(default_factory=list)  # jobs or models left out, and why
    notes: list[str] = field(default_factory=list)  # assumptions and what the estimates rest on

    @property
    def gpu_seconds(self) -> float:
        return sum(m.gpus * m.replicas * m.unit_seconds for m in self.models)

    @property
    def utilization(self) -> float | None:
        """Busy GPU-seconds over the GPUs' wall (None without a GPU model)."""
        if not self.wall_seconds or not self.gpu_seconds:
            return None
        return self.gpu_seconds / (self.gpus * self.wall_seconds)

    def to_dict(self) -> dict:
        return {
            "gpus": self.gpus, "gpus_per_node": self.gpus_per_node, "wall_seconds": self.wall_seconds,
            "wall_range": self.wall_range,
            "gpu_seconds": self.gpu_seconds, "utilization": self.utilization,
            "models": [{**asdict(m), "unit_seconds": m.unit_seconds, "speed": m.speed} for m in self.models],
            "skipped": list(self.skipped), "notes": list(self.notes),
        }


def _schedule(models: list[ModelPacking], gpus: int, per_node: int, which: int = -1) -> float:
    """Place every GPU unit (longest first, earliest start) and return the wall time; CPU units run alongside.
    `which`: the units at their estimate (-1) or their interval's low (0) or high (1) end."""
    free = [[0.0] * per_node for _ in range(math.ceil(gpus / per_node))]
    if gpus % per_node:
        free[-1] = free[-1][: gpus % per_node]
    for m in models:
        m.placements = []
    units = sorted(((m.unit(which), i, m) for i, m in enumerate(models) for _ in range(m.replicas)),
                   key=lambda u: (-u[0], u[1]))
    wall = 0.0
    for seconds, _, m in units:
        if not m.gpus:
            m.placements.append((-1, [], 0.0, seconds))
            wall = max(wall, seconds)
            continue
        best = None
        for n, node in enumerate(free):
            if len(node) < m.gpus:
                continue
            chosen = sorted(range(len(node)), key=lambda g: (node[g], g))[: m.gpus]
            start = max(node[g] for g in chosen)
            if best is None or start < best[0]:
                best = (start, n, chosen)
        assert best is not None, "models wider than a node are skipped before scheduling"
        start, n, chosen = best
        for g in chosen:
            free[n][g] = start + seconds
        m.placements.append((n, [n * per_node + g for g in sorted(chosen)], start, start + seconds))
        wall = max(wall, start + seconds)
    for m in models:
        m.start_seconds = min(p[2] for p in m.placements)
        m.end_seconds = max(p[3] for p in m.placements)
    return wall


def pack_plan(
    catalog: Catalog, est: planner.PlanEstimate, gpus: int, gpus_per_node: int | None = None,
    backend: str | None = None, tensor_parallel: int | None = None,
) -> Packing:
    """The plan's jobs packed onto `gpus` GPUs (nodes of `gpus_per_node`, default min(gpus, 8)); `est` is
    the planner's estimate of the same jobs on the engines that would run them (GPU profiles)."""
    if gpus < 1:
        raise EvalmapError(f"--gpus must be 1 or more (got {gpus}).")
    per_node = gpus_per_node or min(gpus, 8)
    options = BackendOptions(backend=backend, tensor_parallel=tensor_parallel)
    skipped: list[str] = []
    notes: list[str] = []
    by_model: dict[str, list[planner.JobEstimate]] = {}
    loads = {(load.model, load.engine): load.seconds for load in est.loads}
    unestimated: dict[tuple[str, str, str], int] = {}
    for job in est.jobs:
        if job.estimate_seconds is None:
            why = job.source.removeprefix("none: ") or "no estimate"
            key = (job.model, job.engine, why)
            unestimated[key] = unestimated.get(key, 0) + 1
            continue
        by_model.setdefault(job.model, []).append(job)
    skipped += [f"{model}: {n} job{'s' if n != 1 else ''} without a time estimate on {engine} ({why})"
                for (model, engine, why), n in unestimated.items()]
    models = []
    for model_id, jobs in by_model.items():
        model = catalog.model(model_id)
        engine = jobs[0].engine or backend_name(model, options)
        width = replica_resources(model, engine, True, tensor_parallel).gpus
        if width and planner.gpus_needed(model) > width:
            notes.append(f"{model_id}: its bf16 weights need {planner.gpus_needed(model)} GPUs of "
                         f"{GPU_MEMORY_GB} GB, more than its tensor parallel {width}; packed on "
                         f"{planner.gpus_needed(model)}")
            width = planner.gpus_needed(model)
        if width > per_node:
            skipped.append(f"{model_id}: a replica needs {width} GPUs on one node, a node has {per_node}")
            continue
        models.append(ModelPacking(
            model_id, engine, width, 1, len(jobs), sum(j.estimate_seconds or 0.0 for j in jobs),
            (sum((j.estimate_range or (j.estimate_seconds,) * 2)[0] for j in jobs),
             sum((j.estimate_range or (j.estimate_seconds,) * 2)[1] for j in jobs)),
            loads.get((model_id, engine)) or 0.0, sum(j.measured is not None for j in jobs),
        ))
    wall = _schedule(models, gpus, per_node) if models else None
    for _ in range(MAX_REPLICA_ROUNDS):  # another replica of the unit that ends last, while it helps
        if wall is None:
            break
        last = max((m for m in models if m.gpus), key=lambda m: (m.end_seconds, m.unit_seconds), default=None)
        if last is None or last.end_seconds < wall or (last.replicas + 1) * last.gpus > gpus:
            break
        last.replicas += 1
        better = _schedule(models, gpus, per_node)
        if better >= wall:
            last.replicas -= 1
            wall = _schedule(models, gpus, per_node)
            break
        wall = better
    measured = sum(m.measured_jobs for m in models)
    total = sum(m.jobs for m in models)
    notes.append(
        f"speeds: {measured} of {total} jobs measured on this machine (its store), the rest from the engines' "
        "reference profiles (H100 80 GB per GPU; docs/cost_model.md); a measured speed holds for the cluster only "
        "where its nodes match this machine"
    )
    notes.append(
        "every replica pays the model's load (the planner's); replicas split a model's items evenly; judge "
        "models, queueing for a busy cluster and node failures are not counted"
    )
    span = (_schedule(models, gpus, per_node, 0), _schedule(models, gpus, per_node, 1)) if models else None
    if models:
        _schedule(models, gpus, per_node)  # the placements shown are the estimate's
    return Packing(gpus, per_node, models, wall, span, skipped, notes)
