"""Fairness of search: how long one user waits while another floods the portal with big-catalog searches.

A real `portal-mcp serve --transport http` process (uvicorn on loopback) in front of `tests/servers/big_server.py`
(stdio, 6,000 tools). Each round: Alice sends 30 whole-task searches at once over five handshake-era sessions
(limit 20, detail full); once her first answer arrives, Bob sends one search. Recorded per round: how many of
Alice's searches were answered before Bob's, Bob's latency, and the median latency of Alice's searches. The portal
ranks each search in a thread of its user's own (one at a time per user, `Portal.search_api_offloaded`), so Bob
should be answered after a few of Alice's, not after her whole queue (target: before half of them). The order is a
timing, so it lives here and not in the tests: under CPU load from other processes the margin shrinks (threads
share the GIL with the event loop). `tests/test_search_offloaded.py` holds the deterministic part.

`python benchmarks/run.py fairness` (or `python benchmarks/bench_fairness.py`).
"""

from __future__ import annotations

import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the harness lives in tests/

from common import run_alone  # noqa: E402
from tests.portals import running_portal  # noqa: E402
from tests.servers import SERVERS  # noqa: E402

from portal_mcp.tools import MAX_LIMIT  # noqa: E402

NAME = "fairness"
TOOLS = 6000
SESSIONS = 5
SEARCHES_PER_SESSION = 6
ROUNDS = 7
TOPICS = ("invoice", "ticket", "pod", "bucket", "dashboard", "contact", "branch", "alert", "table", "page")


@asynccontextmanager
async def _session(url: str, token: str) -> AsyncIterator[Client]:
    """A handshake-era MCP session of the user owning `token`."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(60)) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
    ):
        yield client


def _found(result: types.CallToolResult) -> None:
    text = "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))
    if result.is_error or "# big." not in text:
        raise RuntimeError(f"the search found nothing of the big server: {text[:300]}")


async def _round(bobs: Client, sessions: list[Client], round_: int) -> dict[str, Any]:
    answered: list[str] = []
    alice_ms: list[float] = []
    alice_answered = anyio.Event()
    bob_ms = 0.0

    async def alices_search(client: Client, query: str) -> None:
        started = time.perf_counter()
        _found(await client.call_tool("search_api", {"query": query, "limit": MAX_LIMIT, "detail": "full"}))
        alice_ms.append((time.perf_counter() - started) * 1000)
        answered.append("alice")
        alice_answered.set()

    async with anyio.create_task_group() as group:
        for number in range(SESSIONS * SEARCHES_PER_SESSION):
            first, second, third = (TOPICS[(number + round_ + step) % len(TOPICS)] for step in range(3))
            query = f"create a {first}, then export the {second}, archive the {third} and sync its owner"
            group.start_soon(alices_search, sessions[number % SESSIONS], query)
        await alice_answered.wait()  # the portal is answering Alice's flood now
        started = time.perf_counter()
        _found(await bobs.call_tool("search_api", {"query": f"sync a {TOPICS[round_ % len(TOPICS)]} of a workspace"}))
        bob_ms = (time.perf_counter() - started) * 1000
        answered.append("bob")
    return {"before_bob": answered.index("bob"), "bob_ms": bob_ms, "alice_median_ms": statistics.median(alice_ms)}


async def _measure() -> list[dict[str, Any]]:
    alice, bob = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "portal.yaml"
        config.write_text(
            f"servers:\n  big:\n    command: {sys.executable!r}\n"
            f"    args: [{str(SERVERS / 'big_server.py')!r}, '{TOOLS}']\n"
            "http:\n  users:\n    alice: {token: '${ALICE_TOKEN}'}\n    bob: {token: '${BOB_TOKEN}'}\n"
            "limits: {searches_per_minute: 10000}\n",
            encoding="utf-8",
        )
        async with (
            running_portal(config, env={"ALICE_TOKEN": alice, "BOB_TOKEN": bob}) as url,
            AsyncExitStack() as stack,
        ):
            bobs = await stack.enter_async_context(_session(url, bob))
            sessions = [await stack.enter_async_context(_session(url, alice)) for _ in range(SESSIONS)]
            _found(await sessions[0].call_tool("search_api", {"query": "export a dashboard"}))  # the index is built
            return [await _round(bobs, sessions, round_) for round_ in range(ROUNDS)]


def run() -> dict[str, Any]:
    rows = anyio.run(_measure)
    return {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "tools": TOOLS,
        "flood": SESSIONS * SEARCHES_PER_SESSION,
        "rounds": rows,
        "target_before_bob": SESSIONS * SEARCHES_PER_SESSION // 2,
    }


def markdown(results: dict[str, Any]) -> str:
    rows = results["rounds"]
    before = [row["before_bob"] for row in rows]
    return "\n".join(
        [
            "## Search fairness",
            "",
            f"`benchmarks/bench_fairness.py`: one real HTTP portal over {results['tools']:,} tools; Alice sends "
            f"{results['flood']} whole-task searches at once (limit 20, full stubs), Bob one search once her first "
            f"is answered; {len(rows)} rounds ({results['machine']}). Target: Bob answered before "
            f"{results['target_before_bob']} of Alice's.",
            "",
            "| | median | max |",
            "|---|---:|---:|",
            f"| Alice's searches answered before Bob's | {statistics.median(before):.0f} | {max(before)} |",
            f"| Bob's latency (ms) | {statistics.median(row['bob_ms'] for row in rows):.0f} "
            f"| {max(row['bob_ms'] for row in rows):.0f} |",
            f"| Alice's median latency per round (ms) | {statistics.median(row['alice_median_ms'] for row in rows):.0f} "
            f"| {max(row['alice_median_ms'] for row in rows):.0f} |",
        ]
    )


if __name__ == "__main__":
    run_alone(NAME, run, markdown)
