"""ChartQA: relaxed accuracy on hand-made cases, the official local layout and the hub's, with charts
drawn here (matplotlib) and read back from the request's image bytes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from multimodal_fixtures import bar_chart_png, from_folder, hub_folder, read_bar_chart

from evalmap.backends.base import IMAGE_PLACEHOLDER, Generation
from evalmap.metrics.vqa import extract_chart_answer, is_year, relaxed_correct
from evalmap.tasks.base import TaskConfig
from evalmap.tasks.data import DataFormatError
from evalmap.tasks.registry import build_task, find_spec


@pytest.mark.parametrize(
    ("prediction", "gold", "correct"),
    [
        ("45", "45", True),
        ("47", "45", True),  # 4.4% off
        ("47.3", "45", False),  # 5.1% off
        ("105", "100", True),  # exactly 5%
        ("105.1", "100", False),
        ("95", "100", True),
        ("94.9", "100", False),
        ("-10.4", "-10", True),  # relative to |gold|
        ("2010", "2008", False),  # a year is a label: within 5%, still wrong
        ("2008", "2008", True),
        ("2008.0", "2008", True),
        ("2008", "2008.5", True),  # a decimal is a measurement, not a year
        ("45%", "45", True),  # a trailing percent sign is dropped on both sides
        ("45", "45%", True),
        ("0.45", "45", False),  # and never read as a fraction
        ("$1,200", "1200", True),
        ("1,260", "1200", True),
        ("1,261", "1200", False),
        ("0", "0", True),
        ("0.01", "0", False),  # no relative error around zero: exact
        ("Yes", "yes", True),
        ("blue.", "Blue", True),
        ("Answer: Blue", "blue", True),
        ("The answer is 12.", "12", True),
        ("12\nbecause the bar is tallest", "12", True),  # the first line is the answer
        ("five", "5", False),  # no number words
        ("light blue", "blue", False),
        ("", "5", False),
    ],
)
def test_relaxed_accuracy_hand_cases(prediction, gold, correct):
    assert relaxed_correct(prediction, gold) is correct


def test_years_and_answers_as_read():
    assert is_year("2008") and is_year("1999")
    assert not any(is_year(s) for s in ("999", "1200", "2150", "2008.0", "12,000"))
    assert extract_chart_answer("  The final answer: 7.5.\n") == "7.5"


# -- data ------------------------------------------------------------------------------------

CHARTS = {  # imgname -> bar values
    "a.png": [20.0, 60.0, 40.0],
    "b.png": [80.0, 10.0],
    "c.png": [35.0, 55.0, 75.0, 15.0],
}


def _official_folder(root):
    """<root>/chartqa/test/{test_human.json, test_augmented.json, png/} as the ChartQA release lays it out."""
    test = root / "chartqa" / "test"
    (test / "png").mkdir(parents=True)
    for name, values in CHARTS.items():
        (test / "png" / name).write_bytes(bar_chart_png(values))
    human = [{"imgname": "a.png", "query": "What is the value of bar 2?", "label": "60"},
             {"imgname": "b.png", "query": "How many bars are there?", "label": "2"}]
    augmented = [{"imgname": "c.png", "query": "What is the value of bar 3?", "label": "75"},
                 {"imgname": "a.png", "query": "What is the value of bar 1?", "label": "20"},
                 {"imgname": "c.png", "query": "How many bars are there?", "label": "4"}]  # fmt: skip
    (test / "test_human.json").write_text(json.dumps(human))
    (test / "test_augmented.json").write_text(json.dumps(augmented))
    return root


def _chart_reader(request) -> str:
    """Answers a chart question from the request's image alone (as the e2e test's server does)."""
    (image,) = request.images
    values = read_bar_chart(image.data)
    question = request.messages[-1][1]
    if "How many bars" in question:
        return str(len(values))
    k = int(question.split("bar ")[1].split("?")[0])
    return f"{values[k - 1]:g}"


def test_official_local_layout_sends_each_chart_and_scores_per_part(tmp_path, get_dataset, offline):
    root = _official_folder(tmp_path)
    task = build_task(get_dataset("chartqa"), TaskConfig(data_dir=str(root)))
    items = task.items()
    assert [it.data["part"] for it in items] == ["human", "human", "augmented", "augmented", "augmented"]
    first = task.requests(items[0])
    assert len(first) == 1 and first[0].chat
    assert first[0].messages == (
        ("user", f"{IMAGE_PLACEHOLDER}\nWhat is the value of bar 2?\n"
                 "Answer the question using a single word or phrase."),
    )  # fmt: skip
    assert first[0].images[0].data == (root / "chartqa/test/png/a.png").read_bytes()
    assert first[0].images[0].mime == "image/png"

    answers = {it.id: _chart_reader(task.requests(it)[0]) for it in items}
    answers[items[3].id] = "30"  # bar 1 of a.png is 20: this one is wrong
    samples = [task.score(it, [Generation(answers[it.id])]) for it in items]
    assert [s.metrics["relaxed_accuracy"] for s in samples] == [1.0, 1.0, 1.0, 0.0, 1.0]
    assert samples[0].details["images"][0].startswith("data:image/jpeg;base64,")
    scores = {s.name: s for s in task.aggregate(samples)}
    assert scores["relaxed_accuracy"].value == pytest.approx(4 / 5) and scores["relaxed_accuracy"].n == 5
    assert scores["relaxed_accuracy/part:human"].value == 1.0 and scores["relaxed_accuracy/part:human"].n == 2
    assert scores["relaxed_accuracy/part:augmented"].value == pytest.approx(2 / 3)

    human = build_task(get_dataset("chartqa"), TaskConfig(data_dir=str(root), variant="human"))
    assert [it.id for it in human.items()] == [it.id for it in items[:2]]
    augmented = build_task(get_dataset("chartqa"), TaskConfig(data_dir=str(root), variant="augmented"))
    assert [it.id for it in augmented.items()] == [it.id for it in items[2:]]


def test_a_missing_chart_file_is_one_sentence(tmp_path, get_dataset, offline):
    root = _official_folder(tmp_path)
    (root / "chartqa/test/png/b.png").unlink()
    task = build_task(get_dataset("chartqa"), TaskConfig(data_dir=str(root)))
    with pytest.raises(DataFormatError, match=r"the image of item 1 \(.*b\.png\) could not be read"):
        task.requests(task.items()[1])


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def test_hub_rows_keep_their_images_out_of_memory_until_asked(tmp_path, get_dataset, offline, hub_cache):
    """HuggingFaceM4/ChartQA's columns (query, label list, human_or_machine 0/1, image) through the hub path."""
    pngs = [bar_chart_png(v) for v in CHARTS.values()]
    folder = hub_folder(tmp_path / "hub", "test", {
        "query": ["What is the value of bar 1?", "How many bars are there?", "What is the value of bar 2?"],
        "label": [["20"], ["2"], ["55"]],
        "human_or_machine": [0, 1, 1],
        "image": pngs,
    })  # fmt: skip
    dataset = from_folder(get_dataset("chartqa"), folder, "test")
    task = find_spec("chartqa").build(dataset, TaskConfig())
    items = task.items()
    assert [it.data["part"] for it in items] == ["human", "augmented", "augmented"]
    assert type(items[0].data["image"]).__name__ == "ImageRef"
    assert [task.requests(it)[0].images[0].data for it in items] == pngs
    samples = [task.score(it, [Generation(_chart_reader(task.requests(it)[0]))]) for it in items]
    assert [s.metrics["relaxed_accuracy"] for s in samples] == [1.0, 1.0, 1.0]
    augmented = find_spec("chartqa").build(dataset, TaskConfig(variant="augmented"))
    assert [it.id for it in augmented.items()] == ["1", "2"]


def test_a_text_model_is_refused_in_one_sentence(tmp_path):
    """An image dataset on a text-only model: one sentence and exit 2, before the model loads."""
    root = _official_folder(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "evalmap", "run", "--models", "smollm2_135m", "--datasets", "chartqa",
         "--samples", "2", "--data-dir", str(root), "--store", str(tmp_path / "s.db")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "chartqa is an image dataset, but smollm2_135m is a text-only model" in done.stderr
    assert "Traceback" not in done.stderr and "loading smollm2_135m" not in done.stderr
