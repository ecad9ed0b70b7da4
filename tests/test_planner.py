"""The planner against the guide's own figures, and the cost model of docs/cost_model.md."""

from __future__ import annotations

import pytest

from evalmap import planner
from evalmap.catalog.loader import load_catalog


@pytest.fixture(scope="module")
def catalog():
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EVALMAP_CATALOG", raising=False)
        return load_catalog()


def _by_key(figures: list[planner.PoolFigures]) -> dict[str, planner.PoolFigures]:
    return {f.key: f for f in figures}


# ---------------------------------------------------------------- usage statistics


def test_usage_totals_are_the_guides_67_and_429(catalog):
    usage = planner.usage(catalog)
    assert usage.scope == "guide"
    assert usage.immediate_total == 67 == usage.guide_totals["immediate"]
    assert usage.comprehensive_total == 429 == usage.guide_totals["comprehensive"]


def test_usage_rows_match_the_guide(catalog):
    usage = planner.usage(catalog)
    assert [(len(f.datasets), len(f.models), f.combinations) for f in usage.immediate] == [
        (3, 4, 12), (2, 3, 6), (7, 7, 49),
    ]  # fmt: skip
    assert [(len(f.datasets), len(f.models), f.combinations) for f in usage.comprehensive] == [
        (5, 4, 20), (6, 3, 18), (3, 1, 3), (6, 4, 24), (26, 3, 78), (26, 11, 286),
    ]  # fmt: skip


def test_whole_catalog_usage_counts_every_model(catalog):
    whole = planner.usage(catalog, whole_catalog=True)
    assert whole.scope == "catalog"
    general = _by_key(whole.immediate)["general_ready"]
    assert len(general.models) == len(catalog.models)
    coding = _by_key(whole.immediate)["coding_ready"]
    assert set(coding.models) == set(catalog.select_models(["category:coding"]))
    assert whole.immediate_total > 67 and whole.comprehensive_total > 429
    d = whole.to_dict()
    assert d["immediate_total"] == whole.immediate_total and d["scope"] == "catalog"


# ---------------------------------------------------------------- evaluation matrix


def test_ready_matrix_figures(catalog):
    ready = _by_key(planner.matrix(catalog, "ready"))
    assert list(ready) == catalog.mapping.ready_matrix
    coding = ready["coding_ready"]
    assert (len(coding.models), len(coding.datasets)) == (4, 3) == (coding.guide_models, coding.guide_datasets)
    math = ready["math_ready"]
    assert (len(math.models), len(math.datasets)) == (3, 2)
    assert math.samples == 11_361 == math.guide_samples
    general = ready["general_ready"]
    assert (len(general.models), len(general.datasets)) == (7, 7)
    assert ready["multimodal_ready"].datasets == [] and ready["multimodal_ready"].samples == 0
    efficiency = ready["efficiency_ready"]
    assert efficiency.samples_range == (14, 140)  # 2-20 samples on each of the 7 ready datasets
    assert efficiency.guide_samples == "Variable"
    genomics = ready["genomics_ready"]
    assert (len(genomics.models), genomics.datasets, genomics.samples) == (4, ["gsm8k"], 1319)


def test_guide_view_samples_reproduce_the_guides_totals(catalog):
    ready = _by_key(planner.matrix(catalog, "ready"))
    assert ready["coding_ready"].guide_view_samples == 1_164 == ready["coding_ready"].guide_samples
    assert ready["general_ready"].guide_view_samples == 13_777 == ready["general_ready"].guide_samples
    # computed from the catalog's own counts, bigcodebench has 1,140 tasks, not 500
    assert ready["coding_ready"].samples == 164 + 500 + 1140
    assert ready["general_ready"].samples == 13_777 - 500 + 1140


def test_expansion_matrix(catalog):
    expansion = _by_key(planner.matrix(catalog, "expansion"))
    assert list(expansion) == catalog.mapping.expansion_matrix
    for f in expansion.values():
        assert (len(f.models), len(f.datasets)) == (f.guide_models, f.guide_datasets), f.key
    assert expansion["math_full"].datasets == ["gsm8k", "math", "mathqa", "math_competition", "aime", "hellaswag"]
    assert "432" in expansion["math_full"].note
    assert expansion["multimodal_full"].samples == 4241 + 214_354 + 2500
    assert "biomistral_7b" in expansion["genomics_full"].models
    general = expansion["general_full"]
    assert not {"qwen25_1_5b_genomic", "qwen25_72b_genomic"} & set(general.models)
    assert general.to_dict()["combinations"] == 286


