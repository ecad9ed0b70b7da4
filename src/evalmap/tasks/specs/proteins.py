"""Protein fitness datasets, as data for the fitness kind (docs/protein_fitness.md).

protein_sequences is FLIP's GB1 landscape (J-SNACKKB/FLIP@62cace8735f5, splits/gb1/splits.zip): 8733
variants of a 265-residue GB1 construct mutated at V39, D40, G41 and V54 (GB1 numbering; the construct
starts with GB1's 56-residue domain), each with its measured fitness (Wu et al. 2016, binding relative
to the wild type = 1.0). Every split file holds all 8733 rows; an evaluation reads the rows with
set == test. The default split is three_vs_rest (5743 test rows), the variants low_vs_high (3644) and
sampled (1745).

Scored zero-shot (no training rows are used): the model's log-likelihood ratio of each variant against
the wild type, ranked against fitness (Spearman's rho, as FLIP and ProteinGym report).
"""

from __future__ import annotations

import csv
from pathlib import Path

from evalmap.tasks.data import DataSource, Record, Text, open_text, record_shape
from evalmap.tasks.kinds.fitness import AMINO_ACIDS, FitnessSpec, mutant_code, mutations

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


def _split(name: str) -> DataSource:
    return DataSource(name=name, local_files=(f"flip_gb1_{name}.csv.gz",), reader=_read_flip, normalize=_flip_records)


PROTEIN_SEQUENCES = FitnessSpec(
    dataset_id="protein_sequences",
    source=_split("three_vs_rest"),
    wild_type=GB1_WILD_TYPE,
    variants={"low_vs_high": _split("low_vs_high"), "sampled": _split("sampled")},
)
