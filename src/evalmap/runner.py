"""One job: items -> requests -> cached or fresh responses -> scores -> store.

Resumable by construction: items already in the store are skipped, each response is
cached the moment the engine hands it back (`on_response`, see backends/base.py), and
samples are written per chunk. A killed run loses at most the answers in flight; a
failed request (a server that gave up after its retries) fails the job in one sentence
after the chunk's answered items are scored and stored, so a rerun asks only for what
failed.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from evalmap.backends.base import Backend, Generation, GenerationRequest, OnResponse, Request, Response
from evalmap.errors import EvalmapError
from evalmap.metrics.stats import Score
from evalmap.store import Store
from evalmap.tasks.base import Item, SampleResult, Task
from evalmap.tasks.registry import headline_metric


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

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def headline_score(self) -> Score | None:
        """The job's headline Score: the stored choice, else (a result built by hand) its first score."""
        named = {s.name: s for s in self.scores}
        return named.get(self.headline or "") or (self.scores[0] if self.scores else None)


def cache_fingerprint(backend: Backend) -> str:
    """Engine + weights: the same weights score slightly differently on different engines."""
    return f"{backend.info.name}:{backend.info.fingerprint}"


def _prompt_text(request: Request) -> str:
    if isinstance(request, GenerationRequest):
        if request.chat:
            return "\n".join(f"[{role}] {content}" for role, content in request.messages)
        return request.prompt
    return request.context


def _call(method: Callable, requests: list, on_response: OnResponse) -> None:
    """Ask the engine; an engine without `on_response` delivers everything when its call returns."""
    try:
        streams = "on_response" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        streams = False
    if streams:
        method(requests, on_response=on_response)
        return
    for i, response in enumerate(method(requests)):
        on_response(i, response)


def _answer(backend: Backend, requests: list[Request], on_response: OnResponse) -> None:
    """Send generation and log-likelihood requests to the engine in two calls; every answer goes to
    `on_response(index in requests, response)` as the engine hands it back."""
    gen_idx = [i for i, r in enumerate(requests) if isinstance(r, GenerationRequest)]
    ll_idx = [i for i, r in enumerate(requests) if not isinstance(r, GenerationRequest)]
    if gen_idx:
        _call(backend.generate, [requests[i] for i in gen_idx], lambda j, resp: on_response(gen_idx[j], resp))
    if ll_idx:
        _call(backend.loglikelihood, [requests[i] for i in ll_idx], lambda j, resp: on_response(ll_idx[j], resp))


def preload(task: Task, seed: int = 1234) -> None:
    """Load and check a task's records now, few-shot records included (by building one item's
    requests): a bad or missing data file fails in one sentence before any model loads."""
    items = task.items(1, seed)
    if items:
        task.requests(items[0])


