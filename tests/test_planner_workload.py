"""What the planner counts: the task's own requests for a seeded sample of the job's items, tokens by the
model's tokenizer (checked against what an engine records), generated lengths from history or references."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalmap.catalog.loader import load_catalog
from evalmap.store import Store
from evalmap.tasks.base import TaskConfig
from evalmap.tasks.registry import build_task
from evalmap.workload import (
    DEFAULT_CHARS_PER_TOKEN,
    CharTokens,
    job_workload,
    model_tokens,
    plan_workloads,
    reference_answers,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="the shared datasets folder is not here")
SMOL = "smollm2_135m"


@pytest.fixture(scope="module")
def catalog():
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EVALMAP_CATALOG", raising=False)
        return load_catalog()


def _task(catalog, dataset, **options):
    return build_task(catalog.dataset(dataset), TaskConfig(data_dir=str(DATA), **options))


@needs_data
def test_the_embedded_model_counts_with_its_own_tokenizer(catalog):
    tokens = model_tokens(catalog.model(SMOL))
    assert tokens.how.startswith(f"{SMOL}'s tokenizer") and tokens.per_unit == 1.0
    work = job_workload(_task(catalog, "arc_challenge"), catalog.dataset("arc_challenge"), 6, 1234, tokens)
    assert work.items == work.sampled == 6
    assert all(r.kind == "loglikelihood" for r in work.requests) and work.lengths is None
    # an item's choices share its context: every request after the first reuses all of it
    firsts = work.requests[0::4]
    assert all(r.shared == r.prompt for i, r in enumerate(work.requests) if i % 4)
    assert all(r.shared < r.prompt for r in firsts[1:])


@needs_data
@pytest.mark.slow
def test_counts_equal_what_llamacpp_records(catalog, tmp_path):
    """The plan's token counts against the same jobs run on llama.cpp (the engine's own counts)."""
    import evalmap

    jobs = {"arc_challenge": {}, "gsm8k": {"max_tokens": 4}}
    tokens = model_tokens(catalog.model(SMOL))
    for dataset, options in jobs.items():
        result = evalmap.evaluate(SMOL, dataset, samples=3, backend="llamacpp", data_dir=str(DATA),
                                  store=tmp_path / f"{dataset}.sqlite", quiet=True, **options)
        (job,) = result.jobs
        work = job_workload(_task(catalog, dataset, **options), catalog.dataset(dataset), 3, 1234, tokens)
        assert work.prompt_tokens == job.prompt_tokens, dataset
        if dataset == "arc_challenge":
            assert work.continuation_tokens == job.completion_tokens
        assert work.request_count == job.model_calls


@needs_data
def test_chat_requests_are_counted_through_the_chat_template(catalog):
    tokens = model_tokens(catalog.model(SMOL))
    plain = job_workload(_task(catalog, "gsm8k", chat=False), catalog.dataset("gsm8k"), 4, 1, tokens)
    chat = job_workload(_task(catalog, "gsm8k", chat=True), catalog.dataset("gsm8k"), 4, 1, tokens)
    assert chat.prompt_tokens > plain.prompt_tokens  # role markers around 17 messages
    fewer = job_workload(_task(catalog, "gsm8k", num_fewshot=0), catalog.dataset("gsm8k"), 4, 1, tokens)
    assert fewer.prompt_tokens < plain.prompt_tokens / 5  # the run's options change what is counted


@needs_data
def test_without_a_tokenizer_characters_per_token_say_so(catalog):
    model = catalog.model("qwen25_7b")  # neither its GGUF nor its tokenizer is on this machine
    tokens = model_tokens(model)
    assert isinstance(tokens, CharTokens) and "characters per token" in tokens.how
    assert f"no {model.id} tokenizer here" in tokens.how and tokens.ratio == DEFAULT_CHARS_PER_TOKEN
    task = _task(catalog, "gsm8k", num_fewshot=0)
    work = job_workload(task, catalog.dataset("gsm8k"), 5, 1, tokens)
    chars = sum(len(r.prompt) for item in task.items(5, 1) for r in task.requests(item))
    assert work.prompt_tokens == pytest.approx(chars / DEFAULT_CHARS_PER_TOKEN, rel=0.01)
    calibrated = model_tokens(model, chars_per_token=3.0)
    assert calibrated.ratio == 3.0 and "this store's qwen25_7b samples" in calibrated.how


@needs_data
def test_reference_answers_are_what_the_model_is_shown_or_the_canonical_solution(catalog):
    gsm8k = _task(catalog, "gsm8k")
    item = gsm8k.items(1, 1)[0]
    answers = reference_answers(gsm8k, item, "")
    assert len(answers) == 8 and all(a.rstrip().endswith(".") and "The answer is" in a for a in answers)
    humaneval = _task(catalog, "humaneval")
    item = humaneval.items(1, 1)[0]
    request = humaneval.requests(item)[0]
    (solution,) = reference_answers(humaneval, item, request.prompt)
    assert not solution.startswith(request.prompt[:20])  # the prompt itself is not generated
    tokens = model_tokens(catalog.model(SMOL))
    work = job_workload(humaneval, catalog.dataset("humaneval"), 5, 1, tokens)
    assert work.lengths.source.startswith("reference answers")
    assert 5 < work.lengths.mean < 200  # cut at the stop sequences: no test harness after the function


@needs_data
def test_stored_answers_under_the_same_settings_give_the_lengths(catalog, tmp_path):
    store = Store(tmp_path / "store.sqlite")
    try:
        config = _task(catalog, "gsm8k").config
        run_id, _ = store.open_run("k", {}, 1, "v", {})
        for settings, lengths in (({**vars(config), "seed": 7, "data_dir": "/elsewhere"}, [30, 50]),
                                  ({**vars(config), "num_fewshot": 0}, [999])):
            job = store.open_job(run_id, SMOL, "gsm8k", {"name": "llamacpp"}, settings, "h", 2)
            store.db.execute("UPDATE jobs SET model_calls=2, n_items=2 WHERE id=?", (job,))
            store.add_samples(job, [
                {"item_id": f"{i}-{settings['num_fewshot']}", "position": i, "prompt": "p", "output": "o",
                 "extracted": None, "target": None, "metrics": {}, "details": {}, "prompt_tokens": 10,
                 "completion_tokens": n, "latency_s": 0.1}
                for i, n in enumerate(lengths)])
            store.finish_job(job, "finished")
            run_id, _ = store.open_run(f"k{len(lengths)}", {}, 1, "v", {})
        assert sorted(store.generated_lengths(SMOL, "gsm8k", vars(config))) == [30, 50]
        workloads, notes = plan_workloads(catalog, [(SMOL, "gsm8k", 4)], config, 1, store)
        work = workloads[(SMOL, "gsm8k")]
        assert work.lengths.values == (30, 50)
        assert "2 smollm2_135m answers (other engines) under these settings" in work.lengths.source
        assert notes == []
        # answers on the planned engine come first: the same weights answer at other lengths elsewhere
        engine = catalog.model(SMOL).run.default_backend
        job = store.open_job(run_id, SMOL, "gsm8k", {"name": engine}, vars(config), "h", 1)
        store.db.execute("UPDATE jobs SET model_calls=1, n_items=1 WHERE id=?", (job,))
        store.add_samples(job, [{"item_id": "0-own", "position": 0, "prompt": "p", "output": "o", "extracted": None,
                                 "target": None, "metrics": {}, "details": {}, "prompt_tokens": 10,
                                 "completion_tokens": 70, "latency_s": 0.1}])
        store.finish_job(job, "finished")
        workloads, _ = plan_workloads(catalog, [(SMOL, "gsm8k", 4)], config, 1, store)
        own = workloads[(SMOL, "gsm8k")].lengths
        assert own.values == (70,) and f"1 smollm2_135m answer on {engine} under" in own.source
    finally:
        store.close()


def test_a_dataset_without_data_here_falls_back_to_the_catalog_with_a_note(catalog, tmp_path):
    config = TaskConfig(data_dir=str(tmp_path))
    workloads, notes = plan_workloads(catalog, [(SMOL, "gsm8k", 4)], config, 1)
    assert workloads == {} and len(notes) == 1
    assert notes[0].startswith("gsm8k: counted from the catalog's typical lengths (")
