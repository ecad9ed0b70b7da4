"""Serving metrics as vLLM's benchmark_serving defines them, so numbers compare with its reports.

Per request (a client's view of one streamed completion):
- TTFT: from sending the request to the first chunk that carries choices;
- ITL: the gaps between consecutive chunks (pooled over all requests);
- TPOT: (E2E latency - TTFT) / (output tokens - 1), for requests with more than one output token;
- E2E latency: from sending the request to the end of its stream.
Per sweep point: request throughput = completed / duration, output throughput = output tokens / duration,
total token throughput = (input + output tokens) / duration, where duration runs from the first request
sent to the last one finished; goodput = the completed requests that meet every SLO, per second.

Each time statistic is a mean (with its stderr) and p50 / p90 / p99 (np.percentile, vLLM's choice) with a
bootstrap CI over requests; throughputs get a ratio-estimator stderr over requests (see `_rate`), so every
number carries n and an uncertainty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from evalmap.errors import EvalmapError
from evalmap.metrics.aggregate import bootstrap_statistic
from evalmap.metrics.stats import Score, empty_score, mean_score, normal_ci

PERCENTILES = (50, 90, 99)
TIMES = ("ttft", "tpot", "itl", "e2el")  # vLLM's names; reported in milliseconds
SLO_KEYS = ("ttft", "tpot", "e2el")


@dataclass(frozen=True)
class RequestTiming:
    """One measured request: seconds relative to the sweep point's start; tokens from the engine."""

    sent: float
    ttft: float
    latency: float
    itl: tuple[float, ...]
    prompt_tokens: int
    output_tokens: int

    @property
    def tpot(self) -> float | None:
        if self.output_tokens < 2:
            return None
        return (self.latency - self.ttft) / (self.output_tokens - 1)

    @property
    def end(self) -> float:
        return self.sent + self.latency


class SloError(EvalmapError):
    """An --slo that cannot be read."""


def parse_slo(text: str | None) -> dict[str, float]:
    """`ttft=500,tpot=50` (milliseconds) -> {"ttft": 500.0, "tpot": 50.0}; keys ttft, tpot, e2el."""
    if not text:
        return {}
    slo: dict[str, float] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        try:
            ms = float(value)
        except ValueError:
            ms = math.nan
        if not sep or key not in SLO_KEYS or not ms > 0:
            raise SloError(
                f"--slo {text!r} is not a list of key=milliseconds with keys {', '.join(SLO_KEYS)} "
                "(e.g. --slo ttft=500,tpot=50)."
            )
        slo[key] = ms
    return slo


def meets_slo(timing: RequestTiming, slo: Mapping[str, float]) -> bool:
    """vLLM's goodput test: every given SLO (ms) is met; a one-token request has no TPOT to miss."""
    values = {"ttft": timing.ttft, "tpot": timing.tpot, "e2el": timing.latency}
    return all(values[k] is None or values[k] * 1000 <= limit for k, limit in slo.items())


def _percentile(q: float):
    def stat(x: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.percentile(x, q, axis=axis)

    return stat


def time_scores(name: str, seconds: Sequence[float]) -> list[Score]:
    """`<name>_ms_mean` (mean ± stderr) and `<name>_ms_p50/p90/p99` (bootstrap CI) over the values."""
    ms = [s * 1000 for s in seconds]
    scores = [mean_score(f"{name}_ms_mean", ms)]
    for q in PERCENTILES:
        label = f"{name}_ms_p{q}"
        if not ms:
            scores.append(empty_score(label, "bootstrap"))
            continue
        scores.append(bootstrap_statistic(label, ms, _percentile(q), float(np.percentile(ms, q))))
    return scores


def _rate(name: str, timings: Sequence[RequestTiming], per_request) -> Score:
    """sum(per_request) / duration. Its stderr treats the run as a ratio estimator: rate = k * sum(a) / sum(l)
    over requests (a: the amount, l: the latency) with k = sum(l) / duration, the mean number in flight,
    held fixed; the stderr of sum(a) / sum(l) is the usual ratio-estimator one (n - 1 in the variance)."""
    n = len(timings)
    if not n:
        return empty_score(name, "ratio")
    amount = np.array([per_request(t) for t in timings], dtype=float)
    latency = np.array([t.latency for t in timings], dtype=float)
    duration = max(t.end for t in timings) - min(t.sent for t in timings)
    if not duration > 0 or not latency.sum() > 0:
        return empty_score(name, "ratio")
    value = float(amount.sum() / duration)
    if n < 2:
        return Score(name, value, math.nan, math.nan, math.nan, n, "ratio")
    ratio = amount.sum() / latency.sum()
    k = latency.sum() / duration
    resid = amount - ratio * latency
    stderr = float(k * math.sqrt((resid**2).sum() / (n * (n - 1))) / latency.mean())
    low, high = normal_ci(value, stderr)
    return Score(name, value, stderr, low, high, n, "ratio")


def serving_scores(timings: Sequence[RequestTiming], failed: int, slo: Mapping[str, float]) -> list[Score]:
    """The scores of one sweep point: throughputs, goodput, then each time statistic, then counts."""
    done = list(timings)
    scores = [
        _rate("output_tok_s", done, lambda t: t.output_tokens),
        _rate("request_per_s", done, lambda t: 1.0),
        _rate("total_tok_s", done, lambda t: t.prompt_tokens + t.output_tokens),
    ]
    if slo:
        scores.append(_rate("goodput_req_s", done, lambda t: float(meets_slo(t, slo))))
    scores += time_scores("ttft", [t.ttft for t in done])
    scores += time_scores("tpot", [t.tpot for t in done if t.tpot is not None])
    scores += time_scores("itl", [gap for t in done for gap in t.itl])
    scores += time_scores("e2el", [t.latency for t in done])
    scores.append(mean_score("prompt_tokens", [float(t.prompt_tokens) for t in done]))
    scores.append(mean_score("output_tokens", [float(t.output_tokens) for t in done]))
    total = len(done) + failed
    scores.append(mean_score("failed", [0.0] * len(done) + [1.0] * failed) if total else empty_score("failed"))
    return scores
