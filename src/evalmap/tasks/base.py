"""The Task contract: what a dataset needs (Inspect's dataset + solver + scorer).

A kind (`tasks.kinds`: multiple choice, generate-and-extract, execute code, ...) is how
requests are built and answers scored; a spec (`tasks.specs`, one module per task type) is
one dataset written as data for its kind; `registry.build_task` turns a spec and a run's
`TaskConfig` into a `Task`.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from evalmap.backends.base import GenerationRequest, Request, Response
from evalmap.hashing import sha256_json
from evalmap.metrics.stats import Score

PROMPT_HASH_ITEMS = 8  # items whose rendered requests make up a task's prompt hash
MAX_N_SAMPLES = 1000  # generations per item (pass@k) a run or a plan accepts


@dataclass(frozen=True)
class TaskConfig:
    """Per-run options that change prompts or scoring; recorded with the run."""

    data_dir: str | None = None
    chat: bool | None = None  # None: the dataset spec's default
    num_fewshot: int | None = None  # None: the dataset spec's standard count
    mode: str | None = None  # e.g. "loglikelihood" | "generate"; None: spec default
    variant: str | None = None  # a catalog variant of the dataset (e.g. math500, aime25); None: the default
    n_samples: int = 1  # generations per item (pass@k)
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int | None = None
    seed: int = 1234
    judge: str | None = None  # the catalog model that grades a judged task (None: the model being evaluated)
    pairwise_against: str | None = None  # a judged task's opponent: a run id or a model id whose answers are stored
    slo: str | None = None  # efficiency_bench's goodput SLOs, "ttft=ms,tpot=ms" (None: the spec's)


@dataclass
class Item:
    """One dataset item: a stable id and the raw fields of its source record."""

    id: str
    data: dict[str, Any]


@dataclass
class SampleResult:
    """The outcome of scoring one item."""

    metrics: dict[str, float]
    extracted: Any = None
    target: Any = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JudgeRequest(GenerationRequest):
    """A generation asked of the run's judge (MT-Bench's grading), not of the model being evaluated:
    the runner sends it to the judge's engine and caches its answer under the judge's fingerprint."""


class Task(Protocol):
    """What a dataset needs. Two optional members extend it for conversations and judges:

    - `follow_up(item, responses) -> list[Request]`: requests that depend on earlier answers (a second
      turn with the model's own first answer, a judge's verdict on both). The runner calls it, in its
      own thread, each time every request asked so far for the item is answered, with all answers in
      the order asked; [] means the item is ready for `score`, which then gets every answer in that order.
    - `judged: bool` (true when the task sends `JudgeRequest`s): the run must name a judge.
    """

    dataset_id: str
    config: TaskConfig

    def items(self, limit: int | None = None, seed: int = 1234) -> list[Item]: ...

    def requests(self, item: Item) -> list[Request]: ...

    def score(self, item: Item, responses: list[Response]) -> SampleResult: ...

    def aggregate(self, samples: list[SampleResult]) -> list[Score]: ...

    def prompt_hash(self) -> str: ...


def deterministic_subset(items: list[Item], limit: int | None, seed: int) -> list[Item]:
    """The same `--samples N` and seed pick the same items on every machine.

    Items are ranked by a hash of (seed, item id) rather than `random.sample` over
    positions, so adding items to a dataset does not reshuffle an existing subset.
    """
    if limit is None or limit >= len(items):
        return list(items)

    def rank(item: Item) -> str:
        return hashlib.sha256(f"{seed}:{item.id}".encode()).hexdigest()

    chosen = sorted(items, key=rank)[:limit]
    order = {id(it): i for i, it in enumerate(items)}
    return sorted(chosen, key=lambda it: order[id(it)])


def seeded_rng(seed: int, *parts: str) -> random.Random:
    return random.Random(hashlib.sha256(":".join([str(seed), *parts]).encode()).hexdigest())


def prompt_hash(task: Task) -> str:
    """sha256 of what a run sends: every request (prompt or chat messages with their few-shot
    exemplars, chat flag, stop sequences, max tokens, temperature, seed, ...) of a fixed,
    deterministic sample of the dataset's items. Any change to a rendered prompt changes it;
    nothing hand-written (a template description, a version label) goes into it."""
    sample = deterministic_subset(task.items(), PROMPT_HASH_ITEMS, seed=0)
    return sha256_json([[request.key() for request in task.requests(item)] for item in sample])
