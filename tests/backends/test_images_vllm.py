"""What VLLMBackend hands `llm.generate` for a request with images, checked without vLLM (no GPU here).

The backend's request building needs only its processor: a tiny LLaVA's real one (tests/backends/tiny_vlm.py).
The engine itself is not started; `__init__` (which starts vLLM) is skipped and the processor set as it sets it.
"""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")

from tiny_vlm import build_llava, png  # noqa: E402
from transformers import AutoProcessor  # noqa: E402

from evalmap.backends import vision  # noqa: E402
from evalmap.backends.base import IMAGE_PLACEHOLDER, BackendInfo, Capabilities, GenerationRequest  # noqa: E402
from evalmap.backends.vllm_backend import VLLMBackend, multimodal_prompt  # noqa: E402
from evalmap.errors import EvalmapError  # noqa: E402


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llava")
    build_llava(folder)
    return AutoProcessor.from_pretrained(folder)


def engine(processor) -> VLLMBackend:
    """A VLLMBackend's request side: what `__init__` sets besides the engine."""
    backend = object.__new__(VLLMBackend)
    backend.processor = processor
    backend.tokenizer = processor.tokenizer if processor is not None else None
    backend.capabilities = Capabilities(images=processor is not None)
    backend.info = BackendInfo(name="vllm", version="-", model="tiny-llava", fingerprint="-")
    return backend


def test_images_go_as_multi_modal_data_in_placeholder_order(processor):
    red, blue = png("red", (64, 48)), png("blue", (30, 40))
    request = GenerationRequest(
        messages=(("user", f"First {IMAGE_PLACEHOLDER} then {IMAGE_PLACEHOLDER} which?"),), chat=True,
        images=(red, blue),
    )  # fmt: skip
    sent = engine(processor)._prompt(request)
    assert sent["prompt"] == "USER: First <image>\n then <image>\n which?</s>ASSISTANT:"
    pictures = sent["multi_modal_data"]["image"]
    assert [p.size for p in pictures] == [(64, 48), (30, 40)]
    assert [p.getpixel((0, 0)) for p in pictures] == [(255, 0, 0), (0, 0, 255)]


def test_one_image_goes_alone_and_a_prompt_request_gets_the_templates_marker(processor):
    request = GenerationRequest(prompt=f"{IMAGE_PLACEHOLDER}A photo of", images=(png("green"),))
    sent = engine(processor)._prompt(request)
    assert sent["prompt"] == f"{vision.image_segment(processor)}A photo of" == "<image>\nA photo of"
    assert sent["multi_modal_data"]["image"].mode == "RGB"  # one PIL image, not a list
    assert multimodal_prompt("x", request)["multi_modal_data"]["image"].size == (64, 48)


def test_text_requests_stay_text(processor):
    chat = GenerationRequest(messages=(("user", "Hello"),), chat=True)
    assert engine(processor)._prompt(chat) == "USER: Hello</s>ASSISTANT:"
    assert engine(processor)._prompt(GenerationRequest(prompt="Once upon")) == "Once upon"


def test_a_text_only_model_refuses_images_in_one_sentence():
    request = GenerationRequest(prompt=f"{IMAGE_PLACEHOLDER}x", images=(png("red"),))
    with pytest.raises(EvalmapError, match="text-only model, so it cannot take images") as caught:
        engine(None)._prompt(request)
    assert "\n" not in str(caught.value)
