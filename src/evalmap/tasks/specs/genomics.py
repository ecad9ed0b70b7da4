"""Genomic Benchmarks (Grešová et al. 2023) as prompted binary classification (tasks.kinds.sequence_classification).

`genomics_benchmark` asks two of its human tasks, each its own subset and `--variant`:

- `promoters`: human_nontata_promoters test, 9034 windows of 251 bp (4915 promoters, 4119 not);
- `enhancers`: human_enhancers_cohn test, 6948 windows of 500 bp (3474 / 3474).

Local files `<data-dir>/genomics_benchmark/test_<config>.csv.gz` (header `seq,label`, label 1 = the
positive class), else the hub datasets katarinagresova/Genomic_Benchmarks_<config> (test; their train
split is the few-shot pool). See docs/genomics.md.
"""

from __future__ import annotations

import csv
from pathlib import Path

from evalmap.tasks.data import DataFormatError, DataSource, Record, Text, open_text, record_shape
from evalmap.tasks.kinds.sequence_classification import SequenceClassificationSpec, Subset

_BASES = frozenset("ACGTN")


def _read_csv(paths: list[Path]) -> list[Record]:
    """The rows of one `seq,label` CSV (with its header), in file order."""
    (path,) = paths
    with open_text(path) as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"seq", "label"} <= set(reader.fieldnames):
            raise DataFormatError(f"{path} has no header with the columns seq and label; restore it from SOURCE.md.")
        return [dict(row) for row in reader]


def _check(record: Record) -> str | None:
    if record["label"] not in (0, 1):
        return f"has label {record['label']!r} (not 0 or 1)"
    if not set(record["seq"]) <= _BASES:
        return f"has a seq with letters other than A, C, G, T, N ({sorted(set(record['seq']) - _BASES)[:3]})"
    return None


def _normalizer(subset: str):
    @record_shape({"id": Text, "subset": Text, "seq": Text, "label": int}, _check)
    def normalize(records: list[Record], origin: str) -> list[Record]:
        """Rows as the kind reads them: id "<subset>-<row>", subset, seq (upper case), label 0 / 1."""
        return [
            {
                "id": f"{subset}-{i}",
                "subset": subset,
                "seq": str(r["seq"]).strip().upper(),
                "label": int(str(r["label"]).strip()),
            }
            for i, r in enumerate(records)
        ]

    return normalize


def _subset(name: str, config: str, instruction: str, question: str, positive: str) -> Subset:
    normalize = _normalizer(name)
    return Subset(
        name=name,
        source=DataSource(
            name=f"{name} test", local_files=(f"test_{config}.csv.gz",), reader=_read_csv, normalize=normalize
        ),
        train=DataSource(name=f"{name} train", local_files=(), hub_split="train", normalize=normalize),
        hub_id=f"katarinagresova/Genomic_Benchmarks_{config}",
        instruction=instruction,
        question=question,
        positive=positive,
        aliases=(config,),
    )


_BASES_NOTE = "(bases A, C, G, T; N is an unknown base)"

GENOMICS_BENCHMARK = SequenceClassificationSpec(
    dataset_id="genomics_benchmark",
    subsets=(
        _subset(
            "promoters",
            "human_nontata_promoters",
            "Each DNA sequence below is a 251 bp window of the human genome " + _BASES_NOTE + ". Answer yes if it "
            "is a promoter (the region around a gene's transcription start site, here of the non-TATA kind), "
            "no if it is not.",
            "Is this sequence a promoter?",
            "promoter",
        ),
        _subset(
            "enhancers",
            "human_enhancers_cohn",
            "Each DNA sequence below is a 500 bp window of the human genome " + _BASES_NOTE + ". Answer yes if it "
            "is an enhancer (a regulatory region that increases the transcription of a gene), no if it is not.",
            "Is this sequence an enhancer?",
            "enhancer",
        ),
    ),
)
