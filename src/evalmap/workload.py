"""What a job will send, counted: a seeded sample of its items rendered by the task itself, tokens counted
by the model's own tokenizer where one is on this machine.

The planner (planner.py) turns a `Workload` into seconds; it never sees a prompt. Everything that reads
files, data or tokenizers lives here, so the planner stays a pure function of the catalog, these counts
and the measured profile. Token counts follow the engines: a chat request is rendered with the model's
chat template, a log-likelihood request is split at lm-eval's context/continuation boundary.

Generated lengths, best source first: the store's samples of this model on this dataset with the very
same prompts (same prompt hash), else the items' reference answers (what the task's few-shot answers
look like) capped at each request's max_tokens, else the catalog's typical answer length.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evalmap.catalog.schema import Dataset, Model
    from evalmap.tasks.base import Item, Task

SAMPLE_ITEMS = 24  # items of a job whose requests are rendered and counted
KEYED_REQUESTS = 60_000  # most requests of a job looked up in the response cache (mmlu's 56,168: ~1 s here)
# SmolLM2's tokenizer over the prompts of the shared datasets (arc_challenge, hellaswag, gsm8k, humaneval,
# mmlu, ifeval, winogrande, mbpp): 3.9 to 4.4 characters per token; used only when no tokenizer is here
# and the store holds no samples of the model to calibrate on.
DEFAULT_CHARS_PER_TOKEN = 4.1
CHAT_MESSAGE_TOKENS = 5  # what a chat template adds around each message, for the characters-per-token count


@dataclass(frozen=True)
class RequestShape:
    """One request as an engine sees it: its kind and token counts (no text)."""

    kind: str  # "generate" | "loglikelihood"
    prompt: int  # prompt (chat template applied) or context tokens
    shared: int = 0  # leading tokens it shares with the request sent just before it (a prefix cache's reuse)
    continuation: int = 0  # loglikelihood: the continuation's tokens
    max_tokens: int = 0  # generate: the most it may generate


@dataclass(frozen=True)
class Lengths:
    """Generated tokens per generation request, and where they come from."""

    values: tuple[int, ...]
    source: str
    observed: bool = False  # the model's own answers (stored), not references standing in for them

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else 0.0


@dataclass
class Workload:
    """A job's requests: the shapes of a sample of its items, standing for all `items` of them."""

    dataset: str
    items: int  # items the job runs
    sampled: int  # items whose requests are in `requests`
    requests: list[RequestShape]  # in the order they are sent
    lengths: Lengths | None  # None: the job generates nothing
    tokens: str  # how tokens were counted
    turns: int = 1  # requests per rendered request (2: a two-turn conversation, whose 2nd turn needs the 1st answer)
    sandboxed: bool = False  # each generation is a program the sandbox runs
    notes: list[str] = field(default_factory=list)
    share: float = 1.0  # of the job's requests, the share the engine computes (see uncached)
    cached: int = 0  # the job's requests the response cache already answers on the planned engine
    cached_items: int = 0  # the job's items whose every request is answered there
    cache: str = ""  # how `cached` was counted ("": the cache was not looked up)
    kv_values: int = 0  # values a token adds to the model's KV cache (0: unknown), for decoding at long contexts

    @property
    def scale(self) -> float:
        """Job requests (of the computed share) per sampled request."""
        return self.share * self.turns * self.items / self.sampled if self.sampled else 0.0

    def uncached(self) -> Workload:
        """The part of the job the engine computes: its requests less those the response cache answers (prompts
        and generations scale with it; the items are all still scored)."""
        whole = replace(self, share=1.0)
        total = whole.request_count
        return replace(self, share=1 - self.cached / total) if self.cached and total else whole

    @property
    def generations(self) -> int:
        return round(sum(r.kind == "generate" for r in self.requests) * self.scale)

    @property
    def request_count(self) -> int:
        return round(len(self.requests) * self.scale)

    @property
    def prompt_tokens(self) -> int:
        """Prompt and context tokens as sent (no prefix reuse), over the whole job."""
        return round(sum(r.prompt for r in self.requests) * self.scale)

    @property
    def continuation_tokens(self) -> int:
        return round(sum(r.continuation for r in self.requests) * self.scale)

    @property
    def generated_tokens(self) -> int:
        return round(self.generations * self.lengths.mean) if self.lengths else 0

    @property
    def max_tokens(self) -> int:
        return max((r.max_tokens for r in self.requests if r.kind == "generate"), default=0)


# ---------------------------------------------------------------- counting tokens


