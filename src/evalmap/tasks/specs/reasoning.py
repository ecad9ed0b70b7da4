"""Reasoning datasets (catalog task type `reasoning`), as data for the multiple-choice kind.

arc_challenge and hellaswag are lm-eval's tasks (0-shot by default, acc and acc_norm);
winogrande is scored partially as lm-eval does (one context per option, the same continuation).
"""

from __future__ import annotations

import os
import re

from evalmap.tasks.data import DataSource, Record, Text, record_shape
from evalmap.tasks.kinds.multiple_choice import MultipleChoiceSpec

# -- arc_challenge -------------------------------------------------------------------

_NUM_TO_LETTER = {"1": "A", "2": "B", "3": "C", "4": "D", "5": "E"}


def _arc_check(r: Record) -> str | None:
    texts, labels = r["choices"].get("text"), r["choices"].get("label")
    if not isinstance(texts, list) or not isinstance(labels, list) or len(texts) != len(labels) or len(texts) < 2:
        return "has choices without two or more texts with one label each"
    if r["answerKey"] not in labels:
        return f"has answerKey {r['answerKey']!r}, which is not one of its labels {labels}"
    return None


@record_shape({"id": Text, "question": Text, "choices": dict, "answerKey": Text}, _arc_check)
def _arc_records(records: list[Record], origin: str) -> list[Record]:
    """Local AI2 files (question.stem, choices[{text,label}]) and the hub (question,
    choices{text,label}) to the hub shape, with numeric labels '1'-'5' mapped to letters."""
    out = []
    for r in records:
        if isinstance(r["question"], dict):
            question = r["question"]["stem"]
            texts = [c["text"] for c in r["question"]["choices"]]
            labels = [c["label"] for c in r["question"]["choices"]]
        else:
            question = r["question"]
            texts, labels = list(r["choices"]["text"]), list(r["choices"]["label"])
        out.append(
            {
                "id": r["id"],
                "question": question,
                "choices": {"text": texts, "label": [_NUM_TO_LETTER.get(x, x) for x in labels]},
                "answerKey": _NUM_TO_LETTER.get(r["answerKey"], r["answerKey"]),
            }
        )
    return out


ARC_CHALLENGE = MultipleChoiceSpec(
    dataset_id="arc_challenge",
    source=DataSource(name="test", local_files=("ARC-Challenge-Test.jsonl",), normalize=_arc_records),
    fewshot_source=DataSource(
        name="validation",
        local_files=("ARC-Challenge-Dev.jsonl",),
        hub_split="validation",
        normalize=_arc_records,
    ),
    text=lambda r: f"Question: {r['question']}\nAnswer:",
    choices=lambda r: list(r["choices"]["text"]),
    gold=lambda r: r["choices"]["label"].index(r["answerKey"]),
    labels=lambda r: list(r["choices"]["label"]),
    headline="acc_norm",
    question=lambda r: r["question"],
    options=lambda r: list(r["choices"]["text"]),
)


# -- hellaswag -----------------------------------------------------------------------


def hellaswag_preprocess(text: str) -> str:
    """lm-eval's hellaswag `preprocess`: drop WikiHow bracket tags and double spaces."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


@record_shape(
    {"id": Text, "query": Text, "endings": list[str], "label": int},
    lambda r: None if 0 <= r["label"] < len(r["endings"]) else f"has label {r['label']}, not an index of its endings",
)
def _hellaswag_records(records: list[Record], origin: str) -> list[Record]:
    """The local export is already preprocessed (idx, query, endings, label); hub rows get
    lm-eval's preprocessing: activity_label + ": " + ctx_a + " " + ctx_b.capitalize()."""
    if origin == "local":
        return [
            {"id": str(r["idx"]), "query": r["query"], "endings": list(r["endings"]), "label": int(r["label"])}
            for r in records
        ]
    out = []
    for i, r in enumerate(records):
        ctx = r["ctx_a"] + " " + r["ctx_b"].capitalize()
        out.append(
            {
                "id": str(i),
                "query": hellaswag_preprocess(r["activity_label"] + ": " + ctx),
                "endings": [hellaswag_preprocess(e) for e in r["endings"]],
                "label": int(r["label"]),
            }
        )
    return out


HELLASWAG = MultipleChoiceSpec(
    dataset_id="hellaswag",
    source=DataSource(name="validation", local_files=("hellaswag_val.jsonl.gz",), normalize=_hellaswag_records),
    fewshot_source=None,  # no local train split: exemplars from validation, never the item itself
    text=lambda r: r["query"],
    choices=lambda r: list(r["endings"]),
    gold=lambda r: int(r["label"]),
    headline="acc_norm",
    question=lambda r: f"Which ending continues this text most plausibly?\n{r['query']} ...",
    options=lambda r: list(r["endings"]),
)


# -- winogrande ----------------------------------------------------------------------


@record_shape(
    {"id": Text, "contexts": list[str], "continuation": Text, "options": list[str], "sentence": Text, "gold": int},
    lambda r: None if 0 <= r["gold"] < len(r["contexts"]) == 2 else "has no two options with a gold of 0 or 1",
)
def _winogrande_records(records: list[Record], origin: str) -> list[Record]:
    """Local llm-foundry rows (context_options[2], continuation, gold 0/1) and hub rows (sentence,
    option1, option2, answer '1'/'2') to the partial-scoring shape, with the two option words."""
    if origin == "local" and records and "context_options" not in records[0]:
        records = [r for r in records if "context_options" in r]  # dev-labels.lst lines
    out = []
    for i, r in enumerate(records):
        if "context_options" in r:
            contexts = [str(c) for c in r["context_options"]]
            prefix = os.path.commonprefix(contexts)
            prefix = prefix[: prefix.rfind(" ") + 1] if " " in prefix else ""
            rec = {
                "id": str(i),
                "contexts": contexts,
                "continuation": r["continuation"],
                "options": [c[len(prefix) :] for c in contexts],
                "sentence": prefix + "_ " + r["continuation"],
                "gold": int(r["gold"]),
            }
        else:  # lm-eval's winogrande preprocessing
            sentence = r["sentence"]
            idx = sentence.index("_")
            options = [r["option1"], r["option2"]]
            rec = {
                "id": str(r.get("qID", i)),
                "contexts": [sentence[:idx] + o for o in options],
                "continuation": sentence[idx + 1 :].strip(),
                "options": options,
                "sentence": sentence,
                "gold": {"1": 0, "2": 1}.get(str(r["answer"]), 0),
            }
        out.append(rec)
    return out


WINOGRANDE = MultipleChoiceSpec(
    dataset_id="winogrande",
    source=DataSource(
        name="validation",
        local_files=("winogrande_dev_llmfoundry.jsonl",),
        hub_split="validation",
        normalize=_winogrande_records,
    ),
    fewshot_source=None,  # lm-eval: train split (winogrande_xl); offline only dev: never the item itself
    text=lambda r: "",
    choices=lambda r: list(r["contexts"]),
    continuation=lambda r: r["continuation"],
    gold=lambda r: int(r["gold"]),
    labels=lambda r: ["1", "2"],
    metrics=("acc",),
    question=lambda r: f"Which option best fills the blank (_)?\n{r['sentence']}",
    options=lambda r: list(r["options"]),
)