def test_guide_tier_figures_that_the_catalog_reproduces(catalog):
    """Tiers whose guide figure is a plain sum of catalog counts (or guide counts)."""
    tiers = {(g.category, t.name): t for g in catalog.mapping.groups for t in g.tiers}

    def total(key, guide_view=False):
        ids = catalog.select_datasets(tiers[key].datasets)
        return sum(planner._guide_count(catalog.datasets[i]) if guide_view else catalog.datasets[i].count for i in ids)

    assert total(("coding", "Essential"), guide_view=True) == tiers[("coding", "Essential")].guide_samples == 1164
    assert total(("math", "Essential")) == 1319
    assert total(("math", "Complete"), guide_view=True) == tiers[("math", "Complete")].guide_samples == 16_809
    assert total(("text", "Core")) == tiers[("text", "Core")].guide_samples == 11_294
    assert total(("text", "Baseline"), guide_view=True) == 13_777


# ---------------------------------------------------------------- recommend


def test_recommend_covers_each_category_of_the_model(catalog):
    recs = planner.recommend(catalog, "qwen25_7b")
    assert {r.category for r in recs} == {"coding", "math", "text"}
    tiers = {}
    for r in recs:
        tiers.setdefault(r.category, []).append(r.tier)
    assert list(dict.fromkeys(tiers["coding"])) == ["Essential", "Expansion"]  # "Complete" adds nothing new
    assert list(dict.fromkeys(tiers["math"])) == ["Essential", "Expansion", "Complete"]
    assert list(dict.fromkeys(tiers["text"])) == ["Core", "Baseline", "Expansion", "Validation"]
    coding = [r.dataset for r in recs if r.category == "coding"]
    assert coding == ["humaneval", "mbpp", "bigcodebench", "codecontests", "apps"]
    text = [r.dataset for r in recs if r.category == "text"]
    assert sorted(text) == sorted(catalog.datasets)  # the Validation tier is every dataset, each once
    essential = [r for r in recs if r.tier == "Essential" and r.category == "coding"]
    assert all(r.status == "ready" and r.priority == "High" for r in essential)


def test_recommend_efficiency_model_reports_both_sample_limits(catalog):
    recs = planner.recommend(catalog, "qwen25_0_5b")
    assert {r.sample_limit for r in recs} == {5, 20, None}
    ready = catalog.select_datasets(["status:ready"])
    for limit, tier in ((5, "Speed"), (20, "Efficiency")):
        rows = [r for r in recs if r.sample_limit == limit]
        assert [r.dataset for r in rows] == ready
        assert {r.tier for r in rows} == {tier}
        assert all(r.samples == min(limit, catalog.datasets[r.dataset].count) for r in rows)
    specialized = [r.dataset for r in recs if r.sample_limit is None]
    assert specialized == ["efficiency_bench", "mobile_benchmark"]


def test_recommend_unknown_model(catalog):
    with pytest.raises(Exception, match="qwen25_7b"):
        planner.recommend(catalog, "qwen25_7bb")


# ---------------------------------------------------------------- cost model


def test_loglikelihood_requests_are_items_times_choices(catalog):
    for ds_id in ("hellaswag", "arc_challenge", "winogrande", "mathqa"):
        ds = catalog.dataset(ds_id)
        est = planner.estimate_job(catalog, "qwen25_7b", ds_id, 40)
        assert est.samples == 40
        assert est.requests == 40 * ds.choices
        assert est.prompt_tokens == 40 * (ds.prompt_tokens + ds.choices * ds.answer_tokens)
        assert est.generated_tokens == 0


def test_loglikelihood_without_a_fixed_choice_count_assumes_four(catalog):
    assert catalog.dataset("truthfulqa").choices is None
    assert planner.estimate_job(catalog, "qwen25_7b", "truthfulqa", 10).requests == 40


def test_generation_tokens_are_items_times_answer_tokens(catalog):
    ds = catalog.dataset("gsm8k")
    est = planner.estimate_job(catalog, "qwen25_7b", "gsm8k", 50)
    assert (est.requests, est.prompt_tokens, est.generated_tokens) == (
        50, 50 * ds.prompt_tokens, 50 * ds.answer_tokens,
    )  # fmt: skip
    full = planner.estimate_job(catalog, "qwen25_7b", "gsm8k", None)
    assert full.samples == ds.count == 1319
    capped = planner.estimate_job(catalog, "qwen25_7b", "gsm8k", 10_000)
    assert capped.samples == 1319  # a limit above the dataset size is the dataset
    five = planner.estimate_job(catalog, "qwen25_7b", "gsm8k", 50, n_samples=5)
    assert five.requests == 250 and five.generated_tokens == 5 * est.generated_tokens


