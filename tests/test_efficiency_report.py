"""The report's measured speed vs accuracy: per model, accuracy from its quality jobs and tokens/s and memory
from its efficiency job, the Pareto front over both, and the figure drawn from a real store."""

from __future__ import annotations

import pytest

from evalmap.catalog.loader import load_catalog
from evalmap.metrics.stats import Score
from evalmap.report.data import load_report_data
from evalmap.report.efficiency import measured_points
from evalmap.store import Store

# model: (tokens/s, peak RSS MB, arc_challenge accuracy)
MODELS = {"smollm2_135m": (120.0, 300.0, 0.30), "qwen25_0_5b": (60.0, 900.0, 0.45), "qwen25_3b": (50.0, 4000.0, 0.40)}


def _score(name, value, stderr=0.01, n=16):
    return Score(name, value, stderr, value - 0.02, value + 0.02, n).to_dict()


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    run_id, _ = store.open_run("k", {}, 0, "v", {})
    backend = {"name": "llamacpp", "version": "0.3"}
    for model, (speed, rss, acc) in MODELS.items():
        job = store.open_job(run_id, model, "efficiency_bench", backend, {}, "h", 16)
        store.set_scores(job, [_score("output_tok_s", speed, 2.0), _score("peak_rss_mb", rss, float("nan"), 1)],
                         "output_tok_s")
        store.finish_job(job, "finished")
        job = store.open_job(run_id, model, "arc_challenge", backend, {}, "h", 100)
        store.set_scores(job, [_score("acc", acc, 0.04, 100)], "acc")
        store.finish_job(job, "finished")
    store.finish_run(run_id, "finished", 1.0)
    return store, run_id


def test_measured_points_and_front(store):
    store, run_id = store
    data = load_report_data(store, [run_id], load_catalog())
    assert not data.bounded("efficiency_bench")  # tokens/s never joins an accuracy average
    points = {p.row: p for p in measured_points(data)}
    assert set(points) == set(MODELS)
    for model, (speed, rss, acc) in MODELS.items():
        p = points[model]
        assert (p.speed.value, p.memory_mb.value, p.accuracy.value) == pytest.approx((speed, rss, acc))
        assert p.accuracy.n == 100 and p.speed_source == "efficiency_bench:output_tok_s"
    # 3b is slower and less accurate than 0.5b: dominated
    assert {m for m, p in points.items() if p.pareto} == {"smollm2_135m", "qwen25_0_5b"}


def test_measured_figure_is_written(store, tmp_path):
    pytest.importorskip("matplotlib")
    from evalmap.report import figures

    store, run_id = store
    data = load_report_data(store, [run_id], load_catalog())
    made = figures.write_figures(data, [], [], [], {}, ([], [], {}), tmp_path / "figures")
    assert made["speed_measured"]["svg"].read_text().count("smollm2_135m") >= 1
