"""A run's group rows: one per model and task type shared by two or more jobs, macro mean with pooled stderr."""

from __future__ import annotations

import math

import pytest

from evalmap.catalog.loader import load_catalog
from evalmap.metrics.stats import Score
from evalmap.report.tables import run_groups
from evalmap.report.terminal import group_table
from evalmap.runner import JobResult
from evalmap.tasks.registry import headline_metric


def job(model: str, dataset: str, *scores: tuple[str, float, float, int]) -> JobResult:
    """A finished job as finish_job leaves it: the headline is the spec's (the first score without one)."""
    names = [name for name, *_ in scores]
    headline = headline_metric(dataset)
    return JobResult(
        job_id=f"{model}/{dataset}", model=model, dataset=dataset, n=scores[0][3],
        scores=[Score(name, v, se, v - 1.96 * se, v + 1.96 * se, n, "normal") for name, v, se, n in scores],
        model_calls=1, cache_hits=0, wall_seconds=1.0, prompt_tokens=1, completion_tokens=1, backend={},
        prompt_hash="x", headline=headline if headline in names else names[0],
    )


def group_results(catalog, results: list[JobResult]):
    return run_groups([(r.model, r.dataset, r.headline_score) for r in results], lambda d: catalog.dataset(d).task_type)


def test_groups_pool_headline_metrics_per_model_and_task_type():
    results = [
        # gsm8k's headline is the flexible match, not the strict one listed first.
        job("m", "gsm8k", ("exact_match_strict", 0.9, 0.05, 30), ("exact_match_flexible", 0.2, 0.03, 30)),
        job("m", "aime", ("math_verify_accuracy", 0.1, 0.04, 30)),
        job("m", "hellaswag", ("acc", 0.5, 0.09, 30), ("acc_norm", 0.6, 0.09, 30)),  # alone in reasoning
        job("m", "humaneval", ("pass@1", 0.3, 0.02, 20)),
        job("m", "mbpp", ("pass@1", 0.5, 0.04, 20)),
        job("other", "gsm8k", ("exact_match_flexible", 0.7, 0.05, 30)),  # a different model is not pooled in
    ]
    groups = {(g.model, g.group): g for g in group_results(load_catalog(), results)}
    assert set(groups) == {("m", "mathematics"), ("m", "coding")}
    maths = groups["m", "mathematics"]
    assert maths.members == ("gsm8k:exact_match_flexible", "aime:math_verify_accuracy")
    assert maths.score.value == pytest.approx(0.15)
    assert maths.score.stderr == pytest.approx(math.sqrt(0.03**2 + 0.04**2) / 2)  # 0.025
    assert maths.score.n == 60
    assert maths.score.ci_low == pytest.approx(0.15 - 1.959964 * 0.025, abs=1e-5)
    coding = groups["m", "coding"]
    assert coding.score.value == pytest.approx(0.4) and coding.score.stderr == pytest.approx(math.sqrt(0.0020) / 2)

    table = group_table(list(groups.values()), terminal=False)
    rows = list(zip(*[c.cells for c in table.columns], strict=True))
    assert rows[0][:3] == ("m", "mathematics", "0.150 ± 0.025 (n=60)")


def test_no_group_table_when_no_task_type_has_two_datasets():
    results = [job("m", "gsm8k", ("exact_match_flexible", 0.2, 0.03, 30)), job("m", "mmlu", ("acc", 0.3, 0.04, 30))]
    groups = group_results(load_catalog(), results)
    assert groups == []
    assert group_table(groups, terminal=False) is None


def test_score_table_keeps_subgroup_scores_out_of_the_terminal():
    from evalmap.report.terminal import score_table

    result = job("m", "mmlu", ("acc", 0.3, 0.04, 40), ("acc/subject_macro", 0.3, 0.05, 40),
                 ("acc/subject:anatomy", 0.5, 0.2, 4), ("acc/subject:virology", 0.0, 0.0, 3))  # fmt: skip
    table = score_table("r", [result], terminal=False)
    assert list(table.columns[2].cells) == ["acc *", "acc/subject_macro"]
    assert "2 per-subject / level / difficulty scores are in results.json" in str(table.caption)


def test_score_table_puts_the_stored_headline_first_and_stars_it():
    from evalmap.report.terminal import score_table

    result = job("m", "gsm8k", ("exact_match_strict", 0.9, 0.05, 30), ("exact_match_flexible", 0.2, 0.03, 30))
    assert result.headline == "exact_match_flexible"
    table = score_table("r", [result], terminal=False)
    assert list(table.columns[2].cells) == ["exact_match_flexible *", "exact_match_strict"]
    assert list(table.columns[3].cells)[0] == "0.200 ± 0.030 (n=30)"
    assert "* headline metric" in str(table.caption)


def test_a_group_averages_only_zero_to_one_headlines():
    """life_science: a Spearman rho is not averaged with accuracies; the two accuracies still make a group,
    and a group left with one averageable member is no group."""
    catalog = load_catalog()
    results = [
        job("m", "genomics_benchmark", ("accuracy", 0.48, 0.07, 50)),
        job("m", "protein_sequences", ("spearman", 0.30, 0.15, 50)),
        job("m", "bioasq", ("pubmedqa_accuracy", 0.50, 0.07, 50)),
    ]
    (group,) = group_results(catalog, results)
    assert group.members == ("genomics_benchmark:accuracy", "bioasq:pubmedqa_accuracy")
    assert group.score.value == pytest.approx(0.49)
    assert group_results(catalog, results[1:]) == []
