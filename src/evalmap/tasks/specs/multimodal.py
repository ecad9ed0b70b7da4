"""Multimodal datasets (catalog task type `multimodal`), as data for the visual-question kind.

Prompts are lmms-eval's defaults: ScienceQA in LLaVA's CQM-A form ("Context: <hint>" when there is
one, the question, lettered options, "Answer with the option's letter from the given choices
directly."), VQAv2 and ChartQA the question then "Answer the question using a single word or
phrase."; 16 new tokens, greedy. See docs/multimodal.md for the metrics and what differs from the
papers.
"""

from __future__ import annotations

import re
from pathlib import Path

from evalmap.metrics.answers import extract_choice_letter
from evalmap.metrics.vqa import extract_chart_answer, normalize_vqa_answer, relaxed_correct, vqa_accuracy
from evalmap.tasks.data import DataFormatError, DataSource, ImageRef, Record, Text, read_file, record_shape
from evalmap.tasks.kinds.visual_qa import Judgement, VisualQASpec

# -- scienceqa -------------------------------------------------------------------------------

SCIENCEQA_INSTRUCTION = "\nAnswer with the option's letter from the given choices directly."
_LETTERS = "ABCDEFGHIJ"
_SUBJECTS = {"natural science": "NAT", "social science": "SOC", "language science": "LAN"}


def _grade_band(grade: str) -> str | None:
    """ScienceQA's grade bands: grade1-grade6 -> G1-6, grade7-grade12 -> G7-12."""
    match = re.fullmatch(r"grade(\d+)", grade.strip())
    if not match:
        return None
    return "G1-6" if int(match.group(1)) <= 6 else "G7-12"


def _contexts(has_text: bool, has_image: bool) -> list[str]:
    """The paper's context columns: TXT (a text hint) and IMG (an image) overlap; NO is neither."""
    return [name for name, has in (("TXT", has_text), ("IMG", has_image)) if has] or ["NO"]


def _options_of(prompt: str) -> list[str]:
    """The option texts at the end of a CQM-A prompt ("\\nA. ...\\nB. ..."; an option may span lines)."""
    start = prompt.rfind("\nA. ")
    if start < 0:
        return []
    marks = [start]
    for letter in _LETTERS[1:]:
        at = prompt.find(f"\n{letter}. ", marks[-1] + 1)
        if at < 0:
            break
        marks.append(at)
    ends = marks[1:] + [len(prompt)]
    return [prompt[a + 4 : b] for a, b in zip(marks, ends, strict=True)]


def _scienceqa_check(r: Record) -> str | None:
    if len(r["answer"]) != 1 or r["answer"] not in r["letters"]:
        return f"has answer {r['answer']!r}, not one of its option letters {r['letters']}"
    return None


_SCIENCEQA_SHAPE = {"id": Text, "prompt": Text, "letters": Text, "answer": Text, "options": list[str]}


@record_shape(_SCIENCEQA_SHAPE, _scienceqa_check)
def _scienceqa_hub(records: list[Record], origin: str) -> list[Record]:
    """derek-thomas/ScienceQA (or lmms-lab/ScienceQA) rows: image, question, choices, answer index, hint,
    subject, grade; ids are the row numbers of the split (the hub copy carries no ScienceQA pid)."""
    out = []
    for i, r in enumerate(records):
        choices = [str(c) for c in r["choices"]]
        hint = (r.get("hint") or "").strip()
        context = f"Context: {hint}\n" if hint else ""
        options = "\n".join(f"{_LETTERS[k]}. {c}" for k, c in enumerate(choices))
        out.append(
            {
                "id": str(i),
                "prompt": f"{context}{r['question']}\n{options}",
                "letters": _LETTERS[: len(choices)],
                "options": choices,
                "answer": _LETTERS[int(r["answer"])],
                "image": r.get("image"),
                "subject": _SUBJECTS.get(str(r.get("subject", "")).strip()),
                "grade": _grade_band(str(r.get("grade", ""))),
                "context": _contexts(bool(hint), r.get("image") is not None),
            }
        )
    return out


