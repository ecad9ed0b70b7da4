"""How full evalmap keeps an OpenAI-compatible server, against lm-evaluation-harness on the same server.

What it measures (issue 12). The bench starts its own fake OpenAI-compatible server in process
(bench/fake_openai_server.py, on 127.0.0.1 only): it answers every request after sleeping
`--latency` L seconds, with unlimited parallelism, and counts requests in flight server-side.
For each concurrency c (default 8, 64, 256) and n gsm8k items (default 1000, 8-shot CoT):

- evalmap, cold: `evalmap.evaluate("smollm2_135m", "gsm8k", samples=n, backend="openai",
  base_url=<server>, concurrency=c, store=<fresh file>, quiet=True)`, in this process (after
  one 1-item warm-up call, so imports and data reading are paid once, before any c).
  Printed: wall time (call to return) = start-up (call to the first generation request
  reaching the server) + serving (first request to last response) + tail (last response to
  return); the ideal ceil(n/c)*L; serving/ideal and (wall - start-up)/ideal; the server's peak
  in flight and mean in flight (requests x L / serving: c when the window stays full); this
  process's CPU time (evalmap's threads and the fake server's); the requests the server counted
  (== n on a cold store).
- evalmap, cached: the same call again on the same store; wall time, its share of the cold run,
  and the requests the server saw (0: every response comes from the store).
- lm-eval 0.4.13 `--model local-completions` with num_concurrent=c on the same n items (the
  items and the lm-eval task YAML of bench/bench_lm_eval_agreement.py, whose venv it reuses:
  $LMEVAL_VENV, default /tmp/lmeval-venv, installed there when missing; the [api] extra,
  aiohttp and tenacity, is added when missing), run as its own process with
  tokenized_requests=False and tokenizer_backend=None (no tokenizer download; the hub is
  offline). Printed: wall time (process start to exit: its imports and task loading are in its
  start-up), start-up, serving, tail, peak in flight, requests; and the evalmap/lm-eval ratios
  of wall time and of serving time (serving compares how full each keeps the server; evalmap's
  imports are paid before its timed call, lm-eval's inside its wall).
  If lm-eval cannot run, its row says why and the evalmap part stands.

Goals (issue 12): peak in flight == c; evalmap wall <= 1.2 x ideal + start-up; server requests
== n cold; cached rerun < 5% of the cold run.

    python bench/bench_server_throughput.py                # n=1000, c=8,64,256, L=0.25 s
    python bench/bench_server_throughput.py --quick        # n=200, c=8,64
    python bench/bench_server_throughput.py --latency 0.5 --concurrency 64 --n 500 --no-lm-eval
    python bench/bench_server_throughput.py --json out.json

Start-up and the end of generation are seen by a thread that polls the server's counters every
2 ms (the server runs in this process), so they are exact to a few ms. Data comes from
../shared/datasets (or --data-dir).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "src"))  # this checkout's evalmap, as bench_lm_eval_agreement.py
sys.path.insert(0, str(BENCH))

from bench_lm_eval_agreement import DEFAULT_DATA, SEED, VENV, YAMLS, ensure_venv, write_items  # noqa: E402
from fake_openai_server import FakeOpenAIServer  # noqa: E402

import evalmap  # noqa: E402

MODEL = "smollm2_135m"
DATASET = "gsm8k"
LM_EVAL_VERSION = "0.4.13"


class Watcher:
    """Polls the server's counters: when the first request arrived and when in-flight last fell to 0."""

    def __init__(self, server, every_s: float = 0.002):
        self.server, self.every_s = server, every_s
        self.first: float | None = None
        self.last_idle: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Watcher:
        self.server.reset_stats()
        self.first = self.last_idle = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        busy = False
        while not self._stop.is_set():
            now = time.perf_counter()
            if self.first is None and self.server.requests > 0:
                self.first = now
            flying = self.server.in_flight > 0
            if busy and not flying:
                self.last_idle = now
            busy = flying
            time.sleep(self.every_s)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()


