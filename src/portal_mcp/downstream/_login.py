"""`portal-mcp login SERVER`: connect a user's account with a loopback redirect (RFC 8252 §7.3), no portal running.

The authorization server sends the browser back to `http://127.0.0.1:PORT/oauth/callback`, a one-request HTTP
listener of this process on a free port; the code it carries completes the flow (`Connector.complete`).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import anyio
from anyio.abc import ByteStream, SocketAttribute

from portal_mcp.config import CONNECT_WAIT, RemoteServerConfig
from portal_mcp.control.audit_store.connections import ConnectionStore
from portal_mcp.downstream._connect import Connector
from portal_mcp.errors import ConnectionNeededError

_MAX_REQUEST = 16_384


def callback_page(server: str | None, problem: str | None) -> tuple[int, str]:
    """The page a browser lands on after the authorization server: (status, HTML)."""
    if problem is None:
        text = f"Connected your account to {server}. You can close this window and go back to your agent."
        return 200, f"<!doctype html><title>Connected</title><p>{html.escape(text)}</p>"
    return 400, f"<!doctype html><title>Not connected</title><p>{html.escape(problem)}</p>"


async def complete_from(connector: Connector, query: str) -> tuple[int, str]:
    """Hand a callback's query string to its flow; the page to show."""
    params = {key: values[-1] for key, values in parse_qs(query).items()}
    try:
        server = await connector.complete(
            params.get("state"), params.get("code"), params.get("iss"), params.get("error")
        )
    except (LookupError, ConnectionNeededError) as exc:
        return callback_page(None, str(exc))
    return callback_page(server, None)


async def login(
    store: ConnectionStore,
    server: str,
    config: RemoteServerConfig,
    user: str,
    show: Callable[[str], None],
    *,
    wait: float = CONNECT_WAIT,
) -> None:
    """Connect `user`'s account to `server`: `show` gets the authorization URL; returns once the tokens are stored.
    Raises `ConnectionNeededError` when the flow fails or nobody comes back within `wait` seconds
    (`connections.connect_wait`)."""
    connector = Connector(store, {server: config}, timeout=wait)
    async with anyio.create_task_group() as tasks:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(SocketAttribute.local_port)
        flow = await connector.start(server, user, f"http://127.0.0.1:{port}/oauth/callback")
        answered = anyio.Event()

        async def handle(stream: ByteStream) -> None:
            async with stream:
                request = b""
                with anyio.move_on_after(30):
                    while b"\r\n\r\n" not in request and len(request) < _MAX_REQUEST:
                        request += await stream.receive()
                line = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
                target = urlsplit(line[1]) if len(line) == 3 and line[0] == "GET" else None
                if target is None or target.path != "/oauth/callback":
                    status, page = 404, "<!doctype html><p>Not found</p>"
                else:
                    status, page = await complete_from(connector, target.query)
                body = page.encode()
                head = (
                    f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\nContent-Type: text/html; charset=utf-8"
                )
                await stream.send(f"{head}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
                if status == 200:
                    answered.set()

        tasks.start_soon(listener.serve, handle)
        show(flow.url)
        problem: str | None = "the sign-in did not finish"
        with anyio.move_on_after(wait):
            problem = await connector.wait(flow.key)
        with anyio.move_on_after(5):  # the browser gets its page before the listener closes
            await answered.wait()
        tasks.cancel_scope.cancel()
    await listener.aclose()
    if problem is not None:
        raise ConnectionNeededError(server, user, reason=problem)