@record_shape(_SCIENCEQA_SHAPE, _scienceqa_check)
def _scienceqa_text_only(records: list[Record], origin: str) -> list[Record]:
    """The text-only test questions: the local scienceqa_test_text_only.jsonl (id = ScienceQA pid, prompt in
    LLaVA's CQM-A form, answer letter; no subject or grade), or the hub split's rows without an image."""
    if origin == "hub":
        return [r for r in _scienceqa_hub(records, origin) if r["image"] is None]
    out = []
    for r in records:
        options = _options_of(r["prompt"])
        out.append(
            {
                "id": str(r["id"]),
                "prompt": r["prompt"],
                "letters": _LETTERS[: len(options)],
                "options": options,
                "answer": str(r["answer"]).strip(),
                "image": None,
                "subject": None,
                "grade": None,
                "context": _contexts(r["prompt"].startswith("Context: "), False),
            }
        )
    return out


def scienceqa_judge(record: Record, text: str) -> Judgement:
    """The option letter the answer gives (evalmap's letter extraction; an answer that is exactly one
    option's text counts as that option), right when it is the gold letter."""
    letter = extract_choice_letter(text, record["letters"])
    if letter is None:
        said = " ".join(text.split()).rstrip(".").lower()
        matches = [k for k, option in enumerate(record["options"]) if " ".join(option.split()).lower() == said]
        letter = record["letters"][matches[0]] if len(matches) == 1 else None
    return Judgement(float(letter == record["answer"]), letter, record["answer"])


_SCIENCEQA_HUB = DataSource(name="test", local_files=(), normalize=_scienceqa_hub)

SCIENCEQA = VisualQASpec(
    dataset_id="scienceqa",
    source=_SCIENCEQA_HUB,
    question=lambda r: r["prompt"] + SCIENCEQA_INSTRUCTION,
    judge=scienceqa_judge,
    metric="accuracy",
    groups=(
        ("subject", lambda r: r["subject"]),
        ("context", lambda r: r["context"]),
        ("grade", lambda r: r["grade"]),
    ),
    variants={
        "text_only": DataSource(
            name="test (text-only)", local_files=("scienceqa_test_text_only.jsonl",), normalize=_scienceqa_text_only
        ),
        "img": DataSource(name="test (image)", local_files=(), normalize=_scienceqa_hub),
    },
    text_only_variants=("text_only",),
)


# -- vqa_v2 ------------------------------------------------------------------------------------

SHORT_ANSWER_INSTRUCTION = "\nAnswer the question using a single word or phrase."


@record_shape({"id": Text, "question": Text, "answers": list[str], "answer_type": Text})
def _vqa_records(records: list[Record], origin: str) -> list[Record]:
    """lmms-lab/VQAv2 rows (question_id, question, answers [{answer, ...}] x 10, answer_type, image), or the
    official local files joined by question id (see `_read_vqa_local`)."""
    return [
        {
            "id": str(r["question_id"]),
            "question": r["question"],
            "answers": [a["answer"] if isinstance(a, dict) else str(a) for a in r["answers"]],
            "answer_type": r["answer_type"],
            "image": r.get("image"),
        }
        for r in records
    ]


def _read_vqa_local(paths: list[Path]) -> list[Record]:
    """The official VQAv2 val files: questions + annotations (joined by question_id) and the COCO val2014
    images beside them (val2014/COCO_val2014_<image_id, 12 digits>.jpg)."""
    questions_file, annotations_file = paths
    questions = read_file(questions_file)[0]["questions"]
    annotations = {a["question_id"]: a for a in read_file(annotations_file)[0]["annotations"]}
    images = questions_file.parent / "val2014"
    rows = []
    for q in questions:
        a = annotations.get(q["question_id"])
        if a is None:
            raise DataFormatError(
                f"{annotations_file} has no annotation for question {q['question_id']} of {questions_file}; "
                "use the questions and annotations files of the same release."
            )
        path = images / f"COCO_val2014_{int(q['image_id']):012d}.jpg"
        rows.append({**q, "answers": a["answers"], "answer_type": a["answer_type"], "image": ImageRef.file(path)})
    return rows


