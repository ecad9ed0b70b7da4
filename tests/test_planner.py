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


# ---------------------------------------------------------------- recommend (more in test_recommend.py)


def test_recommend_unknown_model(catalog):
    with pytest.raises(Exception, match="qwen25_7b"):
        planner.recommend(catalog, "qwen25_7bb")


# ---------------------------------------------------------------- cost model (docs/cost_model.md)


def test_catalog_workload_counts_loglikelihood_requests_per_choice(catalog):
    for ds_id in ("hellaswag", "arc_challenge", "winogrande", "mathqa"):
        ds = catalog.dataset(ds_id)
        est = planner.estimate_job(catalog, "qwen25_7b", ds_id, 40)
        assert est.samples == 40 and est.requests == 40 * ds.choices
        assert est.prompt_tokens == 40 * ds.choices * (ds.prompt_tokens + ds.answer_tokens)  # contexts as sent
        assert est.generated_tokens == 0 and est.generated_range == (0, 0)
        assert est.tokens == "the catalog's typical lengths (no rendered requests)"


def test_loglikelihood_without_a_fixed_choice_count_assumes_four(catalog):
    assert catalog.dataset("truthfulqa").choices is None
    assert planner.estimate_job(catalog, "qwen25_7b", "truthfulqa", 10).requests == 40


def test_generation_tokens_are_items_times_answer_tokens(catalog):
    ds = catalog.dataset("gsm8k")
    est = planner.estimate_job(catalog, "qwen25_7b", "gsm8k", 50)
    assert (est.requests, est.prompt_tokens, est.generated_tokens) == (50, 50 * ds.prompt_tokens, 50 * ds.answer_tokens)
    assert planner.estimate_job(catalog, "qwen25_7b", "gsm8k", None).samples == ds.count == 1319
    assert planner.estimate_job(catalog, "qwen25_7b", "gsm8k", 10_000).samples == 1319
    five = planner.estimate_job(catalog, "qwen25_7b", "gsm8k", 50, n_samples=5)
    assert five.requests == 250 and five.generated_tokens == 5 * est.generated_tokens


def test_judge_datasets_count_two_turns_and_warn(catalog):
    ds = catalog.dataset("mt_bench")
    est = planner.estimate_job(catalog, "qwen25_7b", "mt_bench", None)
    assert est.requests == 2 * ds.count and est.generated_tokens == 2 * ds.count * ds.answer_tokens
    assert any("judge" in w for w in est.warnings)


def _workload(shapes, lengths=None, items=None, sandboxed=False, observed=True):
    from evalmap.workload import Lengths, Workload

    measured = Lengths(tuple(lengths), "test", observed) if lengths else None
    return Workload("x", items or 1, 1, list(shapes), measured, "test", sandboxed=sandboxed)


