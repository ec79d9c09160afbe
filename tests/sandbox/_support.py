"""Shared helpers: a fake portal `call_tool`, a one-shot run with chosen limits, and the worker processes."""

from __future__ import annotations

import os
from pathlib import Path
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


def _processes() -> dict[int, tuple[int, bytes]]:
    """pid -> (parent pid, command line) of every process we can see."""
    found: dict[int, tuple[int, bytes]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            found[int(entry.name)] = (ppid, (entry / "cmdline").read_bytes())
        except (OSError, IndexError, ValueError):
            continue
    return found


def fork_servers() -> list[int]:
    """Pids of the fork servers this test process started."""
    me = os.getpid()
    return [pid for pid, (ppid, cmd) in _processes().items() if ppid == me and b"portal_mcp.sandbox.zygote" in cmd]


def worker_pids() -> list[int]:
    """Pids of the sandbox workers of this test process: forked by its fork servers, or spawned by it."""
    me = os.getpid()
    processes = _processes()
    servers = {pid for pid, (ppid, cmd) in processes.items() if ppid == me and b"portal_mcp.sandbox.zygote" in cmd}
    return sorted(
        pid
        for pid, (ppid, cmd) in processes.items()
        if ppid in servers or (ppid == me and b"portal_mcp.sandbox.worker" in cmd)
    )


def worker_fds() -> dict[int, str]:
    """fd -> target of every descriptor held by any sandbox worker of this process."""
    return {int(fd.name): os.readlink(fd) for pid in worker_pids() for fd in Path(f"/proc/{pid}/fd").iterdir()}


def exists(pid: int) -> bool:
    """Whether process `pid` exists (a zombie counts until it is reaped)."""
    return Path(f"/proc/{pid}").exists()


def environ_and_fds(pid: int) -> tuple[bytes, dict[int, str]]:
    """The environment block and the descriptor targets of process `pid`."""
    fds = {int(fd.name): os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
    return Path(f"/proc/{pid}/environ").read_bytes(), fds
