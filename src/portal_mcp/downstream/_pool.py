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
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO, TypeVar

import anyio
import anyio.abc
from mcp.server import MCPServer, Server
from mcp_types import CallToolResult, Tool

from portal_mcp.catalog.snapshot import load_snapshot
from portal_mcp.catalog.status import ServerState, ServerStatus, TransportKind, transport_kind
from portal_mcp.config import CONNECT_WAIT, ServerConfig, SnapshotServerConfig, StdioServerConfig
from portal_mcp.config.user_refs import missing_keys
from portal_mcp.control.audit_store.connections import ConnectionStore
from portal_mcp.control.credentials import Redactor
from portal_mcp.downstream import _users
from portal_mcp.downstream._accounts import Accounts
from portal_mcp.downstream._asking import CallContext
from portal_mcp.downstream._call_path import CLOSE_GRACE
from portal_mcp.downstream._events import DownstreamEvent, Hooks
from portal_mcp.downstream._known import KnownTools
from portal_mcp.downstream._link import Link
from portal_mcp.downstream._listing import Extras
from portal_mcp.downstream._progress import report_progress
from portal_mcp.downstream._stderr import StderrPump
from portal_mcp.errors import ConfigError, DownstreamError, MissingSecretError, ServerDownError, SnapshotOnlyError

logger = logging.getLogger("portal_mcp.downstream")  # the package's name: the CLI prints it in log lines

