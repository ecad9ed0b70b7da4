"""Biomedical question answering: PubMedQA (the default, as lm-eval's `pubmedqa` asks it) and BioASQ Task B.

Default variant `pubmedqa`: PubMedQA PQA-L's official 500-item test set. `--mode loglikelihood`
(default, lm-eval's way) asks log P(" yes" | " no" | " maybe" | "Abstract: {contexts}\\nQuestion:
{question}\\nAnswer:") and takes the argmax; `--mode generate` asks the model to answer and extracts
yes / no / maybe from its text. Metrics `pubmedqa_accuracy` and `pubmedqa_macro_f1` (3 classes,
bootstrap CI); every sample records the variant, so these are PubMedQA numbers, never BioASQ ones.

Variant `bioasq`: the official BioASQ Task B JSON (`{"questions": [{"id", "type", "body", "snippets",
"exact_answer", "ideal_answer"}]}`), every `*.json` / `*.json.gz` file under `<data-dir>/bioasq/`
(registration at bioasq.org is needed to download them). The question is asked with its snippets;
metrics are BioASQ's: yes/no accuracy and macro-F1 over yes/no, factoid strict / lenient accuracy and
MRR over up to 5 answers, list mean precision / recall / F1; summary questions are asked (the answer
is stored) but not scored automatically, and their count is reported as `bioasq_summary_not_scored`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalmap.backends.base import Generation, GenerationRequest, LogLikelihood, LoglikelihoodRequest, Request, Response
from evalmap.catalog.schema import Dataset, LocalFiles
from evalmap.errors import DataMissingError, EvalmapError
from evalmap.metrics.aggregate import bootstrap_statistic
from evalmap.metrics.stats import Score, empty_score
from evalmap.tasks.base import Item, SampleResult, TaskConfig, deterministic_subset, prompt_hash
from evalmap.tasks.data import DataSource, LazyRecords, Record, load_records, resolve_data_dir
from evalmap.tasks.kinds.common import SpecBase, generation, mean_scores, subgroup_scores

MODES = ("loglikelihood", "generate")
PUBMEDQA_CLASSES = ("yes", "no", "maybe")
YESNO_CLASSES = ("yes", "no")

PUBMEDQA_METRICS = ("pubmedqa_accuracy", "pubmedqa_macro_f1")
BIOASQ_METRICS = (
    "bioasq_yesno_accuracy",
    "bioasq_yesno_macro_f1",
    "bioasq_factoid_strict_accuracy",
    "bioasq_factoid_lenient_accuracy",
    "bioasq_factoid_mrr",
    "bioasq_list_precision",
    "bioasq_list_recall",
    "bioasq_list_f1",
    "bioasq_summary_not_scored",
)

GEN_INSTRUCTION = "Answer the research question about the abstract with yes, no or maybe.\n\n"
MAX_SNIPPETS = 10  # BioASQ questions carry up to dozens of snippets; the first 10 keep the prompt short
MAX_FACTOID = 5
MAX_LIST = 100


def pubmedqa_text(record: Record) -> str:
    """lm-eval's pubmedqa doc_to_text (preprocess_pubmedqa.py)."""
    return "Abstract: {}\nQuestion: {}\nAnswer:".format("\n".join(record["contexts"]), record["question"])


# -- extraction ---------------------------------------------------------------------------------------

_EXPLICIT = re.compile(r"answer\s*(?:is|:)?\s*[:\-]?\s*[*\"'(\[]*\s*(yes|no|maybe)\b", re.IGNORECASE)
_LEADING = re.compile(r"^[\s*\"'(\[:>#-]*(yes|no|maybe)\b", re.IGNORECASE)
_ANYWHERE = re.compile(r"\b(yes|no|maybe)\b", re.IGNORECASE)


def extract_decision(text: str, classes: Sequence[str] = PUBMEDQA_CLASSES) -> str | None:
    """yes / no / maybe from free text: the last "answer is X" / "Answer: X", else a leading word,
    else the first of the words anywhere; None when none of `classes` is there."""
    if not text:
        return None
    for pattern in (_EXPLICIT, _LEADING, _ANYWHERE):
        found = [m.group(1).lower() for m in pattern.finditer(text) if m.group(1).lower() in classes]
        if found:
            return found[-1] if pattern is _EXPLICIT else found[0]
    return None


