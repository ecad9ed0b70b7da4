"""The one table of engines: name -> where its class lives, and the facts about it stated once.

Adding a backend is one module (a class with `from_catalog`, `capabilities_before_load` and the
Backend contract of `base.py`) plus one line here. Everything else derives from this table: the
catalog's `run.default_backend` choices, the CLI's `--backend` help and check, `backend_name`,
`open_backend`, the library versions recorded with a run, and the capability check made before a
model loads.

This module imports nothing from evalmap but its errors (the catalog schema reads it, so it must
stay a leaf).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from evalmap.errors import EvalmapError


@dataclass(frozen=True)
class BackendEntry:
    target: str  # "module:Class"; a module without dots lives in evalmap.backends
    description: str  # one line, for help texts and docs
    extra: str | None = None  # the pip extra that installs it (`pip install 'evalmap[extra]'`); None: included
    packages: tuple[str, ...] = ()  # distributions whose versions are recorded with every run


BACKENDS: dict[str, BackendEntry] = {
    "transformers": BackendEntry(
        "transformers_backend:TransformersBackend", "HF repo, local folder or GGUF on CPU or GPU", "hf",
        ("torch", "transformers", "tokenizers", "gguf", "accelerate"),
    ),
    "llamacpp": BackendEntry(
        "llamacpp_backend:LlamaCppBackend", "GGUF on CPU with llama.cpp", "llamacpp", ("llama_cpp_python",)
    ),
    "openai": BackendEntry(
        "openai_backend:OpenAIBackend", "any OpenAI-compatible server (--base-url)", None, ("httpx",)
    ),
    "vllm": BackendEntry("vllm_backend:VLLMBackend", "vLLM's offline engine on GPUs", "vllm", ("vllm",)),
}


def backend_names() -> tuple[str, ...]:
    return tuple(BACKENDS)


def unknown_backend(name: str) -> str:
    """What is wrong with a name that is not a line of the table (the catalog schema says it too)."""
    return f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}"


def known_backend(name: str) -> str:
    """`name` if it is a line of the table, else one sentence naming the choices."""
    if name not in BACKENDS:
        problem = unknown_backend(name)
        raise EvalmapError(f"{problem[0].upper()}{problem[1:]}.")
    return name


def backend_packages() -> tuple[str, ...]:
    """Every table entry's packages, once each, in table order."""
    return tuple(dict.fromkeys(p for entry in BACKENDS.values() for p in entry.packages))


def install_hint(name: str) -> str:
    """How to install a backend's dependencies, from its table line."""
    extra = BACKENDS[name].extra
    return f"pip install 'evalmap[{extra}]'" if extra else "pip install evalmap"


def backend_class(name: str) -> type:
    """Import a backend's module and return its class (only now: engines are heavy)."""
    module_name, _, attr = BACKENDS[name].target.partition(":")
    if "." not in module_name:
        module_name = f"evalmap.backends.{module_name}"
    return getattr(importlib.import_module(module_name), attr)
