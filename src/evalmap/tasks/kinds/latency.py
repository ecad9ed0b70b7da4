"""Latency: an efficiency dataset measures the engine instead of scoring answers (efficiency_bench,
mobile_benchmark); numbers as vLLM's benchmark_serving and llama-bench define them (metrics.serving,
backends.llama_bench).

A latency task has `measure(backend, items)` where other tasks have `score`: the runner calls it on an
idle engine after the model's other jobs, never through the response cache, and stores what it returns
as the job's samples (one per measured request, per llama-bench repetition, per quantisation compared),
so a finished job is stored, reported and resumed like any other, and a new run measures again.

`items` are the requests of one sweep point (`--samples N`: N per point). Each request's completion
prompt is vLLM's sonnet prompt: "Pick as many lines as you can from these poem lines:" and lines drawn
(seeded, with replacement) from the text, as many as make `input_tokens` on this engine: untimed warm-up
requests, excluded from every number, count the tokens per line from the engine's own usage. Every
request asks for `output_tokens` with EOS ignored where the engine allows it; token counts are the
engine's.

efficiency_bench sweeps `concurrency` (then Poisson `rates`) on a server; an in-process engine serves
one request at a time, so it gets `serial_concurrency` (queueing on it is FIFO and adds nothing about the
engine). On llama.cpp in process it also runs llama-bench's pp/tg on the same loaded model, in the same
process, and reports evalmap's prefill, decode and end-to-end speed as ratios of those raw numbers.

mobile_benchmark runs the model's GGUF and each sibling quantisation of it (same file name, another
quant tag: Q4_0, Q8_0, F16, ...) in a fresh process per (file, thread count) under an address-space
limit, with thread counts capped by this machine's CPUs: pp/tg as llama-bench reports them, load time,
peak RSS, single-stream TTFT/TPOT on the prompts, and, against the highest-precision file (most bits per
weight), the mean KL divergence and top-1 agreement of next-token distributions over the text.

Unsuffixed score names are the first sweep point (single stream, c=1) or, for mobile_benchmark, the
model's own file at the most threads measured; every other point has its scores suffixed `:<point>` (the
run table shows the unsuffixed ones, results.json and the report all).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from evalmap.backends.base import Backend, GenerationRequest, Request
from evalmap.backends.timed import Load, Timed, TimingUnsupportedError, run_load
from evalmap.catalog.schema import Dataset
from evalmap.hashing import sha256_json
from evalmap.metrics.serving import RequestTiming, parse_slo, serving_scores
from evalmap.metrics.stats import Z95, Score, empty_score, mean_score
from evalmap.tasks.base import Item, SampleResult, TaskConfig, seeded_rng
from evalmap.tasks.data import DataSource, LazyRecords, Record
from evalmap.tasks.kinds.common import SpecBase

BASE_PROMPT = "Pick as many lines as you can from these poem lines:\n"  # vLLM's sonnet dataset
TOKENS_PER_LINE_GUESS = 10  # before calibration: a sonnet line is about 10 tokens
CHILD_TIMEOUT_S = 1800.0  # one (file, threads) measurement; a busy 2-core machine took 10 min for t=2


@dataclass(frozen=True)
class Device:
    """mobile_benchmark's device-like limits and llama-bench settings."""

    threads: tuple[int, ...] = (1, 2, 4)
    memory_limit_mb: int = 4096  # address space of each measuring process
    pp: int = 512
    tg: int = 128
    reps: int = 3
    logit_tokens: int = 256  # positions compared between quantisations


@dataclass(frozen=True)
class LatencySpec(SpecBase):
    dataset_id: str
    source: DataSource
    input_tokens: int
    output_tokens: int
    requests_per_point: int  # items when --samples is not given
    metrics: tuple[str, ...]
    headline: str | None = None
    concurrency: tuple[int, ...] = (1, 4, 16, 64)  # a server's sweep
    serial_concurrency: tuple[int, ...] = (1,)  # an engine serving one request at a time
    rates: tuple[float, ...] = ()  # Poisson points after the concurrency ones (requests/s)
    slo: str = ""  # the goodput SLO, "ttft=ms,tpot=ms"
    warmup: int = 2
    raw_reps: int = 4  # llama-bench repetitions next to an in-process llama.cpp engine (0: none)
    device: Device | None = None  # set: the mobile measurement (GGUF files in their own processes)

    def build(self, dataset: Dataset, config: TaskConfig) -> LatencyTask:
        return LatencyTask(self, dataset, config)


