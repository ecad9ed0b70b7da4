"""Code generation datasets scored by running the model's program against hidden tests.

humaneval follows the Codex paper (Chen et al., 2021) and openai/human-eval: the prompt
is the problem's `prompt` (signature + docstring) for completion, greedy decoding with
the paper's stop sequences, and the program `prompt + completion + "\\n" + test +
"\\ncheck(entry_point)\\n"` is run in evalmap's sandbox; pass@k over n samples per item.
In chat mode the model gets an instruction with the prompt in a code fence and its
code is taken from the fenced block (or from after any leading prose).

mbpp follows the MBPP paper (Austin et al., 2021) and lm-eval: 3 shots (task ids 2, 3, 4)
in the `[BEGIN]` / `[DONE]` format, stop at `[DONE]`; the code plus `test_setup_code` is
loaded and each of the 3 asserts runs separately, so a sample's details say which passed.
bigcodebench (Zhuo et al., 2024): Complete mode prompts `complete_prompt` (completion),
Instruct mode (chat) prompts `instruct_prompt`; the answer is sanitized and calibrated as
bigcodebench's leaderboard does (`tasks.sanitize`), then the program plus the task's unittest
`TestCases` run as in bigcodebench's own checker (module `__test__`, skips count as passed).
codecontests and apps (in `code_contests`) run stdin/stdout or call-based tests.

Every execution but humaneval's goes through `evalmap.sandbox.harness`: each test has its
own time limit and its outcome (passed, failed assertion, timeout, error type, message)
is kept in the sample's details. Variants (mbpp `sanitized`, bigcodebench `hard`, apps
difficulties) are chosen with `TaskConfig.variant`: the catalog's variant source replaces
the dataset's hub source, and the spec's variant `DataSource` says how to read it locally.

Time limits scale with the reference solution where one is known (as evalplus does): a
sample that times out is run again with max(floor, REFERENCE_FACTOR x the canonical
solution's wall time) when that is larger than the floor. The reference is measured once
per machine (only when some sample times out) and cached in a JSON file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalmap.backends.base import Generation, GenerationRequest, Request, Response
from evalmap.catalog.schema import Dataset
from evalmap.errors import EvalmapError
from evalmap.metrics.stats import Score
from evalmap.tasks.base import Item, SampleResult, TaskConfig, deterministic_subset
from evalmap.tasks.data import DataSource, LazyRecords, Text, mean_scores, record_shape, settings_hash
from evalmap.tasks.sanitize import calibrated, sanitize

STDERR_TAIL = 1000
REFERENCE_FACTOR = 4.0  # evalplus's gt_time_limit_factor
RUNTIME_CACHE_ENV = "EVALMAP_RUNTIME_CACHE"


@dataclass(frozen=True)
class CodeSpec:
    """A program-synthesis dataset: source, prompts, stops, and how its tests run.

    kind: "humaneval" (one program: prompt + completion + test + check call), "asserts"
    (mbpp), "unittest" (bigcodebench), "io" (codecontests/apps: stdin/stdout or call-based).
    Normalized records carry `task_id`, the prompt fields, `canonical` (reference code or
    None) and what the kind needs (`tests`, `setup`, `test`, `fn_name`, ...).
    """

    dataset_id: str
    source: DataSource
    kind: str = "humaneval"
    prompt_field: str = "prompt"
    prompt_fn: Callable[[dict[str, Any], list[dict[str, Any]]], str] | None = None  # (record, shots) -> prompt
    instruct_template: str = ""
    instruct_fn: Callable[[dict[str, Any]], str] | None = None
    fewshot_source: DataSource | None = None
    variants: Mapping[str, DataSource] = field(default_factory=dict)
    stop: tuple[str, ...] = ()
    chat_stop: tuple[str, ...] = ()
    max_tokens: int = 512
    timeout_s: float = 10.0  # the whole program (humaneval) or the load of the module
    test_timeout_s: float = 10.0  # one test
    max_wall_s: float = 120.0  # one sample, all tests together
    memory_mb: int = 1024
    chat_default: bool = False
    test_case_rate: bool = False  # also report test_case_pass_rate (codecontests, apps)
    group_field: str | None = None  # per-group metrics, e.g. apps difficulty
    template_version: str = "1"
    headline: str = "pass@1"  # the metric that stands for the dataset in group averages

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
        fixed = len(self.spec.fewshot_source and _SHOT_IDS.get(self.dataset_id, ()) or ())
        if self.config.num_fewshot not in (None, fixed) and not (self.config.num_fewshot == 0 and fixed == 0):
            raise EvalmapError(f"{self.dataset_id} uses {fixed} shots; drop --num-fewshot {self.config.num_fewshot}.")
        source, dataset = self.spec.source, self.dataset
        variant = self.config.variant
        if variant:
            if variant not in self.spec.variants:
                known = ", ".join(self.spec.variants) or "none"
                raise EvalmapError(f"{self.dataset_id} has no variant {variant!r}; known variants: {known}.")
            source = self.spec.variants[variant]
            entry = next((v for v in self.dataset.variants if v.name == variant), None)
            if entry is not None and entry.source is not None:
                dataset = self.dataset.model_copy(update={"source": entry.source})
        self._records = LazyRecords(dataset, self.config.data_dir, source)
        if self.spec.fewshot_source is not None:
            self._shots = LazyRecords(self.dataset, self.config.data_dir, self.spec.fewshot_source)

    @property
    def chat(self) -> bool:
        return self.spec.chat_default if self.config.chat is None else self.config.chat

    @property
    def ks(self) -> list[int]:
        """pass@k reported: k in {1, 10, 100} that n_samples can estimate."""
        return [k for k in (1, 10, 100) if k <= max(1, self.config.n_samples)]

    @property
    def metric_names(self) -> list[str]:
        names = [f"pass@{k}" for k in self.ks]
        if self.spec.test_case_rate:
            names.append("test_case_pass_rate")
        for group in _GROUPS.get(self.dataset_id, ()):
            names += [f"pass@1:{group}"] + (["test_case_pass_rate:" + group] if self.spec.test_case_rate else [])
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
        cfg = self.config
        if self.chat:
            body: dict[str, Any] = dict(messages=self.messages(item), chat=True, stop=self.spec.chat_stop)
        else:
            body = dict(prompt=self.prompt(item), stop=self.spec.stop)
        return [
            GenerationRequest(
                **body,
                max_tokens=cfg.max_tokens or self.spec.max_tokens,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                seed=cfg.seed + i,
            )
            for i in range(max(1, cfg.n_samples))
        ]

    # -- scoring -----------------------------------------------------------------

    def code(self, item: Item, response_text: str) -> str:
        """The model's program (before any tests): completion appended to the prompt, or the chat answer's code."""
        data = item.data
        kind = self.spec.kind
        if kind == "humaneval":
            prompt = self.prompt(item)
            if self.chat:
                code = extract_code(response_text)
                return prompt + "\n" + code if f"def {data['entry_point']}" in code else prompt + code
            return prompt + response_text
        if kind == "unittest":  # bigcodebench's sanitized-calibrated solution
            if self.chat:
                # The reference's calibration for an answer that starts inside the function body.
                fenced = response_text.replace("```python\n    ", "```python\n" + data["complete_prompt"] + "    ")
                solution = extract_code(fenced)
            else:
                solution = data["complete_prompt"] + "\n" + response_text
            return calibrated(data["code_prompt"], sanitize(solution, data["entry_point"]))
        if self.chat:
            return extract_code(response_text)
        return _strip_markers(response_text)

    def program(self, item: Item, response_text: str) -> str:
        """humaneval's program to run: prompt + completion (or the chat answer's code) + tests + check call."""
        data = item.data
        return self.code(item, response_text) + "\n" + data["test"] + f"\ncheck({data['entry_point']})\n"

    def check(self, item: Item, code: str, scale: bool = True) -> dict[str, Any]:
        """Run `code` against the item's tests: one run's outcome with per-test details."""
        test_s = max(self.spec.test_timeout_s, 2.0 * float(item.data.get("time_limit_s") or 0.0))
        run = _execute(self.spec, item.data, code, self.spec.timeout_s, test_s)
        if scale and run["status"] == "timeout":
            reference = reference_wall_s(self.spec, item.data)
            factor_s = REFERENCE_FACTOR * reference if reference is not None else 0.0
            if factor_s > test_s:
                run = _execute(self.spec, item.data, code, max(self.spec.timeout_s, factor_s), factor_s)
                run["scaled_limit_s"] = round(factor_s, 3)
        return run

    def score(self, item: Item, responses: list[Response]) -> SampleResult:
        runs = []
        for response in responses:
            text = response.text if isinstance(response, Generation) else ""
            if self.spec.kind == "humaneval":
                code = self.program(item, text)
                run = _execute(self.spec, item.data, code, self.spec.timeout_s, self.spec.test_timeout_s)
                if run["status"] == "timeout":
                    reference = reference_wall_s(self.spec, item.data)
                    factor_s = REFERENCE_FACTOR * reference if reference is not None else 0.0
                    if factor_s > self.spec.timeout_s:
                        run = _execute(self.spec, item.data, code, factor_s, factor_s)
                        run["scaled_limit_s"] = round(factor_s, 3)
            else:
                run = self.check(item, self.code(item, text))
            run["code"] = extract_code(text) if self.chat else text
            runs.append(run)
        n, c = len(runs), sum(r["passed"] for r in runs)
        metrics = {f"pass@{k}": _pass_at_k(n, c, k) for k in self.ks if k <= n}
        if self.spec.test_case_rate:
            metrics["test_case_pass_rate"] = sum(r["test_pass_rate"] for r in runs) / n if n else 0.0
        group = item.data.get(self.spec.group_field) if self.spec.group_field else None
        if group:
            metrics[f"pass@1:{group}"] = metrics["pass@1"]
            if self.spec.test_case_rate:
                metrics[f"test_case_pass_rate:{group}"] = metrics["test_case_pass_rate"]
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
        if self.spec.kind == "humaneval":
            return f"check({data['entry_point']})"
        if self.spec.kind == "asserts":
            return "\n".join(data["tests"])
        if self.spec.kind == "unittest":
            return "TestCases"
        return f"{len(data['tests'])} tests" + (f" calling {data['fn_name']}" if data.get("fn_name") else "")

    def aggregate(self, samples: list[SampleResult]) -> list[Score]:
        names = [n for n in self.metric_names if ":" not in n or any(n in s.metrics for s in samples)]
        return mean_scores(samples, names)

    def prompt_hash(self) -> str:
        spec, cfg = self.spec, self.config
        return settings_hash(
            {
                "dataset": self.dataset_id,
                "variant": cfg.variant,
                "kind": spec.kind,
                "template": "{prompt}" if not self.chat else spec.instruct_template,
                "version": spec.template_version,
                "chat": self.chat,
                "stop": list(spec.chat_stop if self.chat else spec.stop),
                "max_tokens": cfg.max_tokens or spec.max_tokens,
                "temperature": cfg.temperature,
                "top_p": cfg.top_p,
                "n_samples": cfg.n_samples,
                "timeout_s": spec.timeout_s,
                "test_timeout_s": spec.test_timeout_s,
            }
        )


# -- execution ---------------------------------------------------------------------


def _limits(spec: CodeSpec, wall_s: float) -> Any:
    try:
        from evalmap.sandbox import Limits
    except ImportError:
        raise EvalmapError(
            "The code sandbox (evalmap.sandbox) is not available in this install; reinstall evalmap to score code."
        ) from None
    # Room for one record per test (codecontests has hundreds); a flood beyond it fails the run.
    return Limits(wall_s=wall_s, memory_mb=spec.memory_mb, max_output_bytes=4 << 20)


def _execute(spec: CodeSpec, data: dict[str, Any], code: str, load_s: float, test_s: float) -> dict[str, Any]:
    """One sandbox run of `code` through the test harness, with per-test outcomes.

    A sample passes only when the harness finished (its final, nonce-framed line arrived) and
    every test reported passed or skipped; a test with no report takes the run's fate.
    """
    from evalmap.sandbox.protocol import run_harness

    job, names = _job(spec, data, code, load_s, test_s)
    wall = min(spec.max_wall_s, load_s + test_s * max(1, len(names)) + 5.0)
    if spec.kind == "humaneval":
        wall = load_s + 2.0  # the harness's own timer stops the program at load_s
    run = run_harness(job, _limits(spec, wall))
    result, load = run.result, run.load
    reported = {str(record.pop("test")): record for record in run.records if "test" in record}
    if spec.kind == "unittest":
        names = list(reported) or names
    if result.status == "timeout":
        fate = ("timeout", "TimeoutError")
    elif result.status == "passed" and not run.finished:
        fate = ("failed", "EarlyExit")  # the program ended the harness before its last test
    else:
        fate = (result.status, result.error_type)
    tests: dict[str, dict[str, Any]] = {}
    for name in names:
        if name in reported:
            rec = reported[name]
            tests[name] = {k: rec.get(k) for k in ("status", "error_type", "message")}
            tests[name]["s"] = round(float(rec.get("s") or 0.0), 4)
        elif load is not None:
            tests[name] = {
                "status": "not_run",
                "error_type": load.get("error_type"),
                "message": "the program did not load",
            }
        elif not any(t["status"] == "not_run" for t in tests.values()):
            tests[name] = {"status": fate[0], "error_type": fate[1], "message": ""}
        else:
            tests[name] = {"status": "not_run", "error_type": None, "message": ""}
    ok = {"passed", "skipped"}
    n_pass = sum(t["status"] in ok for t in tests.values())
    passed = run.finished and load is None and bool(tests) and n_pass == len(tests)
    if passed:
        status, error_type = "passed", None
    elif load is not None:
        status, error_type = load["load"], load.get("error_type")
    else:
        bad = next((t for t in tests.values() if t["status"] not in ok), None)
        status, error_type = (bad["status"], bad["error_type"]) if bad else fate
        if status == "passed":  # every test passed but the harness did not finish
            status, error_type = fate if fate[0] != "passed" else ("failed", "EarlyExit")
    stderr = (result.stderr or "")[-STDERR_TAIL:]
    if load is not None and load.get("message"):
        stderr = (stderr + f"\n{load['error_type']}: {load['message']}").strip()[-STDERR_TAIL:]
    outcome = {"status": status, "passed": passed, "error_type": error_type, "stderr": stderr, "wall_s": result.wall_s}
    if spec.kind != "humaneval":  # one program, one check: its outcome says it all
        rate = n_pass / len(tests) if tests else 0.0
        outcome.update(tests=tests, tests_passed=n_pass, tests_total=len(tests), test_pass_rate=rate)
    return outcome


def _job(spec: CodeSpec, data: dict[str, Any], code: str, load_s: float, test_s: float) -> tuple[dict, list[str]]:
    """The harness's job.json for one run, and the names of the tests it will report."""
    if spec.kind == "humaneval":
        job = {"kind": "program", "code": code}
        names = ["check"]
    elif spec.kind == "asserts":
        setup = data.get("setup") or ""
        job = {"kind": "asserts", "code": (code + "\n" + setup) if setup else code, "tests": data["tests"]}
        names = [str(i) for i in range(len(data["tests"]))]
    elif spec.kind == "unittest":
        job = {"kind": "unittest", "code": code + "\n\n" + data["test"]}
        names = [name for name in re.findall(r"^\s+def (test\w*)\s*\(", data["test"], re.M)]
    elif data.get("fn_name"):
        job = {"kind": "call", "code": code, "fn_name": data["fn_name"], "tests": data["tests"]}
        names = [str(i) for i in range(len(data["tests"]))]
    else:
        job = {"kind": "stdio", "code": code, "tests": data["tests"]}
        names = [str(i) for i in range(len(data["tests"]))]
    job.update(load_s=load_s, test_s=test_s)
    return job, names


