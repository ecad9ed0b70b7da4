"""The Backend contract: what any inference engine must answer.

Shaped like lm-eval's LM interface (generate / loglikelihood) so tasks never know
the engine. Requests are plain frozen dataclasses with a stable `key()` so the
response cache can be keyed by (model fingerprint, request hash) regardless of
batch size, concurrency or rank count.

Responses are handed back as they are ready: `generate` and `loglikelihood` take an
optional `on_response(index, response)` callback that an engine calls once per request
as soon as that answer exists (an HTTP reply as it arrives, a local engine after each
batch), before the call returns. When the call raises, every response it delivered
before stays valid, so the runner caches each success at once and a rerun only asks
for what failed.

The runner feeds an engine through `stream(backend, requests, sink)`: one call for all of a
model's uncached requests (every job, both kinds, in job order), so the engine's window spans
job boundaries. An engine that can keep many requests in flight itself (a server) defines
`stream(requests, sink)`; any other is fed consecutive same-kind slices of `window` requests
(its class attribute: a transformers window is length-sorted into batches, vLLM takes thousands).
Local engines may also accept `on_tokens(n)` in `generate` to report tokens as they are made.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Protocol, runtime_checkable

from evalmap.errors import EvalmapError
from evalmap.hashing import sha256_json


def _request_key(request) -> str:
    """sha256 of the request's kind and fields, computed once per request object (the runner asks for
    it several times per request; hashing dominated a cached rerun). A field marked `keyed_when_set`
    joins the hash only when it differs from its default, so adding one keeps every cached key.
    Images join it as (mime, sha256 of their bytes)."""
    key = request.__dict__.get("_key")
    if key is None:
        body = {
            f.name: _key_value(getattr(request, f.name))
            for f in fields(request)
            if not (f.metadata.get("keyed_when_set") and getattr(request, f.name) == f.default)
        }
        key = sha256_json({"kind": request.kind, **body})
        object.__setattr__(request, "_key", key)
    return key


def _key_value(value):
    if isinstance(value, tuple) and value and all(isinstance(v, Image) for v in value):
        return [[image.mime, image.sha256] for image in value]
    return value


IMAGE_PLACEHOLDER = "<|evalmap:image|>"
"""Where an image goes in a request's text: the n-th placeholder (over all messages, in order, or in
`prompt`) is the request's n-th image. Engines replace it by their own form (an OpenAI `image_url` part,
the processor's image token through the chat template, vLLM's multi_modal_data)."""


@dataclass(frozen=True)
class Image:
    """One image sent with a request: its encoded bytes (PNG, JPEG, ...) and their MIME type."""

    data: bytes = field(repr=False)
    mime: str = "image/png"

    @property
    def sha256(self) -> str:
        digest = self.__dict__.get("_sha256")
        if digest is None:
            digest = hashlib.sha256(self.data).hexdigest()
            object.__setattr__(self, "_sha256", digest)
        return digest

    def data_url(self) -> str:
        """The image as a `data:` URL (what an OpenAI-compatible server takes in an `image_url` part)."""
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def split_images(text: str) -> list[str]:
    """`text` cut at each IMAGE_PLACEHOLDER: n placeholders give n + 1 pieces (an image between each)."""
    return text.split(IMAGE_PLACEHOLDER)


@dataclass(frozen=True)
class GenerationRequest:
    """Generate a continuation.

    `prompt` is raw text for completion-style requests; `messages` (OpenAI chat
    format) is used instead when `chat` is true and the backend applies the model's
    own chat template. `tools` (chat only) is the JSON text of an OpenAI `tools` list: a server
    gets it as `tools`, a local engine renders it through the chat template's `tools=`.
    `images` are placed at the IMAGE_PLACEHOLDERs of the text, in order (as many of each); they join
    the cache key by their bytes' sha256.
    """

    prompt: str = ""
    messages: tuple[tuple[str, str], ...] = ()
    chat: bool = False
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    tools: str = field(default="", metadata={"keyed_when_set": True})
    images: tuple[Image, ...] = field(default=(), metadata={"keyed_when_set": True})

    kind = "generate"

    def __post_init__(self) -> None:
        text = self.prompt + "".join(content for _, content in self.messages)
        placed = text.count(IMAGE_PLACEHOLDER)
        if placed != len(self.images):
            raise ValueError(f"a request with {len(self.images)} image(s) has {placed} image placeholder(s)")

    def key(self) -> str:
        return _request_key(self)

    def chat_messages(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    def tool_list(self) -> list[dict] | None:
        return json.loads(self.tools) if self.tools else None


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Log P(continuation | context), summed over the continuation's tokens."""

    context: str
    continuation: str

    kind = "loglikelihood"

    def key(self) -> str:
        return _request_key(self)


@dataclass(frozen=True)
class MaskedPositionRequest:
    """log p(letter at `position` | `sequence` with that position masked), for each letter of `alphabet`:
    one forward pass of a masked LM (ESM-style protein models), shared by every variant mutated at that
    position (ProteinGym's masked marginals). `position` is 1-based; each letter is one token."""

    sequence: str
    position: int
    alphabet: str

    kind = "masked_position"

    def key(self) -> str:
        return _request_key(self)


Request = GenerationRequest | LoglikelihoodRequest | MaskedPositionRequest


def split_context(request: LoglikelihoodRequest) -> tuple[str, str]:
    """lm-eval's boundary: trailing whitespace of the context belongs to the continuation.

    Every engine must tokenize the same way, or the same weights score differently.
    """
    context, continuation = request.context, request.continuation
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        return context[:-n_spaces], context[-n_spaces:] + continuation
    return context, continuation


