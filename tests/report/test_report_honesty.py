"""Compare and the report do not mislead: every metric, the settings that differ, rows split by settings,
the models of one run compared, Markdown for papers, what to run to fill the gaps, a heatmap title clear of
its labels."""

from __future__ import annotations

import re

import pytest
import typer
from report_fixtures import SIZES, add_fewshot_run
from typer.testing import CliRunner

from evalmap.catalog.loader import load_catalog
from evalmap.report import figures
from evalmap.report.cli import register
from evalmap.report.compare import compare_runs
from evalmap.report.data import load_report_data
from evalmap.report.html import build_report
from evalmap.report.tables import fill_commands, leaderboards, matrix_markdown, matrix_table

SCORE = re.compile(r"^\d\.\d{3} ± \d\.\d{3} \(n=\d+\)$")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_compare_shows_every_metric_and_the_settings_that_differ(report_store):
    store, a, b = report_store
    c = add_fewshot_run(store)
    result = compare_runs(store, b, c, iters=200)
    rows = {r.metric: r for r in result.rows}
    assert list(rows) == ["acc", "acc_norm"] and rows["acc"].headline and not rows["acc_norm"].headline
    assert {r.dataset for r in result.rows} == {"arc_challenge"}
    # acc_norm and acc moved differently: one metric alone would hide it
    assert rows["acc"].score_b.value == pytest.approx(15 / 30)
    assert rows["acc_norm"].score_b.value == pytest.approx(10 / 30)
    (diff,) = result.settings
    assert diff.differ == {"num_fewshot": ("default", "25")}
    assert result.settings_lines() == ["num_fewshot: A default, B 25 (arc_challenge)"]
    only = compare_runs(store, b, c, iters=200, metric="acc")
    assert [r.metric for r in only.rows] == ["acc"]

    res = CliRunner().invoke(_app(), ["compare", b, c, "--store", str(store.path), "--iters", "200"],
                             env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    assert "| acc *" in res.output and "| acc_norm " in res.output
    assert "Settings differ (part of what B − A measures):\n  num_fewshot: A default, B 25 (arc_challenge)" in (
        res.output)
    res = CliRunner().invoke(_app(), ["compare", b, c, "--store", str(store.path), "--format", "json",
                                      "--metric", "acc_norm", "--iters", "200"])
    assert '"differ": {\n        "num_fewshot": [\n          "default",\n          "25"' in res.output


def test_compare_of_one_run_with_itself_compares_its_models(report_store):
    store, a, b = report_store
    result = compare_runs(store, b, b, iters=200)
    assert result.within_run
    pairs = {(r.dataset, r.model_a, r.model_b) for r in result.rows if r.headline}
    # each dataset's first model (qwen25_7b) against the others; mt_bench has one model: nothing to pair
    assert pairs == {(d, "qwen25_7b", m) for d in SIZES for m in ("qwen25_math_7b", "llama31_8b")}
    res = CliRunner().invoke(_app(), ["compare", "latest", "latest", "--store", str(store.path), "--iters", "200"])
    assert res.exit_code == 0, res.output
    assert f"Models of run {b}" in res.output and "qwen25_7b → llama31_8b" in res.output


def test_report_splits_rows_by_settings(report_store, catalog, tmp_path):
    store, a, b = report_store
    c = add_fewshot_run(store)
    data = load_report_data(store, [b, c], catalog)
    assert data.split_by == ("num_fewshot",)
    five = "qwen25_7b [num_fewshot=25]"
    default = "qwen25_7b [num_fewshot=default]"
    assert data.cells[(five, "arc_challenge")].run_id == c and data.cells[(default, "arc_challenge")].run_id == b
    assert (five, "gsm8k") not in data.cells  # the 25-shot run only ran arc_challenge
    _, by_task = leaderboards(data)
    reasoning = next(board for board in by_task if board.name == "reasoning")
    assert {five, default} <= {e.model for e in reasoning.entries}  # ranked apart, never averaged together
    arc = {(r[0], r[-1]): r[7] for r in matrix_table(data).rows if r[2] == "arc_challenge"}
    assert arc[("qwen25_7b", "num_fewshot=25")] == "0.5000" and arc[("qwen25_7b", "num_fewshot=default")] == "0.6000"
    md = matrix_markdown(data)
    assert "Rows are split by the settings that differ between these runs (num_fewshot)" in md
    html = build_report(store, [b, c], tmp_path / "r", catalog, compare_iters=200).index.read_text()
    assert 'id="settings-split"' in html and "num_fewshot" in html
    assert "num_fewshot: A default, B 25 (arc_challenge)" in html  # the comparison section says it too


def test_markdown_for_papers_and_fill_commands(report_store, catalog, tmp_path):
    store, a, b = report_store
    c = add_fewshot_run(store)
    res = CliRunner().invoke(_app(), ["report", c, "--store", str(store.path), "--format", "md"])
    assert res.exit_code == 0, res.output
    grid = [line for line in res.output.splitlines() if line.startswith("| qwen25_7b")]
    assert grid == ["| qwen25_7b | 0.500 ± 0.093 (n=30) |"]  # one column: the only dataset with a value
    header = next(line for line in res.output.splitlines() if line.startswith("| model |"))
    assert header == "| model | arc_challenge |"
    data = load_report_data(store, [c], catalog)
    todo = fill_commands(data)
    recommended = [d for d in data.recommended["qwen25_7b"] if d != "arc_challenge"]
    assert todo[0].startswith("evalmap run --models qwen25_7b --datasets ")
    assert set(todo[0].rsplit(" ", 1)[1].split(",")) <= set(recommended)
    assert "To fill the *not run* cells:" in res.output and todo[0] in res.output
    html = build_report(store, [c], tmp_path / "one", catalog, compare_iters=200).index.read_text()
    assert "Most of this matrix is not run yet" in html and todo[0] in html
    # every value of the paper table carries its stderr and n
    res = CliRunner().invoke(_app(), ["report", a, b, "--store", str(store.path), "--format", "md"])
    cells = [cell.strip() for line in res.output.splitlines() if line.startswith("| qwen25_math_7b |")
             for cell in line.strip("|").split("|")[1:]]
    assert cells and all(SCORE.match(cell) or cell == "*not run*" or cell == "" for cell in cells), cells
    assert sum(bool(SCORE.match(cell)) for cell in cells) == 3


@pytest.mark.skipif(not figures.HAVE_MATPLOTLIB, reason="matplotlib is not installed")
@pytest.mark.parametrize("rows", [1, 3, 12])
def test_heatmap_title_clears_the_task_type_labels(rows, report_store, catalog):
    """The title sat 70 points above the axes while the rotated labels rose with the row height: with one
    row, "instruction following" ran into it."""
    store, a, b = report_store
    data = load_report_data(store, [b], catalog)
    data.models = (data.models * 4)[:rows]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = figures.heatmap(data)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    title = ax.title.get_window_extent(renderer)
    labels = [t for t in ax.texts if t.get_rotation() == 30]
    assert any(t.get_text() == "instruction following" for t in labels)
    for label in labels:
        box = label.get_window_extent(renderer)
        assert box.y1 < title.y0, f"{label.get_text()!r} overlaps the title with {rows} row(s)"
