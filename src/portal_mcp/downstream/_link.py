"""`Link`: one live downstream server: the task that owns its connection (and reconnects it), and the call path."""

from __future__ import annotations

import logging
import math
import time
import uuid
from typing import Any, Literal

import anyio
import anyio.abc
import httpx2
import mcp_types as types
from mcp.client import Client
from mcp.server import MCPServer, Server
from mcp_types import Tool
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from portal_mcp import __version__
from portal_mcp.catalog.status import ServerState, ServerStatus, TransportKind, transport_kind
from portal_mcp.config import RemoteServerConfig, StdioServerConfig
from portal_mcp.downstream._asking import Asking
from portal_mcp.downstream._call_path import BACKOFF, REAP_TIMEOUT, CallPath
from portal_mcp.downstream._events import DownstreamEvent, EventKind, Hooks
from portal_mcp.downstream._failures import (
    TOO_OLD,
    TooOld,
    describe,
    expected,
    refused,
    rejects_handshake,
    unreachable,
)
from portal_mcp.downstream._listing import Extras, differ, lists
from portal_mcp.downstream._processes import end_processes
from portal_mcp.downstream._relisting import Relisting
from portal_mcp.downstream._stderr import StderrPump
from portal_mcp.downstream._transports import Watch, open_transport

logger = logging.getLogger("portal_mcp.downstream")

_DEFAULT_RESTARTS = 3
"""Reconnect attempts for servers whose config has no `max_restarts` (remote and in-process ones)."""
RETRY_FIRST = 2.0
"""Seconds after a server failed to start (or went down) before the first background retry."""
RETRY_CAP = 60.0
"""Background retries double their wait after each failure, up to this many seconds; a connection resets it."""
_DEFAULT_TIMEOUT = 60.0
_DEFAULT_CONNECT_TIMEOUT = 30.0
_CLIENT_INFO = types.Implementation(name="portal-mcp", version=__version__)


