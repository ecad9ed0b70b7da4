"""Measured speed next to accuracy: per report row (a model on one engine and settings), accuracy from its
quality jobs and speed and memory from its efficiency jobs on the same row, with the Pareto front.

Accuracy is the row's mean headline score over its 0-1 datasets (tables.group_score, as the overall speed
point). Speed is efficiency_bench's single-stream output tokens/s, else mobile_benchmark's tg128 tokens/s
(the model's own file at the most threads); memory is the same job's peak RSS. A row without an efficiency
job or without a quality job has no point. The front: rows no other row beats on both speed and accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from evalmap.metrics.stats import Score
from evalmap.report.data import ReportData
from evalmap.report.tables import group_score, isnan

SPEED_SOURCES = (("efficiency_bench", "output_tok_s"), ("mobile_benchmark", "tg128_tok_s"))
EFFICIENCY_DATASETS = frozenset(d for d, _ in SPEED_SOURCES)


@dataclass
class MeasuredPoint:
    row: str
    engine: str
    accuracy: Score
    speed: Score  # tokens/s (higher is faster)
    speed_source: str  # "<dataset>:<metric>"
    memory_mb: Score
    pareto: bool = False


def _score(job, name: str) -> Score | None:
    return next((s for s in job.scores if s.name == name), None)


def measured_points(data: ReportData) -> list[MeasuredPoint]:
    points = []
    for row in data.models:
        source = next(((d, m) for d, m in SPEED_SOURCES if (row, d) in data.cells), None)
        if source is None:
            continue
        job = data.cells[(row, source[0])]
        speed, memory = _score(job, source[1]), _score(job, "peak_rss_mb")
        quality = [data.cells[(row, d)].primary for d in data.datasets
                   if d not in EFFICIENCY_DATASETS and (row, d) in data.cells and data.bounded(d)]
        if speed is None or isnan(speed.value) or not quality:
            continue
        accuracy = group_score("accuracy", quality)
        if isnan(accuracy.value):
            continue
        memory = memory or Score("peak_rss_mb", math.nan, math.nan, math.nan, math.nan, 0)
        points.append(MeasuredPoint(row, job.backend_label, accuracy, speed, f"{source[0]}:{source[1]}", memory))
    for p in measured_front(points):
        p.pareto = True
    return points


def measured_front(points: list[MeasuredPoint]) -> list[MeasuredPoint]:
    """Points no other point beats on both speed (more tokens/s) and accuracy; fastest first."""
    ordered = sorted(points, key=lambda p: (-p.speed.value, -p.accuracy.value))
    front, best = [], -math.inf
    for p in ordered:
        if p.accuracy.value > best:
            front.append(p)
            best = p.accuracy.value
    return front
