"""The report folder: files, numbers with n and stderr, gaps, rank groups, no network references."""

from __future__ import annotations

import csv
import json
import math
import re

import pytest
from report_fixtures import INJECTION, MODELS, SIZES

from evalmap.catalog.loader import load_catalog
from evalmap.errors import EvalmapError
from evalmap.metrics.stats import Score
from evalmap.report.data import load_report_data, open_store, resolve_runs
from evalmap.report.html import build_report
from evalmap.report.tables import leaderboards, pareto_front, rank_groups, speed_points, transfer
from evalmap.store import Store


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def _score(value: float, low: float, high: float, n: int = 100) -> Score:
    return Score("acc", value, (high - low) / 3.92, low, high, n, "normal")


def test_rank_groups_share_ranks_when_intervals_overlap():
    scores = [_score(0.90, 0.88, 0.92), _score(0.85, 0.75, 0.95), _score(0.50, 0.49, 0.51), _score(0.49, 0.47, 0.51)]
    assert rank_groups(scores) == [1, 1, 3, 3]
    assert rank_groups([_score(0.9, 0.89, 0.91), _score(0.5, 0.49, 0.51)]) == [1, 2]
    nan = Score("acc", 0.7, math.nan, math.nan, math.nan, 1, "normal")
    assert rank_groups([_score(0.9, 0.89, 0.91), nan]) == [1, 1]


def test_resolve_runs(report_store):
    store, a, b = report_store
    assert resolve_runs(store, None) == [b]
    assert resolve_runs(store, None, last=2) == [b, a]
    assert resolve_runs(store, ["latest~1", "latest"]) == [a, b]
    assert resolve_runs(store, [a[-6:]]) == [a]
    with pytest.raises(EvalmapError, match="Unknown run id 'nope'"):
        resolve_runs(store, ["nope"])


def test_empty_and_missing_store(tmp_path):
    with pytest.raises(EvalmapError, match="No evalmap store"):
        open_store(tmp_path / "missing.sqlite")
    empty = Store(tmp_path / "empty.sqlite")
    with pytest.raises(EvalmapError, match="has no runs yet"):
        resolve_runs(empty, None)
    empty.close()


def test_data_and_analyses(report_store, catalog):
    store, a, b = report_store
    data = load_report_data(store, [a, b], catalog)
    assert len(data.jobs) == 2 * (len(MODELS) * 3 + 1)
    # the newer run wins each cell
    assert {j.run_id for j in data.cells.values()} == {b}
    assert data.gap("llama31_8b", "mt_bench")  # recommended for text models, not run
    assert data.gap("qwen25_7b", "gsm8k") is None
    assert data.bounded("gsm8k") and not data.bounded("mt_bench")
    # models grouped by category in catalog order, datasets by task type
    assert data.models == ["qwen25_7b", "qwen25_math_7b", "llama31_8b"]
    assert data.datasets.index("humaneval") < data.datasets.index("gsm8k") < data.datasets.index("arc_challenge")
    cell = data.cells[("qwen25_7b", "gsm8k")]
    assert cell.primary.name == "exact_match_strict" and cell.primary.n == 20
    assert cell.seconds_per_sample().n == 20 and cell.seconds_per_sample().stderr > 0

    by_cat, by_task = leaderboards(data)
    math_board = next(x for x in by_task if x.name == "mathematics")
    assert [e.model for e in math_board.entries][0] == "qwen25_7b"  # 12/20 in run B
    assert all(e.rank >= 1 for e in math_board.entries)
    text_board = next(x for x in by_cat if x.name == "text")
    assert "mt_bench" in text_board.excluded  # a 1-10 judge score is not averaged with accuracies

    overall, per_dataset = speed_points(data)
    assert {p.model for p in overall} == set(MODELS)
    front = pareto_front(overall)
    assert front and front[0].seconds.value == min(p.seconds.value for p in overall)
    cats, tts, cells = transfer(data)
    assert ("math", "mathematics") in cells and cells[("math", "mathematics")].home
    assert ("math", "coding") in cells and not cells[("math", "coding")].home


