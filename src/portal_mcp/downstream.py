"""Connections to downstream MCP servers: one official-SDK `Client` per server, owned by a `DownstreamPool`.

```
DownstreamPool                 async context manager; owns one task group and every process it starts
├── _Link (stdio|http|sse|inproc)  a long-lived task that enters `mcp.client.Client`, lists the tools and parks
│                                  until the connection ends, the pool closes or the server says
│                                  `tools/list_changed`; it (re)connects when a call finds the connection dead
└── snapshot / disabled            tools read from a file / nothing; no task
```
anyio requires the task that enters a cancel scope to exit it, so only a link's own task enters and exits the SDK's
context managers. `call_tool` sends its request on the link's live `Client` from the caller's task (the SDK session
serves concurrent requests) and asks the link task for a new connection when it finds the old one dead.

Connections use the `initialize` handshake (`mode="legacy"`): every server released so far speaks it, and
`tools/list_changed` arrives as a plain notification. A server that rejects it as too old is retried with
`mode="auto"` (the 2026 `server/discover` era), where list changes come through `Client.listen()`.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TextIO

import anyio
import anyio.abc
import anyio.to_thread
import httpx2
import mcp_types as types
from mcp.client import Client, IncomingMessage
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import MCPServer, Server
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import CallToolResult, Tool
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from portal_mcp import __version__
from portal_mcp.config import RemoteServerConfig, ServerConfig, SnapshotServerConfig, StdioServerConfig
from portal_mcp.errors import (
    ConfigError,
    DownstreamError,
    ServerUnavailableError,
    SnapshotOnlyError,
    ToolTimeoutError,
)
from portal_mcp.snapshot import load_snapshot

if TYPE_CHECKING:
    # The SDK's stream protocols; only named in annotations.
    from mcp.client._transport import ReadStream, TransportStreams, WriteStream

__all__ = ["DownstreamEvent", "DownstreamPool", "ServerStatus"]

logger = logging.getLogger(__name__)

TransportKind = Literal["stdio", "http", "sse", "snapshot", "inproc"]
ServerState = Literal["connecting", "connected", "failed", "snapshot", "disabled", "restarting", "exited", "down"]
"""`exited`: the connection ended while idle; the next call reconnects. `down`: reconnecting failed `max_restarts`
times in a row; calls fail fast until `down_retry_after` has passed."""
EventKind = Literal["failed", "exited", "restarting", "restarted", "down", "tools_changed", "warning"]

_MAX_PAGES = 1000
"""tools/list pages followed before giving up on a paginator that never ends."""
_BACKOFF = 0.2
"""Seconds before the first respawn; doubled for each further attempt."""
_DEFAULT_RESTARTS = 3
"""Reconnect attempts for servers whose config has no `max_restarts` (remote and in-process ones)."""
_DEFAULT_TIMEOUT = 60.0
_DEFAULT_CONNECT_TIMEOUT = 30.0
_CLOSE_GRACE = 8.0
"""The SDK's stdio shutdown waits 2s for an exit after stdin closes, then 2s after SIGTERM, then reaps."""
_CALLBACK_TIMEOUT = 10.0
_REAP_TIMEOUT = 3.0
_TOKEN_VAR = "PORTAL_MCP_SERVER_TOKEN"
"""Set in every stdio server's environment, so the processes it started can be found (and ended) after it."""
_CLIENT_INFO = types.Implementation(name="portal-mcp", version=__version__)
_LOG_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


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


@dataclass(frozen=True)
class DownstreamEvent:
    """Something a user should hear about (the MCP server turns these into log notifications)."""

    server: str
    kind: EventKind
    level: Literal["info", "warning", "error"]
    message: str


@dataclass(frozen=True)
class _Hooks:
    emit: Callable[[DownstreamEvent], Awaitable[None]]
    tools_changed: Callable[[str, list[Tool]], Awaitable[None]]
    status: Callable[[ServerStatus], None]


