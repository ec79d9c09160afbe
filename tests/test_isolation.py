"""One user cannot act for another over HTTP: a real `serve --transport http` with users alice and bob."""

from __future__ import annotations

import contextlib
import io
import secrets
import socket
from pathlib import Path

import anyio
import httpx2
import pytest

from tests.portals import authorised_client, running_portal
from tests.test_http import INITIALIZE, MCP_HEADERS, write_config

USERS = "http:\n  users:\n    alice: {token: '${ALICE_TOKEN}'}\n    bob: {token: '${BOB_TOKEN}'}\n"


def tokens() -> dict[str, str]:
    return {"ALICE_TOKEN": secrets.token_urlsafe(16), "BOB_TOKEN": secrets.token_urlsafe(16)}


async def test_a_session_answers_only_the_token_that_opened_it(tmp_path: Path) -> None:
    env = tokens()
    alice = {**MCP_HEADERS, "Authorization": f"Bearer {env['ALICE_TOKEN']}"}
    bob = {**MCP_HEADERS, "Authorization": f"Bearer {env['BOB_TOKEN']}"}
    async with running_portal(write_config(tmp_path, USERS), env=env) as url:
        with anyio.fail_after(30):
            async with httpx2.AsyncClient(timeout=httpx2.Timeout(10)) as http:
                opened = await http.post(url, json=INITIALIZE, headers=alice)
                session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
                initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
                await http.post(url, json=initialized, headers={**alice, **session})
                # An answer to a server request (what an approval answer is) and a request, each with bob's token.
                answer = {"jsonrpc": "2.0", "id": 0, "result": {"action": "accept", "content": {"approve": True}}}
                bob_answer = await http.post(url, json=answer, headers={**bob, **session})
                ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
                bob_ping = await http.post(url, json=ping, headers={**bob, **session})
                bob_close = await http.delete(url, headers={**bob, **session})
                alice_ping = await http.post(url, json=ping, headers={**alice, **session})

    assert opened.status_code == 200, opened.text
    assert (bob_answer.status_code, bob_ping.status_code, bob_close.status_code) == (404, 404, 404)
    assert alice_ping.status_code == 200, alice_ping.text
    log = (tmp_path / "portal.log").read_text(encoding="utf-8")
    assert "credential does not match" in log


async def test_a_shared_servers_stderr_reaches_the_operators_log_and_no_user(tmp_path: Path) -> None:
    """What a shared server logs while serving alice can hold her data: bob, and alice too, learn only that it
    crashed and that it restarts; the lines themselves go to the operator's log."""
    from portal_mcp.config import PortalConfig
    from portal_mcp.downstream import DownstreamEvent
    from portal_mcp.errors import DownstreamError
    from portal_mcp.portal import Portal
    from tests.servers import demo_stdio, wait_until_exited

    private = "alice-ledger-entry-4471-x"
    errlog = io.StringIO()
    events: list[DownstreamEvent] = []
    config = PortalConfig.model_validate({"user": "alice", "servers": {"demo": demo_stdio().model_dump()}})

    async def heard(event: DownstreamEvent) -> None:
        events.append(event)

    with anyio.fail_after(60):
        async with Portal.open(config, errlog=errlog) as portal:
            portal.add_listener(heard)
            with pytest.raises(DownstreamError) as crashed:
                await portal.pool.call_tool("demo", "crash", {"note": private}, user="alice")
            await wait_until_exited(portal, "demo")
            seen_by_bob = [
                portal.search_api("", portal.principal("bob")),
                (await portal.execute_code("print(await demo.echo(text='hi'))", portal.principal("bob"))).render(),
            ]
            statuses = [status.error or "" for status in portal.statuses()]

    told = [str(crashed.value), *seen_by_bob, *statuses, *(event.message for event in events)]
    assert not [text for text in told if private in text], told
    assert any("restarts" in event.message for event in events), events
    assert f"[demo] demo server: serving {private}" in errlog.getvalue()


async def _loris(port: int, source: str) -> socket.socket:
    """A connection from `source` that starts a request and never finishes its headers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.bind((source, 0))
    with contextlib.suppress(BlockingIOError):
        sock.connect(("127.0.0.1", port))
    await anyio.wait_writable(sock)
    sock.send(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    return sock


async def _closed_by_server(sock: socket.socket) -> None:
    while True:
        await anyio.wait_readable(sock)
        try:
            if sock.recv(4096) == b"":
                return
        except ConnectionResetError:
            return


async def test_slow_loris_connections_are_capped_per_client_and_cut_at_the_header_deadline(tmp_path: Path) -> None:
    """Loopback only and bounded: 40 connections from 127.0.0.2 that never finish their headers."""
    env = tokens()
    limits = "  limits: {header_timeout: 1, max_connections_per_client: 10, max_connections: 100}\n"
    async with running_portal(write_config(tmp_path, USERS + limits), env=env) as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        lorises = [await _loris(port, "127.0.0.2") for _ in range(40)]
        try:
            with anyio.fail_after(30):
                async with authorised_client(url, env["ALICE_TOKEN"]) as client:
                    found = await client.call_tool("search_api", {"query": "current time"})
                for sock in lorises:  # the server ends every one of them: over the cap at once, the rest at 1 s
                    await _closed_by_server(sock)
        finally:
            for sock in lorises:
                sock.close()
    assert not found.is_error
    log = (tmp_path / "portal.log").read_text(encoding="utf-8")
    assert "http.limits.max_connections_per_client" in log
    assert log.count("connection refused") <= 10  # 30+ refusals, a few lines: the rest are counted, not logged
