"""Images for the engines: a request's IMAGE_PLACEHOLDERs turned into each engine's own form.

A request's n-th placeholder (over its messages in order, or in its prompt) is its n-th image.
Chat messages become content parts (text pieces and images, in placeholder order): OpenAI's
`image_url` parts with data URLs for a server, `{"type": "image"}` parts for a Hugging Face
processor's chat template (which then writes the model's own image tokens: Qwen2-VL's
`<|vision_start|><|image_pad|><|vision_end|>`, LLaVA's `<image>`, Idefics' `<image>` rows, ...).
A prompt-style request gets, at each placeholder, what that template writes for one image.

For transformers, `encode` runs the processor on one request (its ids and image tensors, e.g.
`pixel_values`, `image_grid_thw`, `mm_token_type_ids`), `batch` left-pads and stacks several
requests' tensors for one forward pass, and `rope_positions` asks a multimodal-RoPE model
(Qwen2-VL and kin) for its 3-D positions of a left-padded batch.
"""

from __future__ import annotations

import importlib.util
import inspect
import io
from collections.abc import Callable, Sequence
from typing import Any

from evalmap.backends.base import IMAGE_PLACEHOLDER, GenerationRequest, Image, split_images
from evalmap.errors import BackendUnavailableError, EvalmapError


