"""vLLM's offline engine for GPUs (an optional extra: its wheel pins its own torch).

vLLM schedules and batches internally, so requests go in large submissions (`window`: the
runner's stream hands it up to that many same-kind requests per call, across job boundaries);
answers are delivered when a submission returns, so a kill -9 loses at most one submission.
Log-likelihoods come from `prompt_logprobs`, which vLLM computes at the right positions
(unlike llama.cpp's echo logprobs).

A `vision-language` catalog model also loads its Hugging Face processor, whose chat template writes
the model's image marker (Qwen2-VL's `<|vision_start|><|image_pad|><|vision_end|>`, LLaVA's `<image>`)
once per image; the request then goes in as `{"prompt", "multi_modal_data": {"image": ...}}` with
its images as PIL images in placeholder order, and vLLM expands each marker to the image's tokens.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from evalmap.backends import vision
from evalmap.backends.base import (
    BackendInfo,
    Capabilities,
    Generation,
    GenerationRequest,
    LogLikelihood,
    LoglikelihoodRequest,
    OnResponse,
    split_context,
    template_renders_tools,
    tools_refused,
)
from evalmap.backends.registry import install_hint
from evalmap.backends.weights import folder_fingerprint
from evalmap.errors import BackendUnavailableError, EvalmapError

if TYPE_CHECKING:
    from evalmap.backends import BackendOptions
    from evalmap.catalog.schema import Model


class VLLMBackend:
    # Enough sequences for the scheduler to fill a GPU's KV cache many times over (it admits what fits
    # and queues the rest), few enough that progress and the response cache move every few minutes.
    window = 2048

    @classmethod
    def from_catalog(cls, model: Model, options: BackendOptions) -> VLLMBackend:
        ref = model.run.hf or model.hf_repo
        if ref is None:
            raise EvalmapError(f"{model.id} names no Hugging Face repo or local weights for vLLM.")
        return cls(
            ref,
            tensor_parallel_size=options.tensor_parallel or model.run.tensor_parallel,
            gpu_memory_utilization=options.gpu_memory_utilization,
            dtype=options.dtype or model.run.dtype,
            trust_remote_code=model.run.trust_remote_code,
            vision=model.modality == "vision-language",
        )

    @classmethod
    def capabilities_before_load(cls, model: Model, options: BackendOptions) -> Capabilities:
        """Prompt logprobs, the model's own context; images for a vision-language model (multi_modal_data)."""
        return Capabilities(
            chat_template=model.chat_template, tools=model.tool_template, max_context=model.context_length,
            images=model.modality == "vision-language",
        )

    def __init__(
        self,
        model_ref: str,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        dtype: str = "auto",
        max_model_len: int | None = None,
        trust_remote_code: bool = False,
        seed: int = 0,
        vision: bool = False,
    ):
        try:
            import vllm
        except ImportError as exc:
            raise BackendUnavailableError(
                f"vLLM is not installed; on a GPU machine install it on its own with `{install_hint('vllm')}` "
                "(it pins its own torch and transformers)."
            ) from exc
        self._vllm = vllm
        self.llm = vllm.LLM(
            model=model_ref,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            dtype=dtype,
            max_model_len=max_model_len,
            trust_remote_code=trust_remote_code,
            seed=seed,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.processor = None  # a vision-language model's processor: its chat template writes the image markers
        if vision:
            from transformers import AutoProcessor

            self.processor = AutoProcessor.from_pretrained(model_ref, trust_remote_code=trust_remote_code)
        template = getattr(self.processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None)
        config = self.llm.llm_engine.model_config
        self.capabilities = Capabilities(
            chat_template=template is not None,
            logprobs=True,
            images=self.processor is not None,
            tools=template_renders_tools(template),
            max_context=config.max_model_len,
        )
        revision = getattr(config, "revision", None) or (
            folder_fingerprint(Path(model_ref)) if os.path.isdir(model_ref) else "hub"
        )
        self.info = BackendInfo(
            name="vllm",
            version=vllm.__version__,
            model=model_ref,
            fingerprint=hashlib.sha256(f"{model_ref}@{revision}:{dtype}".encode()).hexdigest()[:16],
            extra={"tensor_parallel_size": tensor_parallel_size, "dtype": str(config.dtype)},
        )

    def _prompt(self, request: GenerationRequest) -> str | dict:
        """What `llm.generate` takes for one request: its text, or for a request with images the text with
        one image marker per image and the images as `multi_modal_data`."""
        if request.chat and request.tools and not self.capabilities.tools:
            raise tools_refused(self.info.model)
        if request.images and self.processor is None:
            raise EvalmapError(
                f"{self.info.model} is loaded as a text-only model, so it cannot take images; a "
                "vision-language model needs `modality: vision-language` in the catalog."
            )
        if self.processor is not None and (request.chat or request.images):  # as the transformers backend does
            text = vision.render(self.processor, request, request.tool_list())
            return multimodal_prompt(text, request) if request.images else text
        if request.chat:
            return self.tokenizer.apply_chat_template(
                request.chat_messages(), tools=request.tool_list(), add_generation_prompt=True, tokenize=False
            )
        return request.prompt

    def generate(self, requests: list[GenerationRequest], on_response: OnResponse | None = None) -> list[Generation]:
        """One submission (vLLM schedules it); answers are delivered when it returns."""
        if not requests:
            return []
        params = [
            self._vllm.SamplingParams(
                max_tokens=r.max_tokens,
                temperature=r.temperature,
                top_p=r.top_p if r.temperature > 0 else 1.0,
                stop=list(r.stop) or None,
                seed=r.seed if r.temperature > 0 else None,
            )
            for r in requests
        ]
        began = time.perf_counter()
        outputs = self.llm.generate([self._prompt(r) for r in requests], params, use_tqdm=False)
        per_request = (time.perf_counter() - began) / len(requests)
        results = []
        for out in outputs:
            completion = out.outputs[0]
            results.append(
                Generation(
                    text=completion.text,
                    prompt_tokens=len(out.prompt_token_ids),
                    completion_tokens=len(completion.token_ids),
                    finish_reason="length" if completion.finish_reason == "length" else "stop",
                    latency_s=per_request,
                )
            )
        _deliver(results, on_response)
        return results

    def loglikelihood(
        self, requests: list[LoglikelihoodRequest], on_response: OnResponse | None = None
    ) -> list[LogLikelihood]:
        if not requests:
            return []
        token_lists, context_lengths = [], []
        for r in requests:
            context, continuation = split_context(r)
            whole = self.tokenizer.encode(context + continuation, add_special_tokens=False)
            n_ctx = len(self.tokenizer.encode(context, add_special_tokens=False))
            n_ctx = min(n_ctx, len(whole) - 1)
            if n_ctx == 0 and self.tokenizer.bos_token_id is not None:
                whole, n_ctx = [self.tokenizer.bos_token_id, *whole], 1
            token_lists.append(whole)
            context_lengths.append(n_ctx)
        params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
        prompts = [{"prompt_token_ids": tokens} for tokens in token_lists]
        began = time.perf_counter()
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        per_request = (time.perf_counter() - began) / len(requests)
        results = []
        for out, tokens, n_ctx in zip(outputs, token_lists, context_lengths, strict=True):
            total, greedy = 0.0, True
            for pos in range(n_ctx, len(tokens)):
                candidates = out.prompt_logprobs[pos]
                chosen = candidates[tokens[pos]]
                total += chosen.logprob
                best = max(candidates.values(), key=lambda lp: lp.logprob)
                greedy = greedy and chosen.logprob >= best.logprob
            results.append(
                LogLikelihood(
                    logprob=total,
                    is_greedy=greedy,
                    continuation_tokens=len(tokens) - n_ctx,
                    context_tokens=n_ctx,
                    latency_s=per_request,
                )
            )
        _deliver(results, on_response)
        return results

    def close(self) -> None:
        del self.llm


def multimodal_prompt(text: str, request: GenerationRequest) -> dict:
    """vLLM's prompt dict for a rendered request with images: one PIL image, or a list of them in order."""
    images = vision.pil_images(request.images)
    return {"prompt": text, "multi_modal_data": {"image": images[0] if len(images) == 1 else images}}


def _deliver(results: list, on_response: OnResponse | None) -> None:
    if on_response is not None:
        for i, result in enumerate(results):
            on_response(i, result)

