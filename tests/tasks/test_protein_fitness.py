"""protein_sequences (FLIP GB1), zero-shot: splits, the wild type, the request layout, the rank metrics by
hand, ESM masked marginals on a tiny random ESM, and the embedded SmolLM2 on llama.cpp."""

from __future__ import annotations

import csv
import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from evalmap.backends.base import (
    LogLikelihood,
    LoglikelihoodRequest,
    MaskedPositionRequest,
    PositionLogprobs,
    split_context,
)
from evalmap.catalog.loader import load_catalog
from evalmap.errors import EvalmapError
from evalmap.tasks.base import Item, SampleResult, TaskConfig
from evalmap.tasks.kinds.fitness import (
    AMINO_ACIDS,
    auc_rows,
    average_ranks,
    bootstrap_score,
    mutant_code,
    mutations,
    parse_mutant,
    spearman_rows,
    top_recall_rows,
    wild_type_from_sites,
)
from evalmap.tasks.specs.life_science import GB1_SITES, GB1_WILD_TYPE, PROTEIN_SEQUENCES

DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "datasets"
FOLDER = DATA_DIR / "protein_sequences"

needs_data = pytest.mark.skipif(not FOLDER.is_dir(), reason=f"the FLIP GB1 files are not in {FOLDER}")


def build(**config):
    return PROTEIN_SEQUENCES.build(
        load_catalog().dataset("protein_sequences"), TaskConfig(data_dir=str(DATA_DIR), **config)
    )


# -- data -------------------------------------------------------------------------------------------


@needs_data
@pytest.mark.parametrize(("variant", "count"), [(None, 5743), ("low_vs_high", 3644), ("sampled", 1745)])
def test_each_split_loads_its_test_rows(variant, count):
    task = build(variant=variant)
    items = task.items()
    assert len(items) == count
    assert len({i.id for i in items}) == count
    first = items[0].data
    assert set(first) == {"id", "sequence", "target", "mutant"} and len(first["sequence"]) == 265
    # every variant differs from the wild type only at GB1's four sites
    assert {p for i in items for p, _, _ in parse_mutant(i.data["mutant"])} <= set(GB1_SITES)
    assert len(task.items(8)) == 8


@needs_data
def test_wild_type_is_found_in_the_data():
    with gzip.open(FOLDER / "flip_gb1_three_vs_rest.csv.gz", "rt", newline="") as fh:
        rows = list(csv.DictReader(fh))
    sequences = [r["sequence"] for r in rows]
    wild = wild_type_from_sites(sequences, GB1_SITES)
    assert wild == GB1_WILD_TYPE and len(wild) == 265
    # GB1's 56-residue B1 domain opens the construct
    assert wild[:56] == "MQYKLILNGKTLKGETTTEAVDAATAEKVFKQYANDNGVDGEWTYDDATKTFTVTE"
    assert float(next(r["target"] for r in rows if r["sequence"] == wild)) == 1.0  # fitness is relative to WT
    # the only positions that vary across all 8733 rows are the four sites
    varying = {i + 1 for i in range(265) if len({s[i] for s in sequences}) > 1}
    assert varying == set(GB1_SITES)
    # the consensus is not the wild type (most variants change the sites)
    consensus = "".join(max(set(col), key=col.count) for col in zip(*sequences, strict=True))
    assert consensus != wild


def test_mutant_codes_round_trip():
    wt = "ACDEFG"
    muts = mutations(wt, "AWDEFY")
    assert muts == [(2, "C", "W"), (6, "G", "Y")]
    assert mutant_code(muts) == "C2W:G6Y" and parse_mutant("C2W:G6Y") == muts
    assert parse_mutant("WT") == [] and mutant_code([]) == ""
    with pytest.raises(ValueError):
        wild_type_from_sites(["AAA", "ACA"], {1: "G"})


# -- requests ---------------------------------------------------------------------------------------


