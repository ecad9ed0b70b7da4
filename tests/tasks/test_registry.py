"""The registry table, the specs and the catalog state each fact once and agree."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import evalmap.tasks
import evalmap.tasks.specs
from evalmap.catalog.loader import load_catalog
from evalmap.tasks import registry
from evalmap.tasks.kinds.common import SpecBase

TASKS = Path(evalmap.tasks.__file__).parent


def test_every_table_line_names_a_spec_of_that_dataset():
    for dataset_id, target in registry.SPECS.items():
        module, _, name = target.partition(":")
        assert module.startswith("evalmap.tasks.specs."), target
        spec = registry.find_spec(dataset_id)
        assert isinstance(spec, SpecBase) and spec.dataset_id == dataset_id, target


def test_every_spec_is_in_the_table():
    named = set(registry.SPECS.values())
    for info in pkgutil.iter_modules(evalmap.tasks.specs.__path__):
        module = importlib.import_module(f"evalmap.tasks.specs.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, SpecBase):
                assert f"{module.__name__}:{name}" in named, f"{module.__name__}:{name} is not in registry.SPECS"


def test_spec_modules_are_catalog_task_types():
    catalog = load_catalog()
    for dataset_id, target in registry.SPECS.items():
        task_type = target.partition(":")[0].rsplit(".", 1)[1]
        assert catalog.dataset(dataset_id).task_type == task_type, f"{dataset_id} belongs in specs/{task_type}.py"


@pytest.mark.parametrize("dataset_id", sorted(registry.SPECS))
def test_catalog_metrics_are_the_spec_metrics(dataset_id):
    """The spec's metric tuple is the one metric list; the catalog entry repeats it exactly."""
    spec = registry.find_spec(dataset_id)
    entry = load_catalog().dataset(dataset_id)
    assert tuple(entry.metrics) == spec.metric_names, (
        f"catalog {dataset_id}.metrics {entry.metrics} != spec {list(spec.metric_names)}"
    )
    assert registry.headline_metric(dataset_id) in spec.metric_names


def test_headline_metric_keeps_its_meaning():
    assert registry.headline_metric("hellaswag") == "acc_norm"
    assert registry.headline_metric("hellaswag", mode="generate") == "acc"
    assert registry.headline_metric("gsm8k") == "exact_match_flexible"
    assert registry.headline_metric("truthfulqa") == "mc2"
    assert registry.headline_metric("humaneval") == registry.headline_metric("humaneval", "generate") == "pass@1"
    assert registry.headline_metric("mt_bench") == "judge_score"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_import_rules_of_the_tasks_package():
    """Nothing imports the registry back; a kind imports no other kind (only `kinds.common`); a
    spec module imports kinds, never another spec module; base and data import neither."""
    for path in TASKS.rglob("*.py"):
        rel = path.relative_to(TASKS).with_suffix("")
        me = "evalmap.tasks." + ".".join(rel.parts)
        imported = _imports(path)
        assert "evalmap.tasks.registry" not in imported or me == "evalmap.tasks.registry", me
        if rel.parts[0] == "kinds":
            others = {i for i in imported if i.startswith("evalmap.tasks.kinds.")} - {"evalmap.tasks.kinds.common"}
            others = {i for i in others if not i.startswith("evalmap.tasks.kinds.common.")}
            assert not others, f"{me} imports another kind: {sorted(others)}"
            assert not any(i.startswith("evalmap.tasks.specs") for i in imported), me
        if rel.parts[0] == "specs":
            specs = {i for i in imported if i.startswith("evalmap.tasks.specs.")}
            assert not specs, f"{me} imports another spec module: {sorted(specs)}"
        if rel.parts in (("base",), ("data",)):
            assert not any(i.startswith(("evalmap.tasks.kinds", "evalmap.tasks.specs")) for i in imported), me
