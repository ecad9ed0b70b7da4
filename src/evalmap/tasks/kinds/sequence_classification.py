"""Binary sequence classification by prompting (Genomic Benchmarks: is this DNA a promoter? an enhancer?).

A dataset is a set of subsets (one binary task each, e.g. promoters and enhancers); the default run
asks all of them, `--variant <subset>` one. `--samples N` is split evenly over the subsets of the run
(the first `N % k` in subset order get one more), each share picked by `deterministic_subset`.

Every subset is asked as a yes/no question about the sequence, shown whole on one line:

    <instruction: what the sequence is and what yes / no mean>

    DNA sequence: ACGT...
    Question: Is this sequence a promoter? Answer yes or no.
    Answer:

Two modes (`--mode`, stored with the run; each sample's details carry the resolved mode):

- `generate` (default): the model writes an answer (at most 16 tokens unless --max-tokens) and
  `extract_label` reads yes / no from it (also "promoter" / "not a promoter" style answers). An answer
  with no label in it is wrong, and counted separately as `unextracted`.
- `loglikelihood`: log P(" yes" | prompt) against log P(" no" | prompt), the larger wins (ties: yes).

Few-shot (`--num-fewshot`, even: half yes, half no; default 0): exemplars are drawn per item (seeded by
the run's seed and the item id, order shuffled) from the hub's train split when it can be loaded, else
from a held-out slice of the local test file (`HOLDOUT_PER_CLASS` items of each class per subset,
chosen by a seed-free hash so every seed and every k scores the same items) that is then left out of
the scored items. Every sample records which (`fewshot_source`, `held_out`).

Sequences are never truncated: a prompt that does not fit the engine's context fails that request
(the engine's PromptTooLongError: the item is counted as failed, not scored), rather than being scored
on a cut sequence.

Metrics (each a Score with n, stderr and a 95% CI), overall over every scored item and per subset
("<metric>/subset:<name>"): `accuracy` (Wilson CI), `mcc` and `macro_f1` (percentile bootstrap over
items, 2000 resamples seeded by the run's seed; stderr = bootstrap sd), `unextracted` (fraction of
answers with no label); and the baselines beside them: `majority_baseline` (the accuracy of always
answering the majority label of the scored items), `chance_baseline` (0.5 accuracy, stderr
sqrt(0.25 / n): a coin flip's spread over n items) and `chance_baseline_mcc` (0 MCC, stderr 1 / sqrt(n):
random guessing's spread). For MCC and macro-F1 an unextracted answer counts as the wrong label.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from evalmap.backends.base import Generation, LogLikelihood, LoglikelihoodRequest, Request, Response
from evalmap.catalog.schema import Dataset
from evalmap.errors import EvalmapError
from evalmap.metrics.aggregate import bootstrap_statistic
from evalmap.metrics.stats import Z95, Score, empty_score, mean_score, wilson_interval
from evalmap.tasks.base import Item, SampleResult, TaskConfig, deterministic_subset, prompt_hash, seeded_rng
from evalmap.tasks.data import DataSource, LazyRecords, Record, load_records
from evalmap.tasks.kinds.common import SpecBase, generation

MODES = ("generate", "loglikelihood")
LABELS = ("no", "yes")  # label 0, label 1
METRICS = (
    "accuracy",
    "mcc",
    "macro_f1",
    "unextracted",
    "majority_baseline",
    "chance_baseline",
    "chance_baseline_mcc",
)
HOLDOUT_PER_CLASS = 8  # local fallback pool: items of each class per subset kept out of scoring
GEN_MAX_TOKENS = 16
BOOTSTRAP_ITERS = 2000


@dataclass(frozen=True)
class Subset:
    """One binary task: its split(s), the hub dataset it also lives in, and how it is asked.

    `aliases` are other names a `--variant` may use for it (the hub config name)."""

    name: str
    source: DataSource  # the scored (test) split
    hub_id: str
    instruction: str  # said once before the exemplars: what the sequence is, what yes / no mean
    question: str  # asked after each sequence
    positive: str  # the class word of label 1 ("promoter"), for free-text answers
    train: DataSource | None = None  # the hub's train split, the few-shot pool when reachable
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class SequenceClassificationSpec(SpecBase):
    dataset_id: str
    subsets: tuple[Subset, ...]
    default_fewshot: int = 0
    default_mode: str = "generate"
    headline: str | None = "accuracy"
    metrics: tuple[str, ...] = METRICS

    def build(self, dataset: Dataset, config: TaskConfig) -> SequenceClassificationTask:
        return SequenceClassificationTask(self, dataset, config)


@dataclass
class _Pool:
    """A subset's few-shot exemplars by label, where they came from, and the items held out for them."""

    by_label: dict[int, list[Record]]
    source: str
    held_out: frozenset[str] = frozenset()