@dataclass(frozen=True)
class Point:
    name: str
    concurrency: int | None
    rate: float | None = None


@dataclass
class LatencyTask:
    spec: LatencySpec
    dataset: Dataset
    config: TaskConfig
    dataset_id: str = field(init=False)
    _records: LazyRecords = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.dataset_id = self.dataset.id
        self.slo = parse_slo(self.config.slo or self.spec.slo)
        self._records = LazyRecords(self.dataset, self.config.data_dir, self.spec.source)

    @property
    def output_tokens(self) -> int:
        return self.config.max_tokens or self.spec.output_tokens

    def lines(self) -> list[str]:
        return [r["text"] for r in self._records.get()]

    def items(self, limit: int | None = None, seed: int = 1234) -> list[Item]:
        """The requests of one sweep point: `limit` (default requests_per_point) of them."""
        self.lines()  # the text is loaded and checked now
        n = limit or self.spec.requests_per_point
        return [Item(id=f"request-{i}", data={"index": i}) for i in range(n)]

    def prompt(self, item: Item, point: str, lines_per_prompt: int) -> str:
        """vLLM's sonnet prompt: the base line, then lines drawn (seeded per point and request) from the text."""
        rng = seeded_rng(self.config.seed, self.dataset_id, point, item.id)
        return BASE_PROMPT + "".join(line + "\n" for line in rng.choices(self.lines(), k=lines_per_prompt))

    def _guess_lines(self) -> int:
        return max(1, round(self.spec.input_tokens / TOKENS_PER_LINE_GUESS))

    def requests(self, item: Item) -> list[Request]:
        """What a request looks like before calibration (for the prompt hash and the capability check);
        `measure` sends these with the line count calibrated on the engine."""
        prompt = self.prompt(item, "calibration", self._guess_lines())
        return [GenerationRequest(prompt=prompt, max_tokens=self.output_tokens, temperature=0.0, seed=self.config.seed)]

    def prompt_hash(self) -> str:
        """The spec's settings and the first request's key: any change to what is sent changes it."""
        spec = asdict(self.spec)
        spec["source"] = self.spec.source.name
        return sha256_json({"spec": spec, "prompt": self.requests(Item("request-0", {"index": 0}))[0].key()})

    # -- measuring ---------------------------------------------------------------

    def measure(self, backend: Backend, items: list[Item]) -> list[dict]:
        """Every measurement of this job as sample records (see the module doc)."""
        if self.spec.device is not None:
            return _Mobile(self, backend, items).run()
        return _Serving(self, backend, items).run()

    def calibrate(self, backend: Backend) -> int:
        """Lines per prompt for `input_tokens` on this engine, from untimed warm-up requests (excluded)."""
        guess = self._guess_lines()
        prompts = tuple(self.prompt(Item(f"warmup-{i}", {}), "warmup", guess) for i in range(max(1, self.spec.warmup)))
        timed = run_load(backend, Load(prompts, max_tokens=min(16, self.output_tokens), concurrency=1))
        counts = [t.prompt_tokens for t in timed if t.ok and t.prompt_tokens]
        if not counts:
            return guess
        return max(1, round(guess * self.spec.input_tokens / (sum(counts) / len(counts))))

    # -- aggregating ---------------------------------------------------------------

    def aggregate(self, samples: list[SampleResult]) -> list[Score]:
        details = [s.details for s in samples]
        if self.spec.device is not None:
            return _mobile_scores(details)
        return _serving_job_scores(details, self.slo)


# ---------------------------------------------------------------------- efficiency_bench


def _points(spec: LatencySpec, backend: Backend) -> list[Point]:
    concurrent = getattr(backend, "stream", None) is not None  # the runner's test for a server
    points = [Point(f"c={c}", c) for c in (spec.concurrency if concurrent else spec.serial_concurrency)]
    return points + [Point(f"rate={r:g}", None, r) for r in spec.rates]