class Tokens:
    """A model's tokenizer as the planner needs it: text -> units, units -> tokens."""

    how = ""
    per_unit = 1.0  # tokens per unit (1: units are token ids; 1/ratio: units are characters)
    kv_values = 0  # values one token adds to the KV cache (2 × layers × KV heads × head size; 0: unknown)

    def units(self, text: str, bos: bool = True) -> Sequence:
        raise NotImplementedError

    def chat_units(self, messages: list[dict], tools: list | None) -> Sequence:
        raise NotImplementedError


class _LlamaTokens(Tokens):
    """llama.cpp's tokenizer and the GGUF's own chat template (vocabulary only: no weights are loaded)."""

    def __init__(self, path: Path, model_id: str):
        import llama_cpp

        with _quiet_stderr():  # llama.cpp's C logging about the (unused) context size
            self.llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        atexit.register(self.llm.close)  # before interpreter teardown, where its __del__ would fail noisily
        self.how = f"{model_id}'s tokenizer ({path.name})"
        self.kv_values = _gguf_kv_values(self.llm.metadata)
        template = self.llm.metadata.get("tokenizer.chat_template")
        self.formatter = None
        if template:
            text = self.llm._model.token_get_text
            eos, bos = self.llm.token_eos(), self.llm.token_bos()
            self.formatter = llama_cpp.llama_chat_format.Jinja2ChatFormatter(
                template=template, eos_token=text(eos) if eos != -1 else "", bos_token=text(bos) if bos != -1 else "",
            )

    def units(self, text: str, bos: bool = True) -> Sequence:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=bos, special=True) if text else []

    def chat_units(self, messages: list[dict], tools: list | None) -> Sequence:
        if self.formatter is None:
            return self.units("\n".join(m["content"] for m in messages))
        rendered = self.formatter(messages=messages, tools=tools)
        return self.llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)


def _gguf_kv_values(metadata: dict) -> int:
    """KV-cache values per token from a GGUF's header (0 where it does not say)."""
    arch = metadata.get("general.architecture", "")
    try:
        layers = int(metadata[f"{arch}.block_count"])
        heads = int(metadata[f"{arch}.attention.head_count"])
        kv_heads = int(metadata.get(f"{arch}.attention.head_count_kv", heads))
        width = int(metadata[f"{arch}.embedding_length"])
        head_size = int(metadata.get(f"{arch}.attention.key_length", width // heads))
    except (KeyError, ValueError, ZeroDivisionError):
        return 0
    return 2 * layers * kv_heads * head_size


@contextlib.contextmanager
def _quiet_stderr():
    """stderr to /dev/null for the block, file descriptor 2 too (C libraries write there directly)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):  # llama-cpp-python's log callback
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _HFTokens(Tokens):
    """A transformers tokenizer found on this machine (a local folder or the hub cache, never a download)."""

    def __init__(self, tokenizer: Any, how: str, kv_values: int = 0):
        self.tokenizer, self.how, self.kv_values = tokenizer, how, kv_values

    def units(self, text: str, bos: bool = True) -> Sequence:
        return self.tokenizer(text, add_special_tokens=bos)["input_ids"]

    def chat_units(self, messages: list[dict], tools: list | None) -> Sequence:
        if not getattr(self.tokenizer, "chat_template", None):
            return self.units("\n".join(m["content"] for m in messages))
        text = self.tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


class CharTokens(Tokens):
    """No tokenizer here: characters divided by a characters-per-token ratio."""

    def __init__(self, ratio: float, how: str):
        self.per_unit, self.how = 1.0 / ratio, how
        self.ratio = ratio

    def units(self, text: str, bos: bool = True) -> Sequence:
        return text

    def chat_units(self, messages: list[dict], tools: list | None) -> Sequence:
        pad = " " * round(CHAT_MESSAGE_TOKENS * self.ratio)
        return "".join(f"{m['role']}\n{m['content']}{pad}" for m in messages) + (str(tools) if tools else "")


def local_gguf(model: Model) -> Path | None:
    """The model's GGUF file if it is on this machine already (package, path or the hub cache)."""
    source = model.run.gguf
    if source is None:
        return None
    try:
        if source.path or source.package:
            from evalmap.backends.weights import resolve_gguf

            return resolve_gguf(source)
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source.repo, source.file) if source.repo else None
        return Path(found) if isinstance(found, str) else None
    except Exception:  # noqa: BLE001 - a missing file or package only means "not here"
        return None


def _local_hf_tokenizer(model: Model) -> _HFTokens | None:
    ref = model.run.hf or model.hf_repo
    if not ref:
        return None
    try:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from transformers import AutoTokenizer

        folder = Path(ref).expanduser()
        tokenizer = AutoTokenizer.from_pretrained(
            str(folder) if folder.is_dir() else ref, local_files_only=True,
            trust_remote_code=model.run.trust_remote_code,
        )
    except Exception:  # noqa: BLE001 - not in the cache, or transformers missing: no tokenizer here
        return None
    return _HFTokens(tokenizer, f"{model.id}'s tokenizer ({ref})", _hf_kv_values(ref, folder, model))


def _hf_kv_values(ref: str, folder: Path, model: Model) -> int:
    """KV-cache values per token from the model's config on this machine (0 where it is not here)."""
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(folder) if folder.is_dir() else ref, local_files_only=True,
                                            trust_remote_code=model.run.trust_remote_code).get_text_config()
        heads = config.num_attention_heads
        head_size = getattr(config, "head_dim", None) or config.hidden_size // heads
        return 2 * config.num_hidden_layers * getattr(config, "num_key_value_heads", heads) * head_size
    except Exception:  # noqa: BLE001 - no config here, or one without these fields
        return 0


