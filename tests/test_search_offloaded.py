"""`search_api` over HTTP ranks off the event loop: one user flooding searches of a big catalog does not hold up
another user's call on the same portal."""

from __future__ import annotations

import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import mcp_types as types
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from portal_mcp.tools import MAX_LIMIT
from tests.portals import running_portal
from tests.servers import SERVERS

TOOLS = 6000
SESSIONS = 5
SEARCHES_PER_SESSION = 6
TOPICS = ("invoice", "ticket", "pod", "bucket", "dashboard", "contact", "branch", "alert", "table", "page")


@asynccontextmanager
async def session(url: str, token: str) -> AsyncIterator[Client]:
    """A handshake-era MCP session of the user owning `token`."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(60)) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
    ):
        yield client


def found(result: types.CallToolResult) -> str:
    text = "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))
    assert not result.is_error and "# big." in text, text
    return text


async def test_a_flood_of_one_users_searches_does_not_hold_up_another_users_call(tmp_path: Path) -> None:
    # Alice sends 30 searches of a 6,000-tool catalog at once over five sessions; once the portal is answering
    # them, Bob searches. Each ranking is ~10 ms of CPU: on the event loop, Alice's queue would go before Bob's
    # request is even read. In a thread of Alice's own (one at a time per user), the loop serves Bob meanwhile.
    alice, bob = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    config = tmp_path / "portal.yaml"
    config.write_text(
        f"servers:\n  big:\n    command: {sys.executable!r}\n    args: [{str(SERVERS / 'big_server.py')!r}, '{TOOLS}']\n"
        "http:\n  users:\n    alice: {token: '${ALICE_TOKEN}'}\n    bob: {token: '${BOB_TOKEN}'}\n"
        "limits: {searches_per_minute: 1000}\n",
        encoding="utf-8",
    )
    answered: list[str] = []
    alice_answered = anyio.Event()

    async def alices_search(client: Client, query: str) -> None:
        found(await client.call_tool("search_api", {"query": query, "limit": MAX_LIMIT, "detail": "full"}))
        answered.append("alice")
        alice_answered.set()

    async with running_portal(config, env={"ALICE_TOKEN": alice, "BOB_TOKEN": bob}) as url:
        with anyio.fail_after(180):
            async with AsyncExitStack() as stack:
                bobs = await stack.enter_async_context(session(url, bob))
                sessions = [await stack.enter_async_context(session(url, alice)) for _ in range(SESSIONS)]
                found(await sessions[0].call_tool("search_api", {"query": "export a dashboard"}))  # index built
                async with anyio.create_task_group() as group:
                    for number in range(SESSIONS * SEARCHES_PER_SESSION):
                        first, second, third = (TOPICS[(number + step) % len(TOPICS)] for step in range(3))
                        query = f"create a {first}, then export the {second}, archive the {third} and sync its owner"
                        group.start_soon(alices_search, sessions[number % SESSIONS], query)
                    await alice_answered.wait()  # the portal is answering Alice's flood now
                    found(await bobs.call_tool("search_api", {"query": "sync a ticket of a workspace"}))
                    answered.append("bob")
    total = SESSIONS * SEARCHES_PER_SESSION
    assert answered.count("alice") == total
    before_bob = answered.index("bob")
    assert before_bob < total // 2, f"Bob was answered after {before_bob} of Alice's {total} searches"