def pil_images(images: Sequence[Image]) -> list:
    """The request's images decoded as RGB PIL images (what processors and vLLM take)."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    decoded = []
    for n, image in enumerate(images, 1):
        try:
            with PILImage.open(io.BytesIO(image.data)) as opened:
                decoded.append(opened.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise EvalmapError(
                f"Image {n} of a request ({image.mime}, {len(image.data):,} bytes) could not be decoded ({exc})."
            ) from exc
    return decoded


def content_parts(text: str, images: Sequence, image_part: Callable[[Any], dict]) -> list[dict]:
    """`text` as content parts: its pieces between placeholders as text parts (empty pieces left out),
    `image_part(image)` at each placeholder, consuming `images` in order."""
    pieces = split_images(text)
    parts: list[dict] = []
    for n, piece in enumerate(pieces):
        if n:
            parts.append(image_part(images[n - 1]))
        if piece:
            parts.append({"type": "text", "text": piece})
    return parts


def _chat_parts(request: GenerationRequest, image_part: Callable[[Any], dict], keep_strings: bool) -> list[dict]:
    """The request's messages with their images as parts; `keep_strings`: a message without an image
    keeps its plain string content (what a server gets for text-only messages today)."""
    messages, left = [], list(request.images)
    for role, content in request.messages:
        count = content.count(IMAGE_PLACEHOLDER)
        if keep_strings and not count:
            messages.append({"role": role, "content": content})
        else:
            messages.append({"role": role, "content": content_parts(content, left[:count], image_part)})
        left = left[count:]
    return messages


def openai_messages(request: GenerationRequest) -> list[dict]:
    """Chat messages for an OpenAI-compatible server: images as `image_url` parts with base64 data URLs."""
    if not request.images:
        return request.chat_messages()
    return _chat_parts(
        request, lambda image: {"type": "image_url", "image_url": {"url": image.data_url()}}, keep_strings=True
    )


def processor_messages(request: GenerationRequest) -> list[dict]:
    """Chat messages for a Hugging Face processor's chat template: every content as a list of parts (the
    form processor templates iterate over), images as `{"type": "image"}` parts."""
    return _chat_parts(request, lambda image: {"type": "image"}, keep_strings=False)


def image_segment(processor) -> str:
    """What the processor's chat template writes for one image (Qwen2-VL: `<|vision_start|><|image_pad|>
    <|vision_end|>`), read off a rendered one-message conversation; the processor's `image_token` when
    it has no chat template."""
    if getattr(processor, "chat_template", None):
        before, after = "\x00evalmap-before\x00", "\x00evalmap-after\x00"
        content = [{"type": "text", "text": before}, {"type": "image"}, {"type": "text", "text": after}]
        rendered = processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False)
        start, end = rendered.find(before), rendered.find(after)
        if 0 <= start < end:
            return rendered[start + len(before) : end]
    token = getattr(processor, "image_token", None)
    if not token:
        raise EvalmapError("This model's processor names no image token, so a prompt with images cannot be built.")
    return token


def render(processor, request: GenerationRequest, tools: list | None = None) -> str:
    """The request as the model's text, one image marker (as the processor writes it) per image."""
    if request.chat:
        return processor.apply_chat_template(
            processor_messages(request), tools=tools, add_generation_prompt=True, tokenize=False
        )
    return request.prompt.replace(IMAGE_PLACEHOLDER, image_segment(processor))


def load(folder: str, dtype, **common) -> tuple[Any, Any]:
    """(model, processor) of a vision-language checkpoint: AutoProcessor + AutoModelForImageTextToText
    (LLaVA, Qwen2-VL, Idefics, ...), falling back to AutoModelForVision2Seq's older classes."""
    import transformers

    try:
        processor = transformers.AutoProcessor.from_pretrained(folder, **common)
    except (ImportError, AttributeError, ValueError) as exc:
        if importlib.util.find_spec("torchvision") is None:
            raise BackendUnavailableError(
                f"Could not build the processor of {folder} ({type(exc).__name__}); transformers needs "
                "torchvision for it: `pip install torchvision` (the build matching your torch)."
            ) from exc
        raise
    auto = getattr(transformers, "AutoModelForImageTextToText", None) or transformers.AutoModelForVision2Seq
    model = auto.from_pretrained(folder, dtype=dtype, **common)
    return model, processor


def encode(processor, request: GenerationRequest, add_bos: bool, tools: list | None = None):
    """(prompt ids, image tensors or None) of one request; the tensors keep the processor's shapes
    (batch dimension 1) for `batch` to stack."""
    text = render(processor, request, tools)
    images = pil_images(request.images) if request.images else None
    tokenizer = processor.tokenizer
    prefix = bool(add_bos and not request.chat and tokenizer.bos_token)
    encoded = processor(
        text=[(tokenizer.bos_token if prefix else "") + text], images=images, add_special_tokens=False,
        return_tensors="pt",
    )  # fmt: skip
    ids = encoded["input_ids"][0].tolist()
    if not request.images:
        return ids, None
    return ids, {k: v for k, v in encoded.items() if k not in ("input_ids", "attention_mask")}


def batch(rows: list[dict], lengths: list[int], width: int, device, dtype) -> dict:
    """Several requests' image tensors as one forward's: a tensor laid along the prompt (shape (1, length))
    is left padded to `width` with zeros like the ids; any other is zero-padded to the largest shape and
    stacked on its first axis (images of all rows in row order, as the processor batches them)."""
    import torch
    import torch.nn.functional as F

    out = {}
    for key in rows[0]:
        tensors = [row[key] for row in rows]
        if all(t.ndim == 2 and tuple(t.shape) == (1, n) for t, n in zip(tensors, lengths, strict=True)):
            tensors = [F.pad(t, (width - t.shape[1], 0)) for t in tensors]
        else:
            shape = [max(t.shape[d] for t in tensors) for d in range(1, tensors[0].ndim)]
            tensors = [_pad_to(t, shape) for t in tensors]
        value = torch.cat(tensors, dim=0).to(device)
        out[key] = value.to(dtype) if value.is_floating_point() else value
    return out


def _pad_to(tensor, shape: list[int]):
    import torch.nn.functional as F

    pads: list[int] = []
    for d in reversed(range(1, tensor.ndim)):
        pads += [0, shape[d - 1] - tensor.shape[d]]
    return F.pad(tensor, pads) if any(pads) else tensor


def rope_positions(model, input_ids, mask, inputs: dict):
    """A multimodal-RoPE model's positions (3, batch, length) for a left-padded batch with images, from the
    model's own `get_rope_index`; None for a model with plain 1-D positions (LLaVA, Idefics)."""
    inner = getattr(model, "model", model)
    get_rope_index = getattr(inner, "get_rope_index", None)
    if get_rope_index is None:
        return None
    accepted = inspect.signature(get_rope_index).parameters
    kwargs = {k: v for k, v in inputs.items() if k in accepted}
    positions, _ = get_rope_index(input_ids=input_ids, attention_mask=mask, **kwargs)
    return positions