_LOADED: dict[str, Tokens | None] = {}  # a model's tokenizer, loaded once per process (by id and run hints)


def _tokenizer(model: Model) -> Tokens | None:
    key = f"{model.id}:{model.run.model_dump_json()}"
    if key not in _LOADED:
        found: Tokens | None = None
        path = local_gguf(model)
        if path is not None:
            try:
                found = _LlamaTokens(path, model.id)
            except Exception:  # noqa: BLE001 - llama-cpp-python missing or the file unreadable: try transformers
                found = None
        _LOADED[key] = found or _local_hf_tokenizer(model)
    return _LOADED[key]


def model_tokens(model: Model, chars_per_token: float | None = None) -> Tokens:
    """The model's tokenizer when it is on this machine, else a characters-per-token count: the ratio the
    store measured on this model's samples (`chars_per_token`), else DEFAULT_CHARS_PER_TOKEN; `how` says which."""
    found = _tokenizer(model)
    if found is not None:
        return found
    if chars_per_token:
        return CharTokens(chars_per_token, f"~{chars_per_token:.2f} characters per token (this store's "
                          f"{model.id} samples; no tokenizer here)")
    return CharTokens(DEFAULT_CHARS_PER_TOKEN, f"~{DEFAULT_CHARS_PER_TOKEN} characters per token (SmolLM2's "
                      f"average; no {model.id} tokenizer here)")


# ---------------------------------------------------------------- rendering a job


def reference_answers(task: Task, item: Item, prompt: str) -> list[str]:
    """What an answer to the item looks like, where the task's kind can say: the answers of the few-shot
    exemplars it shows the model (their form is what a model imitates), else the item's own reference
    (a coding task's canonical solution, less any part of it that is the prompt itself); the caller cuts them
    at the request's stop sequences."""
    shown = getattr(task, "exemplars", None)
    target = getattr(task, "shot_target", None)
    if callable(shown) and callable(target):
        try:
            answers = [target(ex) for ex in shown()]
        except (KeyError, TypeError, ValueError):
            answers = []
        if answers:
            return [a for a in answers if isinstance(a, str)]
    for name in ("reference_answer", "reference"):
        method = getattr(task, name, None)
        if callable(method):
            try:
                answer = method(item)
            except (KeyError, TypeError, ValueError):
                continue
            if isinstance(answer, str) and answer:
                return [answer[_common(answer, prompt):]]
    return []


def _shape(request: Any, tokens: Tokens, previous: Sequence) -> tuple[RequestShape, Sequence]:
    from evalmap.backends.base import split_context

    if request.kind not in ("loglikelihood", "generate"):  # e.g. a masked LM's forward pass: prefill only
        units = tokens.units(str(getattr(request, "sequence", "")))
        return RequestShape("loglikelihood", _tok(tokens, len(units)), _tok(tokens, _common(units, previous))), units
    if request.kind == "loglikelihood":
        context, continuation = split_context(request)
        units = tokens.units(context)
        whole = tokens.units(context + continuation)
        cont = max(len(whole) - len(units), 1 if continuation else 0)
        shape = RequestShape("loglikelihood", _tok(tokens, len(units)), _tok(tokens, _common(units, previous)),
                             continuation=_tok(tokens, cont))
        return shape, units
    if request.chat:
        units = tokens.chat_units(request.chat_messages(), request.tool_list())
    else:
        units = tokens.units(request.prompt)
    return RequestShape("generate", _tok(tokens, len(units)), _tok(tokens, _common(units, previous)),
                        max_tokens=request.max_tokens), units


