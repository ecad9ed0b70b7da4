"""Run a plan on a Ray cluster: the same streaming runner, one actor per model replica, the driver the one
store writer.

    driver (this process)                                  worker actor (one per replica of a model)
      opens the run and its jobs in the store                loads the model once (resources.py: GPUs =
      splits each model's unstored items into shards  --->   tensor parallel, STRICT_PACK for TP > 1)
      (one per replica), with their cached answers           run_model over its shard of every dataset
      drains every worker twice a second  <--------------   hands back samples, answers and counters
      writes them (samples, cache, counters) as locally
      a dead worker: the items it did not hand back go to another worker (a new one if none is left)

Why a scratch store on the worker: the runner is written against Store (cache, failures, counters); a worker
runs it unchanged on a private SQLite file and passes on what it writes there, so scoring and caching are
the local executor's. A worker's jobs hold every item of their dataset (the rest of the items read as done),
so each sample keeps its position and a run scores exactly as a local run of the same items. The driver
drops anything it already holds, so a re-run item is never stored twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evalmap.backends import backend_name, open_backend
from evalmap.backends.base import Request, Response
from evalmap.backends.capabilities import check_declared, check_plan
from evalmap.catalog.loader import Catalog
from evalmap.errors import EvalmapError
from evalmap.executors.local import Reporter, RunOptions, RunSummary, library_versions, run_key
from evalmap.executors.resources import Resources, default_replicas, replica_resources
from evalmap.runner import EngineProgress, Job, JobResult, Progress, cache_fingerprint, finish_job, preload, run_model
from evalmap.sandbox.isolation import unsandboxed_allowed
from evalmap.store import Store
from evalmap.tasks.base import Task, TaskConfig
from evalmap.tasks.registry import build_task

INSTALL = "pip install 'evalmap[ray]'"
CONNECT_SECONDS = 5.0  # a cluster address must accept a TCP connection within this
TICK_SECONDS = 0.5  # the driver drains every worker and redraws progress at least this often
MAX_REPLACEMENTS = 3  # new workers started for a model after deaths, before the run stops
GONE = ("finished", "died", "stopped")  # a worker released (killed) by the driver


class RayUnavailableError(EvalmapError):
    """--executor ray without Ray installed, or a cluster that cannot be reached."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailableError(
            f"--executor ray needs Ray, which is not installed; install it with `{INSTALL}`, or leave out "
            "--executor ray to run in this process."
        ) from None
    return ray


def _check_reachable(address: str | None) -> None:
    """Nothing listening at HOST:PORT fails now, in one sentence (Ray itself retries its GCS for minutes)."""
    if not address or address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise RayUnavailableError(
            f"Cannot reach the Ray cluster at {address} ({why}); start one with `ray start --head` and pass its "
            "address (HOST:6379) with --ray-address, or leave out --ray-address to start Ray in this process."
        ) from None


def connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at `address` (else $RAY_ADDRESS, else start Ray here); True when this call started it."""
    if ray.is_initialized():
        return False
    _check_reachable(address or os.environ.get("RAY_ADDRESS"))
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        why = " ".join(str(exc).split())[:200]
        raise RayUnavailableError(
            f"Cannot reach the Ray cluster at {address} ({why}); start one with `ray start --head` and pass its "
            "address (HOST:6379) with --ray-address, or leave out --ray-address to start Ray in this process."
        ) from None
    return True


# ---------------------------------------------------------------- what a worker is given and gives back


@dataclass
class Part:
    """One dataset's share of a shard: the driver's job and the items of it this worker runs."""

    job_id: str
    dataset: str
    limit: int | None
    item_ids: list[str]


@dataclass
class Shard:
    model: str
    parts: list[Part]
    cached: list[tuple[Request, Response, str | None]]  # the driver store's answers to these items' requests
    key: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def items(self) -> int:
        return sum(len(p.item_ids) for p in self.parts)


class ShardStore(Store):
    """A worker's private store. The runner writes to it as to any store; what it writes is also kept, with
    the driver's job ids, for the driver to store for real (`take`)."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.lock = threading.Lock()
        self.outbox: list[tuple] = []
        self.routes: dict[str, str] = {}  # this store's job id -> the driver's
        self.others: dict[str, set[str]] = {}  # items of a job outside the shard: they read as done

    def done_items(self, job_id: str) -> set[str]:
        return super().done_items(job_id) | self.others.get(job_id, set())

    def add_samples(self, job_id, records, failures=(), **counters) -> None:
        records, failures = list(records), list(failures)
        super().add_samples(job_id, records, failures, **counters)
        with self.lock:
            self.outbox.append(("samples", self.routes[job_id], records, failures, counters))

    def cache(self, fingerprint, answers, counters=None) -> None:
        super().cache(fingerprint, answers, counters)
        answers = [(q, a, self.routes.get(j, j) if j else None) for q, a, j in answers]
        with self.lock:
            routed = {self.routes[j]: v for j, v in (counters or {}).items()}
            self.outbox.append(("cache", fingerprint, answers, routed))

    def seed(self, fingerprint: str, answers: list[tuple[Request, Response, str | None]]) -> None:
        """Answers the driver's store holds already (with the job that asked, in this store's ids where it is
        one of the shard's): cached here so the runner finds them, and not handed back."""
        back = {driver: mine for mine, driver in self.routes.items()}
        Store.cache(self, fingerprint, [(q, a, back.get(j, j) if j else None) for q, a, j in answers])

    def take(self) -> list[tuple]:
        with self.lock:
            out, self.outbox = self.outbox, []
        return out


