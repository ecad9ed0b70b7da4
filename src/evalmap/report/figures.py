"""Matplotlib figures of the report, written as PNG and SVG (object API only: no pyplot state, no GUI).

heatmap: models × datasets, grouped by category and task type, gaps hatched.
leaderboards: one panel per category / task type, bars with 95% CI whiskers and rank labels.
speed vs accuracy: seconds per sample (log) against score, Pareto frontier, overall and per dataset.
measured speed vs accuracy: efficiency jobs' tokens/s against quality jobs' score (report.efficiency).
transfer: model categories × task types, home task types outlined.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

from evalmap.report.data import ReportData
from evalmap.report.efficiency import MeasuredPoint, measured_front, measured_points
from evalmap.report.tables import Leaderboard, SpeedPoint, TransferCell, cell_position, isnan, pareto_front

try:  # the `report` extra; without it the HTML report is still written, without PNG/SVG files
    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    HAVE_MATPLOTLIB = True
except ImportError:  # pragma: no cover - exercised only without the extra
    HAVE_MATPLOTLIB = False

RC = {
    "svg.fonttype": "none",  # text stays text: smaller, searchable SVGs
    "svg.hashsalt": "evalmap",  # stable ids: the same data gives the same file
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _save(fig, out_dir: Path, name: str) -> dict[str, Path]:
    paths = {}
    with matplotlib.rc_context(RC):
        for ext in ("png", "svg"):
            path = out_dir / f"{name}.{ext}"
            fig.savefig(path, format=ext, dpi=110 if ext == "png" else None, bbox_inches="tight",
                        metadata={"Date": None} if ext == "svg" else None)
            paths[ext] = path
    return paths


def _column_n(data: ReportData, dataset: str) -> int | None:
    """The sample count shared by every run cell of a column, else None."""
    ns = {j.primary.n for m in data.models if (j := data.cells.get((m, dataset))) and j.primary}
    return ns.pop() if len(ns) == 1 else None


def heatmap(data: ReportData):
    datasets = data.shown_datasets()
    rows, cols = len(data.models), len(datasets)
    fig = Figure(figsize=(max(6.0, 2.0 + cols * 0.72), max(3.0, 2.2 + rows * 0.36)))
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"]
    dense = rows * cols > 200
    col_n = {d: _column_n(data, d) for d in datasets}
    rgba = np.ones((rows, cols, 4))
    gaps = []
    for i, m in enumerate(data.models):
        for k, d in enumerate(datasets):
            job = data.cells.get((m, d))
            if job is None:
                if data.gap(m, d):
                    gaps.append((i, k))
                    rgba[i, k] = (0.97, 0.9, 0.89, 1.0)
                else:
                    rgba[i, k] = (0.96, 0.96, 0.96, 1.0)
                continue
            s = job.primary
            pos = cell_position(data, d, s.value if s else math.nan)
            colour = (0.8, 0.8, 0.8, 1.0) if isnan(pos) else cmap(pos)
            rgba[i, k] = colour
            if s is None:
                continue
            lum = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
            se = "" if isnan(s.stderr) else f"±{s.stderr:.2f}"
            if dense:
                text = f"{s.value:.2f}{se}" + ("" if col_n[d] == s.n else f"\nn={s.n}")
            else:
                text = f"{s.value:.3f}\n{se}\nn={s.n}"
            ax.text(k, i, text, ha="center", va="center", fontsize=5.5 if dense else 7,
                    color="black" if lum > 0.5 else "white", linespacing=1.0)
    ax.imshow(rgba, aspect="auto", interpolation="nearest")
    for i, k in gaps:
        ax.add_patch(Rectangle((k - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#c0392b", hatch="///",
                               linewidth=0.5))
        if not dense:
            ax.text(k, i, "not run", ha="center", va="center", fontsize=6, color="#b22222")
    labels = [f"{d}\n(n={col_n[d]})" if col_n[d] and dense else d for d in datasets]
    ax.set_xticks(range(cols), labels, rotation=60, ha="right", fontsize=6.5, rotation_mode="anchor")
    ax.set_yticks(range(rows), data.models, fontsize=7)
    ax.tick_params(length=0)
    ax.minorticks_off()
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    # group separators and labels: task types across the top (placed in points above the axes, so the title's
    # distance from them does not depend on how tall a row is), categories down the right
    prev = None
    longest = 0
    for k, d in enumerate(datasets):
        tt = data.dataset_task_type[d]
        if tt != prev:
            if k:
                ax.axvline(k - 0.5, color="black", linewidth=1.2)
            label = tt.replace("_", " ")
            ax.annotate(label, xy=(k - 0.45, 1.0), xycoords=ax.get_xaxis_transform(), xytext=(0, 3),
                        textcoords="offset points", fontsize=7, ha="left", va="bottom", rotation=30,
                        rotation_mode="anchor", fontweight="bold", annotation_clip=False)
            longest = max(longest, len(label))
            prev = tt
    prev = None
    for i, m in enumerate(data.models):
        cat = data.model_category(m)
        if cat != prev:
            if i:
                ax.axhline(i - 0.5, color="black", linewidth=1.2)
            ax.text(cols - 0.4, i, cat, fontsize=7, ha="left", va="center", fontweight="bold")
            prev = cat
    # a bold 7 pt character is ~4.6 pt wide; rotated 30°, a label rises width·sin 30° + height·cos 30°
    rise = 3 + longest * 4.6 * 0.5 + 7 * 1.2 * 0.87
    ax.set_title("Evaluation matrix: headline metric ± stderr" + (" (n under each dataset)" if dense else " (n)")
                 + "; hatched = recommended, not run", fontsize=9, pad=rise + 10)
    return fig


def leaderboards(boards: list[Leaderboard], title: str):
    ncols = 2 if len(boards) > 1 else 1
    nrows = math.ceil(len(boards) / ncols)
    tallest = max(len(b.entries) for b in boards)
    fig = Figure(figsize=(6.5 * ncols, nrows * (0.9 + 0.26 * tallest)))
    labelled = tallest <= 12
    where = "" if labelled else "; values ± stderr (n) in the leaderboard tables"
    fig.suptitle(title + f" (bars: mean, whiskers: 95% CI; equal rank = tie within CI{where})", fontsize=10)
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    for idx, board in enumerate(boards):
        ax = fig.add_subplot(nrows, ncols, idx + 1)
        entries = board.entries
        ys = list(range(len(entries)))
        vals = [e.score.value for e in entries]
        lows = [0 if isnan(e.score.ci_low) else max(0.0, e.score.value - e.score.ci_low) for e in entries]
        highs = [0 if isnan(e.score.ci_high) else max(0.0, e.score.ci_high - e.score.value) for e in entries]
        rank_ids = sorted(set(e.rank for e in entries))
        colours = [palette[rank_ids.index(e.rank) % len(palette)] for e in entries]
        ax.barh(ys, vals, xerr=[lows, highs], color=colours, alpha=0.85, capsize=2, error_kw={"linewidth": 0.8})
        ax.set_yticks(ys, [f"{e.rank}{'=' if e.tied else ''}  {e.model}" for e in entries], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.0)
        if labelled:
            for y, e in zip(ys, entries, strict=True):
                ax.text(1.0, y, f" {e.score.value:.3f}±{e.score.stderr:.3f} n={e.score.n}", va="center", fontsize=6,
                        clip_on=False)
        ax.minorticks_off()
        partial = " (partial coverage)" if board.partial else ""
        k = len(board.datasets)
        ax.set_title(f"{board.name.replace('_', ' ')}: {k} dataset{'s' if k != 1 else ''}{partial}", fontsize=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tiny figures (one model) cannot fit every margin
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return fig


def _scatter(ax, points: list[SpeedPoint], label_all: bool) -> None:
    xs = [p.seconds.value for p in points]
    ys = [p.score.value for p in points]
    yerr = [0 if isnan(p.score.stderr) else 1.96 * p.score.stderr for p in points]
    colours = ["#d62728" if p.pareto else "#1f77b4" for p in points]
    ax.errorbar(xs, ys, yerr=yerr, fmt="none", ecolor="#999999", elinewidth=0.6, capsize=1.5)
    ax.scatter(xs, ys, c=colours, s=18, zorder=3)
    front = pareto_front(points)
    if front:
        fx = [p.seconds.value for p in front]
        fy = [p.score.value for p in front]
        ax.step(fx, fy, where="post", color="#d62728", linewidth=1.0, alpha=0.8, label="Pareto frontier")
    for p in points:
        if label_all or p.pareto:
            ax.annotate(p.model, (p.seconds.value, p.score.value), fontsize=6, xytext=(3, 2),
                        textcoords="offset points")
    if all(x > 0 for x in xs if not isnan(x)) and any(not isnan(x) for x in xs):
        ax.set_xscale("log")
    ax.minorticks_off()


def speed_overall(points: list[SpeedPoint]):
    fig = Figure(figsize=(8, 5.5))
    ax = fig.add_subplot()
    _scatter(ax, points, label_all=True)
    ax.set_xlabel("seconds per sample (model latency, log scale) — faster is left")
    ax.set_ylabel("mean headline score over 0-1 datasets (± 95% CI)")
    ax.set_title("Speed vs accuracy per model (red: Pareto frontier)")
    ax.legend(loc="lower right", fontsize=7)
    return fig


def speed_datasets(per_dataset: dict[str, list[SpeedPoint]]):
    names = list(per_dataset)
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(3.4 * ncols, 2.7 * nrows))
    fig.suptitle("Speed vs accuracy per dataset (x: seconds per sample, log; red: Pareto frontier)", fontsize=10)
    for i, d in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        _scatter(ax, per_dataset[d], label_all=len(per_dataset[d]) <= 6)
        n = max((p.score.n for p in per_dataset[d]), default=0)
        ax.set_title(f"{d} (n≤{n})", fontsize=8)
        ax.tick_params(labelsize=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tiny figures (one model) cannot fit every margin
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return fig


def speed_measured(points: list[MeasuredPoint]):
    """Measured tokens/s (efficiency jobs) against accuracy (quality jobs) per row; marker size: peak RSS."""
    fig = Figure(figsize=(8, 5.5))
    ax = fig.add_subplot()
    xs = [p.speed.value for p in points]
    ys = [p.accuracy.value for p in points]
    xerr = [0 if isnan(p.speed.stderr) else 1.96 * p.speed.stderr for p in points]
    yerr = [0 if isnan(p.accuracy.stderr) else 1.96 * p.accuracy.stderr for p in points]
    ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="none", ecolor="#999999", elinewidth=0.6, capsize=1.5)
    sizes = [18 if isnan(p.memory_mb.value) else 10 + 40 * math.sqrt(p.memory_mb.value / 1024) for p in points]
    ax.scatter(xs, ys, c=["#d62728" if p.pareto else "#1f77b4" for p in points], s=sizes, zorder=3)
    front = measured_front(points)
    if front:
        ax.step([p.speed.value for p in front], [p.accuracy.value for p in front], where="post", color="#d62728",
                linewidth=1.0, alpha=0.8, label="Pareto frontier")
        ax.legend(loc="lower left", fontsize=7)
    for p in points:
        memory = "" if isnan(p.memory_mb.value) else f", {p.memory_mb.value:,.0f} MB"
        ax.annotate(f"{p.row} ({p.engine}{memory})", (p.speed.value, p.accuracy.value), fontsize=6, xytext=(3, 2),
                    textcoords="offset points")
    if all(x > 0 for x in xs) and max(xs) > 10 * min(xs):  # log only where it spans a decade (ticks otherwise)
        ax.set_xscale("log")
        ax.minorticks_off()
    ax.set_xlabel("measured output tokens/s (efficiency_bench single stream, else mobile tg128) — faster right")
    ax.set_ylabel("mean headline score over 0-1 datasets (± 95% CI)")
    ax.set_title("Measured speed vs accuracy per model and engine (red: Pareto frontier; size: peak RSS)")
    return fig


def transfer(categories: list[str], task_types: list[str], cells: dict[tuple[str, str], TransferCell]):
    fig = Figure(figsize=(max(5.0, 1.3 + 1.15 * len(task_types)), max(2.5, 1.2 + 0.65 * len(categories))),
                 layout="constrained")
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"]
    for i, c in enumerate(categories):
        for k, t in enumerate(task_types):
            cell = cells.get((c, t))
            if cell is None:
                ax.add_patch(Rectangle((k, i), 1, 1, facecolor="white", edgecolor="#eeeeee"))
                continue
            s = cell.score
            colour = cmap(s.value)
            ax.add_patch(Rectangle((k, i), 1, 1, facecolor=colour, edgecolor="white"))
            if cell.home:
                ax.add_patch(Rectangle((k + 0.03, i + 0.03), 0.94, 0.94, fill=False, edgecolor="#d62728",
                                       linewidth=1.8))
            lum = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
            se = "" if isnan(s.stderr) else f"\n±{s.stderr:.3f}"
            ax.text(k + 0.5, i + 0.5, f"{s.value:.3f}{se}\nn={s.n}", ha="center", va="center", fontsize=7,
                    color="black" if lum > 0.5 else "white")
    ax.set_xlim(0, len(task_types))
    ax.set_ylim(len(categories), 0)
    ax.set_xticks([k + 0.5 for k in range(len(task_types))], [t.replace("_", "\n") for t in task_types],
                  fontsize=7)
    ax.set_yticks([i + 0.5 for i in range(len(categories))], categories, fontsize=8)
    ax.tick_params(length=0)
    ax.set_xlabel("task type")
    ax.set_ylabel("model category")
    ax.set_title("Cross-category transfer: mean headline score (red outline: the category's home task type)",
                 fontsize=9)
    return fig


def _plan(
    data: ReportData,
    by_category: list[Leaderboard],
    by_task: list[Leaderboard],
    overall: list[SpeedPoint],
    per_dataset: dict[str, list[SpeedPoint]],
    transfer_parts: tuple[list[str], list[str], dict],
) -> dict[str, Callable[[], object]]:
    """name -> function drawing that figure, for the figures this data can fill."""
    plan: dict[str, Callable[[], object]] = {}
    if data.models and data.datasets:
        plan["heatmap"] = lambda: heatmap(data)
    if by_category:
        plan["leaderboard_category"] = lambda: leaderboards(by_category, "Leaderboards per model category")
    if by_task:
        plan["leaderboard_task_type"] = lambda: leaderboards(by_task, "Leaderboards per task type")
    if overall:
        plan["speed_accuracy"] = lambda: speed_overall(overall)
    if per_dataset:
        plan["speed_accuracy_datasets"] = lambda: speed_datasets(per_dataset)
    measured = measured_points(data)
    if measured:
        plan["speed_measured"] = lambda: speed_measured(measured)
    if transfer_parts[2]:
        plan["transfer"] = lambda: transfer(*transfer_parts)
    return plan


def expected_figures(*args) -> dict[str, dict[str, Path]]:
    """The files `write_figures(*args)` writes (same arguments), without drawing anything."""
    *parts, folder = args
    if not HAVE_MATPLOTLIB:
        return {}
    return {name: {ext: folder / f"{name}.{ext}" for ext in ("png", "svg")} for name in _plan(*parts)}


def write_figures(
    data: ReportData,
    by_category: list[Leaderboard],
    by_task: list[Leaderboard],
    overall: list[SpeedPoint],
    per_dataset: dict[str, list[SpeedPoint]],
    transfer_parts: tuple[list[str], list[str], dict],
    out_dir: Path,
) -> dict[str, dict[str, Path]]:
    """Every figure as PNG + SVG under out_dir; {} when matplotlib is not installed."""
    if not HAVE_MATPLOTLIB:
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    made: dict[str, dict[str, Path]] = {}
    with matplotlib.rc_context(RC):
        for name, draw in _plan(data, by_category, by_task, overall, per_dataset, transfer_parts).items():
            made[name] = _save(draw(), out_dir, name)
    return made
