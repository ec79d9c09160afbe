"""The SDK transports a link connects through (stdio, streamable HTTP, SSE), wrapped so a `Watch` sees their streams."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
import httpx2
import mcp_types as types
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import SessionMessage

from portal_mcp.config import RemoteServerConfig, StdioServerConfig
from portal_mcp.downstream._processes import SPAWN_ID_VAR
from portal_mcp.downstream._stderr import StderrPump
from portal_mcp.sdk import ReadWrapper

if TYPE_CHECKING:
    # The SDK's stream protocols (in a private module: portal_mcp.sdk names them); only named in annotations.
    from portal_mcp.sdk import ReadStream, TransportStreams, WriteStream


class Watch:
    """What a link learns by watching one connection's streams."""

    def __init__(self, on_closed: Callable[[], None]) -> None:
        self.closed = anyio.Event()
        """The transport's read side ended: the process exited or the connection dropped."""
        self.ended = anyio.Event()
        """The link has finished with this connection (and recorded why it ended)."""
        self.calls_written = 0
        """tools/call requests handed to the transport; unchanged across a failed call means it never left."""
        self.unsent_on_loss = False
        self.http_status: tuple[int, str] | None = None
        self.session_expired = False
        """A streamable HTTP server answered 404 to our session id: the request was not run."""
        self._on_closed = on_closed

    def mark_closed(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self._on_closed()


class WatchedTransport:
    """An SDK transport whose streams report to a `Watch`: end of the read side, tools/call requests written."""

    def __init__(self, inner: AbstractAsyncContextManager[TransportStreams], watch: Watch) -> None:
        self._inner = inner
        self._watch = watch

    async def __aenter__(self) -> TransportStreams:
        read, write = await self._inner.__aenter__()
        return _WatchedRead(read, self._watch), _WatchedWrite(write, self._watch)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        self._watch.mark_closed()
        return await self._inner.__aexit__(exc_type, exc, tb)


class _WatchedRead(ReadWrapper):
    def __init__(self, inner: ReadStream[SessionMessage | Exception], watch: Watch) -> None:
        super().__init__(inner)
        self._watch = watch

    async def receive(self) -> SessionMessage | Exception:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._watch.mark_closed()
            raise

    async def aclose(self) -> None:
        self._watch.mark_closed()
        await self._inner.aclose()


class _WatchedWrite:
    def __init__(self, inner: WriteStream[SessionMessage], watch: Watch) -> None:
        self._inner = inner
        self._watch = watch

    async def send(self, item: SessionMessage, /) -> None:
        message = item.message
        if isinstance(message, types.JSONRPCRequest) and message.method == "tools/call":
            # Counted before the send: a send that raises may still have delivered.
            self._watch.calls_written += 1
        await self._inner.send(item)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _WatchedWrite:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _http_client_factory(watch: Watch) -> Callable[..., httpx2.AsyncClient]:
    """httpx clients with the SDK's timeouts that remember the last HTTP error status for error messages."""

    async def record(response: httpx2.Response) -> None:
        if response.status_code == 404 and "mcp-session-id" in response.request.headers:
            # The server no longer knows our session (it restarted): the spec says to start a new one.
            watch.session_expired = True
        elif response.status_code >= 400:
            watch.http_status = (response.status_code, response.reason_phrase)

    def factory(
        headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None, auth: httpx2.Auth | None = None
    ) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers=headers,
            timeout=timeout or httpx2.Timeout(30.0, read=300.0),
            auth=auth,
            event_hooks={"response": [record]},
        )

    return factory


@asynccontextmanager
async def _streamable_http(
    url: str, headers: Mapping[str, str], watch: Watch, auth: httpx2.Auth | None
) -> AsyncIterator[TransportStreams]:
    async with (
        _http_client_factory(watch)(headers=dict(headers), auth=auth) as http,
        streamable_http_client(url, http_client=http) as streams,
    ):
        yield streams


def open_transport(
    config: StdioServerConfig | RemoteServerConfig,
    watch: Watch,
    token: str,
    pump: StderrPump | None,
    auth: httpx2.Auth | None = None,
) -> WatchedTransport:
    """A watched SDK transport for a configured server; a stdio server gets `token` in its environment, a remote
    one's requests go through `auth` (a user's OAuth connection) when given."""
    if isinstance(config, StdioServerConfig):
        params = StdioServerParameters(
            command=config.command, args=config.args, env={**config.env, SPAWN_ID_VAR: token}, cwd=config.cwd
        )
        errlog = pump.writer if pump is not None and pump.available else sys.stderr
        return WatchedTransport(stdio_client(params, errlog=errlog), watch)
    if config.type == "sse":
        factory = _http_client_factory(watch)
        sse = sse_client(config.url, headers=config.headers, httpx_client_factory=factory, auth=auth)
        return WatchedTransport(sse, watch)
    return WatchedTransport(_streamable_http(config.url, config.headers, watch, auth), watch)