def test_build_report_writes_everything(report_store, catalog, tmp_path):
    store, a, b = report_store
    out = tmp_path / "report"
    result = build_report(store, [a, b], out, catalog, compare_iters=500)
    index = out / "index.html"
    assert result.index == index and index.is_file()
    for name in ("heatmap", "leaderboard_category", "leaderboard_task_type", "speed_accuracy",
                 "speed_accuracy_datasets", "transfer"):
        for ext in ("png", "svg"):
            path = out / "figures" / f"{name}.{ext}"
            assert path.is_file() and path.stat().st_size > 1000, path
    for name in ("matrix", "leaderboard_category", "leaderboard_task_type", "speed_accuracy", "transfer", "runs",
                 "jobs", "compare_1"):
        assert (out / "tables" / f"{name}.csv").is_file()
        assert (out / "tables" / f"{name}.md").read_text().startswith("## ")
    assert (out / "report.md").is_file()
    assert len(list((out / "samples").glob("j*.js"))) == len(result.data.jobs)

    html = index.read_text()
    # no network: nothing is fetched from http(s), no CDN
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<link" not in html.lower()
    # samples are lazy: none of their text is in the page, and the injection never reaches it raw
    assert INJECTION not in html and "Question 3 of gsm8k" not in html
    # every cell shows value, ± stderr and n; the gap is marked
    assert html.count('class="cell"') >= 10
    assert 'class="gap"' in html
    assert "±" in html and "n=20" in html and "n=30" in html

    with (out / "tables" / "matrix.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    run = [r for r in rows if r["status"] == "run"]
    assert len(run) == len(MODELS) * 3 + 1
    assert all(r["n"] and r["stderr"] for r in run)
    gaps = [r for r in rows if r["status"] != "run"]
    assert any(r["model"] == "llama31_8b" and r["dataset"] == "mt_bench" for r in gaps)

    with (out / "tables" / "compare_1.csv").open() as fh:
        compare = {(r["dataset"], r["model_a"]): r for r in csv.DictReader(fh)}
    gsm = compare[("gsm8k", "qwen25_7b")]
    assert gsm["test"] == "mcnemar-exact" and gsm["discordant_a_only/b_only"] == "2/9"
    assert compare[("mt_bench", "qwen25_7b")]["test"] == "paired-bootstrap"

    # a samples file is valid JavaScript calling the loader with every sample of the job
    job = result.data.cells[("qwen25_7b", "arc_challenge")]
    text = (out / "samples" / f"{job.key}.js").read_text()
    assert text.startswith(f'evalmapSamples("{job.key}",[')
    rows = json.loads(text[len(f'evalmapSamples("{job.key}",'):].rstrip().removesuffix(");"))
    assert len(rows) == SIZES["arc_challenge"]
    assert rows[3][2] == [INJECTION]


def test_single_run_report_has_no_comparison(report_store, catalog, tmp_path):
    store, a, b = report_store
    result = build_report(store, [a], tmp_path / "one", catalog)
    assert result.comparisons == []
    assert 'id="compare"' not in result.index.read_text()


def test_report_without_catalog_entries(report_store, tmp_path):
    """Models and datasets unknown to the catalog still get a report (no gaps, 'uncatalogued' groups)."""
    store, a, b = report_store
    result = build_report(store, [b], tmp_path / "nocat", None, compare_iters=100)
    assert result.index.is_file()
    assert result.data.gaps == []


def test_unfinished_job_and_no_matplotlib(report_store, catalog, tmp_path, monkeypatch):
    """A job killed before scoring shows as n/a; without matplotlib the page is still written, without figures."""
    from evalmap.report import figures

    store, a, b = report_store
    run_id, _ = store.open_run("killed", {}, 1, "c", {})
    job = store.open_job(run_id, "qwen25_7b", "gsm8k", {"name": "llamacpp"}, {}, "h", 5)
    store.add_samples(job, [
        {"item_id": "gsm8k/0", "position": 0, "prompt": "p", "output": ["o"], "extracted": None, "target": "1",
         "metrics": {"exact_match_strict": 1.0}, "details": {}, "prompt_tokens": 1, "completion_tokens": 1,
         "latency_s": 0.2},
    ])
    store.finish_run(run_id, "interrupted", 1.0)
    monkeypatch.setattr(figures, "HAVE_MATPLOTLIB", False)
    result = build_report(store, [run_id], tmp_path / "killed", catalog)
    html = result.index.read_text()
    assert "no score yet" in html and "interrupted" in html
    assert not (tmp_path / "killed" / "figures").exists()
    assert "pip install &#39;evalmap[report]&#39;" in html or "evalmap[report]" in html
