"""Which datasets have a task implementation, and building one for a run.

Each family module (math, multiple_choice, code, ...) exposes `SPECS`: a dict from
catalog dataset id to a small declarative spec with a `build(dataset, config)`
method. Adding a dataset is adding a spec there; this module only looks them up.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from evalmap.catalog.schema import Dataset
from evalmap.errors import EvalmapError
from evalmap.tasks.base import Task, TaskConfig


def _families() -> tuple[ModuleType, ...]:
    from evalmap.tasks import code, math, multiple_choice

    return (math, multiple_choice, code)


def _all_specs() -> dict[str, Any]:
    specs: dict[str, Any] = {}
    for module in _families():
        for dataset_id, spec in module.SPECS.items():
            if dataset_id in specs:
                raise RuntimeError(f"dataset {dataset_id} has specs in two family modules")
            specs[dataset_id] = spec
    return specs


def find_spec(dataset_id: str) -> Any | None:
    """The family spec of a dataset id, or None when it has no task implementation."""
    return _all_specs().get(dataset_id)


def supported_datasets() -> list[str]:
    """Catalog dataset ids that `build_task` can turn into a Task, sorted."""
    return sorted(_all_specs())


def build_task(dataset: Dataset, config: TaskConfig | None = None) -> Task:
    """The Task for a catalog dataset under a run's options."""
    spec = find_spec(dataset.id)
    if spec is None:
        raise EvalmapError(
            f"Dataset {dataset.id} has no task implementation yet; supported: {', '.join(supported_datasets())}."
        )
    return spec.build(dataset, config or TaskConfig())


def headline_metric(dataset_id: str, mode: str | None = None) -> str | None:
    """The metric that stands for a dataset in a group average (e.g. hellaswag acc_norm, gsm8k flexible)."""
    spec = find_spec(dataset_id)
    if spec is None:
        return None
    if mode == "generate" and hasattr(spec, "default_mode"):
        return "acc"
    headline = getattr(spec, "headline", None)
    if headline:
        return headline
    metrics = getattr(spec, "metrics", ())
    if not metrics:
        return None
    first = metrics[0]
    return first[0] if isinstance(first, tuple) else first


def headline_score(dataset_id: str, scores: list[Any]) -> Any | None:
    """The Score that stands for a dataset's job in a group: its headline metric, or `acc` for a
    multiple-choice dataset run in generate mode; None when the job has neither."""
    names = {s.name: s for s in scores}
    metric = headline_metric(dataset_id)
    if metric not in names and "acc" in names:
        metric = "acc"
    return names.get(metric) if metric else None


def group_score(name: str, dataset_scores: dict[str, list[Any]], weighting: str = "macro") -> Any:
    """One group score (e.g. "mathematics") over datasets: each dataset's headline Score, pooled
    with `metrics.aggregate.pooled_group_score` (macro: mean of dataset means, stderr sqrt(sum se^2)/k).

    `dataset_scores` maps a dataset id to the Scores of its job; datasets without their headline
    metric are left out.
    """
    from evalmap.metrics.aggregate import pooled_group_score

    chosen = [headline_score(d, scores) for d, scores in dataset_scores.items()]
    return pooled_group_score(name, [s for s in chosen if s is not None], weighting)  # type: ignore[arg-type]
