"""One backend table: it drives the catalog schema, the CLI and open_backend; capabilities are checked
before any model loads or any request is sent (one sentence, exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: fuzz_helpers

from fuzz_helpers import FakeOpenAI, Reply, cli, error_sentence  # noqa: E402

from evalmap.backends import BackendOptions, open_backend, registry  # noqa: E402
from evalmap.backends.base import BackendInfo, Capabilities, Generation, GenerationRequest, LogLikelihood  # noqa: E402
from evalmap.backends.capabilities import CapabilityError, check_plan  # noqa: E402
from evalmap.backends.llamacpp_backend import LlamaCppBackend  # noqa: E402
from evalmap.backends.transformers_backend import TransformersBackend  # noqa: E402
from evalmap.backends.vllm_backend import VLLMBackend  # noqa: E402
from evalmap.backends.weights import (  # noqa: E402
    CONVERTED_MARKER,
    converted_cache_root,
    has_converted_copy,
    write_converted_copy,
)
from evalmap.catalog.loader import load_catalog  # noqa: E402
from evalmap.catalog.schema import RunHints  # noqa: E402

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} is not present")
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


# ---------------------------------------------------------------- a backend is one module + one line


class EchoBackend:
    """A whole backend in a few lines: answers every generation with "The answer is 42."."""

    opened = 0

    @classmethod
    def from_catalog(cls, model, options):
        cls.opened += 1
        return cls(model.id)

    @classmethod
    def capabilities_before_load(cls, model, options):
        return Capabilities(max_context=model.context_length)

    def __init__(self, model_id: str):
        self.info = BackendInfo(name="echo", version="1", model=model_id, fingerprint="echo-" + model_id)
        self.capabilities = Capabilities()

    def generate(self, requests, on_response=None):
        out = [Generation(text="The answer is 42.", completion_tokens=5) for _ in requests]
        for i, g in enumerate(out):
            if on_response:
                on_response(i, g)
        return out

    def loglikelihood(self, requests, on_response=None):
        out = [LogLikelihood(logprob=-1.0, is_greedy=True) for _ in requests]
        for i, r in enumerate(out):
            if on_response:
                on_response(i, r)
        return out

    def close(self) -> None: ...


@pytest.fixture
def echo_line(monkeypatch):
    """The module of a new backend, and its one line in the table."""
    module = types.ModuleType("fake_engines.echo")
    module.EchoBackend = EchoBackend
    monkeypatch.setitem(sys.modules, "fake_engines.echo", module)
    line = registry.BackendEntry("fake_engines.echo:EchoBackend", "answers 42", None, ("pytest",))
    monkeypatch.setitem(registry.BACKENDS, "echo", line)
    EchoBackend.opened = 0
    return "echo"


def test_the_table_line_shows_in_the_schema_the_cli_and_the_packages(echo_line):
    assert RunHints(default_backend="echo").default_backend == "echo"
    assert "pytest" in registry.backend_packages()
    help_text = cli(["run", "--help"], env={"COLUMNS": "300"}).stdout
    assert "transformers, llamacpp, openai, vllm, echo" in " ".join(help_text.split())
    sentence = error_sentence(cli(["run", "--backend", "nope"]))
    assert sentence == "Unknown backend 'nope'; choose one of transformers, llamacpp, openai, vllm, echo."


def test_a_backend_not_in_the_table_is_refused_everywhere():
    with pytest.raises(ValueError, match="unknown backend 'echo'; choose one of transformers, llamacpp, openai, vllm"):
        RunHints(default_backend="echo")
    assert "echo" not in cli(["run", "--help"], env={"COLUMNS": "300"}).stdout
    assert error_sentence(cli(["run", "--backend", "echo"])).startswith("Unknown backend 'echo'")


def test_catalog_default_backend_reads_the_table(echo_line, tmp_path):
    override = tmp_path / "mine.yaml"
    override.write_text("models:\n  - id: smollm2_135m\n    run: {default_backend: echo}\n")
    model = load_catalog([str(override)]).model("smollm2_135m")
    backend = open_backend(model, BackendOptions())
    assert isinstance(backend, EchoBackend) and backend.info.name == "echo"


@needs_shared
def test_a_new_backend_runs_end_to_end_from_its_table_line(echo_line, tmp_path):
    result = cli(
        ["run", "--models", "smollm2_135m", "--datasets", "gsm8k", "--samples", "2", "--data-dir", str(SHARED),
         "--backend", "echo", "--quiet", "--format", "json", "--store", str(tmp_path / "s.sqlite")],
        env=OFFLINE,
    )
    assert result.code == 0, result.describe()
    assert EchoBackend.opened == 1
    payload = json.loads(result.stdout)
    assert payload["jobs"][0]["n"] == 2 and payload["jobs"][0]["model_calls"] == 2


def test_backend_modules_install_hints_come_from_the_table():
    assert registry.install_hint("transformers") == "pip install 'evalmap[hf]'"
    assert registry.install_hint("openai") == "pip install evalmap"
    assert [registry.backend_class(n).__name__ for n in registry.backend_names()] == [
        "TransformersBackend", "LlamaCppBackend", "OpenAIBackend", "VLLMBackend",
    ]


def test_the_schema_reads_the_table_and_backends_never_import_the_catalog():
    """No import cycle: the catalog schema imports the table (a leaf); evalmap.backends loads no catalog."""
    code = (
        "import sys, evalmap.backends, evalmap.backends.capabilities;"
        "assert 'evalmap.catalog.schema' not in sys.modules, 'evalmap.backends imported the catalog';"
        "import evalmap.catalog.schema"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- capabilities, before any load or request


def _run_against(fake: FakeOpenAI, dataset: str, tmp_path: Path, *extra: str):
    return cli(
        ["run", "--models", "smollm2_135m", "--datasets", dataset, "--samples", "2", "--data-dir", str(SHARED),
         "--backend", "openai", "--base-url", fake.url, "--quiet", "--store", str(tmp_path / "s.sqlite"), *extra],
        env=OFFLINE,
    )


@needs_shared
@pytest.mark.parametrize("owned_by", ["me", "llamacpp", "fake"])
def test_loglikelihoods_from_a_server_without_trusted_logprobs_are_refused_before_any_request(
    owned_by, tmp_path
):
    with FakeOpenAI(owned_by=owned_by) as fake:
        result = _run_against(fake, "arc_challenge", tmp_path)
        assert fake.posts == 0
    assert error_sentence(result) == (
        f"arc_challenge is scored by log-likelihoods, but the server at {fake.url} gives none evalmap can trust "
        "for smollm2_135m (of OpenAI-compatible servers only vLLM's prompt logprobs are right); run it with "
        "--mode generate if the dataset has a generative mode, or on a vLLM server or a local backend."
    )


@needs_shared
def test_the_same_server_serves_the_generative_mode(tmp_path):
    with FakeOpenAI(owned_by="me") as fake:
        result = _run_against(fake, "arc_challenge", tmp_path, "--mode", "generate")
        assert result.code == 0, result.describe()
        assert fake.posts == 2


@needs_shared
def test_a_vllm_server_serves_loglikelihoods(tmp_path):
    with FakeOpenAI(owned_by="vllm") as fake:
        result = _run_against(fake, "arc_challenge", tmp_path)
        assert result.code == 0, result.describe()
        assert fake.posts > 0


@needs_shared
def test_a_server_context_too_short_is_refused_before_any_request(tmp_path):
    listing = {"object": "list", "data": [{"id": "fake-model", "owned_by": "vllm", "max_model_len": 1024}]}
    with FakeOpenAI(models_reply=Reply(200, json.dumps(listing).encode())) as fake:
        result = _run_against(fake, "gsm8k", tmp_path)
        assert fake.posts == 0
    assert error_sentence(result) == (
        f"gsm8k needs about 1,046 tokens of context (790 prompt + 256 answer), but smollm2_135m on the server at "
        f"{fake.url} has 1,024; pick a model or server with a longer context."
    )


class _FakeTask:
    """A task whose requests are generations (as an image dataset's would be)."""

    config = None

    def items(self, limit=None, seed=0):
        return [types.SimpleNamespace(id="1")]

    def requests(self, item):
        return [GenerationRequest(prompt="What is in the picture?", max_tokens=16)]


@pytest.fixture
def no_loads(monkeypatch):
    """Any model load fails the test: the check must decide from the catalog and class facts alone."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    for cls in (TransformersBackend, LlamaCppBackend, VLLMBackend):
        monkeypatch.setattr(cls, "__init__", refuse)


def test_a_text_only_model_asked_for_an_image_dataset_is_refused(no_loads):
    catalog = load_catalog()
    with pytest.raises(CapabilityError) as err:
        check_plan(catalog, [("smollm2_135m", "vqa_v2", 2)], {"vqa_v2": _FakeTask()}, BackendOptions(), 0)
    assert str(err.value) == (
        "vqa_v2 is an image dataset, but smollm2_135m is a text-only model; pick a vision-language model "
        "(`evalmap models --category multimodal`)."
    )
    assert err.value.exit_code == 2


def test_a_vision_model_on_an_engine_that_sends_no_images_is_refused(no_loads):
    catalog = load_catalog()
    with pytest.raises(CapabilityError) as err:
        check_plan(
            catalog, [("qwen2_vl_7b", "vqa_v2", 2)], {"vqa_v2": _FakeTask()}, BackendOptions(backend="llamacpp"), 0
        )
    assert str(err.value) == (
        "vqa_v2 sends images, but llama.cpp runs qwen2_vl_7b without a multimodal projector (mmproj), so it cannot "
        "see images; run it on the transformers or vllm backend, or on a server that loads its projector."
    )
    assert err.value.exit_code == 2
    for backend in ("vllm", "transformers"):  # both send images to a vision-language model
        check_plan(catalog, [("qwen2_vl_7b", "vqa_v2", 2)], {"vqa_v2": _FakeTask()}, BackendOptions(backend=backend), 0)


@needs_shared
def test_a_context_too_short_is_refused_before_llama_cpp_loads(no_loads):
    from evalmap.tasks.base import TaskConfig
    from evalmap.tasks.registry import build_task

    catalog = load_catalog()
    task = build_task(catalog.dataset("gsm8k"), TaskConfig(data_dir=str(SHARED)))
    options = BackendOptions(backend="llamacpp", n_ctx=1024)
    with pytest.raises(CapabilityError) as err:
        check_plan(catalog, [("smollm2_135m", "gsm8k", 2)], {"gsm8k": task}, options, 1234)
    assert str(err.value) == (
        "gsm8k needs about 1,046 tokens of context (790 prompt + 256 answer), but smollm2_135m on the llamacpp "
        "backend has 1,024; pick a model or server with a longer context."
    )
    check_plan(catalog, [("smollm2_135m", "gsm8k", 2)], {"gsm8k": task}, BackendOptions(backend="llamacpp"), 1234)


# ---------------------------------------------------------------- converted copies live in weights.py


class _Saves:
    def __init__(self, name: str):
        self.name = name

    def save_pretrained(self, folder, **kwargs):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / self.name).write_text("x")


def test_converted_copies_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALMAP_CACHE_DIR", str(tmp_path))
    target = converted_cache_root() / "abc"
    assert target == tmp_path / "converted" / "abc" and not has_converted_copy(target)
    gguf = tmp_path / "m.gguf"
    assert write_converted_copy(_Saves("model.safetensors"), _Saves("tokenizer.json"), target, gguf, "abc",
                                {"transformers": "t"})
    marker = json.loads((target / CONVERTED_MARKER).read_text())
    assert marker == {"source": str(gguf), "gguf_file": "m.gguf", "fingerprint": "abc", "transformers": "t"}
    assert (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == ["abc"]  # no temp folder left behind
