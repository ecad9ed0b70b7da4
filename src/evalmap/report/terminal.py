"""Terminal views of a run: progress bars while it runs, a score table when it ends."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from evalmap.executors.local import Reporter
from evalmap.report.fit import Column, fit_table
from evalmap.report.tables import GroupResult, fmt_ci, fmt_score
from evalmap.runner import EngineProgress, JobResult


class RichReporter(Reporter):
    """A bar per job of the model being run, a jobs bar, and an engine line (tokens, tokens/s, samples/s,
    ETA) that moves at least twice a second, even while a long generation has finished no sample yet;
    silent when quiet."""

    def __init__(self, console: Console, quiet: bool = False):
        self.console = console
        self.quiet = quiet
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=console,
            disable=quiet,
            transient=False,
        )
        self.jobs_bar: TaskID | None = None
        self.engine_bar: TaskID | None = None
        self.job_bars: dict[tuple[str, str], TaskID] = {}

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def run_started(self, run_id: str, resumed: bool, jobs: int) -> None:
        verb = "resuming" if resumed else "starting"
        self.message(f"{verb} run {run_id} ({jobs} job{'s' if jobs != 1 else ''})")
        self.jobs_bar = self.progress.add_task("jobs", total=jobs, rate="")

    def job_started(self, model: str, dataset: str, total: int) -> None:
        if self.engine_bar is None:
            self.engine_bar = self.progress.add_task("engine", total=None, rate="starting")
        self.job_bars[model, dataset] = self.progress.add_task(f"{model} · {dataset}", total=total, rate="")

    def advance(self, model: str, dataset: str, n: int) -> None:
        bar = self.job_bars.get((model, dataset))
        if bar is not None:
            self.progress.advance(bar, n)

    def engine(self, model: str, progress: EngineProgress) -> None:
        if self.engine_bar is None:
            return
        parts = [f"{progress.generated_tokens:,} tokens"] if progress.generated_tokens else []
        if progress.tokens_per_s:
            parts.append(f"{progress.tokens_per_s:,.1f} tok/s")
        if progress.samples_per_s:
            parts.append(f"{progress.samples_per_s:.2f} samples/s")
        if progress.eta_s is not None:
            parts.append(f"ETA {'≤ ' if progress.eta_is_bound else ''}{_duration(progress.eta_s)}")
        if progress.failed:
            parts.append(f"{progress.failed} failed")
        self.progress.update(
            self.engine_bar, description=f"engine · {model}", completed=progress.samples_done,
            total=progress.samples_total, rate=" · ".join(parts) or "waiting for the first answer",
        )  # fmt: skip

    def job_finished(self, result: JobResult) -> None:
        if self.jobs_bar is not None:
            self.progress.advance(self.jobs_bar, 1)
        bar = self.job_bars.pop((result.model, result.dataset), None)
        if bar is not None:
            self.progress.remove_task(bar)
        if not self.job_bars and self.engine_bar is not None:
            self.progress.remove_task(self.engine_bar)
            self.engine_bar = None
        if result.measured:
            calls = "engine timed (never from the cache)"
        else:
            calls = "0 model calls (all cached)" if result.model_calls == 0 else f"{result.model_calls} model calls"
            calls += f", {result.cache_hits} cache hits"
        failed = f", {result.failed} FAILED (first: {result.failure})" if result.failed else ""
        self.message(f"{result.model} · {result.dataset}: n={result.n}, {calls}, {result.wall_seconds:.1f} s{failed}")

    def message(self, text: str) -> None:
        if not self.quiet:
            self.progress.console.print(text, highlight=False, markup=False)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


SCORE_COLUMNS = (
    Column("model", fold=True), Column("dataset"), Column("metric"), Column("value ± stderr (n)", "right"),
    Column("95% CI", "right", drop=2), Column("backend", wrap=True, drop=6, fold=True),
    Column("calls", "right", drop=5),
    Column("cache hits", "right", drop=5, short="cached"), Column("tokens/s", "right", drop=4, short="tok/s"),
    Column("wall", "right", drop=3),
)


def score_table(run_id: str, jobs: Sequence[JobResult], terminal: bool, width: int = 200) -> Table:
    """Every job's scores, its headline metric first and starred (the one groups, the report and compare use);
    metric names and numbers are never cut: columns give way as report/fit.py says."""
    rows = []
    hidden = 0
    for r in jobs:
        tps = r.tokens / r.wall_seconds if r.wall_seconds > 0 and r.model_calls else None
        headline = r.headline_score
        shown = [s for s in r.scores if ":" not in s.name]  # per subject / level / difficulty: results.json
        hidden += len(r.scores) - len(shown)
        shown.sort(key=lambda s: s is not headline)
        for i, s in enumerate(shown):
            first = i == 0
            rows.append([
                r.model if first else "", r.dataset if first else "", f"{s.name} *" if s is headline else s.name,
                fmt_score(s), fmt_ci(s),
                f"{r.backend.get('name')} {r.backend.get('version')}" if first else "",
                str(r.model_calls) if first else "", str(r.cache_hits) if first else "",
                (f"{tps:.1f}" if tps else "measured" if r.measured else "cached") if first else "",
                f"{r.wall_seconds:.1f} s" if first else "",
            ])
    notes = ["* headline metric (groups, the report and compare use it)."]
    small = [r for r in jobs if r.n < 30]
    if small:
        notes.append(", ".join(f"{r.dataset} has only {r.n} samples" for r in small) + "; treat those scores as rough.")
    if hidden:
        notes.append(f"{hidden} per-subject / level / difficulty scores are in results.json and the report.")
    return fit_table(f"Run {run_id}", SCORE_COLUMNS, rows, width, terminal, "Note: " + " ".join(notes))


GROUP_COLUMNS = (
    Column("model", fold=True), Column("group"), Column("value ± stderr (n)", "right"),
    Column("95% CI", "right", drop=2),
    Column("datasets:metric", wrap=True, drop=1),
)


def group_table(groups: Sequence[GroupResult], terminal: bool, width: int = 200) -> Table | None:
    """Task-type groups (two or more datasets of one model): macro mean with pooled stderr."""
    if not groups:
        return None
    rows = [[g.model, g.group, fmt_score(g.score), fmt_ci(g.score), ", ".join(g.members)] for g in groups]
    return fit_table("Groups (macro mean of headline metrics, pooled stderr)", GROUP_COLUMNS, rows, width, terminal)
