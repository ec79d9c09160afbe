"""`DownstreamPool`: every downstream server of one portal, connected together, called by name, closed together.

A server whose `headers` (remote) or `env` (stdio) refer to `${user.KEY}` gets one `Link` per calling user, made
on that user's first call with the user's secrets filled in, reused for their later calls, closed after
`user_idle_timeout` seconds without calls and when the pool closes. For a stdio server that is one process per
user: each process holds only its own user's credentials, at the cost of one process (memory, start-up time) per
active user. The server's catalog comes from the link of its listing user (`list_as`, by default the first user
with every needed secret), which connects at start like any other server; that user's calls use it too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import replace
from types import TracebackType
from typing import Any, TextIO

import anyio
import anyio.abc
from mcp.server import MCPServer, Server
from mcp_types import CallToolResult, Tool

from portal_mcp.catalog.snapshot import load_snapshot
from portal_mcp.catalog.status import ServerState, ServerStatus, TransportKind, transport_kind
from portal_mcp.config import RemoteServerConfig, ServerConfig, SnapshotServerConfig, StdioServerConfig
from portal_mcp.config.user_refs import expand_user_refs, first_user_with, missing_keys
from portal_mcp.control.credentials import RedactingFilter, Redactor
from portal_mcp.downstream._events import DownstreamEvent
from portal_mcp.downstream._link import CLOSE_GRACE, Hooks, Link
from portal_mcp.downstream._stderr import StderrPump
from portal_mcp.errors import ConfigError, DownstreamError, MissingSecretError, SnapshotOnlyError

# The package's name, not `__name__`: the CLI prints it in every log line.
logger = logging.getLogger("portal_mcp.downstream")

_CALLBACK_TIMEOUT = 10.0
_PUMP_EOF_TIMEOUT = 3.0
_MAX_REAP_INTERVAL = 30.0
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
        users: Mapping[str, Mapping[str, str]] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        """`local` servers run in this process (tests, embedders). `on_status` is startup progress: called once per
        server when its first connection attempt settles; later changes arrive as `on_event` events. Stdio servers'
        stderr lines go to `errlog` (default: the portal's stderr) prefixed with `[name]`, never to stdout, which
        may be the portal's MCP channel. After a server ends `down` (or `failed`), calls fail fast for
        `down_retry_after` seconds; the next call after that tries to bring it back. `users` maps each user to
        their secrets, for servers whose headers/env say `${user.KEY}`. `redactor` takes secret values out of every
        error, event, stderr line, tool listing and (while the pool is open) log record of the root handlers."""
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
        self._users = {name: dict(secrets) for name, secrets in (users or {}).items()}
        self._redactor = redactor or Redactor()
        self._needs: dict[str, frozenset[str]] = {}
        """Per-user servers: name -> the `${user.KEY}` KEYs of their headers/env."""
        self._listing_user: dict[str, str] = {}
        self._user_links: dict[tuple[str, str], Link] = {}
        self._task_group: anyio.abc.TaskGroup | None = None
        self._hooks: Hooks | None = None
        self._log_filter: tuple[RedactingFilter, list[logging.Handler]] | None = None

    async def __aenter__(self) -> DownstreamPool:
        if self._entered:
            raise RuntimeError("a DownstreamPool can be entered only once")
        self._entered = True
        self._stack = AsyncExitStack()
        if self._redactor:
            log_filter = self._redactor.filter()
            handlers = list(logging.getLogger().handlers)
            for handler in handlers:
                handler.addFilter(log_filter)
            self._log_filter = (log_filter, handlers)
        try:
            task_group = await self._stack.enter_async_context(anyio.create_task_group())
            self._task_group = task_group
            self._cancel = task_group.cancel_scope
            hooks = Hooks(
                emit=self._emit, tools_changed=self._tools_changed, status=self._status, redactor=self._redactor
            )
            self._hooks = hooks
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
                    secrets: Mapping[str, str] = {}
                    needed = server.user_keys()
                    if needed:
                        listing = server.list_as or first_user_with(needed, self._users)
                        missing = missing_keys(needed, self._users.get(listing or "", {}))
                        if listing is None or missing:
                            problem = (
                                f"no user has every secret it needs ({', '.join(sorted(needed))}), so no connection "
                                "can list its tools; add them to one user's `http.users.NAME.secrets`"
                            )
                            self._fix(name, transport_kind(server), "failed", [], problem)
                            await self._emit(DownstreamEvent(name, "failed", "error", f"failed to start: {problem}"))
                            continue
                        self._needs[name] = needed
                        self._listing_user[name] = listing
                        secrets = self._users[listing]
                    pump = (
                        StderrPump(name, self._errlog, self._redactor.text)
                        if isinstance(server, StdioServerConfig)
                        else None
                    )
                    if pump is not None and pump.available:
                        self._pumps.append(pump)
                        task_group.start_soon(pump.run)
                    own = replace(hooks, private_stderr=True) if needed else hooks
                    self._links[name] = Link(name, _for_user(server, secrets), own, pump, self._down_retry_after)
            if self._needs:
                task_group.start_soon(self._close_idle_links)
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
            links = [*self._links.values(), *self._user_links.values()]
            for link in links:
                link.close()
            with anyio.move_on_after(CLOSE_GRACE):
                for link in links:
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
            if self._log_filter is not None:
                log_filter, handlers = self._log_filter
                for handler in handlers:
                    handler.removeFilter(log_filter)

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

    async def call_tool(
        self, server: str, tool: str, arguments: dict[str, Any], *, user: str | None = None
    ) -> CallToolResult:
        """Call `tool` on `server` under the server's `timeout`, as `user` (whose secrets `${user.KEY}` uses).

        A tool that reports failure comes back as a result with `is_error` set. Raises `ToolTimeoutError` (the
        request was cancelled downstream), `SnapshotOnlyError`, `ServerUnavailableError` (down, respawns
        exhausted), `MissingSecretError` (the server needs a secret `user` lacks) or `DownstreamError` (the server
        rejected the request, or the connection was lost mid-call). Error messages carry no secret value.
        """
        if not self._entered:
            raise RuntimeError("enter the DownstreamPool (`async with`) before calling tools")
        link = self._links.get(server)
        if link is not None:
            if server in self._needs:
                link = self._link_for(server, user)
            link.in_flight += 1
            try:
                return await link.call_tool(tool, arguments)
            except DownstreamError as exc:
                raise self._redactor.error(exc) from None
            finally:
                link.in_flight -= 1
                link.last_used = anyio.current_time()
        config = self._servers.get(server)
        if isinstance(config, SnapshotServerConfig) and not config.disabled:
            raise SnapshotOnlyError(server, tool, str(config.snapshot))
        if config is not None:
            raise DownstreamError(server, "the server is disabled (`disabled: true`); enable it to call its tools")
        known = ", ".join(repr(name) for name in self._order()) or "none"
        raise DownstreamError(server, f"no server has this name (configured: {known}); check `servers:`")

    def _order(self) -> list[str]:
        return [*self._servers, *self._local]

    # -- per-user links ------------------------------------------------------------------------------------------

    def user_links(self) -> dict[tuple[str, str], ServerStatus]:
        """(server, user) -> the status of that user's own connection (listing users use the server's link)."""
        return {key: link.status() for key, link in self._user_links.items()}

    def _link_for(self, server: str, user: str | None) -> Link:
        """`user`'s link to a per-user server: the listing link, a live one, or a new one (started here).

        Synchronous on purpose: no other task can run between finding the link and the caller counting its call,
        so `_close_idle_links` never closes a link a call is about to use.
        """
        if user is not None and user == self._listing_user[server]:
            return self._links[server]
        needed = self._needs[server]
        secrets = self._users.get(user) if user is not None else None
        missing = missing_keys(needed, secrets or {})
        if user is None or secrets is None or missing:
            raise MissingSecretError(server, user, missing or sorted(needed), known=secrets is not None)
        key = (server, user)
        link = self._user_links.get(key)
        if link is not None and not link.closing:
            return link
        config = self._servers[server]
        assert self._task_group is not None and self._hooks is not None and not isinstance(config, SnapshotServerConfig)
        pump = (
            StderrPump(f"{server}:{user}", self._errlog, self._redactor.text)
            if isinstance(config, StdioServerConfig)
            else None
        )
        hooks = replace(
            self._hooks,
            emit=self._user_emitter(user),
            tools_changed=_ignore_tools,
            status=_ignore_status,
            private_stderr=True,
        )
        link = Link(server, _for_user(config, secrets), hooks, pump, self._down_retry_after)
        self._user_links[key] = link
        self._task_group.start_soon(self._run_user_link, key, link, pump)
        return link

    def _user_emitter(self, user: str) -> Callable[[DownstreamEvent], Awaitable[None]]:
        async def emit(event: DownstreamEvent) -> None:
            await self._emit(replace(event, message=f"(as user {user!r}) {event.message}", user=user))

        return emit

    async def _run_user_link(self, key: tuple[str, str], link: Link, pump: StderrPump | None) -> None:
        """Run one user's link (and its stderr pump) until it is closed: idle, or the pool closing."""
        try:
            async with anyio.create_task_group() as task_group:
                if pump is not None and pump.available:
                    pump_done = anyio.Event()

                    async def forward(pump: StderrPump = pump) -> None:
                        try:
                            await pump.run()
                        finally:
                            pump_done.set()

                    task_group.start_soon(forward)
                await link.run()
                if pump is not None and pump.available:
                    pump.writer.close()  # with the process gone, the pipe reaches end of file
                    with anyio.move_on_after(_PUMP_EOF_TIMEOUT):
                        await pump_done.wait()
                task_group.cancel_scope.cancel()
        finally:
            if self._user_links.get(key) is link:
                del self._user_links[key]
            if pump is not None:
                pump.drain()
                pump.close()

    async def _close_idle_links(self) -> None:
        """Close per-user links that have had no call for their server's `user_idle_timeout`."""
        timeouts = {name: _idle_timeout(self._servers[name]) for name in self._needs}
        interval = min(_MAX_REAP_INTERVAL, *(timeout / 4 for timeout in timeouts.values()))
        while True:
            await anyio.sleep(interval)
            now = anyio.current_time()
            for (server, user), link in list(self._user_links.items()):
                if link.in_flight == 0 and now - link.last_used >= timeouts[server] and not link.closing:
                    del self._user_links[(server, user)]
                    logger.info("server %r: closing user %r's idle connection", server, user)
                    link.close()

    def _fix(self, name: str, kind: TransportKind, state: ServerState, tools: list[Tool], error: str | None) -> None:
        status = ServerStatus(name, kind, state, len(tools), None, error)
        self._fixed[name] = (status, tools)
        self._status(status)

    async def _emit(self, event: DownstreamEvent) -> None:
        fields = {"server": event.server, "event": event.kind}  # structured fields of a JSON log line (`logs`)
        if event.user is not None:
            fields["user"] = event.user
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


