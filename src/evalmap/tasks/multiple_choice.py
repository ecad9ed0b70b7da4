"""Multiple-choice datasets scored by log-likelihood, exactly as lm-evaluation-harness does.

For every option the model is asked log P(" " + option | context); `acc` takes the
argmax of the summed log-probabilities, `acc_norm` the argmax after dividing each by
the option's length in characters (lm-eval's `completion_len`, measured on the option
text without the leading space). Few-shot exemplars (`num_fewshot`, default 0 as in
lm-eval) are joined with "\\n\\n" in the same format with the answer filled in.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from evalmap.backends.base import LogLikelihood, LoglikelihoodRequest, Request, Response
from evalmap.catalog.schema import Dataset
from evalmap.errors import EvalmapError
from evalmap.metrics.stats import Score
from evalmap.tasks.base import Item, SampleResult, TaskConfig, deterministic_subset, seeded_rng
from evalmap.tasks.data import DataSource, LazyRecords, Record, mean_scores, read_file, settings_hash


def _no_description(record: Record) -> str:
    return ""


@dataclass(frozen=True)
class MultipleChoiceSpec:
    """A log-likelihood multiple-choice dataset, in lm-eval's terms.

    `text` is doc_to_text, `choices` doc_to_choice, `gold` doc_to_target (an index);
    `labels` names the options for reports (letters), `description` is the text put
    once before the exemplars. Few-shot exemplars come from `fewshot_source` (None:
    the evaluation split itself, without the item), restricted to the item's `group`
    when one is given (mmlu: its subject), picked by `sampler` ("first_n" in file
    order, or "random" seeded by (seed, dataset, item id)). `template` is the prompt
    format in words, hashed into `prompt_hash`.
    """

    dataset_id: str
    source: DataSource
    template: str
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
        if self.config.mode not in (None, "loglikelihood"):
            raise EvalmapError(f"{self.dataset_id} is scored by log-likelihood only; drop --mode {self.config.mode}.")
        if self.num_fewshot < 0:
            raise EvalmapError(f"--num-fewshot must be 0 or more (got {self.num_fewshot}).")
        self._records = LazyRecords(self.dataset, self.config.data_dir, self.spec.source)
        fs = self.spec.fewshot_source
        self._fewshot = LazyRecords(self.dataset, self.config.data_dir, fs) if fs else None

    @property
    def num_fewshot(self) -> int:
        n = self.config.num_fewshot
        return self.spec.default_fewshot if n is None else n

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

    def context(self, item: Item) -> str:
        """description + exemplars with their answers + the question (lm-eval's context)."""
        spec = self.spec
        shots = [
            spec.text(ex) + spec.target_delimiter + spec.choices(ex)[spec.gold(ex)] + spec.fewshot_delimiter
            for ex in self.exemplars(item)
        ]
        return spec.description(item.data) + "".join(shots) + spec.text(item.data)

    def requests(self, item: Item) -> list[Request]:
        ctx = self.context(item)
        return [
            LoglikelihoodRequest(context=ctx, continuation=self.spec.target_delimiter + choice)
            for choice in self.spec.choices(item.data)
        ]

    # -- scoring -----------------------------------------------------------------

    def score(self, item: Item, responses: list[Response]) -> SampleResult:
        spec = self.spec
        choices = spec.choices(item.data)
        if len(responses) != len(choices):
            raise ValueError(f"{self.dataset_id} item {item.id}: {len(choices)} choices but {len(responses)} responses")
        lls = [r.logprob if isinstance(r, LogLikelihood) else float("-inf") for r in responses]
        gold = spec.gold(item.data)
        pred = _argmax(lls)
        pred_norm = _argmax([ll / max(len(c), 1) for ll, c in zip(lls, choices, strict=True)])
        values = {"acc": float(pred == gold), "acc_norm": float(pred_norm == gold)}
        labels = spec.labels(item.data) if spec.labels else None
        name = (lambda i: labels[i]) if labels else (lambda i: i)
        return SampleResult(
            metrics={m: values[m] for m in spec.metrics},
            extracted=name(pred),
            target=name(gold),
            details={
                "logprobs": lls,
                "is_greedy": [bool(getattr(r, "is_greedy", False)) for r in responses],
                "choice_chars": [len(c) for c in choices],
                "pred": pred,
                "pred_norm": pred_norm,
                "gold": gold,
            },
        )

    def aggregate(self, samples: list[SampleResult]) -> list[Score]:
        return mean_scores(samples, self.spec.metrics)

    def prompt_hash(self) -> str:
        spec = self.spec
        return settings_hash(
            {
                "dataset": self.dataset_id,
                "template": spec.template,
                "num_fewshot": self.num_fewshot,
                "sampler": spec.sampler,
                "fewshot_source": spec.fewshot_source.describe() if spec.fewshot_source else "eval split",
                "seed": self.config.seed if spec.sampler == "random" and self.num_fewshot else None,
                "target_delimiter": spec.target_delimiter,
                "fewshot_delimiter": spec.fewshot_delimiter,
                "metrics": list(spec.metrics),
                "normalisation": "chars of option text",
            }
        )


def _argmax(values: list[float]) -> int:
    """Index of the first maximum (np.argmax's tie rule); NaN never wins."""
    best, best_i = float("-inf"), 0
    for i, v in enumerate(values):
        if v > best:
            best, best_i = v, i
    return best_i


# -- arc_challenge -------------------------------------------------------------------

_NUM_TO_LETTER = {"1": "A", "2": "B", "3": "C", "4": "D", "5": "E"}


def _arc_records(records: list[Record], origin: str) -> list[Record]:
    """Local AI2 files (question.stem, choices[{text,label}]) and the hub (question,
    choices{text,label}) to the hub shape, with numeric labels '1'-'5' mapped to letters."""
    out = []
    for r in records:
        if isinstance(r["question"], dict):
            question = r["question"]["stem"]
            texts = [c["text"] for c in r["question"]["choices"]]
            labels = [c["label"] for c in r["question"]["choices"]]
        else:
            question = r["question"]
            texts, labels = list(r["choices"]["text"]), list(r["choices"]["label"])
        out.append(
            {
                "id": r["id"],
                "question": question,
                "choices": {"text": texts, "label": [_NUM_TO_LETTER.get(x, x) for x in labels]},
                "answerKey": _NUM_TO_LETTER.get(r["answerKey"], r["answerKey"]),
            }
        )
    return out


ARC_CHALLENGE = MultipleChoiceSpec(
    dataset_id="arc_challenge",
    source=DataSource(name="test", local_files=("ARC-Challenge-Test.jsonl",), normalize=_arc_records),
    fewshot_source=DataSource(
        name="validation",
        local_files=("ARC-Challenge-Dev.jsonl",),
        hub_split="validation",
        normalize=_arc_records,
    ),
    template="Question: {question}\nAnswer: + ' {choice}'",
    text=lambda r: f"Question: {r['question']}\nAnswer:",
    choices=lambda r: list(r["choices"]["text"]),
    gold=lambda r: r["choices"]["label"].index(r["answerKey"]),
    labels=lambda r: list(r["choices"]["label"]),
)


# -- hellaswag -----------------------------------------------------------------------


def hellaswag_preprocess(text: str) -> str:
    """lm-eval's hellaswag `preprocess`: drop WikiHow bracket tags and double spaces."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _hellaswag_records(records: list[Record], origin: str) -> list[Record]:
    """The local export is already preprocessed (idx, query, endings, label); hub rows get
    lm-eval's preprocessing: activity_label + ": " + ctx_a + " " + ctx_b.capitalize()."""
    if origin == "local":
        return [
            {"id": str(r["idx"]), "query": r["query"], "endings": list(r["endings"]), "label": int(r["label"])}
            for r in records
        ]
    out = []
    for i, r in enumerate(records):
        ctx = r["ctx_a"] + " " + r["ctx_b"].capitalize()
        out.append(
            {
                "id": str(i),
                "query": hellaswag_preprocess(r["activity_label"] + ": " + ctx),
                "endings": [hellaswag_preprocess(e) for e in r["endings"]],
                "label": int(r["label"]),
            }
        )
    return out


HELLASWAG = MultipleChoiceSpec(
    dataset_id="hellaswag",
    source=DataSource(name="validation", local_files=("hellaswag_val.jsonl.gz",), normalize=_hellaswag_records),
    fewshot_source=None,  # no local train split: exemplars from validation, never the item itself
    template="{query} + ' {ending}'",
    text=lambda r: r["query"],
    choices=lambda r: list(r["endings"]),
    gold=lambda r: int(r["label"]),
)


# -- mmlu ----------------------------------------------------------------------------

MMLU_SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge",
    "college_biology", "college_chemistry", "college_computer_science", "college_mathematics",
    "college_medicine", "college_physics", "computer_security", "conceptual_physics", "econometrics",
    "electrical_engineering", "elementary_mathematics", "formal_logic", "global_facts",
    "high_school_biology", "high_school_chemistry", "high_school_computer_science",
    "high_school_european_history", "high_school_geography", "high_school_government_and_politics",
    "high_school_macroeconomics", "high_school_mathematics", "high_school_microeconomics",
    "high_school_physics", "high_school_psychology", "high_school_statistics",
    "high_school_us_history", "high_school_world_history", "human_aging", "human_sexuality",
    "international_law", "jurisprudence", "logical_fallacies", "machine_learning", "management",
    "marketing", "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition",
    "philosophy", "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy",
    "virology", "world_religions",
)  # fmt: skip
_LETTERS = ("A", "B", "C", "D")