def test_judge_datasets_count_two_turns_and_warn(catalog):
    ds = catalog.dataset("mt_bench")
    est = planner.estimate_job(catalog, "qwen25_7b", "mt_bench", None)
    assert est.requests == 2 * ds.count
    assert est.generated_tokens == 2 * ds.count * ds.answer_tokens
    assert any("judge" in w for w in est.warnings)


def test_prefill_and_decode_follow_the_documented_formulas(catalog):
    model = catalog.model("qwen25_7b")
    active = model.compute_params_b * 1e9
    vllm = planner.ENGINES["vllm"]
    # loglikelihood: prefill only, 2 FLOPs per active parameter per token
    ll = planner.estimate_job(catalog, "qwen25_7b", "hellaswag", 100)
    assert ll.seconds["vllm"] == pytest.approx(2 * active * ll.prompt_tokens / vllm.flops)
    # generation on llama.cpp (batch 1): decode is bound by reading the Q4 weights per token
    cpu = planner.ENGINES["llamacpp"]
    gen = planner.estimate_job(catalog, "qwen25_7b", "gsm8k", 10)
    prefill = 2 * active * gen.prompt_tokens / cpu.flops
    step = max(model.params_b * 1e9 * cpu.bytes_per_param / cpu.bandwidth, 2 * active * 1 / cpu.flops)
    assert gen.seconds["llamacpp"] == pytest.approx(prefill + gen.generated_tokens * step)
    # vLLM decodes min(batch, requests) sequences per step
    batch = min(vllm.batch, gen.requests)
    step = max(model.params_b * 1e9 * 2 / vllm.bandwidth, 2 * active * batch / vllm.flops)
    assert gen.seconds["vllm"] == pytest.approx(
        2 * active * gen.prompt_tokens / vllm.flops + gen.generated_tokens / batch * step
    )


def test_tensor_parallel_divides_gpu_work(catalog):
    model = catalog.model("qwen25_72b")
    assert model.run.tensor_parallel == 4
    vllm = planner.ENGINES["vllm"]
    est = planner.estimate_job(catalog, "qwen25_72b", "hellaswag", 100)
    assert est.seconds["vllm"] == pytest.approx(2 * 72.7e9 * est.prompt_tokens / (vllm.flops * 4))


def test_code_execution_adds_sandbox_seconds(catalog):
    profile = planner.ENGINES["vllm"]
    model = catalog.model("qwen25_7b")
    est = planner.estimate_job(catalog, "qwen25_7b", "humaneval", 20, n_samples=3)
    bare = planner._engine_seconds(profile, model, est.prompt_tokens, est.generated_tokens, est.requests)
    assert est.seconds["vllm"] - bare == pytest.approx(20 * 3 * planner.SANDBOX_SECONDS_PER_PROGRAM)


def test_moe_time_uses_active_parameters(catalog):
    moe = planner.estimate_job(catalog, "qwen3_coder_30b", "hellaswag", 100)
    dense = planner.estimate_job(catalog, "qwen25_coder_32b", "hellaswag", 100)
    assert moe.seconds["vllm"] < dense.seconds["vllm"] / 5


def test_vllm_is_faster_than_transformers_cpu_wherever_both_fit(catalog):
    compared = 0
    for model_id in catalog.models:
        for ds_id in ("gsm8k", "hellaswag", "humaneval"):
            est = planner.estimate_job(catalog, model_id, ds_id, 20)
            cpu, vllm = est.seconds["transformers-cpu"], est.seconds["vllm"]
            if cpu is not None and vllm is not None:
                compared += 1
                assert vllm < cpu, (model_id, ds_id)
                assert est.seconds["transformers"] < cpu, (model_id, ds_id)
    assert compared >= 15


def test_70b_does_not_fit_on_cpu(catalog):
    for model_id in ("wizardmath_70b", "llama31_70b", "qwen25_72b"):
        est = planner.estimate_job(catalog, model_id, "gsm8k", 10)
        assert est.seconds["transformers-cpu"] is None, model_id
        # tensor_parallel splits GPUs, not a CPU's memory: a 70B Q4 GGUF (~42 GB) exceeds 24 GB
        assert est.seconds["llamacpp"] is None, model_id
        assert est.seconds["vllm"] is not None, model_id
        assert est.gpus == 3


