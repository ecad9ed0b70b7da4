"""Judge: a multi-turn conversation graded by a judge model (MT-Bench, as FastChat's llm_judge scores it).

A `JudgeSpec` is one question set: questions of several turns with a category each, reference
answers for the categories that need them, and the judge's prompt templates (records of a
local file, FastChat's `judge_prompts.jsonl` layout: name, system_prompt, prompt_template,
output_format), one per turn for each of: single grading, single grading with a reference,
pairwise, pairwise with a reference.

The conversation, item by item (the runner calls `follow_up` each time an item's requests are
all answered, with every answer in the order asked; `[]` means ready for `score`):

    round 0  turn-1 answer
    round t  the turn-(t+1) answer, asked with the model's own earlier answers in the
             conversation, and the turn-t judgment(s)            (t = 1 .. turns-1)
    round T  the last turn's judgment(s)

Single grading asks one judgment per turn, rated 1-10 (`[[n]]`, else `[n]`); pairwise grading
(`TaskConfig.pairwise_against`) asks two per turn, the model's answer as assistant A and then as
assistant B, and a win counts only when both orders agree (`[[A]]` / `[[B]]` / `[[C]]` = tie).
A judgment that cannot be read is a judge failure: counted (`judge_failures`) and shown with
the judge's text, never dropped without a trace (FastChat drops it silently).

Judge requests are `JudgeRequest`s at temperature 0 and `judge_max_tokens` (FastChat: 2048),
whatever the run's `--temperature` / `--max-tokens` say: those options are the evaluated model's.
The model's answers use the category's temperature (FastChat's table) unless the run sets a
temperature above 0, which then applies to every category.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalmap.backends.base import Generation, GenerationRequest, Request, Response
from evalmap.catalog.schema import Dataset
from evalmap.errors import DataMissingError, EvalmapError
from evalmap.hashing import sha256_json
from evalmap.metrics.aggregate import proportion_ci
from evalmap.metrics.stats import Score, clustered_mean_score, empty_score, normal_ci
from evalmap.tasks.base import Item, JudgeRequest, SampleResult, TaskConfig, deterministic_subset
from evalmap.tasks.data import DataFormatError, DataSource, LazyRecords, Record, resolve_data_dir
from evalmap.tasks.kinds.common import SpecBase, resolve_variant

# FastChat's rating patterns (common.py one_score_pattern, then its backup) and pairwise verdicts.
RATING_PATTERNS = (r"\[\[(\d+\.?\d*)\]\]", r"\[(\d+\.?\d*)\]")
VERDICTS = (("[[A]]", "A"), ("[[B]]", "B"), ("[[C]]", "tie"))
OUTCOME_VALUE = {"win": 1.0, "tie": 0.5, "loss": 0.0}
PAIRWISE_HEADLINE = "win_rate_adjusted"


@dataclass(frozen=True)
class JudgeSpec(SpecBase):
    """A multi-turn question set graded by a judge.

    `source` gives question records {id, category, turns: [str, ...], reference: [str, ...] or []};
    `judge_source` gives the judge template records. Each `*_templates` tuple names one template
    per turn: the first fills {question}, {answer} (pairwise: {answer_a}, {answer_b}); a later
    turn's fills {question_i}, {answer_i} (pairwise: {answer_a_i}, {answer_b_i}) for every turn so
    far; every template may use {ref_answer_i} of every turn. The `*_ref_templates` grade the
    categories in `reference_categories`, which must carry a reference answer for every turn.
    """

    dataset_id: str
    source: DataSource
    judge_source: DataSource
    single_templates: tuple[str, ...]
    single_ref_templates: tuple[str, ...]
    pair_templates: tuple[str, ...]
    pair_ref_templates: tuple[str, ...]
    reference_categories: frozenset[str] = frozenset()
    categories: tuple[str, ...] = ()  # the order per-category scores are listed in (others follow, sorted)
    temperatures: Mapping[str, float] = field(default_factory=dict)  # the model's temperature per category
    default_temperature: float = 0.7  # a category not in `temperatures`
    max_tokens: int = 1024  # per answer (`--max-tokens` overrides)
    judge_max_tokens: int = 2048  # per judgment (no run option changes it)
    rating_patterns: tuple[str, ...] = RATING_PATTERNS  # tried in order; the first match of the first that matches
    rating_range: tuple[float, float] = (1.0, 10.0)  # a rating outside it is a judge failure
    verdicts: tuple[tuple[str, str], ...] = VERDICTS  # (text in the judgment, "A" | "B" | "tie"), first found wins
    variants: Mapping[str, DataSource] = field(default_factory=dict)  # e.g. other reference answers
    flagged_references: Mapping[str, frozenset[str]] = field(default_factory=dict)  # variant -> ids of known-wrong refs
    local_only: str = ""  # why the hub copy cannot stand in for the local files, and where to get them
    metrics: tuple[str, ...] = ("judge_score",)
    headline: str | None = None  # pairwise runs score win_rate_adjusted first (the job's headline then)

    @property
    def turns(self) -> int:
        return len(self.single_templates)

    def build(self, dataset: Dataset, config: TaskConfig) -> JudgeTask:
        return JudgeTask(self, dataset, config)


@dataclass
class JudgeTask:
    """A `JudgeSpec` under a run's options. Pairwise mode needs `set_opponent` before any request."""

    spec: JudgeSpec
    dataset: Dataset
    config: TaskConfig
    judged: bool = field(default=True, init=False)
    dataset_id: str = field(init=False)
    source: DataSource = field(init=False, repr=False)
    _records: LazyRecords = field(init=False, repr=False)
    _template_records: LazyRecords = field(init=False, repr=False)
    _templates: dict[str, Record] | None = field(default=None, init=False, repr=False)
    _opponent: tuple[str, dict[str, list[str]]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.dataset_id = self.dataset.id
        cfg = self.config
        if cfg.chat is False:
            raise EvalmapError(
                f"{self.dataset_id} is a conversation and runs only with the chat template; drop --no-chat."
            )
        if cfg.num_fewshot not in (None, 0):
            raise EvalmapError(
                f"{self.dataset_id} is zero-shot (FastChat asks each question as it is); drop --num-fewshot."
            )
        if cfg.n_samples != 1:
            raise EvalmapError(f"{self.dataset_id} grades one answer per turn; drop --n-samples (got {cfg.n_samples}).")
        if cfg.mode not in (None, "generate"):
            raise EvalmapError(f"{self.dataset_id} has no mode {cfg.mode!r}; it only generates (and is judged).")
        self.dataset, self.source = resolve_variant(self.dataset, self.spec.source, self.spec.variants, cfg)
        self._records = LazyRecords(self.dataset, cfg.data_dir, self.source)
        self._template_records = LazyRecords(self.dataset, cfg.data_dir, self.spec.judge_source)
        self._rating_patterns = tuple(re.compile(p) for p in self.spec.rating_patterns)

    # -- options -----------------------------------------------------------------

    @property
    def pairwise(self) -> bool:
        return self.config.pairwise_against is not None

    @property
    def judges_per_turn(self) -> int:
        return 2 if self.pairwise else 1

    @property
    def metric_names(self) -> list[str]:
        return list(self.spec.metric_names)

    def temperature(self, item: Item) -> float:
        """The model's temperature for the item: the category's, unless the run set one above 0."""
        if self.config.temperature > 0:
            return self.config.temperature
        return self.spec.temperatures.get(item.data["category"], self.spec.default_temperature)

    def set_opponent(self, name: str, answers: Mapping[str, Sequence[str]]) -> None:
        """The opponent of pairwise mode: its name (shown in details) and its answers, item id -> one
        text per turn (the `details["answers"]` of its stored samples)."""
        turns = self.spec.turns
        checked: dict[str, list[str]] = {}
        for item_id, texts in answers.items():
            if not isinstance(texts, list | tuple) or len(texts) != turns or not all(isinstance(t, str) for t in texts):
                raise EvalmapError(
                    f"The opponent {name}'s stored answer to {self.dataset_id} item {item_id} is not {turns} turns "
                    "of text; rerun the opponent's job with this evalmap version."
                )
            checked[str(item_id)] = list(texts)
        self._opponent = (name, checked)

    # -- data --------------------------------------------------------------------

    def _require_local(self) -> None:
        """The task reads its local files only; say which one is missing (and why the hub cannot help)."""
        root = resolve_data_dir(self.config.data_dir)
        if root and not Path(root).is_dir():
            return  # load_records says what is wrong with the folder
        folder = self.dataset.local.folder if self.dataset.local else self.dataset.id
        files = [*(self.source.local_files or ()), *(self.spec.judge_source.local_files or ())]
        if root is None:
            reason = "no --data-dir or $EVALMAP_DATA_DIR was given"
        else:
            missing = [Path(root) / folder / f for f in files if not (Path(root) / folder / f).is_file()]
            if not missing:
                return
            reason = f"there is no {missing[0]}"
        raise DataMissingError(
            f"Dataset {self.dataset_id!r} reads its local files only, but {reason}; {self.spec.local_only}"
        )

    def records(self) -> list[Record]:
        """The question records; a question of a reference category without a reference answer for every
        turn stops the run here (FastChat's check_data), naming it."""
        self._require_local()
        records = self._records.get()
        turns = self.spec.turns
        for r in records:
            if r["category"] in self.spec.reference_categories and len(r.get("reference") or []) != turns:
                files = ", ".join(self.source.local_files or ())
                raise DataFormatError(
                    f"Dataset {self.dataset_id!r}: question {r['id']} ({r['category']}) has no reference answer of "
                    f"{turns} turns in {files}, and its category is judged against one; add it to the reference "
                    "file or use a reference file that has it."
                )
        return records

    def items(self, limit: int | None = None, seed: int = 1234) -> list[Item]:
        return deterministic_subset([Item(id=r["id"], data=r) for r in self.records()], limit, seed)

    def templates(self) -> dict[str, Record]:
        """The judge templates this mode uses, by name, each checked for the fields it may fill."""
        if self._templates is None:
            self._require_local()
            by_name = {r["name"]: r for r in self._template_records.get()}
            where = f"{self.dataset.local.folder if self.dataset.local else self.dataset_id}/" + ", ".join(
                self.spec.judge_source.local_files or ()
            )
            for turn, name in self._template_turns():
                if name not in by_name:
                    raise DataFormatError(
                        f"Dataset {self.dataset_id!r}: {where} has no judge template {name!r}; "
                        "use FastChat's judge_prompts.jsonl (see docs/mt_bench.md)."
                    )
                allowed = set(self._fields(turn, pairwise=self.pairwise, blank=True))
                unknown = _template_fields(by_name[name]["prompt_template"]) - allowed
                if unknown:
                    raise DataFormatError(
                        f"Dataset {self.dataset_id!r}: judge template {name!r} in {where} asks for "
                        f"{', '.join(sorted(unknown))}, which turn {turn} cannot fill (it can: "
                        f"{', '.join(sorted(allowed))}); fix the template."
                    )
            self._templates = by_name
        return self._templates

    def _template_turns(self) -> list[tuple[int, str]]:
        spec = self.spec
        plain, ref = (
            (spec.pair_templates, spec.pair_ref_templates)
            if self.pairwise
            else (spec.single_templates, spec.single_ref_templates)
        )
        return [(i + 1, name) for names in (plain, ref) for i, name in enumerate(names)]

    def template_name(self, item: Item, turn: int) -> str:
        spec = self.spec
        needs_ref = item.data["category"] in spec.reference_categories
        if self.pairwise:
            names = spec.pair_ref_templates if needs_ref else spec.pair_templates
        else:
            names = spec.single_ref_templates if needs_ref else spec.single_templates
        return names[turn - 1]

    def judge_prompt_hash(self) -> str:
        """sha256 of the judge templates this task sends (mode-dependent), stored with the judge's identity."""
        templates = self.templates()
        used = [
            {k: templates[name].get(k) for k in ("name", "system_prompt", "prompt_template", "output_format")}
            for _, name in self._template_turns()
        ]
        return sha256_json(used)

    def _opponent_answers(self, item: Item) -> tuple[str, list[str]]:
        if self._opponent is None:
            raise EvalmapError(
                f"{self.dataset_id} is graded pairwise against {self.config.pairwise_against!r}, but the task was "
                "given no opponent answers; the run must load the opponent's stored answers (set_opponent) first."
            )
        name, answers = self._opponent
        if item.id not in answers:
            raise EvalmapError(
                f"The opponent {name} has no stored answer to {self.dataset_id} item {item.id} ({len(answers)} "
                f"stored answers in all); run {name} on {self.dataset_id} over the same items (same --samples "
                "and --seed) first."
            )
        return name, answers[item.id]

    # -- requests ----------------------------------------------------------------

    def layout(self) -> list[tuple[str, int, int]]:
        """Every request of an item in the order asked: ("answer", turn, 0) or ("judge", turn, order),
        order 0 = the model's answer as assistant A (pairwise), 1 = as assistant B."""
        k, turns = self.judges_per_turn, self.spec.turns
        out = [("answer", 1, 0)]
        for t in range(1, turns):
            out += [("answer", t + 1, 0), *(("judge", t, g) for g in range(k))]
        return out + [("judge", turns, g) for g in range(k)]

    def _round_ends(self) -> list[int]:
        k, turns = self.judges_per_turn, self.spec.turns
        ends = [1]
        for _ in range(1, turns):
            ends.append(ends[-1] + 1 + k)
        return [*ends, ends[-1] + k]

    def requests(self, item: Item) -> list[Request]:
        """Round 0: the first turn's answer (in pairwise mode the opponent's answers must be there)."""
        if self.pairwise:
            self._opponent_answers(item)
        return [self._answer_request(item, 1, [])]

    def follow_up(self, item: Item, responses: list[Response]) -> list[Request]:
        """The next round once the item's requests so far are all answered; [] when it is ready for `score`."""
        ends = self._round_ends()
        n = len(responses)
        if n not in ends:
            raise EvalmapError(f"{self.dataset_id} item {item.id}: {n} answers do not end a round of {ends}.")
        if n == ends[-1]:
            return []
        answers = self._answers(responses)
        opponent = self._opponent_answers(item)[1] if self.pairwise else None
        next_round = self.layout()[n : ends[ends.index(n) + 1]]
        return [self._build(item, kind, turn, order, answers, opponent) for kind, turn, order in next_round]

    def _answers(self, responses: Sequence[Response]) -> list[str]:
        """The model's answers so far, one per turn (stripped, as FastChat stores them)."""
        return [_text(r).strip() for (kind, _, _), r in zip(self.layout(), responses, strict=False) if kind == "answer"]

    def _build(
        self, item: Item, kind: str, turn: int, order: int, answers: Sequence[str], opponent: Sequence[str] | None
    ) -> Request:
        if kind == "answer":
            return self._answer_request(item, turn, answers)
        return self._judge_request(item, turn, order, answers, opponent)

    def _answer_request(self, item: Item, turn: int, answers: Sequence[str]) -> GenerationRequest:
        """The model is asked turn `turn` with its own earlier answers in the conversation."""
        questions = item.data["turns"]
        messages: list[tuple[str, str]] = []
        for i in range(turn - 1):
            messages += [("user", questions[i]), ("assistant", answers[i])]
        messages.append(("user", questions[turn - 1]))
        cfg = self.config
        return GenerationRequest(
            messages=tuple(messages), chat=True, max_tokens=cfg.max_tokens or self.spec.max_tokens,
            temperature=self.temperature(item), top_p=cfg.top_p, seed=cfg.seed,
        )  # fmt: skip

    def _judge_request(
        self, item: Item, turn: int, order: int, answers: Sequence[str], opponent: Sequence[str] | None
    ) -> JudgeRequest:
        """The judge's prompt for one turn (pairwise: `order` 1 puts the model's answer second): greedy and
        `spec.judge_max_tokens` long, whatever the run's --temperature / --max-tokens (the model's options)."""
        template = self.templates()[self.template_name(item, turn)]
        fields = self._fields(turn, pairwise=opponent is not None, item=item, answers=answers, opponent=opponent,
                              order=order)  # fmt: skip
        return JudgeRequest(
            messages=(("system", template["system_prompt"]), ("user", template["prompt_template"].format(**fields))),
            chat=True, max_tokens=self.spec.judge_max_tokens, temperature=0.0, top_p=1.0, seed=self.config.seed,
        )  # fmt: skip

    def _fields(
        self, turn: int, pairwise: bool, item: Item | None = None, answers: Sequence[str] = (),
        opponent: Sequence[str] | None = None, order: int = 0, blank: bool = False,
    ) -> dict[str, str]:  # fmt: skip
        """What a judge template for `turn` may fill: the questions and answers up to that turn and
        every reference answer (FastChat's names); `blank` gives the names only."""
        turns = self.spec.turns
        if blank:
            questions, refs = [""] * turns, [""] * turns
            answers, opponent = [""] * turns, [""] * turns
        else:
            assert item is not None
            questions, refs = item.data["turns"], item.data.get("reference") or []
        out = {"question": questions[turn - 1]}
        for i in range(turn):
            out[f"question_{i + 1}"] = questions[i]
        for i, ref in enumerate(refs):
            out[f"ref_answer_{i + 1}"] = ref
        if not pairwise:
            out["answer"] = answers[turn - 1]
            out.update({f"answer_{i + 1}": answers[i] for i in range(turn)})
            return out
        a, b = (answers, opponent) if order == 0 else (opponent, answers)
        assert b is not None and a is not None
        out["answer_a"], out["answer_b"] = a[turn - 1], b[turn - 1]
        for i in range(turn):
            out[f"answer_a_{i + 1}"], out[f"answer_b_{i + 1}"] = a[i], b[i]
        return out

    def prompt_hash(self) -> str:
        """sha256 of every request of every item, blank answers standing in for the model's and the
        opponent's: questions, conversation layout, temperatures, judge templates and reference answers."""
        blank = [""] * self.spec.turns
        opponent = blank if self.pairwise else None
        keys = [
            self._build(item, kind, turn, order, blank, opponent).key()
            for item in self.items()
            for kind, turn, order in self.layout()
        ]
        return sha256_json(keys)

    # -- scoring -----------------------------------------------------------------

    def parse_rating(self, judgment: str) -> tuple[float | None, str | None]:
        """(rating, None), or (None, why it is a judge failure)."""
        return parse_rating(judgment, self._rating_patterns, self.spec.rating_range)

    def score(self, item: Item, responses: list[Response]) -> SampleResult:
        answers = self._answers(responses)
        judgments: dict[tuple[int, int], str] = {
            (turn, order): _text(r) for (kind, turn, order), r in zip(self.layout(), responses, strict=False)
            if kind == "judge"
        }  # fmt: skip
        category = item.data["category"]
        needs_ref = category in self.spec.reference_categories
        variant = self.config.variant or "default"
        details: dict[str, Any] = {
            "category": category,
            "mode": "pairwise" if self.pairwise else "single",
            "answers": answers,
            "reference": list(item.data.get("reference") or []) if needs_ref else None,
            "judge_templates": [self.template_name(item, t) for t in range(1, self.spec.turns + 1)],
        }
        if needs_ref and item.id in self.spec.flagged_references.get(variant, frozenset()):
            details["reference_known_wrong"] = True
        if self.pairwise:
            return self._score_pairwise(item, answers, judgments, details)
        turns, metrics, ratings = [], {}, []
        for t in range(1, self.spec.turns + 1):
            text = judgments.get((t, 0), "")
            rating, failure = self.parse_rating(text)
            turns.append({"turn": t, "template": details["judge_templates"][t - 1], "judgment": text,
                          "rating": rating, "failure": failure})  # fmt: skip
            ratings.append(rating)
            if rating is not None:
                metrics[f"turn_{t}"] = rating
        valid = [r for r in ratings if r is not None]
        if valid:
            metrics["judge_score"] = math.fsum(valid) / len(valid)
        metrics["judge_failures"] = float(len(ratings) - len(valid))
        details["turns"] = turns
        return SampleResult(metrics=metrics, extracted=ratings, target=details["reference"], details=details)

    def _score_pairwise(
        self, item: Item, answers: list[str], judgments: dict[tuple[int, int], str], details: dict[str, Any]
    ) -> SampleResult:
        name, opponent = self._opponent_answers(item)
        details.update(opponent=name, opponent_answers=list(opponent))
        turns, metrics, outcomes, failures = [], {}, [], 0
        for t in range(1, self.spec.turns + 1):
            texts = [judgments.get((t, g), "") for g in (0, 1)]
            verdicts = [parse_verdict(text, self.spec.verdicts) for text in texts]
            failures += sum(v is None for v in verdicts)
            winners = [_winner(v, order) for order, v in enumerate(verdicts)]
            outcome = pair_outcome(*winners)
            failure = None
            if outcome is None:
                bad = [f"order {g + 1}" for g, v in enumerate(verdicts) if v is None]
                failure = f"no [[A]], [[B]] or [[C]] in the judgment of {' and '.join(bad)}"
            turns.append({"turn": t, "template": details["judge_templates"][t - 1], "judgments": texts,
                          "winners": winners, "outcome": outcome, "failure": failure})  # fmt: skip
            outcomes.append(outcome)
            if outcome is not None:
                metrics[f"turn_{t}"] = OUTCOME_VALUE[outcome]
        valid = [OUTCOME_VALUE[o] for o in outcomes if o is not None]
        if valid:
            metrics[PAIRWISE_HEADLINE] = math.fsum(valid) / len(valid)
        metrics["judge_failures"] = float(failures)
        details["turns"] = turns
        return SampleResult(metrics=metrics, extracted=outcomes, target=details["reference"], details=details)

    # -- aggregation -------------------------------------------------------------

    def _categories(self, samples: Sequence[SampleResult]) -> list[str]:
        seen = {s.details["category"] for s in samples}
        return [c for c in self.spec.categories if c in seen] + sorted(seen - set(self.spec.categories))

    def aggregate(self, samples: list[SampleResult]) -> list[Score]:
        samples = [s for s in samples if s.details and "turns" in s.details]
        if self.pairwise:
            return self._aggregate_pairwise(samples)
        ratings = [[t["rating"] for t in s.details["turns"]] for s in samples]
        valid = [[r for r in rs if r is not None] for rs in ratings]
        scores = [rating_score("judge_score", valid)]
        for t in range(self.spec.turns):
            scores.append(rating_score(f"judge_score/turn:{t + 1}", [[rs[t]] for rs in ratings if rs[t] is not None]))
        for category in self._categories(samples):
            clusters = [v for s, v in zip(samples, valid, strict=True) if s.details["category"] == category]
            scores.append(rating_score(f"judge_score/category:{category}", clusters))
        failed = [[0.0 if r is not None else 1.0 for r in rs] for rs in ratings]
        return [*scores, count_score("judge_failures", failed)]

    def _aggregate_pairwise(self, samples: list[SampleResult]) -> list[Score]:
        outcomes = [[t["outcome"] for t in s.details["turns"]] for s in samples]
        valid = [[o for o in os if o is not None] for os in outcomes]
        values = [[OUTCOME_VALUE[o] for o in os] for os in valid]
        scores = [rate_score(PAIRWISE_HEADLINE, values)]
        rates = {
            kind: rate_score(f"{kind}_rate", [[1.0 if o == kind else 0.0 for o in os] for os in valid])
            for kind in ("win", "tie", "loss")
        }
        scores += list(rates.values())
        for kind, plural in (("win", "wins"), ("tie", "ties"), ("loss", "losses")):
            scores.append(count_score(plural, [[1.0 if o == kind else 0.0 for o in os] for os in valid]))
        for t in range(self.spec.turns):
            per_turn = [[OUTCOME_VALUE[os[t]]] for os in outcomes if os[t] is not None]
            scores.append(rate_score(f"{PAIRWISE_HEADLINE}/turn:{t + 1}", per_turn))
        for category in self._categories(samples):
            clusters = [v for s, v in zip(samples, values, strict=True) if s.details["category"] == category]
            scores.append(rate_score(f"{PAIRWISE_HEADLINE}/category:{category}", clusters))
        failed = [[0.0 if w is not None else 1.0 for t in s.details["turns"] for w in t["winners"]] for s in samples]
        return [*scores, count_score("judge_failures", failed)]


# -- parsing ---------------------------------------------------------------------------


def parse_rating(
    judgment: str, patterns: Sequence[re.Pattern[str]], scale: tuple[float, float] = (1.0, 10.0)
) -> tuple[float | None, str | None]:
    """FastChat's rule: the first match of the first pattern that matches (`[[n]]`, then `[n]`).

    Unlike FastChat, a rating outside the scale (`[[0]]`, `[[85]]`, a `[12]` citation caught by the
    backup pattern) is a failure, not a score: the judge was asked for 1-10.
    """
    if not judgment.strip():
        return None, "the judgment is empty"
    for pattern in patterns:
        match = pattern.search(judgment)
        if match is None:
            continue
        value = float(match.group(1))
        low, high = scale
        if not low <= value <= high:
            return None, f"the rating {match.group(0)} is outside {low:g}-{high:g}"
        return value, None
    return None, "no [[rating]] in the judgment"


def parse_verdict(judgment: str, verdicts: Sequence[tuple[str, str]] = VERDICTS) -> str | None:
    """FastChat's rule: "[[A]]" anywhere wins, else "[[B]]", else "[[C]]" (a tie); None when none is there."""
    for token, label in verdicts:
        if token in judgment:
            return label
    return None


def _winner(verdict: str | None, order: int) -> str | None:
    """A verdict mapped back to who won: order 0 shows the model as A, order 1 as B."""
    if verdict is None or verdict == "tie":
        return verdict
    first, second = ("model", "opponent") if order == 0 else ("opponent", "model")
    return first if verdict == "A" else second


def pair_outcome(first: str | None, second: str | None) -> str | None:
    """The model's result over both orders: a win or a loss only when both orders name the same winner,
    else a tie (FastChat: inconsistent = tie); None when either judgment could not be read."""
    if first is None or second is None:
        return None
    if first == second and first != "tie":
        return "win" if first == "model" else "loss"
    return "tie"


def _text(response: Response) -> str:
    return response.text if isinstance(response, Generation) else ""


def _template_fields(template: str) -> set[str]:
    names = set()
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None:
            names.add(re.split(r"[.\[]", name, maxsplit=1)[0] or "<positional {}>")
    return names


# -- scores -------------------------------------------------------------------------------


def rating_score(name: str, clusters: Sequence[Sequence[float]]) -> Score:
    """Mean of ratings with a cluster-robust stderr (a question's turns are one cluster) and a normal CI:
    ratings are on their own scale, never a proportion (all-1 ratings are not a 100% rate)."""
    s = clustered_mean_score(name, clusters)
    if s.n == 0:
        return s
    low, high = normal_ci(s.value, s.stderr)
    method = s.method if any(len(c) > 1 for c in clusters) else "normal"
    return Score(name, s.value, s.stderr, low, high, s.n, method)


def rate_score(name: str, clusters: Sequence[Sequence[float]]) -> Score:
    """A rate in [0, 1] (win, tie, loss; win + half the ties) with a cluster-robust stderr and a CI
    clipped to [0, 1] (Wilson's over the clusters where the stderr is 0)."""
    s = clustered_mean_score(name, clusters)
    if s.n == 0 or math.isnan(s.stderr):
        return s
    k = sum(1 for c in clusters if len(c))
    low, high = proportion_ci(s.value, s.stderr, k)
    method = s.method if any(len(c) > 1 for c in clusters) else "normal"
    return Score(name, s.value, s.stderr, low, high, s.n, method)


def count_score(name: str, clusters: Sequence[Sequence[float]]) -> Score:
    """How many of n 0/1 events happened (judge failures, wins): value = the count, n = the events
    asked, stderr and CI = n times those of the rate (cluster-robust, Wilson's at a rate of 0 or 1)."""
    rate = rate_score(name, clusters)
    n = rate.n
    if n == 0:
        return empty_score(name, "count")
    count = float(sum(v for c in clusters for v in c))
    return Score(name, count, rate.stderr * n, rate.ci_low * n, rate.ci_high * n, n, f"count; {rate.method}")
