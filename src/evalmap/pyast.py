"""`ast.parse` and `ast.literal_eval` behind one lock, for code that runs in thread pools.

CPython 3.11's `_ast` module keeps its recursion-depth bookkeeping in shared state, so two
threads building ASTs at once can fail with "SystemError: AST constructor recursion depth
mismatch" (gh-106905). Scoring threads parse programs (bigcodebench's sanitizer) and harness
records at the same time; every such call in evalmap goes through here.
"""

from __future__ import annotations

import ast
import threading
from typing import Any

_LOCK = threading.Lock()


def parse(source: str) -> ast.Module:
    with _LOCK:
        return ast.parse(source)


def literal_eval(text: str) -> Any:
    with _LOCK:
        return ast.literal_eval(text)