def parse_answer_list(text: str, limit: int) -> list[str]:
    """Answers from a model's text: a JSON list of strings (or of lists) anywhere in it, else one per line
    (bullets, numbers and a leading "Answer:" stripped, commas/semicolons split a single line);
    deduplicated case-insensitively, in order, at most `limit`."""
    answers: list[str] = []
    text = text or ""
    start = text.find("[")
    while start != -1 and not answers:
        end = text.find("]", start)
        while end != -1:
            try:
                data = json.loads(text[start : end + 1])
            except json.JSONDecodeError:
                end = text.find("]", end + 1)
                continue
            if isinstance(data, list):
                for v in data:
                    v = v[0] if isinstance(v, list) and v else v
                    if isinstance(v, str | int | float) and str(v).strip():
                        answers.append(str(v).strip())
            break
        start = text.find("[", start + 1)
    if not answers:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) == 1:
            lines = re.split(r"[;,]", lines[0])
        for ln in lines:
            ln = re.sub(r"^\s*(?:answers?\s*:)?\s*(?:[-*\u2022]|\d+[.)])?\s*", "", ln, flags=re.IGNORECASE)
            ln = ln.strip().strip("\"'`").rstrip(".").strip()
            if ln:
                answers.append(ln)
    seen, out = set(), []
    for a in answers:
        key = normalize_answer(a)
        if key and key not in seen:
            seen.add(key)
            out.append(a)
    return out[:limit]


def normalize_answer(text: str) -> str:
    """Case-insensitive comparison key: lower case, surrounding punctuation and inner whitespace runs removed."""
    return " ".join(str(text).lower().strip().strip(".,;:!?\"'`()[]").split())


def gold_entities(exact: Any) -> list[list[str]]:
    """BioASQ exact answers as entities, each a list of synonyms: [["a", "a2"], ["b"]] as is, a flat
    ["a", "b"] as one entity per string (list questions; factoid calls `factoid_synonyms`), "a" as [["a"]]."""
    if isinstance(exact, str):
        return [[exact]]
    entities = []
    for e in exact or []:
        syns = [str(s) for s in e] if isinstance(e, list) else [str(e)]
        syns = [s for s in syns if normalize_answer(s)]
        if syns:
            entities.append(syns)
    return entities


def factoid_synonyms(exact: Any) -> set[str]:
    """Every acceptable answer of a factoid question (all synonyms of all its gold entities)."""
    return {normalize_answer(s) for e in gold_entities(exact) for s in e}


# -- metrics --------------------------------------------------------------------------------------------


def macro_f1(golds: Sequence[str], preds: Sequence[str | None], classes: Sequence[str] | None = None) -> float:
    """Macro-F1: the mean of per-class F1 (0 when a class has no true positives). `classes` None: the
    classes seen in gold or predictions, as sklearn's f1_score(average="macro") (PubMedQA's script);
    a prediction of None is wrong for every class."""
    labels = list(classes) if classes is not None else sorted({*golds, *(p for p in preds if p is not None)})
    f1s = []
    for c in labels:
        tp = sum(g == c and p == c for g, p in zip(golds, preds, strict=True))
        fp = sum(g != c and p == c for g, p in zip(golds, preds, strict=True))
        fn = sum(g == c and p != c for g, p in zip(golds, preds, strict=True))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return math.fsum(f1s) / len(f1s) if f1s else float("nan")