def test_prefill_and_decode_follow_the_documented_formulas(catalog):
    from evalmap.workload import RequestShape

    model = catalog.model("qwen25_7b")
    active, weights = model.compute_params_b * 1e9, model.params_b * 1e9
    vllm, cpu = planner.ENGINES["vllm"], planner.ENGINES["llamacpp"]
    ll = _workload([RequestShape("loglikelihood", 300, 0, continuation=5)] * 4, items=10)
    # log-likelihood: prefill only, 2 FLOPs per active parameter per token; contexts and continuations as sent
    seconds = planner.job_seconds(model, ll, "transformers")
    gpu = planner.ENGINES["transformers"]
    assert seconds.value == pytest.approx(2 * active * 10 * 4 * 305 / gpu.flops)
    # llama.cpp answers one item's choices from one evaluation of their shared context
    shared = _workload([RequestShape("loglikelihood", 300, 0, continuation=5)]
                       + [RequestShape("loglikelihood", 300, 300, continuation=5)] * 3, items=10)
    assert planner.job_work(shared, cpu).prefill_tokens == 10 * (300 + 4 * 5)
    assert planner.job_work(shared, planner.ENGINES["transformers-cpu"]).prefill_tokens == 10 * 4 * 305
    # generation on llama.cpp (batch 1): one step per generated token, each reading the Q4 weights once
    gen = _workload([RequestShape("generate", 800, 600, max_tokens=256)], lengths=[100, 200], items=10)
    work = planner.job_work(gen, cpu)
    assert work.prefill_tokens == 10 * 200 and work.decode_steps == pytest.approx(10 * 150)  # the prefix is reused
    step = max(weights * cpu.bytes_per_param / cpu.bandwidth, 2 * active / cpu.flops) + cpu.step_overhead
    # a plan's new items leave room for an unseen answer at max_tokens (weight 0.5 beside the two known)
    new = planner.job_work(gen, cpu, new_items=True)
    assert new.decode_steps == pytest.approx(10 * (100 + 200 + 0.5 * 256) / 2.5)
    assert planner.job_seconds(model, gen, cpu).value == pytest.approx(
        2 * active * 2000 / cpu.flops + new.decode_steps * step)
    # vLLM decodes min(batch, requests) sequences per step, continuously refilled, at least its longest answer
    work = planner.job_work(gen, vllm)
    longest = 100 * 0.5**10 + 200 * (1 - 0.5**10)  # E[max of 10 draws from {100, 200}]
    assert work.batch == 10 and work.decode_steps == pytest.approx(max(10 * 150 / 10, longest))


def test_a_static_batch_runs_until_its_longest_answer(catalog):
    from evalmap.workload import RequestShape

    gen = _workload([RequestShape("generate", 50, max_tokens=100)], lengths=[10, 100], items=4)
    work = planner.job_work(gen, planner.ENGINES["transformers-cpu"], batch=2)
    # E[max of 2 draws from {10, 100}] = 10 × 1/4 + 100 × 3/4 = 77.5 steps per batch of 2, two batches
    assert work.batch == 2 and work.decode_steps == pytest.approx(2 * 77.5)
    one = planner.job_work(gen, planner.ENGINES["transformers-cpu"], batch=1)
    assert one.decode_steps == pytest.approx(4 * 55)  # batch 1: every token is a step


def test_the_interval_comes_from_the_spread_of_generated_lengths(catalog):
    from evalmap.workload import RequestShape

    model = catalog.model("smollm2_135m")
    # max_tokens at the longest stored answer: no unseen longer answer can come (see the next test)
    narrow = _workload([RequestShape("generate", 100, max_tokens=101)], lengths=[100, 101, 99, 100] * 10, items=20)
    wide = _workload([RequestShape("generate", 100, max_tokens=300)], lengths=[10, 300, 20, 70] * 10, items=20)
    a, b = (planner.job_seconds(model, w, "llamacpp") for w in (narrow, wide))
    assert a.low <= a.value <= a.high and b.low < b.value < b.high
    assert (b.high - b.low) / b.value > 5 * (a.high - a.low) / a.value
    ll = _workload([RequestShape("loglikelihood", 100, continuation=3)], items=5)
    c = planner.job_seconds(model, ll, "llamacpp")
    assert c.low == c.value == c.high  # nothing generated, nothing uncertain in the lengths
    # reference answers are not the model's: the high end lets every answer run to max_tokens
    refs = _workload([RequestShape("generate", 100, max_tokens=512)], lengths=[100, 101, 99, 100], items=20,
                     observed=False)
    assert planner.generated_spread(refs).high == 20 * 512
    assert planner.generated_spread(refs).low == 20  # ... or stop after one token: references are not the model
    all_max = _workload([RequestShape("generate", 100, max_tokens=512)], lengths=[512], items=20)
    assert planner.job_seconds(model, refs, "llamacpp").high == pytest.approx(
        planner.job_seconds(model, all_max, "llamacpp").value)


