"""VQAv2: the official answer normalisation (the VQA evaluation page's examples), VQA accuracy by hand,
the hub's rows and the official local files with images drawn here, per answer type."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from multimodal_fixtures import from_folder, hub_folder, solid_png

from evalmap.backends.base import IMAGE_PLACEHOLDER, Generation
from evalmap.metrics.vqa import normalize_vqa_answer, vqa_accuracy
from evalmap.tasks.base import TaskConfig
from evalmap.tasks.data import DataFormatError
from evalmap.tasks.registry import build_task, find_spec


@pytest.mark.parametrize(
    ("answer", "normalised"),
    [
        # the processing steps listed on visualqa.org/evaluation.html, with its own examples
        ("Yes", "yes"),  # lower case
        ("dog.", "dog"),  # periods go ...
        ("3.5", "3.5"),  # ... except as a decimal point
        ("two", "2"),  # number words become digits
        ("Ten apples", "10 apples"),
        ("none", "0"),
        ("the dog", "dog"),  # articles go
        ("a man on an elephant", "man on elephant"),
        ("dont", "don't"),  # a contraction gets its apostrophe back
        ("isnt", "isn't"),
        ("girl's", "girl's"),  # the apostrophe stays (possessives)
        ("2:50 pm", "2:50 pm"),  # so does the colon (times)
        ("100,978", "100978"),  # no space for a comma between digits
        ("t-shirt", "t shirt"),  # other punctuation becomes a space
        ("yes!", "yes"),  # ... or nothing next to a space / the end
        ("red, white", "red white"),
        ("  black\tand\nwhite ", "black and white"),
    ],
)
def test_official_normalisation_examples(answer, normalised):
    assert normalize_vqa_answer(answer) == normalised


@pytest.mark.parametrize(("matches", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_vqa_accuracy_is_the_leave_one_out_mean_of_min_1_matches_over_3(matches, expected):
    """k of 10 humans said it: leaving out one of them leaves k - 1 matches, leaving out another leaves k;
    (k * min(1, (k-1)/3) + (10 - k) * min(1, k/3)) / 10, e.g. k=3: (3 * 2/3 + 7 * 1) / 10 = 0.9."""
    answers = ["cat"] * matches + ["dog"] * (10 - matches)
    assert vqa_accuracy("cat", answers) == pytest.approx(expected)


def test_the_prediction_is_normalised_and_disagreeing_humans_too():
    assert vqa_accuracy("Two.", ["2"] * 10) == 1.0
    assert vqa_accuracy("The cat", ["cat"] * 10) == 1.0
    assert vqa_accuracy("2", ["Two"] * 3 + ["three"] * 7) == pytest.approx(0.9)
    # the official code leaves a unanimous answer set as written (its annotations are normalised already)
    assert vqa_accuracy("2", ["Two"] * 10) == 0.0
    assert vqa_accuracy("", ["yes"] * 10) == 0.0
    assert vqa_accuracy(None, ["yes"] * 10) == 0.0


ROWS = [  # (question_id, question, answers, answer_type, image colour, the model's answer, expected accuracy)
    (101, "Is the square red?", ["yes"] * 10, "yes/no", (255, 0, 0), "Yes", 1.0),
    (102, "Is the square green?", ["no"] * 9 + ["yes"], "yes/no", (255, 0, 0), "yes", 0.3),
    (103, "How many squares?", ["1"] * 2 + ["one"] + ["2"] * 7, "number", (0, 0, 255), "one", 0.9),
    (104, "What colour is it?", ["blue"] * 10, "other", (0, 0, 255), "green", 0.0),
]


def _answers(words):
    return [{"answer": w, "answer_confidence": "yes", "answer_id": i + 1} for i, w in enumerate(words)]


def _check_scores(task, items):
    samples = [task.score(it, [Generation(row[5])]) for it, row in zip(items, ROWS, strict=True)]
    assert [s.metrics["vqa_accuracy"] for s in samples] == pytest.approx([row[6] for row in ROWS])
    scores = {s.name: s for s in task.aggregate(samples)}
    assert scores["vqa_accuracy"].value == pytest.approx((1.0 + 0.3 + 0.9 + 0.0) / 4) and scores["vqa_accuracy"].n == 4
    assert scores["vqa_accuracy/answer_type:yes/no"].value == pytest.approx(0.65)
    assert scores["vqa_accuracy/answer_type:yes/no"].n == 2
    assert scores["vqa_accuracy/answer_type:number"].value == pytest.approx(0.9)
    assert scores["vqa_accuracy/answer_type:other"].value == 0.0


def test_hub_rows_as_lmms_lab_writes_them(tmp_path, get_dataset, offline, monkeypatch):
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    pngs = [solid_png(row[4]) for row in ROWS]
    folder = hub_folder(tmp_path / "hub", "validation", {
        "question_type": ["is the"] * 4,
        "multiple_choice_answer": [row[2][0] for row in ROWS],
        "answers": [_answers(row[2]) for row in ROWS],
        "image_id": [1, 1, 2, 2],
        "answer_type": [row[3] for row in ROWS],
        "question_id": [row[0] for row in ROWS],
        "question": [row[1] for row in ROWS],
        "image": pngs,
    })  # fmt: skip
    task = find_spec("vqa_v2").build(from_folder(get_dataset("vqa_v2"), folder, "validation"), TaskConfig())
    items = task.items()
    assert [it.id for it in items] == ["101", "102", "103", "104"]
    request = task.requests(items[0])[0]
    assert request.messages == (
        ("user", f"{IMAGE_PLACEHOLDER}\nIs the square red?\nAnswer the question using a single word or phrase."),
    )
    assert [task.requests(it)[0].images[0].data for it in items] == pngs
    assert request.max_tokens == 16 and request.temperature == 0.0
    _check_scores(task, items)


def _official_files(root):
    """<root>/vqa_v2/: the official val questions and annotations JSON, and val2014/ COCO-named images."""
    folder = root / "vqa_v2"
    (folder / "val2014").mkdir(parents=True)
    questions, annotations = [], []
    for qid, question, words, answer_type, colour, _, _ in ROWS:
        image_id = qid // 2
        (folder / "val2014" / f"COCO_val2014_{image_id:012d}.jpg").write_bytes(solid_png(colour, fmt="JPEG"))
        questions.append({"image_id": image_id, "question": question, "question_id": qid})
        annotations.append({"question_id": qid, "image_id": image_id, "answer_type": answer_type,
                            "question_type": "what", "multiple_choice_answer": words[0], "answers": _answers(words)})
    (folder / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps({"questions": questions}))
    (folder / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": annotations}))
    return folder


def test_official_local_files_with_coco_images(tmp_path, get_dataset, offline):
    folder = _official_files(tmp_path)
    task = build_task(get_dataset("vqa_v2"), TaskConfig(data_dir=str(tmp_path)))
    items = task.items()
    assert [it.id for it in items] == ["101", "102", "103", "104"]
    image = task.requests(items[0])[0].images[0]
    assert image.mime == "image/jpeg"
    assert image.data == (folder / "val2014" / "COCO_val2014_000000000050.jpg").read_bytes()
    _check_scores(task, items)


def test_annotations_of_another_release_are_one_sentence(tmp_path, get_dataset, offline):
    folder = _official_files(tmp_path)
    path = folder / "v2_mscoco_val2014_annotations.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({"annotations": data["annotations"][1:]}))
    task = build_task(get_dataset("vqa_v2"), TaskConfig(data_dir=str(tmp_path)))
    with pytest.raises(DataFormatError, match="has no annotation for question 101"):
        task.items()


def test_a_real_photograph_is_sent_byte_for_byte_and_thumbnailed(tmp_path, get_dataset, offline):
    """matplotlib's sample photo (Grace Hopper, a 512x600 JPEG) as a COCO image: the only real picture
    here (no real VQAv2 image is reachable), so this checks transport and thumbnails, not any answer."""
    import base64
    import io

    import matplotlib
    from PIL import Image

    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not photo.is_file():
        pytest.skip("matplotlib's sample photo is not installed")
    folder = _official_files(tmp_path)
    (folder / "val2014" / "COCO_val2014_000000000050.jpg").write_bytes(photo.read_bytes())
    task = build_task(get_dataset("vqa_v2"), TaskConfig(data_dir=str(tmp_path)))
    item = task.items()[0]
    (image,) = task.requests(item)[0].images
    assert image.mime == "image/jpeg" and image.data == photo.read_bytes()
    thumb = task.score(item, [Generation("yes")]).details["images"][0]
    small = Image.open(io.BytesIO(base64.b64decode(thumb.split(",", 1)[1])))
    assert small.format == "JPEG" and max(small.size) == 320 and len(thumb) < 40_000
