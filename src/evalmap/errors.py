"""Errors a user can cause. The CLI prints their message as one sentence and exits 2."""

from __future__ import annotations

import difflib


class EvalmapError(Exception):
    """A problem with the user's input or environment, not a bug in evalmap."""

    exit_code = 2


class UnknownIdError(EvalmapError):
    def __init__(self, kind: str, value: str, known: list[str]):
        close = difflib.get_close_matches(value, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else (
            f" Run `evalmap {kind}s` to list them."
        )
        super().__init__(f"Unknown {kind} id {value!r}.{hint}")
        self.value = value
        self.close = close


class BackendUnavailableError(EvalmapError):
    """An engine's optional package is missing or its server cannot be reached."""


class DataMissingError(EvalmapError):
    """A dataset's files are neither in --data-dir nor reachable on the hub."""
