"""What the code prints: the `print` of agent code (worker side) and `Output` (the host's copy), kept to a budget
that fits a model's context.

Output beyond `limit` bytes is cut in the middle: the first `head_bytes(limit)` are streamed as printed, then
only the latest `limit - head_bytes(limit)` are kept and sent every `interval` (with the count of bytes skipped
in between), so a run killed mid-print still shows its start and its end. The host (`session.Output`) keeps the
same split and writes the note saying how much was cut and how to see it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

__all__ = ["Output", "Printer", "Stream", "cut_middle", "cut_note", "head_bytes"]

_FLUSH_BYTES: Final = 8192


def head_bytes(limit: int) -> int:
    """How much of the output budget goes to its start; the rest keeps its end."""
    return limit - limit // 3


def cut_note(cut: int, limit: int, what: str = "output") -> str:
    return (
        f"[... {cut} bytes of {what} cut here: the limit is {limit} bytes, so the start and the end are shown. "
        "To see the rest, print less: filter, slice or summarise in code (e.g. print(len(items), items[:5])) "
        "and run again ...]"
    )


def cut_middle(text: str, limit: int, what: str) -> str:
    """`text` whole if it fits in `limit` characters, else its start and end around a note."""
    if len(text) <= limit:
        return text
    head = head_bytes(limit)
    tail = limit - head
    return f"{text[:head]}\n{cut_note(len(text) - limit, limit, what)}\n{text[len(text) - tail :]}"


class Stream:
    """`sys.stdout` / `sys.stderr` of agent code: text written here is printed."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._write(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class Printer:
    """The `print` of agent code: streams the start, then keeps only the latest text, via `flush_to(text, skipped)`."""

    def __init__(self, limit: int, flush_to: Callable[[str, int], None], *, interval: float = 0.05) -> None:
        self.limit = limit
        self.head_limit = head_bytes(limit)
        self.tail_limit = limit - self.head_limit
        self.kept = 0  # bytes of the start, streamed
        self.dropped = 0  # bytes never sent (the host learns them as `skipped`)
        self._flush_to = flush_to
        self._interval = interval
        self._head: list[bytes] = []
        self._head_bytes = 0
        self._tail = bytearray()
        self._trim_at = 2 * self.tail_limit + _FLUSH_BYTES
        self._parts: list[str] = []  # printed past the start, not yet encoded
        self._parts_chars = 0
        self._writes = 0
        self._skipped = 0  # bytes dropped since the last flush, before what is in `_tail`
        self._last_flush = 0.0
        self._all: list[str] = []

    def bind(self, _getattr_: object = None) -> Printer:
        """`_print_`: RestrictedPython runs `_print = _print_(_getattr_)` per scope; all scopes share one buffer."""
        return self

    def __call__(self) -> str:
        """RestrictedPython's `printed`: the start of what was printed."""
        return "".join(self._all)

    def _call_print(
        self, *objects: object, sep: str | None = " ", end: str | None = "\n", file: object = None, flush: bool = False
    ) -> None:
        if file is not None and not isinstance(file, Stream):
            raise TypeError("print(file=...) is not available in the sandbox; print to the output")
        if not isinstance(sep, str | None) or not isinstance(end, str | None):
            raise TypeError("sep and end must be strings or None")
        self.write(("" if sep is None else sep).join(map(str, objects)) + ("\n" if end is None else end))

    def write(self, text: str) -> None:
        """Append printed text: the start is kept and streamed, past it only the latest `tail_limit` bytes."""
        if self.kept >= self.head_limit:  # the hot path of a print loop: no encoding, a clock read every 64th
            self._parts.append(text)
            self._parts_chars += len(text)
            self._writes += 1
            if self._parts_chars > self._trim_at or not self._writes & 63:
                self._collect()
                if time.monotonic() - self._last_flush >= self._interval:
                    self.flush()
            return
        data = text.encode(errors="replace")
        room = self.head_limit - self.kept
        if room > 0:
            head = data if len(data) <= room else data[:room].decode(errors="ignore").encode()
            self.kept = self.kept + len(head) if len(data) <= room else self.head_limit
            self._all.append(head.decode())
            self._head.append(head)
            self._head_bytes += len(head)
            data = data[len(head) :]
        if data:
            self._tail += data
            if len(self._tail) > self._trim_at:  # trimmed in batches: a print loop stays O(n)
                self._trim()
        now = time.monotonic()
        if self._head_bytes >= _FLUSH_BYTES or now - self._last_flush >= self._interval:
            self.flush(now)

    def _collect(self) -> None:
        if self._parts:
            self._tail += "".join(self._parts).encode(errors="replace")
            self._parts.clear()
            self._parts_chars = 0
        self._trim()

    def _trim(self) -> None:
        excess = len(self._tail) - self.tail_limit
        if excess > 0:
            del self._tail[:excess]
            self._skipped += excess
            self.dropped += excess

    def flush(self, now: float | None = None) -> None:
        """Send buffered text now (before tool calls and at the end, so a killed run keeps its output)."""
        self._collect()
        if self._head:
            text, self._head, self._head_bytes = b"".join(self._head).decode(), [], 0
            self._flush_to(text, 0)
        if self._tail or self._skipped:
            text, skipped = self._tail.decode(errors="ignore"), self._skipped
            self._tail, self._skipped = bytearray(), 0
            self._flush_to(text, skipped)
        self._last_flush = time.monotonic() if now is None else now


class Output:
    """Printed text as streamed by the worker, re-capped here because the worker is not trusted: the start (the
    same `head_bytes` split as the worker's printer) and the latest text, with a note of what was cut between."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._head_limit = head_bytes(limit)
        self._tail_limit = limit - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self._cut = 0

    def append(self, text: str, skipped: int = 0) -> None:
        data = text.encode(errors="replace")
        room = self._head_limit - len(self._head)
        if room > 0 and not skipped:
            self._head += data[:room]
            data = data[room:]
        elif skipped:
            self._cut += skipped + len(self._tail)  # what came before the gap is no longer the end
            self._tail.clear()
        self._tail += data
        excess = len(self._tail) - self._tail_limit
        if excess > self._tail_limit:  # trimmed in batches, and once more when rendered
            self._trim()

    def _trim(self) -> None:
        excess = len(self._tail) - self._tail_limit
        if excess > 0:
            self._cut += excess
            del self._tail[:excess]

    def render(self, dropped_in_worker: int) -> str:
        self._trim()
        head = self._head.decode(errors="ignore")
        tail = self._tail.decode(errors="ignore")
        cut = self._cut + dropped_in_worker
        if not cut:
            return head + tail
        note = cut_note(cut, self.limit)
        head = head if not head or head.endswith("\n") else head + "\n"
        return f"{head}{note}\n{tail}" if tail else f"{head}{note}"
