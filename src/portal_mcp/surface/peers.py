"""Forwarding approval answers between portal replicas (`http.replica`), in front of the MCP endpoint.

A 2026-07-28 client answers an approval by calling `tools/call` again with `requestState`; the run that asked waits
in the memory of the replica that started it (`approvals.PendingRuns`), and the token names that replica
(`r1.<random>`). Behind a load balancer the answer may reach another replica. `ReplicaRouter` is an ASGI middleware
in front of `/mcp` that peeks at POST bodies (at most the SDK's own body limit): a `tools/call` whose `requestState`
names another replica is sent, unchanged (body, the caller's Authorization, MCP headers, Host and Origin), to that
replica's `/mcp`, and the peer's response is streamed back as it comes.

- Where a request goes comes from the config only: the token's id is looked up in `http.replica.peers`, never used
  as an address, and redirects are not followed.
- One hop: a forwarded request carries `x-portal-forwarded-by: <this replica>`, and a replica never forwards a
  request that has it (a client setting it only stops its own request from being forwarded).
- The peer treats the request like any other: it checks the bearer token (the user's own), the DNS-rebinding guard
  (the client's Host and Origin; the replicas share one config) and that the run belongs to that user.

An answer that is not forwarded (unknown replica, peer unreachable, already forwarded once) goes on to this
replica's MCP app with the reason in the ASGI scope (`NOT_FORWARDED`), and `execute_code` answers it with an error
that says what to configure.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Mapping

import anyio
import httpx2
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE, TransportSecurityMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from portal_mcp.control.metrics import UNKNOWN, Metrics
from portal_mcp.runs.approvals import replica_of

logger = logging.getLogger(__name__)

FORWARDED_BY = b"x-portal-forwarded-by"
"""Set on a forwarded request to the id of the replica that forwarded it: such a request is never forwarded again."""
NOT_FORWARDED = "portal_not_forwarded"
"""ASGI scope key: why an answer for another replica's run was kept here (read by `PortalServer._execute`)."""
MAX_PEEK = DEFAULT_MAX_REQUEST_BODY_SIZE
"""Bodies are read for peeking up to the size the SDK accepts; a larger one passes on (and gets the SDK's 413)."""
READ_TIMEOUT = 300.0
"""Seconds between two chunks of a peer's response. A resumed run answers when it finishes or asks again (bounded
by the sandbox limits), and a silent SSE response gets a ping every 15 s, so only a dead peer takes this long."""
# Headers about one hop (RFC 9110 7.6.1) and the ones httpx sets from the body. Host and Origin are kept: the peer's
# DNS-rebinding check must see what this replica's saw.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        FORWARDED_BY,
    }
)


