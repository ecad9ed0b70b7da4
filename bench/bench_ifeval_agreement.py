"""evalmap's ifeval checkers vs lm-eval 0.4.13's on the same responses: verdicts per instruction, strict and loose.

Two sets of responses, each scored by both sides:

1. model answers to the 541 prompts, read from an `evalmap run --datasets ifeval` (its `--output` folder's
   samples.jsonl, or its store): e.g. SmolLM2's, made once with
       evalmap run --models smollm2_135m --datasets ifeval --data-dir ../shared/datasets --backend llamacpp \\
           --output /tmp/ifeval-smollm2
2. the hand-written edge cases of tests/tasks/test_ifeval.py (a pass and a fail at every checker's edge);
3. with --synthetic, one answer per prompt composed at random from format fragments and the prompt's own words.

lm-eval runs in its own venv (default /tmp/lmeval-venv, or $LMEVAL_VENV; `lm-eval[ifeval]==0.4.13` is installed
into it when missing) through its `utils.process_results` and `instructions_util.count_sentences`, with
NLTK_DATA pointing at the punkt_tab copy evalmap uses (so nothing is downloaded) and langdetect seeded 0 as
in evalmap (lm-eval leaves it unseeded: its verdicts on a borderline text can change from run to run).

Prints, per set: per instruction id how many answers follow it (strict) and how many verdicts differ (strict,
loose; goal 0), the 4 metrics side by side
(evalmap's with stderr), how often the two sentence counters agree, and each side's scoring wall time. An
instruction whose arguments the data leaves unset or invalid (prompt 1122's letter "#") is compared with
lm-eval given evalmap's one seeded draw; lm-eval's verdicts with its own draw on every check are counted apart.

    python bench/bench_ifeval_agreement.py --responses /tmp/ifeval-smollm2/samples.jsonl
    python bench/bench_ifeval_agreement.py            # the hand-written cases only
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from evalmap.backends.base import Generation  # noqa: E402
from evalmap.catalog.loader import load_catalog  # noqa: E402
from evalmap.tasks.base import Item, TaskConfig  # noqa: E402
from evalmap.tasks.data import package_data_path  # noqa: E402
from evalmap.tasks.kinds import instructions as ins  # noqa: E402
from evalmap.tasks.registry import build_task  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "datasets"
VENV = Path(os.environ.get("LMEVAL_VENV", "/tmp/lmeval-venv"))
LMEVAL = "lm-eval[ifeval]==0.4.13"

# Runs inside lm-eval's venv: one JSON line in per response ({doc, response, texts, drawn_doc}), one out (verdicts,
# verdicts given evalmap's drawn arguments, sentence counts of the response and its loose variants), and the
# wall time of scoring the docs as given.
LMEVAL_SCRIPT = r"""
import json, sys, time
from langdetect import DetectorFactory
DetectorFactory.seed = 0
from lm_eval.tasks.ifeval import instructions_util, utils
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
began = time.perf_counter()
out = []
for row in rows:
    got = utils.process_results(row["doc"], [row["response"]])
    out.append({"strict": got["inst_level_strict_acc"], "loose": got["inst_level_loose_acc"]})
scoring = time.perf_counter() - began
for row, result in zip(rows, out):
    got = utils.process_results(row["drawn_doc"] or row["doc"], [row["response"]])
    result["drawn_strict"], result["drawn_loose"] = got["inst_level_strict_acc"], got["inst_level_loose_acc"]
    result["sentences"] = [instructions_util.count_sentences(text) for text in row["texts"]]
with open(sys.argv[2], "w", encoding="utf-8") as fh:
    json.dump({"rows": out, "seconds": scoring}, fh)
