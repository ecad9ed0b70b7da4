"""Which datasets have a task, and building one for a run.

`SPECS` (in `table.py`) maps a catalog dataset id to "module:NAME", the spec that writes it down (a
module of `evalmap.tasks.specs`, one per task type); a spec module is imported only when one of its
datasets is asked for. Adding a dataset is adding its spec and one line there. Nothing in
`evalmap.tasks` imports this module: it is the way in, not a dependency.
"""

from __future__ import annotations

import importlib
from typing import Any

from evalmap.catalog.schema import Dataset
from evalmap.errors import EvalmapError
from evalmap.tasks.base import Task, TaskConfig
from evalmap.tasks.table import SPECS


def find_spec(dataset_id: str) -> Any | None:
    """The spec of a dataset id, or None when it has no task implementation."""
    target = SPECS.get(dataset_id)
    if target is None:
        return None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def supported_datasets() -> list[str]:
    """Catalog dataset ids that `build_task` can turn into a Task, sorted."""
    return sorted(SPECS)


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
    return spec.headline_metric(mode) if spec is not None else None