def timings(server, seen: Watcher, began: float, wall: float) -> dict:
    """wall = start-up (call to first request) + serving (first request to last response) + tail (to return)."""
    first, idle = seen.first, seen.last_idle
    return {
        "wall_s": wall,
        "startup_s": first - began if first else None,
        "serving_s": idle - first if first and idle else None,
        "tail_s": began + wall - idle if idle else None,
        "peak_in_flight": server.peak_in_flight,
        # requests x L / serving: how many were in flight on average (c when the window stays full)
        "mean_in_flight": server.requests * server.latency_s / (idle - first) if first and idle else None,
        "server_requests": server.requests,
        "server_failures": server.failures,
    }


def run_evalmap(server, n: int, c: int, store: Path, data_dir: Path) -> dict:
    with Watcher(server) as seen:
        began, cpu = time.perf_counter(), time.process_time()
        result = evalmap.evaluate(
            MODEL, DATASET, samples=n, backend="openai", base_url=server.base_url, concurrency=c,
            store=store, quiet=True, data_dir=data_dir, seed=SEED,
        )  # fmt: skip
        wall = time.perf_counter() - began
    job = result.job(DATASET)
    return {
        **timings(server, seen, began, wall),
        "cpu_s": time.process_time() - cpu,  # this process: evalmap's threads and the fake server's
        "samples": job.n,
        "model_calls": job.model_calls,
        "cache_hits": job.cache_hits,
    }


