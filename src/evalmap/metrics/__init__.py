"""Metrics: scores with stderr and confidence intervals, pass@k, paired tests."""

from evalmap.metrics.aggregate import bootstrap_ci, pooled_group_score
from evalmap.metrics.paired import PairedResult, compare_paired, mcnemar, paired_bootstrap
from evalmap.metrics.passk import ks_for, pass_at_k, pass_at_k_score
from evalmap.metrics.stats import Score, mean_score, wilson_interval

__all__ = [
    "PairedResult",
    "Score",
    "bootstrap_ci",
    "compare_paired",
    "ks_for",
    "mcnemar",
    "mean_score",
    "paired_bootstrap",
    "pass_at_k",
    "pass_at_k_score",
    "pooled_group_score",
    "wilson_interval",
]
