"""LlamaCppBackend on the embedded SmolLM2-135M GGUF (real model, CPU)."""

from __future__ import annotations

import functools
import random
import sys

import numpy as np
import pytest

from evalmap.backends.base import Backend, GenerationRequest, LoglikelihoodRequest
from evalmap.backends.weights import file_fingerprint
from evalmap.errors import BackendUnavailableError

CAPITAL = "The capital of France is"


def test_missing_package_is_one_sentence(monkeypatch):
    from evalmap.backends.llamacpp_backend import LlamaCppBackend

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` now raises ImportError
    with pytest.raises(BackendUnavailableError, match=r"pip install 'evalmap\[llamacpp\]'") as err:
        LlamaCppBackend("/nonexistent.gguf")
    assert str(err.value).count(". ") == 0 and str(err.value).endswith(".")


def test_missing_file(tmp_path):
    pytest.importorskip("llama_cpp")
    from evalmap.backends.llamacpp_backend import LlamaCppBackend

    with pytest.raises(BackendUnavailableError, match="does not exist"):
        LlamaCppBackend(str(tmp_path / "nope.gguf"))


def test_info_and_capabilities(smollm2_backend, smollm2_gguf):
    import llama_cpp

    b = smollm2_backend
    assert isinstance(b, Backend)
    assert b.info.name == "llamacpp"
    assert b.info.version == llama_cpp.__version__
    assert b.info.model == str(smollm2_gguf)
    assert b.info.fingerprint == file_fingerprint(smollm2_gguf)
    assert b.capabilities.chat_template is True  # SmolLM2's GGUF carries its chat template
    assert b.capabilities.logprobs is True
    assert b.capabilities.max_context == 2048
    assert b.info.extra["chat_format"] == "chat_template.default"


def greedy(prompt: str, max_tokens: int = 16, **kw) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, max_tokens=max_tokens, temperature=0.0, **kw)


def test_greedy_generation_and_stop_strings(smollm2_backend):
    b = smollm2_backend
    [full] = b.generate([greedy(CAPITAL, 16)])
    assert full.text.strip()
    assert full.completion_tokens == 16 and full.finish_reason == "length"
    assert full.prompt_tokens >= 5 and full.latency_s > 0
    assert "Paris" in full.text  # a 135M instruct model still knows this one

    # Stop at a word the free run produced: the text is cut right before it.
    word = "Paris"
    [stopped] = b.generate([greedy(CAPITAL, 16, stop=(word, "\n\n\n"))])
    assert stopped.text == full.text[: full.text.index(word)]
    assert stopped.finish_reason == "stop"
    assert stopped.completion_tokens < full.completion_tokens


def test_greedy_generation_is_batch_and_order_invariant(smollm2_backend):
    b = smollm2_backend
    reqs = [
        greedy(CAPITAL, 6),
        greedy("def fibonacci(n):", 6),
        greedy(CAPITAL + " Paris. The capital of Italy is", 6),  # shares a prefix with the first
    ]
    together = [g.text for g in b.generate(reqs)]
    backwards = [g.text for g in b.generate(reqs[::-1])][::-1]
    alone = [b.generate([r])[0].text for r in reqs]
    assert together == backwards == alone


def test_sampling_is_seeded_per_request(smollm2_backend):
    b = smollm2_backend
    req = GenerationRequest(prompt="Once upon a time", max_tokens=12, temperature=1.0, seed=7)
    first = b.generate([req])[0].text
    # Same seed, different neighbours and position in the batch: same text.
    again = b.generate([GenerationRequest(prompt="Hello", max_tokens=4, temperature=1.0, seed=1), req])[1].text
    assert first == again
    others = {b.generate([GenerationRequest(**{**req.__dict__, "seed": s})])[0].text for s in range(4)}
    assert len(others) > 1  # the seed does change the sample


def test_chat_request_uses_the_model_template(smollm2_backend):
    b = smollm2_backend
    req = GenerationRequest(
        messages=(("user", "What is the capital of France? Answer in one word."),),
        chat=True,
        max_tokens=8,
    )
    [out] = b.generate([req])
    assert "Paris" in out.text
    # The template wraps the 12-token question in <|im_start|>... and a default system prompt.
    assert out.prompt_tokens > 25


def ll(context: str, continuation: str) -> LoglikelihoodRequest:
    return LoglikelihoodRequest(context=context, continuation=continuation)


def test_loglikelihood_prefers_the_right_answer(smollm2_backend):
    paris, banana = smollm2_backend.loglikelihood([ll(CAPITAL, " Paris"), ll(CAPITAL, " banana")])
    assert paris.logprob > banana.logprob
    assert paris.logprob < 0 and paris.continuation_tokens >= 1
    assert paris.is_greedy is True and banana.is_greedy is False


def _hand_loglikelihood(llm, context: str, continuation: str) -> tuple[float, bool]:
    """lm-eval's recipe by hand, on a separate Llama: one eval() of the whole sequence."""
    tok = lambda s: llm.tokenize(s.encode(), add_bos=False, special=True)  # noqa: E731
    ctx = tok(context)
    cont = tok(context + continuation)[len(ctx) :]
    prefix = llm.tokenize(b"", add_bos=True, special=True) + ctx
    llm.reset()
    llm.eval(prefix + cont[:-1])
    logits = np.asarray(llm.scores[len(prefix) - 1 : len(prefix) - 1 + len(cont)], dtype=np.float64)
    peak = logits.max(1, keepdims=True)
    logprobs = logits - peak - np.log(np.exp(logits - peak).sum(1, keepdims=True))
    picked = logprobs[np.arange(len(cont)), cont]
    return float(picked.sum()), bool((logits.argmax(1) == np.asarray(cont)).all())


def test_loglikelihood_matches_a_hand_computation(smollm2_backend, smollm2_gguf):
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(smollm2_gguf),
        n_ctx=512,
        logits_all=True,
        verbose=False,
        n_threads=smollm2_backend.n_threads,
        n_threads_batch=smollm2_backend.n_threads,
    )
    try:
        context, continuation = CAPITAL + " ", "Paris, a city on the Seine."  # trailing space moves over
        expected, expected_greedy = _hand_loglikelihood(llm, CAPITAL, " " + continuation)
    finally:
        llm.close()
    [got] = smollm2_backend.loglikelihood([ll(context, continuation)])
    assert got.continuation_tokens >= 8
    # Same logits to the bit (context then continuation on its KV cache == one eval);
    # only the float64 summation order may differ.
    assert got.logprob == pytest.approx(expected, abs=1e-9)
    assert got.is_greedy == expected_greedy


def test_greedy_continuation_is_greedy(smollm2_backend):
    b = smollm2_backend
    text = b.generate([greedy(CAPITAL, 6)])[0].text
    [res] = b.loglikelihood([ll(CAPITAL, text)])
    assert res.is_greedy is True
    [worse] = b.loglikelihood([ll(CAPITAL, text[:-1] + "\u00e9")])
    assert worse.is_greedy is False and worse.logprob < res.logprob


REQUESTS = [
    ll(CAPITAL, " Paris"),
    ll(CAPITAL, " banana"),
    ll(CAPITAL, " Lyon, not Paris"),
    ll("2 + 2 =", " 4"),
    ll("2 + 2 =", " 5"),
    ll("Question: Is the sky blue?\nAnswer:", " yes"),
    ll("Question: Is the sky blue?\nAnswer:", " no"),
    ll("", "Hello world"),
]


def test_loglikelihood_is_order_and_batch_invariant(smollm2_backend):
    b = smollm2_backend
    base = b.loglikelihood(REQUESTS)
    for seed in (1, 2):
        order = list(range(len(REQUESTS)))
        random.Random(seed).shuffle(order)
        shuffled = b.loglikelihood([REQUESTS[i] for i in order])
        for pos, i in enumerate(order):
            assert shuffled[pos].logprob == base[i].logprob  # bit-identical, not approx
            assert shuffled[pos].is_greedy == base[i].is_greedy
    for i, req in enumerate(REQUESTS):  # one at a time, after unrelated generation
        b.generate([greedy("Unrelated prompt", 2)])
        [alone] = b.loglikelihood([req])
        assert alone.logprob == base[i].logprob


def test_shared_context_is_evaluated_once(smollm2_backend, monkeypatch):
    b = smollm2_backend
    llm = b._llm
    evaluated: list[int] = []
    real_eval = llm.eval

    def counting_eval(tokens):
        evaluated.append(len(tokens))
        return real_eval(tokens)

    monkeypatch.setattr(llm, "eval", counting_eval)
    reqs = [ll(CAPITAL, " Paris"), ll("2 + 2 =", " 4"), ll(CAPITAL, " Lyon, not Paris"), ll(CAPITAL, " banana")]
    b.generate([greedy("x", 1)])  # start from a foreign cache
    evaluated.clear()
    results = b.loglikelihood(reqs)
    prefix_len = results[0].context_tokens
    continuation_evals = sum(r.continuation_tokens - 1 for r in results)
    # Each context once (not once per request), plus each continuation minus its last token.
    assert sum(evaluated) == prefix_len + results[1].context_tokens + continuation_evals


def test_answers_are_handed_back_one_by_one(smollm2_backend):
    """The Backend contract's on_response: every index once, the same objects the call returns."""
    gens = [GenerationRequest(prompt=p, max_tokens=3) for p in ("The sky is", "1, 2, 3,")]
    lls = [LoglikelihoodRequest("The sky is", " blue"), LoglikelihoodRequest("The sky is", " green")]
    for call, requests in ((smollm2_backend.generate, gens), (smollm2_backend.loglikelihood, lls)):
        seen: dict = {}
        out = call(requests, on_response=lambda i, r, seen=seen: seen.setdefault(i, r))
        assert sorted(seen) == list(range(len(requests))) and all(seen[i] is out[i] for i in seen)


# ---------------------------------------------------------------- streaming (issue 12)

TOKEN_REQUESTS = [
    GenerationRequest(  # ends on the end-of-turn token (usage does not count it)
        messages=(("user", "What is the capital of France? Answer in one word."),), chat=True, max_tokens=32
    ),
    greedy("Q: What is 2+3?\nA:", 40),  # a long one that ends at max_tokens
    greedy(CAPITAL, 48, stop=(".",)),  # ends at a stop string
    GenerationRequest(prompt="Once upon a time", max_tokens=24, temperature=0.9, seed=3),
]


def _fields(g) -> tuple:
    return g.text, g.prompt_tokens, g.completion_tokens, g.finish_reason


def test_on_tokens_changes_no_output_and_reports_every_completion_token(smollm2_backend):
    b = smollm2_backend
    plain = b.generate(TOKEN_REQUESTS)
    calls: list[int] = []
    per_request: dict[int, int] = {}
    counted = b.generate(
        TOKEN_REQUESTS,
        on_response=lambda i, r: per_request.setdefault(i, sum(calls) - sum(per_request.values())),
        on_tokens=calls.append,
    )
    assert [_fields(g) for g in counted] == [_fields(g) for g in plain]
    assert {g.finish_reason for g in plain} == {"stop", "length"}
    # Exactly each request's completion_tokens, reported before its response is handed back.
    assert [per_request[i] for i in range(len(TOKEN_REQUESTS))] == [g.completion_tokens for g in plain]
    assert sum(calls) == sum(g.completion_tokens for g in plain)
    assert all(n >= 1 for n in calls)
    assert len(calls) > len(TOKEN_REQUESTS) and calls.count(1) >= 40 - 2  # one call per token, not per request


def test_chat_requests_render_as_create_chat_completion_does(smollm2_backend):
    b = smollm2_backend
    request = TOKEN_REQUESTS[0]
    [ours] = b.generate([request])
    llm = b._llm
    llm.reset()
    b._cache_from_generation = False  # the cache is no longer what the backend left
    out = llm.create_chat_completion(
        messages=request.chat_messages(), max_tokens=request.max_tokens, temperature=0.0, top_p=1.0, top_k=0,
        min_p=0.0, repeat_penalty=1.0, seed=0,
    )  # fmt: skip
    assert ours.text == out["choices"][0]["message"]["content"]
    assert ours.finish_reason == out["choices"][0]["finish_reason"]
    assert (ours.prompt_tokens, ours.completion_tokens) == (
        out["usage"]["prompt_tokens"],
        out["usage"]["completion_tokens"],
    )


SHOTS = "".join(
    f"Q: What is {a} plus {c}?\nA: {a} plus {c} is {a + c}. The answer is {a + c}.\n\n"
    for a, c in ((3, 4), (10, 7), (21, 5), (8, 8), (13, 29), (40, 2))
)


def test_a_shared_prompt_prefix_is_reused_and_changes_nothing(smollm2_backend, monkeypatch):
    b = smollm2_backend
    first, second = greedy(SHOTS + "Q: What is 6 plus 9?\nA:", 24), greedy(SHOTS + "Q: What is 12 plus 30?\nA:", 24)
    b.loglikelihood([ll(CAPITAL, " Paris")])  # leaves a log-likelihood cache: the next generation starts empty
    [alone] = b.generate([second])
    evaluated: list[int] = []
    real_eval = b._llm.eval
    monkeypatch.setattr(b._llm, "eval", lambda tokens: (evaluated.append(len(tokens)), real_eval(tokens))[1])
    b.loglikelihood([ll(CAPITAL, " Paris")])
    start = len(evaluated)
    marks: list[int] = []
    [_, after] = b.generate([first, second], on_response=lambda i, r: marks.append(len(evaluated)))
    assert _fields(after) == _fields(alone)
    # The second prompt's shared few-shot prefix was not evaluated again: only its own question.
    assert evaluated[marks[0]] < after.prompt_tokens / 4
    assert evaluated[start] > after.prompt_tokens / 2  # after a log-likelihood the first one starts empty


def test_stream_feeds_windows_and_hands_back_every_response(smollm2_backend, monkeypatch):
    from evalmap.backends.base import stream

    b = smollm2_backend
    assert b.window == 16
    requests = [
        *[ll(CAPITAL, f" {word}") for word in ("Paris", "Lyon", "Rome", "a", "the", "banana", "Nice", "Berlin")] * 3,
        *[greedy(p, 3) for p in ("The sky is", "1, 2, 3,", "Hello")],
        ll("2 + 2 =", " 4"),
    ]
    slices: list[tuple[str, int]] = []
    for name in ("generate", "loglikelihood"):
        real = getattr(b, name)

        def spy(reqs, *args, real=real, name=name, **kwargs):
            slices.append((name, len(reqs)))
            return real(reqs, *args, **kwargs)

        monkeypatch.setattr(b, name, functools.wraps(real)(spy))  # the same signature: stream sees on_tokens

    class Sink:
        def __init__(self):
            self.responses: list[tuple[int, object]] = []
            self.tokens_seen = 0

        def response(self, index, response):
            self.responses.append((index, response))

        def failure(self, index, error):
            raise AssertionError(f"request {index} failed: {error}")

        def tokens(self, n):
            self.tokens_seen += n

    sink = Sink()
    stream(b, requests, sink)
    assert slices == [("loglikelihood", 16), ("loglikelihood", 8), ("generate", 3), ("loglikelihood", 1)]
    assert sorted(i for i, _ in sink.responses) == list(range(len(requests)))
    monkeypatch.undo()
    expected = b.loglikelihood(requests[:24])
    got = dict(sink.responses)
    assert [got[i].logprob for i in range(24)] == [r.logprob for r in expected]
    assert [got[24 + k].text for k in range(3)] == [g.text for g in b.generate(requests[24:27])]
    assert sink.tokens_seen == sum(got[24 + k].completion_tokens for k in range(3))


def test_tools_are_refused_when_the_gguf_template_would_drop_them(smollm2_backend):
    from evalmap.errors import EvalmapError

    tools = '[{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]'
    assert smollm2_backend.capabilities.tools is False  # SmolLM2's template never reads `tools`
    with pytest.raises(EvalmapError, match="does not render tools"):
        smollm2_backend.generate([GenerationRequest(messages=(("user", "hi"),), chat=True, max_tokens=2, tools=tools)])
