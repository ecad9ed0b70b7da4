"""Can this model, on this engine, answer what this dataset asks? Decided before any model loads.

What a job needs comes from its task (the kinds of the requests it builds for its first items, so
`--mode` counts) and its catalog entry (a `multimodal` dataset sends images; `prompt_tokens` is its
typical prompt). What a model can do comes from its backend class's `capabilities_before_load`:
the catalog entry and the engine's class-level facts, or for a server the answer of GET /v1/models,
never a loaded model or a request. A mismatch is one sentence (exit 2) before anything runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evalmap.backends.base import Capabilities
from evalmap.backends.registry import backend_class
from evalmap.errors import EvalmapError

if TYPE_CHECKING:
    from evalmap.backends import BackendOptions
    from evalmap.catalog.schema import Dataset, Model

SAMPLE_ITEMS = 3  # items whose requests are looked at
TIMED_BACKENDS = ("llamacpp", "transformers", "openai")  # engines backends.timed can time per token


class CapabilityError(EvalmapError):
    """A model or its engine cannot serve what a dataset asks."""


@dataclass(frozen=True)
class Needs:
    """What one dataset's requests ask of a model."""

    loglikelihood: bool = False
    generate: bool = False
    masked_positions: bool = False
    images: bool = False
    tools: bool = False
    prompt_tokens: int = 0  # typical prompt (catalog)
    answer_tokens: int = 0  # the longest answer asked for (generation max_tokens), else the catalog's
    timing: bool = False  # the task measures the engine per token (tasks.kinds.latency: `measure`)

    @property
    def context(self) -> int:
        return self.prompt_tokens + self.answer_tokens


def no_projector(model: str) -> str:
    """Why llama.cpp sees no images (the end of a sentence): evalmap opens a GGUF without its projector."""
    return (
        f"llama.cpp runs {model} without a multimodal projector (mmproj), so it cannot see images; run it on the "
        "transformers or vllm backend, or on a server that loads its projector."
    )


def _declares_images(dataset: Dataset, task: Any) -> bool:
    """A task that knows says (a visual-QA task: False for a text-only variant); else a multimodal dataset does."""
    return bool(getattr(task, "needs_images", dataset.task_type == "multimodal"))


def task_needs(dataset: Dataset, task: Any, seed: int) -> Needs:
    """Read from the requests the task builds for its first items (no model involved)."""
    requests = [r for item in task.items(SAMPLE_ITEMS, seed) for r in task.requests(item)]
    if requests:
        kinds = {r.kind for r in requests}
    else:  # no items: the run's mode, else the catalog's kind
        kinds = {getattr(getattr(task, "config", None), "mode", None) or dataset.request_kind}
    answers = [r.max_tokens for r in requests if r.kind == "generate"]
    return Needs(
        loglikelihood="loglikelihood" in kinds,
        generate="generate" in kinds,
        masked_positions="masked_position" in kinds,
        images=_declares_images(dataset, task) or any(getattr(r, "images", None) for r in requests),
        tools=any(getattr(r, "tools", None) for r in requests),
        prompt_tokens=dataset.prompt_tokens,
        answer_tokens=max(answers) if answers else dataset.answer_tokens,
        timing=getattr(task, "measure", None) is not None,
    )