@dataclass
class Generation:
    """An answer. `tool_calls` holds the calls a server returned natively (OpenAI `tool_calls` as
    [{"name", "arguments"}], arguments as the JSON text sent); None when the answer is text only."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    latency_s: float = 0.0
    tool_calls: list[dict] | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        if data["tool_calls"] is None:
            del data["tool_calls"]  # a text answer is stored as before tool calls existed
        return data


@dataclass
class LogLikelihood:
    logprob: float
    is_greedy: bool
    continuation_tokens: int = 0
    context_tokens: int = 0
    latency_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PositionLogprobs:
    """The answer to a MaskedPositionRequest: log-probability of each letter of its alphabet."""

    logprobs: dict[str, float]
    context_tokens: int = 0  # the masked sequence's length in tokens (special tokens included)
    latency_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


Response = Generation | LogLikelihood | PositionLogprobs
OnResponse = Callable[[int, Response], None]  # (index of the request in the call, its response)
OnTokens = Callable[[int], None]  # n more tokens were generated (progress only, never scored)


class Sink(Protocol):
    """Where a streaming engine hands its results, from any thread, each request exactly once."""

    def response(self, index: int, response: Response) -> None:
        """The answer to requests[index]."""

    def failure(self, index: int, error: Exception) -> None:
        """requests[index] was given up on (a server that kept failing it after every retry);
        the run goes on without it and counts it as failed."""

    def tokens(self, n: int) -> None:
        """n more tokens were generated (progress only)."""


RESPONSES = {"generate": Generation, "loglikelihood": LogLikelihood, "masked_position": PositionLogprobs}
ENGINE_METHODS = {"generate": "generate", "loglikelihood": "loglikelihood", "masked_position": "masked_positions"}
"""Which response class and which engine method answer each request kind."""


def response_from_dict(kind: str, data: dict) -> Response:
    return RESPONSES[kind](**data)


@dataclass(frozen=True)
class Capabilities:
    chat_template: bool = True
    logprobs: bool = True
    images: bool = False
    tools: bool = False
    max_context: int = 2048
    masked_positions: bool = False  # a masked LM: answers MaskedPositionRequests (and neither other kind)


class PromptTooLongError(EvalmapError):
    """One request's prompt does not fit the engine's context: that request fails (its item is counted
    as failed, not scored, and retried by a rerun, e.g. with a larger n_ctx), not the whole run."""


def template_renders_tools(template: object) -> bool:
    """A Jinja chat template that reads a `tools` variable (SmolLM2's does not: it would drop them)."""
    return isinstance(template, str) and "tools" in template


def tools_refused(model: str) -> EvalmapError:
    """The one sentence for tools sent to a local model whose chat template would silently drop them."""
    return EvalmapError(
        f"The chat template of {model} does not render tools, so native function calling would send none; "
        "run with --mode prompt (tools described in the system prompt)."
    )


@dataclass
class BackendInfo:
    """Recorded with every score: the same weights score slightly differently per engine."""

    name: str
    version: str
    model: str
    fingerprint: str
    extra: dict = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    info: BackendInfo
    capabilities: Capabilities

    def generate(
        self, requests: list[GenerationRequest], on_response: OnResponse | None = None
    ) -> list[Generation]: ...

    def loglikelihood(
        self, requests: list[LoglikelihoodRequest], on_response: OnResponse | None = None
    ) -> list[LogLikelihood]: ...

    def close(self) -> None: ...

    # A masked LM's engine also has `masked_positions(requests, on_response=None) -> list[PositionLogprobs]`.


DEFAULT_WINDOW = 256  # requests per slice for an engine without its own `window` or `stream`


def stream(backend: Backend, requests: Sequence[Request], sink: Sink) -> None:
    """Answer every request through `sink`: the engine's own `stream` where it has one (a server keeps
    its window full across kinds and jobs), else consecutive same-kind slices of its `window`.

    Raises when the engine fails as a whole (a local engine's error, a server that rejects requests);
    responses delivered before stay valid.
    """
    own = getattr(backend, "stream", None)
    if own is not None:
        own(requests, sink)
        return
    window = max(1, int(getattr(backend, "window", DEFAULT_WINDOW)))
    start = 0
    while start < len(requests):
        kind = requests[start].kind
        end = start + 1
        while end < len(requests) and end - start < window and requests[end].kind == kind:
            end += 1
        method = getattr(backend, ENGINE_METHODS[kind])
        _call(method, list(requests[start:end]), start, sink)
        start = end


def _call(method: Callable, requests: list[Request], offset: int, sink: Sink) -> None:
    """One engine call; an engine without `on_response` delivers everything when its call returns.

    A prompt too long for the engine fails its own request (`sink.failure`): the call's other
    requests that were not delivered yet are asked again one by one."""
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs: dict = {}
    if "on_tokens" in params:
        kwargs["on_tokens"] = sink.tokens
    delivered: set[int] = set()

    def deliver(i: int, response: Response) -> None:
        delivered.add(i)
        sink.response(offset + i, response)

    try:
        if "on_response" in params:
            method(requests, on_response=deliver, **kwargs)
            return
        for i, response in enumerate(method(requests, **kwargs)):
            deliver(i, response)
    except PromptTooLongError as exc:
        if len(requests) == 1:
            sink.failure(offset, exc)
            return
        for i, request in enumerate(requests):
            if i not in delivered:
                _call(method, [request], offset + i, sink)


def length_sorted(indices_and_lengths: list[tuple[int, int]], descending: bool = True) -> list[int]:
    """Order request indices by length: long first finds OOM early and pads least."""
    return [i for i, _ in sorted(indices_and_lengths, key=lambda t: (-t[1] if descending else t[1], t[0]))]