"""


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    probe = "import langdetect, immutabledict, nltk; from importlib.metadata import version; print(version('lm_eval'))"
    if python.exists():
        found = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.strip() == "0.4.13":
            return python
    print(f"installing {LMEVAL} into {VENV} ...", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", LMEVAL], check=True)
    return python


def nltk_data() -> str:
    """The folder holding tokenizers/punkt_tab that evalmap uses (the llama-index-core copy), for NLTK_DATA."""
    found = package_data_path("llama_index", f"{ins.PUNKT_IN_LLAMA_INDEX}/collocations.tab")
    if found is None:
        sys.exit(f"llama-index-core's punkt_tab is not installed: {ins.INSTALL_HINT}")
    return str(Path(found).parents[3])


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hand_written() -> list[tuple[dict, str]]:
    """(doc, response) for every edge case of the tests: one instruction per doc."""
    tests = load_module(REPO / "tests" / "tasks" / "test_ifeval.py", "test_ifeval_cases")
    cases = [(i, kw, text) for i, kw, text, _ in tests.EDGE_CASES] + [c[:3] for c in tests.LOOSE_CASES]
    return [
        ({"key": f"edge-{n}", "prompt": "(hand-written)", "instruction_id_list": [i], "kwargs": [kw]}, text)
        for n, (i, kw, text) in enumerate(cases)
    ]


FRAGMENTS = (
    "* a point", "- a dash point", "**bold**", "*highlight*", "* *", "***", "******", "Section 1", "SECTION 2",
    "P.S. a note", "P.P.S more", "p.s. late", "<<A Title>>", "<< >>", '"', '```json', '{"a": [1, 2]}', "```",
    "[name]", "My answer is yes.", "Any other questions?", "Is there anything else I can help with?",
    "THIS IS AN ENGLISH SENTENCE IN CAPITALS.", "this is an english sentence in lower case.",
    "Le chat dort sur le canapé pendant que la pluie tombe.", "Mr. Smith arrived at 3 p.m. on Monday.",
    "One, two, three.", "It works! Does it? Yes.", "So", "I", "NASA and the U.S. agreed",
)  # fmt: skip


def synthetic(data_dir: Path, seed: int = 0) -> list[tuple[dict, str]]:
    """One answer per prompt, composed at random from format fragments and the prompt's own words (keywords,
    forbidden words, first word, end phrase, the prompt to repeat), sometimes lower- or upper-cased, quoted or
    framed by a first and last line, so most checkers meet passes and fails."""
    import random

    pairs = []
    for doc, _ in model_responses(None, data_dir):
        rng = random.Random(f"{seed}:{doc['key']}")
        words = [v for kw in doc["kwargs"] for v in kw.values() if v and isinstance(v, str)]
        words += [w for kw in doc["kwargs"] for v in kw.values() if isinstance(v, list) for w in v]
        pool = list(FRAGMENTS) + words * 3
        parts = [rng.choice(pool) for _ in range(rng.choice((1, 1, 2, 3, 6, 12)))]
        text = "".join(part + rng.choice(("\n", "\n\n", " ", "\n")) for part in parts).strip(rng.choice(("", " \n")))
        shape = rng.choice((str, str, str.lower, str.upper, lambda t: f'"{t}"', lambda t: f"Sure:\n{t}\nDone."))
        pairs.append((doc, shape(text)))
    return pairs


def model_responses(path: Path | None, data_dir: Path) -> list[tuple[dict, str]]:
    """(doc, first answer) for every ifeval sample in an evalmap samples.jsonl or store."""
    docs = {}
    for line in (data_dir / "ifeval" / "input_data.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            doc = json.loads(line)
            docs[str(doc["key"])] = doc
    if path is None:  # every prompt, with an empty answer
        pairs = [(key, "") for key in docs]
    elif path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        pairs = [(r["item_id"], r["output"]) for r in rows if r.get("dataset") == "ifeval"]
    else:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        job = db.execute("SELECT id FROM jobs WHERE dataset = 'ifeval' ORDER BY rowid DESC LIMIT 1").fetchone()
        if job is None:
            sys.exit(f"{path} holds no ifeval job")
        pairs = [(i, json.loads(o)) for i, o in db.execute("SELECT item_id, output FROM samples WHERE job_id = ?", job)]
    answers = [(item_id, output if isinstance(output, str) else output[0]) for item_id, output in pairs]
    return [(docs[item_id], text) for item_id, text in sorted(answers, key=lambda p: int(p[0]))]


def with_draws(doc: dict) -> dict | None:
    """The doc with the arguments evalmap drew (unset or invalid in the data) set to evalmap's values, so lm-eval
    checks the same rule instead of drawing its own; None when nothing was drawn."""
    built = ins.build_instructions(str(doc["key"]), doc["instruction_id_list"], doc["kwargs"])
    if not any(i.drawn for i in built):
        return None
    kwargs = [{**kw, **{name: i.args[name] for name in i.drawn}} for kw, i in zip(doc["kwargs"], built, strict=True)]
    return {**doc, "kwargs": kwargs}


def run_lmeval(python: Path, pairs: list[tuple[dict, str]]) -> tuple[list[dict], float]:
    with tempfile.TemporaryDirectory(prefix="em-ifeval-") as work:
        given, got, script = Path(work, "in.jsonl"), Path(work, "out.json"), Path(work, "score.py")
        with given.open("w", encoding="utf-8") as fh:
            for doc, response in pairs:
                row = {"doc": doc, "drawn_doc": with_draws(doc), "response": response}
                fh.write(json.dumps({**row, "texts": ins.response_variants(response)}, ensure_ascii=False) + "\n")
        script.write_text(LMEVAL_SCRIPT)
        env = {**os.environ, "NLTK_DATA": nltk_data(), "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run([str(python), str(script), str(given), str(got)], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            sys.exit(f"lm-eval failed:\n{proc.stderr[-3000:]}")
        result = json.loads(got.read_text())
    return result["rows"], result["seconds"]


def compare(name: str, pairs: list[tuple[dict, str]], python: Path) -> int:
    task = build_task(load_catalog().dataset("ifeval"), TaskConfig(data_dir=str(DEFAULT_DATA)))
    began = time.perf_counter()
    samples = []
    for doc, response in pairs:
        built = ins.build_instructions(str(doc["key"]), doc["instruction_id_list"], doc["kwargs"])
        samples.append(task.score(Item(str(doc["key"]), {"instructions": built}), [Generation(response)]))
    evalmap_s = time.perf_counter() - began
    lm_rows, lmeval_s = run_lmeval(python, pairs)

    # An instruction with drawn arguments is compared with lm-eval given evalmap's draws (the same rule); lm-eval's
    # verdict on the data as given (its own draw, on every check) is counted apart, as chance.
    seen, followed, off, chance = Counter(), Counter(), Counter(), Counter()
    examples = []
    for (doc, response), ours, theirs in zip(pairs, samples, lm_rows, strict=True):
        for n, row in enumerate(ours.details["instructions"]):
            seen[row["id"]] += 1
            followed[row["id"]] += bool(row["strict"])
            for mode in ("strict", "loose"):
                same_rule = theirs[f"drawn_{mode}"][n] if "drawn" in row else theirs[mode][n]
                if bool(row[mode]) != same_rule:
                    off[row["id"], mode] += 1
                    examples.append((doc["key"], row["id"], mode, bool(row[mode]), same_rule, response))
                if "drawn" in row:
                    chance[mode, "drawn"] += 1
                    chance[mode, "differs"] += bool(row[mode]) != theirs[mode][n]
    sentence_pairs = [
        (ins.count_sentences(text), count)
        for (_, response), theirs in zip(pairs, lm_rows, strict=True)
        for text, count in zip(ins.response_variants(response), theirs["sentences"], strict=True)
    ]
    same_sentences = sum(a == b for a, b in sentence_pairs)

    print(f"\n== {name}: {len(pairs)} responses, {sum(seen.values())} instructions")
    print(f"{'instruction id':48} {'n':>4} {'followed':>8} {'strict off':>10} {'loose off':>10}")
    for instruction_id in sorted(seen):
        print(f"{instruction_id:48} {seen[instruction_id]:4d} {followed[instruction_id]:8d} "
              f"{off[instruction_id, 'strict']:10d} {off[instruction_id, 'loose']:10d}")  # fmt: skip
    strict_off = sum(v for (_, mode), v in off.items() if mode == "strict")
    print(f"{'mismatches':48} {'':4} {'':8} {strict_off:10d} {sum(off.values()) - strict_off:10d}")
    for key, instruction_id, mode, ours, theirs, response in examples[:10]:
        print(f"  {key} {instruction_id} {mode}: evalmap {ours}, lm-eval {theirs}: {response[:120]!r}")
    if chance["strict", "drawn"]:
        print(f"{chance['strict', 'drawn']} instructions have arguments the data leaves unset or invalid (compared "
              "above with lm-eval given evalmap's draws); on the data as given, lm-eval draws its own on every check "
              f"and differs from evalmap on {chance['strict', 'differs']} strict and {chance['loose', 'differs']} "
              "loose verdicts of them (chance)")  # fmt: skip

    flat = {mode: [v for r in lm_rows for v in r[mode]] for mode in ("strict", "loose")}
    lm = {
        "prompt_level_strict_acc": sum(all(r["strict"]) for r in lm_rows) / len(lm_rows),
        "inst_level_strict_acc": sum(flat["strict"]) / len(flat["strict"]),
        "prompt_level_loose_acc": sum(all(r["loose"]) for r in lm_rows) / len(lm_rows),
        "inst_level_loose_acc": sum(flat["loose"]) / len(flat["loose"]),
    }
    print(f"\n{'metric':26} {'evalmap':>24} {'lm-eval':>8}  (evalmap: value ± stderr, n, method; lm-eval on the data)")
    for score in task.aggregate(samples)[:4]:
        print(f"{score.name:26} {score.value:8.4f} ± {score.stderr:.4f} n={score.n:<4} {lm[score.name]:8.4f}  "
              f"{score.method}")  # fmt: skip
    print(f"sentence counts equal: {same_sentences}/{len(sentence_pairs)} texts (responses and their loose variants)")
    print(f"scoring wall time: evalmap {evalmap_s:.2f} s, lm-eval {lmeval_s:.2f} s (strict + loose, all responses)")
    return sum(off.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--responses", type=Path, help="samples.jsonl of an `evalmap run --output`, or its store")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--synthetic", action="store_true", help="also one random fragment answer per prompt")
    args = parser.parse_args()
    python = ensure_venv()
    mismatches = compare("hand-written edge cases", hand_written(), python)
    if args.synthetic:
        mismatches += compare("synthetic answers (format fragments and the prompts' words)", synthetic(args.data_dir),
                              python)  # fmt: skip
    if args.responses:
        mismatches += compare(
            f"model answers ({args.responses})", model_responses(args.responses, args.data_dir), python
        )
    print(f"\ntotal mismatching verdicts: {mismatches}")
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
