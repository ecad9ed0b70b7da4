"""Visual question answering: a question about an image, a short generated answer, a per-dataset judge.

A `VisualQASpec` is one dataset (scienceqa, vqa_v2, chartqa): `question(record)` is the text the model
reads, the record's `image` field an `ImageRef` (None for an item without an image, which is sent as
text only), `judge(record, text)` scores an answer on the spec's one metric, and `groups` name the
per-group scores (ScienceQA's subject / context / grade, VQA's answer type, ChartQA's human and
augmented parts). A group value may be a list: the sample then counts in each (ScienceQA's TXT and IMG
contexts overlap, as in the paper).

The request is one user turn, 0-shot and greedy as lmms-eval asks these datasets: the image first (an
IMAGE_PLACEHOLDER, which every engine replaces by its own image form), a newline, then the question
(LLaVA's layout). `--no-chat` sends the same text as a plain prompt.

Each sample's details carry its image as a small JPEG data URL (THUMBNAIL_PX on the longest side,
about 10-30 kB) for the report's sample viewer: enough to see what was asked, not a copy of the data.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from evalmap.backends.base import IMAGE_PLACEHOLDER, Generation, Image, Request, Response
from evalmap.catalog.schema import Dataset
from evalmap.errors import EvalmapError
from evalmap.metrics.stats import Score, mean_score
from evalmap.tasks.base import Item, SampleResult, TaskConfig, deterministic_subset, prompt_hash
from evalmap.tasks.data import DataFormatError, DataSource, ImageRef, LazyRecords, Record
from evalmap.tasks.kinds.common import SpecBase, generations, resolve_variant

THUMBNAIL_PX = 320
_THUMBNAIL_QUALITY = 70
_SENDABLE = {  # magic bytes -> MIME type every engine (and the OpenAI API) takes as is
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}


@dataclass(frozen=True)
class Judgement:
    """One answer scored: the metric's value, what was read from the answer, and the gold it met."""

    value: float
    extracted: Any
    target: Any


Group = Callable[[Record], "str | list[str] | None"]


@dataclass(frozen=True)
class VisualQASpec(SpecBase):
    """An image question dataset: its question text, its judge, its metric and groups."""

    dataset_id: str
    source: DataSource
    question: Callable[[Record], str]
    judge: Callable[[Record, str], Judgement]
    metric: str
    groups: tuple[tuple[str, Group], ...] = ()
    variants: Mapping[str, DataSource] = field(default_factory=dict)
    text_only_variants: tuple[str, ...] = ()  # variants whose items carry no image (a text model may run them)
    max_tokens: int = 16
    chat_default: bool = True
    headline: str | None = None

    @property
    def metric_names(self) -> tuple[str, ...]:
        return (self.metric,)

    def build(self, dataset: Dataset, config: TaskConfig) -> VisualQATask:
        return VisualQATask(self, dataset, config)