def macro_f1_score(
    name: str, golds: Sequence[str], preds: Sequence[str | None], classes: Sequence[str] | None = None, seed: int = 0
) -> Score:
    """Macro-F1 with a percentile-bootstrap 95% CI over items (2000 resamples) and the bootstrap sd as stderr."""
    n = len(golds)
    if n == 0:
        return empty_score(name, "bootstrap")
    labels = list(classes) if classes is not None else sorted({*golds, *(p for p in preds if p is not None)})
    value = macro_f1(golds, preds, labels)
    k = len(labels)
    code = {c: i for i, c in enumerate(labels)}
    pairs = np.array([code.get(g, k) * (k + 1) + code.get(p, k) for g, p in zip(golds, preds, strict=True)], float)

    def stat(x: np.ndarray, axis: int = 1) -> np.ndarray:
        g, p = np.floor_divide(x, k + 1), np.mod(x, k + 1)
        f1 = []
        for c in range(k):
            tp = ((g == c) & (p == c)).sum(axis=axis)
            wrong = ((g == c) != (p == c)).sum(axis=axis)
            f1.append(np.where(tp > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0))
        return np.mean(f1, axis=0)

    return bootstrap_statistic(name, pairs, stat, value, seed=seed)


def count_score(name: str, count: int) -> Score:
    """A count shown with the scores (not a metric): exact, so stderr 0 and the CI the count itself."""
    return Score(name, float(count), 0.0, float(count), float(count), count, "count (not scored)")


# -- the kind -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BiomedicalQASpec(SpecBase):
    """PubMedQA by default; the BioASQ Task B variant read from `<data-dir>/<bioasq_folder>/*.json`."""

    dataset_id: str
    source: DataSource  # the PubMedQA split
    bioasq_source: DataSource  # reader + normaliser of BioASQ Task B files
    default_variant: str = "pubmedqa"
    bioasq_folder: str = "bioasq"
    metrics: tuple[str, ...] = PUBMEDQA_METRICS
    bioasq_metrics: tuple[str, ...] = BIOASQ_METRICS
    gen_max_tokens: int = 64
    list_max_tokens: int = 256
    headline: str | None = "pubmedqa_accuracy"
    variants: tuple[str, ...] = ("bioasq",)

    def build(self, dataset: Dataset, config: TaskConfig) -> BiomedicalQATask:
        return BiomedicalQATask(self, dataset, config)


