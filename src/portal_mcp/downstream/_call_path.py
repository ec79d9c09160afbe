"""The call path of a link: what runs in the caller's task to send one request over the link's live connection.

`CallPath` is the half of `Link` that callers use; the link task (`_link.py`) owns the connection these methods read.
A request that never reached the server is sent once more on a fresh connection; one that may have run is not.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal, TypeVar

import anyio
import mcp_types as types
from mcp.client import Client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult
from pydantic import ValidationError

from portal_mcp.catalog.status import ServerState
from portal_mcp.downstream._asking import Asking, CallContext
from portal_mcp.downstream._transports import Watch
from portal_mcp.errors import DownstreamError, ServerDownError, ServerUnavailableError, ToolTimeoutError

T = TypeVar("T")

BACKOFF = 0.2
"""Seconds before the first respawn; doubled for each further attempt."""
CLOSE_GRACE = 8.0
"""The SDK's stdio shutdown waits 2s for an exit after stdin closes, then 2s after SIGTERM, then reaps."""
REAP_TIMEOUT = 3.0


class CallPath:
    """Sending requests over the link's connection, (re)connecting through the link task when there is none."""

    # Owned by the link task (`Link`); read here.
    name: str
    state: ServerState
    error: str | None
    ever_connected: bool
    max_restarts: int
    timeout: float
    connect_timeout: float
    _client: Client | None
    _watch: Watch | None
    _generation: int
    _drop: bool
    _closing: bool
    _given_up_at: float | None
    _failed_wall: float | None
    _retry_at: float | None
    _down_retry_after: float
    user: str | None
    _refused: bool
    _cycle_done: anyio.Event | None
    _cycle_wanted: anyio.Event
    _wake: anyio.Event
    asking: Asking

    async def call_tool(
        self, tool: str, arguments: dict[str, Any], context: CallContext | None = None
    ) -> CallToolResult:
        """Call `tool`; `context` says which run the call is for (its questions and progress go there, and a
        cancelled run cancels the call: the SDK sends `notifications/cancelled` when the request's scope is left)."""
        progress = self.asking.progress_callback(context)
        with self.asking.calling(context):
            return await self.request(
                f"tool {tool!r}",
                lambda client: client.call_tool(tool, arguments, progress_callback=progress),
                timed_out=lambda: ToolTimeoutError(self.name, tool, self.timeout),
                context=context,
            )

    async def request(
        self,
        what: str,
        send: Callable[[Client], Awaitable[T]],
        *,
        timed_out: Callable[[], DownstreamError] | None = None,
        context: CallContext | None = None,
    ) -> T:
        """`send` over the live connection (`what` names the request in errors: "tool 'x'"), within the link's
        timeout (`timed_out` makes the error when it runs out). Raises `DownstreamError` (and its subclasses) with
        a message a user can act on."""
        for _attempt in range(2):  # a request that never reached the server is sent once more
            client, watch, generation = await self._usable()
            written = watch.calls_written if watch is not None else -1
            try:
                with anyio.move_on_after(self.timeout) as scope, _timed(context, scope):
                    result = await send(client)
            except MCPError as exc:
                if exc.code != types.CONNECTION_CLOSED and not (watch is not None and watch.session_expired):
                    raise DownstreamError(
                        self.name, f"{what} was rejected: {exc.message} (JSON-RPC error {exc.code})"
                    ) from None
                lost = await self._lost(watch, written, generation)
            except (RuntimeError, ValidationError) as exc:
                if self._client is client:
                    # The SDK checks structuredContent against the tool's outputSchema.
                    raise DownstreamError(self.name, f"{what} returned an invalid result: {exc}") from None
                # The link closed this client under us ("Client must be used within an async context manager").
                lost = await self._lost(watch, written, generation)
            else:
                if scope.cancelled_caught:
                    # Leaving the cancelled request made the SDK send notifications/cancelled downstream.
                    raise (
                        timed_out()
                        if timed_out is not None
                        else DownstreamError(
                            self.name,
                            f"{what} did not answer within {self.timeout:g}s and was cancelled; "
                            f"raise `timeout:` for server {self.name!r} in the config if it needs longer",
                        )
                    )
                return result
            if lost == "maybe":
                raise DownstreamError(
                    self.name,
                    f"the connection ended while {what} was running ({self.error or 'connection closed'}); "
                    "the call was not retried because it may have run; the server restarts on the next call",
                )
        raise ServerUnavailableError(
            self.name,
            f"the connection was lost again before {what} could be sent ({self.error}); "
            "check the server with `portal-mcp check`",
        )

    async def _usable(self) -> tuple[Client, Watch | None, int]:
        """The live client, after asking the link task to (re)connect if needed. Raises `ServerUnavailableError`."""
        budget = self.max_restarts * (self.connect_timeout + CLOSE_GRACE) + BACKOFF * 2**self.max_restarts + 10
        with anyio.fail_after(budget):
            for _ in range(3):
                client, watch = self._client, self._watch
                if self._closing:
                    raise ServerUnavailableError(self.name, "the portal is shutting down")
                if client is not None and not self._drop and not (watch is not None and watch.closed.is_set()):
                    return client, watch, self._generation
                if self._given_up_at is not None and anyio.current_time() - self._given_up_at < self._down_retry_after:
                    raise self.down_error()
                await self._request_cycle().wait()
                if self._given_up_at is not None and self._client is None:
                    raise self.down_error()
        raise ServerUnavailableError(
            self.name, f"the connection keeps dropping ({self.error}); check `portal-mcp check`"
        )

    @property
    def waits_for_a_call(self) -> bool:
        """A user's own link whose account the server refused (HTTP 401 or 403) is not retried in the background:
        the same credentials would be refused again, and a server counting refusals may lock the account. A call
        after `down_retry_after` tries again (after the user connected an account that may use it, say)."""
        return self.user is not None and self._refused

    def _called_back(self) -> str:
        """What tries a link that `waits_for_a_call` again."""
        return (
            "not retried in the background, since the same account would be refused again; a call "
            f"{self._down_retry_after:g} s after the refusal tries again"
        )

    def down_error(self) -> ServerDownError:
        """`server 'remote' is down since 10:41:07 (it failed to start: ...); retrying in 20 s`."""
        if self.state == "failed" or not self.ever_connected:
            why = f"it failed to start: {self.error}"
        elif self.max_restarts == 0:
            why = f"{self.error}"
        else:
            why = f"after {self.max_restarts} restart attempt(s): {self.error}"
        at = time.strftime("%H:%M:%S", time.localtime(self._failed_wall)) if self._failed_wall else None
        retry_in = None if self._retry_at is None else max(0.0, self._retry_at - time.monotonic())
        then = self._called_back() if self.waits_for_a_call else None
        return ServerDownError(self.name, why, at, retry_in, then)

    async def _lost(self, watch: Watch | None, written: int, generation: int) -> Literal["unsent", "maybe"]:
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
        with anyio.move_on_after(REAP_TIMEOUT):
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


def _timed(context: CallContext | None, scope: anyio.CancelScope) -> AbstractContextManager[None]:
    """The request's timeout, known to its context so a person's answering time does not count."""
    return context.timed(scope) if context is not None else nullcontext()
