"""Typed shape of the catalog: models, datasets and the guide's mapping.

Every YAML file evalmap reads is validated against these classes, so a typo in a
user's catalog is reported with its file, line and field instead of surfacing as
a KeyError deep inside a run.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, computed_field, model_validator
from pydantic_core import PydanticCustomError

from evalmap.backends.registry import BACKENDS, unknown_backend

CATEGORIES = ("coding", "math", "text", "multimodal", "efficiency", "genomics")
TASK_TYPES = (
    "coding",
    "mathematics",
    "reasoning",
    "knowledge",
    "instruction_following",
    "multimodal",
    "life_science",
    "efficiency",
    "function_calling",
)

Category = Literal["coding", "math", "text", "multimodal", "efficiency", "genomics"]
TaskType = Literal[
    "coding",
    "mathematics",
    "reasoning",
    "knowledge",
    "instruction_following",
    "multimodal",
    "life_science",
    "efficiency",
    "function_calling",
]


def _known_backend(name: str) -> str:
    """A backend is a line of the backends table (evalmap/backends/registry.py), read when validating."""
    if name not in BACKENDS:
        raise PydanticCustomError("unknown_backend", "{problem}", {"problem": unknown_backend(name)})
    return name


BackendName = Annotated[str, AfterValidator(_known_backend)]
RequestKind = Literal["generate", "loglikelihood", "execute", "judge", "latency"]


class Strict(BaseModel):
    """Base for catalog records: unknown keys are errors, not silently ignored; a number is finite (.inf or .nan
    would reach the planner's arithmetic)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class GGUFSource(Strict):
    """Where a GGUF file lives: a hub repo + file, a local path, or inside a Python package."""

    repo: str | None = None
    file: str
    package: str | None = Field(
        default=None, description="Python package whose installed files contain `file`."
    )
    path: str | None = None


class RunHints(Strict):
    """How the model is usually served; `--backend` overrides `default_backend`."""

    default_backend: BackendName = "transformers"
    hf: str | None = Field(default=None, description="HF repo id or local folder for transformers/vLLM.")
    gguf: GGUFSource | None = None
    server_model: str | None = Field(
        default=None, description="Model name to send to an OpenAI-compatible server."
    )
    dtype: str = "auto"
    tensor_parallel: int = Field(default=1, ge=1)
    trust_remote_code: bool = False


class Model(Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    name: str
    categories: list[Category] = Field(min_length=1)
    hf_repo: str | None = Field(description="Published HF repo id; null for private fine-tunes.")
    base_model: str | None = Field(
        default=None, description="HF repo id of the base, for fine-tunes."
    )
    user_weights: bool = Field(
        default=False,
        description="True when the weights are the team's own: set run.hf to a local path or repo.",
    )
    params_b: float = Field(gt=0, description="Total parameters, billions.")
    active_params_b: float | None = Field(default=None, gt=0, description="Active parameters (MoE).")
    modality: Literal["text", "vision-language"] = "text"
    objective: Literal["causal_lm", "masked_lm"] = Field(
        default="causal_lm",
        description="masked_lm: an ESM-style masked LM, run on transformers, scoring masked marginals only.",
    )
    context_length: int = Field(gt=0)
    license: str
    gated: bool = False
    chat_template: bool = True
    tool_template: bool = Field(
        default=False,
        description="The chat template renders `tools=` and the model answers with JSON tool calls "
        "(native function calling on local engines).",
    )
    in_guide: bool = Field(default=False, description="Named in the user's mapping guide.")
    unverified: list[str] = Field(
        default_factory=list, description="Fields not confirmed by a primary source."
    )
    run: RunHints = RunHints()
    notes: str = ""

    @property
    def compute_params_b(self) -> float:
        """Parameters touched per token: what drives FLOPs and so time."""
        return self.active_params_b or self.params_b


class HFSource(Strict):
    id: str
    config: str | None = None
    split: str
    revision: str | None = None


class LocalFiles(Strict):
    """Layout under a `--data-dir` folder (same as `../shared/datasets`)."""

    folder: str
    files: list[str] = Field(min_length=1)
    format: Literal["jsonl", "jsonl.gz", "json", "json.gz", "csv", "csv.gz", "txt", "mixed"]


class Variant(Strict):
    """A named subset or alternative split (e.g. mbpp `sanitized`, bigcodebench `hard`)."""

    name: str
    count: int = Field(gt=0)
    description: str = ""
    source: HFSource | None = None


class Status(StrEnum):
    """The guide's label for a dataset (✅ ready / 🔄 expansion); whether evalmap can run it is `runnable`."""

    ready = "ready"
    expansion = "expansion"


class Dataset(Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    name: str
    task_type: TaskType
    description: str = ""
    source: HFSource
    local: LocalFiles | None = None
    count: int = Field(gt=0, description="Items in the evaluation split.")
    guide_count: int | None = Field(
        default=None, description="The figure the guide uses, where it differs from `count`."
    )
    guide_status: Status = Field(description="The guide's label; not whether evalmap can run it.")
    request_kind: RequestKind
    metrics: list[str] = Field(min_length=1)
    license: str
    variants: list[Variant] = Field(default_factory=list)
    prompt_tokens: int = Field(
        default=200, gt=0,
        description="Mean tokens per request as the task renders it under its default options, in SmolLM2's "
        "tokens: a generation's prompt (few-shot and chat template included, images not), a log-likelihood "
        "request's context. What `evalmap plan` counts when it cannot render the task here.",
    )
    answer_tokens: int = Field(
        default=64, gt=0,
        description="Mean answer tokens, in SmolLM2's tokens: a log-likelihood request's continuation (one "
        "choice), or a generation's typical length (the task's reference answers where it shows some); "
        "the plan's fallback for a dataset it cannot render here.",
    )
    choices: int | None = Field(
        default=None, ge=2, description="Options per item for log-likelihood tasks."
    )
    notes: str = ""

    @computed_field
    @property
    def runnable(self) -> bool:
        """Whether evalmap has a task for it (the task registry), which is what `ready` cannot promise."""
        from evalmap.tasks.table import SPECS  # data only: the registry itself imports this module

        return self.id in SPECS

    @model_validator(mode="before")
    @classmethod
    def _renamed_status(cls, data: Any) -> Any:
        """User catalogs written before the rename say `status:`; it meant the guide's label, so it maps there
        (and wins over the packaged value it was merged onto)."""
        if isinstance(data, dict) and "status" in data:
            data = {k: v for k, v in data.items() if k != "status"} | {"guide_status": data["status"]}
        if isinstance(data, dict):  # computed, never given (a dumped record may carry it back)
            data = {k: v for k, v in data.items() if k != "runnable"}
        return data


class Tier(Strict):
    """One priority row of a guide section: a tier name and the datasets it adds.

    `datasets` holds ids or selectors (`status:ready`, `task_type:coding`, `all`, ...: see
    `Catalog.select_datasets`);
    `sample_limit` is the per-dataset sample count the tier asks for (the guide's
    efficiency tiers run "2-5" or "10-20" samples per dataset).
    """

    name: str
    datasets: list[str]
    sample_limit: int | None = Field(default=None, gt=0)
    guide_samples: int | str | None = None


class Group(Strict):
    """The guide's recommendation for a category: a named dataset group in priority tiers."""

    category: Category
    title: str
    group: str
    priority: str
    guide_models: list[str] = Field(description="Models the guide lists in this section.")
    tiers: list[Tier] = Field(min_length=1)
    strategy: str = ""
    guide_samples: int | str | None = None


class Pool(Strict):
    """A cell block of the guide's evaluation matrix or usage statistics: models × datasets.

    Models are ids or selectors (`guide:coding` = the guide's models of that section,
    `category:coding` = every catalog model in it); datasets are ids or selectors as
    in `Tier`. The `guide_*` fields keep the guide's own figures to show beside ours.
    """

    key: str
    label: str
    category: Category | Literal["general"]
    group: str
    models: list[str]
    datasets: list[str]
    catalog_models: list[str] | None = Field(
        default=None,
        description="Models for the whole-catalog figure; default: `guide:X` widened to `category:X`.",
    )
    sample_limit: tuple[int, int] | None = None
    guide_models: int | None = None
    guide_datasets: int | None = None
    guide_samples: int | str | None = None
    note: str = ""


class Mapping(Strict):
    groups: list[Group]
    pools: list[Pool]
    ready_matrix: list[str]
    expansion_matrix: list[str]
    usage_immediate: list[str]
    usage_comprehensive: list[str]
    guide_totals: dict[str, int]
    notes: list[str] = Field(default_factory=list)


class PlanStep(Strict):
    models: list[str] = Field(min_length=1)
    datasets: list[str] = Field(min_length=1)
    samples: int | None = Field(default=None, gt=0)
    comment: str = ""


class Plan(Strict):
    """A saved selection of models × datasets × sample limit (the guide's Plans A, B, C)."""

    id: str
    name: str
    description: str = ""
    steps: list[PlanStep] = Field(min_length=1)
