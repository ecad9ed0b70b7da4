"""`--weights`: a team fine-tune (a `user_weights` catalog entry) run on local weights, and one clear sentence
when they are missing or wrong, before any model loads."""

from __future__ import annotations

import sqlite3

import pytest

import evalmap
from evalmap.errors import EvalmapError

GENOMIC = "qwen25_1_5b_genomic"  # user_weights: true, no run.hf


def run(tmp_path, shared_data, **options):
    return evalmap.evaluate(GENOMIC, "arc_challenge", 2, "llamacpp", store=tmp_path / "s.sqlite", quiet=True,
                            data_dir=str(shared_data), **options)  # fmt: skip


def test_missing_weights_are_one_sentence_before_any_run_is_recorded(tmp_path, shared_data):
    with pytest.raises(EvalmapError, match="team fine-tune without weights configured; pass --weights PATH"):
        run(tmp_path, shared_data)
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("weights", "words"),
    [
        ("/nowhere/model.gguf", "does not exist"),
        ({"smollm2_135m": "/x"}, "which this run does not evaluate"),
    ],
)
def test_wrong_weights_are_one_sentence(tmp_path, shared_data, weights, words):
    with pytest.raises(EvalmapError, match=words):
        run(tmp_path, shared_data, weights=weights)


def test_a_folder_without_config_and_an_unnamed_path_in_a_two_model_run_are_refused(tmp_path, shared_data):
    with pytest.raises(EvalmapError, match="neither a .gguf file nor a folder with config.json"):
        run(tmp_path, shared_data, weights=str(tmp_path))
    with pytest.raises(EvalmapError, match="write --weights MODEL=PATH"):
        evalmap.evaluate([GENOMIC, "smollm2_135m"], "arc_challenge", 2, "llamacpp", weights=str(tmp_path),
                         store=tmp_path / "s.sqlite", quiet=True, data_dir=str(shared_data))  # fmt: skip


def test_the_fine_tune_runs_on_the_given_file(tmp_path, shared_data, embedded_on_llamacpp):
    first = run(tmp_path, shared_data, weights=str(embedded_on_llamacpp))
    (job,) = first.jobs
    assert job.model == GENOMIC and job.n == 2 and job.model_calls > 0
    assert job.backend["model"] == str(embedded_on_llamacpp.resolve())

    copy = tmp_path / "copy.gguf"
    copy.write_bytes(embedded_on_llamacpp.read_bytes())
    other = run(tmp_path, shared_data, weights=f"{GENOMIC}={copy}")
    assert other.jobs[0].backend["model"] == str(copy.resolve())
    assert other.jobs[0].model_calls == 0  # the same bytes elsewhere: the engine fingerprints content, so cached


def test_other_weights_are_another_catalog_version(embedded_on_llamacpp, tmp_path):
    """The run key hashes the catalog version, so a run on other weights never resumes one on these."""
    from evalmap.catalog.loader import load_catalog

    catalog = load_catalog()
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(b"GGUF")
    here, there = catalog.with_weights({GENOMIC: str(embedded_on_llamacpp)}), catalog.with_weights({GENOMIC: str(copy)})
    assert len({catalog.version, here.version, there.version}) == 3
    assert here.model(GENOMIC).run.gguf.path == str(embedded_on_llamacpp.resolve())
    assert catalog.model(GENOMIC).run.gguf is None  # the loaded catalog is not changed
