"""The mcp SDK's private parts the portal relies on, each read here and nowhere else.

The SDK hands request handlers a `ServerRequestContext` whose session keeps the per-client `Connection` in a
private attribute, with no public accessor; the stream protocols live in a private module, and the dispatcher finds
the sender's context on a read stream by a duck-typed attribute (`ReadWrapper` keeps it); the stdio
transport claims stdin with private helpers that a caller giving its own input stream has to call itself. When an
SDK upgrade moves any of them, `tests/test_sdk.py` fails and this module is the one place to change.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, BinaryIO, Self

import anyio
from mcp.client._transport import ReadStream, TransportStreams, WriteStream
from mcp.server.connection import Connection
from mcp.server.session import ServerSession
from mcp.server.stdio import _claim_fd, _open_stdin_diversion, _UnownedTextWrapper
from mcp.shared.message import SessionMessage

__all__ = [
    "Connection",
    "ReadStream",
    "ReadWrapper",
    "TransportStreams",
    "UnownedTextWrapper",
    "WriteStream",
    "claim_stdin",
    "connection_of",
    "lasting_connection",
]

UnownedTextWrapper = _UnownedTextWrapper
"""A text layer over a claimed buffer whose close leaves the buffer open (the SDK's stdio transport reads stdin
through one)."""


class ReadWrapper:
    """A transport's read stream seen through a subclass that overrides `receive` (and `aclose` if it must): the
    iteration, the context manager and the sender's context (`last_context`, which the SDK's dispatcher reads by
    name when the transport keeps one) go to the inner stream."""

    def __init__(self, inner: ReadStream[SessionMessage | Exception]) -> None:
        self._inner = inner

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        return await self._inner.receive()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def claim_stdin() -> tuple[BinaryIO, Callable[[], None] | None]:
    """Stdin claimed as the SDK's stdio transport claims it when it opens stdin itself: the wire read from a private
    duplicate, fd 0 pointed at the null device (children read EOF, not the client's messages) until the returned
    callback (None when nothing was diverted) puts it back."""
    return _claim_fd(0, sys.stdin, "rb", _open_stdin_diversion)


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
