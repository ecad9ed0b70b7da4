"""Metrics: scores with stderr and confidence intervals, pass@k, paired tests."""

from evalmap.metrics.stats import Score, mean_score

__all__ = ["Score", "mean_score"]
