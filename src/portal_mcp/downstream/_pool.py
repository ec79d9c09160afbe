"""`DownstreamPool`: every downstream server of one portal, connected together, called by name, closed together."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, TextIO

import anyio
from mcp.server import MCPServer, Server
from mcp_types import CallToolResult, Tool

from portal_mcp.config import ServerConfig, SnapshotServerConfig, StdioServerConfig
from portal_mcp.downstream._events import DownstreamEvent
from portal_mcp.downstream._link import CLOSE_GRACE, Hooks, Link
from portal_mcp.downstream._status import ServerState, ServerStatus, TransportKind, transport_kind
from portal_mcp.downstream._stderr import StderrPump
from portal_mcp.errors import ConfigError, DownstreamError, SnapshotOnlyError
from portal_mcp.snapshot import load_snapshot

# The package's name, not `__name__`: the CLI prints it in every log line.
logger = logging.getLogger("portal_mcp.downstream")

_CALLBACK_TIMEOUT = 10.0
_LOG_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


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
        self._links: dict[str, Link] = {}
        self._fixed: dict[str, tuple[ServerStatus, list[Tool]]] = {}
        self._pumps: list[StderrPump] = []
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
            hooks = Hooks(emit=self._emit, tools_changed=self._tools_changed, status=self._status)
            for name, server in self._servers.items():
                if server.disabled:
                    self._fix(name, transport_kind(server), "disabled", [], None)
                elif isinstance(server, SnapshotServerConfig):
                    try:
                        self._fix(name, "snapshot", "snapshot", load_snapshot(server.snapshot), None)
                    except ConfigError as exc:
                        self._fix(name, "snapshot", "failed", [], str(exc))
                        await self._emit(DownstreamEvent(name, "failed", "error", str(exc)))
                else:
                    pump = StderrPump(name, self._errlog) if isinstance(server, StdioServerConfig) else None
                    if pump is not None and pump.available:
                        self._pumps.append(pump)
                        task_group.start_soon(pump.run)
                    self._links[name] = Link(name, server, hooks, pump, self._down_retry_after)
            for name, local_server in self._local.items():
                self._links[name] = Link(name, local_server, hooks, None, self._down_retry_after)
            for link in self._links.values():
                task_group.start_soon(link.run)
            # Each connect ends within its connect_timeout; the margin covers the SDK's bounded cleanup.
            longest = max((link.connect_timeout for link in self._links.values()), default=0.0)
            with anyio.move_on_after(longest + 2 * CLOSE_GRACE):
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
            with anyio.move_on_after(CLOSE_GRACE):
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
        fields = {"server": event.server, "event": event.kind}  # structured fields of a JSON log line (`logs`)
        logger.log(_LOG_LEVELS[event.level], "server %r: %s", event.server, event.message, extra=fields)
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