def test_small_models_fit_everywhere(catalog):
    est = planner.estimate_job(catalog, "smollm2_135m", "gsm8k", 5)
    assert all(v is not None and v > 0 for v in est.seconds.values())
    assert est.gpus == 1


def test_gpus_needed(catalog):
    assert planner.gpus_needed(catalog.model("qwen25_7b")) == 1
    assert planner.gpus_needed(catalog.model("qwen3_coder_30b")) == 1  # MoE: all 30.5B weights resident
    assert planner.gpus_needed(catalog.model("wizardmath_70b")) == 3  # ceil(70 * 2 * 1.2 / 80)


def test_team_fine_tune_without_weights_warns(catalog):
    est = planner.estimate_job(catalog, "qwen25_1_5b_genomic", "genomics_benchmark", 5)
    assert any("run.hf" in w for w in est.warnings)


# ---------------------------------------------------------------- plans


def test_plan_a_has_10_jobs(catalog):
    name, pairs = planner.named_plan_pairs(catalog, "A")
    assert name.startswith("Plan A")
    assert len(pairs) == 10
    assert pairs[0] == ("qwen3_coder_30b", "humaneval", None)
    assert ("qwen25_0_5b", "humaneval", 5) in pairs and ("qwen25_3b", "humaneval", 5) in pairs
    est = planner.estimate_plan(catalog, name, pairs)
    d = est.to_dict()
    assert d["totals"]["jobs"] == 10
    assert d["totals"]["samples"] == est.total("samples") == sum(j.samples for j in est.jobs)
    assert [j.samples for j in est.jobs if j.model == "qwen25_0_5b"] == [5]
    # a plan total is None ('does not fit') as soon as one job does not fit
    assert est.seconds("transformers-cpu") is None
    assert est.seconds("vllm") == pytest.approx(sum(j.seconds["vllm"] for j in est.jobs))


def test_plans_b_and_c(catalog):
    assert len(planner.named_plan_pairs(catalog, "B")[1]) == 6
    assert len(planner.named_plan_pairs(catalog, "c")[1]) == 2 * 3 + 3


def test_ad_hoc_plan_pairs_are_model_major_and_capped(catalog):
    pairs = planner.plan_pairs(catalog, ["qwen25_7b", "qwen3_8b"], ["gsm8k", "status:ready"], 7)
    assert len(pairs) == 2 * 7
    assert pairs[0] == ("qwen25_7b", "gsm8k", 7) and pairs[7][0] == "qwen3_8b"
    est = planner.estimate_plan(catalog, "x", pairs)
    assert all(j.samples <= 7 for j in est.jobs)
    assert planner.estimate_plan(catalog, "x", pairs, n_samples=2).total("requests") > est.total("requests")


# ---------------------------------------------------------------- measured throughput (issue 12)

M, E = "qwen25_0_5b", "transformers"  # its catalog default_backend
# a finished job of M on E: 3,000 prompt + 1,000 completion tokens in 20 s = 0.005 s per token
MEASURED = {"jobs": 1, "prompt_tokens": 3000, "completion_tokens": 1000, "wall_seconds": 20.0, "model_calls": 10}


def _store_with_jobs(path, jobs):
    """A store holding one run per job: (model, backend, status, prompt, completion, wall, host or None)."""
    from evalmap.store import Store

    store = Store(path)
    try:
        for i, (model, backend, status, prompt, completion, wall, host) in enumerate(jobs):
            run_id, _ = store.open_run(f"key{i}", {}, 1234, "test", {})
            job_id = store.open_job(run_id, model, "gsm8k", {"name": backend, "version": "x"}, {}, "h", 10)
            store.add_job_counters(
                job_id, model_calls=10, prompt_tokens=prompt, completion_tokens=completion, wall_seconds=wall
            )
            store.finish_job(job_id, status)
            store.finish_run(run_id, "finished", wall)
            if host:
                store.db.execute("UPDATE runs SET host=? WHERE id=?", (host, run_id))
    finally:
        store.close()
    return path


