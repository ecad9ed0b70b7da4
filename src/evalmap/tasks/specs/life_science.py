"""Life-science datasets (catalog task type `life_science`), as data for their kinds: genomics_benchmark
(tasks.kinds.sequence_classification), protein_sequences (tasks.kinds.fitness) and bioasq
(tasks.kinds.biomedical_qa).

## genomics_benchmark

Genomic Benchmarks (Grešová et al. 2023) as prompted binary classification (tasks.kinds.sequence_classification).

`genomics_benchmark` asks two of its human tasks, each its own subset and `--variant`:

- `promoters`: human_nontata_promoters test, 9034 windows of 251 bp (4915 promoters, 4119 not);
- `enhancers`: human_enhancers_cohn test, 6948 windows of 500 bp (3474 / 3474).

Local files `<data-dir>/genomics_benchmark/test_<config>.csv.gz` (header `seq,label`, label 1 = the
positive class), else the hub datasets katarinagresova/Genomic_Benchmarks_<config> (test; their train
split is the few-shot pool). See docs/genomics.md.

## protein_sequences

Protein fitness datasets, as data for the fitness kind (docs/protein_fitness.md).

protein_sequences is FLIP's GB1 landscape (J-SNACKKB/FLIP@62cace8735f5, splits/gb1/splits.zip): 8733
variants of a 265-residue GB1 construct mutated at V39, D40, G41 and V54 (GB1 numbering; the construct
starts with GB1's 56-residue domain), each with its measured fitness (Wu et al. 2016, binding relative
to the wild type = 1.0). Every split file holds all 8733 rows; an evaluation reads the rows with
set == test. The default split is three_vs_rest (5743 test rows), the variants low_vs_high (3644) and
sampled (1745).

Scored zero-shot (no training rows are used): the model's log-likelihood ratio of each variant against
the wild type, ranked against fitness (Spearman's rho, as FLIP and ProteinGym report).

## bioasq (tasks.kinds.biomedical_qa)

`bioasq` keeps the guide's name, but BioASQ Task B data needs registration, so the default run is the
open stand-in PubMedQA PQA-L (official 500-item test set, as lm-eval's `pubmedqa`); `--variant bioasq`
reads registered BioASQ Task B files from `<data-dir>/bioasq/*.json`. See docs/bioasq.md.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from evalmap.tasks.data import DataFormatError, DataSource, Record, Text, open_text, record_shape
from evalmap.tasks.kinds.biomedical_qa import PUBMEDQA_CLASSES, BiomedicalQASpec
from evalmap.tasks.kinds.fitness import AMINO_ACIDS, FitnessSpec, mutant_code, mutations
from evalmap.tasks.kinds.sequence_classification import SequenceClassificationSpec, Subset

# -- genomics_benchmark ----------------------------------------------------------------------

_BASES = frozenset("ACGTN")


def _read_genomics_csv(paths: list[Path]) -> list[Record]:
    """The rows of one `seq,label` CSV (with its header), in file order."""
    (path,) = paths
    with open_text(path) as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"seq", "label"} <= set(reader.fieldnames):
            raise DataFormatError(f"{path} has no header with the columns seq and label; restore it from SOURCE.md.")
        return [dict(row) for row in reader]


def _genomics_check(record: Record) -> str | None:
    if record["label"] not in (0, 1):
        return f"has label {record['label']!r} (not 0 or 1)"
    if not set(record["seq"]) <= _BASES:
        return f"has a seq with letters other than A, C, G, T, N ({sorted(set(record['seq']) - _BASES)[:3]})"
    return None


def _normalizer(subset: str):
    @record_shape({"id": Text, "subset": Text, "seq": Text, "label": int}, _genomics_check)
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
            name=f"{name} test", local_files=(f"test_{config}.csv.gz",), reader=_read_genomics_csv, normalize=normalize
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


# -- protein_sequences ----------------------------------------------------------------------

# The row of every FLIP GB1 file whose sites 39, 40, 41 and 54 read V, D, G, V (its fitness is 1.0);
# tests/tasks/test_protein_fitness.py finds it in the data again.
GB1_SITES = {39: "V", 40: "D", 41: "G", 54: "V"}
GB1_WILD_TYPE = (
    "MQYKLILNGKTLKGETTTEAVDAATAEKVFKQYANDNGVDGEWTYDDATKTFTVTELEVLFQGPLDPNSMATYEVLCEVARKLGTDDREVVLFLLNVF"
    "IPQPTLAQLIGALRALKEEGRLTFPLLAECLFRAGRRDLLRDLLHLDPRFLERHLAGTMSYFSPYQLTVLHVDGELCARDIRSLIFLSKDTIGSRSTP"
    "QTFLHWVYCMENLDLLGPTDVDALMSMLRSLSRVDLQRQVQTLMGLHLSGPSHSQHYRHTPLEHHHHHH"
)


def _read_flip(paths: list[Path]) -> list[Record]:
    """A FLIP split file (csv with a header: sequence, target, set, validation), every row."""
    records: list[Record] = []
    for path in paths:
        with open_text(path) as fh:
            records += [dict(row) for row in csv.DictReader(fh)]
    return records


def _variant_problem(record: Record) -> str | None:
    sequence = record["sequence"]
    if len(sequence) != len(GB1_WILD_TYPE):
        return f"has a sequence of {len(sequence)} residues where GB1's construct has {len(GB1_WILD_TYPE)}"
    odd = "".join(sorted(set(sequence) - set(AMINO_ACIDS)))
    if odd:
        return f"has letters that are not amino acids in its sequence ({odd})"
    return None


@record_shape({"id": Text, "sequence": Text, "target": float, "mutant": str}, _variant_problem)
def _flip_records(records: list[Record], origin: str) -> list[Record]:
    """The test rows (set == test; every row when the records have no `set`, as a hub test split),
    named by their mutations against the wild type ("V39A:D40G", "WT" for the wild type itself)."""
    out = []
    for r in records:
        if "set" in r and str(r["set"]).strip() != "test":
            continue
        sequence = str(r["sequence"]).strip()
        code = mutant_code(mutations(GB1_WILD_TYPE, sequence)) if len(sequence) == len(GB1_WILD_TYPE) else ""
        out.append({"id": code or "WT", "sequence": sequence, "target": float(r["target"]), "mutant": code})
    return out


def _flip_split(name: str) -> DataSource:
    return DataSource(name=name, local_files=(f"flip_gb1_{name}.csv.gz",), reader=_read_flip, normalize=_flip_records)


PROTEIN_SEQUENCES = FitnessSpec(
    dataset_id="protein_sequences",
    source=_flip_split("three_vs_rest"),
    wild_type=GB1_WILD_TYPE,
    variants={"low_vs_high": _flip_split("low_vs_high"), "sampled": _flip_split("sampled")},
)


# -- bioasq --------------------------------------------------------------------------------

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