@needs_data
def test_request_layout_is_mutant_then_shared_wild_type():
    task = build()
    a, b = task.items(2)
    ra, rb = task.requests(a), task.requests(b)
    assert ra[0] == LoglikelihoodRequest(context="Protein sequence:", continuation=" " + a.data["sequence"])
    assert ra[1] == LoglikelihoodRequest(context="Protein sequence:", continuation=" " + GB1_WILD_TYPE)
    assert ra[1].key() == rb[1].key()  # one wild-type request for every item: cached and computed once
    assert split_context(ra[0]) == (ra[0].context, ra[0].continuation)  # nothing moves across the boundary
    result = task.score(a, [LogLikelihood(-310.5, False), LogLikelihood(-300.0, False)])
    assert result.metrics == {"score": -10.5} and result.details["fitness"] == a.data["target"]


# -- metrics by hand --------------------------------------------------------------------------------


def _pearson(a, b):
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    num = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    return num / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))


def test_average_ranks_share_ties():
    assert average_ranks(np.array([[10.0, 20.0, 20.0, 5.0], [1.0, 1.0, 1.0, 0.0]])).tolist() == [
        [2.0, 3.5, 3.5, 1.0],
        [3.0, 3.0, 3.0, 1.0],
    ]


def test_spearman_with_ties_matches_hand():
    scores = [1.0, 2.0, 2.0, 3.0, 5.0]
    target = [2.0, 1.0, 3.0, 3.0, 4.0]
    # ranks by hand: scores 1, 2.5, 2.5, 4, 5; targets 2, 1, 3.5, 3.5, 5
    expected = _pearson([1, 2.5, 2.5, 4, 5], [2, 1, 3.5, 3.5, 5])
    got = spearman_rows(np.array([scores]), np.array([target]))[0]
    assert got == pytest.approx(expected) and got == pytest.approx(0.7631578947368421)
    assert spearman_rows(np.array([[1.0, 2, 3]]), np.array([[3.0, 2, 1]]))[0] == pytest.approx(-1.0)
    assert math.isnan(spearman_rows(np.array([[1.0, 1, 1]]), np.array([[1.0, 2, 3]]))[0])


def test_auc_splits_fitness_at_its_median():
    # median fitness 2.5 -> positives are the items with fitness 3 and 4
    target = np.array([[1.0, 2.0, 3.0, 4.0]])
    assert auc_rows(np.array([[0.1, 0.2, 0.3, 0.4]]), target)[0] == 1.0
    assert auc_rows(np.array([[0.4, 0.3, 0.2, 0.1]]), target)[0] == 0.0
    # positives score 0.3, 0.5; negatives 0.1, 0.5: 0.3>0.1 (1), 0.3<0.5 (0), 0.5>0.1 (1), 0.5=0.5 (1/2) -> 2.5/4
    assert auc_rows(np.array([[0.1, 0.5, 0.3, 0.5]]), target)[0] == pytest.approx(0.625)
    # an odd count: median 3 is not a positive (fitness > median), so 2 positives (4, 5), 3 negatives
    target5 = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    scores5 = np.array([[5.0, 1.0, 2.0, 3.0, 4.0]])  # positives 3, 4 beat negatives 1, 2 but not 5: 4/6
    assert auc_rows(scores5, target5)[0] == pytest.approx(4 / 6)
    assert math.isnan(auc_rows(np.array([[1.0, 2.0]]), np.array([[1.0, 1.0]]))[0])


def test_top10_recall_by_hand():
    target = np.arange(20, dtype=float)[None, :]  # the 90th percentile is 17.1: the true top is items 18, 19
    scores = target.copy()
    assert top_recall_rows(scores, target)[0] == 1.0
    scores = target.copy()
    scores[0, 19] = -1.0  # item 19 leaves the model's top (now items 17, 18): one of the two true top
    assert top_recall_rows(scores, target)[0] == 0.5
    assert top_recall_rows(-target, target)[0] == 0.0


def test_bootstrap_score_carries_n_stderr_and_ci():
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    y = x + rng.normal(size=200)
    s = bootstrap_score("spearman", spearman_rows, x, y, seed=3)
    assert s.n == 200 and s.method == "bootstrap"
    assert s.ci_low < s.value < s.ci_high and 0 < s.stderr < 0.1
    assert s == bootstrap_score("spearman", spearman_rows, x, y, seed=3)  # seeded
    one = bootstrap_score("auc", auc_rows, x[:1], y[:1])
    assert one.n == 1 and math.isnan(one.stderr)
    assert bootstrap_score("auc", auc_rows, x[:0], y[:0]).n == 0


