"""Multiple choice: scored by log-likelihood exactly as lm-evaluation-harness does, or by generation.

For every option the model is asked log P(" " + option | context); `acc` takes the
argmax of the summed log-probabilities, `acc_norm` the argmax after dividing each by
the option's length in characters (lm-eval's `completion_len`, measured on the option
text without the leading space). Few-shot exemplars (`num_fewshot`, default 0 as in
lm-eval) are joined with "\\n\\n" in the same format with the answer filled in.

winogrande is scored partially (lm-eval): one context per option (the sentence up to
the blank with the option filled in) and the same continuation (the text after the
blank), log P(continuation | context_i). truthfulqa scores mc1 (argmax over the mc1
options, the true one first) and mc2 (the normalised probability mass on the true mc2
options) from one set of log-likelihood requests.

`--mode generate` asks instead for a chain-of-thought answer ending in "The answer is
(X)" and extracts the letter (for chat models and servers without logprobs); its
metric is `acc`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from evalmap.backends.base import Generation, LogLikelihood, LoglikelihoodRequest, Request, Response
from evalmap.catalog.schema import Dataset
from evalmap.errors import EvalmapError
from evalmap.metrics.answers import extract_choice_letter
from evalmap.metrics.stats import Score
from evalmap.tasks.base import Item, SampleResult, TaskConfig, deterministic_subset, prompt_hash, seeded_rng
from evalmap.tasks.data import DataSource, LazyRecords, Record
from evalmap.tasks.kinds.common import SpecBase, generation, mean_scores, subgroup_scores


def _no_description(record: Record) -> str:
    return ""


@dataclass(frozen=True)
class MultipleChoiceSpec(SpecBase):
    """A log-likelihood multiple-choice dataset, in lm-eval's terms.

    `text` is doc_to_text, `choices` doc_to_choice, `gold` doc_to_target (an index);
    `labels` names the options for reports (letters), `description` is the text put
    once before the exemplars. Few-shot exemplars come from `fewshot_source` (None:
    the evaluation split itself, without the item), restricted to the item's `group`
    when one is given (mmlu: its subject), picked by `sampler` ("first_n" in file
    order, or "random" seeded by (seed, dataset, item id)).
    """

    dataset_id: str
    source: DataSource
    text: Callable[[Record], str]
    choices: Callable[[Record], list[str]]
    gold: Callable[[Record], int]
    labels: Callable[[Record], list[str]] | None = None
    description: Callable[[Record], str] = _no_description
    fewshot_source: DataSource | None = None
    group: Callable[[Record], str] | None = None
    sampler: Literal["first_n", "random"] = "random"
    default_fewshot: int = 0
    metrics: tuple[str, ...] = ("acc", "acc_norm")
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    # Partial scoring (winogrande): `choices` are per-option contexts, all scored on `continuation`.
    continuation: Callable[[Record], str] | None = None
    # Custom scores from the per-choice log-likelihoods (truthfulqa mc1/mc2); None: acc / acc_norm.
    scorer: Callable[[Record, list[float]], dict[str, float]] | None = None
    # Generative mode: the question and the option texts shown as (A) (B) ...; None: no generative mode.
    question: Callable[[Record], str] | None = None
    options: Callable[[Record], list[str]] | None = None
    default_mode: Literal["loglikelihood", "generate"] = "loglikelihood"
    subgroup: str | None = None  # per-group scores (mmlu: "subject") from `group`
    headline: str | None = None  # the metric a group average uses (None: the first)

    def headline_metric(self, mode: str | None = None) -> str | None:
        """`acc` in generate mode (its only metric), else the headline (None: the first metric)."""
        return "acc" if (mode or self.default_mode) == "generate" else super().headline_metric()

    def build(self, dataset: Dataset, config: TaskConfig) -> MultipleChoiceTask:
        return MultipleChoiceTask(self, dataset, config)


@dataclass
class MultipleChoiceTask:
    spec: MultipleChoiceSpec
    dataset: Dataset
    config: TaskConfig
    dataset_id: str = field(init=False)
    _records: LazyRecords = field(init=False, repr=False)
    _fewshot: LazyRecords | None = field(init=False, repr=False)
    _pools: dict[str, list[Record]] | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.dataset_id = self.dataset.id
        if self.mode not in ("loglikelihood", "generate"):
            raise EvalmapError(f"--mode must be loglikelihood or generate (got {self.mode}).")
        if self.mode == "generate" and (self.spec.question is None or self.spec.options is None):
            raise EvalmapError(f"{self.dataset_id} is scored by log-likelihood only; drop --mode {self.mode}.")
        if self.num_fewshot < 0:
            raise EvalmapError(f"--num-fewshot must be 0 or more (got {self.num_fewshot}).")
        self._records = LazyRecords(self.dataset, self.config.data_dir, self.spec.source)
        fs = self.spec.fewshot_source
        self._fewshot = LazyRecords(self.dataset, self.config.data_dir, fs) if fs else None

    @property
    def mode(self) -> str:
        return self.config.mode or self.spec.default_mode

    @property
    def num_fewshot(self) -> int:
        n = self.config.num_fewshot
        return self.spec.default_fewshot if n is None else n

    @property
    def chat(self) -> bool:
        """Chat template: generative mode only (log-likelihoods score the plain prompt, as lm-eval by default)."""
        return self.mode == "generate" and bool(self.config.chat)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return ("acc",) if self.mode == "generate" else self.spec.metrics

    def items(self, limit: int | None = None, seed: int = 1234) -> list[Item]:
        all_items = [Item(id=r["id"], data=r) for r in self._records.get()]
        return deterministic_subset(all_items, limit, seed)

    # -- prompts -----------------------------------------------------------------

    def _pool(self, group: str) -> list[Record]:
        if self._pools is None:
            with self._lock:
                if self._pools is None:
                    source = self._fewshot.get() if self._fewshot else self._records.get()
                    pools: dict[str, list[Record]] = {}
                    for rec in source:
                        key = self.spec.group(rec) if self.spec.group else ""
                        pools.setdefault(key, []).append(rec)
                    self._pools = pools
        return self._pools.get(group, [])

    def exemplars(self, item: Item) -> list[Record]:
        """The item's few-shot exemplars: deterministic for a (seed, item id)."""
        k = self.num_fewshot
        if k == 0:
            return []
        spec = self.spec
        pool = self._pool(spec.group(item.data) if spec.group else "")
        if spec.fewshot_source is None:  # drawn from the evaluation split: never the item itself
            pool = [r for r in pool if r["id"] != item.id]
        if k > len(pool):
            raise EvalmapError(
                f"{self.dataset_id} has only {len(pool)} few-shot exemplars for item {item.id}; "
                f"use --num-fewshot {len(pool)} or less."
            )
        if spec.sampler == "first_n":
            return pool[:k]
        return seeded_rng(self.config.seed, self.dataset_id, item.id).sample(pool, k)

    def shot(self, record: Record) -> str:
        """One exemplar with its answer, as lm-eval writes it (partial scoring: the gold context + continuation)."""
        spec = self.spec
        gold = spec.choices(record)[spec.gold(record)]
        if spec.continuation is not None:
            return gold + spec.target_delimiter + spec.continuation(record)
        return spec.text(record) + spec.target_delimiter + gold

    def context(self, item: Item) -> str:
        """description + exemplars with their answers + the question (lm-eval's context).

        Under partial scoring this is the shared prefix; each option's context is prefix + option.
        """
        spec = self.spec
        shots = [self.shot(ex) + spec.fewshot_delimiter for ex in self.exemplars(item)]
        question = "" if spec.continuation is not None else spec.text(item.data)
        return spec.description(item.data) + "".join(shots) + question

    def requests(self, item: Item) -> list[Request]:
        if self.mode == "generate":
            return self.generate_requests(item)
        spec, ctx = self.spec, self.context(item)
        if spec.continuation is not None:
            cont = spec.target_delimiter + spec.continuation(item.data)
            return [LoglikelihoodRequest(context=ctx + option, continuation=cont) for option in spec.choices(item.data)]
        return [
            LoglikelihoodRequest(context=ctx, continuation=spec.target_delimiter + choice)
            for choice in spec.choices(item.data)
        ]

    # -- generative mode ---------------------------------------------------------

    def gen_question(self, record: Record) -> str:
        spec = self.spec
        assert spec.question is not None and spec.options is not None
        lines = [f"Question: {spec.question(record).strip()}", "Options:"]
        lines += [f"({_GEN_LETTERS[i]}) {opt}" for i, opt in enumerate(spec.options(record))]
        return "\n".join(lines) + "\nAnswer:"

    def gen_answer(self, record: Record) -> str:
        return f"The answer is ({_GEN_LETTERS[self.spec.gold(record)]})."

    def prompt(self, item: Item) -> str:
        """Generative prompt: the CoT instruction, exemplars answered directly, the question, "Let's think"."""
        shots = [
            self.gen_question(ex) + " " + self.gen_answer(ex) + self.spec.fewshot_delimiter
            for ex in self.exemplars(item)
        ]
        return GEN_INSTRUCTION + "".join(shots) + self.gen_question(item.data) + " " + GEN_COT_CUE

    def messages(self, item: Item) -> tuple[tuple[str, str], ...]:
        turns: list[tuple[str, str]] = []
        for i, ex in enumerate(self.exemplars(item)):
            turns.append(("user", (GEN_INSTRUCTION if i == 0 else "") + self.gen_question(ex)))
            turns.append(("assistant", self.gen_answer(ex)))
        first = not turns
        turns.append(("user", (GEN_INSTRUCTION if first else "") + self.gen_question(item.data)))
        return tuple(turns)

    def generate_requests(self, item: Item) -> list[Request]:
        body = dict(messages=self.messages(item), chat=True) if self.chat else dict(prompt=self.prompt(item))
        return [generation(self.config, GEN_MAX_TOKENS, **body, stop=("Question:", "</s>", "<|im_end|>"))]

    def score_generation(self, item: Item, responses: list[Response]) -> SampleResult:
        spec = self.spec
        assert spec.options is not None
        n = len(spec.options(item.data))
        letters = "".join(_GEN_LETTERS[:n])
        text = responses[0].text if responses and isinstance(responses[0], Generation) else ""
        letter = extract_choice_letter(text, letters)
        gold = _GEN_LETTERS[spec.gold(item.data)]
        details: dict = {"mode": "generate"}
        if spec.subgroup and spec.group:
            details["groups"] = {spec.subgroup: spec.group(item.data)}
        return SampleResult(metrics={"acc": float(letter == gold)}, extracted=letter, target=gold, details=details)

    # -- scoring -----------------------------------------------------------------

    def score(self, item: Item, responses: list[Response]) -> SampleResult:
        if self.mode == "generate":
            return self.score_generation(item, responses)
        spec = self.spec
        choices = spec.choices(item.data)
        if len(responses) != len(choices):
            raise ValueError(f"{self.dataset_id} item {item.id}: {len(choices)} choices but {len(responses)} responses")
        lls = [r.logprob if isinstance(r, LogLikelihood) else float("-inf") for r in responses]
        details: dict = {
            "logprobs": lls,
            "is_greedy": [bool(getattr(r, "is_greedy", False)) for r in responses],
            "choices": [str(c) for c in choices],  # the report's sample view shows them beside their log-likelihoods
        }
        if spec.subgroup and spec.group:
            details["groups"] = {spec.subgroup: spec.group(item.data)}
        if spec.scorer is not None:
            values = spec.scorer(item.data, lls)
            return SampleResult(metrics={m: values[m] for m in spec.metrics}, details=details)
        gold = spec.gold(item.data)
        pred = argmax(lls)
        # Partial scoring normalises by the shared continuation, so acc_norm = acc there.
        lengths = [len(c) for c in choices] if spec.continuation is None else [1] * len(choices)
        pred_norm = argmax([ll / max(n, 1) for ll, n in zip(lls, lengths, strict=True)])
        values = {"acc": float(pred == gold), "acc_norm": float(pred_norm == gold)}
        labels = spec.labels(item.data) if spec.labels else None
        name = (lambda i: labels[i]) if labels else (lambda i: i)
        details.update({"choice_chars": lengths, "pred": pred, "pred_norm": pred_norm, "gold": gold})
        return SampleResult(
            metrics={m: values[m] for m in spec.metrics}, extracted=name(pred), target=name(gold), details=details
        )

    def aggregate(self, samples: list[SampleResult]) -> list[Score]:
        """Each metric over all samples (for mmlu the micro average, lm-eval's number), then per group
        (mmlu: per subject) with the macro average over groups and its pooled stderr."""
        names = self.metric_names
        scores = mean_scores(samples, names)
        if self.spec.subgroup:
            for metric in names:
                scores += subgroup_scores(samples, metric, self.spec.subgroup)
        return scores

    def prompt_hash(self) -> str:
        return prompt_hash(self)


_GEN_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
GEN_INSTRUCTION = (
    "Answer the following multiple choice question. Think step by step, then finish with "
    '"The answer is (X)" where X is the letter of the correct option.\n\n'
)
GEN_COT_CUE = "Let's think step by step."
GEN_MAX_TOKENS = 512


def argmax(values: list[float]) -> int:
    """Index of the first maximum (np.argmax's tie rule); NaN never wins."""
    best, best_i = float("-inf"), 0
    for i, v in enumerate(values):
        if v > best:
            best, best_i = v, i
    return best_i