class ReplicaRouter:
    """ASGI middleware: forwards approval answers for another replica's run to that replica (see the module)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        replica: str,
        peers: Mapping[str, str],
        guard: TransportSecurityMiddleware,
        metrics: Metrics,
        path: str = "/mcp",
    ) -> None:
        self.app = app
        self.replica = replica
        self.peers = dict(peers)
        self._guard = guard
        self._metrics = metrics
        self._path = path
        self._client: httpx2.AsyncClient | None = None  # created on the first forward, closed at shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing_at_shutdown(send))
            return
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self._path:
            await self.app(scope, receive, send)
            return
        declared = next((value for key, value in scope["headers"] if key.lower() == b"content-length"), b"0")
        if not declared.isdigit() or int(declared) > MAX_PEEK:  # the SDK refuses it (400/413) without reading it
            await self.app(scope, receive, send)
            return
        messages, body = await _peek(receive, MAX_PEEK)
        replay = _replay(messages, receive)
        owner = _owner(body) if body is not None else None
        if owner is None or owner == self.replica:
            await self.app(scope, replay, send)
            return
        assert body is not None
        reason = await self._route(scope, owner, body, receive, send)
        if reason is not None:
            await self.app({**scope, NOT_FORWARDED: reason}, replay, send)

    async def _route(self, scope: Scope, owner: str, body: bytes, receive: Receive, send: Send) -> str | None:
        """Forward the answer to `owner`; None once the peer's response went out, else why it was not forwarded."""
        label = owner if owner in self.peers else UNKNOWN
        forwarded_by = next((value for key, value in scope["headers"] if key.lower() == FORWARDED_BY), None)
        if forwarded_by is not None:
            self._metrics.forwards.labels(label, "second_hop").inc()
            by = forwarded_by.decode("latin-1")[:64]
            return (
                f"replica {by!r} already forwarded it here, and a forwarded answer is never forwarded again; check "
                f"that `http.replica.peers` gives {owner!r} the URL of that replica and that every replica has an "
                "id of its own"
            )
        url = self.peers.get(owner)
        if url is None:
            self._metrics.forwards.labels(label, "unknown_replica").inc()
            return (
                f"{owner!r} is not among the replicas in `http.replica.peers` ({', '.join(sorted(self.peers))}); "
                "list every replica there, with the id it is started with"
            )
        if await self._guard.validate_request(Request(scope), is_post=True) is not None:
            return "it failed the Host/Origin check"  # the local app refuses it just the same (421/403/400)
        client = self._client = self._client or _new_client()
        target = url + self._path + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
        headers = [(key, value) for key, value in scope["headers"] if key.lower() not in HOP_BY_HOP]
        headers.append((FORWARDED_BY, self.replica.encode()))
        request = client.build_request("POST", target, headers=headers, content=body)
        try:
            response = await client.send(request, stream=True)
        except httpx2.TransportError as exc:
            self._metrics.forwards.labels(label, "unreachable").inc()
            logger.warning(
                "could not forward an approval answer to replica %r at %s: %r",
                owner,
                url,
                exc,
                extra={"event": "forward_failed", "user": scope.get("portal_user")},
            )
            return (
                f"replica {owner!r} did not answer ({type(exc).__name__}; the URL is in `http.replica.peers`, "
                "the error in this replica's log): is it running?"
            )
        self._metrics.forwards.labels(label, "forwarded").inc()
        logger.debug("forwarded an approval answer to replica %r", owner, extra={"user": scope.get("portal_user")})
        try:
            await _relay(response, owner, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()
        return None

    def _closing_at_shutdown(self, send: Send) -> Send:
        async def closing(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed") and self._client:
                client, self._client = self._client, None
                await client.aclose()
            await send(message)

        return closing


def _new_client() -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(connect=5, read=READ_TIMEOUT, write=30, pool=10),
        limits=httpx2.Limits(max_connections=100, max_keepalive_connections=16),
        follow_redirects=False,  # only the configured address, never one a peer points at
        trust_env=False,  # no proxy or .netrc from the environment: replica to replica, with the caller's token
    )


def _owner(body: bytes) -> str | None:
    """The replica named by the `requestState` of a JSON-RPC `tools/call`, if the body is one."""
    if b"requestState" not in body:  # the cheap test first: almost every request stops here
        return None
    try:
        message = json.loads(body)
    except ValueError:
        return None  # the SDK answers it with a parse error
    params = message.get("params") if isinstance(message, dict) and message.get("method") == "tools/call" else None
    state = params.get("requestState") if isinstance(params, dict) else None
    return replica_of(state) if isinstance(state, str) else None


async def _peek(receive: Receive, limit: int) -> tuple[list[Message], bytes | None]:
    """Read the request body, keeping the messages for a replay; the body is None past `limit` or on a disconnect."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        size += len(message.get("body", b""))
        if size > limit:
            return messages, None
        if not message.get("more_body", False):
            return messages, b"".join(part.get("body", b"") for part in messages)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = deque(messages)

    async def replayed() -> Message:
        return pending.popleft() if pending else await receive()

    return replayed


async def _relay(response: httpx2.Response, owner: str, receive: Receive, send: Send) -> None:
    """Stream the peer's response to the client as it comes; a client that goes away ends it."""
    async with anyio.create_task_group() as group:
        group.start_soon(_cancel_on_disconnect, receive, group.cancel_scope)
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [(key, value) for key, value in response.headers.raw if key.lower() not in HOP_BY_HOP],
            }
        )
        try:
            async for chunk in response.aiter_raw():  # raw: content-encoding stays as the peer sent it
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx2.TransportError as exc:  # the client sees a cut response, as it would from the peer itself
            logger.warning("replica %r stopped in the middle of a forwarded answer: %r", owner, exc)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        group.cancel_scope.cancel()


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while True:
        if (await receive())["type"] == "http.disconnect":
            scope.cancel()
            return
