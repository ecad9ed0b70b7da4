"""Generate, extract, compare: free-form generation scored by answer extraction (gsm8k, MATH, AIME, ...).

A `GenerativeSpec` is one dataset: a prompt template filled with the record's fields, fixed
few-shot exemplars in lm-eval's layout ("Q: ...\\nA: <answer>" joined by blank lines, or
alternating chat turns), stop sequences, and its metrics as (name, extractor) pairs: a sample
scores 1 on a metric when the normalised extraction equals (or, with `compare`, is equivalent
to) the normalised gold answer. With `groups` the metrics are also reported per group (MATH:
per subject and level).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from evalmap.backends.base import Generation, Request, Response
from evalmap.catalog.schema import Dataset
from evalmap.errors import EvalmapError
from evalmap.metrics.answers import normalize_number
from evalmap.metrics.stats import Score
from evalmap.tasks.base import Item, SampleResult, TaskConfig, deterministic_subset, prompt_hash
from evalmap.tasks.data import DataSource, LazyRecords, Record
from evalmap.tasks.kinds.common import SpecBase, generations, mean_scores, resolve_variant, subgroup_scores

Extractor = Callable[[str], str | None]
Comparator = Callable[[str | None, str | None], bool]


@dataclass(frozen=True)
class GenerativeSpec(SpecBase):
    """A generation dataset: prompt template, fixed few-shot exemplars, extractors and metric names.

    `template` is formatted with the record's fields (str.format). A few-shot exemplar
    is `template` filled with the exemplar + `target_delimiter` + its target, and the
    exemplars are joined with `fewshot_delimiter` (lm-eval's layout). Each metric is
    (name, extractor): the sample scores 1 when the normalised extraction equals the
    normalised target.
    """

    dataset_id: str
    source: DataSource
    template: str
    target: Callable[[Record], str]
    fewshot: tuple[Record, ...] = ()
    default_fewshot: int = 0
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    stop: tuple[str, ...] = ()
    max_tokens: int = 256
    metrics: tuple[tuple[str, Extractor], ...] = ()
    normalize: Callable[[str | None], str | None] = normalize_number
    chat_default: bool = False
    compare: Comparator | None = None  # None: normalised strings must be equal
    fewshot_target: Callable[[Record], str] | None = None  # an exemplar's answer text (None: `target`)
    groups: tuple[tuple[str, Callable[[Record], str]], ...] = ()  # per-group scores (math: subject, level)
    variants: Mapping[str, DataSource] = field(default_factory=dict)  # catalog variant name -> its split
    headline: str | None = None  # the metric a group average uses (None: the first)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.metrics)

    def build(self, dataset: Dataset, config: TaskConfig) -> GenerativeTask:
        return GenerativeTask(self, dataset, config)


@dataclass
class GenerativeTask:
    spec: GenerativeSpec
    dataset: Dataset
    config: TaskConfig
    dataset_id: str = field(init=False)
    source: DataSource = field(init=False, repr=False)
    _records: LazyRecords = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.dataset_id = self.dataset.id
        self.dataset, self.source = resolve_variant(self.dataset, self.spec.source, self.spec.variants, self.config)
        k = self.num_fewshot
        if not 0 <= k <= len(self.spec.fewshot):
            raise EvalmapError(
                f"{self.dataset_id} has {len(self.spec.fewshot)} few-shot exemplars, so "
                f"--num-fewshot must be between 0 and {len(self.spec.fewshot)} (got {k})."
            )
        self._records = LazyRecords(self.dataset, self.config.data_dir, self.source)

    @property
    def num_fewshot(self) -> int:
        n = self.config.num_fewshot
        return self.spec.default_fewshot if n is None else n

    @property
    def chat(self) -> bool:
        return self.spec.chat_default if self.config.chat is None else self.config.chat

    @property
    def metric_names(self) -> list[str]:
        return list(self.spec.metric_names)

    def items(self, limit: int | None = None, seed: int = 1234) -> list[Item]:
        all_items = [Item(id=r["id"], data=r) for r in self._records.get()]
        return deterministic_subset(all_items, limit, seed)

    # -- prompts -----------------------------------------------------------------

    def exemplars(self) -> list[Record]:
        """The first `num_fewshot` fixed exemplars (lm-eval's `first_n` sampler)."""
        return list(self.spec.fewshot[: self.num_fewshot])

    def shot_target(self, record: Record) -> str:
        return (self.spec.fewshot_target or self.spec.target)(record)

    def prompt(self, item: Item) -> str:
        """The completion-style prompt: exemplars with answers, then the question."""
        spec = self.spec
        shots = [
            spec.template.format(**ex) + spec.target_delimiter + self.shot_target(ex) + spec.fewshot_delimiter
            for ex in self.exemplars()
        ]
        return "".join(shots) + spec.template.format(**item.data)

    def messages(self, item: Item) -> tuple[tuple[str, str], ...]:
        """Chat prompt: exemplars as alternating user/assistant turns (lm-eval fewshot_as_multiturn)."""
        turns: list[tuple[str, str]] = []
        for ex in self.exemplars():
            turns.append(("user", self.spec.template.format(**ex)))
            turns.append(("assistant", self.shot_target(ex)))
        turns.append(("user", self.spec.template.format(**item.data)))
        return tuple(turns)

    def requests(self, item: Item) -> list[Request]:
        body = dict(messages=self.messages(item), chat=True) if self.chat else dict(prompt=self.prompt(item))
        return generations(self.config, self.spec.max_tokens, **body, stop=self.spec.stop)

    # -- scoring -----------------------------------------------------------------

    def target(self, item: Item) -> str | None:
        return self.spec.normalize(self.spec.target(item.data))

    def score(self, item: Item, responses: list[Response]) -> SampleResult:
        gold = self.target(item)
        compare = self.spec.compare or (lambda pred, ref: pred is not None and pred == ref)
        texts = [r.text if isinstance(r, Generation) else "" for r in responses]
        per_sample: list[dict] = []
        for text in texts:
            row: dict = {}
            for name, extract in self.spec.metrics:
                raw = extract(text)
                pred = self.spec.normalize(raw)
                row[name] = {"raw": raw, "pred": pred, "correct": float(pred is not None and compare(pred, gold))}
            per_sample.append(row)
        metrics = {
            name: (sum(r[name]["correct"] for r in per_sample) / len(per_sample) if per_sample else 0.0)
            for name in self.metric_names
        }
        first = per_sample[0] if per_sample else {}
        extracted = {name: first[name]["pred"] for name in first}
        details: dict = {"raw_extracted": {name: first[name]["raw"] for name in first}}
        if len(per_sample) > 1:
            details["samples"] = [{n: r[n]["pred"] for n in r} for r in per_sample]
        if self.spec.groups:
            details["groups"] = {key: fn(item.data) for key, fn in self.spec.groups}
        return SampleResult(metrics=metrics, extracted=extracted, target=gold, details=details)

    def aggregate(self, samples: list[SampleResult]) -> list[Score]:
        scores = mean_scores(samples, self.metric_names)
        for key, _ in self.spec.groups:
            scores += subgroup_scores(samples, self.metric_names[0], key)
        return scores

    def prompt_hash(self) -> str:
        return prompt_hash(self)
