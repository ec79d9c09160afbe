"""A run's progress, as a client that sent a progress token on `execute_code` sees it.

Each notification says how many tool calls the run made and how many are pending, the latest progress a downstream
server reported (named), and the end of what the code printed so far (at most `TAIL_CHARS`). The progress value
counts the changes, so it only grows, as the protocol requires; there is no total (a run's length is unknown).
Changes are batched: at most one notification per `INTERVAL` seconds, the last state always sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

TAIL_CHARS = 200
"""The end of the printed output a notification carries."""
INTERVAL = 0.1
"""Seconds between notifications while a run keeps changing."""

Send = Callable[[float, float | None, str | None], Awaitable[None]]
"""(progress, total, message): the MCP request's progress notification (`ctx.report_progress`)."""


class RunProgress:
    """What a run did so far; `forward` sends it to the client while the run goes on."""

    def __init__(self) -> None:
        self.made = 0
        self.pending = 0
        self.changes = 0
        self.downstream = ""
        self._printed = ""
        self._changed = anyio.Event()

    def call_started(self) -> None:
        self.made += 1
        self.pending += 1
        self._bump()

    def call_ended(self) -> None:
        self.pending -= 1
        self._bump()

    def printed(self, text: str) -> None:
        self._printed = (self._printed + text)[-TAIL_CHARS:]
        self._bump()

    async def server_progress(self, server: str, progress: float, total: float | None, message: str | None) -> None:
        of = f"/{total:g}" if total is not None else ""
        self.downstream = f"{server}: {progress:g}{of}" + (f" {message}" if message else "")
        self._bump()

    def message(self) -> str:
        parts = [f"{self.made} tool call{'s' if self.made != 1 else ''} made, {self.pending} pending"]
        if self.downstream:
            parts.append(self.downstream[:TAIL_CHARS])
        if self._printed:
            parts.append(
                f"printed: …{self._printed}" if len(self._printed) == TAIL_CHARS else f"printed: {self._printed}"
            )
        return "; ".join(parts)

    async def forward(self, send: Send) -> None:
        """Send a notification after each batch of changes until cancelled (the run's request ends)."""
        sent = 0
        while True:
            if self.changes == sent:
                await self._changed.wait()
            sent = self.changes
            await send(float(sent), None, self.message())
            await anyio.sleep(INTERVAL)

    def _bump(self) -> None:
        self.changes += 1
        changed, self._changed = self._changed, anyio.Event()
        changed.set()


def counted(
    call: Callable[[str, dict[str, Any]], Awaitable[Any]], progress: RunProgress | None
) -> Callable[[str, dict[str, Any]], Awaitable[Any]]:
    """`call` (a run's tool calls), counted as made and pending in `progress` when a client follows the run."""
    if progress is None:
        return call

    async def counting(qualified: str, arguments: dict[str, Any]) -> Any:
        progress.call_started()
        try:
            return await call(qualified, arguments)
        finally:
            progress.call_ended()

    return counting
