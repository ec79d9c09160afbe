"""`DownstreamEvent`: news about a downstream server (it failed, restarted, went down, changed its tools)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EventKind = Literal["failed", "exited", "restarting", "restarted", "down", "tools_changed", "warning"]


@dataclass(frozen=True)
class DownstreamEvent:
    """Something a user should hear about (the MCP server turns these into log notifications)."""

    server: str
    kind: EventKind
    level: Literal["info", "warning", "error"]
    message: str
    user: str | None = None
    """Set when the event is about one user's own connection (a `${user.KEY}` server): such events go to the
    portal's log only, never to other clients (their text can carry what that user's process printed)."""
