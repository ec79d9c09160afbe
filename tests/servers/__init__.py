"""Real MCP servers for the tests: the demo server (stdio, HTTP, SSE) and the npm servers in tests/node."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process
from mcp.server import MCPServer

from portal_mcp.config import RemoteServerConfig, StdioServerConfig

SERVERS = Path(__file__).resolve().parent
DEMO_SERVER = SERVERS / "demo_server.py"
NODE_DIR = SERVERS.parent / "node"
NODE_MODULES = NODE_DIR / "node_modules"


def demo_stdio(*args: str, **settings: object) -> StdioServerConfig:
    """The demo server as a stdio server config; `args` are demo_server.py flags, `settings` config keys."""
    return StdioServerConfig.model_validate({"command": sys.executable, "args": [str(DEMO_SERVER), *args], **settings})


def crm_server() -> MCPServer:
    """An in-process downstream with one tool and a structured result."""
    crm = MCPServer("crm")

    @crm.tool()
    def find_customer(email: str) -> dict[str, Any]:
        """Look up a customer record by email address."""
        return {"email": email, "name": email.split("@")[0].title(), "tier": "gold"}

    return crm


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def demo_http(transport: str = "http", *args: str, port: int | None = None) -> AsyncIterator[DemoHttpServer]:
    """The demo server as a subprocess on a free loopback port; killed on exit."""
    server = DemoHttpServer(transport, port or free_port(), args)
    await server.start()
    try:
        yield server
    finally:
        with anyio.CancelScope(shield=True):
            await server.stop()


class DemoHttpServer:
    def __init__(self, transport: str, port: int, args: tuple[str, ...]) -> None:
        self.transport = transport
        self.port = port
        self._args = args
        self._process: Process | None = None

    @property
    def url(self) -> str:
        path = "/mcp" if self.transport == "http" else "/sse"
        return f"http://127.0.0.1:{self.port}{path}"

    def config(self, **settings: object) -> RemoteServerConfig:
        return RemoteServerConfig.model_validate({"url": self.url, "type": self.transport, **settings})

    async def start(self) -> None:
        command = [sys.executable, str(DEMO_SERVER), "--transport", self.transport, "--port", str(self.port)]
        self._process = await anyio.open_process(
            [*command, *self._args], stdin=subprocess.DEVNULL, stdout=None, stderr=None
        )
        with anyio.fail_after(15):
            while True:
                if self._process.returncode is not None:
                    raise RuntimeError(f"demo {self.transport} server exited with {self._process.returncode}")
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", self.port)
                except OSError:
                    await anyio.sleep(0.05)
                    continue
                await stream.aclose()
                return

    async def stop(self) -> None:
        """SIGKILL: uvicorn's graceful shutdown would wait for the client's open SSE stream."""
        process, self._process = self._process, None
        if process is not None:
            if process.returncode is None:
                process.kill()
            with anyio.fail_after(10):
                await process.wait()
            await process.aclose()


def ensure_node_servers() -> Path:
    """Install the pinned npm servers into tests/node (once); returns node_modules. Needs npm on PATH."""
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm")
    marker = NODE_MODULES / "@modelcontextprotocol" / "server-memory" / "package.json"
    if not marker.is_file():
        subprocess.run(
            [npm, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"],
            check=True,
            timeout=600,
            stdout=sys.stderr,
        )
    return NODE_MODULES


def descendants(root: int | None = None) -> set[int]:
    """Live (non-zombie) processes below `root` (default: this process), from /proc. Linux only."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with suppress(OSError):
            stat = Path(f"/proc/{entry.name}/stat").read_bytes()
            fields = stat.rsplit(b")", 1)[1].split()
            if fields[0] != b"Z":
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    stack = [os.getpid() if root is None else root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    """The pids that still run (zombies count as gone)."""
    result: set[int] = set()
    for pid in pids:
        with suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_bytes()
            if stat.rsplit(b")", 1)[1].split()[0] != b"Z":
                result.add(pid)
    return result


def kill_all(pids: set[int]) -> None:
    """Test hygiene: end processes a failing test left behind."""
    for pid in pids:
        with suppress(OSError):
            os.kill(pid, signal.SIGKILL)


async def wait_until_exited(portal: object, server: str) -> None:
    """Wait until the portal's pool has seen `server`'s process end (callers bound it with `anyio.fail_after`)."""
    statuses = portal.statuses  # type: ignore[attr-defined]
    while not any(s.name == server and s.state in ("exited", "restarting", "down") for s in statuses()):
        await anyio.sleep(0.02)