def _record(item_id: str, position: int, prompt: str, details: dict, metrics: dict | None = None,
            output: str = "", prompt_tokens: int = 0, completion_tokens: int = 0, latency_s: float = 0.0) -> dict:
    return {
        "item_id": item_id, "position": position, "prompt": prompt, "output": [output] if output else [],
        "extracted": None, "target": None, "metrics": metrics or {}, "details": details,
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "latency_s": latency_s,
    }  # fmt: skip


def _request_record(item_id: str, position: int, prompt: str, t: Timed, point: str) -> dict:
    details = {"part": "request", "point": point, **{k: v for k, v in asdict(t).items() if k != "text"}}
    metrics = {"ok": float(t.ok)}
    if t.ok:
        metrics.update(ttft_ms=t.ttft * 1000, e2el_ms=t.latency * 1000)
    return _record(item_id, position, prompt, details, metrics, t.text, t.prompt_tokens, t.output_tokens, t.latency)


class PeakRss:
    """The peak resident set of a process while the block runs, sampled every 10 ms (psutil)."""

    def __init__(self, pid: int | None):
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRss:
        if self.pid is not None:
            import psutil

            self._process = psutil.Process(self.pid)
            self.peak = self._process.memory_info().rss
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.01):
            try:
                self.peak = max(self.peak, self._process.memory_info().rss)
            except Exception:  # noqa: BLE001 - the process ended: the peak so far stands
                return

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.pid is not None:
            self._thread.join()


def engine_pid(backend: Backend) -> int | None:
    """The process holding the model: this one for an in-process engine; for a server on this machine,
    the process listening on its port (psutil); None where it cannot be seen."""
    base_url = getattr(backend, "base_url", None)
    if base_url is None:
        return os.getpid()
    from urllib.parse import urlparse

    import psutil

    url = urlparse(base_url)
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return conn.pid
    except (psutil.AccessDenied, PermissionError):
        return None
    return None


class _Serving:
    def __init__(self, task: LatencyTask, backend: Backend, items: list[Item]):
        self.task, self.backend, self.items = task, backend, items
        self.records: list[dict] = []

    def add(self, record: dict) -> None:
        record["position"] = len(self.records)
        self.records.append(record)

    def run(self) -> list[dict]:
        task, spec = self.task, self.task.spec
        lines = task.calibrate(self.backend)
        pid = engine_pid(self.backend)
        raw = self.raw(before=True)
        for p in _points(spec, self.backend):
            prompts = tuple(task.prompt(item, p.name, lines) for item in self.items)
            load = Load(prompts, task.output_tokens, concurrency=p.concurrency, rate=p.rate, seed=task.config.seed)
            with PeakRss(pid) as rss:
                timed = run_load(self.backend, load)
            for item, prompt, t in zip(self.items, prompts, timed, strict=True):
                self.add(_request_record(f"{p.name}/{item.id}", 0, prompt, t, p.name))
            self.add(_record(f"{p.name}/memory", 0, "", {"part": "memory", "point": p.name, "pid": pid,
                                                            "peak_rss_bytes": rss.peak or None}))
            if raw:  # the raw repetitions bracket the single-stream point
                raw = not self.raw(before=False)
        return self.records

    def raw(self, before: bool) -> bool:
        """llama-bench's pp/tg on the run's own model, in this process, at the prompt length asked for (llama.cpp:
        llama_bench.bench; transformers: its raw_bench, forward calls without evalmap's loop): half the
        repetitions before the first sweep point and half after it, so drift on a shared machine hits both
        sides of the ratio. True when it ran."""
        from evalmap.backends.llamacpp_backend import LlamaCppBackend
        from evalmap.backends.transformers_backend import TransformersBackend

        spec, backend = self.task.spec, self.backend
        if not (isinstance(backend, LlamaCppBackend | TransformersBackend) and spec.raw_reps):
            return False
        reps = (spec.raw_reps + 1) // 2 if before else spec.raw_reps // 2
        if not reps:
            return True
        n_prompt, n_gen, seed = spec.input_tokens, self.task.output_tokens, self.task.config.seed + int(before)
        if isinstance(backend, TransformersBackend):
            numbers = backend.raw_bench(n_prompt, n_gen, reps, depth=n_prompt, seed=seed)
        else:
            from evalmap.backends.llama_bench import bench

            numbers = bench(backend._llm, n_prompt, n_gen, reps, depth=n_prompt, seed=seed,
                            scope=backend._last_logits_only)  # fmt: skip
            backend._cache_from_generation = False
        for test, n, depth in (("pp", n_prompt, 0), ("tg", self.task.output_tokens, n_prompt)):
            for rate in numbers[test]:
                rep = sum(1 for r in self.records if r["details"].get("part") == "raw" and r["details"]["test"] == test)
                self.add(_record(f"raw/{test}/{rep}", 0, "", {"part": "raw", "test": test, "n": n, "depth": depth,
                                                             "rep": rep, "tok_s": rate}))
        return True


