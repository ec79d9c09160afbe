"""`ServerStatus`: one downstream server's state as the pool reports it, and the names of its transports and states."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from portal_mcp.config import RemoteServerConfig, SnapshotServerConfig, StdioServerConfig

TransportKind = Literal["stdio", "http", "sse", "snapshot", "inproc"]
ServerState = Literal["connecting", "connected", "failed", "snapshot", "disabled", "restarting", "exited", "down"]
"""`exited`: the connection ended while idle; the next call reconnects. `down`: reconnecting failed `max_restarts`
times in a row; `failed`: the first start failed. Both are retried in the background (`_link.RETRY_FIRST`, doubling
up to `_link.RETRY_CAP`); calls fail fast meanwhile, saying when the next retry is."""


@dataclass(frozen=True)
class ServerStatus:
    """One server as the portal sees it now."""

    name: str
    transport: TransportKind
    state: ServerState
    tool_count: int
    connect_ms: float | None
    error: str | None
    """User-facing: what went wrong and how to fix it (e.g. "command 'npx-typo' not found; check `command:`")."""
    restarts: int = 0
    for_seconds: float = 0.0
    """How long the server has been in this state."""
    retry_in: float | None = None
    """Seconds until the next background retry of a `failed` or `down` server (None: none planned)."""


def transport_kind(server: StdioServerConfig | RemoteServerConfig | SnapshotServerConfig) -> TransportKind:
    if isinstance(server, StdioServerConfig):
        return "stdio"
    if isinstance(server, RemoteServerConfig):
        return server.type
    return "snapshot"