class _LatestEngine(Progress):
    def __init__(self) -> None:
        self.latest: EngineProgress | None = None

    def engine(self, model: str, progress: EngineProgress) -> None:
        self.latest = progress


class ModelWorker:
    """One replica of one model: loaded once (`load`), then runs shards through the streaming runner while
    the driver drains what it writes (a threaded actor: `drain` runs beside `run_shard`)."""

    def __init__(self, catalog: Catalog, model_id: str, options: RunOptions, unsafe_no_sandbox: bool = False):
        self.catalog, self.model_id, self.options = catalog, model_id, options
        self.unsafe_no_sandbox = unsafe_no_sandbox  # the user's --unsafe-no-sandbox, for this process's scorers
        self.folder = tempfile.mkdtemp(prefix="evalmap-ray-")
        self.store = ShardStore(Path(self.folder) / "shard.sqlite")
        self.tasks: dict[str, Task] = {}
        self.progress = _LatestEngine()
        self.backend = None
        self.busy = 0.0
        self.since: float | None = None

    def load(self) -> dict:
        import ray

        self.backend = open_backend(self.catalog.model(self.model_id), self.options.backend)
        return {
            "info": asdict(self.backend.info), "fingerprint": cache_fingerprint(self.backend),
            "host": socket.gethostname(), "node": ray.util.get_node_ip_address(), "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        }

    def _task(self, dataset: str) -> Task:
        if dataset not in self.tasks:
            config = TaskConfig(**{**asdict(self.options.task), "seed": self.options.seed})
            self.tasks[dataset] = build_task(self.catalog.dataset(dataset), config)
        return self.tasks[dataset]

    def run_shard(self, shard: Shard) -> int:
        """Run the shard's items of every dataset as one pipeline; returns how many items it settled."""
        assert self.backend is not None, "load() first"
        self.since = time.perf_counter()
        try:
            run_id, _ = self.store.open_run(shard.key, {}, self.options.seed, self.catalog.version, {})
            jobs = []
            for part in shard.parts:
                task = self._task(part.dataset)
                items = task.items(part.limit, self.options.seed)
                job_id = self.store.open_job(
                    run_id, self.model_id, part.dataset, asdict(self.backend.info), asdict(task.config),
                    task.prompt_hash(), len(items),
                )
                self.store.routes[job_id] = part.job_id
                self.store.others[job_id] = {it.id for it in items} - set(part.item_ids)
                jobs.append(Job(job_id, task, items))
            self.store.seed(cache_fingerprint(self.backend), shard.cached)
            with unsandboxed_allowed(self.unsafe_no_sandbox):
                results = run_model(self.backend, jobs, self.store, self.model_id, self.progress)
            return sum(r.n + r.failed for r in results)
        finally:
            self.busy += time.perf_counter() - self.since
            self.since = None

    def drain(self) -> dict:
        """What the runner wrote since the last drain, the engine's progress and the seconds spent running."""
        running = time.perf_counter() - self.since if self.since is not None else 0.0
        return {"outbox": self.store.take(), "engine": self.progress.latest, "busy": self.busy + running}

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None
        self.store.close()
        shutil.rmtree(self.folder, ignore_errors=True)


# ---------------------------------------------------------------- the driver


@dataclass
class _JobBook:
    job_id: str
    dataset: str
    task: Task
    limit: int | None
    items: list  # every item of the job, in dataset order
    settled: set[str] = field(default_factory=set)  # stored or failed in this attempt (or stored before)


@dataclass
class _Worker:
    label: str
    model: str
    handle: Any
    resources: Resources
    pg: Any = None
    meta: dict | None = None  # load()'s answer
    shard: Shard | None = None
    run_ref: Any = None
    drain_ref: Any = None
    closing: bool = False  # its shard is done: one last drain, then it is idle
    last_drain: bool = False  # the drain in flight was asked after the shard was done
    status: str = "loading"
    samples: int = 0
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    busy: float = 0.0
    engine: EngineProgress | None = None

    def stats(self) -> dict:
        meta = self.meta or {}
        tokens = self.prompt_tokens + self.completion_tokens
        return {
            "worker": self.label, "model": self.model, "engine": (meta.get("info") or {}).get("name"),
            "node": meta.get("node"), "node_id": meta.get("node_id"), "host": meta.get("host"), "pid": meta.get("pid"),
            "gpus": self.resources.gpus, "gpu_ids": meta.get("gpu_ids"), "cpus": self.resources.cpus,
            "placement_group": self.pg.id.hex() if self.pg is not None else None, "status": self.status,
            "samples": self.samples, "model_calls": self.model_calls, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "busy_seconds": round(self.busy, 3),
            "samples_per_s": self.samples / self.busy if self.busy > 0 and self.samples else None,
            "tokens_per_s": tokens / self.busy if self.busy > 0 and self.model_calls else None,
        }


@dataclass
class _Model:
    model_id: str
    pairs: list[tuple[str, int | None]]  # (dataset, items limit)
    replicas: int
    resources: Resources
    workers: list[_Worker] = field(default_factory=list)
    pending: deque = field(default_factory=deque)
    books: list[_JobBook] = field(default_factory=list)
    fingerprint: str | None = None
    started: int = 0
    replaced: int = 0
    done: bool = False

    @property
    def opened(self) -> bool:
        return self.fingerprint is not None

    def unsettled(self, shard: Shard) -> Shard | None:
        """The shard's items not stored (nor failed) yet, as a new shard; None when there are none."""
        books = {b.job_id: b for b in self.books}
        parts = [Part(p.job_id, p.dataset, p.limit, [i for i in p.item_ids if i not in books[p.job_id].settled])
                 for p in shard.parts]
        parts = [p for p in parts if p.item_ids]
        return Shard(self.model_id, parts, []) if parts else None


class _Driver:
    def __init__(self, ray, catalog: Catalog, pairs, options: RunOptions, store: Store, reporter: Reporter,
                 run_id: str, tasks: dict[str, Task], needs: dict[str, Resources], replicas: int | None,
                 unsafe_no_sandbox: bool):
        self.ray, self.catalog, self.options, self.store, self.reporter = ray, catalog, options, store, reporter
        self.unsafe_no_sandbox = unsafe_no_sandbox
        self.run_id, self.tasks = run_id, tasks
        self.worker_class = ray.remote(max_concurrency=2)(ModelWorker)
        grouped: dict[str, list[tuple[str, int | None]]] = {}
        for model_id, dataset, limit in pairs:
            grouped.setdefault(model_id, []).append((dataset, limit or options.samples))
        counts = default_replicas({m: r.gpus for m, r in needs.items()}, ray.available_resources().get("GPU", 0))
        self.models = {m: _Model(m, ps, replicas or counts[m], needs[m]) for m, ps in grouped.items()}
        self.workers: list[_Worker] = []  # every worker started, dead ones included (their stats stay)
        self.results: dict[str, JobResult] = {}

    # ------------------------------------------------------------ workers

    def _start(self, model: _Model) -> None:
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        model.started += 1
        need = model.resources
        options: dict[str, Any] = {"num_cpus": need.cpus, "num_gpus": need.gpus, "max_restarts": 0}
        pg = None
        if need.placement_group:  # tensor parallel: every rank's GPU reserved at once, on one node (resources.py)
            pg = placement_group(need.bundles(), strategy="STRICT_PACK")
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0)
        handle = self.worker_class.options(**options).remote(self.catalog, model.model_id, self.options,
                                                             self.unsafe_no_sandbox)
        worker = _Worker(f"{model.model_id}#{model.started}", model.model_id, handle, need, pg)
        worker.run_ref = handle.load.remote()  # the load is the worker's first call
        model.workers.append(worker)
        self.workers.append(worker)

    def _release(self, worker: _Worker, status: str) -> None:
        model = self.models[worker.model]
        if worker in model.workers:
            model.workers.remove(worker)
        worker.status, worker.run_ref, worker.drain_ref = status, None, None
        if status != "died":
            with contextlib.suppress(Exception):  # it is killed next anyway; its scratch folder is a temp dir
                self.ray.get(worker.handle.close.remote(), timeout=60)
        self.ray.kill(worker.handle, no_restart=True)
        if worker.pg is not None:
            self.ray.util.remove_placement_group(worker.pg)

    def _died(self, worker: _Worker, why: str) -> None:
        model = self.models[worker.model]
        left = model.unsettled(worker.shard) if worker.shard is not None else None
        self._release(worker, "died")
        lost = f"; its {left.items} unfinished items go to another worker" if left else ""
        self.reporter.message(f"worker {worker.label} died ({why}){lost}")
        if left:
            model.pending.appendleft(left)
        if (model.pending or not model.opened) and not model.workers:
            if model.replaced >= MAX_REPLACEMENTS:
                raise EvalmapError(
                    f"The workers of {model.model_id} keep dying ({MAX_REPLACEMENTS} replacements died too; the "
                    f"last: {why}); every sample they handed back is saved, so running the same command again "
                    "resumes the run."
                )
            model.replaced += 1
            self._start(model)

    # ------------------------------------------------------------ the model's jobs and shards

    def _open(self, model: _Model, meta: dict) -> None:
        """The model's jobs in the store (with the backend as loaded), and its unstored items in shards."""
        model.fingerprint = meta["fingerprint"]
        for dataset, limit in model.pairs:
            task = self.tasks[dataset]
            items = task.items(limit, self.options.seed)
            job_id = self.store.open_job(
                self.run_id, model.model_id, dataset, meta["info"], asdict(task.config), task.prompt_hash(),
                len(items),
            )
            self.store.clear_failures(job_id)  # a rerun retries the items that failed last time
            stored = {it.id for it in items} & self.store.done_items(job_id)
            book = _JobBook(job_id, dataset, task, limit, items, stored)
            model.books.append(book)
            self.reporter.job_started(model.model_id, dataset, len(items))
            if book.settled:
                self.reporter.advance(model.model_id, dataset, len(book.settled))
        todo = [[it for it in b.items if it.id not in b.settled] for b in model.books]
        n = max(1, min(model.replicas, max((len(t) for t in todo), default=0)))
        for k in range(n):
            parts = [Part(b.job_id, b.dataset, b.limit, [it.id for it in t[k::n]])
                     for b, t in zip(model.books, todo, strict=True)]
            parts = [p for p in parts if p.item_ids]
            if parts:
                model.pending.append(Shard(model.model_id, parts, []))

    def _with_cache(self, model: _Model, shard: Shard) -> Shard:
        """The shard with the answers the store already has for its items' requests (a resume calls no model)."""
        books = {b.job_id: b for b in model.books}
        requests = []
        for part in shard.parts:
            book = books[part.job_id]
            wanted = set(part.item_ids)
            for item in book.items:
                if item.id in wanted:
                    requests.extend(book.task.requests(item))
        found, askers = self.store.cached(model.fingerprint, requests)
        by_key = {r.key(): r for r in requests}
        shard.cached = [(by_key[k], a, askers.get(k)) for k, a in found.items()]
        return shard

    def _dispatch(self, model: _Model) -> None:
        for worker in list(model.workers):
            if worker.status != "idle":
                continue
            if not model.pending:
                self._release(worker, "finished")  # its GPUs go to the models still waiting
                continue
            worker.shard = self._with_cache(model, model.pending.popleft())
            worker.run_ref = worker.handle.run_shard.remote(worker.shard)
            worker.status = "running"

    def _finish(self, model: _Model) -> None:
        for book in model.books:
            result = finish_job(book.task, self.store, book.job_id)
            self.results[book.job_id] = result
            self.reporter.job_finished(result)
        for worker in list(model.workers):
            self._release(worker, "finished")
        model.done = True

    # ------------------------------------------------------------ what workers hand back

    def _apply(self, worker: _Worker, drained: dict) -> None:
        worker.busy, worker.engine = drained["busy"], drained["engine"] or worker.engine
        model = self.models[worker.model]
        books = {b.job_id: b for b in model.books}
        for entry in drained["outbox"]:
            if entry[0] == "cache":
                _, fingerprint, answers, counters = entry
                self.store.cache(fingerprint, answers, counters)
                for values in counters.values():
                    worker.model_calls += values.get("model_calls", 0)
                    worker.prompt_tokens += values.get("prompt_tokens", 0)
                    worker.completion_tokens += values.get("completion_tokens", 0)
                continue
            _, job_id, records, failures, counters = entry
            book = books[job_id]
            records = [r for r in records if r["item_id"] not in book.settled]  # never stored twice
            failures = [f for f in failures if f[0] not in book.settled]
            self.store.add_samples(job_id, records, failures=failures, **counters)
            book.settled.update([r["item_id"] for r in records] + [f[0] for f in failures])
            worker.samples += len(records)
            if records:
                self.reporter.advance(worker.model, book.dataset, len(records))

    def _handle(self, worker: _Worker, ref: Any) -> None:
        if worker.status in GONE:  # a released worker's calls in flight (a dead one's fail twice)
            return
        exceptions = self.ray.exceptions
        is_drain = ref is worker.drain_ref
        if is_drain:
            worker.drain_ref = None
        else:
            worker.run_ref = None
        try:
            value = self.ray.get(ref)
        except exceptions.RayActorError as exc:
            if not (worker.status == "loading" and getattr(exc, "actor_init_failed", False)):
                return self._died(worker, _first_line(exc))
            raise _cause(exc) from None
        except exceptions.RayTaskError as exc:  # the engine failed as a whole, or the model did not load
            if worker.shard is not None:
                self._apply(worker, self.ray.get(worker.handle.drain.remote()))  # what did arrive is saved
            raise _cause(exc) from None
        model = self.models[worker.model]
        if is_drain:
            self._apply(worker, value)
            if worker.last_drain:
                left = model.unsettled(worker.shard)
                if left is not None:  # the runner settles every item it is given: this is a bug, not a fault
                    raise RuntimeError(f"{worker.label} finished its shard with {left.items} items unsettled")
                worker.shard, worker.closing, worker.last_drain, worker.status = None, False, False, "idle"
        elif worker.status == "loading":
            worker.meta, worker.status = value, "idle"
            self.reporter.message(
                f"worker {worker.label} loaded {model.model_id} on {value['host']} ({worker.resources.describe()})"
            )
            if not model.opened:
                self._open(model, value)
        else:
            worker.closing = True  # its shard is done: the last drain picks up what it wrote since

    def _refs(self) -> dict:
        refs = {}
        for worker in self.workers:
            for ref in (worker.run_ref, worker.drain_ref):
                if ref is not None:
                    refs[ref] = worker
        return refs

    def _tick(self) -> None:
        for worker in self.workers:
            if worker.status == "running" and worker.drain_ref is None:
                worker.last_drain = worker.closing  # asked after the shard was done: it holds the rest
                worker.drain_ref = worker.handle.drain.remote()
        running = [w for w in self.workers if w.engine is not None and w.status in ("running", "idle")]
        if not running:
            return
        total = sum(len(b.items) for m in self.models.values() for b in m.books)
        settled = sum(len(b.settled) for m in self.models.values() for b in m.books)
        rates = [w.engine.samples_per_s for w in running if w.engine.samples_per_s]
        rate = sum(rates) if rates else None
        self.reporter.engine(
            f"ray, {len(running)} worker{'s' if len(running) != 1 else ''}",
            EngineProgress(
                sum(w.engine.generated_tokens for w in running),
                sum(w.engine.tokens_per_s or 0.0 for w in running) or None, settled, total, rate,
                sum(w.engine.failed for w in running), (total - settled) / rate if rate else None, False,
            ),
        )

    def run(self) -> list[JobResult]:
        for model in self.models.values():
            for _ in range(model.replicas):
                self._start(model)
        last_tick = 0.0
        try:
            while not all(m.done for m in self.models.values()):
                refs = self._refs()
                ready, _ = self.ray.wait(list(refs), num_returns=1, timeout=TICK_SECONDS) if refs else ([], [])
                if ready:
                    ready, _ = self.ray.wait(list(refs), num_returns=len(refs), timeout=0)
                for ref in ready:
                    self._handle(refs[ref], ref)
                for model in self.models.values():
                    if model.done or not model.opened:
                        continue
                    self._dispatch(model)
                    if not model.pending and not any(w.shard for w in model.workers):
                        self._finish(model)
                now = time.perf_counter()
                if now - last_tick >= TICK_SECONDS:
                    last_tick = now
                    self._tick()
        finally:
            for worker in self.workers:
                if worker.status not in GONE:
                    self.ray.kill(worker.handle, no_restart=True)
                    worker.status = "stopped"
        return [self.results[b.job_id] for m in self.models.values() for b in m.books]


