"""ScienceQA: the offline text-only subset, letter extraction, the hub's rows with images (drawn here),
and accuracy per subject, context and grade band as the paper reports them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from multimodal_fixtures import from_folder, hub_folder, solid_png

from evalmap.backends.base import IMAGE_PLACEHOLDER, Generation
from evalmap.tasks.base import TaskConfig
from evalmap.tasks.registry import find_spec
from evalmap.tasks.specs.multimodal import scienceqa_judge

INSTRUCTION = "\nAnswer with the option's letter from the given choices directly."


def test_text_only_subset_runs_offline_without_images(make_task, offline):
    task = make_task("scienceqa", variant="text_only")
    assert not task.needs_images
    items = task.items()
    assert len(items) == 2224
    assert not any(r.images for it in items[:50] for r in task.requests(it))
    by_id = {it.id: it for it in items}
    letter = by_id["512"].data  # an option spanning two lines
    assert letter["options"] == ["See you soon,\nJanet", "See You Soon,\nJanet"] and letter["letters"] == "AB"
    request = task.requests(by_id["26"])[0]
    assert request.messages == (
        ("user", "Context: Select the better estimate.\nHow long does it take to bake lasagna in the oven?\n"
                 "A. 33 minutes\nB. 33 hours" + INSTRUCTION),
    )  # fmt: skip
    assert by_id["26"].data["context"] == ["TXT"] and by_id["4"].data["context"] == ["NO"]
    assert sum(len(it.data["options"]) == len(it.data["letters"]) >= 2 for it in items) == 2224


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("B", "B"),
        ("B.", "B"),
        ("B. apostrophe", "B"),
        ("The answer is (A).", "A"),
        ("Answer: B", "B"),
        ("apostrophe", "B"),  # exactly one option's text
        ("Apostrophe.", "B"),
        ("A man would say chiasmus", None),  # the article "A" is not an answer, nor is a word inside a sentence
        ("I don't know", None),
        ("", None),
    ],
)
def test_letter_extraction(answer, letter):
    record = {"letters": "AB", "options": ["chiasmus", "apostrophe"], "answer": "B"}
    judged = scienceqa_judge(record, answer)
    assert judged.extracted == letter
    assert judged.value == float(letter == "B") and judged.target == "B"


HUB_ROWS = {  # derek-thomas/ScienceQA's columns
    "question": ["Which colour is shown?", "Which is a noun?", "Which state is farthest north?", "What is 2 + 2?"],
    "choices": [["red", "blue"], ["run", "dog", "quickly"], ["Maine", "Texas"], ["3", "4", "5", "6"]],
    "answer": [0, 1, 0, 1],
    "hint": ["Look at the picture.", "", "", "Add the numbers."],
    "grade": ["grade2", "grade7", "grade5", "grade11"],
    "subject": ["natural science", "language science", "social science", "natural science"],
}
MODEL_SAYS = ["A", "B", "B", "B"]  # right, right, wrong, right


def _hub_task(tmp_path, get_dataset, monkeypatch, variant=None):
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    images = [solid_png((255, 0, 0)), None, solid_png((0, 0, 255)), None]
    folder = hub_folder(tmp_path / "hub", "test", {**{k: list(v) for k, v in HUB_ROWS.items()}, "image": images})
    dataset = from_folder(get_dataset("scienceqa"), folder, "test")
    task = find_spec("scienceqa").build(dataset, TaskConfig(variant=variant))
    return task, images


def test_hub_rows_send_their_images_and_score_per_subject_context_and_grade(
    tmp_path, get_dataset, offline, monkeypatch
):
    task, images = _hub_task(tmp_path, get_dataset, monkeypatch)
    assert task.needs_images
    items = task.items()
    requests = [task.requests(it)[0] for it in items]
    assert [r.images[0].data if r.images else None for r in requests] == images
    assert requests[0].messages == (
        ("user", f"{IMAGE_PLACEHOLDER}\nContext: Look at the picture.\nWhich colour is shown?\nA. red\nB. blue"
                 + INSTRUCTION),
    )  # fmt: skip
    assert IMAGE_PLACEHOLDER not in requests[1].messages[0][1]
    assert [it.data["context"] for it in items] == [["TXT", "IMG"], ["NO"], ["IMG"], ["TXT"]]

    samples = [task.score(it, [Generation(said)]) for it, said in zip(items, MODEL_SAYS, strict=True)]
    assert [s.metrics["accuracy"] for s in samples] == [1.0, 1.0, 0.0, 1.0]
    assert "images" in samples[0].details and "images" not in samples[1].details
    scores = {s.name: (s.value, s.n) for s in task.aggregate(samples)}
    assert scores["accuracy"] == (0.75, 4)
    assert scores["accuracy/subject:NAT"] == (1.0, 2)
    assert scores["accuracy/subject:SOC"] == (0.0, 1)
    assert scores["accuracy/subject:LAN"] == (1.0, 1)
    assert scores["accuracy/context:TXT"] == (1.0, 2)  # TXT and IMG overlap, as in the paper
    assert scores["accuracy/context:IMG"] == (0.5, 2)
    assert scores["accuracy/context:NO"] == (1.0, 1)
    assert scores["accuracy/grade:G1-6"] == (0.5, 2)
    assert scores["accuracy/grade:G7-12"] == (1.0, 2)


def test_text_only_from_the_hub_keeps_the_rows_without_an_image(tmp_path, get_dataset, offline, monkeypatch):
    task, _ = _hub_task(tmp_path, get_dataset, monkeypatch, variant="text_only")
    assert [it.id for it in task.items()] == ["1", "3"]
    assert not task.needs_images


@pytest.mark.slow
def test_text_only_runs_with_a_text_model_from_the_cli(tmp_path, data_dir):
    """The issue's offline command: a text-only model on the text-only variant, no hub."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "evalmap", "run", "--models", "smollm2_135m", "--datasets", "scienceqa",
         "--variant", "text_only", "--samples", "20", "--data-dir", data_dir, "--store", str(tmp_path / "s.db"),
         "--format", "json"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)["jobs"][0]["metrics"]
    assert metrics["accuracy"]["n"] == 20
    assert metrics["accuracy/context:NO"]["n"] + metrics["accuracy/context:TXT"]["n"] == 20