def test_aggregate_reads_every_sample_and_skips_unscored():
    task = PROTEIN_SEQUENCES.build(load_catalog().dataset("protein_sequences"), TaskConfig())
    fitness = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]
    samples = [SampleResult({"score": f}, details={"score": f, "fitness": f}) for f in fitness]
    samples.append(SampleResult({"score": math.nan}, details={"score": math.nan, "fitness": 1.0}))
    scores = {s.name: s for s in task.aggregate(samples)}
    assert list(scores) == ["spearman", "auc", "top10_recall"] == list(PROTEIN_SEQUENCES.metric_names)
    assert PROTEIN_SEQUENCES.headline_metric() == "spearman"
    assert scores["spearman"].value == pytest.approx(1.0) and scores["spearman"].n == 10
    assert scores["auc"].value == 1.0 and scores["top10_recall"].value == 1.0
    assert all(not math.isnan(s.stderr) and s.ci_low <= s.value <= s.ci_high for s in scores.values())


# -- masked LMs: ProteinGym's masked marginals ------------------------------------------------------

ESM_TOKENS = [
    "<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N",
    "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_esm(tmp_path_factory):
    """A randomly initialised 1-layer ESM (vocabulary and tokenizer as ESM-2's), saved as a model folder."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny-esm")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(ESM_TOKENS) + "\n")
    tokenizer = transformers.EsmTokenizer(str(vocab))
    torch.manual_seed(0)
    config = transformers.EsmConfig(
        vocab_size=len(ESM_TOKENS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=300, pad_token_id=tokenizer.pad_token_id,
        mask_token_id=tokenizer.mask_token_id, position_embedding_type="rotary", token_dropout=True,
    )  # fmt: skip
    transformers.EsmForMaskedLM(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def hand_masked_logprobs(folder, sequence: str, position: int) -> dict[str, float]:
    """log p(aa) at `position` of `sequence` masked, straight from transformers (one unbatched pass)."""
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    model = transformers.AutoModelForMaskedLM.from_pretrained(str(folder)).eval()
    masked = sequence[: position - 1] + "<mask>" + sequence[position:]
    ids = tokenizer(masked, return_tensors="pt")["input_ids"]
    assert ids.shape[1] == len(sequence) + 2 and ids[0, position] == tokenizer.mask_token_id
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, position], dim=-1)
    return {aa: float(logp[tokenizer.convert_tokens_to_ids(aa)]) for aa in AMINO_ACIDS}


def test_masked_positions_match_a_hand_computation_at_any_batch_size(tiny_esm):
    from evalmap.backends.transformers_backend import TransformersBackend

    wild = "MQYKLILNGKTLKGE"
    requests = [MaskedPositionRequest(wild, p, AMINO_ACIDS) for p in (3, 1, 15, 9)]
    expected = [hand_masked_logprobs(tiny_esm, wild, r.position) for r in requests]
    for batch_size in (1, 3):
        backend = TransformersBackend(str(tiny_esm), masked_lm=True, batch_size=batch_size, device="cpu")
        assert backend.capabilities.masked_positions and not backend.capabilities.logprobs
        got = backend.masked_positions(requests)
        for answer, want in zip(got, expected, strict=True):
            assert answer.logprobs == pytest.approx(want, abs=1e-5)
        with pytest.raises(EvalmapError, match="masked LM"):
            backend.loglikelihood([LoglikelihoodRequest("a", " b")])
        with pytest.raises(EvalmapError, match="one token per residue"):
            backend.masked_positions([MaskedPositionRequest("MQJ", 1, AMINO_ACIDS)])  # J is not in ESM's vocabulary


def test_masked_marginal_scores_add_up_per_mutated_site():
    task = build(mode="masked_marginals")
    wild = GB1_WILD_TYPE
    double = wild[:38] + "A" + "G" + wild[40:]  # V39A:D40G
    item = Item(id="v", data={"id": "v", "sequence": double, "target": 0.5, "mutant": "V39A:D40G"})
    requests = task.requests(item)
    assert requests == [MaskedPositionRequest(wild, 39, AMINO_ACIDS), MaskedPositionRequest(wild, 40, AMINO_ACIDS)]
    flat = dict.fromkeys(AMINO_ACIDS, -3.0)
    answers = [PositionLogprobs({**flat, "V": -1.0, "A": -2.5}), PositionLogprobs({**flat, "D": -0.5, "G": -4.0})]
    result = task.score(item, answers)
    assert result.details["score"] == pytest.approx((-2.5 + 1.0) + (-4.0 + 0.5))
    assert result.details["masked_marginals"] == {"V39A": -1.5, "D40G": -3.5}
    wild_item = Item(id="wt", data={"id": "wt", "sequence": wild, "target": 1.0})
    assert task.requests(wild_item) == [] and task.score(wild_item, []).details["score"] == 0.0
    with pytest.raises(EvalmapError, match="--mode"):
        build(mode="generate")


@needs_data
def test_evaluate_scores_protein_sequences_with_a_masked_lm(tiny_esm, tmp_path):
    """Through `evaluate`: a catalog masked LM on user weights, one forward pass per GB1 site, the sample
    scores equal to the hand-computed masked marginals; wrong mode or model pairs fail in one sentence."""
    import evalmap
    from evalmap.backends.capabilities import CapabilityError

    store = tmp_path / "s.sqlite"
    common = {"data_dir": str(DATA_DIR), "store": store, "quiet": True, "weights": {"esm2_t6_8m": str(tiny_esm)}}
    result = evalmap.evaluate("esm2_t6_8m", "protein_sequences", 12, mode="masked_marginals", **common)
    job = result.job("protein_sequences")
    assert job.model_calls <= len(GB1_SITES)  # one masked pass per site, shared by every variant
    assert {s.name for s in job.scores} >= {"spearman", "auc", "top10_recall"} and job.headline_score.n == 12
    by_site = {p: hand_masked_logprobs(tiny_esm, GB1_WILD_TYPE, p) for p in GB1_SITES}
    for sample in result.samples("protein_sequences"):
        details = sample["details"]
        muts = parse_mutant(details["mutant"]) if details["mutant"] else []
        expected = math.fsum(by_site[p][m] - by_site[p][w] for p, w, m in muts)
        assert details["score"] == pytest.approx(expected, abs=1e-5)
    with pytest.raises(CapabilityError, match="masked_marginals"):
        evalmap.evaluate("esm2_t6_8m", "protein_sequences", 4, **common)
    with pytest.raises(CapabilityError, match="masked language model"):
        evalmap.evaluate("smollm2_135m", "protein_sequences", 4, "llamacpp", mode="masked_marginals",
                         data_dir=str(DATA_DIR), store=store, quiet=True)  # fmt: skip


# -- the embedded model -----------------------------------------------------------------------------


@needs_data
def test_embedded_smollm2_on_llamacpp_scores_eight_variants(embedded_on_llamacpp):
    from evalmap.backends.llamacpp_backend import LlamaCppBackend

    task = build()
    items = task.items(8)
    requests = [r for item in items for r in task.requests(item)]
    unique = list({r.key(): r for r in requests}.values())
    assert len(unique) == 9  # eight variants and the one wild type
    backend = LlamaCppBackend(str(embedded_on_llamacpp))
    answers = dict(zip([r.key() for r in unique], backend.loglikelihood(unique), strict=True))
    samples = [task.score(item, [answers[r.key()] for r in task.requests(item)]) for item in items]
    assert all(math.isfinite(s.details["score"]) and s.details["ll_wild_type"] < 0 for s in samples)
    scores = task.aggregate(samples)
    assert [s.name for s in scores] == ["spearman", "auc", "top10_recall"]
    assert all(s.n == 8 for s in scores)
    assert -1.0 <= scores[0].value <= 1.0 and scores[0].ci_low <= scores[0].ci_high


@needs_data
def test_evaluate_runs_protein_sequences(embedded_on_llamacpp, tmp_path):
    import evalmap

    result = evalmap.evaluate(
        "smollm2_135m", "protein_sequences", 8, "llamacpp",
        data_dir=str(DATA_DIR), store=tmp_path / "s.sqlite", quiet=True,
    )  # fmt: skip
    text = json.dumps(result.to_dict() if hasattr(result, "to_dict") else str(result), default=str)
    assert "spearman" in text and "top10_recall" in text
