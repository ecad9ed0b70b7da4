"""Every command's table at 80, 100 and 200 columns: no line wider than the terminal, and no id, metric name or
number broken across lines or cut short (columns are hidden instead, and the table says which)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "report"))

from report_fixtures import build_store  # noqa: E402

from evalmap.api import load_run  # noqa: E402
from evalmap.cli import main  # noqa: E402
from evalmap.report.fit import Column, fit_columns, fit_table, needed_width  # noqa: E402
from evalmap.report.terminal import score_table  # noqa: E402

WIDTHS = (80, 100, 200)


def evalmap(monkeypatch, capsys, columns: int, *args: str) -> str:
    """`evalmap ARGS` in process with stdout `columns` wide (as a pipe with COLUMNS set would be); its stdout."""
    from evalmap import cli

    monkeypatch.setattr(sys, "argv", ["evalmap", *args])
    monkeypatch.setattr(cli.out, "width", columns)
    monkeypatch.setenv("COLUMNS", str(columns))
    try:
        main()
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    return capsys.readouterr().out


def whole(text: str, token: str) -> bool:
    """`token` appears in `text` unbroken, not as part of a longer id or number."""
    return re.search(rf"(?<![\w.,@:-]){re.escape(token)}(?![\w.,@-])", text) is not None


def check(text: str, width: int, tokens) -> None:
    lines = text.splitlines()
    assert lines and max(len(line.rstrip()) for line in lines) <= width, text
    broken = [t for t in dict.fromkeys(tokens) if not whole(text, t)]
    assert broken == [], f"broken or missing at {width} columns: {broken}\n{text}"
    assert "…" not in text  # nothing cut short


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("widths") / "store.sqlite"
    store, a, b = build_store(path)
    store.close()
    return path


@pytest.mark.parametrize("width", WIDTHS)
def test_catalog_tables(width, monkeypatch, capsys):
    models = json.loads(evalmap(monkeypatch, capsys, 200, "models", "--format", "json"))
    check(evalmap(monkeypatch, capsys, width, "models"), width, [m["id"] for m in models])
    datasets = json.loads(evalmap(monkeypatch, capsys, 200, "datasets", "--format", "json"))
    text = evalmap(monkeypatch, capsys, width, "datasets")
    check(text, width, [d["id"] for d in datasets] + [f"{d['count']:,}" for d in datasets if d.get("count")])
    recs = json.loads(evalmap(monkeypatch, capsys, 200, "recommend", "smollm2_135m", "--format", "json"))
    check(evalmap(monkeypatch, capsys, width, "recommend", "smollm2_135m"), width,
          [r["dataset"] for r in recs["recommendations"]])
    plans = json.loads(evalmap(monkeypatch, capsys, 200, "plans", "--format", "json"))
    check(evalmap(monkeypatch, capsys, width, "plans"), width, [p["id"] for p in plans])
    check(evalmap(monkeypatch, capsys, width, "matrix"), width, [])
    check(evalmap(monkeypatch, capsys, width, "stats"), width, [])


@pytest.mark.parametrize("width", WIDTHS)
def test_plan_table(width, monkeypatch, capsys):
    plan = json.loads(evalmap(monkeypatch, capsys, 200, "plan", "A", "--format", "json"))
    text = evalmap(monkeypatch, capsys, width, "plan", "A")
    check(text, width, [j["model"] for j in plan["jobs"]] + [j["dataset"] for j in plan["jobs"]]
          + [f"{j['samples']:,}" for j in plan["jobs"]])
    if width < 200:
        assert f"Hidden to fit {width} columns:" in text


@pytest.mark.parametrize("width", WIDTHS)
def test_run_score_table(width, store_path):
    """The table `evalmap run` ends with: strict and flexible exact match stay two different, whole names."""
    run = load_run("latest", store=store_path)
    text = _render(score_table(run.run_id, run.jobs, False, width), width)
    scores = [s for j in run.jobs for s in j.scores]
    check(text, width, ["exact_match_strict", "exact_match_flexible", "acc_norm", run.run_id]
          + [f"(n={s.n})" for s in scores] + [j.model for j in run.jobs])


@pytest.mark.parametrize("width", WIDTHS)
def test_compare_and_runs_tables(width, store_path, monkeypatch, capsys):
    payload = json.loads(evalmap(monkeypatch, capsys, 200, "compare", "latest~1", "latest", "--store",
                                 str(store_path), "--format", "json", "--iters", "200"))
    text = evalmap(monkeypatch, capsys, width, "compare", "latest~1", "latest", "--store", str(store_path),
                   "--iters", "200")
    tokens = [r["metric"] for r in payload["rows"]] + [r["dataset"] for r in payload["rows"]]
    tokens += [f"{r['diff']:+.3f}" for r in payload["rows"]]
    shown_ci = "95% CI" in text.split("Hidden")[0]
    if shown_ci:
        tokens += [f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]" for r in payload["rows"]]
    else:
        assert re.search(r"Hidden to fit \d+ columns: .*95% CI", text.replace("\n", " "))
    check(text, width, tokens)
    assert "Settings: A and B were run with the same settings" in text

    runs = json.loads(evalmap(monkeypatch, capsys, 200, "runs", "--store", str(store_path), "--format", "json"))
    check(evalmap(monkeypatch, capsys, width, "runs", "--store", str(store_path)), width, [r["id"] for r in runs])
    text = evalmap(monkeypatch, capsys, width, "runs", "show", "latest", "--store", str(store_path))
    check(text, width, ["qwen25_7b", "qwen25_math_7b", "llama31_8b", "arc_challenge", "humaneval", "mt_bench"])


def test_columns_hide_in_order_and_short_headers_come_first():
    cols = [Column("id"), Column("description", wrap=True, drop=1), Column("requests", "right", short="reqs"),
            Column("extra", drop=2)]
    rows = [["smollm2_135m", "a small model for quick checks on a laptop", "1,140", "x" * 30]]
    assert fit_columns(cols, rows, 200) == ([0, 1, 2, 3], False, False)
    narrow = needed_width([cols[i] for i in (0, 1, 2)], [[r[i] for i in (0, 1, 2)] for r in rows], short=True)
    # the highest drop goes first, the headers are shortened; the description wraps to its minimum before it goes
    assert fit_columns(cols, rows, narrow) == ([0, 1, 2], True, False)
    text = _render(fit_table("t", cols, rows, narrow, False), narrow)
    assert "for quick" not in text and "laptop" in text and whole(text, "smollm2_135m")  # the description wraps
    assert fit_columns(cols, rows, narrow - 1) == ([0, 2], True, False)
    # nothing left to hide: cells of several words wrap between them, one-word cells stay whole
    cols = [Column("id"), Column("time")]
    rows = [["genomics_benchmark", "5 min (4-6 min)"]]
    assert fit_columns(cols, rows, 35) == ([0, 1], False, True)
    text = _render(fit_table("t", cols, rows, 35, False), 35)
    assert whole(text, "genomics_benchmark") and "5 min" in text and "(4-6" in text and "…" not in text


def test_a_column_of_one_value_folds_and_a_drop_rank_goes_whole():
    cols = [Column("model", fold=True), Column("dataset"), Column("A", drop=2), Column("B", drop=2),
            Column("p", drop=3)]
    rows = [["qwen25_math_7b", "gsm8k", "0.250 ± 0.099", "0.600 ± 0.112", "0.0654"],
            ["", "arc_challenge", "0.400 ± 0.091", "0.433 ± 0.092", "1"]]
    assert fit_columns(cols, rows, 200) == ([0, 1, 2, 3, 4], False, False)
    keep, _, _ = fit_columns(cols, rows, 60)
    assert keep == [1, 2, 3, 4]  # the model is said once under the table, nothing is hidden yet
    text = _render(fit_table("t", cols, rows, 60, False), 60)
    assert "In every row: model: qwen25_math_7b." in text and "Hidden" not in text
    keep, _, _ = fit_columns(cols, rows, 40)
    assert keep == [1, 4]  # A and B go together, and p, hidden first, fits again beside them
    text = _render(fit_table("t", cols, rows, 40, False), 40)
    assert "Hidden to fit 40 columns: A, B (" in " ".join(text.split())


def _render(table, width: int) -> str:
    from rich.console import Console

    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(table)
    return console.export_text()


def test_piped_output_honours_columns(tmp_path):
    """A real pipe: COLUMNS=80 gives an 80-column table, no COLUMNS a wide one (files and scripts)."""
    cmd = [sys.executable, "-c", "from evalmap.cli import main; main()", "models"]
    env = {k: v for k, v in __import__("os").environ.items() if k != "COLUMNS"}
    narrow = subprocess.run(cmd, env={**env, "COLUMNS": "80"}, capture_output=True, text=True, check=True).stdout
    wide = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    assert max(len(line.rstrip()) for line in narrow.splitlines()) <= 80 < max(len(line) for line in wide.splitlines())
    assert "Hidden to fit 80 columns" in narrow and "Hidden" not in wide
