"""`backend: fork` (the default): a warm fork server and a few confined spare workers.

`ForkServer` runs `zygote.py` over a control socket and keeps `spare_workers` forked, confined, warmed-up
workers waiting, so a run starts with one frame instead of an interpreter start. Spares are replaced after a
run's reply has gone out (housekeeping), and the fork server is restarted if it dies. The host never waits on
a fork server worker with `waitpid` (it is not our child): the fork server reaps it and reports its status.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import socket
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import anyio
from anyio.abc import Process, TaskGroup

from portal_mcp.errors import ProtocolViolation, WorkerStartError
from portal_mcp.sandbox import protocol
from portal_mcp.sandbox.channel import Channel, FrameReader
from portal_mcp.sandbox.launcher import (
    EXIT_TIMEOUT,
    READY_TIMEOUT,
    STDERR_KEPT,
    LayerLog,
    Worker,
    open_with_channel,
    stderr_of,
)

__all__ = ["ZYGOTE_COMMAND", "ForkServer"]

logger = logging.getLogger("portal_mcp.sandbox")

_ZYGOTE_BOOTSTRAP: Final = "import sys; sys.modules['ssl'] = None\nfrom portal_mcp.sandbox.zygote import main\nmain()"
ZYGOTE_COMMAND: tuple[str, ...] = (sys.executable, "-I", "-B", "-c", _ZYGOTE_BOOTSTRAP)

_MAX_CONTROL_FRAME: Final = 4_096
_SETTLE: Final = 0.003  # after a run, how long housekeeping waits so the run's reply goes out first


class _Exit:
    """The exit status of one fork server worker, once reaped."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.status: int | None = None
        self.released = False


class _Zygote:
    """One running fork server: its process, control socket, and what it still owes us."""

    def __init__(self, process: Process, control: Channel) -> None:
        self.process = process
        self.control = control
        self.reader = FrameReader(control, _MAX_CONTROL_FRAME)
        self.alive = True
        self.forks: dict[int, tuple[anyio.Event, list[int]]] = {}
        self.exits: dict[int, _Exit] = {}

    @property
    def running(self) -> bool:
        """Alive: its channel is open and the kernel still runs it. Death shows in /proc before the channel's end
        of file arrives (spares hold a copy of the channel until their death signal lands) and before asyncio
        reports the exit status."""
        return self.alive and self.process.returncode is None and _process_running(self.process.pid)

    async def send(self, frame: Mapping[str, Any], fds: tuple[socket.socket, ...] = ()) -> None:
        await self.control.send(protocol.encode_frame(frame), tuple(sock.fileno() for sock in fds))

    def gone(self) -> None:
        """The fork server is dead: its workers died with it (PR_SET_PDEATHSIG), so nobody waits in vain."""
        self.alive = False
        for event, pid_box in self.forks.values():
            pid_box.append(0)
            event.set()
        for watch in self.exits.values():
            watch.event.set()


def _process_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return not Path("/proc/self").exists()  # no /proc (macOS): the channel's end and the exit status tell
    return stat.rpartition(b")")[2].split()[:1] != [b"Z"]


class _ForkedWorker(Worker):
    def __init__(self, zygote: _Zygote, pid: int, stream: Channel, watch: _Exit) -> None:
        super().__init__(pid, stream)
        self.zygote = zygote
        self.watch = watch
        self.on_release: Callable[[_ForkedWorker], None] | None = None

    @property
    def dead(self) -> bool:
        return self.watch.event.is_set()

    async def kill(self) -> None:
        """SIGKILL its process group, unless it is already reaped (the fork server ignores reaped pids)."""
        if not self.dead and self.zygote.alive:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self.zygote.send(protocol.kill_frame(self.pid))

    async def wait(self) -> int | None:
        with anyio.move_on_after(EXIT_TIMEOUT):
            await self.watch.event.wait()
        return self.watch.status

    async def aclose(self, *, finished: bool = False) -> None:
        # Not waited for: the fork server kills the group and reaps it; the host only needs the status when
        # the worker died on its own, and then `wait` has it. A worker that finished exits by itself; the
        # fork server's housekeeping kills it anyway if it is still there a moment later, after the reply.
        self.watch.released = True
        if self.watch.event.is_set():
            self.zygote.exits.pop(self.pid, None)
        elif not (finished and self.on_release is not None):
            await self.kill()
        self.stream.close()
        if self.on_release is not None:
            self.on_release(self)


