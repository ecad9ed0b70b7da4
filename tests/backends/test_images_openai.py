"""Images to an OpenAI-compatible server: `image_url` parts with base64 data URLs, in placeholder order.

The server is bench/fake_openai_server.py on 127.0.0.1; its `chat_reply` reads the images it received
(`message_images`) and answers from their pixels, so a test sees what reached the server, byte for byte.
"""

from __future__ import annotations

import io

import pytest
from fake_openai_server import message_images
from PIL import Image as PILImage

from evalmap.backends.base import IMAGE_PLACEHOLDER, GenerationRequest, Image
from evalmap.backends.openai_backend import OpenAIBackend
from evalmap.errors import EvalmapError

COLOURS = {(255, 0, 0): "red", (0, 0, 255): "blue", (0, 128, 0): "green", (255, 255, 0): "yellow"}


def picture(colour: str, fmt: str = "PNG", size=(40, 30)) -> Image:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, colour).save(buffer, fmt)
    return Image(buffer.getvalue(), "image/png" if fmt == "PNG" else "image/jpeg")


def colour_of(data: bytes) -> str:
    pixel = PILImage.open(io.BytesIO(data)).convert("RGB").getpixel((5, 5))
    nearest = min(COLOURS, key=lambda c: sum((a - b) ** 2 for a, b in zip(c, pixel, strict=True)))
    return COLOURS[nearest]


def ask(*images: Image, text: str = "Which colours?") -> GenerationRequest:
    content = "".join(f"Picture {n}: {IMAGE_PLACEHOLDER} " for n in range(1, len(images) + 1)) + text
    return GenerationRequest(
        messages=(("system", "Name colours."), ("user", content)), chat=True, max_tokens=8, images=images
    )


@pytest.fixture
def seeing_server(fake_openai):
    """A server that records each chat's messages and answers with the colours of its pictures, in order."""
    received: list[list[dict]] = []

    def reply(messages):
        received.append(messages)
        return " ".join(colour_of(data) for _, data in message_images(messages)) or "no picture"

    server = fake_openai(latency_s=0.05, chat_reply=reply)
    return server, received


def test_the_server_receives_each_image_byte_for_byte_in_order(seeing_server):
    server, received = seeing_server
    red, blue = picture("red"), picture("blue", "JPEG", (30, 40))
    backend = OpenAIBackend(server.base_url, "fake", images=True)
    [answer] = backend.generate([ask(red, blue)])
    assert answer.text == "red blue"
    [messages] = received
    assert message_images(messages) == [("image/png", red.data), ("image/jpeg", blue.data)]
    assert messages[0] == {"role": "system", "content": "Name colours."}  # a message without images: a string
    kinds = [part["type"] for part in messages[1]["content"]]
    assert kinds == ["text", "image_url", "text", "image_url", "text"]
    texts = [part["text"] for part in messages[1]["content"] if part["type"] == "text"]
    assert texts == ["Picture 1: ", " Picture 2: ", " Which colours?"]


def test_many_image_requests_in_flight_get_their_own_answers(seeing_server):
    server, _ = seeing_server
    backend = OpenAIBackend(server.base_url, "fake", images=True, concurrency=4)
    order = ["red", "blue", "green", "yellow", "blue", "red", "green"]
    answers = backend.generate([ask(picture(c)) for c in order])
    assert [a.text for a in answers] == order
    assert server.peak_in_flight >= 2


def test_a_text_request_is_sent_as_before(seeing_server):
    server, received = seeing_server
    request = GenerationRequest(messages=(("user", "Hello"),), chat=True, max_tokens=4)
    OpenAIBackend(server.base_url, "fake").generate([request])
    assert received == [request.chat_messages()]


def test_images_in_a_completion_prompt_are_refused_before_sending(seeing_server):
    server, _ = seeing_server
    backend = OpenAIBackend(server.base_url, "fake", images=True)
    request = GenerationRequest(prompt=f"{IMAGE_PLACEHOLDER} This is", images=(picture("red"),))
    with pytest.raises(EvalmapError, match="images need chat requests") as caught:
        backend.generate([request])
    assert "\n" not in str(caught.value)
    assert server.requests == 0


@pytest.mark.parametrize(
    ("extra", "catalog_says", "takes_images"),
    [
        ({}, True, True),  # vLLM, SGLang, llama.cpp: the listing says nothing; the catalog decides
        ({}, False, False),
        ({"architecture": {"input_modalities": ["text", "image"]}}, False, True),  # OpenRouter-style
        ({"architecture": {"input_modalities": ["text"]}}, True, False),  # the server's word wins
        ({"type": "vlm"}, False, True),  # LM Studio
        ({"capabilities": ["completion", "vision"]}, False, True),  # Ollama-style
        ({"capabilities": ["completion"]}, True, False),
    ],
)
def test_whether_a_server_takes_images(fake_openai, extra, catalog_says, takes_images):
    server = fake_openai(latency_s=0.0, listing_extra=extra)
    assert OpenAIBackend(server.base_url, "fake", images=catalog_says).capabilities.images is takes_images
