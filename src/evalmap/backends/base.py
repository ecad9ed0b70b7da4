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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable

from evalmap.hashing import sha256_json


@dataclass(frozen=True)
class GenerationRequest:
    """Generate a continuation.

    `prompt` is raw text for completion-style requests; `messages` (OpenAI chat
    format) is used instead when `chat` is true and the backend applies the model's
    own chat template.
    """

    prompt: str = ""
    messages: tuple[tuple[str, str], ...] = ()
    chat: bool = False
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0

    kind = "generate"

    def key(self) -> str:
        return sha256_json({"kind": self.kind, **asdict(self)})

    def chat_messages(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Log P(continuation | context), summed over the continuation's tokens."""

    context: str
    continuation: str

    kind = "loglikelihood"

    def key(self) -> str:
        return sha256_json({"kind": self.kind, **asdict(self)})


Request = GenerationRequest | LoglikelihoodRequest


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
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    latency_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LogLikelihood:
    logprob: float
    is_greedy: bool
    continuation_tokens: int = 0
    context_tokens: int = 0
    latency_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


Response = Generation | LogLikelihood
OnResponse = Callable[[int, Response], None]  # (index of the request in the call, its response)


def response_from_dict(kind: str, data: dict) -> Response:
    return Generation(**data) if kind == "generate" else LogLikelihood(**data)


@dataclass(frozen=True)
class Capabilities:
    chat_template: bool = True
    logprobs: bool = True
    images: bool = False
    tools: bool = False
    max_context: int = 2048


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


def length_sorted(indices_and_lengths: list[tuple[int, int]], descending: bool = True) -> list[int]:
    """Order request indices by length: long first finds OOM early and pads least."""
    return [i for i, _ in sorted(indices_and_lengths, key=lambda t: (-t[1] if descending else t[1], t[0]))]
