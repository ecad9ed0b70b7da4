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

Conversations and judges: a task with `follow_up` asks for more once an item's answers are in (MT-Bench's
second turn carries the model's own first answer; the judge grades both). Follow-ups join the back of the
engine's queue, so the engine stays busy with other items meanwhile. A `JudgeRequest` goes to the judge's
engine, a second thread when the judge is another model, and is cached under the judge's fingerprint.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from evalmap.backends.base import (
    DEFAULT_WINDOW,
    Backend,
    Generation,
    GenerationRequest,
    MaskedPositionRequest,
    Request,
    Response,
    stream,
)
from evalmap.errors import EvalmapError
from evalmap.metrics.stats import Score
from evalmap.store import Store
from evalmap.tasks.base import Item, JudgeRequest, SampleResult, Task
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
    judge: dict | None = None  # a judged job's judge: model, engine, fingerprint, prompt_hash, self, calls, tokens
    measured: bool = False  # an efficiency job: its engine was timed, no answer came from (or went to) the cache

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
    if isinstance(request, MaskedPositionRequest):
        return f"{request.sequence[: request.position - 1]}<mask>{request.sequence[request.position :]}"
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

    def __init__(self, events: queue.Queue, engine: _Engine):
        self.events, self.engine = events, engine
        self.generated = 0
        self.cancelled = threading.Event()
        self._lock = threading.Lock()

    def response(self, request: Request, response: Response) -> None:
        if self.cancelled.is_set():
            raise _Cancelled
        self.events.put(("response", self.engine, request, response))

    def failure(self, request: Request, error: Exception) -> None:
        if self.cancelled.is_set():
            raise _Cancelled
        self.events.put(("failure", self.engine, request, error))

    def tokens(self, n: int) -> None:
        if self.cancelled.is_set():
            raise _Cancelled  # a local engine calls this every step: it stops within one step
        with self._lock:
            self.generated += n


class _Batch:
    """A `Sink` for one `stream` call: an index of the call is a request of the batch."""

    def __init__(self, sink: _Sink, batch: list[Request]):
        self.sink, self.batch = sink, batch

    def response(self, index: int, response: Response) -> None:
        self.sink.response(self.batch[index], response)

    def failure(self, index: int, error: Exception) -> None:
        self.sink.failure(self.batch[index], error)

    def tokens(self, n: int) -> None:
        self.sink.tokens(n)


class _Engine:
    """One engine of a pipeline and the thread that feeds it from a queue the runner keeps filling.

    An engine with its own `stream` (a server) gets everything queued at once; any other takes one
    `window` at a time, so a follow-up queued meanwhile is in its next window, not after a pause.
    """

    def __init__(self, backend: Backend, events: queue.Queue, model: str):
        self.backend, self.events, self.model = backend, events, model
        self.fingerprint = cache_fingerprint(backend)
        self.sink = _Sink(events, self)
        self.queued: list[Request] = []
        self.in_flight = 0  # asked of this engine and neither answered nor given up on (runner's thread only)
        self.closed = False
        self.wake = threading.Condition()
        self.thread: threading.Thread | None = None
        own = getattr(backend, "stream", None) is not None
        self.take = None if own else max(1, int(getattr(backend, "window", DEFAULT_WINDOW)))

    def ask(self, requests: list[Request]) -> None:
        if not requests:
            return
        self.in_flight += len(requests)
        with self.wake:
            self.queued.extend(requests)
            self.wake.notify()
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name=f"evalmap-engine-{self.model}", daemon=True)
            self.thread.start()

    def close(self) -> None:
        with self.wake:
            self.closed = True
            self.wake.notify()

    def stop(self) -> None:
        """Cancel: the engine stops at its next delivery (the model is closed after it)."""
        self.sink.cancelled.set()
        self.close()
        if self.thread is not None and self.thread.is_alive():
            self.thread.join(timeout=ENGINE_STOP_SECONDS)

    def _next(self) -> list[Request]:
        with self.wake:
            while not self.queued and not self.closed:
                self.wake.wait()
            n = len(self.queued) if self.take is None else self.take
            batch, self.queued = self.queued[:n], self.queued[n:]
            return batch

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            while batch := self._next():
                stream(self.backend, batch, _Batch(self.sink, batch))
        except _Cancelled:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the runner's thread, which raises it
            error = exc
        self.events.put(("engine done", self, error))


@dataclass
class _ItemState:
    job: int
    item: Item
    position: int
    requests: list[Request]
    waiting: int = 0  # unique unanswered requests of this item
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


