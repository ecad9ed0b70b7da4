"""Engines behind the Backend contract; each module is imported only when used.

Which engines exist is the table in `registry.py` (one line per backend); this module opens the
one a model is run on. Nothing here imports the catalog at run time: the catalog's schema reads the
table, so the import graph stays one-directional.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from evalmap.backends.base import Backend
from evalmap.backends.registry import BACKENDS, backend_class, backend_names, known_backend
from evalmap.errors import BackendUnavailableError, EvalmapError
from evalmap.hub import cache_only_when_offline

if TYPE_CHECKING:
    from evalmap.catalog.schema import Model

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
    return known_backend(options.backend or ("openai" if options.base_url else model.run.default_backend))


def open_backend(model: Model, options: BackendOptions) -> Backend:
    """Load the model once for a run on the chosen engine (the table's class, built from the catalog entry)."""
    name = backend_name(model, options)
    problem = missing_weights(model, name)
    if problem:
        raise EvalmapError(problem)
    if not getattr(backend_class(name), "loads_weights", True):
        return backend_class(name).from_catalog(model, options)
    with cache_only_when_offline():  # no network: the hub cache or one sentence now, not a minute of retries
        return backend_class(name).from_catalog(model, options)


def missing_weights(model: Model, backend: str) -> str | None:
    """The sentence for a team fine-tune whose weights were not given (None: they were, or a server holds them)."""
    loads = getattr(backend_class(backend), "loads_weights", True)
    if model.user_weights and not (model.run.hf or model.run.gguf) and loads:
        return (
            f"{model.id} is a team fine-tune without weights configured; pass --weights PATH (its folder or "
            ".gguf file), or set run.hf in a catalog override file (--catalog or EVALMAP_CATALOG)."
        )
    return None


__all__ = [
    "BACKENDS", "Backend", "BackendOptions", "BackendUnavailableError", "backend_name", "backend_names",
    "check_base_url", "missing_weights", "open_backend",
]