def _stopped(text: str, stop: Sequence[str]) -> str:
    """The text up to its first stop sequence, where a generation of it would end."""
    cuts = [text.find(s) for s in stop if s and text.find(s) > 0]
    return text[: min(cuts)] if cuts else text


def _tok(tokens: Tokens, units: int) -> int:
    return round(units * tokens.per_unit)


def _seed_apart(a: Any, b: Any) -> bool:
    """Two requests that differ in their sampling seed at most: the same prompt, tokenized once."""
    return type(a) is type(b) and hasattr(b, "seed") and replace(b, seed=a.seed) == a


def _common(a: Sequence, b: Sequence) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def job_workload(
    task: Task, dataset: Dataset, limit: int | None, seed: int, tokens: Tokens,
    history: Callable[[], Lengths | None] | None = None,
) -> Workload:
    """The requests of a seeded sample of the job's own items (the items `evalmap run` would take with this
    limit and seed), rendered by the task and counted; `history` gives the stored generated lengths of
    this model on these very prompts (None: none stored)."""
    from evalmap.tasks.base import deterministic_subset

    job_items = task.items(limit, seed)
    sample = deterministic_subset(job_items, SAMPLE_ITEMS, seed)
    shapes: list[RequestShape] = []
    references: list[int] = []
    previous: Sequence = []
    for item in sample:
        answers: list[int] | None = None
        last: tuple[Any, RequestShape] | None = None
        for request in task.requests(item):
            if last is not None and _seed_apart(last[0], request):  # pass@k's n generations: counted once
                shape = replace(last[1], shared=last[1].prompt)
            else:
                shape, previous = _shape(request, tokens, previous)
            last = (request, shape)
            shapes.append(shape)
            if shape.kind == "generate":
                if answers is None:
                    texts = reference_answers(task, item, getattr(request, "prompt", ""))
                    answers = [_tok(tokens, len(tokens.units(_stopped(t, request.stop), bos=False))) for t in texts]
                references.extend(min(a, shape.max_tokens) for a in answers)
    lengths = None
    generating = [s for s in shapes if s.kind == "generate"]
    if generating:
        lengths = history() if history is not None else None
        cap = max(s.max_tokens for s in generating)
        if lengths is not None:
            lengths = Lengths(tuple(min(v, cap) for v in lengths.values), lengths.source, lengths.observed)
        elif references:
            lengths = Lengths(tuple(references), "reference answers (few-shot answers or canonical solutions), "
                              "capped at max_tokens")
        else:
            lengths = Lengths((min(dataset.answer_tokens, cap),), "the catalog's typical answer length")
    notes = [] if shapes or not sample else [
        f"{dataset.id} sends no requests through the pipeline (it measures the engine itself): its time is not "
        "estimated"]
    return Workload(
        dataset=dataset.id, items=len(job_items), sampled=len(sample), requests=shapes, lengths=lengths,
        tokens=tokens.how, kv_values=tokens.kv_values, turns=2 if dataset.request_kind == "judge" else 1,
        sandboxed=dataset.request_kind == "execute", notes=notes,
    )


def count_cached(
    workload: Workload, task: Task, limit: int | None, seed: int, cached_keys: Callable[[list[str]], set[str]],
    engine: str,
) -> Workload:
    """The workload with the requests the response cache already answers on `engine` counted (`cached_keys`:
    request keys -> those answered there). Every item the run would take has its requests rendered and keyed
    (no tokenizer: ~0.03 ms an item), or, above KEYED_REQUESTS, a seeded sample of items stands for the job."""
    from evalmap.tasks.base import seeded_rng

    if not workload.requests or not workload.sampled:
        return workload
    items = task.items(limit, seed)
    most = max(1, int(KEYED_REQUESTS * workload.sampled / len(workload.requests)))
    if len(items) > most:  # not deterministic_subset: its first items by rank are a smaller --samples run's
        items = [items[i] for i in sorted(seeded_rng(seed, "cache", workload.dataset).sample(range(len(items)), most))]
    keys = [[r.key() for r in task.requests(item)] for item in items]
    found = cached_keys([k for item in keys for k in item])
    hits, total = sum(k in found for item in keys for k in item), sum(map(len, keys))
    if not hits:
        return workload
    whole = workload.request_count
    cached = whole if hits == total else round(whole * hits / total)
    full = sum(all(k in found for k in item) for item in keys)
    sampled = "" if len(items) == workload.items else f" (counted on a seeded sample of {len(items):,} items)"
    return replace(
        workload, cached=cached, cached_items=round(workload.items * full / len(items)),
        cache=f"{cached:,} of {whole:,} requests answered by the response cache on {engine}{sampled}",
    )


