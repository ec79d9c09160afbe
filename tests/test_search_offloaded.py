"""`search_api` over MCP ranks off the event loop, in a thread of the caller's own (`Portal.search_api_offloaded`:
one at a time per user), so another user's call never waits behind a ranking. How long another user waits during a
flood of big-catalog searches is measured by `benchmarks/bench_fairness.py` (a timing, so not a test); that a
refused search answers before any thread work is `tests/test_budgets.py`'s."""

from __future__ import annotations

import threading
from functools import partial

import anyio
import mcp_types as types
from mcp.client import Client

from portal_mcp.portal import Portal
from portal_mcp.surface.server import PortalServer
from tests.test_budgets import config, store


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def test_a_search_over_mcp_waits_for_its_users_thread_while_the_event_loop_serves_on() -> None:
    # Alice's thread is busy (held by the test). Her search over MCP is then queued behind it, counted as her
    # offloaded work, while the event loop still answers her other requests; once her thread is free the search
    # is answered as on the command line. Ranked on the event loop instead, it would be answered without queueing.
    free = threading.Event()
    answered: list[str] = []
    with anyio.fail_after(60):
        async with Portal.open(config({}), local={"store": store([])}) as portal:
            expected = portal.search_api("keep items", portal.principal("alice"), limit=1)
            async with Client(PortalServer(portal).server) as client, anyio.create_task_group() as group:

                async def search() -> None:
                    answered.append(text_of(await client.call_tool("search_api", {"query": "keep items", "limit": 1})))

                group.start_soon(partial(portal.budgets.offload, free.wait, size=None, user="alice"))
                try:
                    group.start_soon(search)
                    while portal.budgets.in_flight("alice")["offloaded"] < 2 and not answered:
                        await anyio.sleep(0.01)  # until the search queues behind the held thread
                    assert not answered, "answered while its user's thread was busy: it ranked on the event loop"
                    assert [tool.name for tool in (await client.list_tools()).tools] == ["search_api", "execute_code"]
                    assert answered == []
                finally:
                    free.set()  # a thread cannot be cancelled: the held one must end for the test to
    assert answered == [expected]