def _for_user(config: StdioServerConfig | RemoteServerConfig, secrets: Mapping[str, str]) -> Any:
    """The config with `${user.KEY}` in its env/headers replaced by the user's secrets (and `$${user.KEY}` by a
    literal); the result lives only in this process, handed to the transport."""
    if isinstance(config, StdioServerConfig):
        return config.model_copy(update={"env": {k: expand_user_refs(v, secrets) for k, v in config.env.items()}})
    return config.model_copy(update={"headers": {k: expand_user_refs(v, secrets) for k, v in config.headers.items()}})


def _idle_timeout(config: ServerConfig) -> float:
    return config.user_idle_timeout if isinstance(config, StdioServerConfig | RemoteServerConfig) else 900.0


async def _ignore_tools(server: str, tools: list[Tool]) -> None:
    """A per-user link's listing does not change the catalog: the listing user's does."""


def _ignore_status(status: ServerStatus) -> None:
    """`on_status` is startup progress of the servers, not of per-user links."""


async def _guarded(call: Awaitable[None], what: str) -> None:
    """Run an embedder's callback without letting it break (or hang) a connection."""
    with anyio.move_on_after(_CALLBACK_TIMEOUT) as scope:
        try:
            await call
        except Exception:
            logger.exception("%s callback raised", what)
    if scope.cancelled_caught:
        logger.warning("%s callback took longer than %gs and was cancelled", what, _CALLBACK_TIMEOUT)
