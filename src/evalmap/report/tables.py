"""What the report shows, computed once: leaderboards with rank groups, speed vs accuracy, transfer.

Every aggregate is a `Score` (value, stderr, CI, n) so the HTML page, the figures
and the CSV/Markdown tables print the same numbers. Aggregates only average 0-1
"higher is better" metrics (see `ReportData.bounded`); a dataset scored in seconds
or on a 1-10 scale is shown in the matrix and left out of the averages, and the
tables say so.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evalmap.metrics.aggregate import pooled_group_score
from evalmap.metrics.stats import NAN, Score, empty_score
from evalmap.report.data import (
    HOME_TASK_TYPES,
    UNCATALOGUED,
    JobRecord,
    ReportData,
    averageable,
    lower_is_better,
)

# ---------------------------------------------------------------- formatting


def isnan(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if isnan(value) else f"{value:.{digits}f}"


def fmt_score(score: Score | None, digits: int = 3) -> str:
    """"0.734 ± 0.020 (n=500)": every number the report prints carries n and its stderr."""
    if score is None or score.n == 0:
        return "n/a (n=0)"
    return f"{fmt(score.value, digits)} ± {fmt(score.stderr, digits)} (n={score.n})"


def fmt_ci(score: Score | None, digits: int = 3) -> str:
    if score is None or isnan(score.ci_low):
        return "n/a"
    return f"[{score.ci_low:.{digits}f}, {score.ci_high:.{digits}f}]"


def fmt_seconds(value: float) -> str:
    if isnan(value):
        return "n/a"
    if value < 0.01:
        return f"{value * 1000:.2f} ms"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def cell_position(data: ReportData, dataset: str, value: float) -> float:
    """0..1 colour position of a matrix cell: the value itself for 0-1 metrics, else min-max within the column
    (flipped for lower-is-better metrics, so the better model is always the brighter cell)."""
    if isnan(value):
        return NAN
    if data.bounded(dataset):
        return value
    vals = [j.value for m in data.models if (j := data.cells.get((m, dataset))) and not isnan(j.value)]
    lo, hi = min(vals), max(vals)
    pos = 0.5 if hi == lo else (value - lo) / (hi - lo)
    return 1.0 - pos if lower_is_better(data.primary_metric(dataset) or "") else pos


# ---------------------------------------------------------------- rank groups


def rank_groups(scores: Sequence[Score]) -> list[int]:
    """Rank = 1 + the number of entries whose CI lies entirely above this one's.

    Entries whose intervals overlap share a rank, so a 0.71 vs 0.70 gap at n=50 is a
    tie, not a podium (the rule LMSYS's arena uses). NaN intervals tie with everyone.
    """
    ranks = []
    for s in scores:
        above = sum(
            1 for o in scores
            if not isnan(o.ci_low) and not isnan(s.ci_high) and o.ci_low > s.ci_high
        )
        ranks.append(1 + above)
    return ranks


# ---------------------------------------------------------------- group scores (the one definition)


def group_score(name: str, headlines: Sequence[Score | None]) -> Score:
    """A group's score: the macro mean of its datasets' stored headline scores with pooled stderr
    (`metrics.aggregate.pooled_group_score`); scores without samples or value are left out, and a single
    one keeps its own interval (Wilson for 0/1). Run tables, results.json and the report all use this."""
    scores = [s for s in headlines if s is not None and s.n > 0 and not isnan(s.value)]
    if not scores:
        return empty_score(name)
    if len(scores) == 1:
        s = scores[0]
        return Score(name, s.value, s.stderr, s.ci_low, s.ci_high, s.n, s.method)
    return pooled_group_score(name, scores, "macro")


@dataclass(frozen=True)
class GroupResult:
    """One model's score on a task type (e.g. mathematics): `group_score` over its datasets' headline
    scores; `members` names the dataset:metric pairs that went in."""

    model: str
    group: str
    members: tuple[str, ...]
    score: Score


def run_groups(jobs: Sequence[tuple[str, str, Score | None]], task_type: Callable[[str], str]) -> list[GroupResult]:
    """Per model, one GroupResult for each task type that two or more of its jobs share, over the headlines
    that are 0-1 scores (`averageable`: a Spearman rho is not averaged with an accuracy).

    `jobs` are (model, dataset, headline score) triples; `task_type(dataset)` names a dataset's group.
    """
    buckets: dict[tuple[str, str], list[tuple[str, Score]]] = {}
    for model, dataset, headline in jobs:
        if headline is not None and headline.n > 0 and averageable(headline.name, headline.value):
            buckets.setdefault((model, task_type(dataset)), []).append((dataset, headline))
    return [
        GroupResult(model, group, tuple(f"{d}:{s.name}" for d, s in pairs), group_score(group, [s for _, s in pairs]))
        for (model, group), pairs in buckets.items()
        if len(pairs) >= 2
    ]


# ---------------------------------------------------------------- leaderboards


@dataclass
class LeaderEntry:
    model: str
    score: Score
    datasets: list[str]
    rank: int = 0
    tied: bool = False


@dataclass
class Leaderboard:
    kind: str  # "category" | "task_type"
    name: str
    datasets: list[str]
    entries: list[LeaderEntry]
    excluded: list[str] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return f"lb-{self.kind}-{self.name}"

    @property
    def partial(self) -> bool:
        return any(len(e.datasets) < len(self.datasets) for e in self.entries)


def _leaderboard(data: ReportData, kind: str, name: str, models: list[str], datasets: list[str]) -> Leaderboard:
    bounded = [d for d in datasets if data.bounded(d)]
    excluded = [d for d in datasets if d not in bounded and any((m, d) in data.cells for m in models)]
    entries = []
    for m in models:
        jobs = [data.cells[(m, d)] for d in bounded if (m, d) in data.cells]
        jobs = [j for j in jobs if j.primary is not None and j.primary.n > 0]
        if not jobs:
            continue
        entries.append(LeaderEntry(m, group_score(name, [j.primary for j in jobs]), [j.dataset for j in jobs]))
    entries.sort(key=lambda e: (-(e.score.value if not isnan(e.score.value) else -1e9), e.model))
    ranks = rank_groups([e.score for e in entries])
    for e, r in zip(entries, ranks, strict=True):
        e.rank = r
        e.tied = ranks.count(r) > 1
    covered = [d for d in bounded if any(d in e.datasets for e in entries)]
    return Leaderboard(kind, name, covered, entries, excluded)


def category_datasets(data: ReportData, category: str) -> list[str]:
    """The datasets the catalog's mapping recommends for a category (all tiers), in matrix order."""
    catalog = data.catalog
    if catalog is None:
        return list(data.datasets)
    wanted: set[str] = set()
    for group in catalog.mapping.groups:
        if group.category == category:
            for tier in group.tiers:
                wanted.update(catalog.select_datasets(tier.datasets))
    return [d for d in data.datasets if d in wanted] if wanted else list(data.datasets)


def leaderboards(data: ReportData) -> tuple[list[Leaderboard], list[Leaderboard]]:
    """(per model category, per task type), each ranked with ties-within-CI as shared ranks."""
    by_category = []
    categories = list(dict.fromkeys(c for m in data.models for c in data.model_categories.get(m, ())))
    from evalmap.catalog.schema import CATEGORIES

    categories.sort(key=lambda c: CATEGORIES.index(c) if c in CATEGORIES else 99)
    for cat in categories:
        models = [m for m in data.models if cat in data.model_categories.get(m, ())]
        board = _leaderboard(data, "category", cat, models, category_datasets(data, cat))
        if board.entries:
            by_category.append(board)
    uncat = [m for m in data.models if not data.model_categories.get(m)]
    if uncat:
        board = _leaderboard(data, "category", UNCATALOGUED, uncat, list(data.datasets))
        if board.entries:
            by_category.append(board)
    by_task = []
    for tt in dict.fromkeys(data.dataset_task_type[d] for d in data.datasets):
        datasets = [d for d in data.datasets if data.dataset_task_type[d] == tt]
        board = _leaderboard(data, "task_type", tt, list(data.models), datasets)
        if board.entries:
            by_task.append(board)
    return by_category, by_task


# ---------------------------------------------------------------- speed vs accuracy


@dataclass
class SpeedPoint:
    model: str
    dataset: str  # "" for a model's overall point
    score: Score
    seconds: Score  # seconds per sample
    tokens_per_s: float
    datasets: int = 1
    pareto: bool = False


def pareto_front(points: Sequence[SpeedPoint]) -> list[SpeedPoint]:
    """Points no other point beats on both speed (fewer seconds) and score (higher); fastest first."""
    usable = [p for p in points if not isnan(p.seconds.value) and not isnan(p.score.value)]
    usable.sort(key=lambda p: (p.seconds.value, -p.score.value))
    front, best = [], -math.inf
    for p in usable:
        if p.score.value > best:
            front.append(p)
            best = p.score.value
    return front


def _pooled_seconds(jobs: Sequence[JobRecord]) -> Score:
    """Seconds per sample over all samples of the jobs (sample-weighted), with its stderr."""
    n = sum(j.n_samples for j in jobs)
    total = sum(j.latency_sum for j in jobs)
    if n == 0:
        return empty_score("seconds_per_sample")
    if total <= 0:
        wall = sum(j.wall_seconds for j in jobs)
        return Score("seconds_per_sample", wall / n if wall > 0 else NAN, NAN, NAN, NAN, n, "wall")
    mean = total / n
    if n < 2:
        return Score("seconds_per_sample", mean, NAN, NAN, NAN, n, "latency")
    sq = sum(j.latency_sq for j in jobs)
    se = math.sqrt(max(sq - n * mean * mean, 0.0) / (n - 1) / n)
    return Score("seconds_per_sample", mean, se, mean - 1.96 * se, mean + 1.96 * se, n, "latency")


def speed_points(data: ReportData) -> tuple[list[SpeedPoint], dict[str, list[SpeedPoint]]]:
    """(one overall point per model, {dataset: one point per model}) with Pareto flags set."""
    per_dataset: dict[str, list[SpeedPoint]] = {}
    for d in data.datasets:
        if not data.bounded(d):
            continue
        pts = []
        for m in data.models:
            job = data.cells.get((m, d))
            if job is None or job.primary is None:
                continue
            pts.append(SpeedPoint(m, d, job.primary, job.seconds_per_sample(), job.tokens_per_second()))
        for p in pareto_front(pts):
            p.pareto = True
        if pts:
            per_dataset[d] = pts
    overall = []
    for m in data.models:
        jobs = [data.cells[(m, d)] for d in per_dataset if (m, d) in data.cells]
        if not jobs:
            continue
        secs = _pooled_seconds(jobs)
        lat = sum(j.latency_sum for j in jobs)
        tok = sum(j.sample_tokens for j in jobs)
        overall.append(
            SpeedPoint(
                m, "", group_score("overall", [j.primary for j in jobs]), secs, tok / lat if lat > 0 and tok else NAN,
                len(jobs),
            )
        )
    for p in pareto_front(overall):
        p.pareto = True
    return overall, per_dataset


# ---------------------------------------------------------------- cross-category transfer


@dataclass
class TransferCell:
    category: str
    task_type: str
    score: Score
    models: list[str]
    home: bool


def transfer(data: ReportData) -> tuple[list[str], list[str], dict[tuple[str, str], TransferCell]]:
    """Each model category's mean score on every task type: (categories, task types, cells).

    A category's models each get a macro mean over the task type's datasets they ran;
    the cell is the macro mean over those models (n = all their samples).
    """
    from evalmap.catalog.schema import CATEGORIES

    task_types = [
        t for t in dict.fromkeys(data.dataset_task_type[d] for d in data.datasets)
        if any(data.bounded(d) for d in data.datasets if data.dataset_task_type[d] == t)
    ]
    categories = sorted(
        dict.fromkeys(c for m in data.models for c in (data.model_categories.get(m) or (UNCATALOGUED,))),
        key=lambda c: CATEGORIES.index(c) if c in CATEGORIES else 99,
    )
    cells: dict[tuple[str, str], TransferCell] = {}
    for cat in categories:
        models = [m for m in data.models if cat in (data.model_categories.get(m) or (UNCATALOGUED,))]
        for tt in task_types:
            datasets = [d for d in data.datasets if data.dataset_task_type[d] == tt and data.bounded(d)]
            per_model, used = [], []
            for m in models:
                jobs = [data.cells[(m, d)] for d in datasets if (m, d) in data.cells]
                s = group_score(tt, [j.primary for j in jobs])
                if s.n > 0:
                    per_model.append(s)
                    used.append(m)
            if not per_model:
                continue
            score = group_score(tt, per_model)
            cells[(cat, tt)] = TransferCell(cat, tt, score, used, tt in HOME_TASK_TYPES.get(cat, ()))
    categories = [c for c in categories if any((c, t) in cells for t in task_types)]
    return categories, task_types, cells


# ---------------------------------------------------------------- flat tables (CSV + Markdown)


@dataclass
class Table:
    name: str
    title: str
    columns: list[str]
    rows: list[list]
    note: str = ""


def _num(value: float | None, digits: int = 4) -> str:
    return "" if isnan(value) else f"{value:.{digits}f}"


def matrix_table(data: ReportData) -> Table:
    rows = []
    for m in data.models:
        for d in data.datasets:
            job = data.cells.get((m, d))
            gap = data.gap(m, d)
            if job is None and gap is None:
                continue
            s = job.primary if job else None
            rows.append([
                data.model_of.get(m, m), data.model_category(m), d, data.dataset_task_type[d],
                "run" if job else "recommended, not run", gap or "",
                s.name if s else "", _num(s.value if s else None), _num(s.stderr if s else None),
                _num(s.ci_low if s else None), _num(s.ci_high if s else None), s.n if s else "",
                job.run_id if job else "", m.removeprefix(data.model_of.get(m, m)).strip(" []"),
            ])
    return Table(
        "matrix", "Evaluation matrix (headline metric per model × dataset)",
        ["model", "category", "dataset", "task_type", "status", "recommended_by", "metric", "value", "stderr",
         "ci_low", "ci_high", "n", "run", "settings"],
        rows,
        "settings: the settings that set a row apart when the runs differ in them (empty when they do not)."
        if data.split_by else "",
    )


def leaderboard_table(boards: list[Leaderboard], kind: str) -> Table:
    rows = []
    for b in boards:
        for e in b.entries:
            rows.append([
                b.name, f"{e.rank}{'=' if e.tied else ''}", e.model, _num(e.score.value), _num(e.score.stderr),
                _num(e.score.ci_low), _num(e.score.ci_high), e.score.n, len(e.datasets), len(b.datasets),
                " ".join(e.datasets),
            ])
    return Table(
        f"leaderboard_{kind}", f"Leaderboards per {kind.replace('_', ' ')} (macro mean of 0-1 headline metrics)",
        [kind, "rank", "model", "value", "stderr", "ci_low", "ci_high", "n", "datasets_run", "datasets_total",
         "datasets"],
        rows,
        "rank: models whose 95% CIs overlap share a rank (marked =).",
    )


def speed_table(overall: list[SpeedPoint], per_dataset: dict[str, list[SpeedPoint]]) -> Table:
    rows = []
    for p in [*overall, *(p for pts in per_dataset.values() for p in pts)]:
        rows.append([
            p.model, p.dataset or "(overall)", _num(p.score.value), _num(p.score.stderr), p.score.n,
            _num(p.seconds.value, 6), _num(p.seconds.stderr, 6), p.seconds.n, _num(p.tokens_per_s, 1),
            "yes" if p.pareto else "",
        ])
    return Table(
        "speed_accuracy", "Speed vs accuracy",
        ["model", "dataset", "score", "score_stderr", "score_n", "seconds_per_sample", "seconds_stderr",
         "seconds_n", "tokens_per_s", "pareto"],
        rows,
        "seconds per sample: the backend's model latency per item (cached responses keep their original latency).",
    )


def transfer_table(categories: list[str], task_types: list[str], cells: dict) -> Table:
    rows = []
    for c in categories:
        for t in task_types:
            cell = cells.get((c, t))
            if cell:
                s = cell.score
                rows.append([
                    c, t, "yes" if cell.home else "", _num(s.value), _num(s.stderr), _num(s.ci_low),
                    _num(s.ci_high), s.n, len(cell.models), " ".join(cell.models),
                ])
    return Table(
        "transfer", "Cross-category transfer (each model category's mean on every task type)",
        ["category", "task_type", "home", "value", "stderr", "ci_low", "ci_high", "n", "models", "model_ids"],
        rows,
    )


def runs_table(data: ReportData) -> Table:
    rows = [
        [r.id, r.status, r.seed, r.catalog_version, _num(r.wall_seconds, 1), r.n_jobs, r.samples, r.model_calls,
         r.cache_hits]
        for r in data.runs
    ]
    return Table(
        "runs", "Runs", ["run", "status", "seed", "catalog_version", "wall_seconds", "jobs", "samples",
                         "model_calls", "cache_hits"], rows,
    )


def jobs_table(data: ReportData) -> Table:
    rows = []
    for j in data.jobs:
        secs = j.seconds_per_sample()
        rows.append([
            j.run_id, j.model, j.dataset, j.status, j.backend.get("name", ""), j.backend.get("version", ""),
            j.backend.get("fingerprint", ""), j.prompt_hash, j.n_samples, _num(j.wall_seconds, 2), j.model_calls,
            j.cache_hits, j.prompt_tokens, j.completion_tokens, _num(secs.value, 6),
            "; ".join(f"{s.name}={_num(s.value)}±{_num(s.stderr)} (n={s.n})" for s in j.scores), j.judge_label,
        ])
    return Table(
        "jobs", "Jobs",
        ["run", "model", "dataset", "status", "backend", "backend_version", "fingerprint", "prompt_hash", "samples",
         "wall_seconds", "model_calls", "cache_hits", "prompt_tokens", "completion_tokens", "seconds_per_sample",
         "scores", "judge"],
        rows,
    )


def write_csv(table: Table, path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(table.columns)
        writer.writerows(table.rows)
    return path


def _md_cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(table: Table) -> str:
    lines = [f"## {table.title}", ""]
    if table.note:
        lines += [table.note, ""]
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in table.rows]
    if not table.rows:
        lines.append("| " + " | ".join("" for _ in table.columns) + " |")
    return "\n".join(lines) + "\n"


def matrix_markdown(data: ReportData) -> str:
    """The matrix as a grid for papers (models down, datasets across): value ± stderr (n) where run, *not run*
    where recommended but not run; a dataset no selected run has a value for gets no column (it is listed under
    the grid, with the commands that would fill it). The metric of each column is named under it."""
    datasets = data.shown_datasets(gaps=False)
    lines = ["## Evaluation matrix", "", "Each cell: headline metric value ± stderr (n). "
             "*not run* = recommended by the catalog mapping but absent from these runs.", ""]
    if data.split_by:
        lines += [f"Rows are split by the settings that differ between these runs ({', '.join(data.split_by)}): "
                  "compare cells of rows with the same settings only.", ""]
    lines.append("| model | " + " | ".join(datasets) + " |")
    lines.append("|---|" + "|".join("---" for _ in datasets) + "|")
    for m in data.models:
        cells = []
        for d in datasets:
            job = data.cells.get((m, d))
            if job is not None:
                cells.append(fmt_score(job.primary))
            elif data.gap(m, d):
                cells.append("*not run*")
            else:
                cells.append("")
        lines.append(f"| {_md_cell(m)} | " + " | ".join(cells) + " |")
    metrics = [f"{d}: {data.primary_metric(d)}" for d in datasets if data.primary_metric(d)]
    if metrics:
        lines += ["", "Metrics: " + "; ".join(metrics) + "."]
    unrun = [d for d in data.shown_datasets() if d not in datasets]
    if unrun:
        lines += ["", f"Recommended but not run by any of these models ({len(unrun)}): {', '.join(unrun)}."]
    todo = fill_commands(data)
    if todo:
        lines += ["", "To fill the *not run* cells:", "", *(f"    {c}" for c in todo)]
    return "\n".join(lines) + "\n"


def fill_commands(data: ReportData) -> list[str]:
    """`evalmap run` commands that fill the matrix's gaps: one per set of models missing the same datasets,
    the datasets evalmap cannot run yet named apart."""
    from evalmap.tasks.registry import supported_datasets

    runnable = set(supported_datasets())
    missing: dict[tuple[str, ...], list[str]] = {}
    cannot: set[str] = set()
    for m in data.models:
        gaps = [d for d in data.datasets if data.gap(m, d)]
        cannot.update(d for d in gaps if d not in runnable)
        todo = tuple(d for d in gaps if d in runnable)
        if todo:
            job = next(j for j in data.jobs if j.row == m)
            missing.setdefault(todo, []).append(job.model)
    out = [f"evalmap run --models {','.join(dict.fromkeys(models))} --datasets {','.join(todo)}"
           for todo, models in missing.items()]
    if cannot:
        out.append(f"# not runnable by evalmap yet (no task implementation): {', '.join(sorted(cannot))}")
    return out


def paper_markdown(store, run_ids: Sequence[str], catalog) -> str:
    """`evalmap report --format md`: the matrix grid and the leaderboards, each value as 0.533 ± 0.093 (n=30)."""
    from evalmap.report.data import load_report_data

    data = load_report_data(store, run_ids, catalog)
    parts = [f"# evalmap results: {', '.join(r.id for r in data.runs)}\n", matrix_markdown(data)]
    by_category, by_task = leaderboards(data)
    for kind, boards in (("model category", by_category), ("task type", by_task)):
        if not boards:
            continue
        lines = [f"## Leaderboards per {kind}", "", "Macro mean of the 0-1 headline metrics ± pooled stderr (n); "
                 "rank: models whose 95% CIs overlap share it (=).", "",
                 f"| {kind} | rank | model | score | 95% CI | datasets |", "|---|---|---|---|---|---|"]
        for b in boards:
            for e in b.entries:
                lines.append(f"| {b.name} | {e.rank}{'=' if e.tied else ''} | {_md_cell(e.model)} | "
                             f"{fmt_score(e.score)} | {fmt_ci(e.score)} | {len(e.datasets)}/{len(b.datasets)} |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)
