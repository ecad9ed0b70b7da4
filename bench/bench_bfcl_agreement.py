"""evalmap's BFCL checker vs the official one (bfcl-eval 2026.3.23) on the same outputs: verdicts per output.

Outputs, each judged by both sides for its entry:

1. synthetic, for every entry of the AST and relevance categories in ../shared/datasets/bfcl: the right answer
   (`answer_calls` / `format_calls`) in prompt syntax and as native tool calls ("." in names as "_"), and
   mutations of it, one per rule (wrong name, a required parameter dropped, an extra parameter, a wrong type, a
   wrong value, string normalisation variants, parallel calls reordered or one missing, free text, `[]`, ...),
   laid out as models lay it out (fenced, unbracketed, cut short, with prose, several calls) and, with --fuzz N,
   N copies per entry with one random character deleted, inserted or swapped: a probe of tree-sitter's error
   recovery on damaged Java / JavaScript, which evalmap's parser follows only where it was measured;
2. with --outputs FILE.jsonl, real model outputs: one JSON object a line, {category, id, output}, the output
   a prompt-mode string or a list of native tool calls [{name, arguments}].

BFCL runs in its own venv through its `eval_runner._evaluate_single_ast_entry` / `_evaluate_single_relevance_entry`
with model "gpt-4o-2024-11-20" (a prompt-mode model) for text outputs and "gpt-4o-2024-11-20-FC" (a native
model whose names had "." replaced by "_") for tool calls. Make the venv once (no sentence-transformers / torch:
BFCL imports its vendor SDKs only to build API clients, and the driver stubs those imports):

    python3.11 -m venv /tmp/bfcl-venv
    /tmp/bfcl-venv/bin/pip install --no-deps bfcl-eval==2026.3.23
    /tmp/bfcl-venv/bin/pip install tree_sitter==0.21.3 tree-sitter-java==0.21.0 tree-sitter-javascript==0.21.4 \\
        numpy==1.26.4 pandas==2.2.3 openai httpx overrides tenacity filelock python-dotenv tqdm requests

A text output whose Python syntax holds arithmetic BFCL would `eval` on anything but small constant sums is not
sent to BFCL (counted as "not run"); an output BFCL fails on with an exception is counted apart ("crashed"),
not as a mismatch. Prints, per category: outputs, valid verdicts per side, `valid` mismatches (goal 0),
error_type mismatches, then the first mismatches with both verdicts and the error_type pairs that differ.
First it compares what the model is sent for every scored entry: evalmap's prompt-mode messages and native
`tools` against those BFCL builds. Exits 1 on any `valid` mismatch or any entry sent differently.

    python bench/bench_bfcl_agreement.py
    python bench/bench_bfcl_agreement.py --outputs /tmp/bfcl-smollm2/outputs.jsonl
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import gzip
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from evalmap.tasks.function_calls import (
    CallParseError,
    answer_calls,
    check_entry,
    decode_prompt_output,
    format_calls,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "bfcl"
AST_CATEGORIES = ["simple_python", "simple_java", "simple_javascript", "multiple", "parallel", "parallel_multiple",
                  "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple"]
RELEVANCE_CATEGORIES = ["irrelevance", "live_irrelevance", "live_relevance"]
PROMPT_MODEL, FC_MODEL = "gpt-4o-2024-11-20", "gpt-4o-2024-11-20-FC"

DRIVER = r'''
import importlib.abc, importlib.machinery, json, os, sys, types

# Vendor SDKs that BFCL imports only to build API clients: stubbed, never called by the checker.
STUBBED = {"anthropic", "cohere", "google", "mistralai", "boto3", "writerai", "qwen_agent", "datamodel_code_generator",
           "sentence_transformers", "faiss", "rank_bm25", "serpapi", "bs4", "html2text", "mpmath"}

class _Anything:
    def __init__(self, *a, **k): pass
    def __call__(self, *a, **k): return _Anything()
    def __getattr__(self, name): return _Anything()
    def __getitem__(self, key): return _Anything()
    def __or__(self, other): return _Anything()
    __ror__ = __or__
    def __mro_entries__(self, bases): return (object,)

class _Stubs(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in STUBBED:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = lambda name: _Anything()
        return module
    def exec_module(self, module): pass

sys.meta_path.insert(0, _Stubs())
os.environ.setdefault("OPENAI_API_KEY", "unused")
from bfcl_eval.constants.enums import Language, ReturnFormat
from bfcl_eval.eval_checker.eval_runner import (
    _evaluate_single_ast_entry, _evaluate_single_relevance_entry, get_handler)

entries_path, records_path, results_path, prompt_model, fc_model = sys.argv[1:]
entries = json.load(open(entries_path))
handlers = {"prompt": (prompt_model, get_handler(prompt_model)), "native": (fc_model, get_handler(fc_model))}
formats = {"java": (Language.JAVA, ReturnFormat.JAVA), "javascript": (Language.JAVASCRIPT, ReturnFormat.JAVASCRIPT),
           "python": (Language.PYTHON, ReturnFormat.PYTHON)}
stdout, sys.stdout = sys.stdout, sys.stderr  # BFCL prints while it checks
with open(records_path) as f, open(results_path, "w") as out:
    for line in f:
        r = json.loads(line)
        entry = entries[r["category"] + "/" + r["id"]]
        model, handler = handlers[r["mode"]]
        output = r["output"]
        if r["mode"] == "native":  # BFCL's FC result: [{name: arguments JSON}]
            output = [{c["name"]: c["arguments"] if isinstance(c["arguments"], str) else json.dumps(c["arguments"])}
                      for c in output]
        try:
            if "relevance" in r["category"]:
                v = _evaluate_single_relevance_entry(handler, r["id"], output, entry["prompt"], model, r["category"])
            else:
                language, return_format = formats[entry["language"]]
                v = _evaluate_single_ast_entry(handler, r["id"], output, entry["ground_truth"], entry["prompt"], model,
                                               r["category"], language=language, return_format=return_format)
            result = {"valid": v["valid"], "error_type": v.get("error_type", "")}
        except Exception as e:
            result = {"crash": f"{type(e).__name__}: {e}"[:300]}
        out.write(json.dumps(result) + "\n")
'''


def load_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        path = path.with_name(path.name + ".gz")
    with (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)) as f:
        return [json.loads(line) for line in f if line.strip()]


def language(category: str) -> str:
    return "java" if category.endswith("_java") else "javascript" if category.endswith("_javascript") else "python"


def load_entries(data: Path) -> dict[str, dict]:
    entries = {}
    for category in AST_CATEGORIES + RELEVANCE_CATEGORIES:
        prompts = load_jsonl(data / f"BFCL_v4_{category}.json")
        answers = load_jsonl(data / "possible_answer" / f"BFCL_v4_{category}.json") if category in AST_CATEGORIES \
            else [None] * len(prompts)
        for prompt, answer in zip(prompts, answers, strict=True):
            entries[f"{category}/{prompt['id']}"] = {
                "category": category, "id": prompt["id"], "prompt": prompt, "language": language(category),
                "ground_truth": answer["ground_truth"] if answer else None,
            }
    return entries


# -- synthetic outputs ---------------------------------------------------------------------------------------


def native(calls: list[dict], dotted: bool = False) -> list[dict]:
    return [{"name": name if dotted else name.replace(".", "_"), "arguments": json.dumps(args)}
            for call in calls for name, args in call.items()]


def wrong_type(value):
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, str):
        return 12345
    if isinstance(value, int | float):
        return "not a number"
    return 7 if isinstance(value, list | dict) else "x"


def wrong_value(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, str):
        return value + " zz"
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 1.5
    if isinstance(value, list):
        return value + value[:1] if value else ["zz"]
    if isinstance(value, dict):
        return {**value, "zz_key": 1}
    return "zz"


NORMALISED = {  # variants of a string value: (label, change); BFCL's normalisation accepts the first four
    "upper": str.upper, "spaces_dropped": lambda s: s.replace(" ", ""), "punctuated": lambda s: s + ",.-_",
    "single_quote": lambda s: s.replace('"', "'"), "exclaimed": lambda s: s + "!", "tab": lambda s: s + "\t",
}


def mutate(calls: list[dict], at: int, param: str, value) -> list[dict]:
    out = copy.deepcopy(calls)
    name = next(iter(out[at]))
    if value is None:
        del out[at][name][param]
    else:
        out[at][name][param] = value
    return out


def synthetic(entry: dict) -> list[tuple[str, str | list]]:
    """(label, output) pairs for one entry."""
    functions, lang = entry["prompt"]["function"], entry["language"]
    if entry["ground_truth"] is None:
        answers = [("free_text", "I'm sorry, none of these functions can answer that."), ("empty", "[]"),
                   ("native_empty", []), ("broken_call", "lookup(x=")]
        if not functions:
            return answers
        first = functions[0]
        placeholder = {"string": "x", "integer": 1, "float": 1.0, "boolean": True, "array": [], "dict": {},
                       "tuple": [], "any": "x"}
        props = first["parameters"]["properties"]
        call = [{first["name"]: {p: placeholder.get(props[p].get("type"), "x")
                                 for p in first["parameters"].get("required", []) if p in props}}]
        return [*answers, ("call", format_calls(call, functions, "python")), ("call_native", native(call)),
                ("two_calls", format_calls(call * 2, functions, "python"))]
    gold = answer_calls(entry["ground_truth"], functions)
    text = lambda calls: format_calls(calls, functions, lang)  # noqa: E731
    outputs = [("gold", text(gold)), ("free_text", "I cannot help with that."), ("empty", "[]"), ("native_empty", [])]
    if lang == "python":
        outputs.append(("gold_native", native(gold)))
        if any("." in next(iter(c)) for c in gold):
            outputs.append(("native_dotted", native(gold, dotted=True)))
    else:  # Java / JavaScript values go native as the source text BFCL's parser gives
        with contextlib.suppress(CallParseError):
            outputs.append(("gold_native", native(decode_prompt_output(text(gold), lang))))
    name0, args0 = next(iter(gold[0].items()))
    outputs.append(("wrong_name", text([{name0 + "_v2": args0}, *gold[1:]])))
    others = [f["name"] for f in functions if f["name"] != name0]
    if others:
        outputs.append(("other_function", text([{others[0]: args0}, *gold[1:]])))
    doc0 = next(f for f in functions if f["name"] == name0)
    required = [p for p in doc0["parameters"].get("required", []) if p in args0]
    if required:
        outputs.append(("drop_required", text(mutate(gold, 0, required[0], None))))
    outputs.append(("extra_param", text(mutate(gold, 0, "zz_extra", 1))))
    for param, value in list(args0.items())[:3]:
        outputs.append((f"wrong_type:{param}", text(mutate(gold, 0, param, wrong_type(value)))))
        outputs.append((f"wrong_value:{param}", text(mutate(gold, 0, param, wrong_value(value)))))
        if isinstance(value, str):
            for label, change in NORMALISED.items():
                outputs.append((f"{label}:{param}", text(mutate(gold, 0, param, change(value)))))
        if isinstance(value, float) and value.is_integer() and lang == "python":
            outputs.append((f"int_for_float:{param}", text(mutate(gold, 0, param, int(value)))))
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            outputs.append((f"item_upper:{param}", text(mutate(gold, 0, param, [v.upper() for v in value]))))
    if len(gold) > 1:
        outputs += [("reversed", text(gold[::-1])), ("missing_one", text(gold[:-1])),
                    ("reversed_native", native(gold[::-1]))]
    outputs.append(("duplicated", text(gold + gold[:1])))
    return outputs + layouts(text(gold), lang)


def layouts(gold: str, lang: str) -> list[tuple[str, str]]:
    """The right answer laid out as models lay it out: fenced, unbracketed, split over lines, with prose."""
    inner = gold[1:-1]
    out = [("fenced", f"```\n{gold}\n```"), (f"fenced_{lang}", f"```{lang}\n{gold}\n```"), ("unbracketed", inner),
           ("prose_before", f"Sure! {gold}"), ("spaced", gold.replace("=", " = ").replace("(", "( ", 1))]
    out += [(f"cut_{k}", gold[:-k]) for k in (1, 2, 3, 5, 8)]  # cut short, as at max_tokens
    out += [("cut_half", gold[: len(gold) // 2])]
    if lang == "python":
        out += [("quoted", f"'{inner}'"), ("lines", "[\n  " + inner.replace("), ", "),\n  ") + "\n]"),
                ("keyword_splat", gold.replace(")", ", **{'zz': 1})", 1))]
    else:
        out += [("semicolon", inner + ";"), ("two_semicolon", f"{inner}; {inner}"), ("two_comma", f"{inner}, {inner}"),
                ("two_lines", f"{inner}\n{inner}"), ("positional_name", inner.replace("(", "(zzName, ", 1)),
                ("assigned", f"result = {inner}")]
    return out


def fuzzed(text: str, rng: random.Random) -> str:
    """`text` with one character deleted, inserted (one that matters to a parser) or swapped with the next."""
    i = rng.randrange(len(text))
    edit = rng.choice("dis")
    if edit == "d":
        return text[:i] + text[i + 1:]
    if edit == "i":
        return text[:i] + rng.choice("()[]{},;.=\"' \n-+*/:<>!") + text[i:]
    return text[:i] + text[i + 1:i + 2] + text[i:i + 1] + text[i + 2:]


# Hand-written edge cases, judged against the first entry of their category.
EDGE_CASES = {
    "simple_python": [
        "[calculate_triangle_area(base=10, height=5, unit='units')]", "calculate_triangle_area(base=+10, height=5)",
        "calculate_triangle_area(base=5+5, height=5)", "calculate_triangle_area(base=20/2, height=5)",
        "calculate_triangle_area(base=10, height=5, unit=None)", "calculate_triangle_area(base=10.0, height=5)",
        "calculate_triangle_area(base=True, height=5)", "calculate_triangle_area(10, 5)",
        "calculate_triangle_area(base=10, height=5, unit=units)", "calculate_triangle_area(base=10, height=5)[0]",
        "calculate_triangle_area(base=10, height=5, unit=f'units')", "calculate_triangle_area(base=10, height=(5))",
        "calculate_triangle_area(base=-(-10), height=5)", "calculate_triangle_area(base=10, height=5, unit=x.y)",
        "calculate_triangle_area(base=10, height=5, unit=str(1))",
        "calculate_triangle_area(base=10, height=5, unit=...)",
        "calculate_triangle_area(base=10, height=5, unit=lambda: 1)", "calculate_triangle_area(base=1/0, height=5)",
        "math.calculate_triangle_area(base=10, height=5)",
        "{'name': 'calculate_triangle_area'}",
        "(calculate_triangle_area(base=10, height=5))",
        "calculate_triangle_area(base=10, height=5) # done", "calculate_triangle_area(base=10,\nheight=5)",
        "`calculate_triangle_area(base=10, height=5)`", "[calculate_triangle_area(base=10, height=5),]",
        "calculate_triangle_area(base=0x0A, height=5)", "calculate_triangle_area(base=10, height=5, unit={1: 2})",
        "calculate_triangle_area(base=10, height=5, unit={[1]: 2})",
        "calculate_triangle_area(base=10, height=5, unit=-'a')",
        "calculate_triangle_area(base=10, height=5, unit='a' 'b')",
        "calculate_triangle_area(base=10, height=5, unit=(1, [2]))",
    ],
    "simple_java": [
        'GeometryPresentation.createPresentation(controller=mapController, parent=mapArea)',
        'GeometryPresentation.createPresentation(controller="mapController", parent=mapArea);',
        'GeometryPresentation.createPresentation(controller=mapController, parent=mapArea, x=1)',
        'GeometryPresentation.createPresentation(mapController, parent=mapArea)',
        'GeometryPresentation.createPresentation(controller=mapController, controller=mapArea)',
        'new GeometryPresentation().createPresentation(controller=mapController, parent=mapArea)',
        'GeometryPresentation.createPresentation(controller=this.mapController, parent=(mapArea))',
        'GeometryPresentation.createPresentation(controller=mapController, parent=mapArea) // call',
        'GeometryPresentation.createPresentation(controller=mapController, parent=mapArea,)',
        'GeometryPresentation.createPresentation(controller=map.Controller.class, parent=mapArea)',
        'GeometryPresentation.createPresentation(controller=new int[5], parent=mapArea)',
        'GeometryPresentation.createPresentation(controller=(Object) mapController, parent=mapArea)',
        'GeometryPresentation.createPresentation(controller=x -> mapController, parent=mapArea)',
        'GeometryPresentation.createPresentation(controller=a ? b : c, parent=mapArea)',
        'createPresentation(controller=mapController, parent=mapArea)', 'A.b(c=1)', 'Abc.def(g=1)', 'this.b(c=1)',
        'A.b()', 'A.b();', 'GeometryPresentation.createPresentation', 'String x = A.b(c=1, d=2);',
        "GeometryPresentation.createPresentation(controller='m', parent=mapArea)",
        'GeometryPresentation.createPresentation(controller="map\\"Controller", parent=mapArea)',
    ],
    "simple_javascript": [
        'validateUserInput(inputField="userInputField", isComplete=true)',
        "validateUserInput(inputField='userInputField', isComplete=true);",
        'validateUserInput(inputField=userInputField, isComplete=true, extra)',
        'validateUserInput(inputField="userInputField", isComplete = true)',
        'validateUserInput(userInputField, true)', 'validateUserInput(inputField=`userInputField`, isComplete=true)',
        'validateUserInput(inputField="userInputField", isComplete=!false)',
        'validateUserInput({inputField: "userInputField", isComplete: true})',
        'await validateUserInput(inputField="userInputField", isComplete=true)',
        'obj.validateUserInput(inputField="userInputField", isComplete=true)',
        'validateUserInput(inputField="userInputField", isComplete=true)(x)',
        'validateUserInput(inputField="userInputField", isComplete=true) // done',
        'validateUserInput(inputField="a" + "b", isComplete=true)',
        'validateUserInput(inputField=x => x, isComplete=true)',
        'validateUserInput(inputField=/user/g, isComplete=true)', 'validateUserInput(inputField=, isComplete=true)',
        'validateUserInput(,inputField="userInputField", isComplete=true)', 'let x = validateUserInput(inputField="a")',
        'validateUserInput(inputField="userInputField", isComplete=true) validateUserInput(isComplete=true)',
    ],
}


# -- running ------------------------------------------------------------------------------------------------

_SAFE_ARITHMETIC = (ast.BinOp, ast.UnaryOp, ast.Constant, ast.Add, ast.Sub, ast.Div, ast.FloorDiv, ast.USub, ast.UAdd)


def hostile(record: dict) -> bool:
    """Whether BFCL would `eval` more than a small constant sum of this text output (so it is not run there)."""
    if not isinstance(record["output"], str) or ("relevance" not in record["category"]
                                                 and language(record["category"]) != "python"):
        return False
    text = record["output"].strip("`\n ")
    text = ("" if text.startswith("[") else "[") + text + ("" if text.endswith("]") else "]")
    try:
        tree = ast.parse(text.strip().strip("'"), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and not all(isinstance(n, _SAFE_ARITHMETIC) for n in ast.walk(node)):
            return True
    return False


PROMPT_DRIVER = r'''
import copy, json, sys
from bfcl_eval.utils import _func_doc_language_specific_pre_processing
from bfcl_eval.model_handler.utils import convert_to_tool, system_prompt_pre_processing_chat_model
from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI
from bfcl_eval.constants.enums import ModelStyle

entries = json.load(open(sys.argv[1]))
out = {}
for key, e in entries.items():
    docs = _func_doc_language_specific_pre_processing(copy.deepcopy(e["function"]), e["category"])
    messages = system_prompt_pre_processing_chat_model(copy.deepcopy(e["question"]), docs, e["id"])
    tools = convert_to_tool(docs, GORILLA_TO_OPENAPI, ModelStyle.OPENAI_COMPLETIONS)
    out[key] = {"messages": [[m["role"], m["content"]] for m in messages], "tools": tools}
json.dump(out, open(sys.argv[2], "w"))
'''


def prompt_agreement(python: str, data_dir: Path) -> tuple[int, int, int, list[str]]:
    """What the model is sent, evalmap vs BFCL, for every entry: (entries, same prompt-mode messages, same
    native tools, the first differing keys). BFCL builds them with `_func_doc_language_specific_pre_processing`,
    `system_prompt_pre_processing_chat_model` and `convert_to_tool` (OpenAI style)."""
    from evalmap.catalog.loader import load_catalog
    from evalmap.tasks.base import TaskConfig
    from evalmap.tasks.registry import build_task

    dataset = load_catalog().dataset("bfcl")
    tasks = {mode: build_task(dataset, TaskConfig(data_dir=str(data_dir.parent), mode=mode))
             for mode in ("prompt", "native")}  # fmt: skip
    items = tasks["prompt"].items()
    entries = {f"{i.data['category']}/{i.id}": {"id": i.id, "category": i.data["category"],
               "function": i.data["function"], "question": i.data["question"]} for i in items}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        src, dst, driver = Path(tmp) / "entries.json", Path(tmp) / "sent.json", Path(tmp) / "driver.py"
        src.write_text(json.dumps(entries))
        driver.write_text(PROMPT_DRIVER)
        done = subprocess.run([python, str(driver), str(src), str(dst)], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"the BFCL prompt driver failed:\n{done.stderr[-3000:]}")
        theirs = json.loads(dst.read_text())
    same_prompt = same_tools = 0
    differing = []
    for item in items:
        key = f"{item.data['category']}/{item.id}"
        prompt = [list(m) for m in tasks["prompt"].requests(item)[0].messages]
        tools = json.loads(tasks["native"].requests(item)[0].tools)
        same_prompt += prompt == theirs[key]["messages"]
        same_tools += tools == theirs[key]["tools"]
        if prompt != theirs[key]["messages"] or tools != theirs[key]["tools"]:
            differing.append(key)
    return len(items), same_prompt, same_tools, differing


def run_bfcl(python: str, entries: dict, records: list[dict]) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: Path(tmp) / name for name in ("driver.py", "entries.json", "records.jsonl", "results.jsonl")}
        paths["driver.py"].write_text(DRIVER)
        paths["entries.json"].write_text(json.dumps(entries))
        paths["records.jsonl"].write_text("".join(json.dumps(r) + "\n" for r in records))
        done = subprocess.run([python, str(paths["driver.py"]), str(paths["entries.json"]), str(paths["records.jsonl"]),
                               str(paths["results.jsonl"]), PROMPT_MODEL, FC_MODEL], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"the BFCL driver failed:\n{done.stderr[-3000:]}")
        return [json.loads(line) for line in paths["results.jsonl"].read_text().splitlines()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bfcl-python", default="/tmp/bfcl-venv/bin/python", help="python of a venv with bfcl-eval")
    ap.add_argument("--data-dir", type=Path, default=DATA)
    ap.add_argument("--outputs", type=Path, help="real model outputs, JSON Lines {category, id, output}")
    ap.add_argument("--no-synthetic", action="store_true", help="only the --outputs")
    ap.add_argument("--show", type=int, default=8, help="mismatches to list")
    ap.add_argument("--fuzz", type=int, default=0, help="per AST entry, this many right answers with one random "
                    "character deleted, inserted or swapped")
    ap.add_argument("--seed", type=int, default=0, help="of the fuzz")
    args = ap.parse_args()
    if not Path(args.bfcl_python).exists():
        sys.exit(f"no BFCL venv at {args.bfcl_python}: make one as this script's docstring says, or pass --bfcl-python")
    n, same_prompt, same_tools, differing = prompt_agreement(args.bfcl_python, args.data_dir)
    print(f"what the model is sent, {n} entries: prompt-mode messages identical to BFCL's {same_prompt}, native "
          f"tools identical {same_tools}" + (f"; first differing: {differing[:5]}" if differing else ""))
    entries = load_entries(args.data_dir)
    records = []
    if not args.no_synthetic:
        for entry in entries.values():
            for label, output in synthetic(entry):
                records.append({"category": entry["category"], "id": entry["id"], "output": output, "label": label})
        rng = random.Random(args.seed)
        for entry in entries.values():
            if entry["ground_truth"] is not None:
                gold = format_calls(answer_calls(entry["ground_truth"], entry["prompt"]["function"]),
                                    entry["prompt"]["function"], entry["language"])
                records += [{"category": entry["category"], "id": entry["id"], "output": fuzzed(gold, rng),
                             "label": "fuzz"} for _ in range(args.fuzz)]
        for category, outputs in EDGE_CASES.items():
            entry = next(e for e in entries.values() if e["category"] == category)
            records += [{"category": category, "id": entry["id"], "output": o, "label": "edge"} for o in outputs]
    if args.outputs:
        for line in args.outputs.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                records.append({"category": r["category"], "id": r["id"], "output": r["output"], "label": "real"})
    for r in records:
        r["mode"] = "prompt" if isinstance(r["output"], str) else "native"
    skipped = [r for r in records if hostile(r)]
    to_run = [r for r in records if not hostile(r)]
    started = time.perf_counter()
    theirs = run_bfcl(args.bfcl_python, entries, to_run)
    bfcl_s = time.perf_counter() - started
    started = time.perf_counter()
    ours = []
    for r in to_run:
        entry = entries[f"{r['category']}/{r['id']}"]
        ours.append(check_entry(r["category"], entry["prompt"]["function"], entry["ground_truth"], r["output"],
                                language=entry["language"], underscore_to_dot=r["mode"] == "native"))
    evalmap_s = time.perf_counter() - started

    rows: dict[str, Counter] = defaultdict(Counter)
    mismatches, type_pairs, type_examples, crashes = [], Counter(), {}, []
    for r, mine, bfcl in zip(to_run, ours, theirs, strict=True):
        row = rows[r["category"] + (" (real)" if r["label"] == "real" else "")]
        row["outputs"] += 1
        if "crash" in bfcl:
            row["crashed"] += 1
            crashes.append((r, bfcl["crash"]))
            continue
        row["evalmap valid"] += mine.valid
        row["bfcl valid"] += bfcl["valid"]
        if mine.valid != bfcl["valid"]:
            row["valid mismatch"] += 1
            mismatches.append((r, mine, bfcl))
        elif not mine.valid and mine.error_type != bfcl["error_type"]:
            row["error_type mismatch"] += 1
            type_pairs[(mine.error_type, bfcl["error_type"])] += 1
            type_examples.setdefault((mine.error_type, bfcl["error_type"]), r)
    for r in skipped:
        rows[r["category"] + (" (real)" if r["label"] == "real" else "")]["not run"] += 1

    columns = ["outputs", "evalmap valid", "bfcl valid", "valid mismatch", "error_type mismatch", "crashed", "not run"]
    print(f"{'category':<32}" + "".join(f"{c:>21}" for c in columns))
    total = Counter()
    for name in sorted(rows):
        total.update(rows[name])
        print(f"{name:<32}" + "".join(f"{rows[name][c]:>21}" for c in columns))
    print(f"{'total':<32}" + "".join(f"{total[c]:>21}" for c in columns))
    print(f"\nscoring time: bfcl {bfcl_s:.1f} s (one process, with its start), evalmap {evalmap_s:.1f} s")
    for r, mine, bfcl in mismatches[: args.show]:
        print(f"\nMISMATCH {r['category']}/{r['id']} [{r['label']}] output={json.dumps(r['output'])[:300]}")
        print(f"  evalmap: valid={mine.valid} {mine.error_type} {mine.message[:200]}")
        print(f"  bfcl:    valid={bfcl['valid']} {bfcl['error_type']}")
    if type_pairs:
        print("\nerror_type pairs that differ (evalmap -> bfcl): count")
        for (a, b), n in type_pairs.most_common():
            example = type_examples[(a, b)]
            print(f"  {a or '-'} -> {b or '-'}: {n}, e.g. {example['category']}/{example['id']} [{example['label']}] "
                  f"{json.dumps(example['output'])[:150]}")
    for r, crash in crashes[: args.show]:
        print(f"\nBFCL CRASHED {r['category']}/{r['id']} [{r['label']}]: {crash}")
    return 1 if mismatches or differing else 0


if __name__ == "__main__":
    sys.exit(main())