def run_job(
    task: Task,
    backend: Backend,
    store: Store,
    job_id: str,
    items: list[Item],
    chunk_items: int = 32,
    on_progress: Callable[[int], None] | None = None,
) -> JobResult:
    fingerprint = cache_fingerprint(backend)
    done = store.done_items(job_id)
    positions = {it.id: i for i, it in enumerate(items)}
    todo = [it for it in items if it.id not in done]
    if on_progress and done:
        on_progress(len(items) - len(todo))
    workers = max(1, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as scorers:

        def save(chunk: list[Item], per_item: list[list[Request]], responses: dict, fresh_keys: set, stats: dict):
            """Score the items and store their samples and the chunk's counters."""
            answered = [[responses[r.key()] for r in reqs] for reqs in per_item]
            results = list(scorers.map(lambda pair: task.score(*pair), zip(chunk, answered, strict=True)))
            records, prompt_tok, completion_tok = [], 0, 0
            for item, reqs, resps, result in zip(chunk, per_item, answered, results, strict=True):
                p_tok = sum(getattr(x, "prompt_tokens", 0) or getattr(x, "context_tokens", 0) for x in resps)
                c_tok = sum(getattr(x, "completion_tokens", 0) or getattr(x, "continuation_tokens", 0) for x in resps)
                if any(r.key() in fresh_keys for r in reqs):
                    prompt_tok, completion_tok = prompt_tok + p_tok, completion_tok + c_tok
                records.append(
                    {
                        "item_id": item.id,
                        "position": positions[item.id],
                        "prompt": _prompt_text(reqs[0]) if reqs else "",
                        "output": [x.text if isinstance(x, Generation) else x.to_dict() for x in resps],
                        "extracted": result.extracted,
                        "target": result.target,
                        "metrics": result.metrics,
                        "details": result.details,
                        "prompt_tokens": p_tok,
                        "completion_tokens": c_tok,
                        "latency_s": sum(x.latency_s for x in resps),
                    }
                )
            store.add_samples(job_id, records)
            store.add_job_counters(
                job_id, prompt_tokens=prompt_tok, completion_tokens=completion_tok, **stats
            )
            if on_progress:
                on_progress(len(chunk))

        # Generation is slow per item: smaller chunks save work and show progress sooner.
        generates = bool(todo) and any(isinstance(r, GenerationRequest) for r in task.requests(todo[0]))
        step = max(1, chunk_items // 4) if generates else chunk_items
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            began = time.perf_counter()
            per_item = [task.requests(it) for it in chunk]
            unique: dict[str, Request] = {}
            for reqs in per_item:
                for r in reqs:
                    unique.setdefault(r.key(), r)
            responses = store.cached(fingerprint, list(unique.values()))
            missing = [r for k, r in unique.items() if k not in responses]
            fresh: dict[str, Response] = {}

            def arrived(i: int, response: Response, missing: list[Request] = missing, fresh: dict = fresh) -> None:
                request = missing[i]
                if request.key() not in fresh:
                    fresh[request.key()] = response
                    store.cache(fingerprint, [(request, response)])  # at once: a failure later loses nothing

            try:
                if missing:
                    _answer(backend, missing, arrived)
                    if len(fresh) < len(missing):
                        raise RuntimeError(
                            f"{backend.info.name} answered {len(fresh)} of {len(missing)} requests without an error"
                        )
            except Exception as exc:
                responses.update(fresh)
                whole = [n for n, reqs in enumerate(per_item) if all(r.key() in responses for r in reqs)]
                stats = dict(
                    model_calls=len(fresh), cache_hits=len(unique) - len(missing),
                    wall_seconds=time.perf_counter() - began,
                )  # fmt: skip
                save([chunk[n] for n in whole], [per_item[n] for n in whole], responses, set(fresh), stats)
                store.finish_job(job_id, "failed")
                if isinstance(exc, EvalmapError) and exc.args and isinstance(exc.args[0], str):
                    exc.args = (_with_saved(exc.args[0], len(fresh), len(missing)), *exc.args[1:])
                raise
            responses.update(fresh)
            stats = dict(
                model_calls=len(missing), cache_hits=len(unique) - len(missing),
                wall_seconds=time.perf_counter() - began,
            )  # fmt: skip
            save(chunk, per_item, responses, set(fresh), stats)
    return finish_job(task, store, job_id)


def _with_saved(message: str, saved: int, asked: int) -> str:
    """One sentence: the engine's reason, then what was kept and how to go on."""
    if not saved:
        return message
    return (
        f"{message.rstrip().rstrip('.')}; the {saved} of {asked} answers that did arrive are saved, "
        "so running the same command again asks only for the rest."
    )


def finish_job(task: Task, store: Store, job_id: str) -> JobResult:
    """Aggregate every stored sample of the job (resumed ones included) into scores, and store them with
    the job's headline metric: the dataset spec's, under the run's mode (multiple choice in generate mode
    is scored by `acc`); the job's first score where the spec names none it has."""
    rows = store.samples(job_id)
    results = [SampleResult(r["metrics"], r["extracted"], r["target"], r["details"]) for r in rows]
    scores = task.aggregate(results)
    job = store.job(job_id)
    store.set_scores(job_id, [s.to_dict() for s in scores], headline_metric(job["dataset"], task.config.mode))
    store.finish_job(job_id, "finished")
    stored = store.headline(job_id)
    return JobResult(
        job_id=job_id, model=job["model"], dataset=job["dataset"], n=len(rows), scores=scores,
        model_calls=job["model_calls"], cache_hits=job["cache_hits"], wall_seconds=job["wall_seconds"],
        prompt_tokens=job["prompt_tokens"], completion_tokens=job["completion_tokens"],
        backend=job["backend"], prompt_hash=job["prompt_hash"], task_config=job["task_config"],
        headline=stored["name"] if stored else None,
    )
