"""A prompt longer than the engine's context fails its own request, not the call or the run."""

from __future__ import annotations

import pytest

from evalmap.backends.base import GenerationRequest, PromptTooLongError, stream


class Recorder:
    def __init__(self):
        self.answers, self.failures = {}, {}

    def response(self, index, response):
        self.answers[index] = response

    def failure(self, index, error):
        self.failures[index] = error

    def tokens(self, n):
        pass


def test_only_the_request_that_does_not_fit_fails(smollm2_gguf):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'evalmap[llamacpp]')")
    from evalmap.backends.llamacpp_backend import LlamaCppBackend

    backend = LlamaCppBackend(str(smollm2_gguf), n_ctx=128)
    requests = [
        GenerationRequest(prompt="The capital of France is", max_tokens=3),
        GenerationRequest(prompt="word " * 400, max_tokens=3),
        GenerationRequest(prompt="One, two,", max_tokens=3),
    ]
    sink = Recorder()
    stream(backend, requests, sink)
    assert set(sink.answers) == {0, 2} and set(sink.failures) == {1}
    assert isinstance(sink.failures[1], PromptTooLongError) and "raise n_ctx" in str(sink.failures[1])
    alone = backend.generate([requests[0]])[0]
    assert sink.answers[0].text == alone.text  # the requests after a failure were answered as usual
