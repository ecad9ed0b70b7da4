"""Execute code: the model's program is run against the dataset's hidden tests in the sandbox.

A `CodeSpec` is one dataset: its prompt (a record field, or a function of the record and the
few-shot records), the chat instruction, stops, and how its tests run (`tests_format`):
"program" (humaneval: prompt + completion + test + `check(entry_point)` as one program),
"asserts" (mbpp: each assert separately, after the setup code), "unittest" (bigcodebench: the
task's TestCase classes, skips count as passed) or "io" (codecontests, apps: stdin/stdout or
call-based cases per record). The sandbox runs them (`evalmap.sandbox.run_tests`: per-test
outcomes, a pass only on the harness's final signal, time limits scaled by the canonical
solution's runtime); this kind builds the requests, turns an answer into a program (completion
appended to the prompt, the chat answer's code block, bigcodebench's sanitizer) and reports
pass@k over n samples per item, the test-case pass rate and per-group scores where the spec
asks for them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from evalmap.backends.base import Generation, Request, Response
from evalmap.catalog.schema import Dataset
from evalmap.errors import EvalmapError
from evalmap.metrics.passk import ks_for, pass_at_k
from evalmap.metrics.stats import Score
from evalmap.sandbox import Limits, Tests, run_tests
from evalmap.tasks.base import Item, SampleResult, TaskConfig, deterministic_subset, prompt_hash
from evalmap.tasks.data import DataSource, LazyRecords
from evalmap.tasks.kinds.common import SpecBase, generations, mean_scores, resolve_variant
from evalmap.tasks.sanitize import calibrated, sanitize

TEST_CASE_RATE = "test_case_pass_rate"


@dataclass(frozen=True)
class CodeSpec(SpecBase):
    """A program-synthesis dataset: source, prompts, stops, and how its tests run.

    Normalized records carry `task_id`, the prompt fields, `canonical` (reference code or None;
    humaneval: `canonical_solution`) and what `tests_format` needs (`tests`, `setup`, `test`,
    `fn_name`, `time_limit_s`, ...). `metrics`: pass@1, plus `test_case_pass_rate` where a
    problem has many tests; pass@10 / pass@100 are added when `--n-samples` can estimate them.
    """

    dataset_id: str
    source: DataSource
    tests_format: Literal["program", "asserts", "unittest", "io"] = "program"
    prompt_field: str = "prompt"
    prompt_fn: Callable[[dict[str, Any], list[dict[str, Any]]], str] | None = None  # (record, shots) -> prompt
    instruct_template: str = ""  # the chat instruction, formatted with the prompt (without `instruct_fn`)
    instruct_fn: Callable[[dict[str, Any]], str] | None = None
    fewshot_source: DataSource | None = None
    fewshot_ids: tuple[int, ...] = ()  # the fixed shots `fewshot_source` holds (mbpp: task ids 2, 3, 4)
    variants: Mapping[str, DataSource] = field(default_factory=dict)
    stop: tuple[str, ...] = ()
    chat_stop: tuple[str, ...] = ()
    max_tokens: int = 512
    timeout_s: float = 10.0  # the whole program ("program") or the load of the module
    test_timeout_s: float = 10.0  # one test
    max_wall_s: float = 120.0  # one sample, all tests together
    memory_mb: int = 1024
    chat_default: bool = False
    metrics: tuple[str, ...] = ("pass@1",)
    group_field: str | None = None  # per-group metrics, e.g. apps difficulty
    group_values: tuple[str, ...] = ()  # the groups `group_field` takes
    headline: str | None = None

    def build(self, dataset: Dataset, config: TaskConfig) -> CodeTask:
        return CodeTask(self, dataset, config)


@dataclass
class CodeTask:
    spec: CodeSpec
    dataset: Dataset
    config: TaskConfig
    dataset_id: str = field(init=False)
    _records: LazyRecords = field(init=False, repr=False)
    _shots: LazyRecords | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self.dataset_id = self.dataset.id
        if self.config.mode not in (None, "generate", "execute"):
            raise EvalmapError(
                f"{self.dataset_id} is scored by running generated code; drop --mode {self.config.mode}."
            )
        fixed = len(self.spec.fewshot_ids)
        if self.config.num_fewshot not in (None, fixed):
            raise EvalmapError(f"{self.dataset_id} uses {fixed} shots; drop --num-fewshot {self.config.num_fewshot}.")
        dataset, source = resolve_variant(self.dataset, self.spec.source, self.spec.variants, self.config)
        self._records = LazyRecords(dataset, self.config.data_dir, source)
        if self.spec.fewshot_source is not None:
            self._shots = LazyRecords(self.dataset, self.config.data_dir, self.spec.fewshot_source)

    @property
    def chat(self) -> bool:
        return self.spec.chat_default if self.config.chat is None else self.config.chat

    @property
    def ks(self) -> list[int]:
        """pass@k reported: k in {1, 10, 100} that n_samples can estimate."""
        return ks_for(max(1, self.config.n_samples))

    @property
    def test_case_rate(self) -> bool:
        return TEST_CASE_RATE in self.spec.metrics

    @property
    def metric_names(self) -> list[str]:
        names = [f"pass@{k}" for k in self.ks]
        if self.test_case_rate:
            names.append(TEST_CASE_RATE)
        for group in self.spec.group_values:
            names += [f"pass@1:{group}"] + ([f"{TEST_CASE_RATE}:{group}"] if self.test_case_rate else [])
        return names

    def items(self, limit: int | None = None, seed: int = 1234) -> list[Item]:
        all_items = [Item(id=str(r["task_id"]), data=r) for r in self._records.get()]
        return deterministic_subset(all_items, limit, seed)

    # -- prompts -----------------------------------------------------------------

    def prompt(self, item: Item) -> str:
        if self.spec.prompt_fn is not None:
            return self.spec.prompt_fn(item.data, self._shots.get() if self._shots else [])
        return item.data[self.spec.prompt_field]

    def messages(self, item: Item) -> tuple[tuple[str, str], ...]:
        if self.spec.instruct_fn is not None:
            return (("user", self.spec.instruct_fn(item.data)),)
        return (("user", self.spec.instruct_template.format(prompt=self.prompt(item))),)

    def requests(self, item: Item) -> list[Request]:
        if self.chat:
            body: dict[str, Any] = dict(messages=self.messages(item), chat=True, stop=self.spec.chat_stop)
        else:
            body = dict(prompt=self.prompt(item), stop=self.spec.stop)
        return generations(self.config, self.spec.max_tokens, **body)

    # -- scoring -----------------------------------------------------------------

    def code(self, item: Item, response_text: str, chat: bool | None = None) -> str:
        """The model's program (before any tests): completion appended to the prompt, or the chat answer's code."""
        data = item.data
        chat = self.chat if chat is None else chat
        fmt = self.spec.tests_format
        if fmt == "program":
            prompt = self.prompt(item)
            if chat:
                code = extract_code(response_text)
                return prompt + "\n" + code if f"def {data['entry_point']}" in code else prompt + code
            return prompt + response_text
        if fmt == "unittest":  # bigcodebench's sanitized-calibrated solution
            if chat:
                # The reference's calibration for an answer that starts inside the function body.
                fenced = response_text.replace("```python\n    ", "```python\n" + data["complete_prompt"] + "    ")
                solution = extract_code(fenced)
            else:
                solution = data["complete_prompt"] + "\n" + response_text
            return calibrated(data["code_prompt"], sanitize(solution, data["entry_point"]))
        if chat:
            return extract_code(response_text)
        return _strip_markers(response_text)

    def program(self, item: Item, response_text: str, chat: bool | None = None) -> str:
        """The program the sandbox runs: humaneval's adds its tests and check call to the code."""
        code = self.code(item, response_text, chat)
        if self.spec.tests_format == "program":
            return code + "\n" + item.data["test"] + f"\ncheck({item.data['entry_point']})\n"
        return code

    def tests(self, item: Item) -> Tests:
        """The item's tests in the sandbox's terms, with the spec's time limits."""
        data, spec = item.data, self.spec
        fmt = spec.tests_format
        if fmt == "program":
            return Tests("program", load_s=spec.timeout_s, test_s=spec.test_timeout_s)
        test_s = max(spec.test_timeout_s, 2.0 * float(data.get("time_limit_s") or 0.0))
        if fmt == "asserts":
            setup = data.get("setup") or ""
            cases, code = tuple(data["tests"]), ("\n" + setup if setup else "")
            return Tests("asserts", cases, code, load_s=spec.timeout_s, test_s=test_s)
        if fmt == "unittest":
            return Tests("unittest", code="\n\n" + data["test"], load_s=spec.timeout_s, test_s=test_s)
        call = bool(data.get("fn_name"))
        return Tests("call" if call else "stdio", tuple(data["tests"]), fn_name=data.get("fn_name") or None,
                     load_s=spec.timeout_s, test_s=test_s)  # fmt: skip

    def reference(self, item: Item) -> str | None:
        """The canonical solution as a program (its runtime scales the time limits), if the record has one."""
        canonical = item.data.get("canonical", item.data.get("canonical_solution"))
        if canonical is None:
            return None
        return self.program(item, canonical, chat=False) if self.spec.tests_format == "program" else canonical

    def check(self, item: Item, program: str, scale: bool = True) -> dict[str, Any]:
        """Run `program` against the item's tests: one run's outcome with per-test details."""
        # Room for one record per test (codecontests has hundreds); a flood beyond it fails the run.
        limits = Limits(wall_s=self.spec.max_wall_s, memory_mb=self.spec.memory_mb, max_output_bytes=4 << 20)
        reference = self.reference(item) if scale else None
        return run_tests(program, self.tests(item), limits, reference).as_dict()

    def score(self, item: Item, responses: list[Response]) -> SampleResult:
        runs = []
        for response in responses:
            text = response.text if isinstance(response, Generation) else ""
            run = self.check(item, self.program(item, text))
            run["code"] = extract_code(text) if self.chat else text
            runs.append(run)
        n, c = len(runs), sum(r["passed"] for r in runs)
        metrics = {f"pass@{k}": pass_at_k(n, c, k) for k in self.ks if k <= n}
        if self.test_case_rate:
            metrics[TEST_CASE_RATE] = sum(r["test_pass_rate"] for r in runs) / n if n else 0.0
        group = item.data.get(self.spec.group_field) if self.spec.group_field else None
        if group:
            metrics[f"pass@1:{group}"] = metrics["pass@1"]
            if self.test_case_rate:
                metrics[f"{TEST_CASE_RATE}:{group}"] = metrics[TEST_CASE_RATE]
        first = runs[0] if runs else {}
        keys = ("status", "error_type", "stderr", "wall_s", "tests", "tests_passed", "tests_total", "scaled_limit_s")
        details: dict[str, Any] = {key: first[key] for key in keys if key in first}
        details.update(n=n, passed=c)
        if n > 1:
            details["runs"] = [
                {k: r[k] for k in ("status", "error_type", "wall_s", "tests_passed", "tests_total") if k in r}
                for r in runs
            ]
        return SampleResult(metrics=metrics, extracted=first.get("code"), target=self._target(item), details=details)

    def _target(self, item: Item) -> str:
        data = item.data
        fmt = self.spec.tests_format
        if fmt == "program":
            return f"check({data['entry_point']})"
        if fmt == "asserts":
            return "\n".join(data["tests"])
        if fmt == "unittest":
            return "TestCases"
        return f"{len(data['tests'])} tests" + (f" calling {data['fn_name']}" if data.get("fn_name") else "")

    def aggregate(self, samples: list[SampleResult]) -> list[Score]:
        names = [n for n in self.metric_names if ":" not in n or any(n in s.metrics for s in samples)]
        return mean_scores(samples, names)

    def prompt_hash(self) -> str:
        return prompt_hash(self)


_STRIP = re.compile(r"^\s*\[BEGIN\]\s*\n?|\[DONE\].*\Z", re.S)


def _strip_markers(text: str) -> str:
    """A completion without the few-shot format's markers, and without code fences when it has them."""
    text = _STRIP.sub("", text)
    return extract_code(text) if "```" in text else text


_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:\n[ \t]*```|\Z)", re.S)
_CODE_START = re.compile(r"^(def |class |import |from |async def |@|#|if __name__|[ \t]+\S)")


def extract_code(text: str) -> str:
    """The code in a chat answer: the first fenced block that defines something (else the
    first fenced block); without fences, the text from its first line that looks like code."""
    if not isinstance(text, str):
        return ""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    if blocks:
        for lang, body in blocks:
            if lang in ("", "python", "py", "python3") and re.search(r"^\s*def ", body, re.M):
                return body.rstrip() + "\n"
        return blocks[0][1].rstrip() + "\n"
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if _CODE_START.match(line):
            return "\n".join(lines[i:]).rstrip() + "\n"
    return text