class DownstreamPool:
    """Every downstream server of one portal: connect all, list tools, call tools, close all.

    `async with DownstreamPool(config.servers) as pool:` connects every server concurrently, each under its own
    `connect_timeout`; a server that cannot start is recorded as `failed` and never raises. On exit every
    connection is closed and every process a stdio server started, its children included, has ended.
    """

    def __init__(
        self,
        servers: Mapping[str, ServerConfig],
        *,
        local: Mapping[str, MCPServer | Server[Any]] | None = None,
        on_tools_changed: Callable[[str, list[Tool]], Awaitable[None]] | None = None,
        on_event: Callable[[DownstreamEvent], Awaitable[None]] | None = None,
        on_status: Callable[[ServerStatus], None] | None = None,
        errlog: TextIO | None = None,
        down_retry_after: float = 30.0,
    ) -> None:
        """`local` servers run in this process (tests, embedders). `on_status` is startup progress: called once per
        server when its first connection attempt settles; later changes arrive as `on_event` events. Stdio servers'
        stderr lines go to `errlog` (default: the portal's stderr) prefixed with `[name]`, never to stdout, which
        may be the portal's MCP channel. After a server ends `down` (or `failed`), calls fail fast for
        `down_retry_after` seconds; the next call after that tries to bring it back."""
        clash = sorted(set(servers) & set(local or {}))
        if clash:
            raise ValueError(f"server names {clash} are both configured and passed as `local`; rename one")
        self._servers = dict(servers)
        self._local = dict(local or {})
        self._on_tools_changed = on_tools_changed
        self._on_event = on_event
        self._on_status = on_status
        self._errlog = errlog
        self._down_retry_after = down_retry_after
        self._links: dict[str, _Link] = {}
        self._fixed: dict[str, tuple[ServerStatus, list[Tool]]] = {}
        self._pumps: list[_StderrPump] = []
        self._stack: AsyncExitStack | None = None
        self._cancel: anyio.CancelScope | None = None
        self._entered = False

    async def __aenter__(self) -> DownstreamPool:
        if self._entered:
            raise RuntimeError("a DownstreamPool can be entered only once")
        self._entered = True
        self._stack = AsyncExitStack()
        try:
            task_group = await self._stack.enter_async_context(anyio.create_task_group())
            self._cancel = task_group.cancel_scope
            hooks = _Hooks(emit=self._emit, tools_changed=self._tools_changed, status=self._status)
            for name, server in self._servers.items():
                if server.disabled:
                    self._fix(name, _kind(server), "disabled", [], None)
                elif isinstance(server, SnapshotServerConfig):
                    try:
                        self._fix(name, "snapshot", "snapshot", load_snapshot(server.snapshot), None)
                    except ConfigError as exc:
                        self._fix(name, "snapshot", "failed", [], str(exc))
                        await self._emit(DownstreamEvent(name, "failed", "error", str(exc)))
                else:
                    pump = _StderrPump(name, self._errlog) if isinstance(server, StdioServerConfig) else None
                    if pump is not None and pump.available:
                        self._pumps.append(pump)
                        task_group.start_soon(pump.run)
                    self._links[name] = _Link(name, server, hooks, pump, self._down_retry_after)
            for name, local_server in self._local.items():
                self._links[name] = _Link(name, local_server, hooks, None, self._down_retry_after)
            for link in self._links.values():
                task_group.start_soon(link.run)
            # Each connect ends within its connect_timeout; the margin covers the SDK's bounded cleanup.
            longest = max((link.connect_timeout for link in self._links.values()), default=0.0)
            with anyio.move_on_after(longest + 2 * _CLOSE_GRACE):
                for link in self._links.values():
                    await link.first_settled.wait()
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        """Close every connection gracefully (bounded), then cancel what is left and wait for it."""
        with anyio.CancelScope(shield=True):
            for link in self._links.values():
                link.close()
            with anyio.move_on_after(_CLOSE_GRACE):
                for link in self._links.values():
                    if link.running:
                        await link.done.wait()
        if self._cancel is not None:
            self._cancel.cancel()
        try:
            if self._stack is not None:
                # The task group must be exited outside the shield it was not entered in; the SDK's own
                # process and connection cleanup is shielded, so cancellation cannot leak a process here.
                await self._stack.aclose()
        finally:
            for pump in self._pumps:
                pump.drain()  # the last words of a server that just exited
                pump.close()

    def listings(self) -> dict[str, list[Tool]]:
        """The current tools of every usable server (connected, reconnectable, snapshot), in config order."""
        result: dict[str, list[Tool]] = {}
        for name in self._order():
            if name in self._fixed:
                status, tools = self._fixed[name]
                if status.state == "snapshot":
                    result[name] = list(tools)
            elif self._links[name].state in ("connected", "restarting", "exited"):
                result[name] = list(self._links[name].tools)
        return result

    def statuses(self) -> list[ServerStatus]:
        """Every configured server (then every local one) with its state, in config order."""
        return [self._fixed[name][0] if name in self._fixed else self._links[name].status() for name in self._order()]

    def stderr_tail(self, server: str) -> list[str]:
        """The last lines a stdio server wrote to stderr (empty for other servers)."""
        link = self._links.get(server)
        return link.stderr_tail() if link is not None else []

    async def call_tool(self, server: str, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        """Call `tool` on `server` under the server's `timeout`.

        A tool that reports failure comes back as a result with `is_error` set. Raises `ToolTimeoutError` (the
        request was cancelled downstream), `SnapshotOnlyError`, `ServerUnavailableError` (down, respawns
        exhausted) or `DownstreamError` (the server rejected the request, or the connection was lost mid-call).
        """
        if not self._entered:
            raise RuntimeError("enter the DownstreamPool (`async with`) before calling tools")
        link = self._links.get(server)
        if link is not None:
            return await link.call_tool(tool, arguments)
        config = self._servers.get(server)
        if isinstance(config, SnapshotServerConfig) and not config.disabled:
            raise SnapshotOnlyError(server, tool, str(config.snapshot))
        if config is not None:
            raise DownstreamError(server, "the server is disabled (`disabled: true`); enable it to call its tools")
        known = ", ".join(repr(name) for name in self._order()) or "none"
        raise DownstreamError(server, f"no server has this name (configured: {known}); check `servers:`")

    def _order(self) -> list[str]:
        return [*self._servers, *self._local]

    def _fix(self, name: str, kind: TransportKind, state: ServerState, tools: list[Tool], error: str | None) -> None:
        status = ServerStatus(name, kind, state, len(tools), None, error)
        self._fixed[name] = (status, tools)
        self._status(status)

    async def _emit(self, event: DownstreamEvent) -> None:
        logger.log(_LOG_LEVELS[event.level], "server %r: %s", event.server, event.message)
        if self._on_event is not None:
            await _guarded(self._on_event(event), "on_event")

    async def _tools_changed(self, server: str, tools: list[Tool]) -> None:
        if self._on_tools_changed is not None:
            await _guarded(self._on_tools_changed(server, tools), "on_tools_changed")

    def _status(self, status: ServerStatus) -> None:
        if self._on_status is not None:
            try:
                self._on_status(status)
            except Exception:
                logger.exception("on_status callback raised")


async def _guarded(call: Awaitable[None], what: str) -> None:
    """Run an embedder's callback without letting it break (or hang) a connection."""
    with anyio.move_on_after(_CALLBACK_TIMEOUT) as scope:
        try:
            await call
        except Exception:
            logger.exception("%s callback raised", what)
    if scope.cancelled_caught:
        logger.warning("%s callback took longer than %gs and was cancelled", what, _CALLBACK_TIMEOUT)


def _kind(server: StdioServerConfig | RemoteServerConfig | SnapshotServerConfig) -> TransportKind:
    if isinstance(server, StdioServerConfig):
        return "stdio"
    if isinstance(server, RemoteServerConfig):
        return server.type
    return "snapshot"


class _Link:
    """One live server: the task that owns its connection, and the call path that uses it."""

    def __init__(
        self,
        name: str,
        target: StdioServerConfig | RemoteServerConfig | MCPServer | Server[Any],
        hooks: _Hooks,
        pump: _StderrPump | None,
        down_retry_after: float,
    ) -> None:
        self.name = name
        self._target = target
        self._config = target if isinstance(target, StdioServerConfig | RemoteServerConfig) else None
        self.kind: TransportKind = "inproc" if self._config is None else _kind(self._config)
        self.timeout = self._config.timeout if self._config else _DEFAULT_TIMEOUT
        self.connect_timeout = self._config.connect_timeout if self._config else _DEFAULT_CONNECT_TIMEOUT
        self.max_restarts = (
            self._config.max_restarts if isinstance(self._config, StdioServerConfig) else _DEFAULT_RESTARTS
        )
        self._hooks = hooks
        self._pump = pump
        self._down_retry_after = down_retry_after

        self.tools: list[Tool] = []
        self.state: ServerState = "connecting"
        self.error: str | None = None
        self.connect_ms: float | None = None
        self.restarts = 0
        self._mode: Literal["legacy", "auto"] = "legacy"
        self._client: Client | None = None
        self._watch: _Watch | None = None
        self._generation = 0
        self._given_up_at: float | None = None
        self._stream_error: str | None = None
        self._closing = False
        self._wake = anyio.Event()
        self._relist = False
        self._drop = False
        self._cycle_wanted = anyio.Event()
        self._cycle_done: anyio.Event | None = anyio.Event()
        self.first_settled = self._cycle_done
        self.done = anyio.Event()
        self._scope = anyio.CancelScope()
        self._reported = False
        self.running = False

    def status(self) -> ServerStatus:
        return ServerStatus(
            self.name, self.kind, self.state, len(self.tools), self.connect_ms, self.error, self.restarts
        )

    def stderr_tail(self) -> list[str]:
        return list(self._pump.tail) if self._pump is not None else []

    # -- the link task ---------------------------------------------------------------------------------------------

    async def run(self) -> None:
        self.running = True
        try:
            with self._scope:
                await self._cycle(first=True)
                while not self._closing:
                    await self._cycle_wanted.wait()
                    self._cycle_wanted = anyio.Event()
                    if not self._closing:
                        await self._cycle(first=False)
        finally:
            self._settle()
            self.done.set()

    def _wake_up(self) -> None:
        # Looked up at call time: `_serve` replaces the event after every wake-up.
        self._wake.set()

    def close(self) -> None:
        """Ask the link task to end: gracefully when connected, at once when connecting or idle."""
        self._closing = True
        self._wake.set()
        self._cycle_wanted.set()
        if self._client is None:
            self._scope.cancel()

    async def _cycle(self, *, first: bool) -> None:
        """Connect (first start: once; later: up to `max_restarts` times with backoff) and serve until it ends."""
        attempts = 1 if first else self.max_restarts
        reason = self.error or "the connection was lost"
        error = "restarts are disabled (`max_restarts: 0`)"
        for attempt in range(1, attempts + 1):
            if not first:
                self._set_state("restarting", reason)
                await self._event(
                    "restarting", "warning", f"restarting (attempt {attempt} of {attempts}) because {reason}"
                )
                await anyio.sleep(_BACKOFF * 2 ** (attempt - 1))
            outcome = await self._session(restart=not first)
            if outcome is None:
                return
            error = reason = outcome
        self._given_up_at = anyio.current_time()
        if first:
            self._set_state("failed", error)
            await self._event("failed", "error", f"failed to start: {error}")
        else:
            self._set_state("down", error)
            await self._event(
                "down",
                "error",
                f"is down after {attempts} restart attempt(s): {error}; check it with `portal-mcp check`",
            )
        self._settle()

    async def _session(self, *, restart: bool) -> str | None:
        """One connection from start to end. Returns None if it connected (it has ended since), else the error."""
        outcome = await self._session_once(restart=restart)
        if isinstance(outcome, _TooOld):
            # The server rejected the initialize handshake as too old; speak the 2026 protocol instead.
            self._mode = "auto"
            outcome = await self._session_once(restart=restart)
        if isinstance(outcome, _TooOld):  # pragma: no cover - only the legacy handshake reports it
            return "the server rejected every protocol version this client speaks"
        return outcome

    async def _session_once(self, *, restart: bool) -> str | _TooOld | None:
        watch = _Watch(self._wake_up)
        token = uuid.uuid4().hex
        started = anyio.current_time()
        connected = False
        error: str | None = None
        self._drop = self._relist = False
        self._stream_error = None
        try:
            with anyio.CancelScope(deadline=started + self.connect_timeout) as deadline:
                client = Client(
                    self._transport(watch, token),
                    mode=self._mode,
                    cache=None,
                    client_info=_CLIENT_INFO,
                    message_handler=self._on_message,
                )
                async with client, anyio.create_task_group() as task_group:
                    if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                        # Subscribe before listing, so no change can fall between the two.
                        await task_group.start(self._listen, client)
                    tools = await self._list_tools(client)
                    deadline.deadline = math.inf
                    connected = True
                    await self._connected(client, watch, tools, (anyio.current_time() - started) * 1000, restart)
                    await self._serve(client, watch)
                    task_group.cancel_scope.cancel()
            if deadline.cancelled_caught:
                error = self._explain(
                    f"did not finish starting (MCP handshake and tools/list) within {self.connect_timeout:g}s; "
                    "raise `connect_timeout:` if it is just slow to start"
                )
        except Exception as exc:
            if not connected and self._mode == "legacy" and _rejects_handshake(exc):
                return _TOO_OLD
            error = self._describe(exc, watch)
            watch.unsent_on_loss = _unreachable(exc)
        finally:
            self._client = None
            if self.kind == "stdio":
                with anyio.CancelScope(shield=True), anyio.move_on_after(_REAP_TIMEOUT):
                    await _end_processes(token)
            if connected and not self._closing:
                ended = (
                    "the server process exited (or closed its stdout)"
                    if self.kind == "stdio"
                    else "the server closed the connection"
                )
                self._set_state("exited", error or self._explain(ended))
            watch.ended.set()
        if not connected:
            return error
        if not self._closing:
            await self._event("exited", "warning", f"connection ended: {self.error}; it restarts on the next call")
        return None

    def _transport(self, watch: _Watch, token: str) -> Any:
        """What `Client` connects to: a watched SDK transport, or the in-process server itself."""
        config = self._config
        if config is None:
            return self._target
        if isinstance(config, StdioServerConfig):
            params = StdioServerParameters(
                command=config.command, args=config.args, env={**config.env, _TOKEN_VAR: token}, cwd=config.cwd
            )
            errlog = self._pump.writer if self._pump is not None and self._pump.available else sys.stderr
            return _WatchedTransport(stdio_client(params, errlog=errlog), watch)
        if config.type == "sse":
            factory = _http_client_factory(watch)
            return _WatchedTransport(
                sse_client(config.url, headers=config.headers, httpx_client_factory=factory), watch
            )
        return _WatchedTransport(_streamable_http(config.url, config.headers, watch), watch)

    async def _connected(self, client: Client, watch: _Watch, tools: list[Tool], ms: float, restart: bool) -> None:
        self._client, self._watch = client, watch
        self._generation += 1
        self._given_up_at = None
        self.connect_ms = ms
        changed = restart and _dump(tools) != _dump(self.tools)
        self.tools = tools
        if restart:
            self.restarts += 1
        self._set_state("connected", None)
        self._settle()
        if restart:
            await self._event("restarted", "info", f"restarted in {ms:.0f} ms; it lists {len(tools)} tools")
        if changed:
            await self._hooks.tools_changed(self.name, list(tools))

    async def _serve(self, client: Client, watch: _Watch) -> None:
        """Park until the connection ends or the pool closes; re-list tools when the server says they changed."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            if self._closing or self._drop or watch.closed.is_set():
                return
            if self._relist:
                self._relist = False
                await self._refresh(client)

    async def _listen(self, client: Client, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """2026 servers announce list changes on a `subscriptions/listen` stream instead of a notification."""
        started = False
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                task_status.started()
                started = True
                async for _ in subscription:
                    self._relist = True
                    self._wake.set()
        except Exception as exc:
            if not started:
                task_status.started()
            await self._event("warning", "warning", f"cannot follow tool list changes: {exc}")

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self._relist = True
            self._wake.set()
        elif isinstance(message, Exception):
            # A stdout line that is not JSON-RPC, or a broken HTTP stream: worth naming if the connection ends.
            self._stream_error = f"{type(message).__name__}: {message}"[:200]

    async def _refresh(self, client: Client) -> None:
        try:
            with anyio.fail_after(self.connect_timeout):
                tools = await self._list_tools(client)
        except (MCPError, TimeoutError, ValidationError) as exc:
            await self._event(
                "warning", "warning", f"re-listing tools after tools/list_changed failed ({exc}); keeping the old list"
            )
            return
        if _dump(tools) != _dump(self.tools):
            self.tools = tools
            await self._event("tools_changed", "info", f"tool list changed; it now lists {len(tools)} tools")
            await self._hooks.tools_changed(self.name, list(tools))

    async def _list_tools(self, client: Client) -> list[Tool]:
        """Every page of tools/list (at most `_MAX_PAGES`, stopping at a repeated cursor); first listing wins."""
        tools: dict[str, Tool] = {}
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            page = await client.list_tools(cursor=cursor)
            for tool in page.tools:
                tools.setdefault(tool.name, tool)
            cursor = page.next_cursor
            if cursor is None:
                return list(tools.values())
            if cursor in seen:
                await self._event("warning", "warning", f"tools/list repeats cursor {cursor!r}; using the tools so far")
                return list(tools.values())
            seen.add(cursor)
        await self._event("warning", "warning", f"tools/list did not end after {_MAX_PAGES} pages; using those")
        return list(tools.values())

    # -- the call path (runs in the caller's task) ------------------------------------------------------------------

    async def call_tool(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        for _attempt in range(2):  # a request that never reached the server is sent once more
            client, watch, generation = await self._usable()
            written = watch.calls_written if watch is not None else -1
            try:
                with anyio.move_on_after(self.timeout) as scope:
                    result = await client.call_tool(tool, arguments)
            except MCPError as exc:
                if exc.code != types.CONNECTION_CLOSED and not (watch is not None and watch.session_expired):
                    raise DownstreamError(
                        self.name, f"tool {tool!r} was rejected: {exc.message} (JSON-RPC error {exc.code})"
                    ) from None
                lost = await self._lost(watch, written, generation)
            except (RuntimeError, ValidationError) as exc:
                if self._client is client:
                    # The SDK checks structuredContent against the tool's outputSchema.
                    raise DownstreamError(self.name, f"tool {tool!r} returned an invalid result: {exc}") from None
                # The link closed this client under us ("Client must be used within an async context manager").
                lost = await self._lost(watch, written, generation)
            else:
                if scope.cancelled_caught:
                    # Leaving the cancelled request made the SDK send notifications/cancelled downstream.
                    raise ToolTimeoutError(self.name, tool, self.timeout)
                return result
            if lost == "maybe":
                raise DownstreamError(
                    self.name,
                    f"the connection ended while tool {tool!r} was running ({self.error or 'connection closed'}); "
                    "the call was not retried because it may have run; the server restarts on the next call",
                )
        raise ServerUnavailableError(
            self.name,
            f"the connection was lost again before tool {tool!r} could be sent ({self.error}); "
            "check the server with `portal-mcp check`",
        )

    async def _usable(self) -> tuple[Client, _Watch | None, int]:
        """The live client, after asking the link task to (re)connect if needed. Raises `ServerUnavailableError`."""
        budget = self.max_restarts * (self.connect_timeout + _CLOSE_GRACE) + _BACKOFF * 2**self.max_restarts + 10
        with anyio.fail_after(budget):
            for _ in range(3):
                client, watch = self._client, self._watch
                if self._closing:
                    raise ServerUnavailableError(self.name, "the portal is shutting down")
                if client is not None and not self._drop and not (watch is not None and watch.closed.is_set()):
                    return client, watch, self._generation
                if self._given_up_at is not None and anyio.current_time() - self._given_up_at < self._down_retry_after:
                    raise ServerUnavailableError(self.name, self._unavailable())
                await self._request_cycle().wait()
                if self._given_up_at is not None and self._client is None:
                    raise ServerUnavailableError(self.name, self._unavailable())
        raise ServerUnavailableError(
            self.name, f"the connection keeps dropping ({self.error}); check `portal-mcp check`"
        )

    def _unavailable(self) -> str:
        if self.state == "failed":
            return f"it failed to start: {self.error}; check it with `portal-mcp check`"
        return (
            f"it is down after {self.max_restarts} restart attempt(s): {self.error}; check it with `portal-mcp check`"
        )

    async def _lost(self, watch: _Watch | None, written: int, generation: int) -> Literal["unsent", "maybe"]:
        """The connection is gone: drop it, and tell whether our request can have reached the server.

        "unsent" (safe to resend): the request never left, TCP could not connect, or the HTTP server no longer
        knew the session. "maybe": it may have run, so it must not be sent again.
        """
        self._drop_connection(generation)
        if watch is None:
            return "maybe"
        if watch.session_expired or watch.calls_written == written:
            return "unsent"
        # Let the link task record why the connection ended (the error message names it).
        with anyio.move_on_after(_REAP_TIMEOUT):
            await watch.ended.wait()
        return "unsent" if watch.unsent_on_loss else "maybe"

    def _drop_connection(self, generation: int) -> None:
        if generation == self._generation and self._client is not None:
            self._drop = True
            self._wake.set()

    def _request_cycle(self) -> anyio.Event:
        if self._cycle_done is None:
            self._cycle_done = anyio.Event()
            self._cycle_wanted.set()
        return self._cycle_done

    def _settle(self) -> None:
        if self._cycle_done is not None:
            self._cycle_done.set()
            self._cycle_done = None

    # -- state and messages ----------------------------------------------------------------------------------------

    def _set_state(self, state: ServerState, error: str | None) -> None:
        self.state, self.error = state, error
        if not self._reported:
            # `on_status` is startup progress: once per server, when its first attempt settles.
            self._reported = True
            self._hooks.status(self.status())

    async def _event(self, kind: EventKind, level: Literal["info", "warning", "error"], message: str) -> None:
        await self._hooks.emit(DownstreamEvent(self.name, kind, level, message))

    def _explain(self, message: str) -> str:
        """`message` plus what the transport and the server's stderr said, for a reader who must fix it."""
        if self._stream_error and self.kind == "stdio":
            message += (
                f"; it wrote something that is not JSON-RPC to stdout ({self._stream_error}) "
                "(an MCP stdio server must log to stderr)"
            )
        elif self._stream_error:
            message += f" ({self._stream_error})"
        if self._pump is not None:
            self._pump.drain()
            if self._pump.tail:
                message += "; its stderr ends with: " + " | ".join(list(self._pump.tail)[-5:])
        return message

    def _describe(self, exc: BaseException, watch: _Watch) -> str:
        """A user-facing sentence for why connecting failed (or a connection ended)."""
        leaf = _leaf(exc)
        config = self._config
        if isinstance(config, StdioServerConfig):
            if isinstance(leaf, FileNotFoundError):
                if config.cwd is not None and str(leaf.filename) == str(config.cwd):
                    return f"working directory {str(config.cwd)!r} does not exist; check `cwd:`"
                return f"command {config.command!r} not found; check `command:` (is it installed and on PATH?)"
            if isinstance(leaf, PermissionError):
                return f"command {config.command!r} cannot be run (permission denied); check `command:`"
            if isinstance(leaf, MCPError) and leaf.code == types.CONNECTION_CLOSED:
                return self._explain(
                    "the process exited before the MCP handshake finished; run the command by hand to see why"
                )
        if isinstance(config, RemoteServerConfig):
            if watch.http_status is not None:
                # The transport turns an HTTP error status into a vaguer JSON-RPC error; the status says more.
                return _http_status_message(*watch.http_status, config.url)
            if isinstance(leaf, httpx2.ConnectError | httpx2.ConnectTimeout):
                return f"cannot reach {config.url} ({leaf}); is the server running and `url:` right?"
            if isinstance(leaf, httpx2.HTTPStatusError):
                return _http_status_message(leaf.response.status_code, leaf.response.reason_phrase, config.url)
            if isinstance(leaf, httpx2.HTTPError):
                return f"HTTP error talking to {config.url}: {type(leaf).__name__}: {leaf}"
        if isinstance(leaf, MCPError):
            if leaf.code == types.CONNECTION_CLOSED:
                return "the server closed the connection"
            return f"the server answered with an error: {leaf.message} (JSON-RPC error {leaf.code})"
        if isinstance(leaf, OSError) and leaf.strerror:
            return f"{leaf.strerror} ({type(leaf).__name__})"
        return f"{type(leaf).__name__}: {leaf}"


class _TooOld:
    """The server rejected `initialize` as a protocol version it no longer speaks."""


_TOO_OLD = _TooOld()


def _rejects_handshake(exc: BaseException) -> bool:
    leaf = _leaf(exc)
    return isinstance(leaf, MCPError) and leaf.code == types.UNSUPPORTED_PROTOCOL_VERSION


def _unreachable(exc: BaseException) -> bool:
    """True when the connection failed because TCP could not connect, so no request can have reached the server."""
    return isinstance(_leaf(exc), httpx2.ConnectError)


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups; task groups wrap what transports raise."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
        exc = (inner or list(exc.exceptions))[0]
    return exc


def _http_status_message(code: int, phrase: str, url: str) -> str:
    if code in (401, 403):
        hint = "check the credentials in `headers:`"
    elif code == 404:
        hint = "check the path in `url:` (streamable HTTP servers usually serve /mcp, SSE servers /sse)"
    elif code in (405, 406, 415):
        hint = "is this an MCP endpoint, and is `type:` (http or sse) right?"
    else:
        hint = "check the server's logs"
    return f"{url} answered HTTP {code} {phrase}; {hint}"


def _dump(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    return [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools]


# -- transports ---------------------------------------------------------------------------------------------------


class _Watch:
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


class _WatchedTransport:
    """An SDK transport whose streams report to a `_Watch`: end of the read side, tools/call requests written."""

    def __init__(self, inner: AbstractAsyncContextManager[TransportStreams], watch: _Watch) -> None:
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


class _WatchedRead:
    def __init__(self, inner: ReadStream[SessionMessage | Exception], watch: _Watch) -> None:
        self._inner = inner
        self._watch = watch

    @property
    def last_context(self) -> Any:
        # The SDK dispatcher reads the sender's contextvars snapshot from here when the transport provides one.
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._watch.mark_closed()
            raise

    def __aiter__(self) -> _WatchedRead:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self._watch.mark_closed()
        await self._inner.aclose()

    async def __aenter__(self) -> _WatchedRead:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _WatchedWrite:
    def __init__(self, inner: WriteStream[SessionMessage], watch: _Watch) -> None:
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


def _http_client_factory(watch: _Watch) -> Callable[..., httpx2.AsyncClient]:
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
async def _streamable_http(url: str, headers: Mapping[str, str], watch: _Watch) -> AsyncIterator[TransportStreams]:
    async with (
        _http_client_factory(watch)(headers=dict(headers)) as http,
        streamable_http_client(url, http_client=http) as streams,
    ):
        yield streams


# -- stdio processes ----------------------------------------------------------------------------------------------


class _StderrPump:
    """A stdio server's stderr: forwarded line by line to the portal's stderr as `[name] line`, last lines kept.

    Every spawn of the server writes into the same pipe, so the tail spans respawns. Needs `anyio.wait_readable`
    on a pipe, which Windows lacks; there the server's stderr goes straight to the portal's stderr.
    """

    def __init__(self, server: str, errlog: TextIO | None) -> None:
        self._server = server
        self._errlog = errlog
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
        text = raw.decode("utf-8", "replace").rstrip("\r")
        self.tail.append(text)
        out = self._errlog if self._errlog is not None else sys.stderr
        try:
            out.write(f"[{self._server}] {text}\n")
            out.flush()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        if self.available:
            self.writer.close()
            os.close(self._read_fd)


async def _end_processes(token: str) -> None:
    """End every process still carrying this spawn's token: children a server left behind when it exited.

    The SDK kills the server's process group only when the server itself outlives its grace period; a server
    that exits promptly can leave children (npx's node, helpers) running. Linux only (/proc); elsewhere the
    SDK's own cleanup is all there is.
    """
    if sys.platform != "linux":
        return
    pids = await anyio.to_thread.run_sync(_pids_with_token, token)
    if not pids:
        return
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    with anyio.move_on_after(1.0):
        # Polling: there is no event for "an unrelated process exited".
        while pids := [pid for pid in pids if _alive(pid)]:  # noqa: ASYNC110
            await anyio.sleep(0.02)
    for pid in pids:
        _signal(pid, signal.SIGKILL)


def _pids_with_token(token: str) -> list[int]:
    marker = f"{_TOKEN_VAR}={token}".encode()
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as file:
                environ = file.read()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            # A zombie has exited; it only waits for its parent to reap it.
            return file.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return False