Slot = tuple[int, str]  # (engine: 0 the model's, 1 the judge's), request key


class _Pipeline:
    def __init__(
        self, backend: Backend, jobs: list[Job], store: Store, progress: Progress, model: str,
        judge: Backend | None = None,
    ):
        self.jobs, self.store, self.progress, self.model = jobs, store, progress, model
        self.events: queue.Queue = queue.Queue()
        self.engines = [_Engine(backend, self.events, model)]
        if judge is not None and judge is not backend:
            self.engines.append(_Engine(judge, self.events, f"{model}-judge"))
        self.backend = backend
        self.states: list[_JobState] = []
        self.items: list[_ItemState] = []
        self.responses: dict[Slot, Response] = {}
        self.waiters: dict[Slot, list[_ItemState]] = {}  # items waiting for an answer
        self.owner: dict[Slot, int] = {}  # the job that asked first (its model call)
        self.counted: set[tuple[int, Slot]] = set()  # (job, answer) cache hits already counted
        self.results: dict[int, JobResult] = {}
        self.began = self.mark = self.last_flush = time.perf_counter()
        self.written_now = 0  # samples scored by this pipeline (not resumed ones): the samples/s
        self.token_budget = 0  # max_tokens of every generation asked for: an ETA bound before any sample is done
        self.pool: ThreadPoolExecutor | None = None
        self.scoring = 0

    def _slot(self, request: Request) -> Slot:
        """Where an answer lives: a judge's request on the judge's engine (the model's own when it judges itself)."""
        return (len(self.engines) - 1 if isinstance(request, JudgeRequest) else 0), request.key()

    # ------------------------------------------------------------------ building the work

    def build(self) -> None:
        """Each job's unstored items; their first requests are asked (answers from the cache, the rest queued)."""
        first: list[tuple[_ItemState, list[Request]]] = []
        for j, job in enumerate(self.jobs):
            done = self.store.done_items(job.job_id)
            self.store.clear_failures(job.job_id)  # a rerun retries the items that failed last time
            positions = {it.id: i for i, it in enumerate(job.items)}
            todo = [it for it in job.items if it.id not in done]
            self.states.append(_JobState(job, len(todo)))
            name = job.task.dataset_id
            self.progress.job_started(self.model, name, len(job.items))
            if done:
                self.progress.advance(self.model, name, len(job.items) - len(todo))
            for it in todo:
                s = _ItemState(j, it, positions[it.id], [])
                self.items.append(s)
                first.append((s, job.task.requests(it)))
        self._ask(first)

    def _ask(self, asks: list[tuple[_ItemState, list[Request]]]) -> None:
        """Attach requests to their items: cached answers resolve at once (which may ask for more: a cached
        conversation replays without a call), the rest are queued on their engine in one go."""
        fresh: list[list[Request]] = [[] for _ in self.engines]
        while asks:
            wanted: list[dict[str, Request]] = [{} for _ in self.engines]
            for _, requests in asks:
                for r in requests:
                    e, key = self._slot(r)
                    if (e, key) not in self.responses and (e, key) not in self.owner:
                        wanted[e][key] = r
            askers: dict[Slot, str] = {}
            for e, engine in enumerate(self.engines):
                if wanted[e]:
                    found, asked_by = self.store.cached(engine.fingerprint, list(wanted[e].values()))
                    self.responses.update({(e, k): v for k, v in found.items()})
                    askers.update({(e, k): v for k, v in asked_by.items()})
            complete = []
            for s, requests in asks:
                s.requests.extend(requests)
                for r in requests:
                    slot = self._slot(r)
                    if slot in self.responses:
                        # a hit is an answer another job paid for (this job's own, from before a kill, is its call)
                        if (s.job, slot) not in self.counted and askers.get(slot, "") != self.jobs[s.job].job_id:
                            self.counted.add((s.job, slot))
                            self.states[s.job].cache_hits += 1
                        continue
                    if slot not in self.owner:
                        self.owner[slot] = s.job
                        fresh[slot[0]].append(r)
                        self.token_budget += r.max_tokens if isinstance(r, GenerationRequest) else 0
                    waiting = self.waiters.setdefault(slot, [])
                    if not waiting or waiting[-1] is not s:
                        waiting.append(s)
                        s.waiting += 1
                if not s.waiting:
                    complete.append(s)
            asks = self._answered(complete)
        for engine, requests in zip(self.engines, fresh, strict=True):
            engine.ask(requests)

    def _answered(self, items: list[_ItemState]) -> list[tuple[_ItemState, list[Request]]]:
        """Items whose every request is answered: their follow-ups, else they go to scoring."""
        asks = []
        for s in items:
            follow_up = getattr(self.jobs[s.job].task, "follow_up", None)
            more = follow_up(s.item, self._answers(s)) if follow_up is not None else []
            if more:
                asks.append((s, list(more)))
            else:
                self._score(s)
        return asks

    def _answers(self, s: _ItemState) -> list[Response]:
        return [self.responses[self._slot(r)] for r in s.requests]

    def _score(self, s: _ItemState) -> None:
        assert self.pool is not None
        self.scoring += 1
        answers = self._answers(s)
        future = self.pool.submit(self.jobs[s.job].task.score, s.item, answers)
        future.add_done_callback(lambda f, s=s, answers=answers: self.events.put(("scored", s, answers, f)))

    # ------------------------------------------------------------------ the pipeline

    def run(self) -> list[JobResult]:
        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1), thread_name_prefix="evalmap-score") as pool:
            self.pool = pool
            try:
                self.build()
                self._settle_empty_jobs()
                fatal: BaseException | None = None
                last_tick = 0.0
                while not all(st.done for st in self.states):
                    if not self._working():
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
                    arrived: list[list[tuple[Request, Response, str]]] = [[] for _ in self.engines]
                    counts: list[dict[str, dict]] = [{} for _ in self.engines]
                    complete: list[_ItemState] = []
                    for event in events:
                        kind = event[0]
                        if kind == "response":
                            engine, request, response = event[1:]
                            e = self.engines.index(engine)
                            slot = (e, request.key())
                            engine.in_flight -= 1
                            if slot in self.responses:
                                continue
                            self.responses[slot] = response
                            arrived[e].append((request, response, self.jobs[self.owner[slot]].job_id))
                            self._count_call(slot, request, response, counts[e])
                            for s in self.waiters.pop(slot, []):
                                s.waiting -= 1
                                if not s.waiting and s.error is None:
                                    complete.append(s)
                        elif kind == "failure":
                            engine, request, error = event[1:]
                            engine.in_flight -= 1
                            for s in self.waiters.pop((self.engines.index(engine), request.key()), []):
                                if s.error is None:
                                    s.error = _sentence(error)
                                    self._fail(s)
                        elif kind == "scored":
                            self.scoring -= 1
                            s, answers, future = event[1:]
                            self._record(s, answers, future.result())  # a scorer's exception is a bug: raise it
                        elif kind == "engine done":
                            event[1].thread = None
                            if event[2] is not None and fatal is None:
                                fatal = event[2]
                    for engine, answers, count in zip(self.engines, arrived, counts, strict=True):
                        if answers:  # at once, with the calls they cost: a kill later loses none of them
                            self.store.cache(engine.fingerprint, answers, count)
                    if complete and fatal is None:
                        self._ask(self._answered(complete))
                    if not any(engine.in_flight for engine in self.engines):
                        for engine in self.engines:  # nothing asked is unanswered, so nothing more can be asked
                            engine.close()
                    now = time.perf_counter()
                    self._flush(force=fatal is not None or now - self.last_flush >= FLUSH_SECONDS)
                    if now - last_tick >= TICK_SECONDS:
                        last_tick = now
                        self.progress.engine(self.model, self._engine_progress(now))
                    if fatal is not None and not self.scoring:
                        self._flush(force=True)
                        raise fatal
            except BaseException:
                for engine in self.engines:
                    engine.stop()
                raise
            finally:
                for engine in self.engines:
                    engine.close()
        return [self.results[j] for j in range(len(self.jobs))]

    def _working(self) -> bool:
        """Something can still settle an item: an engine thread or a scorer."""
        return bool(self.scoring) or any(engine.thread is not None for engine in self.engines)

    def _count_call(self, slot: Slot, request: Request, response: Response, counts: dict[str, dict]) -> None:
        """A fresh answer is a call of the job that asked first, with its tokens: a model call, or a judge call."""
        job_id = self.jobs[self.owner[slot]].job_id
        prompt, completion = _tokens(response)
        if isinstance(request, JudgeRequest):
            count = counts.setdefault(job_id, {})
            count["judge_calls"] = count.get("judge_calls", 0) + 1
            count["judge_tokens"] = count.get("judge_tokens", 0) + prompt + completion
            return
        count = counts.setdefault(job_id, {})
        count["model_calls"] = count.get("model_calls", 0) + 1
        count["prompt_tokens"] = count.get("prompt_tokens", 0) + prompt
        count["completion_tokens"] = count.get("completion_tokens", 0) + completion

    # ------------------------------------------------------------------ recording

    def _record(self, s: _ItemState, answers: list[Response], result: SampleResult) -> None:
        state = self.states[s.job]
        own = [x for r, x in zip(s.requests, answers, strict=True) if not isinstance(r, JudgeRequest)]
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
                "prompt_tokens": sum(_tokens(x)[0] for x in own),
                "completion_tokens": sum(_tokens(x)[1] for x in own),
                "latency_s": sum(x.latency_s for x in own),
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
        generated = sum(engine.sink.generated for engine in self.engines)
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
    return response.context_tokens, getattr(response, "continuation_tokens", 0)  # a masked LM reads, writes none