def test_short_stored_answers_leave_room_for_answers_that_run_to_max_tokens(catalog):
    """A small model's lengths are heavy-tailed: 40 short answers do not show that the next 20 all stop, so
    the high end allows some at max_tokens; the more answers are stored, the less room it leaves."""
    from evalmap.workload import RequestShape

    model = catalog.model("smollm2_135m")
    few, many = (_workload([RequestShape("generate", 100, max_tokens=512)], lengths=[2, 3, 40] * k, items=20)
                 for k in (10, 300))
    a, b = (planner.job_seconds(model, w, "llamacpp") for w in (few, many))
    # the expected length itself leans to max_tokens by the unseen answer's weight, less so with more answers
    assert a.value / planner.job_seconds(model, _workload(
        [RequestShape("generate", 100, max_tokens=40)], lengths=[2, 3, 40], items=20), "llamacpp").value > 1
    assert a.value > b.value and a.high > 1.5 * a.value and a.high > 1.5 * b.high
    tokens = planner.generated_spread(few)
    assert tokens.low < few.generated_tokens < tokens.value < 20 * 512 / 10 < tokens.high  # 2 of 20 may run to 512


def test_tensor_parallel_divides_gpu_work(catalog):
    model = catalog.model("qwen25_72b")
    assert model.run.tensor_parallel == 4
    est = planner.estimate_job(catalog, "qwen25_72b", "hellaswag", 100)
    gpu = planner.ENGINES["transformers"]  # no prompt reuse: every context token is computed, on 4 GPUs
    assert est.seconds["transformers"] == pytest.approx(2 * 72.7e9 * est.prompt_tokens / (gpu.flops * 4))


def test_code_execution_adds_sandbox_seconds(catalog):
    from evalmap.workload import RequestShape

    model = catalog.model("qwen25_7b")
    shapes = [RequestShape("generate", 200, max_tokens=512)] * 3
    bare = planner.job_seconds(model, _workload(shapes, [100], items=20), "vllm").value
    run = planner.job_seconds(model, _workload(shapes, [100], items=20, sandboxed=True), "vllm").value
    assert run - bare == pytest.approx(20 * 3 * planner.SANDBOX_SECONDS_PER_PROGRAM)


def test_moe_time_uses_active_parameters(catalog):
    moe = planner.estimate_job(catalog, "qwen3_coder_30b", "hellaswag", 100)
    dense = planner.estimate_job(catalog, "qwen25_coder_32b", "hellaswag", 100)
    assert moe.seconds["vllm"] < dense.seconds["vllm"] / 5


def test_vllm_is_faster_than_transformers_cpu_wherever_both_fit(catalog):
    compared = 0
    for model_id in catalog.models:
        if catalog.model(model_id).objective != "causal_lm":  # a masked LM (8M-parameter ESM) does not generate
            continue
        for ds_id in ("gsm8k", "hellaswag", "humaneval"):
            est = planner.estimate_job(catalog, model_id, ds_id, 20)
            cpu, vllm = est.seconds["transformers-cpu"], est.seconds["vllm"]
            if cpu is not None and vllm is not None:
                compared += 1
                assert vllm < cpu and est.seconds["transformers"] < cpu, (model_id, ds_id)
    assert compared >= 15


def test_70b_does_not_fit_on_cpu(catalog):
    for model_id in ("wizardmath_70b", "llama31_70b", "qwen25_72b"):
        est = planner.estimate_job(catalog, model_id, "gsm8k", 10)
        assert est.seconds["transformers-cpu"] is None and est.seconds["llamacpp"] is None, model_id
        assert est.seconds["vllm"] is not None and est.gpus == 3, model_id


def test_small_models_fit_everywhere(catalog):
    est = planner.estimate_job(catalog, "smollm2_135m", "gsm8k", 5)
    assert all(v is not None and v > 0 for v in est.seconds.values()) and est.unavailable == {}
    assert est.gpus == 1


