"""Function calling as the Berkeley Function Calling Leaderboard (BFCL) asks and scores it.

An item is one BFCL entry: the user's first turn (chat messages), the function docs the model may
call and, in call categories, the possible answers. Two ways to put the functions before the model,
chosen with `--mode` and stored with the run (BFCL lists them as two model entries, "(Prompt)" and
"(FC)"):

- `prompt` (default; works on any chat model): BFCL's default system prompt
  (`ret_fmt=python&tool_call_tag=False&func_doc_fmt=json&prompt_fmt=plaintext&style=classic`) with
  the function docs as indented JSON; the answer is Python call syntax `[f(a=1), g(b=2)]`.
- `native`: the docs go as OpenAI `tools` ("." in names becomes "_", as OpenAI-style names must),
  to a server as `tools` (its answer's `tool_calls`), to a local engine through the chat template's
  `tools=` (its text answer's JSON tool calls). A local model whose template has no tool support is
  refused in one sentence before it loads.

Both send the docs with BFCL's language hints (" Note that the provided function is in Java 8 SDK
syntax.", Java/JavaScript parameters typed as strings), and the checker reads the docs without them,
as BFCL's generation and evaluation do. Scoring is `tasks.function_calls.check_entry`.

Why one mode per run rather than per model: a run's task is built once per dataset and shared by all
of its models, so an automatic choice would put two prompt formats in one leaderboard column.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from evalmap.backends.base import Generation, Request, Response
from evalmap.catalog.schema import Dataset
from evalmap.errors import EvalmapError
from evalmap.metrics.aggregate import proportion_ci
from evalmap.metrics.stats import Score, empty_score, mean_score, sample_stderr
from evalmap.tasks.base import Item, SampleResult, TaskConfig, deterministic_subset, prompt_hash
from evalmap.tasks.data import DataSource, LazyRecords
from evalmap.tasks.function_calls import (
    CallParseError,
    check_entry,
    decode_text_tool_calls,
    openai_tools,
)
from evalmap.tasks.kinds.common import SpecBase, generations, subgroup_scores

MODES = ("prompt", "native")
ACCURACY = "accuracy"

# BFCL's default system prompt for prompt-mode chat models (constants/default_prompts.py with the
# default format); "{persona}{task}" is joined without a space there too.
_SYSTEM_PROMPT = (
    "You are an expert in composing functions."
    "You are given a question and a set of possible functions. Based on the question, you will need to make "
    "one or more function/tool calls to achieve the purpose. If none of the functions can be used, point it "
    "out. If the given question lacks the parameters required by the function, also point it out.\n\n"
    "You should only return the function calls in your response.\n\nIf you decide to invoke any of the "
    "function(s), you MUST put it in the format of [func_name1(params_name1=params_value1, "
    "params_name2=params_value2...), func_name2(params)].  You SHOULD NOT include any other text in the "
    "response.\n\n"
    "At each turn, you should try your best to complete the tasks requested by the user within the current "
    "turn. Continue to output functions to call until you have fulfilled the user's request to the best of "
    "your ability. Once you have no more functions to call, the system will consider the current turn "
    "complete and proceed to the next turn or task.\n\n"
    "Here is a list of functions in json format that you can invoke.\n{functions}\n"
)


@dataclass(frozen=True)
class Category:
    """One BFCL category: its question file (and possible-answer file), and the call syntax of its answers."""

    name: str
    language: str = "python"  # python | java | javascript

    @property
    def has_answers(self) -> bool:
        return "relevance" not in self.name  # irrelevance, live_irrelevance, live_relevance have none


@dataclass(frozen=True)
class Section:
    """A leaderboard column made of categories: `macro` averages them unweighted, `micro` by count."""

    name: str
    parts: tuple[str | Section, ...]
    weighting: str = "macro"


@dataclass(frozen=True)
class FunctionCallingSpec(SpecBase):
    """A function-calling benchmark: its categories, the leaderboard sections built from them, the
    categories it does not score (with the reason shown to users), and subsets runnable as variants."""

    dataset_id: str
    source: DataSource
    categories: tuple[Category, ...]
    sections: tuple[Section, ...]  # the first is the headline
    data_version: str  # the pinned data, recorded with every sample
    not_scored: Mapping[str, str] = field(default_factory=dict)  # category or variant -> why
    variants: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # variant -> its categories
    max_tokens: int = 1024
    headline: str | None = None

    @property
    def metric_names(self) -> tuple[str, ...]:
        return (*(s.name for s in self.sections), ACCURACY)

    def build(self, dataset: Dataset, config: TaskConfig) -> FunctionCallingTask:
        return FunctionCallingTask(self, dataset, config)


@dataclass
class FunctionCallingTask:
    spec: FunctionCallingSpec
    dataset: Dataset
    config: TaskConfig
    dataset_id: str = field(init=False)
    categories: tuple[Category, ...] = field(init=False)
    _records: LazyRecords = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.dataset_id = self.dataset.id
        if self.mode not in MODES:
            raise EvalmapError(f"--mode must be prompt or native for {self.dataset_id} (got {self.mode}).")
        if self.config.chat is False:
            raise EvalmapError(f"{self.dataset_id} is asked as a chat (system prompt or tools); drop --no-chat.")
        self.categories = self._chosen_categories()
        self._records = LazyRecords(self.dataset, self.config.data_dir, self.spec.source)

    def _chosen_categories(self) -> tuple[Category, ...]:
        name = self.config.variant
        if name is None or name == "default":
            return self.spec.categories
        if name in self.spec.not_scored:
            raise EvalmapError(f"{self.dataset_id}:{name} is not scored by evalmap: {self.spec.not_scored[name]}")
        if name not in self.spec.variants:
            known = ", ".join(sorted(self.spec.variants))
            raise EvalmapError(f"{self.dataset_id} has no variant {name!r} (variants with a task: {known}).")
        chosen = set(self.spec.variants[name])
        return tuple(c for c in self.spec.categories if c.name in chosen)

    @property
    def mode(self) -> str:
        return self.config.mode or MODES[0]

    @property
    def metric_names(self) -> list[str]:
        return list(self.spec.metric_names)

    def items(self, limit: int | None = None, seed: int = 1234) -> list[Item]:
        """Every entry of the chosen categories; `limit` is spread evenly over the categories (the
        first `limit % k` in category order get one more) so a small run still has each of them."""
        wanted = {c.name for c in self.categories}
        by_category: dict[str, list[Item]] = {c.name: [] for c in self.categories}
        for record in self._records.get():
            if record["category"] in wanted:
                by_category[record["category"]].append(Item(id=record["id"], data=record))
        if limit is None:
            return [item for c in self.categories for item in by_category[c.name]]
        k = len(self.categories)
        chosen: list[Item] = []
        for i, c in enumerate(self.categories):
            share = limit // k + (1 if i < limit % k else 0)
            chosen += deterministic_subset(by_category[c.name], share, seed)
        return chosen

    # -- requests ------------------------------------------------------------------

    def _category(self, item: Item) -> Category:
        return next(c for c in self.categories if c.name == item.data["category"])

    def requests(self, item: Item) -> list[Request]:
        category = self._category(item)
        docs = hinted_docs(item.data["function"], category.language)
        turn = [(m["role"], m["content"]) for m in item.data["question"]]
        tools = ""
        if self.mode == "native":
            tools = json.dumps(openai_tools(docs), sort_keys=True)
        else:
            system = _SYSTEM_PROMPT.replace("{functions}", json.dumps(docs, indent=4))
            if turn and turn[0][0] == "system":  # BFCL: the entry's own system prompt follows BFCL's
                turn[0] = ("system", system + "\n\n" + turn[0][1])
            else:
                turn.insert(0, ("system", system))
        return generations(self.config, self.spec.max_tokens, messages=tuple(turn), chat=True, tools=tools)

    # -- scoring -------------------------------------------------------------------

    def output(self, response: Response) -> str | list[dict]:
        """What the checker reads: prompt-mode text, or native tool calls (a server's `tool_calls`, else
        the JSON tool calls a chat template made the model write; text with none is an abstention)."""
        if not isinstance(response, Generation):
            return ""
        if self.mode == "prompt":
            return response.text
        if response.tool_calls is not None:
            return response.tool_calls
        try:
            return decode_text_tool_calls(response.text)
        except CallParseError:
            return []

    def score(self, item: Item, responses: list[Response]) -> SampleResult:
        category = self._category(item)
        verdicts = []
        outputs = [self.output(r) for r in responses]
        for output in outputs:
            verdicts.append(
                check_entry(
                    category.name,
                    item.data["function"],
                    item.data.get("ground_truth"),
                    output,
                    language=category.language,
                    underscore_to_dot=self.mode == "native",
                )
            )
        first = verdicts[0]
        details: dict = {
            "category": category.name,
            "mode": self.mode,
            "data_version": self.spec.data_version,
            "valid": first.valid,
            "reason": first.reason,
            "error_type": first.error_type,
            "message": first.message,
            "output": outputs[0],
            "groups": {"category": category.name},
        }
        if len(verdicts) > 1:
            details["samples"] = [{"valid": v.valid, "reason": v.reason} for v in verdicts]
        value = sum(v.valid for v in verdicts) / len(verdicts)
        return SampleResult(
            metrics={ACCURACY: float(value)},
            extracted=first.reason or "correct",
            target=item.data.get("ground_truth") if category.has_answers else "no call",
            details=details,
        )

    def aggregate(self, samples: list[SampleResult]) -> list[Score]:
        """The leaderboard's sections, the micro accuracy over every sample, then accuracy per category
        and their unweighted mean."""
        per = subgroup_scores(samples, ACCURACY, "category")
        values: dict[str, list[float]] = {}
        for s in samples:
            if ACCURACY in s.metrics:
                values.setdefault(s.details["groups"]["category"], []).append(s.metrics[ACCURACY])
        every = [v for vs in values.values() for v in vs]
        return [*(section_score(s, values) for s in self.spec.sections), mean_score(ACCURACY, every), *per]

    def prompt_hash(self) -> str:
        return prompt_hash(self)


def _weights(section: Section, values: Mapping[str, list[float]]) -> dict[str, float]:
    """Each category's weight in a section's value (they add up to 1; categories without samples drop out)."""
    parts = []
    for part in section.parts:
        inner = _weights(part, values) if isinstance(part, Section) else ({part: 1.0} if values.get(part) else {})
        if inner:
            parts.append(inner)
    if not parts:
        return {}
    if section.weighting == "micro":
        total = sum(len(values[c]) for inner in parts for c in inner)
        return {c: len(values[c]) / total for inner in parts for c in inner}
    return {c: w / len(parts) for inner in parts for c, w in inner.items()}


def section_score(section: Section, values: Mapping[str, list[float]]) -> Score:
    """A leaderboard section: the weighted mean of its category means, stderr sqrt(sum w_c^2 se_c^2) over
    independent categories. A category of one sample has no spread of its own (a small --samples run);
    its se is then the section's pooled sample sd over sqrt(n_c), as `common.macro_score` does."""
    weights = _weights(section, values)
    if not weights:
        return empty_score(section.name, "normal-sections")
    pooled = [v for c in weights for v in values[c]]
    sd_all = sample_stderr(pooled) * math.sqrt(len(pooled)) if len(pooled) > 1 else float("nan")
    value, variance = 0.0, 0.0
    for c, w in weights.items():
        vs = values[c]
        value += w * math.fsum(vs) / len(vs)
        se = sample_stderr(vs) if len(vs) > 1 else sd_all / math.sqrt(len(vs))
        variance += (w * se) ** 2
    stderr = math.sqrt(variance)
    low, high = proportion_ci(value, stderr, len(pooled)) if not math.isnan(stderr) else (float("nan"),) * 2
    return Score(section.name, value, stderr, low, high, len(pooled), "normal-sections")