class ForkServer:
    """`backend: fork`: the warm fork server and a few confined spare workers, owned by a task group."""

    def __init__(self, limits: protocol.WorkerLimits, identity: Mapping[str, Any], spares: int) -> None:
        self.limits = limits
        self.identity = dict(identity)
        self.spares_wanted = spares
        self.seen = LayerLog()
        self._zygote: _Zygote | None = None
        self._tg: TaskGroup | None = None
        self._spares: collections.deque[_ForkedWorker] = collections.deque()
        self._filling = 0
        self._spare_added = anyio.Event()
        self._tokens = itertools.count(1)
        self._starting = anyio.Lock()
        self._closing = False
        self._fill_scopes: set[anyio.CancelScope] = set()
        self._released: list[_ForkedWorker] = []
        self._wake = anyio.Event()

    @asynccontextmanager
    async def open(self) -> AsyncIterator[ForkServer]:
        """Start the fork server and a first worker (so configuration problems surface now), then keep spares
        ready in this context's task group, which owns every background task (housekeeping, the control socket's
        reader, spares being prepared)."""
        failure: Exception | None = None
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                self._spares.append(await self._fork(await self._running()))
                self._top_up()
                tg.start_soon(self._housekeep)
                yield self
            except Exception as exc:  # raised as itself below, not wrapped in the task group's ExceptionGroup
                failure = exc
            finally:
                await self._close()
                tg.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def _close(self) -> None:
        self._closing = True
        for scope in self._fill_scopes:
            scope.cancel()
        with anyio.CancelScope(shield=True):
            spares, self._spares = list(self._spares), collections.deque()
            for worker in spares:
                await worker.aclose()
            for worker in self._released:
                await worker.kill()
            if self._zygote is not None:
                await _stop_zygote(self._zygote)

    async def acquire(self) -> Worker:
        """A confined worker that has said ready: a spare when there is one, else a fresh fork."""
        while True:
            while self._spares:
                worker = self._spares.popleft()
                if worker.dead or not worker.zygote.running:
                    await worker.aclose()
                    continue
                # Replaced after it is released, not now: preparing a spare costs a few ms of CPU that would
                # otherwise compete with this run.
                worker.on_release = self._release
                return worker
            if self._filling:
                if self._spare_added.is_set():
                    self._spare_added = anyio.Event()
                await self._spare_added.wait()
                continue
            worker = await self._fork(await self._running())
            worker.on_release = self._release
            return worker

    def _release(self, worker: _ForkedWorker) -> None:
        self._released.append(worker)
        self._wake.set()

    async def _housekeep(self) -> None:
        """After runs: make sure their workers are gone, then prepare spares, once the replies have left."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await anyio.sleep(_SETTLE)
            released, self._released = self._released, []
            for worker in released:
                await worker.kill()
            self._top_up()

    def _top_up(self) -> None:
        assert self._tg is not None
        if self._closing:
            return
        for _ in range(self.spares_wanted - len(self._spares) - self._filling):
            self._filling += 1
            self._tg.start_soon(self._add_spare)

    async def _add_spare(self) -> None:
        try:
            with anyio.CancelScope() as scope:
                self._fill_scopes.add(scope)
                worker = await self._fork(await self._running())
                if self._closing:
                    with anyio.CancelScope(shield=True):
                        await worker.aclose()
                else:
                    self._spares.append(worker)
        except (WorkerStartError, ProtocolViolation) as exc:
            if not self._closing:
                logger.warning("could not prepare a spare sandbox worker: %s", exc)
        finally:
            self._fill_scopes.discard(scope)
            self._filling -= 1
            self._spare_added.set()

    async def _running(self) -> _Zygote:
        async with self._starting:
            if self._zygote is not None and self._zygote.running:
                return self._zygote
            if self._closing:
                raise WorkerStartError("the sandbox host is closing")
            if self._zygote is not None:
                logger.warning("the sandbox fork server died (%s); starting a new one", self._zygote.process.returncode)
                with anyio.CancelScope(shield=True):
                    await _stop_zygote(self._zygote)
            self._zygote = await self._start_zygote()
            return self._zygote

    async def _start_zygote(self) -> _Zygote:
        process, ours = await open_with_channel(
            ZYGOTE_COMMAND, self.identity, "sandbox fork server", stdout_on_channel=False
        )
        zygote = _Zygote(process, Channel(ours))
        try:
            ready = None
            with anyio.move_on_after(READY_TIMEOUT):
                ready = await zygote.reader.next()
            if ready is None:
                detail = await stderr_of(process)
                raise WorkerStartError(f"the sandbox fork server failed to start: {detail}")
            if ready != protocol.ready_frame():
                raise WorkerStartError(f"the sandbox fork server sent {ready.get('type')!r} instead of ready")
        except ProtocolViolation as exc:
            with anyio.CancelScope(shield=True):
                await _stop_zygote(zygote)
            raise WorkerStartError(f"the sandbox fork server broke the protocol: {exc}") from None
        except BaseException:
            with anyio.CancelScope(shield=True):
                await _stop_zygote(zygote)
            raise
        assert self._tg is not None
        self._tg.start_soon(self._listen, zygote)
        self._tg.start_soon(self._drain_stderr, zygote)
        return zygote

    async def _listen(self, zygote: _Zygote) -> None:
        broken = False
        try:
            while (frame := await zygote.reader.next()) is not None:
                if not _dispatch(zygote, frame):
                    logger.error("the sandbox fork server sent a malformed %r frame; restarting it", frame["type"])
                    broken = True
                    break
        except ProtocolViolation as exc:
            logger.error("the sandbox fork server broke the protocol (%s); restarting it", exc)
            broken = True
        finally:
            zygote.gone()
            # Only a fork server that is still talking is killed here. One that hung up is exiting: killing it
            # now would reap it behind asyncio's child watcher ("Unknown child process").
            if broken:
                with contextlib.suppress(ProcessLookupError):
                    zygote.process.kill()

    async def _drain_stderr(self, zygote: _Zygote) -> None:
        assert zygote.process.stderr is not None
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            async for chunk in zygote.process.stderr:
                logger.warning("sandbox fork server: %s", chunk.decode(errors="replace").rstrip()[-STDERR_KEPT:])

    async def _fork(self, zygote: _Zygote) -> _ForkedWorker:
        token = next(self._tokens)
        answered, pid_box = anyio.Event(), list[int]()
        zygote.forks[token] = (answered, pid_box)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                await zygote.send(protocol.fork_frame(token, self.limits), (theirs,))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                zygote.gone()
            finally:
                theirs.close()
            with anyio.move_on_after(READY_TIMEOUT):
                await answered.wait()
        except BaseException:
            ours.close()
            raise
        finally:
            zygote.forks.pop(token, None)
        pid = pid_box[0] if pid_box else 0
        if pid <= 0:
            ours.close()
            raise WorkerStartError("the sandbox fork server could not fork a worker (see the portal log)")
        watch = zygote.exits.setdefault(pid, _Exit())
        worker = _ForkedWorker(zygote, pid, Channel(ours), watch)
        try:
            if not await worker.handshake():
                status = await worker.wait()
                raise WorkerStartError(f"a sandbox worker exited during startup (status {status})")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await worker.aclose()
            raise
        self.seen.note(worker)
        return worker


def _dispatch(zygote: _Zygote, frame: dict[str, Any]) -> bool:
    """Apply one control frame from the fork server; False when it is malformed."""
    kind = frame["type"]
    if kind == "forked" and frame.keys() == {"type", "token", "pid"}:
        token, pid = frame["token"], frame["pid"]
        if type(token) is not int or type(pid) is not int or pid < 0:
            return False
        waiting = zygote.forks.get(token)
        if waiting is not None:
            if pid:
                zygote.exits[pid] = _Exit()
            waiting[1].append(pid)
            waiting[0].set()
        return True
    if kind == "exited" and frame.keys() == {"type", "pid", "status"}:
        pid, status = frame["pid"], frame["status"]
        if type(pid) is not int or type(status) is not int:
            return False
        watch = zygote.exits.get(pid)
        if watch is not None:
            watch.status = status
            watch.event.set()
            if watch.released:
                del zygote.exits[pid]
        return True
    return False


async def _stop_zygote(zygote: _Zygote) -> None:
    # Hanging up makes the fork server SIGKILL every worker and exit; a stuck one is killed after a moment.
    # Closing the socket last wakes `_listen` if it still waits (a Channel closes safely under a receive).
    zygote.alive = False
    zygote.control.send_eof()
    with anyio.move_on_after(EXIT_TIMEOUT):
        await zygote.process.wait()
    if zygote.process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            zygote.process.kill()
        await zygote.process.wait()
    await zygote.process.aclose()
    zygote.control.close()