def test_engines_that_cannot_load_the_model_are_not_estimated(catalog):
    no_gguf = [m for m in catalog.models.values() if m.run.gguf is None and (m.run.hf or m.hf_repo)]
    assert no_gguf
    model = no_gguf[0]
    est = planner.estimate_job(catalog, model.id, "gsm8k", 10)
    assert est.seconds["llamacpp"] is None and est.unavailable["llamacpp"] == "no GGUF"
    assert est.seconds["vllm"] is not None and "vllm" not in est.unavailable
    chosen = planner.estimate_job(catalog, model.id, "gsm8k", 10, backend="llamacpp")
    assert chosen.estimate_seconds is None and chosen.speed == "none"
    assert chosen.source == f"none: llamacpp cannot load {model.id} (no GGUF)"
    assert planner.job_seconds(model, _workload([], items=1), "llamacpp") is None
    fine_tune = catalog.model("qwen25_1_5b_genomic")  # user weights, nothing to load yet
    assert planner.engine_refusal(fine_tune, "vllm") == "no HF weights"
    assert planner.engine_refusal(fine_tune, "openai") is None  # a server holds its own weights


def test_every_reference_column_names_its_hardware():
    for name, profile in planner.ENGINES.items():
        assert profile.hardware and profile.label == f"{name} ({profile.hardware})"
    assert "H100" in planner.ENGINES["vllm"].hardware and "CPU" in planner.ENGINES["llamacpp"].hardware


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
    assert name.startswith("Plan A") and len(pairs) == 10
    assert pairs[0] == ("qwen3_coder_30b", "humaneval", None)
    assert ("qwen25_0_5b", "humaneval", 5) in pairs and ("qwen25_3b", "humaneval", 5) in pairs
    est = planner.estimate_plan(catalog, name, pairs)
    d = est.to_dict()
    assert d["totals"]["jobs"] == 10
    assert d["totals"]["samples"] == est.total("samples") == sum(j.samples for j in est.jobs)
    assert [j.samples for j in est.jobs if j.model == "qwen25_0_5b"] == [5]
    assert est.seconds("transformers-cpu") is None  # a plan total is None as soon as one job cannot run there
    assert est.seconds("vllm") == pytest.approx(sum(j.seconds["vllm"] for j in est.jobs))
    # each model loads once, and the plan's time is its jobs plus those loads
    assert [m.model for m in est.loads] == list(dict.fromkeys(m for m, _, _ in pairs))
    assert est.estimate_seconds() == pytest.approx(
        sum(j.estimate_seconds for j in est.jobs) + sum(m.seconds for m in est.loads))
    low, high = est.estimate_range()
    assert low <= est.estimate_seconds() <= high
    assert d["engines"]["vllm"]["hardware"] == planner.ENGINES["vllm"].hardware


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


# ---------------------------------------------------------------- measured history fitted to the profile

M, E = "qwen25_0_5b", "transformers"  # its catalog default_backend is vllm: E is chosen with backend=
SETTINGS = {"num_fewshot": None, "chat": None, "mode": None, "max_tokens": None, "seed": 1}


