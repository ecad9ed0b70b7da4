"""Fixtures of the report tests; the store they use is described in report_fixtures.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report_fixtures import build_store  # noqa: E402


@pytest.fixture
def report_store(tmp_path):
    store, a, b = build_store(tmp_path / "store.sqlite")
    yield store, a, b
    store.close()
