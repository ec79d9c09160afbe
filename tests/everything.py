"""The reference TypeScript server `@modelcontextprotocol/server-everything` behind a real portal, for issue 14's
end-to-end tests: the server over stdio (a portal.yaml entry) or over streamable HTTP (a node subprocess on a free
loopback port, `PORT` picks it), a `portal-mcp serve` process or an in-process `Portal` in front of it, and clients
of both protocol generations (`legacy` = the 2025-11-25 handshake, `modern` = 2026-07-28).

Tests skip when node or the npm package is absent (`.ci/node-setup` installs it into tests/node).

    async def test_x(everything_transport: str, generation: str, tmp_path: Path) -> None:
        async with everything_portal(tmp_path, everything_transport) as url, connect(url, generation) as client:
            ...
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from anyio.abc import Process
from mcp.client import Client

from portal_mcp.config import load_config
from portal_mcp.portal import Portal
from portal_mcp.surface.server import PortalServer
from tests.portals import running_portal, wait_until_listening
from tests.servers import NODE_MODULES, free_port

PACKAGE = NODE_MODULES / "@modelcontextprotocol" / "server-everything"
ENTRY = PACKAGE / "dist" / "index.js"
SERVER = "everything"  # the server's name in the portal.yaml the helpers write
Transport = Literal["stdio", "http"]
Generation = Literal["legacy", "modern"]
STARTUP_TIMEOUT = 30


def node() -> str:
    """The node binary and the installed package, or skip the test."""
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not installed: server-everything is an npm package (run .ci/node-setup)")
    if not ENTRY.is_file():
        pytest.skip(f"{ENTRY} is missing: run `bash .ci/node-setup` to install tests/node's npm servers")
    return found


def server_yaml(transport: Transport, url: str | None = None, settings: str = "") -> str:
    """The `servers:` block naming server-everything `everything`; `settings` adds `key: value, ...` to its entry."""
    extra = f", {settings}" if settings else ""
    if transport == "stdio":
        return f"servers:\n  {SERVER}: {{command: {node()!r}, args: [{str(ENTRY)!r}, stdio]{extra}}}\n"
    assert url is not None, "an HTTP entry needs the running server's URL (everything_http)"
    return f"servers:\n  {SERVER}: {{url: {url!r}, type: http{extra}}}\n"


def write_config(
    folder: Path, transport: Transport, url: str | None = None, extra: str = "", settings: str = ""
) -> Path:
    """portal.yaml with server-everything plus `extra` top-level YAML; returns its path."""
    path = folder / "portal.yaml"
    path.write_text(server_yaml(transport, url, settings) + extra, encoding="utf-8")
    return path


@asynccontextmanager
async def everything_http(log_folder: Path) -> AsyncIterator[str]:
    """server-everything's streamable HTTP transport on a free loopback port; yields its `/mcp` URL, kills it after.
    It listens on every interface at `PORT` (dist/transports/streamableHttp.js); tests reach it on 127.0.0.1."""
    port = free_port()
    log_path = log_folder / f"everything-{port}.log"
    with log_path.open("wb") as log:
        process = await anyio.open_process(
            [node(), str(ENTRY), "streamableHttp"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env={**os.environ, "PORT": str(port)},
            start_new_session=True,
        )
        try:
            with anyio.fail_after(STARTUP_TIMEOUT):
                await wait_until_listening(process, port, log_path)  # PortalExited carries its output
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            await _kill(process)


async def _kill(process: Process) -> None:
    with anyio.CancelScope(shield=True):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with anyio.fail_after(10):
            await process.wait()
        await process.aclose()


@asynccontextmanager
async def everything_config(
    folder: Path, transport: Transport, extra: str = "", settings: str = ""
) -> AsyncIterator[Path]:
    """portal.yaml in `folder` for server-everything over `transport` (starting the HTTP server when needed)."""
    if transport == "stdio":
        yield write_config(folder, "stdio", extra=extra, settings=settings)
        return
    async with everything_http(folder) as url:
        yield write_config(folder, "http", url, extra=extra, settings=settings)


@asynccontextmanager
async def everything_portal(
    folder: Path, transport: Transport, extra: str = "", settings: str = "", args: tuple[str, ...] = ()
) -> AsyncIterator[str]:
    """A real `portal-mcp serve --transport http` process with server-everything behind it (settled); yields the
    portal's `/mcp` URL."""
    async with (
        everything_config(folder, transport, extra, settings) as config,
        running_portal(config, args=args) as url,
    ):
        yield url


@asynccontextmanager
async def everything_in_process(
    folder: Path, transport: Transport, extra: str = "", settings: str = ""
) -> AsyncIterator[Portal]:
    """An in-process `Portal` (first connection attempts done) with server-everything behind it."""
    async with (
        everything_config(folder, transport, extra, settings) as config,
        Portal.open(load_config(config)) as portal,
    ):
        yield portal


def client(target: str | PortalServer, generation: Generation, **options: Any) -> Client:
    """A client of `generation` for a portal URL or an in-process `PortalServer` (`options` go to `Client`)."""
    mode: Any = "legacy" if generation == "legacy" else "auto"
    server: Any = target.server if isinstance(target, PortalServer) else target
    return Client(server, mode=mode, **options)


@asynccontextmanager
async def connect(target: str | PortalServer, generation: Generation, **options: Any) -> AsyncIterator[Client]:
    async with client(target, generation, **options) as opened:
        yield opened


@pytest.fixture(params=["stdio", "http"])
def everything_transport(request: pytest.FixtureRequest) -> Transport:
    """server-everything over stdio and over streamable HTTP (skips without node)."""
    node()
    value: Transport = request.param
    return value


@pytest.fixture(params=["legacy", "modern"])
def generation(request: pytest.FixtureRequest) -> Generation:
    """Clients of both protocol generations: the 2025-11-25 handshake (`legacy`) and 2026-07-28 (`modern`)."""
    value: Generation = request.param
    return value