def vqa_judge(record: Record, text: str) -> Judgement:
    """Official VQA accuracy of the answer against the 10 human answers."""
    return Judgement(vqa_accuracy(text, record["answers"]), normalize_vqa_answer(text), record["answers"])


VQA_V2 = VisualQASpec(
    dataset_id="vqa_v2",
    source=DataSource(
        name="validation",
        local_files=("v2_OpenEnded_mscoco_val2014_questions.json", "v2_mscoco_val2014_annotations.json"),
        reader=_read_vqa_local,
        normalize=_vqa_records,
    ),
    question=lambda r: r["question"] + SHORT_ANSWER_INSTRUCTION,
    judge=vqa_judge,
    metric="vqa_accuracy",
    groups=(("answer_type", lambda r: r["answer_type"]),),
)


# -- chartqa -----------------------------------------------------------------------------------

_CHART_PARTS = {0: "human", 1: "augmented", "human_test": "human", "augmented_test": "augmented"}


def _chartqa_rows(records: list[Record]) -> list[Record]:
    """HuggingFaceM4/ChartQA rows (query, label [answers], human_or_machine 0/1, image), lmms-lab/ChartQA rows
    (question, answer, type human_test / augmented_test, image) or the official files' (query, label, part)."""
    out = []
    for i, r in enumerate(records):
        labels = r["label"] if "label" in r else r["answer"]
        part = r.get("part") or _CHART_PARTS[r["human_or_machine"] if "human_or_machine" in r else r["type"]]
        out.append(
            {
                "id": str(i),
                "question": r["query"] if "query" in r else r["question"],
                "labels": [str(x) for x in labels] if isinstance(labels, list) else [str(labels)],
                "part": part,
                "image": r.get("image"),
            }
        )
    return out


def _chartqa_part(part: str | None):
    @record_shape({"id": Text, "question": Text, "labels": list[str], "part": Text})
    def normalize(records: list[Record], origin: str) -> list[Record]:
        rows = _chartqa_rows(records)
        return rows if part is None else [r for r in rows if r["part"] == part]

    return normalize


def _read_chartqa_local(paths: list[Path]) -> list[Record]:
    """The official ChartQA test files (ChartQA Dataset/test/: test_human.json, test_augmented.json,
    [{imgname, query, label}]) with their charts in png/ beside them."""
    rows = []
    for path in paths:
        part = "human" if "human" in path.name else "augmented"
        for r in read_file(path):
            rows.append({**r, "part": part, "image": ImageRef.file(path.parent / "png" / r["imgname"])})
    return rows


def chartqa_judge(record: Record, text: str) -> Judgement:
    """Relaxed accuracy against any of the gold answers (metrics.vqa: 5% on numbers, years and words exact)."""
    correct = any(relaxed_correct(text, label) for label in record["labels"])
    return Judgement(float(correct), extract_chart_answer(text), record["labels"])


def _chartqa_source(part: str | None) -> DataSource:
    return DataSource(
        name="test" if part is None else f"test ({part})",
        local_files=("test/test_human.json", "test/test_augmented.json"),
        reader=_read_chartqa_local,
        normalize=_chartqa_part(part),
    )


CHARTQA = VisualQASpec(
    dataset_id="chartqa",
    source=_chartqa_source(None),
    question=lambda r: r["question"] + SHORT_ANSWER_INSTRUCTION,
    judge=chartqa_judge,
    metric="relaxed_accuracy",
    groups=(("part", lambda r: r["part"]),),
    variants={"human": _chartqa_source("human"), "augmented": _chartqa_source("augmented")},
)
