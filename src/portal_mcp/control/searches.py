"""A search of the catalog, whoever asks (`search_api`, or `portal.search` from agent code): admitted, offloaded,
recorded, the same way on both paths.

```
searches = Searches(budgets, events, redactor)
searches.admit(user, query)                  # on the event loop: the rate and the length (LimitError), before work
reply = await searches.offload(work, *args, user=user)   # the ranking and the reply: a thread, one per user
searches.record(user, "ok", started, query, "", len(reply))   # on the event loop again: the audit event
```
A ranking over 10,000 tools is about 10 ms of CPU and its reply a few more: on the event loop, one user's flood of
searches would hold up every other user's calls. Refusals cost nothing (they never reach a thread) and are recorded
too (a refusal is work as well).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from portal_mcp.control.audit import AuditEvent, AuditSink, Outcome
from portal_mcp.control.budgets import Budgets
from portal_mcp.control.credentials import Redactor

T = TypeVar("T")


class Searches:
    """The portal's side of every search: its budget, its thread and its audit record."""

    def __init__(self, budgets: Budgets, events: AuditSink, redactor: Redactor) -> None:
        self._budgets = budgets
        self._events = events
        self._redactor = redactor

    def admit(self, user: str, query: str) -> None:
        """Count one search of `user`, or raise `LimitError` (too many this minute, or the query too long)."""
        self._budgets.search(user, query)

    async def offload(self, work: Callable[..., T], *args: Any, user: str) -> T:
        """`work(*args)` in a thread of `limits.heavy_threads`, one at a time per user: its cost is the catalog's
        size, not its input's, so it never runs on the event loop (`Budgets.offload` with no size)."""
        return await self._budgets.offload(work, *args, size=None, user=user)

    def record(self, user: str, outcome: Outcome, started: float, query: str, detail: str = "", size: int = 0) -> None:
        """Audit a search that began at `started` (`time.perf_counter()`); the query is cut to
        `limits.max_query_chars` and redacted like every other text the portal keeps."""
        duration = (time.perf_counter() - started) * 1000
        text = self._redactor.text(query[: self._budgets.limits.max_query_chars])
        self._events.record(AuditEvent("search", user, outcome, duration, text, detail, 0, size))
