"""The fork server: a warm process that forks one fresh sandbox worker per request.

Started by the host as `python -I -B` with an empty environment and its control socket (a UNIX stream
socket) on fd 0. It imports everything a worker needs once, builds nothing from any run, and then only
obeys the host (frames in `protocol.py`):

- `fork {token, limits}` with a socketpair end passed by SCM_RIGHTS: fork; the child keeps that end as its
  channel, closes everything else, joins its own process group, asks to be SIGKILLed if the fork server
  dies, and becomes a worker (`worker.serve`): confined before it reads any agent code (in the empty network
  namespace the fork server entered at start, shared by its workers);
- `kill {pid}`: SIGKILL that worker's process group, if it is still a child here;
- it reports `forked {token, pid}` and, once it has reaped a worker, `exited {pid, status}`.

It never runs agent code, so every worker starts from the same clean state. It is the only reaper of its
workers, so a pid it is asked to kill cannot have been reused. When the host closes the control socket, it
kills every worker and exits. It is a child subreaper, so even an escaped grandchild ends up reaped here.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import gc
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, NoReturn

from portal_mcp.sandbox import confine, facades, policy, protocol, worker

__all__ = ["main"]

_MAX_CONTROL_FRAME: Final = 65_536
_PR_SET_PDEATHSIG: Final = 1
_PR_SET_CHILD_SUBREAPER: Final = 36


def _preload() -> None:
    """Import and warm up what a worker may touch, so workers never read a file (Landlock forbids it)."""
    facades.preload()
    for encoding in _ENCODINGS:
        with contextlib.suppress(LookupError):
            codecs.lookup(encoding)
    policy.compile_agent_code("import json\nx = [i async for i in y]\nawait f(x)\nx")
    policy.compile_agent_code(_WARM_OPEN)
    policy.make_globals(printer=policy.Printer(100, lambda text, skipped: None), names={}, extra_builtins={})
    confine.prepare_seccomp()
    with contextlib.suppress(confine.LayerUnavailable):
        confine.landlock_abi()
    time.localtime()  # libc reads /etc/localtime once, here
    # Everything alive now is shared, read-only, by every worker: keep the collector off those pages.
    gc.collect()
    gc.freeze()


_WARM_OPEN: Final = """
from dataclasses import dataclass
@dataclass
class P:
    x: int = 0
    def __repr__(self):
        return type(self).__name__
match P():
    case P(x=0):
        pass
"""
_ENCODINGS: Final = (
    "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be", "utf-7", "latin-1", "ascii", "cp1252",
    "cp437", "idna", "punycode", "unicode-escape", "raw-unicode-escape", "base64", "hex", "rot13",
)  # fmt: skip


def _shared_network() -> Callable[[], tuple[str, ...]]:
    """Move the fork server into an empty network namespace that all its workers inherit; how it went."""
    try:
        layers = confine.isolate_network()
    except confine.LayerUnavailable as exc:
        reason = str(exc)

        def unavailable() -> tuple[str, ...]:
            raise confine.LayerUnavailable(reason)

        return unavailable
    return lambda: layers


class _ForkServer:
    def __init__(self, control: socket.socket, netns: Callable[[], tuple[str, ...]]) -> None:
        self.control = control
        self.netns = netns
        self.children: set[int] = set()
        self.decoder = protocol.FrameDecoder(_MAX_CONTROL_FRAME)
        self.fds: collections.deque[int] = collections.deque()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)

    def send(self, frame: Mapping[str, Any]) -> None:
        try:
            self.control.sendall(protocol.encode_frame(frame))
        except OSError:
            self.shutdown()

    def serve(self) -> NoReturn:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self.send(protocol.ready_frame())
        poller = select.poll()
        poller.register(self.control, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                if fd == self.wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 4096)
                    self.reap()
                else:
                    self.receive()

    def receive(self) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(self.control, _MAX_CONTROL_FRAME, 8)
        except InterruptedError:
            return
        except OSError:
            self.shutdown()
        if not data:
            self.shutdown()
        self.fds.extend(fds)
        try:
            frames = self.decoder.feed(data)
        except protocol.ProtocolViolation:
            self.shutdown()
        for frame in frames:
            kind = frame["type"]
            if kind == "fork" and type(frame.get("token")) is int and self.fds:
                try:
                    limits = protocol.WorkerLimits.from_json(frame.get("limits"))
                except protocol.ProtocolViolation:
                    self.shutdown()
                self.fork(frame["token"], limits, self.fds.popleft())
            elif kind == "kill" and type(frame.get("pid")) is int:
                self.kill(frame["pid"])
            else:
                self.shutdown()

    def fork(self, token: int, limits: protocol.WorkerLimits, channel_fd: int) -> None:
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            os.close(channel_fd)
            self.send(protocol.forked_frame(token, 0))
            return
        if pid == 0:
            self.become_worker(channel_fd, limits, parent)
        os.close(channel_fd)
        self.children.add(pid)
        self.send(protocol.forked_frame(token, pid))

    def become_worker(self, channel_fd: int, limits: protocol.WorkerLimits, parent: int) -> NoReturn:
        try:
            os.setpgid(0, 0)
            if sys.platform == "linux":
                confine.c_library().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:
                os._exit(protocol.EXIT_HOST_GONE)  # the fork server died before the line above
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.close(self.control.detach())
            for fd in self.fds:
                os.close(fd)
            os.close(self.wake_r)
            os.close(self.wake_w)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 2)
            os.close(null)
            os.closerange(3, channel_fd)
            os.closerange(channel_fd + 1, 1 << 20)
            worker.serve(channel_fd, limits, netns=self.netns)
        except BaseException:
            os._exit(protocol.EXIT_INTERNAL)

    def kill(self, pid: int) -> None:
        if pid in self.children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.children:
                self.children.discard(pid)
                self.send(protocol.exited_frame(pid, os.waitstatus_to_exitcode(status)))

    def shutdown(self) -> NoReturn:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        os._exit(0)


def main() -> NoReturn:
    """Entry point: take the control socket from fd 0, warm up, serve until the host hangs up."""
    control = socket.socket(fileno=os.dup(0))
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    # fd 2 stays the host's pipe until a worker is forked: the host logs what the fork server says there.
    if sys.platform == "linux":
        with contextlib.suppress(confine.LayerUnavailable):
            confine.c_library().prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    netns = _shared_network()
    _preload()
    _ForkServer(control, netns).serve()


if __name__ == "__main__":
    main()