@dataclass
class SequenceClassificationTask:
    spec: SequenceClassificationSpec
    dataset: Dataset
    config: TaskConfig
    dataset_id: str = field(init=False)
    subsets: tuple[Subset, ...] = field(init=False)
    _records: dict[str, LazyRecords] = field(init=False, repr=False)
    _pools: dict[str, _Pool] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.dataset_id = self.dataset.id
        if self.mode not in MODES:
            raise EvalmapError(f"--mode must be generate or loglikelihood for {self.dataset_id} (got {self.mode}).")
        k = self.num_fewshot
        if k < 0 or k % 2:
            raise EvalmapError(
                f"--num-fewshot must be an even number (half yes, half no exemplars) for {self.dataset_id} (got {k})."
            )
        if k > 2 * HOLDOUT_PER_CLASS:
            most = 2 * HOLDOUT_PER_CLASS
            raise EvalmapError(f"--num-fewshot must be {most} or less for {self.dataset_id} (got {k}).")
        self.subsets = self._chosen_subsets()
        self._records = {
            s.name: LazyRecords(self._hub_dataset(s), self.config.data_dir, s.source) for s in self.subsets
        }

    def _chosen_subsets(self) -> tuple[Subset, ...]:
        name = self.config.variant
        if name is None or name == "default":
            return self.spec.subsets
        for s in self.spec.subsets:
            if name == s.name or name in s.aliases:
                return (s,)
        known = ", ".join(s.name for s in self.spec.subsets)
        raise EvalmapError(f"{self.dataset_id} has no variant {name!r} (variants with a task: {known}).")

    def _hub_dataset(self, subset: Subset) -> Dataset:
        """The catalog record with the subset's own hub dataset, so a hub fallback loads the right data."""
        return self.dataset.model_copy(update={"source": self.dataset.source.model_copy(update={"id": subset.hub_id})})

    @property
    def mode(self) -> str:
        return self.config.mode or self.spec.default_mode

    @property
    def num_fewshot(self) -> int:
        n = self.config.num_fewshot
        return self.spec.default_fewshot if n is None else n

    @property
    def chat(self) -> bool:
        """Chat template: generate mode with --chat only (log-likelihoods score the plain prompt)."""
        return self.mode == "generate" and bool(self.config.chat)

    @property
    def metric_names(self) -> list[str]:
        return list(self.spec.metric_names)

    # -- items and few-shot pools ----------------------------------------------------

    def _subset(self, name: str) -> Subset:
        return next(s for s in self.subsets if s.name == name)

    def records(self, subset: Subset) -> list[Record]:
        return self._records[subset.name].get()

    def pool(self, subset: Subset) -> _Pool:
        """The subset's exemplar pool: the hub train split, else a held-out slice of the test records."""
        pool = self._pools.get(subset.name)
        if pool is None:
            with self._lock:
                pool = self._pools.get(subset.name)
                if pool is None:
                    pool = self._load_pool(subset)
                    self._pools[subset.name] = pool
        return pool

    def _load_pool(self, subset: Subset) -> _Pool:
        if subset.train is not None:
            try:
                train = load_records(self._hub_dataset(subset), self.config.data_dir, subset.train)
            except EvalmapError:
                train = []
            by_label = {0: [r for r in train if r["label"] == 0], 1: [r for r in train if r["label"] == 1]}
            if all(len(v) >= HOLDOUT_PER_CLASS for v in by_label.values()):
                return _Pool(by_label, f"hub {subset.hub_id} train split")
        held: dict[int, list[Record]] = {}
        for label in (0, 1):
            candidates = [r for r in self.records(subset) if r["label"] == label]
            held[label] = sorted(candidates, key=lambda r: _rank(r["id"]))[:HOLDOUT_PER_CLASS]
        ids = frozenset(r["id"] for v in held.values() for r in v)
        return _Pool(
            held,
            f"held-out slice of the local test file ({len(ids)} items of {subset.name} not scored; "
            "the hub train split could not be loaded)",
            ids,
        )

    def items(self, limit: int | None = None, seed: int = 1234) -> list[Item]:
        """Every test record of the run's subsets (less a held-out few-shot slice, see the module doc);
        `limit` split evenly over the subsets."""
        per: list[list[Item]] = []
        for subset in self.subsets:
            held = self.pool(subset).held_out if self.num_fewshot else frozenset()
            per.append([Item(id=r["id"], data=r) for r in self.records(subset) if r["id"] not in held])
        if limit is None:
            return [item for items in per for item in items]
        k = len(per)
        chosen: list[Item] = []
        for i, items in enumerate(per):
            chosen += deterministic_subset(items, limit // k + (1 if i < limit % k else 0), seed)
        return chosen

    def exemplars(self, item: Item) -> list[Record]:
        """num_fewshot / 2 exemplars of each label, in a seeded order (deterministic per seed and item)."""
        k = self.num_fewshot
        if k == 0:
            return []
        pool = self.pool(self._subset(item.data["subset"]))
        rng = seeded_rng(self.config.seed, self.dataset_id, item.id)
        shots = rng.sample(pool.by_label[0], k // 2) + rng.sample(pool.by_label[1], k // 2)
        rng.shuffle(shots)
        return shots

    # -- requests -------------------------------------------------------------------

    def question(self, record: Record) -> str:
        subset = self._subset(record["subset"])
        return f"DNA sequence: {record['seq']}\nQuestion: {subset.question} Answer yes or no."

    def prompt(self, item: Item) -> str:
        """The completion prompt: instruction, exemplars answered, the item's question, "Answer:"."""
        subset = self._subset(item.data["subset"])
        shots = [f"{self.question(ex)}\nAnswer: {LABELS[ex['label']]}\n\n" for ex in self.exemplars(item)]
        return subset.instruction + "\n\n" + "".join(shots) + self.question(item.data) + "\nAnswer:"

    def messages(self, item: Item) -> tuple[tuple[str, str], ...]:
        """Chat prompt: the instruction in the first user turn, exemplars as user / assistant turns."""
        subset = self._subset(item.data["subset"])
        turns: list[tuple[str, str]] = []
        for ex in self.exemplars(item):
            turns.append(("user", self.question(ex)))
            turns.append(("assistant", LABELS[ex["label"]]))
        turns.append(("user", self.question(item.data)))
        role, text = turns[0]
        turns[0] = (role, subset.instruction + "\n\n" + text)
        return tuple(turns)

    def requests(self, item: Item) -> list[Request]:
        if self.mode == "loglikelihood":
            context = self.prompt(item)
            return [LoglikelihoodRequest(context=context, continuation=" " + label) for label in LABELS[::-1]]
        body = dict(messages=self.messages(item), chat=True) if self.chat else dict(prompt=self.prompt(item))
        return [generation(self.config, GEN_MAX_TOKENS, **body, stop=("\n\n", "DNA sequence:", "Question:"))]

    # -- scoring --------------------------------------------------------------------

    def score(self, item: Item, responses: list[Response]) -> SampleResult:
        subset = self._subset(item.data["subset"])
        gold = LABELS[item.data["label"]]
        details: dict = {"mode": self.mode, "subset": subset.name, "groups": {"subset": subset.name}}
        if self.mode == "loglikelihood":
            if len(responses) != 2:
                raise ValueError(f"{self.dataset_id} item {item.id}: 2 requests (yes, no) but {len(responses)} answers")
            lls = [r.logprob if isinstance(r, LogLikelihood) else float("-inf") for r in responses]
            pred: str | None = "yes" if lls[0] >= lls[1] else "no"
            details["logprobs"] = {"yes": lls[0], "no": lls[1]}
        else:
            text = responses[0].text if responses and isinstance(responses[0], Generation) else ""
            pred = extract_label(text, subset.positive)
            details["answer"] = text
        k = self.num_fewshot
        details["num_fewshot"] = k
        if k:
            pool = self.pool(subset)
            details["fewshot_source"] = pool.source
            details["held_out"] = len(pool.held_out)
        details.update({"gold": gold, "pred": pred})
        metrics = {"accuracy": float(pred == gold), "unextracted": float(pred is None)}
        return SampleResult(metrics=metrics, extracted=pred, target=gold, details=details)

    def aggregate(self, samples: list[SampleResult]) -> list[Score]:
        """Every metric over all scored samples, then per subset (named "<metric>/subset:<name>")."""
        rows = [s for s in samples if "accuracy" in s.metrics and s.details and "gold" in s.details]
        seed = self.config.seed
        scores = classification_scores(rows, "", seed)
        names = [s.name for s in self.subsets]
        names += sorted({s.details["subset"] for s in rows} - set(names))
        for name in names:
            part = [s for s in rows if s.details["subset"] == name]
            scores += classification_scores(part, f"/subset:{name}", seed)
        return scores

    def prompt_hash(self) -> str:
        return prompt_hash(self)


def _rank(item_id: str) -> str:
    return hashlib.sha256(f"fewshot-holdout:{item_id}".encode()).hexdigest()


# -- label extraction ------------------------------------------------------------------------

_MARKUP = re.compile(r"[*_`#\"'“”‘’]")
_ECHO = re.compile(r"\byes\s*(?:or|/)\s*no\b")
_CUE = re.compile(r"\banswer\s*(?:is|would be|:|-)?\s*:?\s*(yes|no)\b")
_LEADING = re.compile(r"^\W*(yes|no)\b")


def extract_label(text: str, positive: str) -> str | None:
    """yes / no from a free-text answer, or None when it holds neither.

    In order: an "answer: X" / "the answer is X" cue; a leading yes or no; else the earliest of a yes /
    no word or a class phrase ("not a promoter", "non-promoter", "no promoter" mean no; "promoter"
    alone means yes). An echo of the instruction ("yes or no") is ignored.
    """
    t = _ECHO.sub(" ", _MARKUP.sub("", text.lower()))
    for pattern in (_CUE, _LEADING):
        m = pattern.search(t)
        if m:
            return m.group(1)
    word = re.escape(positive.lower())
    negative = re.compile(rf"\b(?:non[-\s]?|not\s+(?:an?\s+)?|no\s+)(?:{word})")
    found: list[tuple[int, str]] = []
    for pattern, label in ((negative, "no"), (re.compile(rf"\b{word}"), "yes"), (re.compile(r"\b(yes|no)\b"), None)):
        for m in pattern.finditer(t):
            if label == "yes" and any(start <= m.start() < end for start, end, _ in _spans(negative, t)):
                continue
            found.append((m.start(), label or m.group(1)))
            break
    return min(found)[1] if found else None


def _spans(pattern: re.Pattern[str], text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group(0)) for m in pattern.finditer(text)]


# -- metrics ----------------------------------------------------------------------------------


def confusion_codes(golds: Sequence[str], preds: Sequence[str | None]) -> np.ndarray:
    """Each item as 2·gold + pred (yes = 1, no = 0); an unextracted prediction counts as the wrong label."""
    out = []
    for g, p in zip(golds, preds, strict=True):
        gi = LABELS.index(g)
        pi = LABELS.index(p) if p in LABELS else 1 - gi
        out.append(2 * gi + pi)
    return np.asarray(out, dtype=float)


def _counts(x: np.ndarray, axis: int) -> tuple[np.ndarray, ...]:
    tp = (x == 3).sum(axis=axis).astype(float)
    fn = (x == 2).sum(axis=axis).astype(float)
    fp = (x == 1).sum(axis=axis).astype(float)
    tn = (x == 0).sum(axis=axis).astype(float)
    return tp, fn, fp, tn


def mcc_stat(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Matthews correlation (tp·tn − fp·fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)); 0 where a margin is 0."""
    tp, fn, fp, tn = _counts(x, axis)
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (tp * tn - fp * fn) / np.where(denom > 0, denom, 1.0), 0.0)


def macro_f1_stat(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean F1 of yes (2tp / (2tp+fp+fn)) and no (2tn / (2tn+fn+fp)) over the labels present in gold or
    prediction (sklearn's f1_score(average="macro") without `labels`)."""
    tp, fn, fp, tn = _counts(x, axis)
    pos_d, neg_d = 2 * tp + fp + fn, 2 * tn + fn + fp
    f_pos = np.where(pos_d > 0, 2 * tp / np.where(pos_d > 0, pos_d, 1.0), 0.0)
    f_neg = np.where(neg_d > 0, 2 * tn / np.where(neg_d > 0, neg_d, 1.0), 0.0)
    has_pos, has_neg = (tp + fn + fp > 0).astype(float), (tn + fn + fp > 0).astype(float)
    present = has_pos + has_neg
    return np.where(present > 0, (f_pos * has_pos + f_neg * has_neg) / np.maximum(present, 1), 0.0)


def bootstrap_score(name: str, codes: np.ndarray, stat, seed: int) -> Score:
    """The statistic over the items, its percentile-bootstrap 95% CI over items and the bootstrap sd."""
    if codes.size == 0:
        return empty_score(name, "bootstrap")
    value = float(stat(codes[None, :], axis=1)[0])
    return bootstrap_statistic(name, codes, stat, value, seed=seed, iters=BOOTSTRAP_ITERS)


def classification_scores(samples: Sequence[SampleResult], suffix: str, seed: int) -> list[Score]:
    """The METRICS over these samples, each named metric + suffix."""
    golds = [s.details["gold"] for s in samples]
    preds = [s.details["pred"] for s in samples]
    n = len(golds)
    codes = confusion_codes(golds, preds)
    out = [
        mean_score("accuracy" + suffix, [s.metrics["accuracy"] for s in samples]),
        bootstrap_score("mcc" + suffix, codes, mcc_stat, seed),
        bootstrap_score("macro_f1" + suffix, codes, macro_f1_stat, seed),
        mean_score("unextracted" + suffix, [s.metrics.get("unextracted", 0.0) for s in samples]),
    ]
    if n == 0:
        return out + [empty_score(m + suffix) for m in METRICS[4:]]
    yes = sum(g == "yes" for g in golds)
    majority = "yes" if yes >= n - yes else "no"
    out.append(mean_score("majority_baseline" + suffix, [float(g == majority) for g in golds]))
    se = math.sqrt(0.25 / n)
    low, high = wilson_interval(0.5, n)
    out.append(Score("chance_baseline" + suffix, 0.5, se, low, high, n, "chance: coin flip, sd sqrt(0.25/n)"))
    se = 1 / math.sqrt(n)
    out.append(Score("chance_baseline_mcc" + suffix, 0.0, se, -Z95 * se, Z95 * se, n, "chance: random, sd 1/sqrt(n)"))
    return out