def _job(dataset, kind, prompt, completion, wall, calls=10, items=10, lengths=None, settings=None):
    """A Store.measured_jobs row."""
    return {"dataset": dataset, "kinds": [kind], "prompt_tokens": prompt, "completion_tokens": completion,
            "model_calls": calls, "n_items": items, "wall_seconds": wall, "args": {},
            "lengths": lengths if lengths is not None else ([completion // items] * items if kind == "generate"
                                                            else []),
            "task_config": settings or SETTINGS}


def _reference(catalog, job, profile="transformers-cpu"):
    """The profile's (prefill, decode) seconds for a measured job as recorded."""
    prof = planner.ENGINES[profile]
    recorded = planner._recorded_workload(job, None)
    return planner.profile_seconds(prof, catalog.model(M), planner.job_work(recorded, prof))


def test_jobs_of_the_same_dataset_and_settings_scale_the_whole_job(catalog):
    job = _job("arc_challenge", "loglikelihood", 4000, 400, 12.0, calls=40)
    rates = planner.fit_rates(catalog.model(M), planner.ENGINES["transformers-cpu"], {"jobs": [job]},
                              dataset="arc_challenge", settings={**SETTINGS, "seed": 99})  # another seed: other items
    factor = 12.0 / sum(_reference(catalog, job))
    assert rates.prefill == rates.decode == pytest.approx(factor)
    assert rates.source == "measured on this machine (1 arc_challenge job)"
    other = planner.fit_rates(catalog.model(M), planner.ENGINES["transformers-cpu"], {"jobs": [job]},
                              dataset="arc_challenge", settings={**SETTINGS, "num_fewshot": 0})  # other prompts
    assert other.source == "measured on this machine (rates of 1 log-likelihood job)"
    # a generation job's own history is not a whole-job factor: other items answer at other lengths
    gen = _job("gsm8k", "generate", 8000, 1500, 90.0)
    both = planner.fit_rates(catalog.model(M), planner.ENGINES["transformers-cpu"], {"jobs": [job, gen]},
                             dataset="gsm8k", settings=SETTINGS)
    assert both.source == "measured on this machine (1 gsm8k job; decode rate of 1 generation job)"
    pooled = planner.fit_rates(catalog.model(M), planner.ENGINES["transformers-cpu"], {"jobs": [job, gen]},
                               dataset="humaneval", settings=SETTINGS)
    assert both.decode == pooled.decode and pooled.prefill == pytest.approx(factor)
    prefill_s, decode_s = _reference(catalog, gen)  # gsm8k's own prefill factor: its wall less the decoding
    assert both.prefill == pytest.approx((90.0 - both.decode * decode_s) / prefill_s)


def test_loglikelihood_jobs_give_prefill_and_generation_jobs_decode(catalog):
    ll = _job("arc_challenge", "loglikelihood", 4000, 400, 12.0, calls=40)
    gen = _job("gsm8k", "generate", 8000, 1500, 90.0)
    rates = planner.fit_rates(catalog.model(M), planner.ENGINES["transformers-cpu"], {"jobs": [ll, gen]},
                              dataset="humaneval", settings=SETTINGS)
    ll_ref, gen_ref = _reference(catalog, ll), _reference(catalog, gen)
    assert rates.prefill == pytest.approx(12.0 / sum(ll_ref))
    assert rates.decode == pytest.approx((90.0 - rates.prefill * gen_ref[0]) / gen_ref[1])
    assert "1 log-likelihood job, 1 generation job" in rates.source
    only_ll = planner.fit_rates(catalog.model(M), planner.ENGINES["transformers-cpu"], {"jobs": [ll]})
    assert only_ll.prefill == only_ll.decode == pytest.approx(rates.prefill)
    assert planner.fit_rates(catalog.model(M), planner.ENGINES["transformers-cpu"], {"jobs": []}) is None


def test_a_measured_estimate_replaces_the_reference_and_says_so(catalog):
    gen = _job("gsm8k", "generate", 8000, 1500, 90.0)
    history = {"jobs": [gen], "setup": [4.0, 6.0, 5.0]}
    est = planner.estimate_job(catalog, M, "gsm8k", 10, backend=E, measured={(M, E): history}, settings=SETTINGS)
    assert est.speed == "measured"
    assert est.source == "measured on this machine (1 gsm8k job; decode rate of 1 generation job)"
    reference = planner.estimate_job(catalog, M, "gsm8k", 10, backend=E)
    assert reference.speed == "ref" and reference.source.startswith("reference 2-core CPU profile")
    assert est.estimate_seconds == pytest.approx(reference.estimate_seconds * est.measured["prefill"])
    assert est.seconds == reference.seconds  # the reference columns stay the profiles'
    gpu = planner.estimate_job(catalog, M, "gsm8k", 10, backend=E, gpu=True)
    assert gpu.source.startswith("reference H100 profile (transformers")
    load = planner.estimate_load(catalog, M, E, {(M, E): history})
    assert load.seconds == 4.0 and load.source == "measured on this machine (fastest run setup)"
    converting = planner.estimate_load(catalog, M, E, {(M, E): history}, converting=True)  # its cache was emptied
    assert converting.seconds == pytest.approx(4.0 + planner.load_seconds(catalog.model(M), "transformers-cpu"))
    cold = planner.estimate_load(catalog, M, E)
    assert cold.seconds == pytest.approx(planner.load_seconds(catalog.model(M), "transformers-cpu"))
    assert planner.estimate_load(catalog, M, E, converting=True).seconds == pytest.approx(2 * cold.seconds)


def test_a_server_engine_without_measurement_has_no_estimate(catalog):
    est = planner.estimate_job(catalog, M, "gsm8k", 10, backend="openai")
    assert est.estimate_seconds is None and est.speed == "none" and "no reference profile for openai" in est.source


def test_plan_asks_for_history_once_per_model_and_engine(catalog):
    pairs = [(M, "gsm8k", 10), (M, "humaneval", 5), ("qwen25_3b", "gsm8k", 10)]
    asked = []
    history = {"jobs": [_job("gsm8k", "generate", 8000, 1500, 90.0)], "setup": [3.0]}
    est = planner.estimate_plan(catalog, "x", pairs, backend=E, settings=SETTINGS,
                                measured=lambda m, b: asked.append((m, b)) or (history if m == M else None))
    assert asked == [(M, E), ("qwen25_3b", E)]
    assert [j.speed for j in est.jobs] == ["measured", "measured", "ref"]
    assert est.speed == "2/3 measured" and est.to_dict()["totals"]["measured_jobs"] == 2
    assert [m.source.split(" (")[0] for m in est.loads] == ["measured on this machine", "reference 2-core CPU profile"]


def test_batch_size_sets_transformers_batch_only(catalog):
    from evalmap.workload import RequestShape

    model = catalog.model("smollm2_135m")
    gen = _workload([RequestShape("generate", 100, max_tokens=256)], lengths=[20, 60, 200], items=32)
    one, eight = (planner.job_seconds(model, gen, "transformers-cpu", batch=b).value for b in (1, 8))
    assert one > eight  # a batch shares each weight read
    assert planner.job_work(gen, planner.ENGINES["llamacpp"], batch=8).batch == 1  # llama.cpp: one at a time
    assert planner.job_work(gen, planner.ENGINES["vllm"], batch=8).batch == 32  # vLLM schedules its own
    # a stored job's batch comes from its run's arguments (`evalmap run --batch-size`), else the default
    assert planner._batch_of({"args": {"batch_size": 4}}) == 4 and planner._batch_of({"args": {}}) is None


def test_how_far_the_fit_misses_its_own_jobs_widens_the_interval(catalog):
    """Four stored jobs that two rates cannot all explain: the misses' spread is the speed's own uncertainty,
    added to the lengths' in the interval; two jobs fit exactly and tell nothing."""
    from evalmap.workload import RequestShape

    model, cpu = catalog.model(M), planner.ENGINES["transformers-cpu"]
    jobs = [_job("arc_challenge", "loglikelihood", 4000, 400, 12.0, calls=40),
            _job("hellaswag", "loglikelihood", 8000, 800, 18.0, calls=40),
            _job("gsm8k", "generate", 8000, 1500, 90.0), _job("mbpp", "generate", 6000, 900, 50.0)]
    rates = planner.fit_rates(model, cpu, {"jobs": jobs}, dataset="humaneval", settings=SETTINGS)
    assert rates.spread > 0.05
    two = planner.fit_rates(model, cpu, {"jobs": jobs[1:3]}, dataset="humaneval", settings=SETTINGS)
    assert two.spread == 0
    ll = _workload([RequestShape("loglikelihood", 100, continuation=3)], items=5)
    exact = planner.job_seconds(model, ll, cpu, rates=planner.Rates(rates.prefill, rates.decode))
    wide = planner.job_seconds(model, ll, cpu, rates=rates)
    assert exact.low == exact.value == exact.high  # log-likelihood: no lengths to vary
    assert wide.value == exact.value and wide.high - wide.value == pytest.approx(1.96 * rates.spread * wide.value)
