"""Fixtures for the task tests: catalog datasets and the shared offline data folder."""

import functools
import sys
from pathlib import Path

import pytest

try:
    import evalmap  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from evalmap.catalog.schema import Dataset  # noqa: E402
from evalmap.tasks.base import TaskConfig  # noqa: E402
from evalmap.tasks.registry import build_task  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "datasets"

# Fallback records (the catalog's datasets.yaml is the source of truth when it loads).
_LITERAL = {
    "humaneval": dict(
        task_type="coding", source={"id": "openai/openai_humaneval", "split": "test"},
        local={"folder": "humaneval", "files": ["HumanEval.jsonl.gz"], "format": "jsonl.gz"},
        count=164, request_kind="execute", metrics=["pass@1"], license="MIT",
    ),
    "gsm8k": dict(
        task_type="mathematics", source={"id": "openai/gsm8k", "config": "main", "split": "test"},
        local={"folder": "gsm8k", "files": ["test.jsonl"], "format": "jsonl"},
        count=1319, request_kind="generate",
        metrics=["exact_match_strict", "exact_match_flexible"], license="MIT",
    ),
    "arc_challenge": dict(
        task_type="reasoning",
        source={"id": "allenai/ai2_arc", "config": "ARC-Challenge", "split": "test"},
        local={"folder": "arc_challenge", "files": ["ARC-Challenge-Test.jsonl", "ARC-Challenge-Dev.jsonl"],
               "format": "jsonl"},
        count=1172, request_kind="loglikelihood", metrics=["acc", "acc_norm"], license="CC-BY-SA-4.0",
        choices=4,
    ),
    "hellaswag": dict(
        task_type="reasoning", source={"id": "Rowan/hellaswag", "split": "validation"},
        local={"folder": "hellaswag", "files": ["hellaswag_val.jsonl.gz"], "format": "jsonl.gz"},
        count=10042, request_kind="loglikelihood", metrics=["acc", "acc_norm"], license="MIT", choices=4,
    ),
    "mmlu": dict(
        task_type="knowledge", source={"id": "cais/mmlu", "config": "all", "split": "test"},
        local={"folder": "mmlu", "files": ["mmlu_test.jsonl.gz"], "format": "mixed"},
        count=14042, request_kind="loglikelihood", metrics=["acc"], license="MIT", choices=4,
    ),
    "ifeval": dict(
        task_type="instruction_following", source={"id": "google/IFEval", "split": "train"},
        count=541, request_kind="generate", metrics=["prompt_level_strict_acc"], license="Apache-2.0",
    ),
}  # fmt: skip


@functools.cache
def dataset(dataset_id: str) -> Dataset:
    try:
        from evalmap.catalog.loader import load_catalog

        return load_catalog().dataset(dataset_id)
    except Exception:  # catalog absent or mid-edit: the literal record
        return Dataset(id=dataset_id, name=dataset_id, status="ready", **_LITERAL[dataset_id])


def task(dataset_id: str, **config):
    config.setdefault("data_dir", str(DATA_DIR))
    return build_task(dataset(dataset_id), TaskConfig(**config))


@pytest.fixture(scope="session")
def data_dir() -> str:
    if not DATA_DIR.is_dir():
        pytest.skip(f"shared datasets not found at {DATA_DIR}")
    return str(DATA_DIR)


@pytest.fixture(scope="session")
def get_dataset():
    """get_dataset(id) -> the catalog's Dataset record."""
    return dataset


@pytest.fixture(scope="session")
def make_task(data_dir):
    """make_task(id, **TaskConfig fields) -> a Task reading the shared data folder."""
    return task


@pytest.fixture
def offline(monkeypatch):
    """No hub: offline env for a fresh `datasets` import, and the flags of an imported one."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("EVALMAP_DATA_DIR", raising=False)
    if "huggingface_hub" in sys.modules:
        import huggingface_hub.constants as hub_constants

        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    if "datasets" in sys.modules:
        import datasets.config as ds_config

        monkeypatch.setattr(ds_config, "HF_HUB_OFFLINE", True)
        monkeypatch.setattr(ds_config, "HF_DATASETS_OFFLINE", True)
