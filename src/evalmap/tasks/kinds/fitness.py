"""Zero-shot protein fitness: rank variants of one protein by a model's likelihood, as ProteinGym scores
zero-shot models, and compare the ranking with measured fitness.

An item is one variant (a full amino-acid sequence with its measured fitness). For a causal language
model the item's score is ProteinGym's full-sequence log-likelihood ratio

    score = log P(mutant sequence) - log P(wild-type sequence)

each asked as a `LoglikelihoodRequest(context=<prefix>, continuation=" " + <sequence in one-letter
amino-acid codes>)`, so it goes through every engine (llama.cpp, transformers, vLLM, an
OpenAI-compatible server's prompt logprobs) and the response cache. The wild-type request is the same
for every item: the runner's cache and de-duplication compute it once per model.

The context is a short fixed text prefix (the spec's `context`, "Protein sequence:"), not the empty
BOS-only context: servers cannot score a text without a first token to condition on (their prompt
logprobs have none for it), and a fixed prefix plays the role a protein LM's start token plays in
ProteinGym (ProGen2's "1", Tranception's start token): every sequence is scored whole, from the same
start, and the prefix's own probability is not part of either term.

Masked protein LMs (ESM-style, catalog `objective: masked_lm`) are scored by ProteinGym's "masked
marginals" instead (`--mode masked_marginals`): for every mutated position i, mask i in the wild type, and
add log p(mutant aa at i) - log p(wild-type aa at i). Each item asks one `MaskedPositionRequest(wild type, i,
the 20 amino acids)` per mutated position; those requests are the same for every variant mutated at i, so
the runner computes one forward pass per site and model (GB1: 4) and caches it.

Metrics are over all scored items (`aggregate`; a rank correlation is not a mean of per-item values):
`spearman` (Spearman's rho of score against fitness, ties averaged), `auc` (ROC AUC of the score for
"fitness above its median"), `top10_recall` (ProteinGym's: of the variants in the top 10% by fitness,
the fraction also in the model's top 10%, both by the 90th percentile). Each carries n, a seeded
percentile-bootstrap 95% CI over items (2000 resamples) and the bootstrap sd as its stderr.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evalmap.backends.base import (
    LogLikelihood,
    LoglikelihoodRequest,
    MaskedPositionRequest,
    PositionLogprobs,
    Request,
    Response,
)
from evalmap.catalog.schema import Dataset
from evalmap.errors import EvalmapError
from evalmap.metrics.aggregate import bootstrap_statistic
from evalmap.metrics.stats import Score, empty_score
from evalmap.tasks.base import Item, SampleResult, TaskConfig, deterministic_subset, prompt_hash
from evalmap.tasks.data import DataSource, LazyRecords
from evalmap.tasks.kinds.common import SpecBase, resolve_variant

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
MODES = ("loglikelihood", "masked_marginals")  # causal LMs; masked LMs (ESM)
METRICS = ("spearman", "auc", "top10_recall")
BOOTSTRAP_ITERS = 2000
TOP_FRACTION = 0.10

Mutation = tuple[int, str, str]  # (1-based position, wild-type residue, mutant residue)


# -- variants ---------------------------------------------------------------------------------------


def mutations(wild_type: str, sequence: str) -> list[Mutation]:
    """Where `sequence` differs from `wild_type` (same length), as (1-based position, wt, mutant)."""
    if len(sequence) != len(wild_type):
        raise ValueError(f"the sequence has {len(sequence)} residues, the wild type {len(wild_type)}")
    return [(i + 1, w, m) for i, (w, m) in enumerate(zip(wild_type, sequence, strict=True)) if w != m]


def mutant_code(muts: Sequence[Mutation]) -> str:
    """ProteinGym's `mutant` notation: "V39A:D40G" (an empty string for the wild type)."""
    return ":".join(f"{w}{p}{m}" for p, w, m in muts)


def parse_mutant(code: str) -> list[Mutation]:
    """A ProteinGym mutant code as mutations: V39A:D40G -> [(39, "V", "A"), (40, "D", "G")]; "" or WT -> []."""
    if code in ("", "WT"):
        return []
    return [(int(part[1:-1]), part[0], part[-1]) for part in code.split(":")]


