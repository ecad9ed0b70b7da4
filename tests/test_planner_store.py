"""This machine's history in the store, read for the planner: which jobs count, the per-job rows and run
setup times Store.measured_jobs gives, and what `evalmap.plan` / `evalmap plan` make of them."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from evalmap import planner
from evalmap.backends.base import Generation, GenerationRequest, LogLikelihood, LoglikelihoodRequest
from evalmap.catalog.loader import load_catalog
from evalmap.store import Store

M, E = "smollm2_135m", "transformers"
DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="the shared datasets folder is not here")


@pytest.fixture(scope="module")
def catalog():
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EVALMAP_CATALOG", raising=False)
        return load_catalog()


def _settings(**changes) -> dict:
    from dataclasses import asdict

    from evalmap.tasks.base import TaskConfig

    return {**asdict(TaskConfig(data_dir=str(DATA))), **changes}


def add_run(store: Store, key: str, jobs: list[dict], run_wall: float, host: str | None = None,
            status: str = "finished") -> str:
    """A run with these jobs: each {model, dataset, backend, kind, prompt, completion, wall, lengths, settings,
    job_status, judge, latency (each sample's engine seconds)}; answers cached under the job so their kinds are
    known."""
    run_id, _ = store.open_run(key, {}, 1, "v", {})
    for n, spec in enumerate(jobs):
        lengths = spec.get("lengths", [5, 5])
        job = store.open_job(run_id, spec.get("model", M), spec["dataset"],
                             {"name": spec.get("backend", E), **spec.get("backend_facts", {})},
                             spec.get("settings", _settings()), "h", len(lengths), judge=spec.get("judge"))
        kind = spec.get("kind", "generate")
        request = (GenerationRequest(prompt=f"{key}{n}") if kind == "generate"
                   else LoglikelihoodRequest(f"{key}{n}", " a"))
        response = Generation("x") if kind == "generate" else LogLikelihood(-1.0, True)
        store.cache("fp", [(request, response, job)])
        store.add_samples(job, [
            {"item_id": str(i), "position": i, "prompt": "p" * 40, "output": "o", "extracted": None, "target": None,
             "metrics": {}, "details": {}, "prompt_tokens": 10, "completion_tokens": length,
             "latency_s": spec.get("latency", 0.1)} for i, length in enumerate(lengths)
        ], model_calls=len(lengths), prompt_tokens=spec.get("prompt", 1000), wall_seconds=spec.get("wall", 10.0),
            completion_tokens=spec.get("completion", sum(lengths)))
        store.finish_job(job, spec.get("job_status", "finished"))
    store.finish_run(run_id, status, run_wall)
    if host:
        store.db.execute("UPDATE runs SET host=? WHERE id=?", (host, run_id))
    return run_id


def test_measured_jobs_are_this_model_engine_and_machine_finished_and_unjudged(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    try:
        add_run(store, "a", [{"dataset": "gsm8k", "wall": 20.0, "lengths": [30, 50]},
                             {"dataset": "arc_challenge", "kind": "loglikelihood", "wall": 4.0}], run_wall=30.0)
        add_run(store, "b", [{"dataset": "gsm8k", "model": "qwen25_0_5b"}], 20.0)  # another model
        add_run(store, "c", [{"dataset": "gsm8k", "backend": "llamacpp"}], 20.0)  # another engine
        add_run(store, "d", [{"dataset": "gsm8k"}], 20.0, host="elsewhere")  # another machine
        add_run(store, "e", [{"dataset": "gsm8k", "job_status": "failed"}], 20.0, status="failed")
        add_run(store, "f", [{"dataset": "mt_bench", "judge": {"model": M}}], 20.0)  # judging in its wall
        history = store.measured_jobs(M, E)
        assert store.measured_jobs(M, E, host=socket.gethostname()) == history
    finally:
        store.close()
    gsm8k, arc = history["jobs"]
    assert (gsm8k["dataset"], gsm8k["kinds"], gsm8k["lengths"], gsm8k["wall_seconds"]) == ("gsm8k", ["generate"],
                                                                                          [30, 50], 20.0)
    assert arc["kinds"] == ["loglikelihood"] and gsm8k["task_config"]["data_dir"] == str(DATA)
    # setup: run wall minus its jobs' walls, for runs of this model alone on this engine (run a: 30 - 24)
    assert sorted(history["setup"]) == [pytest.approx(6.0), pytest.approx(10.0)]  # runs a and f (judged, still a load)


def test_characters_per_token_from_stored_samples(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    try:
        assert store.chars_per_token(M) is None
        add_run(store, "a", [{"dataset": "gsm8k"}], 12.0)
        assert store.chars_per_token(M) == pytest.approx(40 / 10)
    finally:
        store.close()


@needs_data
def test_plan_uses_the_rendered_requests_and_this_machine_s_history(catalog, tmp_path):
    from evalmap.api import plan

    cold = plan(M, "gsm8k,arc_challenge", 6, catalog=catalog, store=tmp_path / "none.sqlite", gpu=False,
                data_dir=str(DATA))
    assert not (tmp_path / "none.sqlite").exists()
    assert [j.speed for j in cold.jobs] == ["ref", "ref"] and cold.jobs[0].tokens.startswith(f"{M}'s tokenizer")
    assert cold.jobs[0].lengths.startswith("reference answers") and cold.jobs[1].lengths == ""
    assert cold.jobs[0].generated_range[0] < cold.jobs[0].generated_tokens < cold.jobs[0].generated_range[1]
    assert [m.model for m in cold.loads] == [M] and cold.loads[0].source.startswith("reference 2-core CPU")
    path = tmp_path / "s.sqlite"
    store = Store(path)
    try:
        add_run(store, "a", [{"dataset": "gsm8k", "prompt": 5000, "wall": 60.0, "lengths": [100, 120, 80, 90]},
                             {"dataset": "arc_challenge", "kind": "loglikelihood", "prompt": 900, "completion": 90,
                              "wall": 3.0, "lengths": [20, 25]}], run_wall=70.0)
    finally:
        store.close()
    warm = plan(M, "gsm8k,arc_challenge", 6, catalog=catalog, store=path, gpu=False, data_dir=str(DATA), seed=9)
    gsm8k, arc = warm.jobs
    assert gsm8k.source == "measured on this machine (1 gsm8k job; decode rate of 1 generation job)"
    assert gsm8k.speed == "measured"
    assert gsm8k.lengths == f"this store's 4 {M} answers on transformers under these settings"
    # the stored answers' mean (97.5), with room for an unseen answer at max_tokens (256, weight 0.5 beside 4)
    assert gsm8k.generated_tokens == round(6 * (4 * 97.5 + 0.5 * 256) / 4.5)
    assert arc.source == "measured on this machine (1 arc_challenge job)"
    assert warm.loads[0].seconds == pytest.approx(7.0) and warm.store == str(path)
    assert warm.estimate_seconds() == pytest.approx(gsm8k.estimate_seconds + arc.estimate_seconds + 7.0)
    # other settings (no few-shot): the same store calibrates the engine's rates, not this job's
    zero = plan(M, "gsm8k", 6, catalog=catalog, store=path, gpu=False, data_dir=str(DATA), num_fewshot=0)
    assert zero.jobs[0].source.startswith("measured on this machine (rates of")
    assert "answers under these settings" not in zero.jobs[0].lengths  # 0-shot answers were never stored


def test_plan_refuses_an_unknown_option(catalog):
    from evalmap.api import plan
    from evalmap.errors import EvalmapError

    with pytest.raises(EvalmapError, match="Unknown option\\(s\\) for evalmap.plan: colour"):
        plan(M, "gsm8k", 2, catalog=catalog, colour="red")


def test_a_store_that_cannot_be_read_leaves_the_reference_profiles(catalog, tmp_path):
    from evalmap.api import plan

    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    est = plan(M, "gsm8k", 2, catalog=catalog, store=junk, gpu=False, data_dir=str(tmp_path))
    assert est.jobs[0].speed == "ref" and est.store is None and any("was not read" in n for n in est.notes)
    assert any(n.startswith("gsm8k: counted from the catalog's typical lengths") for n in est.notes)
    assert junk.read_bytes() == b"not a database at all" * 100


@needs_data
def test_cli_plan_table_names_hardware_intervals_loads_and_engines_that_cannot_run(tmp_path, monkeypatch, catalog):
    from typer.testing import CliRunner

    from evalmap.cli import app

    no_gguf = next(m.id for m in catalog.models.values() if m.run.gguf is None and m.hf_repo)
    monkeypatch.delenv("EVALMAP_CATALOG", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("COLUMNS", "250")
    args = ["plan", "--models", f"{M},{no_gguf}", "--datasets", "gsm8k", "--samples", "5", "--data-dir", str(DATA),
            "--store", str(tmp_path / "none.sqlite")]
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if no_gguf in line and "gsm8k" in line)
    assert "no GGUF" in row
    smol = next(line for line in table.stdout.splitlines() if M in line and "gsm8k" in line)
    assert "(" in smol and "-" in smol  # generated tokens and time with their intervals
    assert "(model load)" in table.stdout and "1× H100 80GB" in table.stdout and "2-core CPU" in table.stdout
    data = json.loads(CliRunner().invoke(app, [*args, "--format", "json"]).stdout)
    assert data["jobs"][1]["unavailable"] == {"llamacpp": "no GGUF"} and data["jobs"][1]["seconds"]["llamacpp"] is None
    assert data["totals"]["load_seconds"] > 0 and len(data["loads"]) == 2
    assert set(data["engines"]) == set(planner.ENGINES)


def test_a_run_s_job_walls_are_re_divided_by_the_engine_s_time_on_each_job(tmp_path):
    """The runner charged arc_challenge 11 s and hellaswag 5 s, but the engine spent 2 s on arc's requests and
    14 s on hellaswag's (it sorted both jobs' requests by length): the fit sees 2 s and 14 s, the run's 16 s kept."""
    store = Store(tmp_path / "s.sqlite")
    try:
        add_run(store, "a", [{"dataset": "arc_challenge", "kind": "loglikelihood", "wall": 11.0, "lengths": [1] * 4,
                              "latency": 0.5},
                             {"dataset": "hellaswag", "kind": "loglikelihood", "wall": 5.0, "lengths": [1] * 4,
                              "latency": 3.5}], run_wall=17.0)
        add_run(store, "b", [{"dataset": "gsm8k", "wall": 7.0, "latency": 0.0}, {"dataset": "mbpp", "wall": 3.0}],
                run_wall=11.0)
        jobs = store.measured_jobs(M, E)["jobs"]
    finally:
        store.close()
    assert [round(j["engine_seconds"], 6) for j in jobs] == [2.0, 14.0, 0.0, 0.2]
    assert planner.engine_walls(jobs) == pytest.approx([2.0, 14.0, 7.0, 3.0])  # no engine seconds: walls kept


def test_a_gguf_conversion_done_once_is_left_out_of_the_setup(tmp_path):
    """transformers converts a GGUF once per machine (SmolLM2: 4.5 s of setup, then 0.9 s): a run that did records
    its seconds with its jobs' engine, and the measured setup leaves them out."""
    store = Store(tmp_path / "s.sqlite")
    try:
        add_run(store, "first", [{"dataset": "gsm8k", "wall": 10.0, "backend_facts": {"conversion_seconds": 3.5}}],
                run_wall=14.5)
        add_run(store, "later", [{"dataset": "gsm8k", "wall": 10.0}], run_wall=11.2)
        assert sorted(store.measured_jobs(M, E)["setup"]) == pytest.approx([1.0, 1.2])
    finally:
        store.close()