@dataclass
class BiomedicalQATask:
    spec: BiomedicalQASpec
    dataset: Dataset
    config: TaskConfig
    dataset_id: str = field(init=False)
    variant: str = field(init=False)
    _records: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.dataset_id = self.dataset.id
        name = self.config.variant
        if name in (None, "default", self.spec.default_variant):
            self.variant = self.spec.default_variant
        elif name in self.spec.variants:
            self.variant = name
        else:
            known = ", ".join([self.spec.default_variant, *self.spec.variants])
            raise EvalmapError(f"{self.dataset_id} has no variant {name!r} (variants with a task: {known}).")
        if self.mode not in MODES:
            raise EvalmapError(f"--mode must be loglikelihood or generate for {self.dataset_id} (got {self.mode}).")
        if self.is_bioasq:
            self._records = _BioASQRecords(self)
        else:
            self._records = LazyRecords(self.dataset, self.config.data_dir, self.spec.source)

    @property
    def is_bioasq(self) -> bool:
        return self.variant != self.spec.default_variant

    @property
    def mode(self) -> str:
        """PubMedQA: log-likelihood by default (lm-eval); BioASQ: generate by default (factoid and list
        answers are generated in either mode; `--mode loglikelihood` scores its yes/no questions by
        log P(" yes") vs log P(" no"))."""
        return self.config.mode or ("generate" if self.is_bioasq else "loglikelihood")

    @property
    def metric_names(self) -> tuple[str, ...]:
        return self.spec.bioasq_metrics if self.is_bioasq else self.spec.metrics

    def items(self, limit: int | None = None, seed: int = 1234) -> list[Item]:
        all_items = [Item(id=str(r["id"]), data=r) for r in self._records.get()]
        return deterministic_subset(all_items, limit, seed)

    # -- requests --------------------------------------------------------------------------------------

    def _generate(self, prompt: str, max_tokens: int, stop: tuple[str, ...]) -> GenerationRequest:
        cfg = self.config
        body: dict[str, Any] = (
            dict(messages=(("user", prompt),), chat=True) if cfg.chat else dict(prompt=prompt)
        )
        return generation(cfg, max_tokens, **body, stop=() if cfg.chat else stop)

    def bioasq_prompt(self, record: Record) -> str:
        snippets = "\n".join(f"- {s}" for s in record["snippets"][:MAX_SNIPPETS])
        head = f"Snippets:\n{snippets}\n" if snippets else ""
        kind = record["type"]
        ask = {
            "yesno": "Answer with yes or no.",
            "factoid": f"Give up to {MAX_FACTOID} candidate answers (short entity names), most likely first, "
            'as a JSON list of strings, e.g. ["answer 1", "answer 2"].',
            "list": 'List every answer (short entity names) as a JSON list of strings, e.g. ["answer 1", "answer 2"].',
            "summary": "Answer in a few sentences.",
        }[kind]
        return f"{head}Question: {record['body']}\n{ask}\nAnswer:"

    def requests(self, item: Item) -> list[Request]:
        r = item.data
        if not self.is_bioasq:
            if self.mode == "loglikelihood":
                ctx = pubmedqa_text(r)
                return [LoglikelihoodRequest(context=ctx, continuation=" " + c) for c in PUBMEDQA_CLASSES]
            return [self._generate(GEN_INSTRUCTION + pubmedqa_text(r), self.spec.gen_max_tokens, _STOP)]
        prompt = self.bioasq_prompt(r)
        if r["type"] == "yesno":
            if self.mode == "loglikelihood":
                return [LoglikelihoodRequest(context=prompt, continuation=" " + c) for c in YESNO_CLASSES]
            return [self._generate(prompt, self.spec.gen_max_tokens, _STOP)]
        return [self._generate(prompt, self.spec.list_max_tokens, _STOP)]

    # -- scoring -------------------------------------------------------------------------------------------

    def _decision(self, responses: list[Response], classes: Sequence[str]) -> tuple[str | None, dict]:
        if responses and all(isinstance(x, LogLikelihood) for x in responses):
            lls = [x.logprob for x in responses]  # type: ignore[union-attr]
            best = max(range(len(lls)), key=lambda i: (lls[i], -i))
            return classes[best], {"logprobs": lls}
        text = _text(responses)
        return extract_decision(text, classes), {"output": text}

    def score(self, item: Item, responses: list[Response]) -> SampleResult:
        r = item.data
        if not self.is_bioasq:
            pred, extra = self._decision(responses, PUBMEDQA_CLASSES)
            gold = r["label"]
            details = {
                "variant": self.variant, "benchmark": "PubMedQA PQA-L test (BioASQ stand-in)", "mode": self.mode,
                "gold": gold, "pred": pred, "groups": {"gold": gold}, **extra,
            }  # fmt: skip
            metrics = {"pubmedqa_accuracy": float(pred == gold)}
            return SampleResult(metrics, extracted=pred, target=gold, details=details)
        kind = r["type"]
        details: dict[str, Any] = {"variant": self.variant, "benchmark": "BioASQ Task B", "type": kind}
        details["mode"] = self.mode
        if kind == "yesno":
            pred, extra = self._decision(responses, YESNO_CLASSES)
            gold = str(r["exact_answer"] if isinstance(r["exact_answer"], str) else r["exact_answer"][0]).lower()
            details.update(gold=gold, pred=pred, **extra)
            return SampleResult({"bioasq_yesno_accuracy": float(pred == gold)}, pred, gold, details)
        text = _text(responses)
        details["output"] = text
        if kind == "factoid":
            answers = parse_answer_list(text, MAX_FACTOID)
            golds = factoid_synonyms(r["exact_answer"])
            rank = next((i + 1 for i, a in enumerate(answers) if normalize_answer(a) in golds), None)
            metrics = {
                "bioasq_factoid_strict_accuracy": float(rank == 1),
                "bioasq_factoid_lenient_accuracy": float(rank is not None),
                "bioasq_factoid_mrr": 1.0 / rank if rank else 0.0,
            }
            details["rank"] = rank
            return SampleResult(metrics, answers, sorted(golds), details)
        if kind == "list":
            answers = parse_answer_list(text, MAX_LIST)
            p, rc, f1 = list_prf(answers, gold_entities(r["exact_answer"]))
            metrics = {"bioasq_list_precision": p, "bioasq_list_recall": rc, "bioasq_list_f1": f1}
            return SampleResult(metrics, answers, gold_entities(r["exact_answer"]), details)
        details["scored"] = False
        details["why"] = "summary (ideal) answers are graded manually in BioASQ; not scored automatically"
        return SampleResult({}, text, r.get("ideal_answer"), details)

    def aggregate(self, samples: list[SampleResult]) -> list[Score]:
        if not self.is_bioasq:
            scored = [s for s in samples if "pubmedqa_accuracy" in s.metrics]
            golds = [s.details["gold"] for s in scored]
            preds = [s.details["pred"] for s in scored]
            return [
                *mean_scores(scored, ["pubmedqa_accuracy"]),
                macro_f1_score("pubmedqa_macro_f1", golds, preds, seed=self.config.seed),
                *subgroup_scores(scored, "pubmedqa_accuracy", "gold")[1:],  # accuracy per gold class (its recall)
            ]
        yesno = [s for s in samples if s.details.get("type") == "yesno"]
        summaries = sum(1 for s in samples if s.details.get("type") == "summary")
        return [
            *mean_scores(yesno, ["bioasq_yesno_accuracy"]),
            macro_f1_score(
                "bioasq_yesno_macro_f1", [s.details["gold"] for s in yesno], [s.details["pred"] for s in yesno],
                YESNO_CLASSES, seed=self.config.seed,
            ),  # fmt: skip
            *mean_scores(samples, self.spec.bioasq_metrics[2:8]),
            count_score("bioasq_summary_not_scored", summaries),
        ]

    def prompt_hash(self) -> str:
        return prompt_hash(self)