def wild_type_from_sites(sequences: Sequence[str], sites: Mapping[int, str]) -> str:
    """The one sequence whose residues at `sites` (1-based position -> residue) are the wild type's.

    A deep mutational scan over a few sites (GB1: V39, D40, G41, V54) holds the wild type as one of its
    variants; the consensus per position is not it when most variants change a site. Raises when no
    sequence or more than one distinct sequence matches.
    """
    found = {s for s in sequences if all(len(s) >= p and s[p - 1] == aa for p, aa in sites.items())}
    if len(found) != 1:
        raise ValueError(f"{len(found)} distinct sequences read {''.join(sites.values())} at sites {list(sites)}")
    return found.pop()


# -- the spec and the task ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FitnessSpec(SpecBase):
    """A deep mutational scan of one protein, scored zero-shot: its wild type, the splits (`source` and
    `variants`, each a DataSource whose records hold id, sequence, target and mutant), the text prefix
    of every log-likelihood request."""

    dataset_id: str
    source: DataSource
    wild_type: str
    variants: Mapping[str, DataSource] = field(default_factory=dict)
    context: str = "Protein sequence:"
    metrics: tuple[str, ...] = METRICS
    headline: str | None = "spearman"

    def build(self, dataset: Dataset, config: TaskConfig) -> FitnessTask:
        return FitnessTask(self, dataset, config)


@dataclass
class FitnessTask:
    spec: FitnessSpec
    dataset: Dataset
    config: TaskConfig
    dataset_id: str = field(init=False)
    _records: LazyRecords = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.dataset_id = self.dataset.id
        self.dataset, source = resolve_variant(self.dataset, self.spec.source, self.spec.variants, self.config)
        self._records = LazyRecords(self.dataset, self.config.data_dir, source)
        if self.mode not in MODES:
            raise EvalmapError(
                f"--mode must be loglikelihood or masked_marginals for {self.dataset_id} (got {self.config.mode})."
            )

    @property
    def mode(self) -> str:
        return self.config.mode or MODES[0]

    @property
    def metric_names(self) -> tuple[str, ...]:
        return self.spec.metrics

    def items(self, limit: int | None = None, seed: int = 1234) -> list[Item]:
        return deterministic_subset([Item(id=r["id"], data=r) for r in self._records.get()], limit, seed)

    def request_for(self, sequence: str) -> LoglikelihoodRequest:
        """log P(" " + sequence | prefix): the whole sequence, each residue one letter."""
        return LoglikelihoodRequest(context=self.spec.context, continuation=" " + sequence)

    def requests(self, item: Item) -> list[Request]:
        """Causal: the variant's sequence, then the wild type's (the same request for every item). Masked: one
        masked wild type per mutated position (none for the wild type itself, whose score is 0)."""
        if self.mode == "masked_marginals":
            return [
                MaskedPositionRequest(self.spec.wild_type, position, AMINO_ACIDS)
                for position, _, _ in mutations(self.spec.wild_type, item.data["sequence"])
            ]
        return [self.request_for(item.data["sequence"]), self.request_for(self.spec.wild_type)]

    def score(self, item: Item, responses: list[Response]) -> SampleResult:
        asked = len(self.requests(item))
        if len(responses) != asked:
            raise ValueError(f"{self.dataset_id} item {item.id}: {asked} requests but {len(responses)} responses")
        target = float(item.data["target"])
        details: dict[str, Any] = {"mode": self.mode, "fitness": target, "mutant": item.data.get("mutant", "")}
        if self.mode == "masked_marginals":
            muts = mutations(self.spec.wild_type, item.data["sequence"])
            terms = [
                r.logprobs[m] - r.logprobs[w] if isinstance(r, PositionLogprobs) else float("nan")
                for (_, w, m), r in zip(muts, responses, strict=True)
            ]
            score = math.fsum(terms)
            details["masked_marginals"] = dict(zip((mutant_code([mu]) for mu in muts), terms, strict=True))
        else:
            mutant, wild = (r.logprob if isinstance(r, LogLikelihood) else float("nan") for r in responses)
            score = mutant - wild
            details.update(ll_mutant=mutant, ll_wild_type=wild)
        details["score"] = score
        return SampleResult(metrics={"score": score}, extracted=score, target=target, details=details)

    def aggregate(self, samples: list[SampleResult]) -> list[Score]:
        """spearman, auc and top10_recall over every sample with a finite score (see the module doc)."""
        pairs = [
            (float(s.details["score"]), float(s.details["fitness"]))
            for s in samples
            if s.details and _finite(s.details.get("score")) and _finite(s.details.get("fitness"))
        ]
        scores = np.array([p[0] for p in pairs], float)
        targets = np.array([p[1] for p in pairs], float)
        stats = {"spearman": spearman_rows, "auc": auc_rows, "top10_recall": top_recall_rows}
        seed = self.config.seed
        return [bootstrap_score(name, stats[name], scores, targets, seed=seed) for name in self.metric_names]

    def prompt_hash(self) -> str:
        return prompt_hash(self)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


