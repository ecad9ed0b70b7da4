"""Images asked of what cannot take them: one sentence, exit 2, before any dataset or model loads.

Through `evalmap run` with the real catalog: a text-only model on an image dataset, a vision-language model on
llama.cpp (no multimodal projector); and llama.cpp itself, handed an image request.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from evalmap.backends import BackendOptions
from evalmap.backends.base import IMAGE_PLACEHOLDER, GenerationRequest, Image
from evalmap.backends.capabilities import CapabilityError, check_declared
from evalmap.backends.llamacpp_backend import LlamaCppBackend
from evalmap.backends.transformers_backend import TransformersBackend
from evalmap.backends.vllm_backend import VLLMBackend
from evalmap.catalog.loader import load_catalog
from evalmap.cli import app
from evalmap.errors import EvalmapError
from evalmap.tasks.base import TaskConfig
from evalmap.tasks.registry import build_task


@pytest.fixture
def no_loads(monkeypatch, tmp_path):
    """Any model load fails the test, and so does any dataset load: the refusal comes first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model or dataset was loaded")

    for cls in (TransformersBackend, LlamaCppBackend, VLLMBackend):
        monkeypatch.setattr(cls, "__init__", refuse)
    monkeypatch.setattr("evalmap.executors.local.preload", refuse)
    monkeypatch.setenv("EVALMAP_HOME", str(tmp_path))


def refusal(*args: str) -> str:
    """`evalmap run ... --samples 2`'s error: a CapabilityError (which `evalmap.cli.main` prints as one line and
    exits 2 with), raised before any load."""
    result = CliRunner().invoke(app, ["run", "--samples", "2", *args])
    assert isinstance(result.exception, CapabilityError), result.output
    assert result.exception.exit_code == 2
    return str(result.exception)


def test_a_text_only_model_on_an_image_dataset(no_loads):
    assert refusal("--models", "smollm2_135m", "--datasets", "vqa_v2") == (
        "vqa_v2 is an image dataset, but smollm2_135m is a text-only model; pick a vision-language model "
        "(`evalmap models --category multimodal`)."
    )


def test_a_text_only_model_is_offered_the_text_only_variant(no_loads):
    assert refusal("--models", "smollm2_135m", "--datasets", "scienceqa", "--backend", "llamacpp").endswith(
        "(`evalmap models --category multimodal`), or run its questions without images with --variant text_only."
    )


def test_the_text_only_variant_passes_the_check():
    catalog = load_catalog()
    task = build_task(catalog.dataset("scienceqa"), TaskConfig(variant="text_only"))
    declared = check_declared(catalog, [("smollm2_135m", "scienceqa", 2)], {"scienceqa": task}, BackendOptions())
    assert declared == {}  # no image dataset: nothing asked of the model (a server is probed only for images)
    with pytest.raises(CapabilityError):
        image_task = build_task(catalog.dataset("scienceqa"), TaskConfig())
        check_declared(catalog, [("smollm2_135m", "scienceqa", 2)], {"scienceqa": image_task}, BackendOptions())


def test_a_vision_language_model_on_llama_cpp(no_loads):
    assert refusal("--models", "qwen2_vl_7b", "--datasets", "chartqa", "--backend", "llamacpp") == (
        "chartqa sends images, but llama.cpp runs qwen2_vl_7b without a multimodal projector (mmproj), so it "
        "cannot see images; run it on the transformers or vllm backend, or on a server that loads its projector."
    )


def test_llama_cpp_refuses_an_image_request_in_one_sentence(smollm2_backend):
    request = GenerationRequest(prompt=f"{IMAGE_PLACEHOLDER} This is", images=(Image(b"\x89PNG..."),))
    with pytest.raises(EvalmapError) as caught:
        smollm2_backend.generate([request])
    assert str(caught.value) == (
        "llama.cpp runs SmolLM2-135M-Instruct.Q4_1.gguf without a multimodal projector (mmproj), so it cannot see "
        "images; run it on the transformers or vllm backend, or on a server that loads its projector."
    )
