"""What a link reports to its pool (`Hooks`), and `DownstreamEvent`: news about a downstream server (it failed,
restarted, went down, changed its tools)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from mcp_types import Tool

from portal_mcp.catalog.status import ServerStatus
from portal_mcp.control.credentials import Redactor

EventKind = Literal[
    "failed", "exited", "restarting", "restarted", "down", "tools_changed", "listing_changed", "warning"
]


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


@dataclass(frozen=True)
class Hooks:
    """What a link reports to its pool."""

    emit: Callable[[DownstreamEvent], Awaitable[None]]
    tools_changed: Callable[[str, list[Tool]], Awaitable[None]]
    status: Callable[[ServerStatus], None]
    redactor: Redactor
    """Applied to every error and event message the link writes, and to the tools it lists."""
    listed: Callable[[str, list[Tool], bool], Awaitable[None]] | None = None
    """Every successful listing (server, tools, whether this is the link's first connection): the pool keeps it
    as the server's last known list and, for a server that came up after start, updates the catalog."""
