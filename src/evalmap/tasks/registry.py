"""Which datasets have a task, and building one for a run.

`SPECS` maps a catalog dataset id to "module:NAME", the spec that writes it down (a module of
`evalmap.tasks.specs`, one per task type); a spec module is imported only when one of its
datasets is asked for. Adding a dataset is adding its spec and one line here. Nothing in
`evalmap.tasks` imports this module: it is the way in, not a dependency.
"""

from __future__ import annotations

import importlib
from typing import Any

from evalmap.catalog.schema import Dataset
from evalmap.errors import EvalmapError
from evalmap.tasks.base import Task, TaskConfig

_SPECS = "evalmap.tasks.specs"

SPECS: dict[str, str] = {
    # coding
    "humaneval": f"{_SPECS}.coding:HUMANEVAL",
    "mbpp": f"{_SPECS}.coding:MBPP",
    "bigcodebench": f"{_SPECS}.coding:BIGCODEBENCH",
    "codecontests": f"{_SPECS}.coding:CODECONTESTS",
    "apps": f"{_SPECS}.coding:APPS",
    # mathematics
    "gsm8k": f"{_SPECS}.mathematics:GSM8K",
    "math": f"{_SPECS}.mathematics:MATH",
    "math_competition": f"{_SPECS}.mathematics:MATH_COMPETITION",
    "aime": f"{_SPECS}.mathematics:AIME",
    "mathqa": f"{_SPECS}.mathematics:MATHQA",
    # reasoning
    "arc_challenge": f"{_SPECS}.reasoning:ARC_CHALLENGE",
    "hellaswag": f"{_SPECS}.reasoning:HELLASWAG",
    "winogrande": f"{_SPECS}.reasoning:WINOGRANDE",
    # knowledge
    "mmlu": f"{_SPECS}.knowledge:MMLU",
    "truthfulqa": f"{_SPECS}.knowledge:TRUTHFULQA",
    # instruction following
    "ifeval": f"{_SPECS}.instruction_following:IFEVAL",
    "mt_bench": f"{_SPECS}.instruction_following:MT_BENCH",
    # life science
    "genomics_benchmark": f"{_SPECS}.life_science:GENOMICS_BENCHMARK",
    "protein_sequences": f"{_SPECS}.life_science:PROTEIN_SEQUENCES",
    "bioasq": f"{_SPECS}.life_science:BIOASQ",
    # function calling
    "bfcl": f"{_SPECS}.function_calling:BFCL",
    # efficiency
    "efficiency_bench": f"{_SPECS}.efficiency:EFFICIENCY_BENCH",
    "mobile_benchmark": f"{_SPECS}.efficiency:MOBILE_BENCHMARK",
    # multimodal
    "scienceqa": f"{_SPECS}.multimodal:SCIENCEQA",
    "vqa_v2": f"{_SPECS}.multimodal:VQA_V2",
    "chartqa": f"{_SPECS}.multimodal:CHARTQA",
}


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