def test_measured_rate_replaces_the_reference_profile(catalog):
    est = planner.estimate_job(catalog, M, "gsm8k", 10, measured={(M, E): MEASURED})
    assert est.engine == E
    assert est.prompt_tokens + est.generated_tokens == 10 * 900 + 10 * 150
    assert est.estimate_seconds == pytest.approx(0.005 * 10_500) == pytest.approx(52.5)
    assert est.source == "measured (1 job on this host)" and est.speed == "measured"
    assert est.measured["seconds_per_token"] == pytest.approx(0.005)
    assert est.seconds["transformers-cpu"] != pytest.approx(52.5)  # the reference columns stay as they were
    # a callable works as a mapping does, and is asked with (model, backend)
    asked = []
    via_call = planner.estimate_job(catalog, M, "gsm8k", 10, measured=lambda m, b: asked.append((m, b)) or MEASURED)
    assert asked == [(M, E)] and via_call.estimate_seconds == pytest.approx(52.5)


def test_without_a_measurement_the_reference_profile_is_used_and_named(catalog):
    cpu = planner.estimate_job(catalog, M, "gsm8k", 10)
    assert cpu.source == "reference transformers-cpu" and cpu.speed == "ref" and cpu.measured is None
    assert cpu.estimate_seconds == cpu.seconds["transformers-cpu"]
    gpu = planner.estimate_job(catalog, M, "gsm8k", 10, gpu=True)
    assert gpu.source == "reference transformers" and gpu.estimate_seconds == gpu.seconds["transformers"]
    # a measurement of another model or another engine does not count
    other = {("qwen25_3b", E): MEASURED, (M, "llamacpp"): MEASURED}
    assert planner.estimate_job(catalog, M, "gsm8k", 10, measured=other).source == "reference transformers-cpu"
    # a chosen engine uses its own measurement, or its own profile
    llama = planner.estimate_job(catalog, M, "gsm8k", 10, backend="llamacpp", measured=other)
    assert llama.engine == "llamacpp" and llama.estimate_seconds == pytest.approx(52.5)
    vllm = planner.estimate_job(catalog, M, "gsm8k", 10, backend="vllm", measured=other)
    assert vllm.source == "reference vllm" and vllm.estimate_seconds == vllm.seconds["vllm"]
    # no tokens recorded (nothing to divide by): not a measurement
    empty = {(M, E): {**MEASURED, "prompt_tokens": 0, "completion_tokens": 0}}
    assert planner.estimate_job(catalog, M, "gsm8k", 10, measured=empty).speed == "ref"


def test_a_server_engine_without_measurement_has_no_estimate(catalog):
    est = planner.estimate_job(catalog, M, "gsm8k", 10, backend="openai")
    assert est.estimate_seconds is None and est.speed == "none" and est.source == "no reference profile for openai"
    served = planner.estimate_job(catalog, M, "gsm8k", 10, backend="openai", measured={(M, "openai"): MEASURED})
    assert served.estimate_seconds == pytest.approx(52.5)


def test_a_rate_measured_on_another_token_mix_warns(catalog):
    est = planner.estimate_job(catalog, M, "hellaswag", 10, measured={(M, E): MEASURED})  # no generated tokens
    assert est.speed == "measured" and est.estimate_seconds == pytest.approx(0.005 * est.prompt_tokens)
    assert any("25% generated tokens, hellaswag has 0%" in w for w in est.warnings)
    assert not any("generated tokens" in w for w in planner.estimate_job(catalog, M, "gsm8k", 10).warnings)
    # gsm8k generates 14% of its tokens: within a factor of 2 of the measured 25%, no warning
    similar = planner.estimate_job(catalog, M, "gsm8k", 10, measured={(M, E): MEASURED})
    assert not any("generated tokens" in w for w in similar.warnings)
    # a little generation measured (10%), none in the job: still warned
    little = {(M, E): {**MEASURED, "prompt_tokens": 9000}}
    prefill_only = planner.estimate_job(catalog, M, "hellaswag", 10, measured=little)
    assert any("10% generated" in w for w in prefill_only.warnings)


def test_plan_totals_count_the_measured_jobs(catalog):
    pairs = [(M, "gsm8k", 10), (M, "humaneval", 5), ("qwen25_3b", "gsm8k", 10)]
    asked = []
    est = planner.estimate_plan(catalog, "x", pairs, measured=lambda m, b: asked.append((m, b)) or (
        MEASURED if m == M else None))
    assert asked == [(M, E), ("qwen25_3b", "vllm")]  # once per (model, engine)
    assert [j.speed for j in est.jobs] == ["measured", "measured", "ref"]
    assert est.measured_jobs == 2 and est.speed == "2/3 measured"
    totals = est.to_dict()["totals"]
    assert totals["measured_jobs"] == 2
    assert totals["estimate_seconds"] == pytest.approx(sum(j.estimate_seconds for j in est.jobs))
    assert est.to_dict()["jobs"][0]["source"] == "measured (1 job on this host)"


