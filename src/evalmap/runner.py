"""A model's jobs as one pipeline: requests stream into the engine, answers stream out, scoring runs beside it.

    this thread: items -> requests -> response cache       engine thread: backends.base.stream()
         |  every uncached request of every job, in job order ------>  (a server keeps --concurrency in
         |                                                               flight across jobs and kinds)
         |  <------------------------------------------- each answer (or give-up) the moment it exists
         |  cache it at once; an item whose answers are all in -> scorer pool (sandboxed code runs there)
         |  <------------------------------------------- scored items
         `- the one store writer: samples in small transactions (every FLUSH_SAMPLES or FLUSH_SECONDS)

The engine never waits for scoring, for the store or for a job boundary: the next dataset's requests
queue behind the current one's. Resumable by construction: stored items are skipped and every answer
is cached as it arrives, so a kill -9 loses at most the requests in flight and a rerun gives the same
scores. A request the engine gives up on (a server failing it after every retry) fails its item, not
the run: the item is recorded with its error, the job's scores cover the rest, the job and run read
"incomplete", and running the same command again retries just those items. An engine that fails as a
whole (a local engine's error, a server rejecting requests) stops the run in one sentence after the
answers that did arrive are scored and stored.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from evalmap.backends.base import Backend, Generation, GenerationRequest, Request, Response, stream
from evalmap.errors import EvalmapError
from evalmap.metrics.stats import Score
from evalmap.store import Store
from evalmap.tasks.base import Item, SampleResult, Task
from evalmap.tasks.registry import headline_metric

FLUSH_SAMPLES = 64  # samples per store transaction at most ...
FLUSH_SECONDS = 0.25  # ... and at least this often while samples wait
TICK_SECONDS = 0.5  # progress reports at least this often
ENGINE_STOP_SECONDS = 30.0  # how long a stopped pipeline waits for the engine thread to notice


@dataclass
class JobResult:
    job_id: str
    model: str
    dataset: str
    n: int
    scores: list[Score]
    model_calls: int
    cache_hits: int
    wall_seconds: float
    prompt_tokens: int
    completion_tokens: int
    backend: dict
    prompt_hash: str
    task_config: dict = field(default_factory=dict)
    headline: str | None = None  # the name of the score that stands for the job (chosen by finish_job)
    failed: int = 0  # items the engine gave up on (not scored; a rerun retries them)
    failure: str | None = None  # the first of their errors

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def headline_score(self) -> Score | None:
        """The job's headline Score: the stored choice, else (a result built by hand) its first score."""
        named = {s.name: s for s in self.scores}
        return named.get(self.headline or "") or (self.scores[0] if self.scores else None)


@dataclass
class Job:
    """One dataset on the model being run, opened in the store."""

    job_id: str
    task: Task
    items: list[Item]


@dataclass
class EngineProgress:
    """What the engine has done so far in this model's pipeline (for progress bars)."""

    generated_tokens: int
    tokens_per_s: float | None
    samples_done: int
    samples_total: int
    samples_per_s: float | None
    failed: int
    eta_s: float | None
    eta_is_bound: bool  # True: an upper bound from the max_tokens still allowed (no sample finished yet)


class Progress:
    """Hooks the pipeline calls; the default shows nothing (executors.local.Reporter extends it)."""

    def job_started(self, model: str, dataset: str, total: int) -> None: ...

    def advance(self, model: str, dataset: str, n: int) -> None: ...

    def engine(self, model: str, progress: EngineProgress) -> None: ...

    def job_finished(self, result: JobResult) -> None: ...


def cache_fingerprint(backend: Backend) -> str:
    """Engine + weights: the same weights score slightly differently on different engines."""
    return f"{backend.info.name}:{backend.info.fingerprint}"


def _prompt_text(request: Request) -> str:
    if isinstance(request, GenerationRequest):
        if request.chat:
            return "\n".join(f"[{role}] {content}" for role, content in request.messages)
        return request.prompt
    return request.context


def preload(task: Task, seed: int = 1234) -> None:
    """Load and check a task's records now, few-shot records included (by building one item's
    requests): a bad or missing data file fails in one sentence before any model loads."""
    items = task.items(1, seed)
    if items:
        task.requests(items[0])


class _Cancelled(Exception):
    """The pipeline stopped (an error or Ctrl-C in the runner): the engine thread stops delivering."""