def _timings(details: Sequence[dict]) -> tuple[list[RequestTiming], int]:
    done = [
        RequestTiming(d["sent"], d["ttft"], d["latency"], tuple(d["itl"]), d["prompt_tokens"], d["output_tokens"])
        for d in details if d["ok"]
    ]  # fmt: skip
    return done, sum(1 for d in details if not d["ok"])


def _suffixed(scores: list[Score], suffix: str) -> list[Score]:
    return [Score(f"{s.name}:{suffix}", s.value, s.stderr, s.ci_low, s.ci_high, s.n, s.method) for s in scores]


def _raw_score(name: str, rates: list[float]) -> Score:
    """llama-bench's mean ± sd over repetitions as a Score (stderr = sd / sqrt(reps))."""
    return mean_score(name, rates)


def _ratio(name: str, a: Score, b: Score) -> Score:
    """a / b with the delta-method stderr (independent measurements)."""
    if not (a.n and b.n) or not b.value:
        return empty_score(name)
    r = a.value / b.value
    rel = math.sqrt(sum((s.stderr / s.value) ** 2 for s in (a, b) if s.value and not math.isnan(s.stderr)))
    se = abs(r) * rel if all(not math.isnan(s.stderr) for s in (a, b)) else math.nan
    low, high = (r - Z95 * se, r + Z95 * se) if not math.isnan(se) else (math.nan, math.nan)
    return Score(name, r, se, low, high, min(a.n, b.n), "delta")


def _serving_job_scores(details: list[dict], slo: dict) -> list[Score]:
    points = list(dict.fromkeys(d["point"] for d in details if d.get("part") == "request"))
    memory = {d["point"]: d.get("peak_rss_bytes") for d in details if d.get("part") == "memory"}
    scores: list[Score] = []
    first: list[Score] = []
    for i, point in enumerate(points):
        done, failed = _timings([d for d in details if d.get("part") == "request" and d["point"] == point])
        per = serving_scores(done, failed, slo)
        rss = memory.get(point)
        per.append(_single("peak_rss_mb", rss / 2**20 if rss else None))
        if i == 0:
            first = per
        else:
            scores += _suffixed(per, point)
    raw = [d for d in details if d.get("part") == "raw"]
    extra: list[Score] = []
    if raw and points:
        pp = [d for d in raw if d["test"] == "pp"]
        tg = [d for d in raw if d["test"] == "tg"]
        pp_score = _raw_score(f"raw_pp{pp[0]['n']}_tok_s", [d["tok_s"] for d in pp])
        tg_score = _raw_score(f"raw_tg{tg[0]['n']}_d{tg[0]['depth']}_tok_s", [d["tok_s"] for d in tg])
        done, _ = _timings([d for d in details if d.get("part") == "request" and d["point"] == points[0]])
        prefill = mean_score("prefill_tok_s", [t.prompt_tokens / t.ttft for t in done if t.ttft > 0])
        decode = mean_score("decode_tok_s", [1 / t.tpot for t in done if t.tpot])
        predicted = [t.prompt_tokens / pp_score.value + t.output_tokens / tg_score.value for t in done]
        e2e = mean_score("e2el_vs_raw", [p / t.latency for p, t in zip(predicted, done, strict=True)])
        extra = [prefill, decode, pp_score, tg_score, _ratio("prefill_vs_raw", prefill, pp_score),
                 _ratio("decode_vs_raw", decode, tg_score), e2e]
    return first + extra + scores


# ---------------------------------------------------------------------- mobile_benchmark

