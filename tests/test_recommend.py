"""`recommend MODEL`: one row per dataset, what the model can take, runnable or not, a time on the chosen
engine, and the `recommended` selector that runs them."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from evalmap import api, planner
from evalmap.catalog.loader import load_catalog
from evalmap.cli import app
from evalmap.errors import EvalmapError

IMAGES = {"scienceqa", "vqa_v2", "chartqa"}


@pytest.fixture(scope="module")
def catalog_file(no_task_catalog):
    return no_task_catalog


@pytest.fixture(scope="module")
def catalog(catalog_file):
    return load_catalog([str(catalog_file)])


def test_one_row_per_dataset_with_every_reason(catalog):
    for model in ("smollm2_135m", "qwen25_math_7b", "qwen25_7b", "qwen25_3b"):
        recs = planner.recommend(catalog, model)
        assert len({r.dataset for r in recs}) == len(recs), model
    math = {r.dataset: r for r in planner.recommend(catalog, "qwen25_math_7b")}
    assert math["gsm8k"].recommended_by == ["math/Essential", "genomics/Math foundation"]
    assert (math["gsm8k"].category, math["gsm8k"].tier) == ("math", "Essential")  # the first, highest tier
    # the sample total counts each dataset once
    assert sum(r.samples for r in math.values()) == sum(catalog.datasets[d].count for d in math)
    smol = [r for r in planner.recommend(catalog, "smollm2_135m") if r.dataset == "humaneval"]
    assert len(smol) == 1 and smol[0].recommended_by[0] == "text/Baseline"


def test_sample_limit_is_the_largest_any_tier_asks(catalog):
    recs = {r.dataset: r for r in planner.recommend(catalog, "qwen25_3b")}  # efficiency only: 5 and 20 per dataset
    for ds in catalog.select_datasets(["status:ready"]):
        assert recs[ds].sample_limit == 20 and recs[ds].samples == 20
        assert recs[ds].recommended_by == ["efficiency/Speed (5/dataset)", "efficiency/Efficiency (20/dataset)"]
    assert recs["efficiency_bench"].sample_limit is None
    # a category asking for every item wins over a limited tier
    smol = {r.dataset: r for r in planner.recommend(catalog, "smollm2_135m")}
    assert smol["gsm8k"].sample_limit is None and smol["gsm8k"].samples == catalog.datasets["gsm8k"].count


def test_a_text_model_gets_no_image_datasets_unless_asked(catalog):
    text_only = {r.dataset for r in planner.recommend(catalog, "smollm2_135m")}
    assert not text_only & IMAGES
    assert {r.dataset for r in planner.recommend(catalog, "smollm2_135m", include_all=True)} >= IMAGES
    assert {r.dataset for r in planner.recommend(catalog, "qwen2_vl_7b")} >= IMAGES  # it has eyes
    assert planner.unsuitable(catalog.model("smollm2_135m"), catalog.dataset("vqa_v2"))
    assert planner.unsuitable(catalog.model("qwen2_vl_7b"), catalog.dataset("vqa_v2")) is None


def test_rows_carry_the_planners_estimate_on_the_chosen_engine(catalog, tmp_path):
    recs = api.recommend("qwen25_3b", catalog=catalog, backend="llamacpp", store=tmp_path / "none.sqlite", gpu=False)
    runnable = [r for r in recs if r.runnable]
    assert runnable and all(r.estimate is not None and r.estimate.engine == "llamacpp" for r in runnable)
    gsm8k = next(r for r in runnable if r.dataset == "gsm8k")
    job = api.plan("qwen25_3b", "gsm8k", 20, catalog=catalog, backend="llamacpp", store=tmp_path / "x", gpu=False)
    assert gsm8k.estimate.samples == 20 == job.jobs[0].samples
    assert gsm8k.estimate.estimate_seconds == job.jobs[0].estimate_seconds
    flagged = [r for r in recs if not r.runnable]
    assert [r.dataset for r in flagged] == ["team_bench"] and flagged[0].estimate is None  # listed, never estimated


def test_recommended_selector_runs_each_models_own_runnable_rows(catalog):
    pairs = planner.plan_pairs(catalog, ["qwen25_3b", "qwen25_math_7b"], ["recommended"])
    by_model: dict[str, list] = {}
    for model, ds, limit in pairs:
        by_model.setdefault(model, []).append((ds, limit))
    assert ("gsm8k", 20) in by_model["qwen25_3b"] and ("gsm8k", None) in by_model["qwen25_math_7b"]
    assert all(catalog.datasets[d].runnable for d, _ in by_model["qwen25_3b"])
    assert "team_bench" not in dict(by_model["qwen25_3b"])
    assert {d for d, _ in by_model["qwen25_math_7b"]} == {
        r.dataset for r in planner.recommend(catalog, "qwen25_math_7b") if r.runnable
    }
    given = planner.plan_pairs(catalog, ["qwen25_3b"], ["mmlu", "recommended"], samples=3)
    assert given[0] == ("qwen25_3b", "mmlu", 3) and {n for _, _, n in given} == {3}


def test_recommended_is_no_catalog_selector(catalog):
    with pytest.raises(EvalmapError, match="depends on the model"):
        catalog.select_datasets(["recommended"])


def test_cli_table_and_json(catalog_file):
    runner = CliRunner()
    table = runner.invoke(app, ["recommend", "smollm2_135m", "--catalog", str(catalog_file)], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    body = table.stdout
    assert body.count(" humaneval ") == 1
    assert "left out: scienceqa, vqa_v2, chartqa" in body and "cannot run (no task)" in body
    assert "--datasets recommended" in body
    data = json.loads(runner.invoke(app, ["recommend", "smollm2_135m", "--format", "json"]).stdout)
    assert data["left_out"] == ["scienceqa", "vqa_v2", "chartqa"]
    every = json.loads(runner.invoke(app, ["recommend", "smollm2_135m", "--all", "--format", "json"]).stdout)
    assert {r["dataset"] for r in every["recommendations"]} >= IMAGES and every["left_out"] == []
    by_repo = runner.invoke(app, ["recommend", "HuggingFaceTB/SmolLM2-135M-Instruct", "--format", "json"])
    by_repo = json.loads(by_repo.stdout)
    assert [r["dataset"] for r in by_repo["recommendations"]] == [r["dataset"] for r in data["recommendations"]]
