"""Bounded capture of a child's output: a hostile program may print gigabytes."""

from __future__ import annotations

import re

_TRACEBACK = "Traceback (most recent call last):"
# The last line of a Python traceback: "pkg.module.SomeError: message" or a bare "AssertionError".
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*)(?::\s.*|:)?$")


class CappedBuffer:
    """Keeps only the first and last `cap / 2` bytes of a stream, so memory stays bounded.

    The tail matters most (a traceback ends there); the head shows how the output began.
    """

    def __init__(self, cap: int) -> None:
        self._head_cap = cap // 2
        self._tail_cap = cap - self._head_cap
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self._head_cap - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        self._tail += chunk
        if len(self._tail) > self._tail_cap:
            del self._tail[: len(self._tail) - self._tail_cap]

    @property
    def truncated(self) -> bool:
        return self.total > len(self._head) + len(self._tail)

    def text(self) -> str:
        head = self._head.decode(errors="replace")
        tail = self._tail.decode(errors="replace")
        if not self.truncated:
            return head + tail
        dropped = self.total - len(self._head) - len(self._tail)
        return f"{head}\n... [{dropped} bytes truncated] ...\n{tail}"


def exception_name(stderr: str) -> str | None:
    """The exception class that ended the program, from the last line of its traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if not lines:
        return None
    match = _EXCEPTION_LINE.match(lines[-1])
    if match is None:
        return None
    name = match.group(1)
    # A plain message on stderr ("Warning: ...") is not an exception; a SyntaxError has no header.
    if _TRACEBACK in stderr or name.endswith("Error"):
        return name
    return None
