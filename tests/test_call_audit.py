"""Every call that leaves the portal is audited, however it ends: cancelled, cut by the run's time limit, or failing
inside the portal after the downstream answered."""

from __future__ import annotations

import textwrap

import anyio
import pytest
from mcp.server.mcpserver import MCPServer

from portal_mcp.config import PortalConfig
from portal_mcp.control.audit import MemoryAuditSink
from portal_mcp.portal import Portal


def slowpoke(started: list[str]) -> MCPServer:
    server = MCPServer("slowpoke")

    @server.tool()
    async def slow(seconds: float) -> str:
        """Sleep, then answer."""
        started.append("slow")
        await anyio.sleep(seconds)
        return "done"

    @server.tool(structured_output=False)
    def deep() -> str:
        """Answer with JSON nested deeper than Python can decode."""
        started.append("deep")
        return "[" * 100_000 + "]" * 100_000

    return server


CASES = {
    "wait_for": "import asyncio\ntry:\n    await asyncio.wait_for(slowpoke.slow(seconds=30), 0.3)\nexcept Exception as e:\n    print('gave up')",
    "run_timeout": "await slowpoke.slow(seconds=30)",
    "recursion": "print(await slowpoke.deep())",
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_call_that_reached_the_downstream_is_audited_however_it_ends(case: str) -> None:
    started: list[str] = []
    audit = MemoryAuditSink()
    config = PortalConfig.model_validate({"user": "alice", "sandbox": {"timeout": 2}})
    with anyio.fail_after(60):
        async with Portal.open(config, local={"slowpoke": slowpoke(started)}, audit=audit) as portal:
            result = await portal.execute_code(textwrap.dedent(CASES[case]), portal.local)
            with anyio.fail_after(10):
                while not any(event.kind == "call" for event in audit):
                    await anyio.sleep(0.02)  # a cancelled call is recorded as its task unwinds

    calls = [event for event in audit if event.kind == "call"]
    assert len(started) == 1, result.render()
    assert len(calls) == 1, (calls, result.render())
    assert (calls[0].user, calls[0].outcome) == ("alice", "error")
    expected = {"wait_for": "cancelled", "run_timeout": "cancelled", "recursion": "RecursionError"}[case]
    assert calls[0].detail == expected
