"""Is the Hugging Face hub reachable from here? Asked once, in a second or less.

Without the question, a machine with no network learns it from `datasets`' retries: about 25 s of
`Retrying in 8s [Retry 5/5]` before the one-sentence error. With it, hub calls on such a machine go
straight to the local hub cache (a cached dataset still loads) and a missing one fails at once.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sys
from collections.abc import Iterator
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 3.0
_PROXIES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
_TRUE = ("1", "on", "yes", "true")


@functools.cache
def hub_unreachable() -> str | None:
    """Why the hub cannot be reached (None: it can, or a proxy stands between, which only a request can test)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE:
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(p) for p in _PROXIES):
        return None
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return None
    except socket.gaierror:
        return f"no network: {host} cannot be resolved"
    except OSError as exc:
        return f"no network: {host}:{port} cannot be reached ({exc.strerror or exc})"


@contextlib.contextmanager
def cache_only_when_offline() -> Iterator[str | None]:
    """Inside, `huggingface_hub` (and so transformers) and `datasets`, when imported, read only their local
    cache when the hub cannot be reached (their own offline mode, switched on for this block). Yields the
    reason, or None when online."""
    reason = hub_unreachable()
    if reason is None:
        yield None
        return
    import huggingface_hub.constants

    # datasets copies the flag when it is imported: switched only when already imported, so it is restored
    switches = [huggingface_hub.constants]
    if "datasets.config" in sys.modules:
        switches.append(sys.modules["datasets.config"])
    saved = [module.HF_HUB_OFFLINE for module in switches]
    for module in switches:
        module.HF_HUB_OFFLINE = True
    try:
        yield reason
    finally:
        for module, value in zip(switches, saved, strict=True):
            module.HF_HUB_OFFLINE = value