# -- metrics (rows of resampled items at once) ---------------------------------------------------------


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n within each row of a 2-D array, ties given their average rank (scipy's rankdata)."""
    m, n = x.shape
    rows = np.repeat(np.arange(m), n)
    flat = x.ravel()
    order = np.lexsort((flat, rows))
    xs, rs = flat[order], rows[order]
    new = np.ones(m * n, bool)
    new[1:] = (xs[1:] != xs[:-1]) | (rs[1:] != rs[:-1])
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], m * n)
    average = (starts - rs[starts] * n) + (ends - starts - 1) / 2 + 1
    ranks = np.empty(m * n)
    ranks[order] = average[np.cumsum(new) - 1]
    return ranks.reshape(m, n)


def spearman_rows(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Spearman's rho per row: Pearson's r of the average ranks (NaN where a row is constant)."""
    a, b = average_ranks(scores), average_ranks(targets)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(axis=1) / np.where(denom > 0, denom, 1.0), np.nan)


def auc_rows(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """ROC AUC per row of the score for label = fitness > the row's median fitness (Mann-Whitney U over
    positives x negatives, a tied score counting 1/2); NaN where a row has no positive or no negative."""
    labels = targets > np.median(targets, axis=1, keepdims=True)
    pos = labels.sum(axis=1)
    neg = labels.shape[1] - pos
    rank_sum = (average_ranks(scores) * labels).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((pos > 0) & (neg > 0), (rank_sum - pos * (pos + 1) / 2) / (pos * neg), np.nan)


def top_recall_rows(scores: np.ndarray, targets: np.ndarray, fraction: float = TOP_FRACTION) -> np.ndarray:
    """ProteinGym's top-recall per row: true top = fitness >= its (1 - fraction) percentile, model top =
    score >= its (1 - fraction) percentile; the share of the true top that the model's top holds."""
    q = 100 * (1 - fraction)
    top_true = targets >= np.percentile(targets, q, axis=1, keepdims=True)
    top_model = scores >= np.percentile(scores, q, axis=1, keepdims=True)
    return (top_true & top_model).sum(axis=1) / top_true.sum(axis=1)


def bootstrap_score(
    name: str, stat, scores: np.ndarray, targets: np.ndarray, seed: int = 0, iters: int = BOOTSTRAP_ITERS
) -> Score:
    """`stat` over all items, with a percentile-bootstrap 95% CI over items (resampled in pairs) and the
    bootstrap sd as stderr; n = the number of items. Resamples where the statistic is undefined (a constant
    row) are left out of the interval."""
    n = len(scores)
    if n == 0:
        return empty_score(name, "bootstrap")
    value = float(stat(scores[None, :], targets[None, :])[0])

    def resampled(index: np.ndarray, axis: int = 1) -> np.ndarray:
        rows = index.astype(int)
        return stat(scores[rows], targets[rows])

    return bootstrap_statistic(name, np.arange(n, dtype=float), resampled, value, seed=seed, iters=iters)