def mismatch(model: Model, dataset: Dataset, backend: str, caps: Capabilities, needs: Needs,
             options: BackendOptions, text_variant: str | None = None) -> str | None:
    """One sentence saying why `model` on `backend` cannot run `dataset`, or None when it can; `text_variant`
    names the dataset's variant without images, offered to a text-only model."""
    server = bool(options.base_url) and backend == "openai"
    engine = f"the server at {options.base_url}" if server else f"the {backend} backend"
    if needs.timing and backend not in TIMED_BACKENDS:
        return (
            f"{dataset.id} times the engine per token, which evalmap does on llama.cpp or transformers in process "
            f"or an OpenAI-compatible server, not on {engine}; run it with --backend llamacpp, or serve the model "
            "and use --backend openai --base-url URL."
        )
    if needs.masked_positions and not caps.masked_positions:
        return (
            f"{dataset.id} in masked-marginals mode needs a masked language model (catalog `objective: masked_lm`) on "
            f"the transformers backend, but {model.id} on {engine} is not one; run it without --mode masked_marginals."
        )
    if caps.masked_positions and (needs.loglikelihood or needs.generate):
        return (
            f"{model.id} is a masked language model: it answers masked marginals only, so {dataset.id} must run "
            "with --mode masked_marginals (a dataset that has that mode)."
        )
    if needs.images and model.modality == "text":
        return (
            f"{dataset.id} is an image dataset, but {model.id} is a text-only model; pick a vision-language "
            "model (`evalmap models --category multimodal`)"
            + (f", or run its questions without images with --variant {text_variant}" if text_variant else "")
            + "."
        )
    if needs.images and not caps.images:
        if backend == "llamacpp":
            return f"{dataset.id} sends images, but {no_projector(model.id)}"
        return (
            f"{dataset.id} sends images, but {engine} cannot send images to {model.id}; use the transformers or "
            "vllm backend, or a server that takes images."
        )
    if needs.tools and not caps.tools:
        return (
            f"{dataset.id} sends tool definitions, but {engine} cannot pass tools to {model.id}; use a backend "
            "that does."
        )
    if needs.loglikelihood and not caps.logprobs:
        return (
            f"{dataset.id} is scored by log-likelihoods, but {engine} gives none evalmap can trust for {model.id}"
            + (" (of OpenAI-compatible servers only vLLM's prompt logprobs are right)" if server else "")
            + "; run it with --mode generate if the dataset has a generative mode, or on "
            + ("a vLLM server or a local backend." if server else "another backend.")
        )
    if caps.max_context < needs.context:
        return (
            f"{dataset.id} needs about {needs.context:,} tokens of context ({needs.prompt_tokens:,} prompt + "
            f"{needs.answer_tokens:,} answer), but {model.id} on {engine} has {caps.max_context:,}; pick a model "
            "or server with a longer context."
        )
    return None


def check_declared(catalog: Any, pairs: Iterable[tuple[str, str, Any]], tasks: dict[str, Any],
                   options: BackendOptions) -> dict[str, Capabilities]:
    """Raise CapabilityError (one sentence, exit 2) for what is known before any dataset loads: a backend name,
    a team fine-tune's missing weights, images asked of a model or engine that takes none. Returns the declared
    capabilities of the models that were asked (those with an image dataset: a server is probed once, GET
    /v1/models, and only then, so bad data or options fail before any request; a local engine loads nothing)."""
    from evalmap.backends import backend_name, missing_weights

    pairs = list(pairs)
    names = {m: backend_name(catalog.model(m), options) for m, _, _ in pairs}  # every name checked first
    for model_id, name in names.items():
        problem = missing_weights(catalog.model(model_id), name)
        if problem:
            raise CapabilityError(problem)
    declared: dict[str, Capabilities] = {}
    for model_id, dataset_id, _ in pairs:
        model, dataset = catalog.model(model_id), catalog.dataset(dataset_id)
        task = tasks[dataset_id]
        if _declares_images(dataset, task):  # said before its items load (the hub may be away)
            if model_id not in declared:
                declared[model_id] = backend_class(names[model_id]).capabilities_before_load(model, options)
            text_variants = getattr(getattr(task, "spec", None), "text_only_variants", ())
            problem = mismatch(
                model, dataset, names[model_id], declared[model_id], Needs(images=True), options,
                text_variants[0] if text_variants else None,
            )  # fmt: skip
            if problem:
                raise CapabilityError(problem)
    return declared


def check_plan(catalog: Any, pairs: Iterable[tuple[str, str, Any]], tasks: dict[str, Any],
               options: BackendOptions, seed: int, declared: dict[str, Capabilities] | None = None) -> None:
    """Raise CapabilityError (one sentence, exit 2) for the first job its model cannot serve: `check_declared`
    (unless its answer is passed as `declared`), then what each dataset's first requests ask (their kinds,
    tools, context).

    `tasks` maps each dataset id of `pairs` to its built Task.
    """
    from evalmap.backends import backend_name

    pairs = list(pairs)
    if declared is None:
        declared = check_declared(catalog, pairs, tasks, options)
    needs: dict[str, Needs] = {}
    for model_id, dataset_id, _ in pairs:
        model, dataset = catalog.model(model_id), catalog.dataset(dataset_id)
        name = backend_name(model, options)
        if model_id not in declared:
            declared[model_id] = backend_class(name).capabilities_before_load(model, options)
        if dataset_id not in needs:
            needs[dataset_id] = task_needs(dataset, tasks[dataset_id], seed)
        problem = mismatch(model, dataset, name, declared[model_id], needs[dataset_id], options)
        if problem:
            raise CapabilityError(problem)