_STRIP = re.compile(r"^\s*\[BEGIN\]\s*\n?|\[DONE\].*\Z", re.S)


def _strip_markers(text: str) -> str:
    """A completion without the few-shot format's markers, and without code fences when it has them."""
    text = _STRIP.sub("", text)
    return extract_code(text) if "```" in text else text


# -- reference runtimes (time-limit scaling) ----------------------------------------------

_runtime_lock = threading.Lock()


def _runtime_cache_path() -> Path:
    explicit = os.environ.get(RUNTIME_CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "evalmap" / "reference_runtimes.json"


def reference_wall_s(spec: CodeSpec, data: dict[str, Any]) -> float | None:
    """Wall seconds of the item's canonical solution on this machine (measured once, cached); None if it fails."""
    canonical = data.get("canonical", data.get("canonical_solution"))
    if canonical is None:
        return None
    code = canonical
    if spec.kind == "humaneval":
        code = data["prompt"] + canonical + "\n" + data["test"] + f"\ncheck({data['entry_point']})\n"
    key = hashlib.sha256(
        json.dumps([spec.dataset_id, spec.kind, code, data.get("test"), data.get("tests")], default=str).encode()
    ).hexdigest()
    path = _runtime_cache_path()
    with _runtime_lock:
        cache = _read_cache(path)
    if key in cache:
        return cache[key]
    generous = max(spec.max_wall_s, 60.0)
    run = _execute(spec, data, code, generous, generous)
    value = round(run["wall_s"], 4) if run["passed"] else None
    with _runtime_lock:
        cache = _read_cache(path)
        cache[key] = value
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as fh:
                json.dump(cache, fh)
            os.replace(fh.name, path)
    return value


def _read_cache(path: Path) -> dict[str, float | None]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _pass_at_k(n: int, c: int, k: int) -> float:
    try:
        from evalmap.metrics.passk import pass_at_k
    except ImportError:
        return c / n if k == 1 and n else float("nan")
    return pass_at_k(n, c, k)


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


# -- humaneval ---------------------------------------------------------------------

HUMANEVAL = CodeSpec(
    dataset_id="humaneval",
    source=DataSource(
        name="test",
        local_files=("HumanEval.jsonl.gz",),
        package_file=("human_eval", "data/HumanEval.jsonl.gz"),
        normalize=record_shape(
            {"task_id": Text, "prompt": Text, "canonical_solution": str, "test": Text, "entry_point": Text}
        )(
            lambda records, origin: [
                {k: r[k] for k in ("task_id", "prompt", "canonical_solution", "test", "entry_point")} for r in records
            ]
        ),
    ),
    instruct_template=(
        "Complete the following Python function so that it passes its tests. Reply with the whole "
        "function in a single ```python code block.\n\n```python\n{prompt}```"
    ),
    stop=("\nclass", "\ndef", "\n#", "\nif", "\nprint", "\n```"),
    chat_stop=(),
    max_tokens=512,
    timeout_s=10.0,
)

# -- mbpp --------------------------------------------------------------------------

_SHOT_IDS = {"mbpp": (2, 3, 4)}  # the MBPP paper's and lm-eval's three prompt problems
_MBPP_TEST_IDS = range(11, 511)


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n")


_MBPP_SHAPE = record_shape(
    {"task_id": Text, "text": Text, "canonical": str, "setup": str, "tests": list[str]},
    lambda r: None if r["tests"] else "has an empty 'test_list'",
)


def _mbpp_full(records: list[dict[str, Any]], ids: Any) -> list[dict[str, Any]]:
    return [
        {
            "task_id": f"Mbpp/{r['task_id']}",
            "text": r["text"],
            "canonical": _crlf(r["code"]),
            "setup": _crlf(r.get("test_setup_code") or ""),
            "tests": list(r["test_list"]),
        }
        for r in records
        if int(r["task_id"]) in ids
    ]


@_MBPP_SHAPE
def _mbpp_sanitized(records: list[dict[str, Any]], origin: str) -> list[dict[str, Any]]:
    return [
        {
            "task_id": f"Mbpp/{r['task_id']}",
            "text": r["prompt"],
            "canonical": _crlf(r["code"]),
            "setup": "\n".join(r.get("test_imports") or []),
            "tests": list(r["test_list"]),
        }
        for r in records
        if int(r["task_id"]) in _MBPP_TEST_IDS
    ]


def _mbpp_block(record: dict[str, Any]) -> str:
    tests = "\n".join(record["tests"])
    return (
        f"You are an expert Python programmer, and here is your task: {record['text']} "
        f"Your code should pass these tests:\n\n{tests}\n[BEGIN]\n"
    )


def _mbpp_prompt(record: dict[str, Any], shots: list[dict[str, Any]]) -> str:
    """lm-eval's mbpp: three solved shots, then the problem, ending at `[BEGIN]\\n`."""
    solved = [_mbpp_block(s) + s["canonical"].strip() + "\n[DONE]" for s in shots]
    return "\n\n".join([*solved, _mbpp_block(record)])


def _mbpp_instruct(record: dict[str, Any]) -> str:
    tests = "\n".join(record["tests"])
    return (
        f"You are an expert Python programmer, and here is your task: {record['text']} "
        f"Your code should pass these tests:\n\n{tests}\n\n"
        "Reply with your code in a single ```python code block."
    )


MBPP = CodeSpec(
    dataset_id="mbpp",
    kind="asserts",
    source=DataSource(
        name="test",
        local_files=("mbpp.jsonl",),
        normalize=_MBPP_SHAPE(lambda records, origin: _mbpp_full(records, _MBPP_TEST_IDS)),
    ),
    fewshot_source=DataSource(
        name="prompt",
        local_files=("mbpp.jsonl",),
        hub_config="full",
        hub_split="prompt",
        normalize=_MBPP_SHAPE(
            lambda records, origin: sorted(
                _mbpp_full(records, _SHOT_IDS["mbpp"]), key=lambda r: int(r["task_id"].split("/")[1])
            )
        ),
    ),
    variants={
        "sanitized": DataSource(
            name="sanitized test",
            local_files=("sanitized-mbpp.json",),
            hub_config="sanitized",
            hub_split="test",
            normalize=_mbpp_sanitized,
        )  # fmt: skip
    },
    prompt_fn=_mbpp_prompt,
    instruct_fn=_mbpp_instruct,
    instruct_template="mbpp-instruct-v1",
    stop=("[DONE]",),
    max_tokens=512,
    timeout_s=10.0,
    test_timeout_s=6.0,
)

# -- bigcodebench -------------------------------------------------------------------


_BIGCODEBENCH_TEXT = ("task_id", "complete_prompt", "instruct_prompt", "code_prompt", "test", "entry_point")


@record_shape({**dict.fromkeys(_BIGCODEBENCH_TEXT, Text), "canonical": str, "libs": list[str]})
def _bigcodebench(records: list[dict[str, Any]], origin: str) -> list[dict[str, Any]]:
    keys = ("task_id", "complete_prompt", "instruct_prompt", "code_prompt", "test", "entry_point")
    out = []
    for r in records:
        libs = r.get("libs")
        if isinstance(libs, str):
            libs = re.findall(r"'([^']+)'", libs)
        out.append(
            {
                **{k: r[k] for k in keys},
                "canonical": r["complete_prompt"] + r["canonical_solution"]
                if not r["canonical_solution"].lstrip("\n").startswith(("import ", "from ", "def "))  # not nested
                else r["canonical_solution"],
                "libs": list(libs or []),
            }
        )
    return out


def _bigcodebench_instruct(record: dict[str, Any]) -> str:
    """bigcodebench's own chat prompt (make_raw_chat_prompt)."""
    return (
        "Please provide a self-contained Python script that solves the following problem in a markdown code block:\n"
        f"```\n{record['instruct_prompt'].strip()}\n```\n"
    )


BIGCODEBENCH = CodeSpec(
    dataset_id="bigcodebench",
    kind="unittest",
    source=DataSource(
        name="test",
        local_files=("BigCodeBench_v0.1.0_hf_format.jsonl.gz",),
        normalize=_bigcodebench,
    ),
    variants={
        # The local file has no hard-subset marker: `hard` comes from the hub (bigcode/bigcodebench-hard).
        "hard": DataSource(name="hard", local_files=("BigCodeBench-Hard.jsonl.gz",), normalize=_bigcodebench),
    },
    prompt_field="complete_prompt",
    instruct_fn=_bigcodebench_instruct,
    instruct_template="bigcodebench-instruct-v1",
    stop=("\nif __name__", "\ndef main(", "\nprint(", "\n```"),
    max_tokens=1280,
    timeout_s=30.0,
    test_timeout_s=30.0,
    max_wall_s=float(os.environ.get("EVALMAP_BIGCODEBENCH_TIMEOUT", "240")),  # bigcodebench's default total
    memory_mb=4096,
)

from evalmap.tasks.code_contests import CONTEST_SPECS, GROUPS  # noqa: E402 - it builds on CodeSpec above

_GROUPS: dict[str, tuple[str, ...]] = dict(GROUPS)

SPECS: dict[str, CodeSpec] = {"humaneval": HUMANEVAL, "mbpp": MBPP, "bigcodebench": BIGCODEBENCH, **CONTEST_SPECS}