class _Sink:
    """The engine's side of the pipeline: answers go on the event queue; tokens are only counted."""

    def __init__(self, events: queue.Queue):
        self.events = events
        self.generated = 0
        self.cancelled = threading.Event()
        self._lock = threading.Lock()

    def response(self, index: int, response: Response) -> None:
        if self.cancelled.is_set():
            raise _Cancelled
        self.events.put(("response", index, response))

    def failure(self, index: int, error: Exception) -> None:
        if self.cancelled.is_set():
            raise _Cancelled
        self.events.put(("failure", index, error))

    def tokens(self, n: int) -> None:
        if self.cancelled.is_set():
            raise _Cancelled  # a local engine calls this every step: it stops within one step
        with self._lock:
            self.generated += n


@dataclass
class _ItemState:
    job: int
    item: Item
    position: int
    requests: list[Request]
    waiting: int = 0  # unique uncached requests of this item not answered yet
    error: str | None = None


@dataclass
class _JobState:
    job: Job
    todo: int  # items this attempt must write (or fail)
    written: int = 0
    failed: int = 0
    records: list[dict] = field(default_factory=list)
    failures: list[tuple[str, int, str]] = field(default_factory=list)
    cache_hits: int = 0
    wall: float = 0.0  # seconds charged to the job and not yet stored
    done: bool = False

    @property
    def settled(self) -> int:
        return self.written + self.failed


