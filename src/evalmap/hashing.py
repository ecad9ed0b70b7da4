"""The one SHA-256-of-JSON: the same payload gives the same hex digest on every machine."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def sha256_json(payload: Any) -> str:
    """sha256 of `payload` as compact JSON with sorted keys (non-JSON values by their str())."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    # surrogatepass: a lone surrogate (an undecodable byte in a command-line argument) still hashes
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()
