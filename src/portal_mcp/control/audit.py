"""Audit events: every search, every run and every downstream call, attributable to a user.

This is the seam the control plane grows from: the portal records through an `AuditSink`; the default sink keeps
a bounded in-memory window (enough for `check`, tests and the demo). Durable sinks (SQLite, PostgreSQL) plug in
here without touching the bridge.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

Outcome = Literal["ok", "error", "refused"]
RunErrorKind = Literal[
    "exception", "syntax", "memory", "not_awaited", "internal", "timeout", "cpu", "crash", "protocol", "too_long",
    "cancelled",
]  # fmt: skip
"""Why a run in the sandbox failed: the detail of a failed run's record, and a bounded label of the metrics."""
RefusalKind = Literal["precheck", "rate_limit", "limit"]
"""Why the portal refused to start a run: its code failed the pre-run check, its user is over the rate limit, or
a budget of `limits:` (code size, runs in flight) refused it."""
Verdict = Literal["approved", "declined", "cancelled", "unsupported", "no_session", "timeout", "failed"]
"""A person's answer to an approval question (or why there was none): in a call record's detail and the metrics."""


@dataclass(frozen=True)
class AuditEvent:
    """One recorded action. `kind` says which; sizes are bytes of JSON; durations are milliseconds."""

    kind: Literal["search", "run", "call"]
    user: str
    outcome: Outcome
    duration_ms: float
    subject: str
    """The query (search), the code's sha256 (run) or the qualified tool name (call)."""
    detail: str = ""
    """Why it failed, when it did; never argument or result values (they may hold secrets)."""
    size_in: int = 0
    size_out: int = 0
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class AuditBacklog:
    """A queued sink's state: events waiting to be written, and those it had to give up on so far."""

    pending: int
    dropped: int
    """Refused because the queue was full (a long outage)."""
    lost: int
    """Rejected by the store, or still queued when it closed."""


class AuditSink(Protocol):
    def record(self, event: AuditEvent) -> None: ...


class MemoryAuditSink:
    """Keeps the most recent `capacity` events in memory."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._events: deque[AuditEvent] = deque(maxlen=capacity)

    def record(self, event: AuditEvent) -> None:
        self._events.append(event)

    def __iter__(self) -> Iterator[AuditEvent]:
        return iter(list(self._events))

    def __len__(self) -> int:
        return len(self._events)