def replica_needs(ray: Any, catalog: Catalog, pairs, options: RunOptions) -> dict[str, Resources]:
    """What one replica of each model asks of this cluster; a replica that no node can hold would wait
    forever, so that fails now, in one sentence, before a run is recorded."""
    has_gpus = ray.cluster_resources().get("GPU", 0) > 0
    needs = {}
    for model_id in dict.fromkeys(m for m, _, _ in pairs):
        model = catalog.model(model_id)
        needs[model_id] = replica_resources(model, backend_name(model, options.backend), has_gpus,
                                            options.backend.tensor_parallel, options.backend.device)
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for model_id, need in needs.items():
        if any(r.get("GPU", 0) >= need.gpus and r.get("CPU", 0) >= need.cpus for r in nodes):
            continue
        most = max((int(r.get("GPU", 0)) for r in nodes), default=0)
        gpus = f"{need.gpus} GPU{'s' if need.gpus != 1 else ''} and " if need.gpus else ""
        what = f"{gpus}{need.cpus} CPU"
        raise EvalmapError(
            f"{model_id} needs {what} on one node, and no node of the Ray cluster has that (the most GPUs on a "
            f"node: {most}); add such a node, or lower its tensor parallel in a catalog override."
        )
    return needs


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def _cause(exc: BaseException) -> BaseException:
    """The worker's own exception (an EvalmapError keeps its one sentence), else the Ray error."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return _cause(cause) if hasattr(cause, "cause") and not isinstance(cause, EvalmapError) else cause
    return exc


def run_plan_on_ray(
    catalog: Catalog,
    pairs: list[tuple[str, str, int | None]],
    options: RunOptions,
    store: Store,
    reporter: Reporter | None = None,
    args: dict | None = None,
    address: str | None = None,
    replicas: int | None = None,
    unsafe_no_sandbox: bool = False,
) -> RunSummary:
    """executors.local.run_plan on a Ray cluster (`address`, else $RAY_ADDRESS, else Ray started here):
    the same run key, store, cache and resume; `replicas` copies of each model (default: from free GPUs);
    `unsafe_no_sandbox`: the user's --unsafe-no-sandbox, passed to the workers, where model code runs."""
    ray = import_ray()
    reporter = reporter or Reporter()
    began = time.perf_counter()
    tasks: dict[str, Task] = {}
    for _, dataset_id, _ in pairs:
        if dataset_id not in tasks:
            config = TaskConfig(**{**asdict(options.task), "seed": options.seed})
            tasks[dataset_id] = build_task(catalog.dataset(dataset_id), config)
    judged = sorted(d for d, t in tasks.items() if getattr(t, "judged", False))
    if judged:
        raise EvalmapError(
            f"{', '.join(judged)} is judged by a second model, which --executor ray does not schedule yet; run it "
            "without --executor ray."
        )
    declared = check_declared(catalog, pairs, tasks, options.backend)  # what needs no data: before it loads
    for task in tasks.values():
        preload(task, options.seed)
    check_plan(catalog, pairs, tasks, options.backend, options.seed, declared)
    started = connect(ray, address)
    try:
        needs = replica_needs(ray, catalog, pairs, options)
    except BaseException:
        if started:
            ray.shutdown()
        raise
    versions = {**library_versions(), "ray": ray.__version__}
    run_id, resumed = store.open_run(run_key(pairs, options, catalog.version), args or {}, options.seed,
                                     catalog.version, versions)
    reporter.run_started(run_id, resumed, len(pairs))
    driver = None
    status = "interrupted"
    try:
        driver = _Driver(ray, catalog, pairs, options, store, reporter, run_id, tasks, needs, replicas,
                         unsafe_no_sandbox)
        results = driver.run()
        status = "incomplete" if any(r.failed for r in results) else "finished"
    finally:
        store.finish_run(run_id, status, time.perf_counter() - began)
        if started:
            ray.shutdown()
    run = store.run(run_id) or {}
    metadata = {
        "run_id": run_id, "resumed": resumed, "seed": options.seed, "catalog_version": catalog.version,
        "versions": versions, "args": run.get("args", {}), "store": str(store.path), "executor": "ray",
        "workers": [w.stats() for w in driver.workers],
    }
    return RunSummary(run_id, resumed, results, time.perf_counter() - began, metadata)