class _Pipeline:
    def __init__(self, backend: Backend, jobs: list[Job], store: Store, progress: Progress, model: str):
        self.backend, self.jobs, self.store, self.progress, self.model = backend, jobs, store, progress, model
        self.fingerprint = cache_fingerprint(backend)
        self.events: queue.Queue = queue.Queue()
        self.sink = _Sink(self.events)
        self.states: list[_JobState] = []
        self.items: list[_ItemState] = []
        self.responses: dict[str, Response] = {}
        self.missing: list[Request] = []
        self.waiters: dict[str, list[_ItemState]] = {}  # request key -> items waiting for it
        self.owner: dict[str, int] = {}  # request key -> the job that asked first (its model call)
        self.results: dict[int, JobResult] = {}
        self.began = self.mark = self.last_flush = time.perf_counter()
        self.written_now = 0  # samples scored by this pipeline (not resumed ones): the samples/s
        self.token_budget = 0  # max_tokens of every generation asked for: an ETA bound before any sample is done

    # ------------------------------------------------------------------ building the work

    def build(self) -> list[_ItemState]:
        """Each job's unstored items with their requests; answers from the cache; the rest to ask for."""
        for j, job in enumerate(self.jobs):
            done = self.store.done_items(job.job_id)
            self.store.clear_failures(job.job_id)  # a rerun retries the items that failed last time
            positions = {it.id: i for i, it in enumerate(job.items)}
            todo = [it for it in job.items if it.id not in done]
            state = _JobState(job, len(todo))
            self.states.append(state)
            name = job.task.dataset_id
            self.progress.job_started(self.model, name, len(job.items))
            if done:
                self.progress.advance(self.model, name, len(job.items) - len(todo))
            for it in todo:
                self.items.append(_ItemState(j, it, positions[it.id], job.task.requests(it)))
        wanted = {r.key(): r for s in self.items for r in s.requests}
        self.responses, askers = self.store.cached(self.fingerprint, list(wanted.values()))
        ready = []
        counted: set[tuple[int, str]] = set()
        for s in self.items:
            for r in s.requests:
                key = r.key()
                if key in self.responses:
                    # a hit is an answer another job paid for (this job's own, from before a kill, is its call)
                    if (s.job, key) not in counted and askers.get(key) != self.jobs[s.job].job_id:
                        counted.add((s.job, key))
                        self.states[s.job].cache_hits += 1
                    continue
                if key not in self.owner:
                    self.owner[key] = s.job
                    self.missing.append(r)
                    self.token_budget += r.max_tokens if isinstance(r, GenerationRequest) else 0
                waiting = self.waiters.setdefault(key, [])
                if not waiting or waiting[-1] is not s:
                    waiting.append(s)
                    s.waiting += 1
            if not s.waiting:
                ready.append(s)
        return ready

    # ------------------------------------------------------------------ the pipeline

    def run(self) -> list[JobResult]:
        ready = self.build()
        engine = threading.Thread(target=self._engine, name=f"evalmap-engine-{self.model}", daemon=True)
        engine_running = bool(self.missing)
        if engine_running:
            engine.start()
        scoring = 0
        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1), thread_name_prefix="evalmap-score") as pool:

            def score(s: _ItemState) -> None:
                nonlocal scoring
                scoring += 1
                task = self.jobs[s.job].task
                answers = [self.responses[r.key()] for r in s.requests]
                future = pool.submit(task.score, s.item, answers)
                future.add_done_callback(lambda f, s=s, answers=answers: self.events.put(("scored", s, answers, f)))

            try:
                for s in ready:
                    score(s)
                self._settle_empty_jobs()
                fatal: BaseException | None = None
                last_tick = 0.0
                while not all(st.done for st in self.states):
                    if not engine_running and not scoring:  # (a fatal error was raised when scoring ended)
                        raise RuntimeError(
                            f"{self.backend.info.name} left {sum(st.todo - st.settled for st in self.states)} "
                            "items unanswered without an error"
                        )
                    try:
                        events = [self.events.get(timeout=TICK_SECONDS)]
                    except queue.Empty:
                        events = []
                    while True:
                        try:
                            events.append(self.events.get_nowait())
                        except queue.Empty:
                            break
                    arrived: list[tuple[Request, Response, str]] = []
                    counts: dict[str, dict] = {}
                    for event in events:
                        kind = event[0]
                        if kind == "response":
                            request, response = self.missing[event[1]], event[2]
                            key = request.key()
                            if key in self.responses:
                                continue
                            self.responses[key] = response
                            arrived.append((request, response, self.jobs[self.owner[key]].job_id))
                            self._count_call(key, response, counts)
                            for s in self.waiters.pop(key, []):
                                s.waiting -= 1
                                if not s.waiting and s.error is None:
                                    score(s)
                        elif kind == "failure":
                            key = self.missing[event[1]].key()
                            for s in self.waiters.pop(key, []):
                                if s.error is None:
                                    s.error = _sentence(event[2])
                                    self._fail(s)
                        elif kind == "scored":
                            scoring -= 1
                            s, answers, future = event[1:]
                            self._record(s, answers, future.result())  # a scorer's exception is a bug: raise it
                        elif kind == "engine done":
                            engine_running = False
                            if event[1] is not None and fatal is None:
                                fatal = event[1]
                    if arrived:  # at once, with the calls they cost: a kill later loses none of them
                        self.store.cache(self.fingerprint, arrived, counts)
                    now = time.perf_counter()
                    self._flush(force=fatal is not None or now - self.last_flush >= FLUSH_SECONDS)
                    if now - last_tick >= TICK_SECONDS:
                        last_tick = now
                        self.progress.engine(self.model, self._engine_progress(now))
                    if fatal is not None and not scoring:
                        self._flush(force=True)
                        raise fatal
            except BaseException:
                self.sink.cancelled.set()
                if engine.is_alive():  # the engine stops at its next delivery; the model is closed after it
                    engine.join(timeout=ENGINE_STOP_SECONDS)
                raise
        return [self.results[j] for j in range(len(self.jobs))]

    def _engine(self) -> None:
        error: BaseException | None = None
        try:
            stream(self.backend, self.missing, self.sink)
        except _Cancelled:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the runner's thread, which raises it
            error = exc
        self.events.put(("engine done", error))

    def _count_call(self, key: str, response: Response, counts: dict[str, dict]) -> None:
        """A fresh answer is a model call of the job that asked first, with its tokens."""
        job_id = self.jobs[self.owner[key]].job_id
        count = counts.setdefault(job_id, {"model_calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
        prompt, completion = _tokens(response)
        count["model_calls"] += 1
        count["prompt_tokens"] += prompt
        count["completion_tokens"] += completion

    # ------------------------------------------------------------------ recording

    def _record(self, s: _ItemState, answers: list[Response], result: SampleResult) -> None:
        state = self.states[s.job]
        state.records.append(
            {
                "item_id": s.item.id,
                "position": s.position,
                "prompt": _prompt_text(s.requests[0]) if s.requests else "",
                "output": [x.text if isinstance(x, Generation) else x.to_dict() for x in answers],
                "extracted": result.extracted,
                "target": result.target,
                "metrics": result.metrics,
                "details": result.details,
                "prompt_tokens": sum(_tokens(x)[0] for x in answers),
                "completion_tokens": sum(_tokens(x)[1] for x in answers),
                "latency_s": sum(x.latency_s for x in answers),
            }
        )
        state.written += 1
        self.written_now += 1
        if len(state.records) >= FLUSH_SAMPLES or state.settled == state.todo:
            self._flush(force=True)

    def _fail(self, s: _ItemState) -> None:
        state = self.states[s.job]
        state.failures.append((s.item.id, s.position, s.error))
        state.failed += 1
        self._flush(force=state.settled == state.todo)

    def _charge_wall(self, now: float) -> None:
        """The time since the last charge goes to the first unfinished job (job walls add up to the pipeline's)."""
        head = next((st for st in self.states if not st.done), None)
        if head is not None:
            head.wall += now - self.mark
        self.mark = now

    def _flush(self, force: bool) -> None:
        """The one writer: each job's waiting samples, failures and counters in one transaction; finished
        jobs are aggregated (in job order, so walls are charged to the job that held the engine)."""
        if not force:
            return
        now = time.perf_counter()
        self.last_flush = now
        self._charge_wall(now)
        for j, st in enumerate(self.states):
            if st.done:
                continue
            finished = st.settled == st.todo and all(x.done for x in self.states[:j])
            if st.records or st.failures or finished:
                self._store(st)
            if finished:
                st.done = True
                result = finish_job(st.job.task, self.store, st.job.job_id)
                self.results[j] = result
                self.progress.job_finished(result)

    def _store(self, st: _JobState) -> None:
        n = len(st.records)
        self.store.add_samples(
            st.job.job_id, st.records, failures=st.failures, cache_hits=st.cache_hits, wall_seconds=st.wall
        )
        st.records, st.failures = [], []
        st.cache_hits, st.wall = 0, 0.0
        if n:
            self.progress.advance(self.model, st.job.task.dataset_id, n)

    def _settle_empty_jobs(self) -> None:
        if any(st.settled == st.todo for st in self.states):
            self._flush(force=True)

    def _engine_progress(self, now: float) -> EngineProgress:
        total = sum(st.todo for st in self.states)
        settled = sum(st.settled for st in self.states)
        generated = self.sink.generated
        elapsed = now - self.began
        tok_rate = generated / elapsed if generated and elapsed > 0 else None
        rate = self.written_now / elapsed if self.written_now and elapsed > 0 else None
        eta, bound = None, False
        if rate:
            eta = (total - settled) / rate
        elif tok_rate:
            eta, bound = max(0.0, self.token_budget - generated) / tok_rate, True
        return EngineProgress(
            generated, tok_rate, settled, total, rate, sum(st.failed for st in self.states), eta, bound
        )


def _tokens(response: Response) -> tuple[int, int]:
    """(prompt, completion) tokens of an answer: a generation's, or a log-likelihood's context and continuation."""
    if isinstance(response, Generation):
        return response.prompt_tokens, response.completion_tokens
    return response.context_tokens, response.continuation_tokens


def _sentence(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


def run_model(
    backend: Backend, jobs: list[Job], store: Store, model: str, progress: Progress | None = None
) -> list[JobResult]:
    """Run every job of one loaded model through one pipeline; returns their results in job order.

    Raises the engine's error (after storing every answer that arrived) when it fails as a whole.
    """
    try:
        return _Pipeline(backend, jobs, store, progress or Progress(), model).run()
    except EvalmapError as exc:
        for job in jobs:
            if store.job(job.job_id)["status"] == "running":
                store.finish_job(job.job_id, "failed")
        saved = sum(store.count_samples(job.job_id) for job in jobs)
        if saved and exc.args and isinstance(exc.args[0], str):
            exc.args = (_with_saved(exc.args[0]), *exc.args[1:])
        raise


def _with_saved(message: str) -> str:
    """One sentence: the engine's reason, then that nothing answered is lost and how to go on."""
    return (
        f"{message.rstrip().rstrip('.')}; every answer that did arrive is saved, "
        "so running the same command again asks only for the rest."
    )


def finish_job(task: Task, store: Store, job_id: str) -> JobResult:
    """Aggregate every stored sample of the job (resumed ones included) into scores, and store them with
    the job's headline metric: the dataset spec's, under the run's mode (multiple choice in generate mode
    is scored by `acc`); the job's first score where the spec names none it has. A job with failed items
    is "incomplete": its scores cover the items that were answered."""
    rows = store.samples(job_id)
    results = [SampleResult(r["metrics"], r["extracted"], r["target"], r["details"]) for r in rows]
    scores = task.aggregate(results)
    job = store.job(job_id)
    failures = store.failures(job_id)
    store.set_scores(job_id, [s.to_dict() for s in scores], headline_metric(job["dataset"], task.config.mode))
    store.finish_job(job_id, "incomplete" if failures else "finished")
    stored = store.headline(job_id)
    return JobResult(
        job_id=job_id, model=job["model"], dataset=job["dataset"], n=len(rows), scores=scores,
        model_calls=job["model_calls"], cache_hits=job["cache_hits"], wall_seconds=job["wall_seconds"],
        prompt_tokens=job["prompt_tokens"], completion_tokens=job["completion_tokens"],
        backend=job["backend"], prompt_hash=job["prompt_hash"], task_config=job["task_config"],
        headline=stored["name"] if stored else None, failed=len(failures),
        failure=failures[0]["error"] if failures else None,
    )


__all__ = ["EngineProgress", "Job", "JobResult", "Progress", "cache_fingerprint", "finish_job", "preload", "run_model"]
