"""Mathematics datasets: free-form generation scored by answer extraction.

gsm8k follows lm-evaluation-harness's `gsm8k_cot` task exactly: the 8 chain-of-thought
exemplars of Wei et al. (2022) as "Q: ...\\nA: ...", greedy decoding, and two scores,
`exact_match_strict` ("The answer is N") and `exact_match_flexible` (the last number).

math (Hendrycks MATH, and its MATH-500 variant) follows lm-eval's `minerva_math`: the
4 Minerva exemplars as "Problem:\\n...\\n\\nSolution: ...", and two scores:
`math_verify_accuracy` (the answer in \\boxed{} / "Final Answer: ..." / "The answer
is", compared with math-verify) and `exact_match` (Minerva's strict "Final Answer: The
final answer is X" phrase, compared with math-verify). Scores per subject and level too.
math_competition (AMC 2023) and aime (AIME 2024; aime25 variant) are zero-shot
chain-of-thought with a \\boxed{} instruction, as Qwen2.5-Math evaluates them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from evalmap.backends.base import Generation, GenerationRequest, Request, Response
from evalmap.catalog.schema import Dataset
from evalmap.errors import EvalmapError
from evalmap.metrics.aggregate import pooled_group_score, proportion_ci
from evalmap.metrics.answers import (
    extract_boxed,
    extract_last_number,
    extract_math_answer,
    extract_minerva_answer,
    extract_strict_gsm8k,
    math_equal,
    normalize_integer,
    normalize_number,
)
from evalmap.metrics.stats import Score, mean_score, normal_ci
from evalmap.tasks.base import Item, SampleResult, TaskConfig, deterministic_subset
from evalmap.tasks.data import DataSource, LazyRecords, Record, Text, mean_scores, record_shape, settings_hash

Extractor = Callable[[str], str | None]
Comparator = Callable[[str | None, str | None], bool]


@dataclass(frozen=True)
class GenerativeSpec:
    """A generation dataset: prompt template, fixed few-shot exemplars, extractors and metric names.

    `template` is formatted with the record's fields (str.format). A few-shot exemplar
    is `template` filled with the exemplar + `target_delimiter` + its target, and the
    exemplars are joined with `fewshot_delimiter` (lm-eval's layout). Each metric is
    (name, extractor): the sample scores 1 when the normalised extraction equals the
    normalised target.
    """

    dataset_id: str
    source: DataSource
    template: str
    target: Callable[[Record], str]
    fewshot: tuple[Record, ...] = ()
    default_fewshot: int = 0
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    stop: tuple[str, ...] = ()
    max_tokens: int = 256
    metrics: tuple[tuple[str, Extractor], ...] = ()
    normalize: Callable[[str | None], str | None] = normalize_number
    chat_default: bool = False
    compare: Comparator | None = None  # None: normalised strings must be equal
    fewshot_target: Callable[[Record], str] | None = None  # an exemplar's answer text (None: `target`)
    groups: tuple[tuple[str, Callable[[Record], str]], ...] = ()  # per-group scores (math: subject, level)
    variants: tuple[tuple[str, DataSource], ...] = ()  # catalog variant name -> its split
    headline: str | None = None  # the metric a group average uses (None: the first)

    def build(self, dataset: Dataset, config: TaskConfig) -> GenerativeTask:
        return GenerativeTask(self, dataset, config)


@dataclass
class GenerativeTask:
    spec: GenerativeSpec
    dataset: Dataset
    config: TaskConfig
    dataset_id: str = field(init=False)
    _records: LazyRecords = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.dataset_id = self.dataset.id
        self.dataset = variant_dataset(self.dataset, self.config)
        k = self.num_fewshot
        if not 0 <= k <= len(self.spec.fewshot):
            raise EvalmapError(
                f"{self.dataset_id} has {len(self.spec.fewshot)} few-shot exemplars, so "
                f"--num-fewshot must be between 0 and {len(self.spec.fewshot)} (got {k})."
            )
        self._records = LazyRecords(self.dataset, self.config.data_dir, self.source)

    @property
    def source(self) -> DataSource:
        return resolve_variant(self.dataset, self.spec.source, dict(self.spec.variants), self.config)

    @property
    def num_fewshot(self) -> int:
        n = self.config.num_fewshot
        return self.spec.default_fewshot if n is None else n

    @property
    def chat(self) -> bool:
        return self.spec.chat_default if self.config.chat is None else self.config.chat

    @property
    def metric_names(self) -> list[str]:
        return [name for name, _ in self.spec.metrics]

    def items(self, limit: int | None = None, seed: int = 1234) -> list[Item]:
        all_items = [Item(id=r["id"], data=r) for r in self._records.get()]
        return deterministic_subset(all_items, limit, seed)

    # -- prompts -----------------------------------------------------------------

    def exemplars(self) -> list[Record]:
        """The first `num_fewshot` fixed exemplars (lm-eval's `first_n` sampler)."""
        return list(self.spec.fewshot[: self.num_fewshot])

    def shot_target(self, record: Record) -> str:
        return (self.spec.fewshot_target or self.spec.target)(record)

    def prompt(self, item: Item) -> str:
        """The completion-style prompt: exemplars with answers, then the question."""
        spec = self.spec
        shots = [
            spec.template.format(**ex) + spec.target_delimiter + self.shot_target(ex) + spec.fewshot_delimiter
            for ex in self.exemplars()
        ]
        return "".join(shots) + spec.template.format(**item.data)

    def messages(self, item: Item) -> tuple[tuple[str, str], ...]:
        """Chat prompt: exemplars as alternating user/assistant turns (lm-eval fewshot_as_multiturn)."""
        turns: list[tuple[str, str]] = []
        for ex in self.exemplars():
            turns.append(("user", self.spec.template.format(**ex)))
            turns.append(("assistant", self.shot_target(ex)))
        turns.append(("user", self.spec.template.format(**item.data)))
        return tuple(turns)

    def requests(self, item: Item) -> list[Request]:
        cfg = self.config
        common = dict(
            max_tokens=cfg.max_tokens or self.spec.max_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            stop=self.spec.stop,
        )
        body = dict(messages=self.messages(item), chat=True) if self.chat else dict(prompt=self.prompt(item))
        return [GenerationRequest(**body, **common, seed=cfg.seed + i) for i in range(max(1, cfg.n_samples))]

    # -- scoring -----------------------------------------------------------------

    def target(self, item: Item) -> str | None:
        return self.spec.normalize(self.spec.target(item.data))

    def score(self, item: Item, responses: list[Response]) -> SampleResult:
        gold = self.target(item)
        compare = self.spec.compare or (lambda pred, ref: pred is not None and pred == ref)
        texts = [r.text if isinstance(r, Generation) else "" for r in responses]
        per_sample: list[dict] = []
        for text in texts:
            row: dict = {}
            for name, extract in self.spec.metrics:
                raw = extract(text)
                pred = self.spec.normalize(raw)
                row[name] = {"raw": raw, "pred": pred, "correct": float(pred is not None and compare(pred, gold))}
            per_sample.append(row)
        metrics = {
            name: (sum(r[name]["correct"] for r in per_sample) / len(per_sample) if per_sample else 0.0)
            for name in self.metric_names
        }
        first = per_sample[0] if per_sample else {}
        extracted = {name: first[name]["pred"] for name in first}
        details: dict = {"raw_extracted": {name: first[name]["raw"] for name in first}}
        if len(per_sample) > 1:
            details["samples"] = [{n: r[n]["pred"] for n in r} for r in per_sample]
        if self.spec.groups:
            details["groups"] = {key: fn(item.data) for key, fn in self.spec.groups}
        return SampleResult(metrics=metrics, extracted=extracted, target=gold, details=details)

    def aggregate(self, samples: list[SampleResult]) -> list[Score]:
        scores = mean_scores(samples, self.metric_names)
        for key, _ in self.spec.groups:
            scores += subgroup_scores(samples, self.metric_names[0], key)
        return scores

    def prompt_hash(self) -> str:
        spec, cfg = self.spec, self.config
        return settings_hash(
            {
                "dataset": self.dataset_id,
                "template": spec.template,
                "fewshot": [[spec.template.format(**ex), self.shot_target(ex)] for ex in self.exemplars()],
                "variant": self.config.variant,
                "target_delimiter": spec.target_delimiter,
                "fewshot_delimiter": spec.fewshot_delimiter,
                "chat": self.chat,
                "stop": list(spec.stop),
                "max_tokens": cfg.max_tokens or spec.max_tokens,
                "temperature": cfg.temperature,
                "top_p": cfg.top_p,
                "n_samples": cfg.n_samples,
                "metrics": self.metric_names,
            }
        )


def resolve_variant(
    dataset: Dataset, default: DataSource, variants: dict[str, DataSource], config: TaskConfig
) -> DataSource:
    """The split a run reads: the spec's default, or the one named by `TaskConfig.variant`."""
    name = config.variant
    if name is None or name == "default":
        return default
    if name not in variants:
        known = ", ".join(sorted(variants)) or "none"
        raise EvalmapError(f"{dataset.id} has no variant {name!r} (variants with a task: {known}).")
    return variants[name]


def variant_dataset(dataset: Dataset, config: TaskConfig) -> Dataset:
    """The catalog record with the variant's hub source, so a hub fallback loads the right dataset."""
    for v in dataset.variants:
        if v.name == config.variant and v.source is not None:
            return dataset.model_copy(update={"source": v.source, "count": v.count})
    return dataset


def subgroup_scores(samples: list[SampleResult], metric: str, key: str) -> list[Score]:
    """`metric` per value of the sample's `details["groups"][key]` (e.g. per subject), each a Score
    named "<metric>/<key>:<value>", then their macro average "<metric>/<key>_macro" with pooled stderr.

    The plain mean over all samples (the micro average, lm-eval's group number) is the metric itself.
    """
    by_value: dict[str, list[float]] = {}
    for s in samples:
        value = (s.details or {}).get("groups", {}).get(key)
        if value is None or metric not in s.metrics:
            continue
        by_value.setdefault(str(value), []).append(s.metrics[metric])
    if not by_value:
        return []
    per = [mean_score(f"{metric}/{key}:{value}", vals) for value, vals in sorted(by_value.items())]
    return [macro_score(f"{metric}/{key}_macro", list(by_value.values()), per), *per]


def macro_score(name: str, groups: list[list[float]], per: list[Score]) -> Score:
    """The unweighted mean of group means with pooled stderr (metrics.aggregate.pooled_group_score).

    A group of one sample has no stderr of its own (a small `--samples` run over 57 mmlu
    subjects); then the macro mean is read as a weighted mean of all samples (weight
    1 / (k * n_g)) and its stderr is sqrt(sum w^2) times the standard deviation of all samples.
    """
    if all(not math.isnan(s.stderr) for s in per):
        return pooled_group_score(name, per, "macro")
    values = [v for g in groups for v in g]
    k = len(groups)
    if len(values) < 2:
        return pooled_group_score(name, per, "macro")
    mean_all = math.fsum(values) / len(values)
    sd = math.sqrt(math.fsum((v - mean_all) ** 2 for v in values) / (len(values) - 1))
    value = math.fsum(math.fsum(g) / len(g) for g in groups) / k
    stderr = sd * math.sqrt(math.fsum(len(g) * (1 / (k * len(g))) ** 2 for g in groups))
    if all(0.0 <= v <= 1.0 for v in values):
        low, high = proportion_ci(value, stderr, len(values))
    else:
        low, high = normal_ci(value, stderr)
    return Score(name, value, stderr, low, high, len(values), "normal-macro-weighted")


# -- gsm8k ---------------------------------------------------------------------------


@record_shape({"id": Text, "question": Text, "answer": Text})
def _gsm8k_records(records: list[Record], origin: str) -> list[Record]:
    return [{"id": str(i), "question": r["question"], "answer": r["answer"]} for i, r in enumerate(records)]


def _gsm8k_target(record: Record) -> str:
    """The gold answer: the text after '#### ' (an exemplar carries its CoT `target`)."""
    if "answer" in record:
        return record["answer"].split("####")[-1].strip()
    return record["target"]


# Wei et al. (2022) chain-of-thought exemplars, verbatim as in lm-eval's gsm8k-cot.yaml.
GSM8K_COT_FEWSHOT: tuple[Record, ...] = (
    {
        "question": "There are 15 trees in the grove. Grove workers will plant trees in the grove today. "
        "After they are done, there will be 21 trees. How many trees did the grove workers plant today?",
        "target": "There are 15 trees originally. Then there were 21 trees after some more were planted. "
        "So there must have been 21 - 15 = 6. The answer is 6.",
    },
    {
        "question": "If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in "
        "the parking lot?",
        "target": "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.",
    },
    {
        "question": "Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they "
        "have left in total?",
        "target": "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. "
        "After eating 35, they had 74 - 35 = 39. The answer is 39.",
    },
    {
        "question": "Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How "
        "many lollipops did Jason give to Denny?",
        "target": "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave "
        "Denny 20 - 12 = 8. The answer is 8.",
    },
    {
        "question": "Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many "
        "toys does he have now?",
        "target": "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more "
        "toys. 5 + 4 = 9. The answer is 9.",
    },
    {
        "question": "There were nine computers in the server room. Five more computers were installed each "
        "day, from monday to thursday. How many computers are now in the server room?",
        "target": "There were originally 9 computers. For each of 4 days, 5 more computers were added. So "
        "5 * 4 = 20 computers were added. 9 + 20 is 29. The answer is 29.",
    },
    {
        "question": "Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 "
        "more. How many golf balls did he have at the end of wednesday?",
        "target": "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. "
        "After losing 2 more, he had 35 - 2 = 33 golf balls. The answer is 33.",
    },
    {
        "question": "Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
        "target": "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she "
        "has 23 - 15 dollars left. 23 - 15 is 8. The answer is 8.",
    },
)

GSM8K = GenerativeSpec(
    dataset_id="gsm8k",
    source=DataSource(name="test", local_files=("test.jsonl",), normalize=_gsm8k_records),
    template="Q: {question}\nA:",
    target=_gsm8k_target,
    fewshot=GSM8K_COT_FEWSHOT,
    default_fewshot=8,
    stop=("Q:", "</s>", "<|im_end|>", "\n\n\n"),
    max_tokens=256,
    metrics=(("exact_match_strict", extract_strict_gsm8k), ("exact_match_flexible", extract_last_number)),
    headline="exact_match_flexible",
)


# -- math (Hendrycks MATH, MATH-500) ---------------------------------------------------


def _math_subject(name: str) -> str:
    """Subject names as EleutherAI/hendrycks_math configs: Counting & Probability -> counting_and_probability."""
    return name.strip().lower().replace("&", "and").replace(" ", "_")


def _math_level(level) -> str:
    text = str(level).strip()
    return text.removeprefix("Level ").strip() or "?"


@record_shape({"id": Text, "problem": Text, "solution": str, "answer": Text, "subject": Text, "level": Text})
def _math_records(records: list[Record], origin: str) -> list[Record]:
    """MATH_test (problem, level 'Level 3', type, solution, idx; gold = last \\boxed{} of the solution),
    MATH-500 (problem, solution, answer, subject, level 3, unique_id) and hub rows to one shape."""
    out = []
    for i, r in enumerate(records):
        answer = r.get("answer")
        if answer is None or answer == "":
            answer = extract_boxed(r.get("solution", "")) or ""
        rid = r.get("unique_id") or r.get("idx", i)
        out.append(
            {
                "id": str(rid),
                "problem": r["problem"],
                "solution": r.get("solution", ""),
                "answer": str(answer),
                "subject": _math_subject(r.get("type") or r.get("subject") or "unknown"),
                "level": _math_level(r.get("level", "?")),
            }
        )
    return out


# The 4 Minerva exemplars (Lewkowycz et al. 2022), verbatim as in lm-eval's minerva_math utils.
MINERVA_FEWSHOT: tuple[Record, ...] = (
    {
        "problem": "Find the domain of the expression  $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.}",
        "solution": "The expressions inside each square root must be non-negative. Therefore, $x-2 \\ge 0$, so "
        "$x\\ge2$, and $5 - x \\ge 0$, so $x \\le 5$. Also, the denominator cannot be equal to zero, so $5-x>0$, "
        "which gives $x<5$. Therefore, the domain of the expression is $\\boxed{[2,5)}$.\n"
        "Final Answer: The final answer is $[2,5)$. I hope it is correct.",
    },
    {
        "problem": "If $\\det \\mathbf{A} = 2$ and $\\det \\mathbf{B} = 12,$ then find "
        "$\\det (\\mathbf{A} \\mathbf{B}).$",
        "solution": "We have that $\\det (\\mathbf{A} \\mathbf{B}) = (\\det \\mathbf{A})(\\det \\mathbf{B}) "
        "= (2)(12) = \\boxed{24}.$\nFinal Answer: The final answer is $24$. I hope it is correct.",
    },
    {
        "problem": "Terrell usually lifts two 20-pound weights 12 times. If he uses two 15-pound weights instead, "
        "how many times must Terrell lift them in order to lift the same total weight?",
        "solution": "If Terrell lifts two 20-pound weights 12 times, he lifts a total of $2\\cdot 12\\cdot20=480$ "
        "pounds of weight.  If he lifts two 15-pound weights instead for $n$ times, he will lift a total of "
        "$2\\cdot15\\cdot n=30n$ pounds of weight.  Equating this to 480 pounds, we can solve for $n$:\n"
        "\\begin{align*}\n30n&=480\\\\\n\\Rightarrow\\qquad n&=480/30=\\boxed{16}\n\\end{align*}\n"
        "Final Answer: The final answer is $16$. I hope it is correct.",
    },
    {
        "problem": "If the system of equations\n\n\\begin{align*}\n6x-4y&=a,\\\\\n6y-9x &=b.\n\\end{align*}"
        "has a solution $(x, y)$ where $x$ and $y$ are both nonzero,\nfind $\\frac{a}{b},$ assuming $b$ is nonzero.",
        "solution": "If we multiply the first equation by $-\\frac{3}{2}$, we obtain\n\n$$6y-9x=-\\frac{3}{2}a.$$"
        "Since we also know that $6y-9x=b$, we have\n\n$$-\\frac{3}{2}a=b\\Rightarrow\\frac{a}{b}="
        "\\boxed{-\\frac{2}{3}}.$$\nFinal Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct.",
    },
)


def _identity(text: str | None) -> str | None:
    return text.strip() if isinstance(text, str) and text.strip() else None


MATH = GenerativeSpec(
    dataset_id="math",
    source=DataSource(name="test", local_files=("MATH_test.jsonl.gz",), normalize=_math_records),
    variants=(("math500", DataSource(name="test", local_files=("MATH-500_test.jsonl",), normalize=_math_records)),),
    template="Problem:\n{problem}\n\nSolution:",
    target=lambda r: r["answer"],
    fewshot_target=lambda r: r["solution"],
    fewshot=MINERVA_FEWSHOT,
    default_fewshot=4,
    stop=("Problem:", "</s>", "<|im_end|>"),
    max_tokens=512,
    metrics=(("math_verify_accuracy", extract_math_answer), ("exact_match", extract_minerva_answer)),
    normalize=_identity,
    compare=math_equal,
    groups=(("subject", lambda r: r["subject"]), ("level", lambda r: r["level"])),
)


# -- math_competition (AMC 2023) and aime (AIME 2024 / 2025) ---------------------------

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{{}}."


@record_shape({"id": Text, "problem": Text, "answer": Text})
def _competition_records(records: list[Record], origin: str) -> list[Record]:
    """Qwen2.5-Math files (id, problem, answer) and hub rows (Problem/Answer, problem/answer) to one shape.
    AMC answers are floats in the file ("27.0"): written as plain numbers."""
    out = []
    for i, r in enumerate(records):
        problem = r.get("problem") or r.get("Problem") or r.get("question") or ""
        answer = r.get("answer", r.get("Answer", ""))
        if isinstance(answer, float) and answer.is_integer():
            answer = int(answer)
        out.append({"id": str(r.get("id", r.get("ID", i))), "problem": problem, "answer": str(answer)})
    return out


MATH_COMPETITION = GenerativeSpec(
    dataset_id="math_competition",
    source=DataSource(name="test", local_files=("amc23_test.jsonl",), normalize=_competition_records),
    template="Problem:\n{problem}\n" + BOXED_INSTRUCTION + "\n\nSolution:",
    target=lambda r: r["answer"],
    stop=("Problem:", "</s>", "<|im_end|>"),
    max_tokens=1024,
    metrics=(("math_verify_accuracy", extract_math_answer),),
    normalize=_identity,
    compare=math_equal,
)

AIME = GenerativeSpec(
    dataset_id="aime",
    source=DataSource(name="test", local_files=("aime24_test.jsonl",), normalize=_competition_records),
    variants=(("aime25", DataSource(name="test", local_files=("aime25_test.jsonl",), normalize=_competition_records)),),
    template="Problem:\n{problem}\n" + BOXED_INSTRUCTION + "\n\nSolution:",
    target=lambda r: r["answer"],
    stop=("Problem:", "</s>", "<|im_end|>"),
    max_tokens=1536,
    metrics=(("math_verify_accuracy", extract_math_answer),),
    normalize=normalize_integer,  # AIME answers are integers 0-999: "033" = "33", "$204$" = "204"
)

SPECS: dict[str, GenerativeSpec] = {
    "gsm8k": GSM8K,
    "math": MATH,
    "math_competition": MATH_COMPETITION,
    "aime": AIME,
}