_HINTS = {
    "java": " Note that the provided function is in Java 8 SDK syntax.",
    "javascript": " Note that the provided function is in JavaScript syntax.",
    "python": " Note that the provided function is in Python 3 syntax.",
}
_OBJECT_WORD = {"java": "Java", "javascript": "JavaScript"}


def hinted_docs(functions: list[dict], language: str) -> list[dict]:
    """The function docs as BFCL shows them to the model: a language note on each description and, for
    Java and JavaScript, every parameter typed as a string whose description says its real type."""
    docs = copy.deepcopy(functions)
    for doc in docs:
        doc["description"] = doc.get("description", "") + _HINTS[language]
        if language == "python":
            continue
        word = _OBJECT_WORD[language]
        for value in doc.get("parameters", {}).get("properties", {}).values():
            kind = value.get("type")
            if kind == "any":
                value["description"] += f" This parameter can be of any type of {word} object in string representation."
            else:
                value["description"] += f" This is {word} {kind} type parameter in string representation."
            lists = ("ArrayList", "Array") if language == "java" else ("array",)
            if kind in lists:
                value["description"] += (
                    f" The list elements are of type {value['items']['type']}; they are not in string representation."
                )
                del value["items"]
            if language == "javascript" and kind == "dict" and "properties" in value:
                value["description"] += (
                    " The dictionary entries have the following schema; they are not in string representation. "
                    + json.dumps(value["properties"])
                )
                del value["properties"]
            value["type"] = "string"
    return docs
