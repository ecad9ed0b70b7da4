"""llama.cpp through llama-cpp-python: GGUF models fast on a CPU.

Generation goes through `create_completion`; a chat request is rendered with the model's
own chat template from the GGUF metadata exactly as `create_chat_completion` renders it
(same formatter, stop token and stopping rule), so both kinds take the one path that can
report tokens as they are made (`on_tokens`, through llama-cpp-python's per-token
`stopping_criteria` hook, which never stops anything here). Each request is seeded with
its own `seed`. Consecutive generations reuse the KV cache of their common prompt prefix
(llama-cpp-python's own prefix match: 8-shot prompts share most of their tokens) and
compute logits for the last prompt position only; both give bit-identical logits to a
fresh evaluation of the whole prompt (llama.cpp computes each token's row on its own), so
an answer still depends on the request alone, never on its neighbours or its batch.

Log-likelihoods are read from the model's own logits: the context is `eval()`-ed,
then the continuation, and `Llama.scores` (one row of logits per position, kept
because the model is built with `logits_all=True`) gives log-softmax at the positions
that predict each continuation token. We never use `create_completion(echo=True,
logprobs=...)`: its prompt logprobs are shifted by one token upstream.

Every log-likelihood is computed the same canonical way -- `eval(prefix)` from an
empty cache, then `eval(continuation[:-1])` on top -- so requests that share a context
reuse the context's KV cache and logits (they are sorted so identical contexts are
adjacent) and still get bit-identical answers in any order or batch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from evalmap.backends.base import (
    BackendInfo,
    Capabilities,
    Generation,
    GenerationRequest,
    LogLikelihood,
    LoglikelihoodRequest,
    OnResponse,
    OnTokens,
    PromptTooLongError,
    split_context,
    template_renders_tools,
    tools_refused,
)
from evalmap.backends.capabilities import no_projector
from evalmap.backends.registry import install_hint
from evalmap.backends.weights import file_fingerprint, resolve_gguf
from evalmap.errors import BackendUnavailableError, EvalmapError

if TYPE_CHECKING:
    from evalmap.backends import BackendOptions
    from evalmap.catalog.schema import Model

_INSTALL_HINT = f"llama-cpp-python is not installed; install it with `{install_hint('llamacpp')}` (compiles ~8 min)."


def _import_llama_cpp():
    try:
        import llama_cpp
    except ImportError as exc:  # missing package or a wheel built for another CPU / Python
        raise BackendUnavailableError(_INSTALL_HINT) from exc
    return llama_cpp


def _default_threads() -> int:
    """Half the CPUs this process may use (llama.cpp's own rule: one per physical core).

    More threads than free cores is far worse than fewer: llama.cpp's threads spin-wait
    on each other, and on a busy 2-CPU machine 2 threads ran ~10x slower than 1.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // 2)


def _log_softmax_at(logits: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log-probabilities of `targets` under each row of `logits`, and each row's argmax."""
    rows = logits.astype(np.float64)
    peak = rows.max(axis=1, keepdims=True)
    lse = peak[:, 0] + np.log(np.exp(rows - peak).sum(axis=1))
    picked = rows[np.arange(len(targets)), targets] - lse
    return picked, rows.argmax(axis=1)


class _TokenCounter:
    """`on_tokens` fed from llama-cpp-python's `stopping_criteria` hook, which never stops anything.

    The hook runs once per sampled token (an end-of-generation token too, which `usage` does not
    count) and once more after the last one; so the last two calls are held back and `settle`
    reports what `usage` says is left: a request reports exactly its `completion_tokens`.
    """

    def __init__(self, on_tokens: OnTokens):
        self.on_tokens = on_tokens
        self.calls = 0
        self.reported = 0

    def __call__(self, input_ids, logits) -> bool:
        self.calls += 1
        if self.calls > 2:
            self.reported += 1
            self.on_tokens(1)
        return False

    def settle(self, completion_tokens: int) -> None:
        rest = completion_tokens - self.reported
        if rest > 0:
            self.reported += rest
            self.on_tokens(rest)


def _criteria_list(criteria: list):
    if not criteria:
        return None
    from llama_cpp import StoppingCriteriaList

    return StoppingCriteriaList(criteria)


def _criteria(counter: _TokenCounter | None):
    return _criteria_list([counter] if counter is not None else [])


class LlamaCppBackend:
    """A GGUF model run in process by llama.cpp (CPU by default)."""

    # Requests per engine call from `base.stream`: it answers one at a time and hands each back at once.
    window = 16

    @classmethod
    def from_catalog(cls, model: Model, options: BackendOptions) -> LlamaCppBackend:
        if model.run.gguf is None:
            raise EvalmapError(f"{model.id} has no GGUF file in the catalog; llamacpp needs run.gguf.")
        return cls(str(resolve_gguf(model.run.gguf)), n_ctx=options.n_ctx)

    @classmethod
    def capabilities_before_load(cls, model: Model, options: BackendOptions) -> Capabilities:
        """Text only (no multimodal projector is loaded), logprobs from the logits; the context is the n_ctx it is
        opened with (at most the model's)."""
        return Capabilities(
            chat_template=model.chat_template,
            tools=model.tool_template,
            max_context=min(options.n_ctx, model.context_length),
        )

    def __init__(
        self,
        gguf_path: str,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        seed: int = 0,
        chat_format: str | None = None,
    ):
        llama_cpp = _import_llama_cpp()
        path = Path(os.path.expanduser(str(gguf_path)))
        if not path.is_file():
            raise BackendUnavailableError(f"GGUF file {path} does not exist.")
        threads = n_threads or _default_threads()
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=n_batch,
                n_ubatch=n_batch,
                n_threads=threads,
                n_threads_batch=threads,
                seed=seed,
                logits_all=True,
                chat_format=chat_format,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:  # llama.cpp could not load the file
            raise BackendUnavailableError(
                f"llama.cpp could not load {path} ({exc}); check that it is a complete GGUF file."
            ) from exc

        metadata = dict(self._llm.metadata or {})
        has_template = "tokenizer.chat_template" in metadata
        if chat_format is None and has_template:
            # Use the model's own Jinja template, not a built-in format guessed from it
            # (a guess can drop e.g. the default system prompt the template adds).
            self._llm.chat_format = "chat_template.default"
        self._chat_ok = has_template or chat_format is not None

        self.path = path
        self.n_threads = threads
        self.info = BackendInfo(
            name="llamacpp",
            version=llama_cpp.__version__,
            model=str(path),
            fingerprint=file_fingerprint(path),
            extra={
                "n_ctx": self._llm.n_ctx(),
                "chat_format": self._llm.chat_format,
                "architecture": metadata.get("general.architecture", ""),
                "n_threads": threads,
            },
        )
        self.capabilities = Capabilities(
            chat_template=self._chat_ok,
            logprobs=True,
            images=False,
            tools=template_renders_tools(metadata.get("tokenizer.chat_template")),
            max_context=self._llm.n_ctx(),
        )

        bos, eos = self._llm.token_bos(), self._llm.token_eos()
        # Tokens the model puts before any text (BOS for most models, nothing for some).
        self._special_prefix = self._llm.tokenize(b"", add_bos=True, special=True)
        self._empty_context = self._special_prefix or [bos if bos >= 0 else eos]
        # Prefix whose KV cache and last-row logits are the canonical ones (None: unknown).
        self._ll_prefix: tuple[int, ...] | None = None
        # True while the KV cache holds what the last generation left (llama-cpp-python's bookkeeping
        # of it is exact then, so the next generation may reuse a common prefix).
        self._cache_from_generation = False
        default_template = self._llm.chat_format == "chat_template.default"
        self._chat_formatter = self._template_formatter(llama_cpp, metadata) if default_template else None

    def _template_formatter(self, llama_cpp, metadata: dict):
        """The formatter `create_chat_completion` uses for the GGUF's own template, built the same way
        (`Llama.__init__`); None where this llama-cpp-python lays it out differently."""
        try:
            token_text = self._llm._model.token_get_text
            eos, bos = self._llm.token_eos(), self._llm.token_bos()
            return llama_cpp.llama_chat_format.Jinja2ChatFormatter(
                template=metadata["tokenizer.chat_template"],
                eos_token=token_text(eos) if eos != -1 else "",
                bos_token=token_text(bos) if bos != -1 else "",
                stop_token_ids=[eos],
            )
        except (AttributeError, ImportError, KeyError, TypeError):
            return None

    # ------------------------------------------------------------------ generation

    def generate(
        self,
        requests: list[GenerationRequest],
        on_response: OnResponse | None = None,
        on_tokens: OnTokens | None = None,
    ) -> list[Generation]:
        results = []
        for i, request in enumerate(requests):
            results.append(self._generate_one(request, on_tokens))
            if on_response is not None:
                on_response(i, results[-1])
        return results

    @contextmanager
    def _last_logits_only(self) -> Iterator[None]:
        """Generation needs the logits of the last position only; the model is built with
        `logits_all=True` for log-likelihoods, which makes every prompt token pay the output
        layer and a copy of its logits row (bench/bench_cpu_engines.py measures it)."""
        llm = self._llm
        saved = getattr(llm, "_logits_all", None)
        if saved is not None:
            llm._logits_all = False
        try:
            yield
        finally:
            if saved is not None:
                llm._logits_all = saved

    def _generate_one(self, request: GenerationRequest, on_tokens: OnTokens | None = None) -> Generation:
        if request.images:
            raise EvalmapError(no_projector(self.path.name))
        llm = self._llm
        if not self._cache_from_generation:
            llm.reset()  # a log-likelihood (or a failed call) left the cache: start from empty
        self._ll_prefix = None
        self._cache_from_generation = False
        counter = _TokenCounter(on_tokens) if on_tokens is not None else None
        kwargs = dict(
            max_tokens=request.max_tokens,
            temperature=max(0.0, float(request.temperature)),
            top_p=float(request.top_p),
            # OpenAI semantics: only temperature and top_p shape the distribution.
            top_k=0,
            min_p=0.0,
            repeat_penalty=1.0,
            stop=list(request.stop) or None,
            seed=int(request.seed),
        )
        start = time.perf_counter()
        try:
            with self._last_logits_only():
                if request.chat:
                    out, text = self._chat_completion(request, kwargs, counter)
                else:
                    criteria = _criteria(counter)
                    out = llm.create_completion(prompt=request.prompt, stopping_criteria=criteria, **kwargs)
                    text = out["choices"][0]["text"]
        except ValueError as exc:
            if "context window" in str(exc):
                raise PromptTooLongError(f"{exc}; raise n_ctx (now {llm.n_ctx()}) or shorten the prompt.") from exc
            raise
        self._cache_from_generation = True
        latency = time.perf_counter() - start
        usage = out.get("usage") or {}
        completion_tokens = int(usage.get("completion_tokens", 0))
        if counter is not None:
            counter.settle(completion_tokens)
        return Generation(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=completion_tokens,
            finish_reason=out["choices"][0].get("finish_reason") or "stop",
            latency_s=latency,
        )

    def _chat_completion(self, request: GenerationRequest, kwargs: dict, counter: _TokenCounter | None):
        """A chat request: (the completion, its text)."""
        llm = self._llm
        if not self._chat_ok:
            raise BackendUnavailableError(
                f"The GGUF file {self.path.name} has no chat template; pass chat_format=... "
                "to LlamaCppBackend or use completion prompts."
            )
        formatter = self._chat_formatter
        if request.tools and (formatter is None or not self.capabilities.tools):
            raise tools_refused(self.path.name)
        if formatter is None:  # a chosen chat_format: its own handler, tokens reported when it ends
            out = llm.create_chat_completion(messages=request.chat_messages(), **kwargs)
            return out, out["choices"][0]["message"].get("content") or ""
        # What create_chat_completion's handler for the GGUF's template does, plus the token counter.
        rendered = formatter(messages=request.chat_messages(), tools=request.tool_list())
        prompt = llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)
        stop = [*(kwargs["stop"] or []), *(rendered.stop or [])]
        criteria = list(rendered.stopping_criteria or [])
        if counter is not None:
            criteria.append(counter)
        out = llm.create_completion(
            prompt=prompt, stopping_criteria=_criteria_list(criteria), **{**kwargs, "stop": stop}
        )
        return out, out["choices"][0]["text"]

    # -------------------------------------------------------------- log-likelihood

    def _tokenize(self, text: str) -> list[int]:
        if not text:
            return []
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-eval's split: (tokens fed before the continuation, continuation tokens).

        Trailing whitespace of the context moves to the continuation; context+continuation
        is encoded whole and split at the length of the context's own encoding.
        """
        context, continuation = split_context(LoglikelihoodRequest(context, continuation))
        context_tokens = self._tokenize(context)
        whole = self._tokenize(context + continuation)
        continuation_tokens = whole[len(context_tokens) :]
        prefix = self._special_prefix + context_tokens if context_tokens else list(self._empty_context)
        room = self._llm.n_ctx() - len(continuation_tokens) + 1
        if room < 1:
            raise ValueError(
                f"The continuation has {len(continuation_tokens)} tokens, more than n_ctx={self._llm.n_ctx()} allows."
            )
        return prefix[-room:], continuation_tokens

    def loglikelihood(
        self, requests: list[LoglikelihoodRequest], on_response: OnResponse | None = None
    ) -> list[LogLikelihood]:
        llm = self._llm
        self._cache_from_generation = False
        pairs = [self.encode_pair(r.context, r.continuation) for r in requests]
        # Identical contexts adjacent (and a deterministic order for any input order).
        order = sorted(range(len(pairs)), key=lambda i: (pairs[i][0], pairs[i][1]))
        results: list[LogLikelihood | None] = [None] * len(pairs)
        for i in order:
            prefix, continuation = pairs[i]
            start = time.perf_counter()
            key = tuple(prefix)
            reusable = (
                self._ll_prefix == key
                and llm.n_tokens >= len(prefix)
                and np.array_equal(llm.input_ids[: len(prefix)], prefix)
            )
            if not reusable:
                llm.reset()
                self._ll_prefix = None
                llm.eval(prefix)
                self._ll_prefix = key
            else:
                # Keep the context's cache and logits; eval() drops the old continuation.
                llm.n_tokens = len(prefix)
            if continuation:
                if len(continuation) > 1:
                    llm.eval(continuation[:-1])
                first = len(prefix) - 1
                logits = llm.scores[first : first + len(continuation)]
                targets = np.asarray(continuation, dtype=np.int64)
                picked, argmax = _log_softmax_at(logits, targets)
                logprob, greedy = float(picked.sum()), bool((argmax == targets).all())
            else:
                logprob, greedy = 0.0, True
            results[i] = LogLikelihood(
                logprob=logprob,
                is_greedy=greedy,
                continuation_tokens=len(continuation),
                context_tokens=len(prefix),
                latency_s=time.perf_counter() - start,
            )
            if on_response is not None:
                on_response(i, results[i])
        return [r for r in results if r is not None]

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.close()
            self._llm = None

    def __enter__(self) -> LlamaCppBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
