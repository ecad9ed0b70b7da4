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
