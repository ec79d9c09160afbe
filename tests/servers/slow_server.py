"""A stdio MCP server whose `wait` tool sleeps, reporting progress each second, and writes when each call starts and
when it is cancelled (`notifications/cancelled`) to the file named by SLOW_LOG: the downstream's view of a call."""

from __future__ import annotations

import os
import time

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context

server = MCPServer("slow")


def _log(event: str, call: str) -> None:
    with open(os.environ["SLOW_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{event} {call} {time.time():.6f}\n")


@server.tool()
async def wait(seconds: float, call: str, ctx: Context) -> str:
    """Sleep for `seconds`, reporting progress every second; `call` names the call in the log."""
    _log("started", call)
    try:
        for step in range(int(seconds)):
            await ctx.report_progress(step, seconds, f"waited {step} s")
            await anyio.sleep(1)
        await anyio.sleep(seconds - int(seconds))
    except anyio.get_cancelled_exc_class():
        _log("cancelled", call)
        raise
    _log("finished", call)
    return f"waited {seconds:g} s"


if __name__ == "__main__":
    server.run("stdio")