def _mmlu_records(records: list[Record], origin: str) -> list[Record]:
    """cais/mmlu rows (subject, question, choices, answer 0-3) with ids `<subject>/<index in subject>`."""
    seen: dict[str, int] = {}
    out = []
    for r in records:
        subject = r["subject"]
        n = seen.get(subject, 0)
        seen[subject] = n + 1
        answer = r["answer"]
        answer = _LETTERS.index(answer) if isinstance(answer, str) and answer in _LETTERS else int(answer)
        out.append(
            {
                "id": f"{subject}/{n}",
                "subject": subject,
                "question": r["question"],
                "choices": list(r["choices"]),
                "answer": answer,
            }
        )
    return out


def _read_mmlu_dev(paths: list) -> list[Record]:
    """data/dev/<subject>_dev.csv (no header: question, A, B, C, D, answer letter) as cais/mmlu rows."""
    rows = []
    for path in paths:
        subject = path.name.removesuffix("_dev.csv")
        for r in read_file(path, ("question", "A", "B", "C", "D", "answer")):
            rows.append(
                {
                    "subject": subject,
                    "question": r["question"],
                    "choices": [r["A"], r["B"], r["C"], r["D"]],
                    "answer": r["answer"].strip(),
                }
            )
    return rows


def _mmlu_description(record: Record) -> str:
    subject = record["subject"].replace("_", " ")
    return f"The following are multiple choice questions (with answers) about {subject}.\n\n"