class Link(CallPath, Relisting):
    """One live server: the task that owns its connection (the call path that uses it is `CallPath`)."""

    def __init__(
        self,
        name: str,
        target: StdioServerConfig | RemoteServerConfig | MCPServer | Server[Any],
        hooks: Hooks,
        pump: StderrPump | None,
        down_retry_after: float,
        relist_every: float = 0.0,
        auth: httpx2.Auth | None = None,
        user: str | None = None,
    ) -> None:
        self.name = name
        self.user = user
        """The user whose own link this is (a per-user server's), None for the server's shared link."""
        self.auth = auth
        """A user's OAuth connection (`oauth:` servers): every HTTP request of this link goes through it."""
        self._target = target
        self._config = target if isinstance(target, StdioServerConfig | RemoteServerConfig) else None
        self.kind: TransportKind = "inproc" if self._config is None else transport_kind(self._config)
        self.timeout = self._config.timeout if self._config else _DEFAULT_TIMEOUT
        self.connect_timeout = self._config.connect_timeout if self._config else _DEFAULT_CONNECT_TIMEOUT
        self.max_restarts = (
            self._config.max_restarts if isinstance(self._config, StdioServerConfig) else _DEFAULT_RESTARTS
        )
        self._hooks = hooks
        self.asking = Asking(name)
        self._pump = pump
        self._down_retry_after = down_retry_after
        own = self._config.relist_every if self._config is not None else None
        self.relist_every = relist_every if own is None else own
        """Seconds between re-listings when the server announces no change (0: never)."""
        self.extras = Extras()

        self.tools: list[Tool] = []
        self.state: ServerState = "connecting"
        self.error: str | None = None
        self.connect_ms: float | None = None
        self.restarts = 0
        self.since = time.monotonic()
        """When the state last changed (monotonic clock; `status()` is also read from threads): "connecting 41 s"."""
        self.ever_connected = False
        self._failed_wall: float | None = None
        self._retry_at: float | None = None
        self._retries = 0
        self._mode: Literal["legacy", "auto"] = "legacy"
        self._client: Client | None = None
        self._watch: Watch | None = None
        self._generation = 0
        self._given_up_at: float | None = None
        self._stream_error: str | None = None
        self._expected = False
        """The last attempt failed on a state the server waits out (`DownstreamError.expected`), not a fault."""
        self._refused = False
        """The last attempt failed because the server refused the credentials (HTTP 401 or 403)."""
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
        self.in_flight = 0
        """Calls using this link now (the pool does not close an idle per-user link while one runs)."""
        self.last_used = anyio.current_time()

    def status(self) -> ServerStatus:
        now = time.monotonic()
        retry_in = None if self._retry_at is None else max(0.0, self._retry_at - now)
        return ServerStatus(
            self.name,
            self.kind,
            self.state,
            len(self.tools),
            self.connect_ms,
            self.error,
            self.restarts,
            now - self.since,
            retry_in,
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
                    retry = self._given_up_at is not None and self.max_restarts > 0
                    if retry:
                        # Failed to start or down: try again in the background, waiting longer each time; a
                        # user's account the server refused only when a call asks (`waits_for_a_call`).
                        delay = math.inf if self.waits_for_a_call else min(RETRY_CAP, RETRY_FIRST * 2**self._retries)
                        self._retry_at = None if math.isinf(delay) else time.monotonic() + delay
                        with anyio.move_on_after(delay):
                            await self._cycle_wanted.wait()
                        self._retries += 1
                    else:
                        await self._cycle_wanted.wait()
                    self._retry_at = None
                    if not self._closing:
                        await self._cycle(first=False, retry=retry)
        finally:
            self._settle()
            self.done.set()

    def _wake_up(self) -> None:
        # Looked up at call time: `_serve` replaces the event after every wake-up.
        self._wake.set()

    def retry_soon(self) -> None:
        """A failed or down link tries again now instead of at its next background retry."""
        if not self._closing and self._client is None and self._given_up_at is not None:
            self._cycle_wanted.set()

    @property
    def closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Ask the link task to end: gracefully when connected, at once when connecting or idle."""
        self._closing = True
        self._wake.set()
        self._cycle_wanted.set()
        if self._client is None:
            self._scope.cancel()

    async def _cycle(self, *, first: bool, retry: bool = False) -> None:
        """Connect (first start and background retries: once; a dropped connection: up to `max_restarts` times with
        backoff) and serve until it ends."""
        self._cycle_wanted = anyio.Event()  # a call asking for a connection now is answered by this cycle
        attempts = 1 if first or retry else self.max_restarts
        reason = self.error or "the connection was lost"
        error = "restarts are disabled (`max_restarts: 0`)"
        given_up_state = self.state
        for attempt in range(1, attempts + 1):
            if retry:
                self._set_state("restarting" if self.ever_connected else "connecting", reason)
            elif not first:
                self._set_state("restarting", reason)
                await self._event(
                    "restarting", "warning", f"restarting (attempt {attempt} of {attempts}) because {reason}"
                )
                await anyio.sleep(BACKOFF * 2 ** (attempt - 1))
            outcome = await self._session(restart=self.ever_connected)
            if outcome is None:
                return
            error = reason = outcome
        self._given_up_at = anyio.current_time()
        self._failed_wall = time.time()
        if retry:
            self._set_state("down" if given_up_state == "down" or self.ever_connected else "failed", error)
            wait = min(RETRY_CAP, RETRY_FIRST * 2**self._retries)
            then = self._called_back() if self.waits_for_a_call else f"retrying in {wait:.0f} s"
            logger.log(
                logging.DEBUG if self._expected else logging.INFO,  # said once when it started
                "server %r: still unavailable (%s); %s",
                self.name,
                self.error,
                then,
                extra={"server": self.name, "event": "retry"},
            )
        elif first and self._expected:
            self._set_state("failed", error)
            await self._event("failed", "info", f"not listed yet: {error}")
        elif first:
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
        if isinstance(outcome, TooOld):
            # The server rejected the initialize handshake as too old; speak the 2026 protocol instead.
            self._mode = "auto"
            outcome = await self._session_once(restart=restart)
        if isinstance(outcome, TooOld):  # pragma: no cover - only the legacy handshake reports it
            return "the server rejected every protocol version this client speaks"
        return outcome

    async def _session_once(self, *, restart: bool) -> str | TooOld | None:
        watch = Watch(self._wake_up)
        token = uuid.uuid4().hex
        started = anyio.current_time()
        connected = False
        error: str | None = None
        self._drop = self._relist = False
        self._stream_error = None
        self._expected = self._refused = False
        if self._pump is not None:
            self._pump.next_process()
        try:
            with anyio.CancelScope(deadline=started + self.connect_timeout) as deadline:
                client = Client(
                    self._transport(watch, token),
                    mode=self._mode,
                    cache=None,
                    client_info=_CLIENT_INFO,
                    message_handler=self._on_message,
                    # Declares form and URL elicitation: a server's questions reach the user of the run calling it.
                    elicitation_callback=self.asking.on_elicit,
                )
                async with client, anyio.create_task_group() as task_group:
                    if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                        # Subscribe before listing, so no change can fall between the two.
                        await task_group.start(self._listen, client)
                    tools, extras = await self._list(client)
                    deadline.deadline = math.inf
                    connected = True
                    ms = (anyio.current_time() - started) * 1000
                    await self._connected(client, watch, tools, extras, ms, restart)
                    await self._serve(client, watch)
                    task_group.cancel_scope.cancel()
            if deadline.cancelled_caught:
                error = self._explain(
                    f"did not finish starting (MCP handshake and tools/list) within {self.connect_timeout:g}s; "
                    "raise `connect_timeout:` if it is just slow to start"
                )
        except Exception as exc:
            if not connected and self._mode == "legacy" and rejects_handshake(exc):
                return TOO_OLD
            error = describe(exc, watch, self._config, self._explain)
            self._expected = not connected and expected(exc)
            self._refused = not connected and refused(exc, watch)
            watch.unsent_on_loss = unreachable(exc)
        finally:
            self._client = None
            if self.kind == "stdio":
                with anyio.CancelScope(shield=True), anyio.move_on_after(REAP_TIMEOUT):
                    await end_processes(token)
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

    def _transport(self, watch: Watch, token: str) -> Any:
        """What `Client` connects to: a watched SDK transport, or the in-process server itself."""
        if self._config is None:
            return self._target
        return open_transport(self._config, watch, token, self._pump, self.auth)

    async def _connected(
        self, client: Client, watch: Watch, tools: list[Tool], extras: Extras, ms: float, restart: bool
    ) -> None:
        self._client, self._watch = client, watch
        self._generation += 1
        self._given_up_at = None
        self._retries = 0
        self.connect_ms = ms
        first = not self.ever_connected
        recovered = first and self._failed_wall is not None
        self.ever_connected = True
        changed = restart and (differ(self.tools, tools) or extras.digest != self.extras.digest)
        self.tools, self.extras = tools, extras
        if restart:
            self.restarts += 1
        self._set_state("connected", None)
        self._settle()
        if restart:
            await self._event("restarted", "info", f"restarted in {ms:.0f} ms; it {lists(len(tools), extras)}")
        elif recovered:
            await self._event(
                "restarted", "info", f"is up after retrying ({ms:.0f} ms); it {lists(len(tools), extras)}"
            )
        if self._hooks.listed is not None:
            await self._hooks.listed(self.name, list(tools), first)
        if changed:
            await self._hooks.tools_changed(self.name, list(tools))

    async def _serve(self, client: Client, watch: Watch) -> None:
        """Park until the connection ends or the pool closes; re-list when the server says its lists changed, and
        every `relist_every` seconds for servers that never say so."""
        while True:
            with anyio.move_on_after(self.relist_every or math.inf) as idle:
                await self._wake.wait()
            self._relist = self._relist or idle.cancelled_caught
            self._wake = anyio.Event()
            if self._closing or self._drop or watch.closed.is_set():
                return
            if self._relist:
                self._relist = False
                await self._refresh(client)

    def _settle(self) -> None:
        if self._cycle_done is not None:
            self._cycle_done.set()
            self._cycle_done = None

    # -- state and messages ----------------------------------------------------------------------------------------

    def _set_state(self, state: ServerState, error: str | None) -> None:
        if state != self.state:
            self.since = time.monotonic()
        self.state, self.error = state, None if error is None else self._hooks.redactor.text(error)
        if not self._reported:
            # `on_status` is startup progress: once per server, when its first attempt settles.
            self._reported = True
            self._hooks.status(self.status())

    async def _event(self, kind: EventKind, level: Literal["info", "warning", "error"], message: str) -> None:
        await self._hooks.emit(DownstreamEvent(self.name, kind, level, self._hooks.redactor.text(message)))

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
            # Never the lines themselves: this text reaches users (call errors, events, statuses), and what a
            # server printed while serving one user can hold that user's data. The operator's log has them.
            self._pump.drain()
            if self._pump.tail:
                message += "; its stderr is in the portal's log"
        return message
