"""Paired comparison of two runs on the items they share: is B really better than A?

Jobs are paired per dataset: the same model on the same dataset when both runs
ran that model (a new prompt, engine or quantisation), otherwise every model of A
against every model of B on that dataset (two models on the same items). Each pair
is compared on the headline metric stored with the jobs (store.py). Items are
matched by item id; the test is McNemar for 0/1 metrics and a paired
bootstrap otherwise (`evalmap.metrics.compare_paired`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from evalmap.errors import EvalmapError
from evalmap.metrics.paired import PairedResult, compare_paired
from evalmap.metrics.stats import Score, mean_score
from evalmap.report.data import item_metric, lower_is_better, resolve_runs
from evalmap.store import Store


@dataclass
class PairRow:
    dataset: str
    model_a: str
    model_b: str
    metric: str
    n_shared: int
    score_a: Score
    score_b: Score
    result: PairedResult
    job_a: str = ""
    job_b: str = ""

    @property
    def significant(self) -> bool:
        return not math.isnan(self.result.p_value) and self.result.p_value < 0.05

    @property
    def winner(self) -> str:
        """"A", "B" or "" (no significant difference); lower is better for latency metrics."""
        if not self.significant or math.isnan(self.result.diff) or self.result.diff == 0:
            return ""
        b_higher = self.result.diff > 0
        return "B" if b_higher != lower_is_better(self.metric) else "A"

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "model_a": self.model_a,
            "model_b": self.model_b,
            "metric": self.metric,
            "n_shared": self.n_shared,
            "a": self.score_a.to_dict(),
            "b": self.score_b.to_dict(),
            **{k: v for k, v in self.result.to_dict().items() if k != "n"},
            "winner": self.winner,
        }


@dataclass
class Comparison:
    run_a: str
    run_b: str
    rows: list[PairRow]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"run_a": self.run_a, "run_b": self.run_b, "rows": [r.to_dict() for r in self.rows],
                "notes": self.notes}


def _pairs(jobs_a: list[dict], jobs_b: list[dict]) -> list[tuple[dict, dict]]:
    by_ds_a: dict[str, list[dict]] = {}
    by_ds_b: dict[str, list[dict]] = {}
    for j in jobs_a:
        by_ds_a.setdefault(j["dataset"], []).append(j)
    for j in jobs_b:
        by_ds_b.setdefault(j["dataset"], []).append(j)
    out = []
    for ds, a_list in by_ds_a.items():
        b_list = by_ds_b.get(ds)
        if not b_list:
            continue
        b_by_model = {j["model"]: j for j in b_list}
        same = [(a, b_by_model[a["model"]]) for a in a_list if a["model"] in b_by_model]
        out.extend(same or [(a, b) for a in a_list for b in b_list])
    return out


def _headline_metric(store: Store, job_a: dict, job_b: dict) -> str | None:
    """The headline metric stored with the jobs; None while A's job has no scores.

    Both jobs normally share it. When they do not (the same dataset run in another mode), A's headline is
    used if B's job has that score too, else B's headline if A's job has it, else A's.
    """
    scores_a, scores_b = store.scores(job_a["id"]), store.scores(job_b["id"])
    head_a = next((s["name"] for s in scores_a if s["headline"]), None)
    head_b = next((s["name"] for s in scores_b if s["headline"]), None)
    if head_a is None or head_b is None or head_a == head_b:
        return head_a
    if head_a in {s["name"] for s in scores_b}:
        return head_a
    return head_b if head_b in {s["name"] for s in scores_a} else head_a


def compare_runs(store: Store, run_a: str, run_b: str, iters: int = 10000, seed: int = 0) -> Comparison:
    """Per shared dataset: n shared items, each run's score on them, B − A with 95% CI and a paired test."""
    if run_a == run_b:
        raise EvalmapError(f"Both runs are {run_a!r}; compare two different runs.")
    jobs_a, jobs_b = store.jobs(run_a), store.jobs(run_b)
    pairs = _pairs(jobs_a, jobs_b)
    if not pairs:
        raise EvalmapError(f"Runs {run_a} and {run_b} share no dataset, so there is nothing to compare.")
    rows: list[PairRow] = []
    notes: list[str] = []
    for a, b in pairs:
        metric = _headline_metric(store, a, b)
        if metric is None:
            notes.append(f"{a['dataset']}: {a['model']} has no scores yet (unfinished job); skipped.")
            continue
        values_a = item_metric(store, a["id"], metric)
        values_b = item_metric(store, b["id"], metric)
        shared = sorted(values_a.keys() & values_b.keys())
        if not shared:
            notes.append(f"{a['dataset']}: {a['model']} vs {b['model']} share no scored items; skipped.")
            continue
        xa = [values_a[i] for i in shared]
        xb = [values_b[i] for i in shared]
        result = compare_paired(xa, xb, iters=iters, seed=seed)
        rows.append(
            PairRow(
                dataset=a["dataset"], model_a=a["model"], model_b=b["model"], metric=metric, n_shared=len(shared),
                score_a=mean_score(metric, xa), score_b=mean_score(metric, xb), result=result,
                job_a=a["id"], job_b=b["id"],
            )
        )
        only = len(values_a) + len(values_b) - 2 * len(shared)
        if only:
            notes.append(f"{a['dataset']}: {only} items scored in only one run were left out.")
    if not rows:
        raise EvalmapError(f"Runs {run_a} and {run_b} have no scored items in common, so there is nothing to compare.")
    return Comparison(run_a, run_b, rows, notes)


def compare_selected(store: Store, a: str, b: str, iters: int = 10000) -> Comparison:
    """Resolve two run selectors (ids, prefixes, `latest`, `latest~1`) and compare them."""
    run_a, run_b = resolve_runs(store, [a])[0], resolve_runs(store, [b])[0]
    return compare_runs(store, run_a, run_b, iters=iters)
