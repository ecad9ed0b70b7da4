"""Fail fast, in one sentence, before anything is recorded or loaded: no network, an invalid choice, a
dataset evalmap cannot run, model code with no sandbox."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from evalmap import api, hub
from evalmap.catalog.loader import load_catalog
from evalmap.cli import app, main
from evalmap.errors import EvalmapError
from evalmap.sandbox import isolation
from evalmap.sandbox.isolation import SandboxUnavailableError


@pytest.fixture
def probe(monkeypatch):
    """A fresh hub probe with no offline switch or proxy from the environment."""
    for name in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    hub.hub_unreachable.cache_clear()
    yield monkeypatch
    hub.hub_unreachable.cache_clear()


def test_the_hub_probe_says_why_at_once(probe):
    probe.setenv("HF_ENDPOINT", "https://hub.invalid")
    began = time.perf_counter()
    assert hub.hub_unreachable() == "no network: hub.invalid cannot be resolved"
    assert time.perf_counter() - began < hub.PROBE_TIMEOUT_S + 1
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    hub.hub_unreachable.cache_clear()
    probe.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert hub.hub_unreachable().startswith(f"no network: 127.0.0.1:{port} cannot be reached")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        hub.hub_unreachable.cache_clear()
        probe.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub.hub_unreachable() is None
    hub.hub_unreachable.cache_clear()
    probe.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert hub.hub_unreachable() is None  # only a request through the proxy can tell
    hub.hub_unreachable.cache_clear()
    probe.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_unreachable() == "HF_HUB_OFFLINE is set"


def test_offline_run_without_data_dir_fails_before_the_model_loads(tmp_path, embedded_on_llamacpp):
    """No --data-dir on a machine without network: the sentence in seconds, no retries, no model load."""
    dropped = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "EVALMAP_DATA_DIR")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env |= {"EVALMAP_HOME": str(tmp_path / "home"), "HF_ENDPOINT": "https://hub.invalid", "HF_HOME": str(tmp_path)}
    began = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "evalmap", "run", "--models", str(embedded_on_llamacpp), "--datasets", "gsm8k",
         "--samples", "1"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    took = time.perf_counter() - began
    assert proc.returncode == 2, proc.stderr
    assert "no network: hub.invalid cannot be resolved" in proc.stderr and "--data-dir" in proc.stderr
    assert "Retrying" not in proc.stderr and "loading" not in proc.stderr
    assert took < 20  # was ~25 s of retries alone


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["models", "--category", "code"], "'code' is not a valid category; valid: coding, math, text"),
        (["datasets", "--task-type", "math"], "'math' is not a valid task type; valid: coding, mathematics"),
        (["datasets", "--status", "done"], "valid: ready, expansion"),
        (["plan", "--models", "qwen25_7b", "--datasets", "task_type:math"], "valid: coding, mathematics"),
        (["plan", "--models", "category:code", "--datasets", "gsm8k"], "valid: coding, math"),
    ],
)
def test_invalid_choices_exit_2_listing_the_valid_ones(monkeypatch, capsys, args, says):
    monkeypatch.setattr(sys, "argv", ["evalmap", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    captured = capsys.readouterr()
    assert stop.value.code == 2 and captured.out == ""
    assert captured.err.startswith("error: ") and says in captured.err and len(captured.err.splitlines()) == 1


def test_a_dataset_without_a_task_fails_before_a_run_is_recorded(tmp_path, no_task_catalog):
    path = no_task_catalog
    store = tmp_path / "store.sqlite"
    with pytest.raises(EvalmapError, match="cannot run team_bench yet"):
        api.evaluate("smollm2_135m", ["gsm8k", "team_bench"], 1, catalog=[path], store=store)
    assert not store.exists()
    estimate = api.plan("smollm2_135m", ["gsm8k", "team_bench"], 1, catalog=[path], store=tmp_path / "none", gpu=False)
    assert [j.dataset for j in estimate.jobs] == ["gsm8k"]
    assert any("not estimated: 1 job(s) on team_bench" in n for n in estimate.notes)
    catalog = load_catalog([str(path)])
    assert not catalog.dataset("team_bench").runnable and "team_bench" not in catalog.select_datasets(["runnable"])
    assert "team_bench" in catalog.select_datasets(["status:ready"])  # the guide's label is kept apart
    runner = CliRunner()
    listed = runner.invoke(app, ["datasets", "--catalog", str(path), "--not-runnable", "--format", "json"])
    assert [(d["id"], d["guide_status"], d["runnable"]) for d in json.loads(listed.stdout)] == [
        ("team_bench", "ready", False)
    ]
    table = runner.invoke(app, ["datasets", "--catalog", str(path), "--status", "ready"], env={"COLUMNS": "200"})
    assert any("team_bench" in line and "no task" in line for line in table.stdout.splitlines())


def test_model_code_without_bwrap_needs_unsafe_no_sandbox(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.delenv(isolation.ENV_VAR, raising=False)
    monkeypatch.setattr(isolation, "_bwrap_problem", lambda: "bwrap is not installed (apt-get install bubblewrap)")
    monkeypatch.setattr(isolation, "_rlimit_problem", lambda: None)
    isolation._warn_fallback.cache_clear()
    store = tmp_path / "store.sqlite"
    monkeypatch.setattr(sys, "argv", ["evalmap", "run", "--models", "smollm2_135m", "--datasets", "humaneval",
                                      "--samples", "1", "--store", str(store)])  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.splitlines()) == 1 and "--unsafe-no-sandbox" in err
    assert not store.exists()
    catalog = load_catalog()
    pairs = [("smollm2_135m", "humaneval", 1)]
    with api.check_sandbox(catalog, pairs, unsafe_no_sandbox=True):
        assert isolation.isolation_available() == "rlimit"  # the scorers may fall back while the run lasts
        assert isolation.isolation_available() == "rlimit"
    said = [r for r in caplog.records if "resource limits ONLY" in r.getMessage()]
    assert len(said) == 1
    with pytest.raises(SandboxUnavailableError):
        isolation.isolation_available()
    api.check_sandbox(catalog, [("smollm2_135m", "gsm8k", 1)], unsafe_no_sandbox=False)  # no code runs: no question


def test_offline_hub_model_fails_without_retries(tmp_path, shared_data):
    """An hf: model on a machine without network: the hub cache or one sentence, not a minute of retries."""
    pytest.importorskip("transformers")
    dropped = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env |= {"EVALMAP_HOME": str(tmp_path / "home"), "HF_ENDPOINT": "https://hub.invalid", "HF_HOME": str(tmp_path)}
    began = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "evalmap", "run", "--models", "hf:org/Foo-1.5B", "--datasets", "gsm8k",
         "--samples", "1", "--data-dir", str(shared_data)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "Could not load the model 'org/Foo-1.5B'" in proc.stderr, proc.stderr
    assert "Retrying" not in proc.stderr and "Retry" not in proc.stderr
    assert time.perf_counter() - began < 30  # was ~58 s here
