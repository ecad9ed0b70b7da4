"""The visual-question kind itself: what it sends for odd image formats, what it refuses, and
several generations per item."""

from __future__ import annotations

import io
import json

import pytest
from multimodal_fixtures import solid_png

from evalmap.backends.base import IMAGE_PLACEHOLDER, Generation
from evalmap.errors import EvalmapError
from evalmap.tasks.base import TaskConfig
from evalmap.tasks.data import DataFormatError
from evalmap.tasks.registry import build_task


def _chartqa(root, image_bytes: dict[str, bytes]):
    test = root / "chartqa" / "test"
    (test / "png").mkdir(parents=True)
    for name, data in image_bytes.items():
        (test / "png" / name).write_bytes(data)
    rows = [{"imgname": name, "query": f"What is in {name}?", "label": "red"} for name in image_bytes]
    (test / "test_human.json").write_text(json.dumps(rows))
    (test / "test_augmented.json").write_text("[]")
    return root


def test_formats_not_every_engine_takes_are_sent_as_png(tmp_path, get_dataset, offline):
    from PIL import Image

    root = _chartqa(tmp_path, {
        "bmp.png": solid_png((255, 0, 0), fmt="BMP"),
        "jpeg.png": solid_png((0, 255, 0), fmt="JPEG"),
        "webp.png": solid_png((0, 0, 255), fmt="WEBP"),
    })  # fmt: skip
    task = build_task(get_dataset("chartqa"), TaskConfig(data_dir=str(root)))
    sent = [task.requests(it)[0].images[0] for it in task.items()]
    assert [image.mime for image in sent] == ["image/png", "image/jpeg", "image/png"]
    assert Image.open(io.BytesIO(sent[0].data)).getpixel((3, 3)) == (255, 0, 0)
    assert sent[1].data == (root / "chartqa/test/png/jpeg.png").read_bytes()  # sent as stored


def test_bytes_that_are_no_image_are_one_sentence(tmp_path, get_dataset, offline):
    root = _chartqa(tmp_path, {"text.png": b"not a picture at all"})
    task = build_task(get_dataset("chartqa"), TaskConfig(data_dir=str(root)))
    with pytest.raises(DataFormatError, match=r"the image of item 0 \(.*text\.png\) is not a picture Pillow can read"):
        task.requests(task.items()[0])


@pytest.mark.parametrize(("option", "sentence"), [
    ({"num_fewshot": 2}, "asked 0-shot"),
    ({"mode": "loglikelihood"}, "scored from generated answers only"),
    ({"variant": "tiny"}, "has no variant 'tiny'"),
])  # fmt: skip
def test_options_the_kind_cannot_honour_are_refused(get_dataset, option, sentence):
    with pytest.raises(EvalmapError, match=sentence):
        build_task(get_dataset("vqa_v2"), TaskConfig(**option))


def test_several_generations_per_item_are_averaged(tmp_path, get_dataset, offline):
    root = _chartqa(tmp_path, {"a.png": solid_png((255, 0, 0))})
    task = build_task(get_dataset("chartqa"), TaskConfig(data_dir=str(root), n_samples=3, temperature=0.7))
    item = task.items()[0]
    requests = task.requests(item)
    assert [r.seed for r in requests] == [1234, 1235, 1236] and {r.temperature for r in requests} == {0.7}
    assert len({r.key() for r in requests}) == 3
    result = task.score(item, [Generation("red"), Generation("blue"), Generation("Red.")])
    assert result.metrics["relaxed_accuracy"] == pytest.approx(2 / 3)
    assert result.details["samples"] == ["red", "blue", "red"]


def test_no_chat_sends_the_same_text_as_a_prompt(tmp_path, get_dataset, offline):
    root = _chartqa(tmp_path, {"a.png": solid_png((255, 0, 0))})
    chat = build_task(get_dataset("chartqa"), TaskConfig(data_dir=str(root)))
    plain = build_task(get_dataset("chartqa"), TaskConfig(data_dir=str(root), chat=False))
    (asked,), (sent,) = chat.requests(chat.items()[0]), plain.requests(plain.items()[0])
    assert not sent.chat and sent.messages == () and sent.prompt == asked.messages[0][1]
    assert sent.prompt.startswith(IMAGE_PLACEHOLDER + "\n") and sent.images == asked.images
    assert sent.key() != asked.key()
