"""Engines behind the Backend contract; each module is imported only when used."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evalmap.backends.base import Backend
from evalmap.catalog.schema import Model
from evalmap.errors import BackendUnavailableError, EvalmapError

BACKENDS = ("transformers", "llamacpp", "openai", "vllm")


@dataclass(frozen=True)
class BackendOptions:
    """Run-level engine settings (CLI flags); the catalog's run hints fill the rest."""

    backend: str | None = None  # overrides the model's default_backend
    base_url: str | None = None
    api_key_env: str | None = None
    batch_size: int = 8
    concurrency: int = 8
    device: str = "auto"
    dtype: str | None = None
    n_ctx: int = 4096
    tensor_parallel: int | None = None
    gpu_memory_utilization: float = 0.9


def backend_name(model: Model, options: BackendOptions) -> str:
    name = options.backend or ("openai" if options.base_url else model.run.default_backend)
    if name not in BACKENDS:
        raise EvalmapError(f"Unknown backend {name!r}; choose one of {', '.join(BACKENDS)}.")
    return name


def _local_gguf(model: Model) -> Path | None:
    """A GGUF that needs no download (package file or path), which transformers prefers offline."""
    from evalmap.backends.weights import resolve_gguf

    source = model.run.gguf
    if source and (source.package or source.path):
        return resolve_gguf(source)
    return None


def open_backend(model: Model, options: BackendOptions) -> Backend:
    """Load the model once for a run on the chosen engine."""
    name = backend_name(model, options)
    if model.user_weights and not model.run.hf and name != "openai":
        raise EvalmapError(
            f"{model.id} is a team fine-tune without weights configured; set run.hf to its local path "
            "or repo in a catalog override file (--catalog or EVALMAP_CATALOG)."
        )
    if name == "transformers":
        from evalmap.backends.transformers_backend import TransformersBackend

        gguf = _local_gguf(model)
        ref, gguf_file = (str(gguf.parent), gguf.name) if gguf else (model.run.hf or model.hf_repo, None)
        if ref is None:
            raise EvalmapError(f"{model.id} names no Hugging Face repo or local weights for transformers.")
        return TransformersBackend(
            ref, gguf_file=gguf_file, device=options.device, dtype=options.dtype or model.run.dtype,
            batch_size=options.batch_size, trust_remote_code=model.run.trust_remote_code,
        )
    if name == "llamacpp":
        from evalmap.backends.llamacpp_backend import LlamaCppBackend
        from evalmap.backends.weights import resolve_gguf

        if model.run.gguf is None:
            raise EvalmapError(f"{model.id} has no GGUF file in the catalog; llamacpp needs run.gguf.")
        return LlamaCppBackend(str(resolve_gguf(model.run.gguf)), n_ctx=options.n_ctx)
    if name == "openai":
        from evalmap.backends.openai_backend import OpenAIBackend

        if not options.base_url:
            raise EvalmapError("The openai backend needs --base-url, e.g. http://127.0.0.1:8000/v1.")
        served = model.run.server_model or model.run.hf or model.hf_repo or model.id
        return OpenAIBackend(
            options.base_url, served, api_key_env=options.api_key_env, concurrency=options.concurrency
        )
    from evalmap.backends.vllm_backend import VLLMBackend

    ref = model.run.hf or model.hf_repo
    if ref is None:
        raise EvalmapError(f"{model.id} names no Hugging Face repo or local weights for vLLM.")
    return VLLMBackend(
        ref,
        tensor_parallel_size=options.tensor_parallel or model.run.tensor_parallel,
        gpu_memory_utilization=options.gpu_memory_utilization,
        dtype=options.dtype or model.run.dtype,
        trust_remote_code=model.run.trust_remote_code,
    )


__all__ = ["BACKENDS", "Backend", "BackendOptions", "BackendUnavailableError", "backend_name", "open_backend"]
