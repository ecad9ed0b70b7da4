"""Paired comparison of two runs on the items they share: is B really better than A?

Jobs are paired per dataset: the same model on the same dataset when both runs
ran that model (a new prompt, engine or quantisation), otherwise every model of A
against every model of B on that dataset (two models on the same items). A run
compared with itself pairs its models: the first model of each dataset is A, every
other one B. Each pair is compared on every per-sample metric both jobs scored, the
stored headline first (store.py), or on the one metric asked for. Items are matched
by item id; the test is McNemar for 0/1 metrics and a paired bootstrap otherwise
(`evalmap.metrics.compare_paired`). The settings the two jobs of a pair were run
with (few-shot, chat, mode, engine, dtype, ...) are compared too: a difference there
is part of what B − A measures, so it is reported next to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from evalmap.errors import EvalmapError
from evalmap.metrics.paired import PairedResult, compare_paired
from evalmap.metrics.stats import Score, mean_score
from evalmap.report.data import item_metric, job_settings, lower_is_better, resolve_runs, settings_diff
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
    headline: bool = True  # the metric that stands for the job (the rest are shown beside it)

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
            "headline": self.headline,
        }


@dataclass
class SettingsDiff:
    """Settings two compared jobs were run with that differ: {setting: (A's, B's)}."""

    dataset: str
    model_a: str
    model_b: str
    differ: dict[str, tuple[str, str]]

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "model_a": self.model_a, "model_b": self.model_b,
                "differ": {k: list(v) for k, v in self.differ.items()}}


@dataclass
class Comparison:
    run_a: str
    run_b: str
    rows: list[PairRow]
    notes: list[str] = field(default_factory=list)
    settings: list[SettingsDiff] = field(default_factory=list)

    @property
    def within_run(self) -> bool:
        return self.run_a == self.run_b

    def settings_lines(self) -> list[str]:
        """One line per setting that differs: "num_fewshot: A default, B 3 (hellaswag, arc_challenge)"."""
        by_change: dict[tuple[str, str, str], list[str]] = {}
        for d in self.settings:
            where = d.dataset if d.model_a == d.model_b else f"{d.dataset} {d.model_a} → {d.model_b}"
            for key, (a, b) in d.differ.items():
                by_change.setdefault((key, a, b), []).append(where)
        return [f"{key}: A {a}, B {b} ({', '.join(dict.fromkeys(where))})" for (key, a, b), where in by_change.items()]

    def to_dict(self) -> dict:
        return {"run_a": self.run_a, "run_b": self.run_b, "rows": [r.to_dict() for r in self.rows],
                "notes": self.notes, "settings_differ": [d.to_dict() for d in self.settings]}


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


def _model_pairs(jobs: list[dict]) -> list[tuple[dict, dict]]:
    """Within one run: per dataset, its first model (A) against each other model (B)."""
    by_ds: dict[str, list[dict]] = {}
    for j in jobs:
        by_ds.setdefault(j["dataset"], []).append(j)
    return [(first, other) for first, *rest in by_ds.values() for other in rest]


def _headline_metric(scores_a: list[dict], scores_b: list[dict]) -> str | None:
    """The headline metric stored with the jobs; None while A's job has no scores.

    Both jobs normally share it. When they do not (the same dataset run in another mode), A's headline is
    used if B's job has that score too, else B's headline if A's job has it, else A's.
    """
    head_a = next((s["name"] for s in scores_a if s["headline"]), None)
    head_b = next((s["name"] for s in scores_b if s["headline"]), None)
    if head_a is None or head_b is None or head_a == head_b:
        return head_a
    if head_a in {s["name"] for s in scores_b}:
        return head_a
    return head_b if head_b in {s["name"] for s in scores_a} else head_a


def _metrics(store: Store, a: dict, b: dict) -> list[str]:
    """The metrics both jobs scored per sample (per-subject scores, "acc:anatomy", are not), headline first."""
    scores_a, scores_b = store.scores(a["id"]), store.scores(b["id"])
    head = _headline_metric(scores_a, scores_b)
    if head is None:
        return []
    names_b = {s["name"] for s in scores_b}
    shared = [s["name"] for s in scores_a if s["name"] in names_b and ":" not in s["name"]]
    return [head, *(m for m in shared if m != head)]


def compare_runs(
    store: Store, run_a: str, run_b: str, iters: int = 10000, seed: int = 0, metric: str | None = None
) -> Comparison:
    """Per shared dataset and metric: n shared items, each side's score on them, B − A with 95% CI and a paired
    test; `metric` keeps only that metric. A run compared with itself compares its models."""
    if run_a == run_b:
        pairs = _model_pairs(store.jobs(run_a))
        if not pairs:
            raise EvalmapError(
                f"Run {run_a} ran one model per dataset, so it has no two models to compare; name two runs."
            )
    else:
        pairs = _pairs(store.jobs(run_a), store.jobs(run_b))
        if not pairs:
            raise EvalmapError(f"Runs {run_a} and {run_b} share no dataset, so there is nothing to compare.")
    rows: list[PairRow] = []
    notes: list[str] = []
    settings: list[SettingsDiff] = []
    seen_metrics: set[str] = set()
    for a, b in pairs:
        names = _metrics(store, a, b)
        if not names:
            notes.append(f"{a['dataset']}: {a['model']} has no scores yet (unfinished job); skipped.")
            continue
        seen_metrics.update(names)
        head = names[0]
        if metric is not None:
            names = [m for m in names if m == metric]
        if not names:
            continue
        differ = settings_diff(job_settings(a["task_config"], a["backend"]), job_settings(b["task_config"],
                                                                                          b["backend"]))
        if differ:
            settings.append(SettingsDiff(a["dataset"], a["model"], b["model"], differ))
        for k, name in enumerate(names):
            values_a = item_metric(store, a["id"], name)
            values_b = item_metric(store, b["id"], name)
            shared = sorted(values_a.keys() & values_b.keys())
            if not shared:
                if k == 0:
                    notes.append(f"{a['dataset']}: {a['model']} vs {b['model']} share no scored items; skipped.")
                continue
            xa = [values_a[i] for i in shared]
            xb = [values_b[i] for i in shared]
            rows.append(
                PairRow(
                    dataset=a["dataset"], model_a=a["model"], model_b=b["model"], metric=name, n_shared=len(shared),
                    score_a=mean_score(name, xa), score_b=mean_score(name, xb),
                    result=compare_paired(xa, xb, iters=iters, seed=seed), job_a=a["id"], job_b=b["id"],
                    headline=name == head,
                )
            )
            only = len(values_a) + len(values_b) - 2 * len(shared)
            if only and k == 0:
                notes.append(f"{a['dataset']}: {only} items scored in only one run were left out.")
    if metric is not None and metric not in seen_metrics:
        raise EvalmapError(
            f"No compared job scored the metric {metric!r}; these ones did: {', '.join(sorted(seen_metrics))}."
        )
    if not rows:
        raise EvalmapError(f"Runs {run_a} and {run_b} have no scored items in common, so there is nothing to compare.")
    return Comparison(run_a, run_b, rows, notes, settings)


def compare_selected(store: Store, a: str, b: str, iters: int = 10000, metric: str | None = None) -> Comparison:
    """Resolve two run selectors (ids, prefixes, `latest`, `latest~1`) and compare them."""
    run_a, run_b = resolve_runs(store, [a])[0], resolve_runs(store, [b])[0]
    return compare_runs(store, run_a, run_b, iters=iters, metric=metric)