def catalog_workload(dataset: Dataset, items: int, n_samples: int = 1, why: str = "") -> Workload:
    """A job counted from the catalog's typical lengths (`prompt_tokens`, `answer_tokens`, `choices`): for a
    dataset whose task cannot be rendered here (no implementation, no data on this machine)."""
    how = "the catalog's typical lengths" + (f" ({why})" if why else "")
    if dataset.request_kind == "loglikelihood":
        choices = dataset.choices or 4
        shapes = [RequestShape("loglikelihood", dataset.prompt_tokens, dataset.prompt_tokens if c else 0,
                               continuation=dataset.answer_tokens) for c in range(choices)]
        lengths = None
    else:
        shapes = [RequestShape("generate", dataset.prompt_tokens, max_tokens=dataset.answer_tokens)
                  for _ in range(max(1, n_samples))]
        lengths = Lengths((dataset.answer_tokens,), "the catalog's typical answer length")
    return Workload(
        dataset=dataset.id, items=items, sampled=1, requests=shapes, lengths=lengths, tokens=how,
        turns=2 if dataset.request_kind == "judge" else 1, sandboxed=dataset.request_kind == "execute",
    )


def plan_workloads(
    catalog: Any, pairs: Sequence[tuple[str, str, int | None]], config: Any, seed: int, store: Any = None,
    backend: str | None = None,
) -> tuple[dict[tuple[str, str], Workload], list[str]]:
    """Every job's workload ((model, dataset) -> Workload) and notes on what could not be rendered (those
    jobs fall back to the catalog's typical lengths in the planner).

    `config` is the run's TaskConfig (few-shot, chat, mode, max_tokens, data_dir, ...); `store` (a Store or
    None) gives the generated lengths, the characters-per-token ratio measured here and the requests its
    response cache already answers on the engine the run would use (`backend`, else the model's default)."""
    from dataclasses import asdict

    from evalmap.errors import EvalmapError
    from evalmap.tasks.registry import build_task

    tasks: dict[str, Any] = {}
    notes: list[str] = []
    for _, dataset_id, _ in pairs:
        if dataset_id in tasks:
            continue
        try:
            task = build_task(catalog.dataset(dataset_id), config)
            task.items(1, seed)  # the data is here (or fails now, in one sentence)
            tasks[dataset_id] = task
        except (EvalmapError, OSError) as exc:
            tasks[dataset_id] = None
            notes.append(f"{dataset_id}: counted from the catalog's typical lengths ({_first_sentence(exc)})")
    workloads: dict[tuple[str, str], Workload] = {}
    answered: dict[str, bool] = {}  # model -> whether the cache holds its answers on its planned engine
    for model_id, dataset_id, limit in pairs:
        task = tasks[dataset_id]
        if task is None:
            continue
        model = catalog.model(model_id)
        engine = backend or model.run.default_backend
        ratio = store.chars_per_token(model_id) if store is not None else None
        tokens = model_tokens(model, ratio)

        def history(model_id: str = model_id, dataset_id: str = dataset_id, engine: str = engine) -> Lengths | None:
            """The model's stored answers on the planned engine, else on any (the same weights quantized
            otherwise answer at other lengths: SmolLM2 wrote 1,714 gsm8k tokens on transformers where its
            Q4 GGUF on llama.cpp wrote 1,105, on the same 20 items)."""
            if store is None:
                return None
            settings = asdict(tasks[dataset_id].config)
            found, where = store.generated_lengths(model_id, dataset_id, settings, engine), f" on {engine}"
            if not found:
                found, where = store.generated_lengths(model_id, dataset_id, settings), " (other engines)"
            answers = f"{len(found)} {model_id} answer{'' if len(found) == 1 else 's'}"
            return Lengths(tuple(found), f"this store's {answers}{where} under these settings",
                           observed=True) if found else None

        workloads[(model_id, dataset_id)] = job_workload(
            task, catalog.dataset(dataset_id), limit, seed, tokens, history
        )
        if store is not None and answered.setdefault(model_id, store.holds_answers(model_id, engine)):
            workloads[(model_id, dataset_id)] = count_cached(
                workloads[(model_id, dataset_id)], task, limit, seed,
                lambda keys, m=model_id, e=engine: store.cached_keys(m, e, keys), engine,
            )
    return workloads, notes


def _first_sentence(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.rstrip(".")
