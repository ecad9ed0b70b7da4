"""What the kinds share: the spec interface, variants, per-metric means and per-group scores."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from evalmap.backends.base import GenerationRequest
from evalmap.catalog.schema import Dataset
from evalmap.errors import EvalmapError
from evalmap.metrics.aggregate import pooled_group_score, proportion_ci
from evalmap.metrics.stats import Score, mean_score, normal_ci
from evalmap.tasks.base import SampleResult, TaskConfig
from evalmap.tasks.data import DataSource


class SpecBase:
    """What every kind's spec answers (a mixin of the kinds' frozen spec dataclasses, which declare
    `dataset_id`, `source`, `variants`, `headline` and their metrics)."""

    headline: str | None

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The dataset's metrics under its default options: the one metric list (the catalog's must match)."""
        return tuple(getattr(self, "metrics", ()))

    def headline_metric(self, mode: str | None = None) -> str | None:
        """The metric that stands for the dataset in a group average (None: the first metric)."""
        names = self.metric_names
        return self.headline or (names[0] if names else None)


def generation(config: TaskConfig, max_tokens: int, offset: int = 0, **fields: Any) -> GenerationRequest:
    """A generation under the run's sampling options: `max_tokens` is the kind's default (--max-tokens wins),
    the seed is the run's plus `offset`; `fields` are the request's own (prompt or messages, chat, stop, ...)."""
    return GenerationRequest(
        **fields, max_tokens=config.max_tokens or max_tokens, temperature=config.temperature, top_p=config.top_p,
        seed=config.seed + offset,
    )


def generations(config: TaskConfig, max_tokens: int, **fields: Any) -> list[GenerationRequest]:
    """An item's `n_samples` generations (pass@k), seeds seed, seed + 1, ...: otherwise alike (`generation`)."""
    return [generation(config, max_tokens, i, **fields) for i in range(max(1, config.n_samples))]


def resolve_variant(
    dataset: Dataset, default: DataSource, variants: Mapping[str, DataSource], config: TaskConfig
) -> tuple[Dataset, DataSource]:
    """The catalog record and the split a run reads: the spec's default, or the variant named by
    `TaskConfig.variant` (with the catalog variant's hub source, so a hub fallback loads the right data)."""
    name = config.variant
    if name is None or name == "default":
        return dataset, default
    if name not in variants:
        known = ", ".join(sorted(variants)) or "none"
        raise EvalmapError(f"{dataset.id} has no variant {name!r} (variants with a task: {known}).")
    for v in dataset.variants:
        if v.name == name and v.source is not None:
            dataset = dataset.model_copy(update={"source": v.source, "count": v.count})
    return dataset, variants[name]


def mean_scores(samples: Sequence[Any], names: Sequence[str]) -> list[Score]:
    """One `mean_score` per metric name over the samples that carry it, in `names` order."""
    scores = []
    for name in names:
        values = [float(s.metrics[name]) for s in samples if name in s.metrics]
        scores.append(mean_score(name, values))
    return scores


def subgroup_scores(samples: list[SampleResult], metric: str, key: str) -> list[Score]:
    """`metric` per value of the sample's `details["groups"][key]` (e.g. per subject), each a Score
    named "<metric>/<key>:<value>", then their macro average "<metric>/<key>_macro" with pooled stderr.

    The plain mean over all samples (the micro average, lm-eval's group number) is the metric itself.
    """
    by_value: dict[str, list[float]] = {}
    for s in samples:
        value = (s.details or {}).get("groups", {}).get(key)
        if value is None or metric not in s.metrics:
            continue
        by_value.setdefault(str(value), []).append(s.metrics[metric])
    if not by_value:
        return []
    per = [mean_score(f"{metric}/{key}:{value}", vals) for value, vals in sorted(by_value.items())]
    return [macro_score(f"{metric}/{key}_macro", list(by_value.values()), per), *per]


def macro_score(name: str, groups: list[list[float]], per: list[Score]) -> Score:
    """The unweighted mean of group means with pooled stderr (metrics.aggregate.pooled_group_score).

    A group of one sample has no stderr of its own (a small `--samples` run over 57 mmlu
    subjects); then the macro mean is read as a weighted mean of all samples (weight
    1 / (k * n_g)) and its stderr is sqrt(sum w^2) times the standard deviation of all samples.
    """
    if all(not math.isnan(s.stderr) for s in per):
        return pooled_group_score(name, per, "macro")
    values = [v for g in groups for v in g]
    k = len(groups)
    if len(values) < 2:
        return pooled_group_score(name, per, "macro")
    mean_all = math.fsum(values) / len(values)
    sd = math.sqrt(math.fsum((v - mean_all) ** 2 for v in values) / (len(values) - 1))
    value = math.fsum(math.fsum(g) / len(g) for g in groups) / k
    stderr = sd * math.sqrt(math.fsum(len(g) * (1 / (k * len(g))) ** 2 for g in groups))
    if all(0.0 <= v <= 1.0 for v in values):
        low, high = proportion_ci(value, stderr, len(values))
    else:
        low, high = normal_ci(value, stderr)
    return Score(name, value, stderr, low, high, len(values), "normal-macro-weighted")
