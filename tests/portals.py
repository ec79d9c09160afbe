"""Real `portal-mcp serve --transport http` processes for tests: start one, wait until it listens, reach it with an
authenticated MCP client, stop it together with every process it started."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
from anyio.abc import Process
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from tests.servers import free_port

STARTUP_TIMEOUT = 60  # the portal connects to its downstream servers before it listens


def portal_command(config: Path, host: str, port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "portal_mcp",
        "serve",
        "--transport",
        "http",
        "--host",
        host,
        "--port",
        str(port),
        "--config",
        str(config),
        *extra,
    ]


class PortalExited(AssertionError):
    """The portal exited before it accepted connections."""

    def __init__(self, returncode: int, output: str) -> None:
        super().__init__(f"portal exited with code {returncode} before listening:\n{output}")
        self.returncode = returncode
        self.output = output


@asynccontextmanager
async def started(
    command: Sequence[str], log_path: Path, *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> AsyncIterator[Process]:
    """Run `command` in its own process group with its stdout and stderr in `log_path`; stop the group on exit."""
    with log_path.open("wb") as log:
        process = await anyio.open_process(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group, so its downstream servers die with it
        )
        try:
            yield process
        finally:
            await stop(process)


async def wait_until_listening(process: Process, port: int, log_path: Path | None = None) -> None:
    """Until `process` accepts TCP connections on `port`; `PortalExited` (with `log_path`'s text) if it exits."""
    while True:
        if process.returncode is not None:
            output = (
                "" if log_path is None else await anyio.Path(log_path).read_text(encoding="utf-8", errors="replace")
            )
            raise PortalExited(process.returncode, output)
        try:
            stream = await anyio.connect_tcp("127.0.0.1", port)
        except OSError:
            await anyio.sleep(0.05)  # polling is the only readiness signal a uvicorn subprocess gives
        else:
            await stream.aclose()
            return


_SETTLED = re.compile(r"all \d+ servers? settled|connecting \d+ servers? \.\.\.")


async def wait_until_settled(log_path: Path) -> None:
    """Until the portal logged that its servers settled (or, having none to connect, that it serves)."""
    while True:
        text = await anyio.Path(log_path).read_text(encoding="utf-8", errors="replace")
        found = _SETTLED.findall(text)
        if any("settled" in line for line in found) or (not found and "while servers connect" in text):
            return
        await anyio.sleep(0.05)


async def stop(process: Process) -> None:
    """SIGTERM lets the portal close its downstream servers; whatever is left of its process group is killed."""
    with anyio.CancelScope(shield=True):
        if process.returncode is None:
            process.terminate()
            with anyio.move_on_after(10):
                await process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with anyio.fail_after(5):
            await process.wait()


@asynccontextmanager
async def running_portal(
    config: Path,
    *,
    host: str = "127.0.0.1",
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    settled: bool = True,
) -> AsyncIterator[str]:
    """Start `portal-mcp serve --transport http [args]`, yield its `/mcp` URL once it accepts connections (and, with
    `settled`, once every downstream server's first attempt has ended: serve connects them in the background), then
    stop it. The output goes to a log file next to the config; `PortalExited` carries it if the portal stops early."""
    port = free_port()
    log_path = config.with_suffix(".log")
    async with started(portal_command(config, host, port, *args), log_path, env=env) as process:
        with anyio.fail_after(STARTUP_TIMEOUT):
            await wait_until_listening(process, port, log_path)
            if settled:
                await wait_until_settled(log_path)
        yield f"http://127.0.0.1:{port}/mcp"


@asynccontextmanager
async def authorised_client(url: str, token: str) -> AsyncIterator[Client]:
    """A real MCP client whose every HTTP request carries `Authorization: Bearer <token>`."""
    # The transport leaves a client it was given open, so this one is closed here.
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30)) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client
