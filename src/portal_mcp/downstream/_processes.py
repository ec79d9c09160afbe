"""The processes a stdio server leaves behind: found by a token in their environment, ended after each connection."""

from __future__ import annotations

import os
import signal
import sys
from contextlib import suppress

import anyio
import anyio.to_thread

SPAWN_ID_VAR = "PORTAL_MCP_SPAWN_ID"
"""Set in every stdio server's environment to a random id of that spawn, so the processes it started can be found
(and ended) after it. Not a credential: it names a spawn, and it opens nothing."""


async def end_processes(token: str) -> None:
    """End every process still carrying this spawn's token: children a server left behind when it exited.

    The SDK kills the server's process group only when the server itself outlives its grace period; a server
    that exits promptly can leave children (npx's node, helpers) running. Linux only (/proc); elsewhere the
    SDK's own cleanup is all there is.
    """
    if sys.platform != "linux":
        return
    pids = await anyio.to_thread.run_sync(_pids_with_token, token)
    if not pids:
        return
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    with anyio.move_on_after(1.0):
        # Polling: there is no event for "an unrelated process exited".
        while pids := [pid for pid in pids if _alive(pid)]:  # noqa: ASYNC110
            await anyio.sleep(0.02)
    for pid in pids:
        _signal(pid, signal.SIGKILL)


def _pids_with_token(token: str) -> list[int]:
    marker = f"{SPAWN_ID_VAR}={token}".encode()
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as file:
                environ = file.read()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            # A zombie has exited; it only waits for its parent to reap it.
            return file.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return False