_QUANT = re.compile(r"[._-](f32|f16|bf16|i?q\d(?:_[a-z0-9]+)*)$", re.IGNORECASE)


def quant_tag(path: Path) -> str:
    match = _QUANT.search(path.stem)
    return match.group(1).upper() if match else path.stem


def quant_files(gguf: Path) -> list[Path]:
    """The GGUF and its sibling quantisations (same name, another quant tag), the given file first."""
    match = _QUANT.search(gguf.stem)
    if match is None:
        return [gguf]
    base = gguf.stem[: match.start()]
    siblings = sorted(
        p for p in gguf.parent.glob("*.gguf")
        if p != gguf and (m := _QUANT.search(p.stem)) is not None and p.stem[: m.start()] == base
    )  # fmt: skip
    return [gguf, *siblings]


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def model_gguf(backend: Backend) -> Path:
    """The GGUF file the engine runs: llama.cpp's, or the one transformers dequantized on load (`gguf_path`)."""
    path = getattr(backend, "path", None) or getattr(backend, "gguf_path", None)
    if isinstance(path, Path) and path.suffix == ".gguf":
        return path
    raise TimingUnsupportedError(
        f"mobile_benchmark measures GGUF files on llama.cpp, and {backend.info.name} has none loaded; "
        "run it with --backend llamacpp (a model with run.gguf in the catalog)."
    )


class _Mobile:
    def __init__(self, task: LatencyTask, backend: Backend, items: list[Item]):
        self.task, self.backend, self.items = task, backend, items
        self.device: Device = task.spec.device  # type: ignore[assignment]
        self.records: list[dict] = []

    def add(self, record: dict) -> None:
        record["position"] = len(self.records)
        self.records.append(record)

    def run(self) -> list[dict]:
        task, device = self.task, self.device
        files = quant_files(model_gguf(self.backend))
        lines = task.calibrate(self.backend)
        prompts = [task.prompt(item, "mobile", lines) for item in self.items]
        cpus = usable_cpus()
        threads = [t for t in device.threads if t <= cpus] or [1]
        text = "".join(line + "\n" for line in task.lines())
        with tempfile.TemporaryDirectory(prefix="evalmap-mobile-") as tmp:
            spec_file = Path(tmp) / "prompts.json"
            spec_file.write_text(json.dumps({"prompts": prompts, "max_tokens": task.output_tokens}))
            logits: dict[str, Path] = {}
            for path in files:
                tag = quant_tag(path)
                for n, t in enumerate(threads):
                    out = Path(tmp) / f"{tag}.npy" if n == 0 else None
                    result = _child(path, t, device, spec_file, out, text)
                    self.add_config(path, tag, t, result, prompts, skipped=[x for x in device.threads if x > cpus])
                    if out is not None and out.is_file():
                        logits[tag] = out
            self.quality(files, logits)
        return self.records

    def add_config(self, path: Path, tag: str, threads: int, result: dict, prompts: list[str],
                   skipped: list[int]) -> None:
        point = f"{tag}/t{threads}"
        bpw = result["size_bytes"] * 8 / result["n_params"] if result.get("n_params") else None
        self.add(_record(f"{point}/device", 0, "", {
            "part": "device", "point": point, "quant": tag, "file": path.name, "threads": threads,
            "threads_skipped": skipped, "memory_limit_mb": self.device.memory_limit_mb, "bpw": bpw,
            "load_s": result.get("load_s"), "peak_rss_bytes": result.get("peak_rss_bytes"),
            "error": result.get("error"),
        }))  # fmt: skip
        for test, n in (("pp", self.device.pp), ("tg", self.device.tg)):
            for rep, rate in enumerate(result.get(test, [])):
                self.add(_record(f"{point}/{test}/{rep}", 0, "", {"part": "raw", "point": point, "test": test,
                                                                  "n": n, "depth": 0, "rep": rep, "tok_s": rate}))
        for item, prompt, timed in zip(self.items, prompts, result.get("timings", []), strict=False):
            self.add(_request_record(f"{point}/{item.id}", 0, prompt, Timed(**timed), point))

    def quality(self, files: list[Path], logits: dict[str, Path]) -> None:
        """KL(reference || file) and top-1 agreement per position, the reference the file of most bits/weight."""
        bpw = {d["quant"]: d["bpw"] or 0 for d in (r["details"] for r in self.records) if d["part"] == "device"}
        have = [quant_tag(p) for p in files if quant_tag(p) in logits]
        if len(have) < 2:
            return
        ref = max(have, key=lambda tag: bpw.get(tag, 0))
        p = _log_softmax(np.load(logits[ref]))
        for tag in have:
            if tag == ref:
                continue
            q = _log_softmax(np.load(logits[tag]))
            n = min(len(p), len(q))
            kl = (np.exp(p[:n]) * (p[:n] - q[:n])).sum(axis=1)
            top1 = (p[:n].argmax(axis=1) == q[:n].argmax(axis=1)).astype(float)
            self.add(_record(f"{tag}/quality", 0, "", {"part": "quality", "quant": tag, "reference": ref,
                                                         "kl": kl.tolist(), "top1": top1.tolist()}))


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def _child(path: Path, threads: int, device: Device, prompts: Path | None, logits_out: Path | None, text: str) -> dict:
    """One (file, threads) measurement in its own process (python -m evalmap.backends.llama_bench)."""
    cmd = [
        sys.executable, "-m", "evalmap.backends.llama_bench", "--model", str(path), "--threads", str(threads),
        "--pp", str(device.pp), "--tg", str(device.tg), "--reps", str(device.reps),
        "--memory-limit", str(device.memory_limit_mb * 2**20),
    ]  # fmt: skip
    if prompts is not None:
        cmd += ["--prompts", str(prompts)]
    if logits_out is not None:
        cmd += ["--logits-out", str(logits_out), "--logits-text", text[: device.logit_tokens * 8]]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {CHILD_TIMEOUT_S:g} s"}
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    try:
        return json.loads(last)
    except ValueError:
        tail = " ".join(done.stderr.split()[-30:])
        return {"error": f"the measuring process exited with {done.returncode} ({tail or 'no output'})"}


