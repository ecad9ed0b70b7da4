"""Function-calling datasets (catalog task type `function_calling`), as data for their kind.

bfcl is the Berkeley Function Calling Leaderboard v4 data at ShishirPatil/gorilla 6ea57973c7a6
(`bfcl_eval/data`), scored by BFCL's AST checker (`tasks.function_calls`, docs/bfcl.md). Its
sections are the leaderboard's: non_live_ast is the unweighted mean of simple (itself the unweighted
mean of Python, Java, JavaScript), multiple, parallel and parallel_multiple; live_ast is the
count-weighted mean of the live AST categories; irrelevance the unweighted mean of irrelevance and
live_irrelevance; relevance is live_relevance. BFCL's overall weighs non_live, live, irrelevance,
multi_turn and agentic 10/10/10/30/40; evalmap scores no multi-turn or agentic category, so its
headline `single_turn_overall` is that formula over the first three (their unweighted mean) and is
not the leaderboard's Overall.
"""

from __future__ import annotations

from pathlib import Path

from evalmap.tasks.data import DataFormatError, DataSource, Record, Text, open_text, record_shape
from evalmap.tasks.kinds.function_calling import Category, FunctionCallingSpec, Section

DATA_VERSION = "BFCL_v4"  # the file prefix of the pinned data
DATA_COMMIT = "ShishirPatil/gorilla@6ea57973c7a6"

BFCL_CATEGORIES = (
    Category("simple_python"),
    Category("simple_java", "java"),
    Category("simple_javascript", "javascript"),
    Category("multiple"),
    Category("parallel"),
    Category("parallel_multiple"),
    Category("irrelevance"),
    Category("live_simple"),
    Category("live_multiple"),
    Category("live_parallel"),
    Category("live_parallel_multiple"),
    Category("live_irrelevance"),
    Category("live_relevance"),
)
_GZIPPED = {"live_irrelevance", "live_multiple"}

_NOT_EXECUTED = (
    "BFCL scores it by executing the calls against its simulated APIs (file system, trading, travel, "
    "vehicle, ... Python classes in bfcl-eval) and comparing their state turn by turn; evalmap has not "
    "implemented those APIs, so it is listed, not scored."
)
BFCL_NOT_SCORED = {
    "multi_turn": _NOT_EXECUTED,
    "multi_turn_base": _NOT_EXECUTED,
    "multi_turn_long_context": _NOT_EXECUTED,
    "multi_turn_miss_func": _NOT_EXECUTED,
    "multi_turn_miss_param": _NOT_EXECUTED,
    "agentic": "memory and web_search need BFCL's memory backends and a live web search (SerpAPI), which "
    "an offline evaluation cannot reproduce; listed, not scored.",
    "format_sensitivity": "it is a list of prompt-format variations over other categories, not items.",
}


def _file(category: str) -> str:
    return f"{DATA_VERSION}_{category}.json" + (".gz" if category in _GZIPPED else "")


def _files() -> tuple[str, ...]:
    questions = tuple(_file(c.name) for c in BFCL_CATEGORIES)
    answers = tuple(f"possible_answer/{DATA_VERSION}_{c.name}.json" for c in BFCL_CATEGORIES if c.has_answers)
    return questions + answers


def _json_lines(path: Path) -> list[Record]:
    import json

    records = []
    with open_text(path) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataFormatError(
                    f"{path} line {number} is not JSON ({exc.msg} at column {exc.colno}); fix that line or "
                    "remove it (BFCL's .json files hold one JSON object per line)."
                ) from None
    return records


def _read_bfcl(paths: list[Path]) -> list[Record]:
    """Each category's entries joined by id with its possible answers (from possible_answer/)."""
    by_name = {(p.parent.name == "possible_answer", p.name): p for p in paths}
    records = []
    for category in BFCL_CATEGORIES:
        answers = {}
        if category.has_answers:
            answer_path = by_name[(True, f"{DATA_VERSION}_{category.name}.json")]
            answers = {a["id"]: a["ground_truth"] for a in _json_lines(answer_path)}
        for entry in _json_lines(by_name[(False, _file(category.name))]):
            if category.has_answers and entry.get("id") not in answers:
                raise DataFormatError(
                    f"possible_answer/{DATA_VERSION}_{category.name}.json has no answer for {entry.get('id')!r}; "
                    "restore the file from the pinned BFCL data."
                )
            records.append({**entry, "_category": category.name, "_answer": answers.get(entry.get("id"))})
    return records


def _first_turn(record: Record) -> str | None:
    turn = record["question"]
    if not turn:
        return "has no first turn of messages"
    if any(not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str)
           for m in turn):  # fmt: skip
        return "has a message without a role and text content"
    if record["category"] not in ("irrelevance", "live_irrelevance", "live_relevance") and not record["ground_truth"]:
        return "has no possible answer"
    return None


@record_shape({"id": Text, "category": Text, "question": list, "function": list}, _first_turn)
def _bfcl_records(records: list[Record], origin: str) -> list[Record]:
    """BFCL entries as the kind reads them: id, category, the first turn's messages, the function docs
    and the possible answer (None in relevance categories)."""
    return [
        {
            "id": r["id"],
            "category": r["_category"],
            "question": r["question"][0] if r["question"] and isinstance(r["question"][0], list) else [],
            "function": r["function"],
            "ground_truth": r["_answer"],
        }
        for r in records
    ]


NON_LIVE_AST = Section(
    "non_live_ast",
    (Section("simple", ("simple_python", "simple_java", "simple_javascript")), "multiple", "parallel",
     "parallel_multiple"),
)  # fmt: skip
LIVE_AST = Section("live_ast", ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple"), "micro")
IRRELEVANCE = Section("irrelevance", ("irrelevance", "live_irrelevance"))

BFCL = FunctionCallingSpec(
    dataset_id="bfcl",
    source=DataSource(
        name="v4", local_files=_files(), reader=_read_bfcl, normalize=_bfcl_records, hub_file_repo=True
    ),
    categories=BFCL_CATEGORIES,
    data_version=f"{DATA_VERSION} ({DATA_COMMIT})",
    sections=(
        Section("single_turn_overall", (NON_LIVE_AST, LIVE_AST, IRRELEVANCE)),
        NON_LIVE_AST,
        LIVE_AST,
        IRRELEVANCE,
        Section("relevance", ("live_relevance",)),
    ),
    not_scored=BFCL_NOT_SCORED,
    variants={
        "non_live_ast": ("simple_python", "simple_java", "simple_javascript", "multiple", "parallel",
                         "parallel_multiple"),
        "live_ast": ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple"),
        "relevance": ("irrelevance", "live_irrelevance", "live_relevance"),
    },  # fmt: skip
)
