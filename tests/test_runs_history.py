"""Run history: `evalmap runs`, `runs show`, `runs rm`; a failed run is stored as failed with its error, `latest`
and `report` skip it.

The failing run is a real one: the OpenAI-compatible engine pointed at a port nothing listens on, which fails
at once (no retries), after the run record exists.
"""

from __future__ import annotations

import json
import sys

import pytest

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent / "report"))

from report_fixtures import build_store  # noqa: E402

from evalmap.cli import main  # noqa: E402
from evalmap.errors import EvalmapError  # noqa: E402
from evalmap.report.data import resolve_runs  # noqa: E402
from evalmap.store import Store  # noqa: E402


def evalmap(monkeypatch, capsys, *args: str, columns: int = 200) -> tuple[int, str, str]:
    """`evalmap ARGS` in process, printed `columns` wide: (exit code, stdout, stderr)."""
    from evalmap import cli

    monkeypatch.setattr(sys, "argv", ["evalmap", *args])
    monkeypatch.setattr(cli.out, "width", columns)
    monkeypatch.setenv("COLUMNS", str(columns))
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def failed_run(tmp_path, monkeypatch, capsys, shared_data):
    """A store holding the report fixture's two finished runs, then a run that failed (server unreachable)."""
    store, a, b = build_store(tmp_path / "store.sqlite")
    store.close()
    code, _, err = evalmap(
        monkeypatch, capsys, "run", "--models", "smollm2_135m", "--datasets", "gsm8k", "--samples", "2",
        "--data-dir", str(shared_data), "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
        "--max-retries", "0", "--timeout", "2", "--store", str(tmp_path / "store.sqlite"), "--quiet",
    )
    assert code == 2 and "Cannot reach the server at http://127.0.0.1:9/v1" in err
    return tmp_path / "store.sqlite", a, b


def test_a_failed_run_is_failed_with_its_error_and_latest_skips_it(failed_run):
    path, a, b = failed_run
    store = Store(path)
    failed = store.run_history()[0]
    assert failed["status"] == "failed" and "Cannot reach the server" in failed["error"]
    assert failed["models"] == ["smollm2_135m"] and failed["datasets"] == ["gsm8k"]  # from its arguments
    assert resolve_runs(store, ["latest"]) == [b] and resolve_runs(store, None, last=5) == [b, a]
    with pytest.raises(EvalmapError, match=rf"Run {failed['id']} failed \(Cannot reach the server"):
        resolve_runs(store, [failed["id"]])
    assert resolve_runs(store, [failed["id"]], allow_failed=True) == [failed["id"]]
    store.close()


def test_runs_lists_shows_and_removes(failed_run, monkeypatch, capsys, tmp_path):
    path, a, b = failed_run
    code, out, _ = evalmap(monkeypatch, capsys, "runs", "--store", str(path), "--format", "json")
    runs = json.loads(out)
    assert code == 0 and [r["status"] for r in runs] == ["failed", "finished", "finished"]
    assert runs[1]["id"] == b and runs[1]["samples"] == 3 * (20 + 20 + 30) + 10
    assert runs[1]["models"] == ["qwen25_7b", "qwen25_math_7b", "llama31_8b"]

    code, out, _ = evalmap(monkeypatch, capsys, "runs", "--store", str(path), columns=100)
    assert code == 0 and "| failed: Cannot" in out and b in out and "finished" in out  # the error wraps
    assert max(len(line) for line in out.splitlines()) <= 100

    code, out, _ = evalmap(monkeypatch, capsys, "runs", "show", "latest", "--store", str(path))
    assert code == 0 and f"run      {b}" in out and "status   finished" in out
    assert "arc_challenge" in out and "(n=30)" in out and "acc" in out

    failed_id = runs[0]["id"]
    code, out, _ = evalmap(monkeypatch, capsys, "runs", "show", failed_id[-6:], "--store", str(path))
    assert code == 0 and "status   failed: Cannot reach the server" in out and "No jobs" in out

    # report without run ids: the newest finished run, never the failed one
    code, out, _ = evalmap(monkeypatch, capsys, "report", "--store", str(path), "--format", "md")
    assert code == 0 and f"# evalmap results: {b}" in out

    code, _, err = evalmap(monkeypatch, capsys, "runs", "rm", a, "--store", str(path))
    assert code == 2 and "pass --yes" in err  # stdin is not a terminal here: no silent deletion
    code, out, _ = evalmap(monkeypatch, capsys, "runs", "rm", a, "--store", str(path), "--yes")
    assert code == 0 and f"Removed run {a} (finished, 10 jobs, 220 samples)" in out
    store = Store(path)
    assert [r["id"] for r in store.run_history()] == [failed_id, b]
    left = {t: store.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("jobs", "samples", "scores")}
    assert left == {"jobs": 10, "samples": 220, "scores": 16}  # run B's, untouched
    store.close()
    code, _, err = evalmap(monkeypatch, capsys, "runs", "rm", a, "--store", str(path), "--yes")
    assert code == 2 and f"Unknown run id {a!r}" in err


def test_an_empty_store_says_so(tmp_path, monkeypatch, capsys):
    Store(tmp_path / "empty.sqlite").close()
    code, out, _ = evalmap(monkeypatch, capsys, "runs", "--store", str(tmp_path / "empty.sqlite"))
    assert code == 0 and out.startswith(f"No runs in {tmp_path / 'empty.sqlite'} yet")
    code, _, err = evalmap(monkeypatch, capsys, "report", "--store", str(tmp_path / "empty.sqlite"))
    assert code == 2 and "has no runs yet" in err
