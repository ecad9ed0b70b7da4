"""End to end: ChartQA charts drawn here, a local OpenAI-compatible server that reads each chart from the
image it receives and answers, scored by evaluate(), cached by the image, shown in the report."""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path

import pytest

import evalmap

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT / "bench", ROOT / "tests" / "tasks", ROOT / "tests" / "report"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from fake_openai_server import FakeOpenAIServer  # noqa: E402
from multimodal_fixtures import bar_chart_png, read_bar_chart  # noqa: E402
from test_report_browser import chromium  # noqa: E402, F401 - the headless-Chromium fixture

CHARTS = {"a.png": [20.0, 60.0, 40.0], "b.png": [80.0, 10.0], "c.png": [35.0, 55.0, 75.0, 15.0]}
# (chart, question, gold, part): the last two golds are off by more than 5%, so a reader that sees the
# right chart scores exactly 6 of 8 (human 4/4, augmented 2/4); a reader sent the wrong chart would not.
QUESTIONS = [
    ("a.png", "What is the value of bar 2?", "60", "human"),
    ("b.png", "How many bars are there?", "2", "human"),
    ("c.png", "What is the value of bar 3?", "75", "human"),
    ("b.png", "What is the value of bar 1?", "80", "human"),
    ("c.png", "How many bars are there?", "4", "augmented"),
    ("a.png", "What is the value of bar 1?", "20", "augmented"),
    ("a.png", "What is the value of bar 3?", "46", "augmented"),  # the bar is 40: 15% off
    ("c.png", "What is the value of bar 4?", "12", "augmented"),  # the bar is 15: 25% off
]


def _chartqa_folder(root: Path) -> Path:
    test = root / "chartqa" / "test"
    (test / "png").mkdir(parents=True)
    for name, values in CHARTS.items():
        (test / "png" / name).write_bytes(bar_chart_png(values))
    for part in ("human", "augmented"):
        rows = [{"imgname": c, "query": q, "label": gold} for c, q, gold, p in QUESTIONS if p == part]
        (test / f"test_{part}.json").write_text(json.dumps(rows))
    return root


def read_chart(messages: list[dict]) -> str:
    """The server's answer: from the image_url part of the last user message, and its question."""
    content = messages[-1]["content"]
    assert isinstance(content, list), "the image must come as an OpenAI content part"
    urls = [p["image_url"]["url"] for p in content if p.get("type") == "image_url"]
    text = " ".join(p["text"] for p in content if p.get("type") == "text")
    assert len(urls) == 1 and urls[0].startswith("data:image/png;base64,")
    values = read_bar_chart(base64.b64decode(urls[0].split(",", 1)[1]))
    if "How many bars" in text:
        return str(len(values))
    k = int(re.search(r"bar (\d+)\?", text).group(1))
    return f"{values[k - 1]:g}"


def _run(server, tmp_path, data, output=None):
    return evalmap.evaluate(
        models="qwen2_vl_7b", datasets="chartqa", backend="openai", base_url=server.base_url,
        store=tmp_path / "store.db", data_dir=str(data), quiet=True, output=output, max_retries=0,
    )  # fmt: skip


def test_charts_reach_the_server_and_are_scored_cached_and_shown(tmp_path):
    data = _chartqa_folder(tmp_path / "data")
    with FakeOpenAIServer(latency_s=0.0, chat_reply=read_chart) as server:
        def run(output=None):
            return _run(server, tmp_path, data, output)

        first = run(tmp_path / "out")
        job = first.jobs[0]
        scores = {s.name: s for s in job.scores}
        assert scores["relaxed_accuracy"].value == pytest.approx(6 / 8) and scores["relaxed_accuracy"].n == 8
        assert scores["relaxed_accuracy/part:human"].value == 1.0
        assert scores["relaxed_accuracy/part:augmented"].value == pytest.approx(2 / 4)
        assert first.model_calls == 8 and server.requests == 8

        again = run()
        assert again.model_calls == 0 and server.requests == 8  # every answer from the cache

        # a new chart behind the same question and file name: the cache keys on the image bytes
        (data / "chartqa/test/png/b.png").write_bytes(bar_chart_png([70.0, 10.0, 30.0]))
        changed = run()
        assert changed.model_calls == 2 and server.requests == 10  # the two questions about b.png
        scores = {s.name: s for s in changed.jobs[0].scores}
        assert scores["relaxed_accuracy/part:human"].value == pytest.approx(2 / 4)  # b.png now has 3 bars, 70 high

    samples_js = next((tmp_path / "out" / "report" / "samples").glob("*.js")).read_text()
    assert samples_js.count("data:image/jpeg;base64,") == 8
    assert "data:image/png;base64," not in samples_js  # thumbnails, not the sent images


def test_the_report_shows_each_chart_beside_its_question_and_answer(tmp_path, chromium):  # noqa: F811
    data = _chartqa_folder(tmp_path / "data")
    with FakeOpenAIServer(latency_s=0.0, chat_reply=read_chart) as server:
        _run(server, tmp_path, data, tmp_path / "out")
    key = next((tmp_path / "out" / "report" / "samples").glob("*.js")).stem
    index = (tmp_path / "out" / "report" / "index.html").resolve().as_uri()
    chromium.call("Page.navigate", {"url": f"{index}#samples/{key}"})
    chromium.wait_event("Page.loadEventFired", timeout=30)
    chromium.wait_for("document.querySelectorAll('#sample-list .sample').length === 8")
    sizes = chromium.js(
        "Array.from(document.querySelectorAll('#sample-list .sample')).map(c => {"
        " const i = c.querySelector('img.shot');"
        " return i && i.complete ? i.naturalWidth + 'x' + i.naturalHeight : null; })"
    )
    assert sizes == ["240x160"] * 8  # every card shows its chart (drawn 240x160, under the 320 px thumbnail bound)
    labels = chromium.js("Array.from(document.querySelector('#sample-list .sample .grid').children)"
                         ".filter(e => e.tagName === 'B').map(e => e.textContent)")
    assert labels[:5] == ["prompt", "image", "output", "extracted", "target"]
    assert "data:image" not in chromium.js("document.getElementById('sample-list').innerText")
