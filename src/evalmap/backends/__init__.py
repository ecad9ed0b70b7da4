"""Engines behind the Backend contract; each module is imported only when used."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from evalmap.backends.base import Backend
from evalmap.catalog.schema import Model
from evalmap.errors import BackendUnavailableError, EvalmapError

BACKENDS = ("transformers", "llamacpp", "openai", "vllm")
# How patiently a server is asked, not what it is asked: no part of a run's identity.
TRANSPORT_ONLY = ("timeout_s", "max_retries")


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
    timeout_s: float = 120.0  # per request to a server (--timeout)
    max_retries: int = 5  # per request to a server, after the first try (--max-retries)

    def run_identity(self) -> dict:
        """The settings that make a run this run (a rerun with another --timeout resumes it)."""
        return {k: v for k, v in asdict(self).items() if k not in TRANSPORT_ONLY}

    def __post_init__(self) -> None:
        """Refuse bad settings at once, before a dataset or a model loads."""
        if self.base_url is not None:
            check_base_url(self.base_url)
        if not self.timeout_s > 0:
            raise EvalmapError(f"--timeout must be a positive number of seconds (got {self.timeout_s:g}).")
        if self.max_retries < 0:
            raise EvalmapError(f"--max-retries must be 0 or more (got {self.max_retries}).")


def check_base_url(url: str) -> str:
    """An OpenAI-compatible server's address must be http(s)://host[:port][/path]; say so in one sentence."""
    example = "e.g. http://127.0.0.1:8000/v1"
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise EvalmapError(
            f"--base-url {url!r} is not a valid URL ({exc}); pass the server's address, {example}."
        ) from None
    if not parts.scheme or "://" not in text:
        raise EvalmapError(f"--base-url {url!r} is not a URL; pass the server's address with http://, {example}.")
    if parts.scheme.lower() not in ("http", "https"):
        raise EvalmapError(
            f"--base-url {url!r} uses {parts.scheme}://, but an OpenAI-compatible server speaks http:// or "
            f"https://; pass its http address, {example}."
        )
    if not parts.hostname:
        raise EvalmapError(f"--base-url {url!r} names no host; pass the server's address, {example}.")
    if any(c.isspace() for c in text) or (port is not None and not 0 < port < 65536):
        raise EvalmapError(f"--base-url {url!r} is not a valid URL; pass the server's address, {example}.")
    return text


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
            options.base_url, served, api_key_env=options.api_key_env, concurrency=options.concurrency,
            timeout_s=options.timeout_s, max_retries=options.max_retries,
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


__all__ = [
    "BACKENDS", "Backend", "BackendOptions", "BackendUnavailableError", "backend_name", "check_base_url",
    "open_backend",
]
