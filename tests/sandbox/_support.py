"""Shared helpers: a fake portal `call_tool` and a one-shot run with chosen limits."""

from __future__ import annotations

from typing import Any

import anyio

from portal_mcp.config import SandboxConfig
from portal_mcp.errors import ToolFailedError
from portal_mcp.sandbox.host import RunResult, SandboxHost, ToolCaller

NAMESPACES = {"gh": ["search", "fail", "slow", "big"]}


class FakeTools:
    """Stands in for the portal's bridge; records every call it serves."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.cancelled = 0

    async def __call__(self, tool: str, args: dict[str, Any]) -> Any:
        self.calls.append((tool, args))
        if tool == "gh.fail":
            raise ToolFailedError(tool, "rate limited, retry in 60 s")
        if tool == "gh.slow":
            try:
                await anyio.sleep(args.get("seconds", 0.2))
            except anyio.get_cancelled_exc_class():
                self.cancelled += 1
                raise
            return args.get("n")
        if tool == "gh.big":
            return "x" * args["size"]
        return {"items": [args], "cancelled_so_far": self.cancelled}


async def run(code: str, call_tool: ToolCaller | None = None, *, wait: float = 30, **limits: Any) -> RunResult:
    """Run `code` once in a fresh host with `limits` over the defaults."""
    with anyio.fail_after(wait):
        async with SandboxHost(SandboxConfig(**limits)) as host:
            return await host.run(code, NAMESPACES, call_tool or FakeTools())
