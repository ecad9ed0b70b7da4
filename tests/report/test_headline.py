"""The headline metric is chosen once (finish_job), stored with the scores, and read by the matrix,
leaderboards, compare and load_run; stores written before it existed get it when they are opened."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from evalmap.catalog.loader import load_catalog
from evalmap.metrics.stats import Score, mean_score
from evalmap.report.compare import compare_runs
from evalmap.report.data import load_report_data
from evalmap.report.tables import leaderboards, matrix_table
from evalmap.runner import finish_job
from evalmap.store import SCHEMA_VERSION, Store
from evalmap.tasks.base import SampleResult, TaskConfig

# dataset -> (task mode, per-item metrics); the headline is never the first metric here except for my_dataset
JOBS = {
    "gsm8k": (None, {"exact_match_strict": [1, 1, 1, 1], "exact_match_flexible": [1, 0, 0, 0]}),
    "hellaswag": (None, {"acc": [1, 1, 1, 0], "acc_norm": [0, 0, 1, 0]}),
    "arc_challenge": ("generate", {"acc": [1, 0, 1, 0]}),
    "my_dataset": (None, {"first": [1, 1, 0, 0], "second": [0, 0, 0, 0]}),
}
WANTED = {"gsm8k": "exact_match_flexible", "hellaswag": "acc_norm", "arc_challenge": "acc", "my_dataset": "first"}


def _records(metrics: dict[str, list[int]]) -> list[dict]:
    n = len(next(iter(metrics.values())))
    return [
        {"item_id": f"i{i}", "position": i, "prompt": "p", "output": ["o"], "extracted": None, "target": None,
         "metrics": {m: float(v[i]) for m, v in metrics.items()}, "details": {}, "prompt_tokens": 1,
         "completion_tokens": 1, "latency_s": 0.1}
        for i in range(n)
    ]


@dataclass
class FakeTask:
    """What finish_job needs of a task: its config and aggregate()."""

    config: TaskConfig

    def aggregate(self, samples: list[SampleResult]) -> list[Score]:
        names = list(samples[0].metrics)
        return [mean_score(m, [s.metrics[m] for s in samples]) for m in names]


def _run(store: Store, key: str, model: str = "qwen25_7b") -> str:
    run_id, _ = store.open_run(key, {}, 0, "c", {})
    for dataset, (mode, metrics) in JOBS.items():
        job = store.open_job(run_id, model, dataset, {"name": "x"}, {"mode": mode}, "h", 4)
        store.add_samples(job, _records(metrics))
        result = finish_job(FakeTask(TaskConfig(mode=mode)), store, job)
        assert result.headline == WANTED[dataset]
        assert result.headline_score.name == WANTED[dataset]
    store.finish_run(run_id, "finished", 1.0)
    return run_id


def test_finish_job_stores_the_specs_headline_and_every_reader_uses_it(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    run_a = _run(store, "a")
    run_b = _run(store, "b")
    for job in store.jobs(run_a):
        assert store.headline(job["id"])["name"] == WANTED[job["dataset"]]
        assert [s["headline"] for s in store.scores(job["id"])].count(True) == 1

    data = load_report_data(store, [run_b], load_catalog())
    assert {d: data.cells[("qwen25_7b", d)].primary.name for d in JOBS} == WANTED
    rows = {r[2]: r for r in matrix_table(data).rows}
    assert rows["gsm8k"][6] == "exact_match_flexible" and rows["gsm8k"][7] == "0.2500"
    _, by_task = leaderboards(data)
    reasoning = next(b for b in by_task if b.name == "reasoning")  # hellaswag acc_norm 0.25, arc acc 0.5
    assert reasoning.entries[0].score.value == pytest.approx((0.25 + 0.5) / 2)

    result = compare_runs(store, run_a, run_b, iters=200)
    assert {r.dataset: r.metric for r in result.rows if r.headline} == WANTED
    assert [r.metric for r in result.rows if r.dataset == "gsm8k"][0] == "exact_match_flexible"  # headline first

    from evalmap.api import load_run

    loaded = load_run(run_b, store=store)
    assert {j.dataset: j.headline for j in loaded.jobs} == WANTED
    assert {j["dataset"]: j["headline"] for j in loaded.to_dict()["jobs"]} == WANTED
    (group,) = [g for g in loaded.groups if g.group == "reasoning"]
    assert group.members == ("hellaswag:acc_norm", "arc_challenge:acc")
    assert group.score.value == pytest.approx(0.375) and group.score.n == 8


def test_a_store_from_before_the_headline_gets_it_when_opened(tmp_path):
    path = tmp_path / "old.sqlite"
    store = Store(path)
    run_id = _run(store, "old")
    store.close()
    with sqlite3.connect(path) as db:  # as schema 1 left it: no headline column
        db.execute("ALTER TABLE scores DROP COLUMN headline")
        db.execute("PRAGMA user_version=1")
    with sqlite3.connect(path) as db:
        assert "headline" not in {r[1] for r in db.execute("PRAGMA table_info(scores)")}

    reopened = Store(path)
    assert reopened.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2
    assert {j["dataset"]: reopened.headline(j["id"])["name"] for j in reopened.jobs(run_id)} == WANTED
    data = load_report_data(reopened, [run_id], load_catalog())
    assert {d: data.cells[("qwen25_7b", d)].primary.name for d in JOBS} == WANTED


def test_set_scores_without_a_known_headline_flags_the_first(tmp_path: Path):
    store = Store(tmp_path / "s.sqlite")
    run_id, _ = store.open_run("k", {}, 0, "c", {})
    job = store.open_job(run_id, "m", "gsm8k", {}, {}, "h", 1)
    scores = [mean_score(n, [1.0, 0.0]).to_dict() for n in ("b", "a")]
    store.set_scores(job, scores, headline="not_there")
    assert store.headline(job)["name"] == "b"
    store.set_scores(job, scores, headline="a")
    assert store.headline(job)["name"] == "a"
    assert [s["name"] for s in store.scores(job)] == ["b", "a"]