@dataclass
class VisualQATask:
    spec: VisualQASpec
    dataset: Dataset
    config: TaskConfig
    dataset_id: str = field(init=False)
    source: DataSource = field(init=False, repr=False)
    _records: LazyRecords = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.dataset_id = self.dataset.id
        if self.config.num_fewshot:
            raise EvalmapError(f"{self.dataset_id} is asked 0-shot (as lmms-eval does); drop --num-fewshot.")
        if self.config.mode not in (None, "generate"):
            raise EvalmapError(f"{self.dataset_id} is scored from generated answers only; drop --mode.")
        self.dataset, self.source = resolve_variant(self.dataset, self.spec.source, self.spec.variants, self.config)
        self._records = LazyRecords(self.dataset, self.config.data_dir, self.source)

    @property
    def needs_images(self) -> bool:
        """Whether this run's items carry images (False for a text-only variant, which a text model may run)."""
        return self.config.variant not in self.spec.text_only_variants

    @property
    def chat(self) -> bool:
        return self.spec.chat_default if self.config.chat is None else self.config.chat

    @property
    def metric_names(self) -> list[str]:
        return [self.spec.metric]

    def items(self, limit: int | None = None, seed: int = 1234) -> list[Item]:
        all_items = [Item(id=str(r["id"]), data=r) for r in self._records.get()]
        return deterministic_subset(all_items, limit, seed)

    # -- requests ----------------------------------------------------------------------

    def text(self, item: Item) -> str:
        """What the model reads: the image's place, then the question (the question alone without an image)."""
        question = self.spec.question(item.data)
        return question if item.data.get("image") is None else f"{IMAGE_PLACEHOLDER}\n{question}"

    def images(self, item: Item) -> tuple[Image, ...]:
        ref = item.data.get("image")
        return () if ref is None else (self._image(item, ref),)

    def requests(self, item: Item) -> list[Request]:
        text, images = self.text(item), self.images(item)
        body = dict(messages=(("user", text),), chat=True) if self.chat else dict(prompt=text)
        return generations(self.config, self.spec.max_tokens, **body, images=images)

    def _image(self, item: Item, ref: ImageRef) -> Image:
        try:
            data = ref.read()
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(
                f"Dataset {self.dataset_id!r}: the image of item {item.id} ({ref.where}) could not be read "
                f"({type(exc).__name__}: {exc}); fix or remove that record."
            ) from None
        if not isinstance(data, bytes) or not data:
            raise DataFormatError(
                f"Dataset {self.dataset_id!r}: item {item.id} ({ref.where}) has an empty image; fix or remove it."
            )
        try:
            return as_sendable(data)
        except ValueError:
            raise DataFormatError(
                f"Dataset {self.dataset_id!r}: the image of item {item.id} ({ref.where}) is not a picture "
                "Pillow can read; fix or remove that record."
            ) from None

    # -- scoring ------------------------------------------------------------------------

    def score(self, item: Item, responses: list[Response]) -> SampleResult:
        texts = [r.text if isinstance(r, Generation) else "" for r in responses] or [""]
        judged = [self.spec.judge(item.data, text) for text in texts]
        first = judged[0]
        details: dict[str, Any] = {}
        groups = {key: fn(item.data) for key, fn in self.spec.groups}
        groups = {key: value for key, value in groups.items() if value is not None}
        if groups:
            details["groups"] = groups
        if len(judged) > 1:
            details["samples"] = [j.extracted for j in judged]
        ref = item.data.get("image")
        if ref is not None:
            thumb = thumbnail_data_url(ref)
            if thumb is not None:
                details["images"] = [thumb]
        value = sum(j.value for j in judged) / len(judged)
        return SampleResult(
            metrics={self.spec.metric: value}, extracted=first.extracted, target=first.target, details=details
        )

    def aggregate(self, samples: list[SampleResult]) -> list[Score]:
        """The metric over all samples, then per value of each group ("<metric>/<group>:<value>")."""
        metric = self.spec.metric
        scores = [mean_score(metric, [s.metrics[metric] for s in samples if metric in s.metrics])]
        for key, _ in self.spec.groups:
            scores += group_scores(samples, metric, key)
        return scores

    def prompt_hash(self) -> str:
        return prompt_hash(self)


def group_scores(samples: list[SampleResult], metric: str, key: str) -> list[Score]:
    """`metric` per value of `details["groups"][key]`; a sample with a list of values counts in each."""
    by_value: dict[str, list[float]] = {}
    for s in samples:
        value = (s.details or {}).get("groups", {}).get(key)
        if value is None or metric not in s.metrics:
            continue
        for v in value if isinstance(value, list) else [value]:
            by_value.setdefault(str(v), []).append(s.metrics[metric])
    return [mean_score(f"{metric}/{key}:{v}", values) for v, values in sorted(by_value.items())]


def as_sendable(data: bytes) -> Image:
    """The image with its MIME type; a format not every engine takes (BMP, TIFF, WebP, ...) becomes PNG.
    Raises ValueError when the bytes are not an image."""
    for magic, mime in _SENDABLE.items():
        if data.startswith(magic):
            return Image(data, mime)
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(data)) as picture:
            out = io.BytesIO()
            picture.save(out, format="PNG")
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(str(exc)) from None
    return Image(out.getvalue(), "image/png")


def thumbnail_data_url(ref: ImageRef) -> str | None:
    """A small JPEG of the image as a data URL, for the report (None when it cannot be read)."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(ref.read())) as picture:
            small = picture.convert("RGB")
            small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            out = io.BytesIO()
            small.save(out, format="JPEG", quality=_THUMBNAIL_QUALITY)
    except (UnidentifiedImageError, OSError, ValueError, KeyError, TypeError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")
