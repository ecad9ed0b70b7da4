"""Models named without YAML: a catalog model's HF repo id, hf:ORG/NAME, openai:NAME, a local folder or .gguf
file; and the run options that go with them (--max-tokens, --samples vs --n-samples)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from evalmap.catalog import refs
from evalmap.catalog.loader import load_catalog
from evalmap.cli import app
from evalmap.errors import EvalmapError, UnknownIdError


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_catalog_hf_repo_ids_name_catalog_models(catalog):
    assert catalog.model_id("Qwen/Qwen2.5-7B-Instruct") == "qwen25_7b"
    assert catalog.model_id("hf:qwen/qwen2.5-7b-instruct") == "qwen25_7b"  # hub ids are case-insensitive
    assert catalog.select_models(["HuggingFaceTB/SmolLM2-135M-Instruct", "qwen25_7b"]) == ["smollm2_135m", "qwen25_7b"]
    with pytest.raises(EvalmapError, match="hf:someone/Unknown-7B"):
        catalog.model_id("someone/Unknown-7B")
    with pytest.raises(UnknownIdError, match="Did you mean 'qwen25_7b'"):
        catalog.model_id("qwen25_7bb")


def test_references_become_ad_hoc_entries(catalog):
    refs_given = ["hf:HuggingFaceTB/SmolLM2-135M-Instruct", "hf:org/Foo-1.5B-Chat", "openai:llama3-8b", "guide:coding"]
    cat = catalog.with_model_refs(refs_given)
    assert cat.model_id(refs_given[0]) == "smollm2_135m"  # a catalog model stays itself
    foo = cat.model("hf:org/Foo-1.5B-Chat")
    assert (foo.id, foo.params_b, foo.run.default_backend, foo.run.hf, foo.hf_repo) == (
        "foo_1_5b_chat", 1.5, "transformers", "org/Foo-1.5B-Chat", "org/Foo-1.5B-Chat"
    )
    assert "params_b" in foo.unverified and "context_length" in foo.unverified
    served = cat.model("openai:llama3-8b")
    assert (served.id, served.run.default_backend, served.run.server_model, served.params_b) == (
        "llama3_8b", "openai", "llama3-8b", 8.0
    )
    assert cat.version != catalog.version  # a run on an ad-hoc model is its own run
    assert catalog.with_model_refs(refs_given[:1]).version == catalog.version
    clash = cat.with_model_refs(["hf:other/Foo-1.5B-Chat"])
    assert clash.model_id("hf:other/Foo-1.5B-Chat") == "foo_1_5b_chat_2"


def test_local_folder_facts(catalog, tmp_path):
    folder = tmp_path / "my-vlm"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"torch_dtype": "bfloat16", "vision_config": {}, "text_config": {"max_position_embeddings": 2048}})
    )
    (folder / "model.safetensors").write_bytes(b"\0" * 3_000_000)  # 1.5 M bf16 weights
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    cat = catalog.with_model_refs([str(folder)])
    model = cat.model(str(folder))
    assert (model.id, model.context_length, model.modality, model.chat_template) == (
        "my_vlm", 2048, "vision-language", True
    )
    assert model.params_b == pytest.approx(0.0015) and model.run.hf == str(folder.resolve())
    assert refs.is_model_ref(str(folder)) and not refs.is_model_ref("qwen25_7b")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(EvalmapError, match="cannot be read"):
        catalog.with_model_refs([str(broken)])


def test_size_from_name():
    assert refs.size_from_name("Qwen2.5-0.5B-Instruct") == 0.5
    assert refs.size_from_name("SmolLM2-135M-Instruct") == pytest.approx(0.135)
    assert refs.size_from_name("Mixtral-8x7B") == 56.0
    assert refs.size_from_name("gpt-4o-mini") is None


def test_plan_takes_a_model_outside_the_catalog(tmp_path):
    result = CliRunner().invoke(
        app, ["plan", "--models", "hf:org/Foo-1.5B-Chat,Qwen/Qwen2.5-7B-Instruct", "--datasets", "gsm8k",
              "--samples", "5", "--store", str(tmp_path / "none.sqlite"), "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    jobs = json.loads(result.stdout)["jobs"]
    assert [(j["model"], j["engine"]) for j in jobs] == [("foo_1_5b_chat", "transformers"), ("qwen25_7b", "vllm")]


def test_help_tells_samples_from_n_samples():
    for command in ("run", "plan"):
        text = " ".join(CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).stdout.split())
        assert "ITEMS per dataset" in text and "--limit" in text and "GENERATIONS per item" in text
        assert "hf:ORG/NAME" in text and "openai:NAME" in text
    run_help = " ".join(CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).stdout.split())
    assert "--max-tokens" in run_help and "--unsafe-no-sandbox" in run_help


def test_a_gguf_file_runs_with_max_tokens(tmp_path, shared_data, embedded_on_llamacpp):
    """The embedded GGUF by its path (no catalog entry), gsm8k with --max-tokens 8: the answers stop there."""
    env = {**os.environ, "EVALMAP_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-m", "evalmap", "run", "--models", str(embedded_on_llamacpp), "--datasets", "gsm8k",
         "--samples", "2", "--num-fewshot", "0", "--max-tokens", "8", "--data-dir", str(shared_data), "--format",
         "json"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (job,) = json.loads(proc.stdout)["jobs"]
    assert job["model"] == "smollm2_135m_instruct_q4_1" and job["backend"]["name"] == "llamacpp"
    assert job["task_config"]["max_tokens"] == 8 and job["n"] == 2
    assert 0 < job["tokens"]["completion"] <= 2 * 8


def test_an_openai_reference_runs_on_the_server(tmp_path):
    """openai:NAME sends NAME to the --base-url server, with no catalog entry."""
    from test_bad_input import GSM8K_OK, FakeServer

    (tmp_path / "data" / "gsm8k").mkdir(parents=True)
    (tmp_path / "data" / "gsm8k" / "test.jsonl").write_text(GSM8K_OK * 2)
    server = FakeServer()
    try:
        result = CliRunner().invoke(
            app, ["run", "--models", "openai:my-served-7b", "--datasets", "gsm8k", "--base-url", server.url,
                  "--data-dir", str(tmp_path / "data"), "--store", str(tmp_path / "s.sqlite"), "--quiet",
                  "--format", "json"],
        )  # fmt: skip
    finally:
        server.close()
    assert result.exit_code == 0, result.output
    (job,) = json.loads(result.stdout)["jobs"]
    assert (job["model"], job["backend"]["name"], job["backend"]["model"]) == ("my_served_7b", "openai", "my-served-7b")
    assert server.answered == job["model_calls"] > 0


def test_weights_and_judge_take_any_name_of_a_model(catalog, tmp_path):
    from evalmap import api

    given = ["HuggingFaceTB/SmolLM2-135M-Instruct=/w/smol.gguf"]
    assert api._weights(given, ["smollm2_135m"], catalog) == {"smollm2_135m": "/w/smol.gguf"}
    store = tmp_path / "store.sqlite"
    with pytest.raises(EvalmapError, match="hf:nobody/Judge-7B"):  # checked before a store exists
        api.evaluate("smollm2_135m", "mt_bench", 1, judge="nobody/Judge-7B", store=store)
    assert not store.exists()
