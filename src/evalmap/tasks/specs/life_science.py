"""Life-science datasets (catalog task type `life_science`), as data for their kinds.

## bioasq (tasks.kinds.biomedical_qa)

`bioasq` keeps the guide's name, but BioASQ Task B data needs registration, so the default run is the
open stand-in PubMedQA PQA-L (official 500-item test set, as lm-eval's `pubmedqa`); `--variant bioasq`
reads registered BioASQ Task B files from `<data-dir>/bioasq/*.json`. See docs/bioasq.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from evalmap.tasks.data import DataFormatError, DataSource, Record, Text, open_text, record_shape
from evalmap.tasks.kinds.biomedical_qa import PUBMEDQA_CLASSES, BiomedicalQASpec

PUBMEDQA_FILES = ("pqal_test_set.json.gz", "test_ground_truth.json")
BIOASQ_TYPES = ("yesno", "factoid", "list", "summary")


def _read_pubmedqa(paths: list[Path]) -> list[Record]:
    """The 500 test items (PMID -> entry) joined with test_ground_truth.json's labels, in file order."""
    by_name = {p.name: p for p in paths}
    with open_text(by_name["pqal_test_set.json.gz"]) as fh:
        items = json.load(fh)
    with open_text(by_name["test_ground_truth.json"]) as fh:
        labels = json.load(fh)
    missing = [k for k in items if k not in labels]
    if missing:
        raise DataFormatError(f"test_ground_truth.json has no label for PMID {missing[0]}; restore it from SOURCE.md.")
    return [{**entry, "PUBMED_ID": pmid, "_label": labels[pmid]} for pmid, entry in items.items()]


def _contexts(value) -> list[str]:
    if isinstance(value, dict):  # some hub exports: {"contexts": [...], ...}
        value = value.get("contexts", [])
    return [str(c) for c in value]


def _label_known(record: Record) -> str | None:
    return None if record["label"] in PUBMEDQA_CLASSES else f"has label {record['label']!r} (not yes, no or maybe)"


@record_shape({"id": Text, "question": Text, "contexts": list[str], "label": Text}, _label_known)
def _pubmedqa_records(records: list[Record], origin: str) -> list[Record]:
    """PubMedQA items as the kind reads them (local files or the bigbio source config on the hub)."""
    return [
        {
            "id": str(r.get("PUBMED_ID") or r.get("pubid") or i),
            "question": r["QUESTION"] if "QUESTION" in r else r["question"],
            "contexts": _contexts(r["CONTEXTS"] if "CONTEXTS" in r else r["context"]),
            "label": str(r.get("_label") or r["final_decision"]).lower(),
        }
        for i, r in enumerate(records)
    ]


def _read_bioasq(paths: list[Path]) -> list[Record]:
    """Every question of every BioASQ Task B file ({"questions": [...]}), in file order."""
    records = []
    for path in paths:
        with open_text(path) as fh:
            try:
                data = json.load(fh)
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}).") from None
        if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
            raise DataFormatError(f'{path} has no "questions" list (the BioASQ Task B format).')
        records += data["questions"]
    return records


def _bioasq_check(record: Record) -> str | None:
    if record["type"] not in BIOASQ_TYPES:
        return f"has type {record['type']!r} (not one of {', '.join(BIOASQ_TYPES)})"
    if record["type"] != "summary" and not record["exact_answer"]:
        return f"is a {record['type']} question without an exact_answer"
    return None


@record_shape({"id": Text, "type": Text, "body": Text, "snippets": list[str]}, _bioasq_check)
def _bioasq_records(records: list[Record], origin: str) -> list[Record]:
    return [
        {
            "id": str(r["id"]),
            "type": r["type"],
            "body": r["body"],
            "snippets": [s["text"] if isinstance(s, dict) else str(s) for s in r.get("snippets") or []],
            "exact_answer": r.get("exact_answer"),
            "ideal_answer": r.get("ideal_answer"),
        }
        for r in records
    ]


BIOASQ = BiomedicalQASpec(
    dataset_id="bioasq",
    source=DataSource(
        name="test", local_files=PUBMEDQA_FILES, reader=_read_pubmedqa, normalize=_pubmedqa_records
    ),
    bioasq_source=DataSource(name="bioasq", reader=_read_bioasq, normalize=_bioasq_records),
)
