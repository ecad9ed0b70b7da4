"""The catalog's typical lengths are what `evalmap plan` counts for a dataset it cannot render (no data on the
machine, hub unreachable), so they must say what the task renders under its default options: checked here
against the planner's own rendering (plan's default seed) of every dataset whose data is in the shared folder.
bench/bench_catalog_lengths.py prints the same comparison over larger samples."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from evalmap.catalog.loader import load_catalog
from evalmap.tasks.base import TaskConfig
from evalmap.workload import plan_workloads

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SMOL = "smollm2_135m"  # the catalog's lengths are in its tokens
SEED = 1234  # evalmap plan's default
TOLERANCE = 0.35
ALWAYS_HERE = {"arc_challenge", "hellaswag", "gsm8k", "mmlu"}  # with the shared folder, these must render


@pytest.fixture(scope="module")
def rendered():
    """(catalog, {dataset id: its workload}) for every runnable dataset whose default data is here."""
    if not DATA.is_dir():
        pytest.skip(f"{DATA} is not present")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EVALMAP_CATALOG", raising=False)
        catalog = load_catalog()
    pairs = [(SMOL, d.id, None) for d in catalog.datasets.values() if d.runnable]
    workloads, _ = plan_workloads(catalog, pairs, TaskConfig(data_dir=str(DATA)), SEED)
    found = {dataset: work for (_, dataset), work in workloads.items() if work.requests}
    assert found.keys() >= ALWAYS_HERE
    assert all(w.tokens.startswith(f"{SMOL}'s tokenizer") for w in found.values())
    return catalog, found


def _off(field: str, catalog_value: float, values: list[float]) -> str | None:
    mean = statistics.fmean(values)
    if abs(catalog_value - mean) <= TOLERANCE * mean:
        return None
    return f"{field} {catalog_value} vs {mean:.1f} rendered (n={len(values)})"


def _check(rendered, field_of) -> None:
    catalog, found = rendered
    wrong = []
    for dataset_id, work in sorted(found.items()):
        wrong += [f"{dataset_id}: {problem}" for problem in field_of(catalog.dataset(dataset_id), work) if problem]
    assert not wrong, "catalog lengths off by more than 35%:\n" + "\n".join(wrong)


def test_prompt_tokens_are_the_rendered_prompt_per_request(rendered):
    _check(rendered, lambda ds, work: [_off("prompt_tokens", ds.prompt_tokens, [r.prompt for r in work.requests])])


def test_loglikelihood_answer_tokens_and_choices_are_the_rendered_continuations(rendered):
    def fields(ds, work):
        if work.requests[0].kind != "loglikelihood":
            return []
        per_item = len(work.requests) / work.sampled
        choices = ds.choices or 4  # what catalog_workload assumes
        return [
            _off("answer_tokens", ds.answer_tokens, [r.continuation for r in work.requests]),
            None if choices == round(per_item) else f"choices {ds.choices} vs {per_item:.2f} requests per item",
        ]

    _check(rendered, fields)


def test_generation_answer_tokens_are_the_reference_answers(rendered):
    """Where the task shows what an answer looks like (few-shot answers, canonical solutions), the planner
    counts those; the catalog's fallback must say the same."""

    def fields(ds, work):
        lengths = work.lengths
        if lengths is None or "catalog" in lengths.source:  # no references: the rendering uses the catalog's
            return []
        return [_off("answer_tokens", ds.answer_tokens, list(lengths.values))]

    _check(rendered, fields)
