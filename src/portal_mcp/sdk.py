"""The mcp SDK's private parts the portal relies on, each read here and nowhere else.

The SDK hands request handlers a `ServerRequestContext` whose session keeps the per-client `Connection` in a
private attribute, with no public accessor; the client's stream protocols live in a private module. When an SDK
upgrade moves either, `tests/test_sdk.py` fails and this module is the one place to change.
"""

from __future__ import annotations

from mcp.client._transport import ReadStream, TransportStreams, WriteStream
from mcp.server.connection import Connection
from mcp.server.session import ServerSession

__all__ = ["Connection", "ReadStream", "TransportStreams", "WriteStream", "connection_of", "lasting_connection"]


def connection_of(session: ServerSession) -> Connection | None:
    """The connection a request came on: one per client session (legacy), or one per request (stateless HTTP and
    2026-07-28), with or without a channel for server-initiated messages.

    None only from an SDK that no longer keeps it there: what depends on it (log notifications, the tokens-saved
    metric) then stops rather than every request failing, and tests/test_sdk.py fails."""
    connection = getattr(session, "_connection", None)  # no public accessor on the session handlers get
    return connection if isinstance(connection, Connection) else None


def lasting_connection(session: ServerSession) -> Connection | None:
    """The connection a request came on if it outlives the request, with a channel to send log notifications on.

    Stateless HTTP requests (and 2026-07-28 ones) each get a fresh connection without a standalone channel: a
    caller remembering those would greet every request and keep a log level nobody can use, so they give None."""
    connection = connection_of(session)
    return connection if connection is not None and connection.has_standalone_channel else None
