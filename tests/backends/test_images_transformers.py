"""Images through TransformersBackend on tiny vision-language models built here (tests/backends/tiny_vlm.py):
a LLaVA (1-D positions) and a Qwen2-VL (3-D multimodal RoPE), loaded as a catalog `vision-language` model is."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tiny_vlm import build_llava, build_qwen2_vl, byte_tokenizer, png  # noqa: E402

from evalmap.backends import vision  # noqa: E402
from evalmap.backends.base import IMAGE_PLACEHOLDER, Generation, GenerationRequest, Image  # noqa: E402
from evalmap.backends.transformers_backend import TransformersBackend  # noqa: E402
from evalmap.store import Store  # noqa: E402


def ask(images: list[Image], text: str = "What colour is it?", max_tokens: int = 10, **kw) -> GenerationRequest:
    content = IMAGE_PLACEHOLDER * len(images) + text
    return GenerationRequest(
        messages=(("user", content),), chat=True, max_tokens=max_tokens, images=tuple(images), **kw
    )


@pytest.fixture(scope="module", params=["llava", "qwen2_vl"])
def vlm(request, tmp_path_factory) -> TransformersBackend:
    folder = tmp_path_factory.mktemp(request.param)
    (build_llava if request.param == "llava" else build_qwen2_vl)(folder)
    backend = TransformersBackend(str(folder), vision=True, device="cpu", dtype="float32", batch_size=4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model's ops wait on OpenMP threads when other processes hold the cores
    yield backend
    torch.set_num_threads(threads)
    backend.close()


def prefill_logits(backend: TransformersBackend, request: GenerationRequest):
    """The next-token logits after the prompt, from the backend's own encoding of the request."""
    ids, pixels = vision.encode(backend.processor, request, add_bos=False)
    input_ids = torch.tensor([ids])
    mask = torch.ones_like(input_ids)
    inputs = vision.batch([pixels], [len(ids)], len(ids), "cpu", torch.float32)
    with torch.inference_mode():
        return backend.model(input_ids=input_ids, attention_mask=mask, **inputs).logits[0, -1]


def test_a_vision_language_model_says_it_takes_images(vlm):
    assert vlm.processor is not None
    assert vlm.capabilities.images and vlm.capabilities.chat_template


def test_the_image_reaches_the_model(vlm):
    red, blue, red_again = (prefill_logits(vlm, ask([png(c)])) for c in ("red", "blue", "red"))
    assert (red - blue).abs().max() > 1e-2  # another picture, other logits
    assert torch.equal(red, red_again)  # the same picture (bytes encoded anew), the same logits
    answers = [g.text for g in vlm.generate([ask([png("red")]), ask([png("blue")]), ask([png("red")])])]
    assert answers[0] != answers[1] and answers[0] == answers[2]


def test_images_go_in_placeholder_order(vlm):
    one, two = png("red"), png("blue", (48, 64))
    forward = prefill_logits(vlm, ask([one, two]))
    backward = prefill_logits(vlm, ask([two, one]))
    assert (forward - backward).abs().max() > 1e-2


def test_a_batch_of_image_requests_equals_one_by_one(vlm):
    requests = [
        ask([png("red")]),
        ask([png("blue", (90, 30))], "Which colour do you see in this picture, exactly?"),  # longer: left padding
        ask([png("green"), png("yellow", (40, 80))], "Compare them."),
        ask([png("purple")], max_tokens=4),
        ask([png("red")], temperature=0.8, seed=3),
        ask([], "No picture here."),  # text only, through the processor's chat template
        GenerationRequest(prompt=f"{IMAGE_PLACEHOLDER}A photo of", max_tokens=6, images=(png("orange"),)),
        ask([png("white")], "Short."),
    ]
    together = vlm.generate(requests)
    alone = [vlm.generate([r])[0] for r in requests]
    assert [g.text for g in together] == [g.text for g in alone]
    assert [g.prompt_tokens for g in together] == [g.prompt_tokens for g in alone]
    assert all(isinstance(g, Generation) and g.completion_tokens > 0 for g in together)


def test_a_prompt_request_gets_the_templates_image_marker(vlm):
    segment = vision.image_segment(vlm.processor)
    assert segment.strip() in ("<image>", "<|vision_start|><|image_pad|><|vision_end|>")
    request = GenerationRequest(prompt=f"{IMAGE_PLACEHOLDER}A photo of", max_tokens=4, images=(png("red"),))
    assert vision.render(vlm.processor, request) == f"{segment}A photo of"


def test_text_only_chat_to_a_vision_language_model(vlm):
    request = GenerationRequest(messages=(("system", "Be brief."), ("user", "Hello")), chat=True, max_tokens=5)
    text = vision.render(vlm.processor, request)
    assert "Be brief." in text and "Hello" in text
    assert vlm.generate([request])[0].completion_tokens > 0


def test_the_response_cache_keys_on_the_image(tmp_path):
    red, blue = ask([png("red")]), ask([png("blue")])
    assert red.key() != blue.key()
    assert red.key() == ask([png("red")]).key()  # equal bytes, equal key
    text_only = GenerationRequest(messages=(("user", "What colour is it?"),), chat=True, max_tokens=10)
    assert ask([]).key() == text_only.key()  # no images: the key a text request always had
    store = Store(tmp_path / "runs.db")
    store.cache("fp", [(red, Generation(text="red"), None)])
    assert set(store.cached("fp", [ask([png("red")])])[0]) == {red.key()}
    assert store.cached("fp", [blue])[0] == {}


def test_a_text_only_model_refuses_images_in_one_sentence(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = byte_tokenizer(["<s>", "</s>"], bos_token="<s>", eos_token="</s>")
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=128,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    backend = TransformersBackend(str(tmp_path), device="cpu")
    assert not backend.capabilities.images
    with pytest.raises(Exception, match="text-only model, so it cannot take images") as caught:
        backend.generate([GenerationRequest(prompt=f"{IMAGE_PLACEHOLDER}x", images=(png("red"),))])
    assert "\n" not in str(caught.value)


def test_greedy_answers_equal_transformers_own_generate(vlm):
    """The backend's decode loop (its own positions: 3-D RoPE for Qwen2-VL) against `model.generate`, which
    builds positions its own way, request by request."""
    requests = [ask([png("red")]), ask([png("blue", (90, 30))], "Which one?"), ask([png("green"), png("yellow")])]
    for request, answer in zip(requests, vlm.generate(requests), strict=True):
        ids, pixels = vision.encode(vlm.processor, request, add_bos=False)
        input_ids = torch.tensor([ids])
        with torch.inference_mode():
            out = vlm.model.generate(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **pixels,
                max_new_tokens=request.max_tokens, do_sample=False, pad_token_id=vlm.tokenizer.pad_token_id,
            )  # fmt: skip
        assert vlm.tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True) == answer.text
