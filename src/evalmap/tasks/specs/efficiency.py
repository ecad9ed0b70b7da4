"""Efficiency datasets (catalog task type `efficiency`), as data for the latency kind (tasks.kinds.latency).

Both read vLLM's benchmarks/sonnet.txt (<data-dir>/efficiency_latency/sonnet.txt; the hub fallback is
ShareGPT, whose first human turns stand in for the lines). See docs/efficiency.md.

- efficiency_bench: vLLM benchmark_serving's sonnet workload: ~500 input tokens, 128 output tokens with
  EOS ignored; a server is swept over concurrency 1, 4, 16, 64; an in-process engine serves one request
  at a time and is measured single-stream, next to llama-bench's raw numbers on the same model. 16
  requests per point by default (`--samples N` for more), so a CPU run takes a minute or two.
- mobile_benchmark: on-device sizes: ~200 input tokens, 64 output; every quantisation of the model's GGUF
  found beside it, at 1, 2 and 4 threads (as many as this machine has), each in its own process under a
  4 GiB address-space limit: pp512 / tg128 (3 repetitions), load time, peak RSS, single-stream TTFT/TPOT
  over 8 prompts, and KL / top-1 agreement against the highest-precision file.
"""

from __future__ import annotations

from evalmap.tasks.data import DataSource
from evalmap.tasks.kinds.latency import Device, LatencySpec, sonnet_lines

_SONNET = DataSource(name="train", local_files=("sonnet.txt",), normalize=sonnet_lines)

EFFICIENCY_BENCH = LatencySpec(
    dataset_id="efficiency_bench",
    source=_SONNET,
    input_tokens=500,
    output_tokens=128,
    requests_per_point=16,
    metrics=("output_tok_s", "ttft_ms_mean", "tpot_ms_mean", "itl_ms_mean", "e2el_ms_mean", "e2el_ms_p99"),
    headline="output_tok_s",
    concurrency=(1, 4, 16, 64),
    slo="ttft=1000,tpot=100",
)

MOBILE_BENCHMARK = LatencySpec(
    dataset_id="mobile_benchmark",
    source=_SONNET,
    input_tokens=200,
    output_tokens=64,
    requests_per_point=8,
    metrics=("tg128_tok_s", "pp512_tok_s", "ttft_ms_mean", "tpot_ms_mean", "load_s", "peak_rss_mb"),
    headline="tg128_tok_s",
    device=Device(),
)
