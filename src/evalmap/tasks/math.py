"""Mathematics datasets: free-form generation scored by answer extraction.

gsm8k follows lm-evaluation-harness's `gsm8k_cot` task exactly: the 8 chain-of-thought
exemplars of Wei et al. (2022) as "Q: ...\\nA: ...", greedy decoding, and two scores,
`exact_match_strict` ("The answer is N") and `exact_match_flexible` (the last number).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from evalmap.backends.base import Generation, GenerationRequest, Request, Response
from evalmap.catalog.schema import Dataset
from evalmap.errors import EvalmapError
from evalmap.metrics.answers import extract_last_number, extract_strict_gsm8k, normalize_number
from evalmap.metrics.stats import Score
from evalmap.tasks.base import Item, SampleResult, TaskConfig, deterministic_subset
from evalmap.tasks.data import DataSource, LazyRecords, Record, mean_scores, settings_hash

Extractor = Callable[[str], str | None]


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
        k = self.num_fewshot
        if not 0 <= k <= len(self.spec.fewshot):
            raise EvalmapError(
                f"{self.dataset_id} has {len(self.spec.fewshot)} few-shot exemplars, so "
                f"--num-fewshot must be between 0 and {len(self.spec.fewshot)} (got {k})."
            )
        self._records = LazyRecords(self.dataset, self.config.data_dir, self.spec.source)

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

    def prompt(self, item: Item) -> str:
        """The completion-style prompt: exemplars with answers, then the question."""
        spec = self.spec
        shots = [
            spec.template.format(**ex) + spec.target_delimiter + spec.target(ex) + spec.fewshot_delimiter
            for ex in self.exemplars()
        ]
        return "".join(shots) + spec.template.format(**item.data)

    def messages(self, item: Item) -> tuple[tuple[str, str], ...]:
        """Chat prompt: exemplars as alternating user/assistant turns (lm-eval fewshot_as_multiturn)."""
        turns: list[tuple[str, str]] = []
        for ex in self.exemplars():
            turns.append(("user", self.spec.template.format(**ex)))
            turns.append(("assistant", self.spec.target(ex)))
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
        texts = [r.text if isinstance(r, Generation) else "" for r in responses]
        per_sample: list[dict] = []
        for text in texts:
            row: dict = {}
            for name, extract in self.spec.metrics:
                raw = extract(text)
                pred = self.spec.normalize(raw)
                row[name] = {"raw": raw, "pred": pred, "correct": float(pred is not None and pred == gold)}
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
        return SampleResult(metrics=metrics, extracted=extracted, target=gold, details=details)

    def aggregate(self, samples: list[SampleResult]) -> list[Score]:
        return mean_scores(samples, self.metric_names)

    def prompt_hash(self) -> str:
        spec, cfg = self.spec, self.config
        return settings_hash(
            {
                "dataset": self.dataset_id,
                "template": spec.template,
                "fewshot": [[spec.template.format(**ex), spec.target(ex)] for ex in self.exemplars()],
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


# -- gsm8k ---------------------------------------------------------------------------


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
)

SPECS: dict[str, GenerativeSpec] = {"gsm8k": GSM8K}