def test_api_plan_reads_the_store_measurement(catalog, tmp_path):
    from evalmap.api import plan

    path = _store_with_jobs(tmp_path / "store.sqlite", [(M, E, "finished", 3000, 1000, 20.0, None)])
    est = plan(M, "gsm8k", 10, catalog=catalog, store=path, gpu=False)
    (job,) = est.jobs
    assert job.source == "measured (1 job on this host)" and job.estimate_seconds == pytest.approx(52.5)
    assert est.store == str(path) and est.notes == []
    # two finished jobs on this host: their tokens and seconds are summed (1,000 more tokens in 10 s more)
    path2 = _store_with_jobs(
        tmp_path / "two.sqlite", [(M, E, "finished", 3000, 1000, 20.0, None), (M, E, "finished", 500, 500, 10.0, None)]
    )
    (two,) = plan(M, "gsm8k", 10, catalog=catalog, store=path2, gpu=False).jobs
    assert two.source == "measured (2 jobs on this host)" and two.estimate_seconds == pytest.approx(30 / 5000 * 10_500)


def test_api_plan_ignores_jobs_of_another_model_engine_host_or_unfinished(catalog, tmp_path):
    from evalmap.api import plan

    path = _store_with_jobs(
        tmp_path / "store.sqlite",
        [
            ("qwen25_3b", E, "finished", 3000, 1000, 20.0, None),  # another model
            (M, "llamacpp", "finished", 3000, 1000, 20.0, None),  # another engine
            (M, E, "finished", 3000, 1000, 20.0, "some-other-host"),  # another host
            (M, E, "failed", 3000, 1000, 20.0, None),  # not finished
        ],
    )
    (job,) = plan(M, "gsm8k", 10, catalog=catalog, store=path, gpu=False).jobs
    assert job.source == "reference transformers-cpu" and job.estimate_seconds == job.seconds["transformers-cpu"]
    (llama,) = plan(M, "gsm8k", 10, catalog=catalog, store=path, gpu=False, backend="llamacpp").jobs
    assert llama.speed == "measured" and llama.estimate_seconds == pytest.approx(52.5)


def test_api_plan_without_a_store_file_creates_none(catalog, tmp_path, monkeypatch):
    from evalmap.api import plan

    missing = tmp_path / "none" / "store.sqlite"
    est = plan(M, "gsm8k", 10, catalog=catalog, store=missing, gpu=False)
    assert est.jobs[0].source == "reference transformers-cpu" and est.store is None
    assert est.notes == [f"no store at {missing}: reference profiles only"]
    home = tmp_path / "home"
    monkeypatch.setenv("EVALMAP_HOME", str(home))
    default = plan(M, "gsm8k", 10, catalog=catalog, gpu=False)
    assert default.jobs[0].speed == "ref" and default.notes == []  # nothing run yet: no note
    assert not missing.parent.exists() and not home.exists()


def test_api_plan_falls_back_when_the_store_cannot_be_read(catalog, tmp_path):
    from evalmap.api import plan

    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    est = plan(M, "gsm8k", 10, catalog=catalog, store=junk, gpu=False)
    assert est.jobs[0].speed == "ref" and est.store is None and "was not read" in est.notes[0]
    assert junk.read_bytes() == b"not a database at all" * 100


def test_cli_plan_shows_the_speed_source(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from evalmap.cli import app

    monkeypatch.delenv("EVALMAP_CATALOG", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # transformers' reference is the CPU profile
    path = _store_with_jobs(tmp_path / "store.sqlite", [(M, E, "finished", 3000, 1000, 20.0, None)])
    args = ["plan", "--models", f"{M},qwen25_3b", "--datasets", "gsm8k", "--samples", "10", "--store", str(path)]
    result = CliRunner().invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [j["source"] for j in data["jobs"]] == ["measured (1 job on this host)", "reference vllm"]
    assert data["jobs"][0]["estimate_seconds"] == pytest.approx(52.5)
    assert data["totals"]["measured_jobs"] == 1 and data["totals"]["store"] == str(path)
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if M in line)
    assert "measured" in row and "52 s" in row
    assert "1/2 measured" in table.stdout
    missing = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "nope.sqlite")])
    assert missing.exit_code == 0 and "0/2 measured" in missing.stdout
    assert not (tmp_path / "nope.sqlite").exists()