_STOP = ("\n\nAbstract:", "\nQuestion:", "\n\nSnippets:", "</s>", "<|im_end|>")


def _text(responses: list[Response]) -> str:
    return responses[0].text if responses and isinstance(responses[0], Generation) else ""


def list_prf(answers: Sequence[str], entities: list[list[str]]) -> tuple[float, float, float]:
    """BioASQ list measures for one question: a returned answer is correct when it matches a synonym of a
    gold entity (case-insensitively); precision = correct answers / answers, recall = gold entities found /
    gold entities; each entity counts once (a second answer naming an entity already found is wrong)."""
    keys = [{normalize_answer(s) for s in e} for e in entities]
    found: set[int] = set()
    correct = 0
    for a in answers:
        hit = next((i for i, k in enumerate(keys) if normalize_answer(a) in k and i not in found), None)
        if hit is not None:
            found.add(hit)
            correct += 1
    p = correct / len(answers) if answers else 0.0
    r = len(found) / len(keys) if keys else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f1


class _BioASQRecords:
    """The BioASQ variant's records: every *.json(.gz) under <data-dir>/bioasq/, read once."""

    def __init__(self, task: BiomedicalQATask):
        self.task = task
        self._records: list[Record] | None = None

    def files(self) -> list[Path]:
        root = resolve_data_dir(self.task.config.data_dir)
        folder = Path(root) / self.task.spec.bioasq_folder if root else None
        found = sorted(folder.glob("*.json")) + sorted(folder.glob("*.json.gz")) if folder and folder.is_dir() else []
        if not found:
            where = str(folder) if folder else f"<data-dir>/{self.task.spec.bioasq_folder}"
            raise DataMissingError(
                f"The bioasq variant reads BioASQ Task B JSON files from {where}/ and found none there: register "
                "at bioasq.org, download the Task B files (e.g. the golden files 12B1_golden.json to "
                f"12B4_golden.json of a test set, or the training file) into {where}/ and pass that --data-dir, "
                "or drop --variant bioasq to run the PubMedQA stand-in."
            )
        return found

    def get(self) -> list[Record]:
        if self._records is None:
            paths = self.files()
            folder = self.task.spec.bioasq_folder
            dataset = self.task.dataset.model_copy(
                update={"local": LocalFiles(folder=folder, files=[p.name for p in paths], format="mixed")}
            )
            source = self.task.spec.bioasq_source
            source = DataSource(
                name="bioasq", local_files=tuple(p.name for p in paths), reader=source.reader,
                normalize=source.normalize,
            )  # fmt: skip
            self._records = load_records(dataset, str(paths[0].parent.parent), source)
        return self._records

