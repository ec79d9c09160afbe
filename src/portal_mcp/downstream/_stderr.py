"""`StderrPump`: a stdio server's stderr, forwarded to the portal's stderr with the server's name."""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable
from typing import TextIO

import anyio


class StderrPump:
    """A stdio server's stderr: forwarded line by line to the portal's stderr as `[name] line`, last lines kept.

    Every spawn of the server writes into the same pipe; `next_process` starts a new tail, so an error names only
    what the process at fault printed. Needs `anyio.wait_readable`
    on a pipe, which Windows lacks; there the server's stderr goes straight to the portal's stderr.
    """

    def __init__(self, server: str, errlog: TextIO | None, redact: Callable[[str], str] = str) -> None:
        """`redact` rewrites each line before it is kept or forwarded (a server may print a credential, whole or
        folded over several lines: `Redactor.text` also takes out a piece of one, see its limits)."""
        self._server = server
        self._errlog = errlog
        self._redact = redact
        self._closed = False
        self.tail: deque[str] = deque(maxlen=20)
        self._pending = b""
        self.available = sys.platform != "win32"
        if self.available:
            read_fd, write_fd = os.pipe()
            os.set_blocking(read_fd, False)
            self._read_fd = read_fd
            self.writer: TextIO = os.fdopen(write_fd, "w", encoding="utf-8")

    async def run(self) -> None:
        while True:
            await anyio.wait_readable(self._read_fd)
            if not self.drain():
                return

    def next_process(self) -> None:
        """A new process is about to start: forward what is left of the last one, then forget its lines."""
        if self.available and not self._closed:
            self.drain()
        self.tail.clear()

    def drain(self) -> bool:
        """Read what the pipe holds now, without blocking. False at end of file."""
        while True:
            try:
                chunk = os.read(self._read_fd, 65536)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not chunk:
                if self._pending:
                    self._line(self._pending)
                    self._pending = b""
                return False
            *lines, self._pending = (self._pending + chunk).split(b"\n")
            for line in lines:
                self._line(line)

    def _line(self, raw: bytes) -> None:
        text = self._redact(raw.decode("utf-8", "replace").rstrip("\r"))
        self.tail.append(text)
        out = self._errlog if self._errlog is not None else sys.stderr
        try:
            out.write(f"[{self._server}] {text}\n")
            out.flush()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        if self.available and not self._closed:
            self._closed = True
            self.writer.close()
            os.close(self._read_fd)