def prepare_lmeval(n: int, data_dir: Path, work: Path) -> tuple[Path | None, Path, str]:
    """(lm-eval's python or None, task folder, why not) with the n items evalmap runs, as jsonl + YAML."""
    tasks = work / "tasks"
    tasks.mkdir(exist_ok=True)
    path, shots = write_items(DATASET, n, data_dir, work)
    (tasks / f"em_{DATASET}.yaml").write_text(YAMLS[DATASET].format(path=path, shots=shots))
    check = "import aiohttp, tenacity; from importlib.metadata import version; print(version('lm_eval'))"
    try:
        python = ensure_venv()
        found = subprocess.run([str(python), "-c", check], capture_output=True, text=True, check=False)
        if found.returncode != 0:  # local-completions needs lm-eval's [api] extra (aiohttp, tenacity)
            print(f"installing lm-eval[api]=={LM_EVAL_VERSION} into {VENV} ...", flush=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", f"lm-eval[api]=={LM_EVAL_VERSION}"], check=True)
            found = subprocess.run([str(python), "-c", check], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, tasks, f"lm-eval with its [api] extra could not be installed into {VENV} ({exc})."
    if found.stdout.strip() != LM_EVAL_VERSION:
        print(f"note: {VENV} holds lm-eval {found.stdout.strip()}, not {LM_EVAL_VERSION}", flush=True)
    return python, tasks, ""


def run_lmeval(server, python: Path, tasks: Path, c: int, served: str, out: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               OPENAI_API_KEY="EMPTY", TOKENIZERS_PARALLELISM="false")  # fmt: skip
    model_args = (
        f"model={served},base_url={server.base_url}/completions,num_concurrent={c},max_retries=3,"
        "tokenized_requests=False,tokenizer_backend=None"
    )
    with Watcher(server) as seen:
        began = time.perf_counter()
        proc = subprocess.run(
            [str(python), "-m", "lm_eval", "--model", "local-completions", "--model_args", model_args,
             "--tasks", f"em_{DATASET}", "--include_path", str(tasks), "--output_path", str(out),
             "--seed", "0,1234,1234,1234"],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        wall = time.perf_counter() - began
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        return {"error": f"lm-eval exited {proc.returncode}: {lines[-1] if lines else 'no output'}"}
    return timings(server, seen, began, wall)


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(value, spec: str = ".2f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", type=float, default=0.25, help="seconds the fake server sleeps per request")
    ap.add_argument("--n", type=int, default=None, help="gsm8k items (default 1000; 200 with --quick)")
    ap.add_argument("--concurrency", default=None, help="comma-separated (default 8,64,256; 8,64 with --quick)")
    ap.add_argument("--quick", action="store_true", help="n=200, c=8,64")
    ap.add_argument("--no-lm-eval", action="store_true", help="evalmap only")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--json", type=Path, help="also write the measurements as JSON here")
    args = ap.parse_args()
    n = args.n or (200 if args.quick else 1000)
    cs = [int(c) for c in (args.concurrency or ("8,64" if args.quick else "8,64,256")).split(",") if c.strip()]
    L = args.latency
    bench_began = time.perf_counter()

    work = Path(tempfile.mkdtemp(prefix="em-throughput-"))
    python, tasks, lm_why = (None, work, "skipped (--no-lm-eval).") if args.no_lm_eval else \
        prepare_lmeval(n, args.data_dir, work)  # fmt: skip
    run = evalmap.load_catalog().model(MODEL).run
    served = run.server_model or run.hf or MODEL  # the model name evalmap's openai backend sends

    rows = []
    with FakeOpenAIServer(latency_s=L) as server:
        # The first evaluate() of a process imports the run machinery and reads the catalog and data:
        # paid once here (1 item), so each c below is timed the same way.
        with Watcher(server):
            began = time.perf_counter()
            evalmap.evaluate(MODEL, DATASET, samples=1, backend="openai", base_url=server.base_url, concurrency=1,
                             store=work / "warmup.sqlite", quiet=True, data_dir=args.data_dir, seed=SEED)  # fmt: skip
            first_call = time.perf_counter() - began
        print(f"server {server.base_url}, latency {L:g} s; {DATASET} n={n}; first evaluate() in this process "
              f"(imports, 1 item): {first_call:.2f} s", flush=True)  # fmt: skip
        for c in cs:
            ideal = math.ceil(n / c) * L
            store = work / f"evalmap-c{c}.sqlite"
            cold = run_evalmap(server, n, c, store, args.data_dir)
            cached = run_evalmap(server, n, c, store, args.data_dir)
            row = {"c": c, "n": n, "latency_s": L, "ideal_s": ideal, "evalmap": cold, "evalmap_cached": cached}
            cold["serving_over_ideal"] = ratio(cold["serving_s"], ideal)
            cold["after_startup_over_ideal"] = ratio(cold["wall_s"] - (cold["startup_s"] or 0.0), ideal)
            cached["share_of_cold"] = cached["wall_s"] / cold["wall_s"]
            row["goals_missed"] = [
                name for name, met in (
                    ("peak", cold["peak_in_flight"] == c),
                    ("time", cold["after_startup_over_ideal"] <= 1.2),
                    ("requests", cold["server_requests"] == n),
                    ("cache", cached["share_of_cold"] < 0.05 and cached["server_requests"] == 0),
                ) if not met
            ]  # fmt: skip
            print(f"  c={c}: evalmap {cold['wall_s']:.2f} s (start-up {fmt(cold['startup_s'])} s), "
                  f"peak {cold['peak_in_flight']}, requests {cold['server_requests']}; cached "
                  f"{cached['wall_s']:.2f} s", flush=True)  # fmt: skip
            if python is not None:
                lm = run_lmeval(server, python, tasks, c, served, work / f"lmeval-c{c}")
                row["lm_eval"] = lm
                if "error" in lm:
                    print(f"  c={c}: {lm['error']}", flush=True)
                else:
                    lm["serving_over_ideal"] = ratio(lm["serving_s"], ideal)
                    row["evalmap_over_lm_eval_wall"] = ratio(cold["wall_s"], lm["wall_s"])
                    row["evalmap_over_lm_eval_serving"] = ratio(cold["serving_s"], lm["serving_s"])
                    print(f"  c={c}: lm-eval {lm['wall_s']:.2f} s (start-up {fmt(lm['startup_s'])} s), "
                          f"peak {lm['peak_in_flight']}, requests {lm['server_requests']}", flush=True)  # fmt: skip
            rows.append(row)

    total = time.perf_counter() - bench_began
    print(f"\n{MODEL} on {DATASET}, n={n}, server latency L={L:g} s (127.0.0.1, unlimited parallelism). "
          "ideal = ceil(n/c)*L; start-up = call to first request at the server; serving = first request to "
          "last response; tail = last response to return; mean = requests x L / serving, the average in flight; "
          "cpu = this process's CPU time (evalmap and the fake server). Goals: peak = c, "
          "(wall - start-up) <= 1.2 x ideal, requests = n, cached < 5% of cold with 0 requests.")  # fmt: skip
    print("evalmap, evaluate() in this process (cold store; cached = the same call again):")
    print(f"{'c':>5}{'wall s':>9}{'start-up':>10}{'serving':>9}{'tail':>7}{'ideal s':>9}{'serving/ideal':>15}"
          f"{'(wall-start)/ideal':>20}{'peak':>6}{'mean':>6}{'cpu s':>7}{'requests':>10}{'cached s':>10}"
          f"{'cached %':>10}{'req':>5}"
          "  goals missed")  # fmt: skip
    for r in rows:
        e, k = r["evalmap"], r["evalmap_cached"]
        print(f"{r['c']:>5}{e['wall_s']:>9.2f}{fmt(e['startup_s']):>10}{fmt(e['serving_s']):>9}{fmt(e['tail_s']):>7}"
              f"{r['ideal_s']:>9.2f}{fmt(e['serving_over_ideal']):>14}x{e['after_startup_over_ideal']:>19.2f}x"
              f"{e['peak_in_flight']:>6}{fmt(e['mean_in_flight'], '.0f'):>6}{e['cpu_s']:>7.1f}"
              f"{e['server_requests']:>10}{k['wall_s']:>10.2f}"
              f"{100 * k['share_of_cold']:>9.1f}%{k['server_requests']:>5}  "
              f"{', '.join(r['goals_missed']) or 'none'}")  # fmt: skip
    if python is None:
        print(f"lm-eval: not run; {lm_why}")
    else:
        print(f"lm-eval {LM_EVAL_VERSION} --model local-completions, num_concurrent=c (its own process: wall "
              "includes its imports and task loading):")  # fmt: skip
        print(f"{'c':>5}{'wall s':>9}{'start-up':>10}{'serving':>9}{'tail':>7}{'serving/ideal':>15}{'peak':>6}"
              f"{'mean':>6}{'requests':>10}{'evalmap/lm-eval wall':>22}{'serving':>9}")  # fmt: skip
        for r in rows:
            lm = r.get("lm_eval", {})
            if "error" in lm:
                print(f"{r['c']:>5}  {lm['error']}")
                continue
            print(f"{r['c']:>5}{lm['wall_s']:>9.2f}{fmt(lm['startup_s']):>10}{fmt(lm['serving_s']):>9}"
                  f"{fmt(lm['tail_s']):>7}{fmt(lm['serving_over_ideal']):>14}x{lm['peak_in_flight']:>6}"
                  f"{fmt(lm['mean_in_flight'], '.0f'):>6}"
                  f"{lm['server_requests']:>10}{fmt(r['evalmap_over_lm_eval_wall']):>21}x"
                  f"{fmt(r['evalmap_over_lm_eval_serving']):>8}x")  # fmt: skip
    print(f"\nbench wall time: {total:.0f} s (first evaluate() {first_call:.2f} s); work files in {work}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "first_call_s": first_call, "bench_s": total}, indent=2))


if __name__ == "__main__":
    main()
