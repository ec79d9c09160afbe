"""`search_api` over MCP ranks off the event loop: the rate is checked on the loop and the reply is built in a
thread of the caller's own (`Portal.search_api_offloaded`), so a search that is refused, or another user's call,
never waits behind a ranking. How long another user waits during a flood of big-catalog searches is measured by
`benchmarks/bench_fairness.py` (a timing, so not a test)."""

from __future__ import annotations

import anyio
import mcp_types as types
from mcp.client import Client

from portal_mcp.control.audit import MemoryAuditSink
from portal_mcp.portal import Portal
from portal_mcp.surface.server import PortalServer
from tests.test_budgets import config, store


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def test_searches_over_mcp_are_refused_on_the_loop_while_the_admitted_ones_rank_in_a_thread() -> None:
    # Five searches sent at once over a limit of three. Ranked on the event loop, each admitted search would be
    # answered before the next request is even read, so the refusals would come last; ranked in a thread, the two
    # refusals (decided on the loop) are answered first and the three replies equal the command line's.
    audit = MemoryAuditSink()
    answered: list[str] = []
    with anyio.fail_after(60):
        async with Portal.open(config({"searches_per_minute": 3}), local={"store": store([])}, audit=audit) as portal:
            expected = portal.search_api("keep items", portal.principal("bob"), limit=1)
            async with Client(PortalServer(portal).server) as client:

                async def search() -> None:
                    reply = text_of(await client.call_tool("search_api", {"query": "keep items", "limit": 1}))
                    answered.append("refused" if "`limits.searches_per_minute`" in reply else reply)

                async with anyio.create_task_group() as group:
                    for _ in range(5):
                        group.start_soon(search)
    assert answered == ["refused", "refused", expected, expected, expected]
    assert [event.outcome for event in audit if event.kind == "search" and event.user == "alice"] == [
        "refused",
        "refused",
        "ok",
        "ok",
        "ok",
    ]