MMLU = MultipleChoiceSpec(
    dataset_id="mmlu",
    source=DataSource(name="test", local_files=("mmlu_test.jsonl.gz",), normalize=_mmlu_records),
    fewshot_source=DataSource(
        name="dev",
        local_files=tuple(f"data/dev/{s}_dev.csv" for s in MMLU_SUBJECTS),
        reader=_read_mmlu_dev,
        hub_split="dev",
        normalize=_mmlu_records,
    ),
    template=(
        "The following are multiple choice questions (with answers) about {subject}.\n\n"
        "{question}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer: + ' {letter}'"
    ),
    text=lambda r: (
        f"{r['question'].strip()}\nA. {r['choices'][0]}\nB. {r['choices'][1]}\n"
        f"C. {r['choices'][2]}\nD. {r['choices'][3]}\nAnswer:"
    ),
    choices=lambda r: list(_LETTERS),
    gold=lambda r: int(r["answer"]),
    labels=lambda r: list(_LETTERS),
    description=_mmlu_description,
    group=lambda r: r["subject"],
    sampler="first_n",
    metrics=("acc",),
)

SPECS: dict[str, MultipleChoiceSpec] = {
    "arc_challenge": ARC_CHALLENGE,
    "hellaswag": HELLASWAG,
    "mmlu": MMLU,
}
