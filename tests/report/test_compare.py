"""`compare`: pairing by dataset and item, McNemar with known discordant counts, CLI output."""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import pytest
import typer
from typer.testing import CliRunner

from evalmap.errors import EvalmapError
from evalmap.metrics.stats import mean_score
from evalmap.report.cli import register
from evalmap.report.compare import compare_runs, compare_selected
from evalmap.store import Store

EXACT_P = 2 * (1 + 11 + 55) / 2**11  # 2 items only A right, 9 only B right: exact binomial, m = 11


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_mcnemar_exact_on_known_discordant_counts(report_store):
    store, a, b = report_store
    result = compare_runs(store, a, b, iters=500)
    row = next(r for r in result.rows if r.dataset == "gsm8k" and r.model_a == "qwen25_7b")
    assert row.model_b == "qwen25_7b" and row.metric == "exact_match_strict"
    assert row.n_shared == 20
    assert row.result.method == "mcnemar-exact"
    assert row.result.discordant == (2, 9)
    assert row.result.p_value == pytest.approx(EXACT_P, abs=1e-12)
    assert row.result.diff == pytest.approx((9 - 2) / 20)
    assert row.score_a.value == pytest.approx(5 / 20) and row.score_b.value == pytest.approx(12 / 20)
    assert row.result.ci_low < row.result.diff < row.result.ci_high
    assert not row.significant and row.winner == ""
    # every shared (model, dataset) pair is compared on every metric both scored, its headline first;
    # the judge score goes to the bootstrap
    assert sum(r.headline for r in result.rows) == 3 * 3 + 1
    assert len(result.rows) == 3 * 3 + 1 + 3 + 3  # + exact_match_flexible (gsm8k) and acc_norm (arc_challenge)
    assert next(r for r in result.rows if r.dataset == "mt_bench").result.method == "paired-bootstrap"


def _one_job_run(store: Store, key: str, model: str, correct: set[int], n: int) -> str:
    run_id, _ = store.open_run(key, {}, 0, "c", {})
    job = store.open_job(run_id, model, "gsm8k", {"name": "x"}, {}, "h", n)
    records = [
        {"item_id": f"i{i}", "position": i, "prompt": "p", "output": ["o"], "extracted": None, "target": None,
         "metrics": {"exact_match_strict": float(i in correct)}, "details": {}, "prompt_tokens": 1,
         "completion_tokens": 1, "latency_s": 0.1}
        for i in range(n)
    ]
    store.add_samples(job, records)
    store.set_scores(job, [mean_score("exact_match_strict", [r["metrics"]["exact_match_strict"] for r in records])
                           .to_dict()])
    store.finish_run(run_id, "finished", 1.0)
    return run_id


def test_mcnemar_chi_square_and_pairing_across_models(tmp_path):
    """35 discordant items (10 A-only, 25 B-only): chi-square with continuity correction; models pair by dataset."""
    store = Store(tmp_path / "s.sqlite")
    a_right = set(range(0, 10)) | set(range(40, 60))
    b_right = set(range(10, 35)) | set(range(40, 60))
    a = _one_job_run(store, "a", "qwen25_7b", a_right, 80)
    b = _one_job_run(store, "b", "llama31_8b", b_right, 80)
    row = compare_runs(store, a, b).rows[0]
    assert (row.model_a, row.model_b) == ("qwen25_7b", "llama31_8b")
    assert row.result.method == "mcnemar-chi2" and row.result.discordant == (10, 25)
    # chi2 = (|25 - 10| - 1)^2 / 35 = 5.6; chi2(1) survival = P(|Z| > sqrt(5.6))
    assert row.result.p_value == pytest.approx(2 * (1 - NormalDist().cdf(math.sqrt(5.6))), rel=1e-9)
    assert row.result.p_value == pytest.approx(0.0179605, abs=1e-6)
    assert row.significant and row.winner == "B"
    store.close()


def test_compare_errors(report_store, tmp_path):
    store, a, b = report_store
    with pytest.raises(EvalmapError, match="Unknown run id"):
        compare_selected(store, a, "no-such-run")
    other = Store(tmp_path / "o.sqlite")
    x = _one_job_run(other, "x", "m", {1}, 5)
    with pytest.raises(EvalmapError, match="one model per dataset, so it has no two models to compare"):
        compare_runs(other, x, x)
    with pytest.raises(EvalmapError, match="No compared job scored the metric 'acc'; these ones did: "
                                           "exact_match_strict"):
        compare_runs(other, x, _one_job_run(other, "x2", "m", {2}, 5), metric="acc")
    run_id, _ = other.open_run("y", {}, 0, "c", {})
    other.open_job(run_id, "m", "arc_challenge", {}, {}, "h", 1)
    with pytest.raises(EvalmapError, match="share no dataset"):
        compare_runs(other, x, run_id)
    other.close()


def test_cli_compare_table_and_json(report_store):
    store, a, b = report_store
    runner = CliRunner()
    res = runner.invoke(_app(), ["compare", a, b, "--store", str(store.path), "--iters", "200"])
    assert res.exit_code == 0, res.output
    assert "mcnemar-exact 2/9" in res.output and "gsm8k" in res.output
    assert "+----" in res.output or "|" in res.output  # ASCII box when not a terminal
    res = runner.invoke(_app(), ["compare", "latest~1", "latest", "--store", str(store.path), "--format", "json",
                                 "--iters", "200"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    assert payload["run_a"] == a and payload["run_b"] == b
    gsm = next(r for r in payload["rows"] if r["dataset"] == "gsm8k" and r["model_a"] == "qwen25_7b")
    assert gsm["p_value"] == pytest.approx(EXACT_P) and gsm["discordant"] == [2, 9] and gsm["n_shared"] == 20


def test_cli_report_prints_index_path(report_store, tmp_path):
    store, a, b = report_store
    out = tmp_path / "rep"
    res = CliRunner().invoke(_app(), ["report", a, b, "--out", str(out), "--store", str(store.path), "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == str((out / "index.html").resolve())


def test_cli_errors_are_evalmap_errors(report_store, tmp_path):
    store, a, b = report_store
    res = CliRunner().invoke(_app(), ["report", "nope", "--store", str(store.path), "--out", str(tmp_path / "r")])
    assert isinstance(res.exception, EvalmapError) and "Unknown run id 'nope'" in str(res.exception)
    res = CliRunner().invoke(_app(), ["compare", a, b, "--store", str(tmp_path / "missing.sqlite")])
    assert isinstance(res.exception, EvalmapError) and "No evalmap store" in str(res.exception)
