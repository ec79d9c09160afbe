"""server-everything (the reference TypeScript server) behind a real portal: over stdio and streamable HTTP, with
clients of both protocol generations (fixtures in tests/everything.py)."""

from __future__ import annotations

from pathlib import Path

import anyio
from mcp import types

from tests.everything import Generation, Transport, connect, everything_portal


def _text(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def test_agent_code_calls_server_everything_through_a_portal_process(
    everything_transport: Transport, generation: Generation, tmp_path: Path
) -> None:
    with anyio.fail_after(90):
        async with everything_portal(tmp_path, everything_transport) as url, connect(url, generation) as client:
            found = await client.call_tool("search_api", {"query": "echo a message back"})
            ran = await client.call_tool("execute_code", {"code": "print(await everything.echo(message='hi there'))"})
    assert "everything.echo" in _text(found), _text(found)
    assert not ran.is_error and "hi there" in _text(ran), _text(ran)
