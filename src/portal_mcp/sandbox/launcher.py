"""How the host gets a confined worker, and what it holds on to: `Worker`, and `Spawner` for `backend: spawn`.

Either way a worker is one process for one run, reached through one end of a UNIX socketpair, and has said
`ready` (with the layers it could apply) before the host hands it any code. `Spawner` starts `python -I -B`
per run: slower, no shared parent. The default, the warm fork server, is in `forkserver.py`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from typing import Any, Final

import anyio
from anyio.abc import Process

from portal_mcp.errors import WorkerStartError
from portal_mcp.sandbox import protocol
from portal_mcp.sandbox.channel import Channel, FrameReader

__all__ = [
    "WORKER_COMMAND",
    "LayerLog",
    "Layers",
    "Spawner",
    "Worker",
    "open_with_channel",
    "stderr_of",
]

logger = logging.getLogger("portal_mcp.sandbox")

Layers = Mapping[str, tuple[str, ...]]

# `ssl` is blocked before asyncio loads it: a worker never needs it, and it is the costliest import (~8 ms).
_WORKER_BOOTSTRAP: Final = "import sys; sys.modules['ssl'] = None\nfrom portal_mcp.sandbox.worker import main\nmain()"
WORKER_COMMAND: tuple[str, ...] = (sys.executable, "-I", "-B", "-c", _WORKER_BOOTSTRAP)

STDERR_KEPT: Final = 4_096
READY_TIMEOUT: Final = 30.0  # a fork takes milliseconds; an interpreter start on a loaded machine, seconds
EXIT_TIMEOUT: Final = 2.0
_MAX_READY_FRAME: Final = 16_384


class Worker:
    """One confined worker process, ready for its `start` frame. Subclasses know how to kill and wait."""

    def __init__(self, pid: int, stream: Channel) -> None:
        self.pid = pid
        self.stream = stream
        self.reader = FrameReader(stream, _MAX_READY_FRAME)  # the session raises the cap for its frames
        self.layers: Layers = {}
        self.unavailable: tuple[str, ...] = ()

    async def handshake(self) -> bool:
        """Read the ready frame: True when it came, False at end of stream. ProtocolViolation when malformed."""
        frame = None
        with anyio.move_on_after(READY_TIMEOUT) as waited:
            frame = await self.reader.next()
        if waited.cancelled_caught:
            raise WorkerStartError(f"a sandbox worker did not get ready within {READY_TIMEOUT:g} s")
        if frame is None:
            return False
        self.layers, self.unavailable = protocol.parse_worker_ready(frame)
        return True

    async def send(self, data: bytes) -> None:
        # A gone worker is not an error here: the reader sees the end of its stream and reports why.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self.stream.send(data)

    async def wait(self) -> int | None:
        """The exit status once the worker is dead (-signal when killed); None if unknown after a short wait."""
        raise NotImplementedError

    async def aclose(self, *, finished: bool = False) -> None:
        """Kill the worker (and anything it started) and release it; call it shielded.

        `finished`: it sent a valid `done` and exits by itself; it may be killed a moment later instead of now.
        """
        raise NotImplementedError


# --- spawned workers ---


class _SpawnedWorker(Worker):
    def __init__(self, process: Process, stream: Channel) -> None:
        super().__init__(process.pid, stream)
        self.process = process

    async def wait(self) -> int | None:
        with anyio.move_on_after(EXIT_TIMEOUT):
            await self.process.wait()
        return self.process.returncode

    async def aclose(self, *, finished: bool = False) -> None:
        # The whole process group, so anything the worker managed to fork dies too. The group id cannot be
        # reused while a member lives, and killing an empty group only fails with ProcessLookupError.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        await self.process.wait()
        await self.process.aclose()
        self.stream.close()


async def open_with_channel(
    command: list[str] | tuple[str, ...], identity: Mapping[str, Any], what: str, *, stdout_on_channel: bool
) -> tuple[Process, socket.socket]:
    """Start a sandbox process (worker or fork server) with an empty environment in its own session, its stdin
    (and stdout, if asked) on one end of a socketpair; returns the process and our end of the channel."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        process = await anyio.open_process(
            command,
            stdin=theirs.fileno(),
            stdout=theirs.fileno() if stdout_on_channel else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={},
            cwd="/",
            start_new_session=True,
            **identity,
        )
    except OSError as exc:
        ours.close()
        raise WorkerStartError(f"could not start the {what}: {exc}") from None
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return process, ours


class Spawner:
    """`backend: spawn`: a fresh `python -I -B` per run, the channel on its fds 0 and 1."""

    def __init__(self, limits: protocol.WorkerLimits, identity: Mapping[str, Any]) -> None:
        self.limits = limits
        self.identity = dict(identity)
        self.seen = LayerLog()

    async def acquire(self) -> Worker:
        process, ours = await open_with_channel(
            [*WORKER_COMMAND, json.dumps(self.limits.to_json())],
            self.identity,
            "sandbox worker",
            stdout_on_channel=True,
        )
        worker = _SpawnedWorker(process, Channel(ours))
        try:
            if not await worker.handshake():
                detail = await stderr_of(process)
                raise WorkerStartError(f"the sandbox worker failed to start: {detail}")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await worker.aclose()
            raise
        self.seen.note(worker)
        return worker


async def stderr_of(process: Process) -> str:
    """What a process that failed to start said on stderr (the end of it), or its exit status."""
    with anyio.move_on_after(EXIT_TIMEOUT):
        await process.wait()
    kept = bytearray()
    if process.stderr is not None:
        with anyio.move_on_after(EXIT_TIMEOUT), contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
            while len(kept) < STDERR_KEPT:
                kept += await process.stderr.receive()
    return kept.decode(errors="replace").strip()[-STDERR_KEPT:] or f"exit status {process.returncode}"


class LayerLog:
    """The layers the latest worker reported; warns once for each missing mechanism."""

    def __init__(self) -> None:
        self.layers: Layers = {}
        self._warned: set[str] = set()

    def note(self, worker: Worker) -> None:
        self.layers = worker.layers
        for reason in worker.unavailable:
            if reason not in self._warned:
                self._warned.add(reason)
                logger.warning("sandbox layer unavailable, continuing without it: %s", reason)
        for layer, mechanisms in worker.layers.items():
            if not mechanisms and layer not in self._warned:
                self._warned.add(layer)
                logger.warning("no kernel mechanism keeps sandboxed code from %s here", _WHAT.get(layer, layer))


_WHAT: Final = {
    "network": "the network",
    "filesystem writes": "writing files",
    "filesystem reads": "reading files",
    "new processes": "starting processes",
    "other processes": "signalling or inspecting other processes",
}