def _sentence(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


def run_model(
    backend: Backend, jobs: list[Job], store: Store, model: str, progress: Progress | None = None,
    judge: Backend | None = None,
) -> list[JobResult]:
    """Run every job of one loaded model through one pipeline; returns their results in job order.
    `judge` answers the `JudgeRequest`s of judged tasks (None: the model judges itself).

    Raises the engine's error (after storing every answer that arrived) when it fails as a whole.
    A task that measures the engine (`measure`: tasks.kinds.latency) runs after the pipeline, alone on it.
    """
    progress = progress or Progress()
    measured = [job for job in jobs if getattr(job.task, "measure", None) is not None]
    piped = [job for job in jobs if job not in measured]
    try:
        results = _Pipeline(backend, piped, store, progress, model, judge).run() if piped else []
        done = {id(job): result for job, result in zip(piped, results, strict=True)}
        for job in measured:
            done[id(job)] = _measure(backend, job, store, model, progress)
        return [done[id(job)] for job in jobs]
    except EvalmapError as exc:
        for job in jobs:
            if store.job(job.job_id)["status"] == "running":
                store.finish_job(job.job_id, "failed")
        saved = sum(store.count_samples(job.job_id) for job in jobs)
        if saved and exc.args and isinstance(exc.args[0], str):
            exc.args = (_with_saved(exc.args[0]), *exc.args[1:])
        raise


def _measure(backend: Backend, job: Job, store: Store, model: str, progress: Progress) -> JobResult:
    """A measuring job on the idle engine: never answered from the response cache (a latency is measured or
    not at all); its records are stored in one go, so a job killed halfway measures again on the rerun. Its
    requests are not counted as model calls: the planner's measured speed (Store.measured_jobs) would
    read its warm-ups, Poisson gaps and llama-bench time as slow generation."""
    name = job.task.dataset_id
    progress.job_started(model, name, len(job.items))
    if not store.done_items(job.job_id):
        began = time.perf_counter()
        records = job.task.measure(backend, job.items)
        store.add_samples(
            job.job_id, records, wall_seconds=time.perf_counter() - began,
            prompt_tokens=sum(r["prompt_tokens"] for r in records),
            completion_tokens=sum(r["completion_tokens"] for r in records),
        )
    progress.advance(model, name, len(job.items))
    result = finish_job(job.task, store, job.job_id)
    result.measured = True
    progress.job_finished(result)
    return result


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
    store.set_scores(job_id, [s.to_dict() for s in scores], headline_metric(job["dataset"], task.config.mode))
    store.finish_job(job_id, "incomplete" if store.failures(job_id) else "finished")
    return stored_job(store, job_id, scores)


def stored_job(store: Store, job_id: str, scores: list[Score]) -> JobResult:
    """A job as the store has it (counters, failures, headline, judge), with these scores."""
    job = store.job(job_id)
    failures = store.failures(job_id)
    stored = store.headline(job_id)
    return JobResult(
        job_id=job_id, model=job["model"], dataset=job["dataset"], n=store.count_samples(job_id), scores=scores,
        model_calls=job["model_calls"], cache_hits=job["cache_hits"], wall_seconds=job["wall_seconds"],
        prompt_tokens=job["prompt_tokens"], completion_tokens=job["completion_tokens"],
        backend=job["backend"] or {}, prompt_hash=job["prompt_hash"], task_config=job["task_config"] or {},
        headline=stored["name"] if stored else None, failed=len(failures),
        failure=failures[0]["error"] if failures else None,
        judge={**job["judge"], "calls": job["judge_calls"], "tokens": job["judge_tokens"]} if job["judge"] else None,
    )


__all__ = [
    "EngineProgress", "Job", "JobResult", "Progress", "cache_fingerprint", "finish_job", "preload", "run_model",
    "stored_job",
]
