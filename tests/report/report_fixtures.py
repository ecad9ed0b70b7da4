"""Helpers for the report tests: 2 runs × 3 models × 3 datasets (+ one judge-scored job) via the Store API.

Known facts the tests check:
- run B is newer than run A; qwen25_7b × gsm8k has 20 shared items with 2 items only A got
  right and 9 only B got right, so McNemar is exact: p = 2 · (C(11,0)+C(11,1)+C(11,2)) / 2^11.
- arc_challenge has 30 samples per job (two pages of 25 in the samples browser), the others 20.
- llama31_8b (text) has `mt_bench` recommended by the catalog mapping but not run: a visible gap.
- item 3 of every 0/1 job answers with an HTML/script injection that must stay inert text.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

try:
    import evalmap  # noqa: F401
except ImportError:  # a plain checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from evalmap.metrics.stats import mean_score
from evalmap.store import Store

MODELS = ("qwen25_7b", "qwen25_math_7b", "llama31_8b")
DATASETS = {"humaneval": ("pass@1",), "gsm8k": ("exact_match_strict", "exact_match_flexible"),
            "arc_challenge": ("acc", "acc_norm")}
SIZES = {"humaneval": 20, "gsm8k": 20, "arc_challenge": 30}
CHOICES = ("the Sun", "a cloud of interstellar dust", "the Moon", "a comet")
INJECTION = '<img src=x onerror="window.__pwned=1"></script><script>window.__pwned=2</script>'

# qwen25_7b × gsm8k: A right on items 0-4, B right on 2-4 and 5-13 -> a_only = 2, b_only = 9
GSM8K_A = set(range(0, 5))
GSM8K_B = set(range(2, 14))


def _backend(model: str) -> dict:
    return {"name": "llamacpp", "version": "0.3.36", "model": model, "fingerprint": f"sha256:{model}" * 2,
            "extra": {}}


def _outcome(run: str, model: str, dataset: str, i: int, rng: random.Random) -> float:
    if model == "qwen25_7b" and dataset == "gsm8k":
        return float(i in (GSM8K_A if run == "A" else GSM8K_B))
    skill = {"qwen25_7b": 0.7, "qwen25_math_7b": 0.55, "llama31_8b": 0.4}[model]
    return float(rng.random() < skill)


def _record(dataset: str, metrics: tuple[str, ...], i: int, value: float, model: str) -> dict:
    details: dict = {}
    output = [f"The answer is {i}."]
    if dataset == "humaneval":
        status = "passed" if value else "failed"
        details = {"status": status, "error_type": None if value else "AssertionError",
                   "stderr": "" if value else f"Traceback (most recent call last):\n  ...\nAssertionError: case {i}",
                   "wall_s": 0.05, "n": 1, "passed": int(value)}
        output = [f"    return sorted(x)[{i}]\n"]
    elif dataset == "arc_challenge":  # as the multiple_choice kind stores it: choices, log-likelihoods, picks
        lls = [-1.5, -2.5, -4.0, -3.25]
        output = [{"logprob": ll, "is_greedy": k == 0} for k, ll in enumerate(lls)]
        details = {"logprobs": lls, "is_greedy": [k == 0 for k in range(4)], "choices": list(CHOICES),
                   "choice_chars": [len(c) for c in CHOICES], "pred": 0, "pred_norm": 1, "gold": 0 if value else 2}
    if i == 3:
        output = [INJECTION]
    return {
        "item_id": f"{dataset}/{i}", "position": i, "prompt": f"Question {i} of {dataset}: what is {i} + {i}?",
        "output": output, "extracted": str(i if value else -i), "target": str(i),
        "metrics": {m: value for m in metrics}, "details": details,
        "prompt_tokens": 40, "completion_tokens": 12,
        "latency_s": {"qwen25_7b": 0.8, "qwen25_math_7b": 0.5, "llama31_8b": 0.3}[model] * (1 + 0.1 * (i % 3)),
    }


def build_store(path: Path) -> tuple[Store, str, str]:
    """Two finished runs (A older, B newer) of 3 models × 3 datasets × 20 samples, plus qwen25_7b × mt_bench."""
    store = Store(path)
    run_ids = []
    for run, seed in (("A", 1), ("B", 2)):
        rng = random.Random(seed)
        run_id, _ = store.open_run(f"key-{run}", {"pairs": "test", "run": run}, 1234, "cat123", {"python": "3.11"})
        for model in MODELS:
            for dataset, metrics in DATASETS.items():
                n = SIZES[dataset]
                job = store.open_job(run_id, model, dataset, _backend(model), {"chat": False}, f"ph-{dataset}", n)
                records = [_record(dataset, metrics, i, _outcome(run, model, dataset, i, rng), model)
                           for i in range(n)]
                store.add_samples(job, records)
                store.set_scores(job, [mean_score(m, [r["metrics"][m] for r in records]).to_dict() for m in metrics])
                store.add_job_counters(job, wall_seconds=2.0, model_calls=n, cache_hits=0, prompt_tokens=40 * n,
                                       completion_tokens=12 * n)
                store.finish_job(job, "finished")
        # a 1-10 judge score: not a 0-1 metric, compared by paired bootstrap
        job = store.open_job(run_id, "qwen25_7b", "mt_bench", _backend("qwen25_7b"), {}, "ph-mt", 10)
        records = []
        for i in range(10):
            score = float(rng.randint(3, 9) + (1 if run == "B" else 0))
            records.append({
                "item_id": f"mt/{i}", "position": i, "prompt": f"Turn {i}", "output": [f"reply {i}"],
                "extracted": None, "target": None, "metrics": {"judge_score": score}, "details": {"judge": "stub"},
                "prompt_tokens": 10, "completion_tokens": 50, "latency_s": 1.0,
            })
        store.add_samples(job, records)
        store.set_scores(job, [mean_score("judge_score", [r["metrics"]["judge_score"] for r in records]).to_dict()])
        store.add_job_counters(job, wall_seconds=5.0, model_calls=10)
        store.finish_job(job, "finished")
        store.finish_run(run_id, "finished", 12.5)
        # make creation order unambiguous even within one clock tick
        store.db.execute("UPDATE runs SET created=? WHERE id=?", (1000.0 + len(run_ids), run_id))
        run_ids.append(run_id)
    return store, run_ids[0], run_ids[1]




def add_fewshot_run(store: Store, num_fewshot: int = 25) -> str:
    """A third, newest run: qwen25_7b × arc_challenge again, but `num_fewshot` shots (runs A and B left the
    dataset's default) and lower acc_norm: a settings change that compare and the report must name."""
    run_id, _ = store.open_run("key-C", {"run": "C", "num_fewshot": num_fewshot}, 1234, "cat123", {"python": "3.11"})
    n = SIZES["arc_challenge"]
    job = store.open_job(run_id, "qwen25_7b", "arc_challenge", _backend("qwen25_7b"),
                         {"chat": False, "num_fewshot": num_fewshot}, "ph-arc-25", n)
    records = []
    for i in range(n):
        record = _record("arc_challenge", DATASETS["arc_challenge"], i, float(i % 3 == 0), "qwen25_7b")
        record["metrics"]["acc"] = float(i % 2 == 0)  # acc and acc_norm move apart: one metric would hide it
        records.append(record)
    store.add_samples(job, records)
    store.set_scores(job, [mean_score(m, [r["metrics"][m] for r in records]).to_dict()
                           for m in DATASETS["arc_challenge"]])
    store.add_job_counters(job, wall_seconds=2.0, model_calls=n * 4, prompt_tokens=400 * n, completion_tokens=0)
    store.finish_job(job, "finished")
    store.finish_run(run_id, "finished", 3.0)
    store.db.execute("UPDATE runs SET created=? WHERE id=?", (1002.0, run_id))
    return run_id