T = TypeVar("T")
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
        state_dir: Path | None = None,
        background: bool = False,
        relist_every: float = 0.0,
        connections: ConnectionStore | None = None,
        local_user: str = "local",
        connect_wait: float = CONNECT_WAIT,
    ) -> None:
        """`local` servers run in this process (tests, embedders). `on_status` is startup progress: called once per
        server when its first connection attempt settles; later changes arrive as `on_event` events. Stdio servers'
        stderr lines go to `errlog` (default: the portal's stderr) prefixed with `[name]`, never to stdout, which may be
        the portal's MCP channel. After a server ends `down` (or `failed`), calls fail fast for `down_retry_after`
        seconds; the next call after that tries to bring it back. `users` maps each user to their secrets, for servers
        whose headers/env say `${user.KEY}`. `redactor` takes secret values out of every error, event, stderr line and
        tool listing; the pool changes no logging settings (the log output's owner adds `redactor.filter()` to its
        handlers: `portal-mcp serve` does). `state_dir` keeps each server's last tool list (`KnownTools`);
        `background=True` returns from `async with` at once and connects meanwhile (progress goes to the log), not
        waiting for first attempts. `connections`: users' `oauth:` accounts (a sign-in waits `connect_wait` s)."""
        if clash := sorted(set(servers) & set(local or {})):
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
        self.redactor = redactor or Redactor()
        self._needs: dict[str, frozenset[str]] = {}  # per-user servers -> the `${user.KEY}` KEYs they use
        self._listing_user: dict[str, str] = {}
        self._user_links: dict[tuple[str, str], Link] = {}
        self._task_group: anyio.abc.TaskGroup | None = None
        self._hooks: Hooks | None = None
        self._known = KnownTools(state_dir, self._servers)
        self._background = background
        self._relist_every = relist_every
        self._ready = False
        self.accounts = Accounts(connections, self._servers, local_user, self.redactor, connect_wait=connect_wait)

    async def __aenter__(self) -> DownstreamPool:
        if self._entered:
            raise RuntimeError("a DownstreamPool can be entered only once")
        self._entered = True
        self._stack = AsyncExitStack()
        try:
            task_group = await self._stack.enter_async_context(anyio.create_task_group())
            self._task_group = task_group
            self._cancel = task_group.cancel_scope
            hooks = Hooks(
                emit=self._emit,
                tools_changed=self._tools_changed,
                status=self._status,
                redactor=self.redactor,
                listed=self._listed,
            )
            self._hooks = hooks
            self.accounts.start()
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
                    needed = server.user_keys()
                    listing, auth = await self.accounts.listing(name) if self.accounts.manages(name) else (None, None)
                    if needed and auth is None:
                        listing, problem = _users.listing_user(server, needed, self._users)
                        if problem is not None:
                            self._fix(name, transport_kind(server), "failed", [], problem)
                            await self._emit(DownstreamEvent(name, "failed", "error", f"failed to start: {problem}"))
                            continue
                    if listing is not None:
                        self._needs[name] = needed
                        self._listing_user[name] = listing
                    target = _users.for_user(server, self._users.get(listing or "", {}))
                    stdio = isinstance(server, StdioServerConfig)
                    pump = StderrPump(name, self._errlog, self.redactor.text) if stdio else None
                    if pump is not None and pump.available:
                        self._pumps.append(pump)
                        task_group.start_soon(pump.run)
                    self._links[name] = self.accounts.linked(
                        name, Link(name, target, hooks, pump, self._down_retry_after, self._relist_every, auth)
                    )
            if self._needs:
                task_group.start_soon(self._close_idle_links)
            for name, local_server in self._local.items():
                self._links[name] = Link(name, local_server, hooks, None, self._down_retry_after, self._relist_every)
            for link in self._links.values():
                task_group.start_soon(link.run)
            if self._background:
                task_group.start_soon(report_progress, self._links)
            else:
                await self.settled()
            self._ready = True
        except BaseException:
            await self._close()
            raise
        return self

    async def settled(self) -> None:
        """Wait until every server's first connection attempt has ended (each within its `connect_timeout`)."""
        # The margin covers the SDK's bounded cleanup.
        longest = max((link.connect_timeout for link in self._links.values()), default=0.0)
        with anyio.move_on_after(longest + 2 * CLOSE_GRACE):
            for link in list(self._links.values()):
                await link.first_settled.wait()

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

    def known_listings(self) -> dict[str, list[Tool]]:
        """`listings()` plus, for a server that is not connected now, its last known tools (from this run, else from
        the state folder): what search and stubs show while it is starting or down. In config order."""
        live = self.listings()
        result: dict[str, list[Tool]] = {}
        for name in self._order():
            link = self._links.get(name)
            if name in live:
                result[name] = live[name]
            elif link is not None and link.ever_connected:
                result[name] = list(link.tools)
            elif (known := self._known.get(name)) is not None:
                result[name] = known
        return result

    def statuses(self) -> list[ServerStatus]:
        """Every configured server (then every local one) with its state, in config order."""
        return [self._fixed[name][0] if name in self._fixed else self._links[name].status() for name in self._order()]

    def stderr_tail(self, server: str) -> list[str]:
        """The last lines a stdio server wrote to stderr (empty for other servers)."""
        link = self._links.get(server)
        return link.stderr_tail() if link is not None else []

    def extras(self) -> dict[str, Extras]:
        """The resources, resource templates and prompts of every connected server with any, in config order."""
        links = [self._links[name] for name in self._order() if name in self._links]
        return {link.name: link.extras for link in links if link.extras and link.state == "connected"}

    async def call_tool(
        self, server: str, tool: str, arguments: dict[str, Any], *,
        user: str | None = None, context: CallContext | None = None,
    ) -> CallToolResult:  # fmt: skip
        """Call `tool` on `server` under the server's `timeout`, as `user` (whose secrets `${user.KEY}` uses), for
        the run `context` names (`_asking`). A tool that reports failure comes back as a result with `is_error` set.
        Raises `ToolTimeoutError` (the request was cancelled downstream), `SnapshotOnlyError`,
        `ServerUnavailableError` (down, respawns exhausted), `MissingSecretError` (the server needs a secret `user`
        lacks) or `DownstreamError` (the server rejected the request, or the connection was lost mid-call). Error
        messages carry no secret value."""
        return await self.request(
            server, tool, lambda link: link.call_tool(tool, arguments, context), user=user, context=context
        )

    async def request(self, server: str, what: str, send: Callable[[Link], Awaitable[T]], *, user: str | None,
                      context: CallContext | None = None) -> T:  # fmt: skip
        """`send` a request to `server` as `user` over its link (`Link.request` resends one that never left; `what`
        names it in errors), for the run `context` names (it may be asked to connect an `oauth:` account). Raises
        what `call_tool` raises."""
        if not self._entered:
            raise RuntimeError("enter the DownstreamPool (`async with`) before calling tools")
        if server in self._links:
            if self.accounts.manages(server):  # an `oauth:` server: the user must have connected
                return await self.accounts.call(server, user, lambda: self._send(server, user, send), context)
            return await self._send(server, user, send)
        config = self._servers.get(server)
        if isinstance(config, SnapshotServerConfig) and not config.disabled:
            raise SnapshotOnlyError(server, what, str(config.snapshot))
        if config is not None:
            raise DownstreamError(server, "the server is disabled (`disabled: true`); enable it to call its tools")
        known = ", ".join(repr(name) for name in self._order()) or "none"
        raise DownstreamError(server, f"no server has this name (configured: {known}); check `servers:`")

    async def _send(self, server: str, user: str | None, send: Callable[[Link], Awaitable[T]]) -> T:
        link = self._link_for(server, user) if server in self._needs else self._links[server]
        link.in_flight += 1
        try:
            return await send(link)
        except DownstreamError as exc:
            lost = self.accounts.lost(server, user)  # a revoked or expired grant
            if lost is not None:
                if self._user_links.pop((server, user or ""), None) is link:  # a new link once they reconnect
                    link.close()
                raise lost from None
            raise self.redactor.error(exc) from None
        finally:
            link.in_flight -= 1
            link.last_used = anyio.current_time()

    async def ready(self, server: str) -> None:
        """Wait while `server` is on its first connection attempt (each ends within its `connect_timeout`)."""
        link = self._links.get(server)
        if link is not None and not link.first_settled.is_set():
            await link.first_settled.wait()

    def down_error(self, server: str) -> ServerDownError | None:
        """What a call to `server` gets while it is `failed` or `down` (None while it is anything else)."""
        link = self._links.get(server)
        return link.down_error() if link is not None and link.state in ("failed", "down") else None

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
        oauth = self.accounts.manages(server)  # its users need no secrets, only a connected account
        secrets = self._users.get(user, {} if oauth else None) if user is not None else None
        missing = missing_keys(needed, secrets or {})
        if user is None or secrets is None or missing:
            raise MissingSecretError(server, user, missing or sorted(needed), known=secrets is not None)
        key = (server, user)
        link = self._user_links.get(key)
        if link is not None and not link.closing:
            return link
        config = self._servers[server]
        assert self._task_group is not None and self._hooks is not None and not isinstance(config, SnapshotServerConfig)
        stdio = isinstance(config, StdioServerConfig)
        pump = StderrPump(f"{server}:{user}", self._errlog, self.redactor.text) if stdio else None
        hooks = replace(
            self._hooks,
            emit=_users.emitter(self._emit, user),
            tools_changed=_users.ignore_tools,
            status=_users.ignore_status,
            listed=None,
        )
        auth = self.accounts.auth(server, user) if oauth else None
        target = _users.for_user(config, secrets)
        link = Link(server, target, hooks, pump, self._down_retry_after, self._relist_every, auth, user=user)
        self._user_links[key] = link
        self._task_group.start_soon(self._run_user_link, key, link, pump)
        return link

    async def _run_user_link(self, key: tuple[str, str], link: Link, pump: StderrPump | None) -> None:
        """Run one user's link (and its stderr pump) until it is closed: idle, or the pool closing."""
        try:
            await _users.run_with_pump(link, pump)
        finally:
            if self._user_links.get(key) is link:
                del self._user_links[key]

    async def _close_idle_links(self) -> None:
        """Close per-user links that have had no call for their server's `user_idle_timeout`."""
        timeouts = {name: _users.idle_timeout(self._servers[name]) for name in self._needs}
        await _users.close_idle_links(self._user_links, timeouts, _MAX_REAP_INTERVAL)

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
            await _users.guarded(self._on_event(event), "on_event")

    async def _listed(self, server: str, tools: list[Tool], first: bool) -> None:
        """Keep every listing as the server's last known one; a server that came up after the pool was ready (in the
        background, or after failing at start) changes the catalog."""
        self._known.save(server, tools)
        if first and self._ready:
            await self._tools_changed(server, tools)

    async def _tools_changed(self, server: str, tools: list[Tool]) -> None:
        if self._on_tools_changed is not None:
            await _users.guarded(self._on_tools_changed(server, tools), "on_tools_changed")

    def _status(self, status: ServerStatus) -> None:
        _users.told(self._on_status, status)