def _mobile_scores(details: list[dict]) -> list[Score]:
    devices = [d for d in details if d.get("part") == "device"]
    scores: list[Score] = []
    first: list[Score] = []
    own = devices[0]["quant"] if devices else None
    headline_point = max((d for d in devices if d["quant"] == own), key=lambda d: d["threads"], default=None)
    for dev in devices:
        point = dev["point"]
        per: list[Score] = []
        for test in ("pp", "tg"):
            reps = [d for d in details if d.get("part") == "raw" and d.get("point") == point and d["test"] == test]
            if reps:
                per.append(_raw_score(f"{test}{reps[0]['n']}_tok_s", [d["tok_s"] for d in reps]))
        done, failed = _timings([d for d in details if d.get("part") == "request" and d.get("point") == point])
        per += [s for s in serving_scores(done, failed, {}) if s.name in ("ttft_ms_mean", "tpot_ms_mean", "failed")]
        per.append(_single("load_s", dev.get("load_s")))
        rss = dev.get("peak_rss_bytes")
        per.append(_single("peak_rss_mb", rss / 2**20 if rss else None))
        per.append(_single("bits_per_weight", dev.get("bpw")))
        if dev is headline_point:
            first = per
        else:
            scores += _suffixed(per, point)
    for q in (d for d in details if d.get("part") == "quality"):
        scores.append(mean_score(f"kl_vs_{q['reference']}:{q['quant']}", q["kl"]))
        scores.append(mean_score(f"top1_agreement_vs_{q['reference']}:{q['quant']}", q["top1"]))
    return first + scores


def _single(name: str, value: float | None) -> Score:
    """One measurement: n=1, no spread (said by its method)."""
    if value is None:
        return empty_score(name, "single-run")
    return Score(name, float(value), math.nan, math.nan, math.nan, 1, "single-run")


def sonnet_lines(records: list[Record], origin: str) -> list[Record]:
    """The text's non-empty lines (local sonnet.txt), or the first human turn of each ShareGPT conversation
    (the hub source), as {"id", "text"}."""
    out = []
    for i, record in enumerate(records):
        text = record.get("text")
        if text is None:
            turns = record.get("conversations") or []
            text = next((t.get("value", "") for t in turns if t.get("from") == "human"), "")
        if text.strip():
            out.append({"id": f"line-{i}", "text": text.strip()})
    return out

