"""HTTP limits (`http.limits:`): a client that opens many connections, or sends its headers or body slowly, cannot
tie up the portal, and the errors that causes cannot flood the log.

- `guarded_protocol(limits)`: uvicorn's h11 protocol with a cap on open connections, overall and per client
  address (a connection over either is closed at once), and a deadline for each request's headers (uvicorn has a
  keep-alive timeout between requests, but none for a connection that never finishes its first headers).
- `BodyLimits`: ASGI middleware giving each request `body_timeout` seconds and `max_body_bytes` for its body.
- `RateLimitedLog`: a logging filter that lets a kind of message through at most a few times per interval and
  then counts the rest (accept errors when file descriptors run out, refused connections, invalid requests).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from portal_mcp.config import HttpLimitsConfig

logger = logging.getLogger("portal_mcp.http")

_FLOODS = (
    "socket.accept() out of system resource",
    "Invalid HTTP request received",
    "connection refused:",
    "token refused:",  # surface/oauth.py: a client retrying a bad token
)


class RateLimitedLog(logging.Filter):
    """At most `burst` records per `interval` seconds for each message kind of `_FLOODS`; the next one let through
    says how many were left out. Other records pass untouched."""

    def __init__(self, interval: float = 10.0, burst: int = 3) -> None:
        super().__init__()
        self.interval = interval
        self.burst = burst
        self._window: dict[str, tuple[float, int]] = {}
        self.suppressed: Counter[str] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        kind = next((flood for flood in _FLOODS if flood in message), None)
        if kind is None:
            return True
        now = time.monotonic()
        start, count = self._window.get(kind, (now, 0))
        if now - start > self.interval:
            start, count = now, 0
        self._window[kind] = (start, count + 1)
        if count >= self.burst:
            self.suppressed[kind] += 1
            return False
        if self.suppressed[kind]:
            record.msg = f"{message} [{self.suppressed.pop(kind)} more like this were not logged]"
        record.exc_info = None  # one line per flood record: a traceback per accept error is what filled disks
        return True


def install_log_limits() -> RateLimitedLog:
    """Put one `RateLimitedLog` on the loggers that flood under a connection attack; returns it."""
    limiter = RateLimitedLog()
    for name in ("asyncio", "uvicorn.error", logger.name):
        logging.getLogger(name).addFilter(limiter)
    return limiter


def guarded_protocol(limits: HttpLimitsConfig) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol class with `limits` applied to each new connection (pass it as `uvicorn.Config(http=)`).

    Imported here, not at the top: only `serve --transport http` needs uvicorn."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            host = _host(self)
            same = sum(1 for other in self.connections if _host(other) == host)
            if len(self.connections) > limits.max_connections:
                reason = f"{len(self.connections) - 1} connections are open (http.limits.max_connections)"
            elif same > limits.max_connections_per_client:
                reason = f"{host} has {same - 1} open (http.limits.max_connections_per_client)"
            else:
                self._arm()
                return
            logger.warning("connection refused: %s", reason, extra={"event": "http_limit"})
            transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._header_timer is not None and self.conn.their_state is not h11.IDLE:  # the headers are in
                self._header_timer.cancel()
                self._header_timer = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm()  # the next request on this connection gets the same deadline for its headers

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(limits.header_timeout, self._headers_too_slow)

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                logger.warning("connection refused: headers not sent within http.limits.header_timeout")
                self.transport.close()

    return GuardedProtocol


def _host(connection: object) -> str:
    client = getattr(connection, "client", None)
    return str(client[0]) if isinstance(client, tuple) and client else ""


class BodyLimits:
    """Each request's body must arrive within `body_timeout` seconds and hold at most `max_body_bytes`; otherwise
    the app sees the client as gone (a declared oversize body is answered 413 before the app runs)."""

    def __init__(self, app: ASGIApp, limits: HttpLimitsConfig) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limits.max_body_bytes:
            body = f'{{"error": "request body over {self.limits.max_body_bytes} bytes (http.limits.max_body_bytes)"}}'
            await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})  # fmt: skip
            await send({"type": "http.response.body", "body": body.encode()})
            return
        deadline = anyio.current_time() + self.limits.body_timeout
        state = {"size": 0, "done": False}

        async def limited() -> Message:
            if state["done"]:  # the body is in: what is left to receive is the disconnect, however late
                return await receive()
            with anyio.move_on_after(max(deadline - anyio.current_time(), 0)):
                message = await receive()
                if message["type"] == "http.request":
                    state["size"] += len(message.get("body", b""))
                    state["done"] = not message.get("more_body", False)
                    if state["size"] > self.limits.max_body_bytes:
                        logger.info("connection refused: a request body over http.limits.max_body_bytes")
                        return {"type": "http.disconnect"}
                else:
                    state["done"] = True
                return message
            logger.info("connection refused: a request body not sent within http.limits.body_timeout")
            return {"type": "http.disconnect"}

        await self.app(scope, limited, send)
