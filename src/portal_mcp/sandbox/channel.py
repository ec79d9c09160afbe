"""The host's end of a worker (or fork server) socket: bytes in and out, frames out of the bytes.

Tool calls from the sandbox cross this socket twice each, so it is on the hot path, and on machines where a
system call is expensive (a VM, a nested VM) the number of system calls per call is what counts. The socket stays
registered with the asyncio loop for its whole life (no `epoll_ctl` per wait) and is read only after the loop said
it is readable (no `recv` that ends in EAGAIN). The sandbox host runs on asyncio only (docs/sandbox.md says why).
Not anyio's `UNIXSocketStream`: on asyncio its close can race a cancelled receive (anyio#1267).
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import socket
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

from portal_mcp.sandbox import protocol

__all__ = ["Channel", "FrameReader"]

T = TypeVar("T")


class Channel:
    """One end of a connected UNIX stream socket, non-blocking; create it inside the asyncio loop that uses it."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._closed = False
        # Frames from concurrent tasks must not interleave; uncontended, taking it does not yield.
        self._send_lock = anyio.Lock(fast_acquire=True)
        self._loop = asyncio.get_running_loop()
        self._registered = False
        self._readable = True  # until a read finds the socket drained
        self._waiter: asyncio.Future[None] | None = None
        self._sink: Callable[[bytes], None] | None = None

    def set_sink(self, sink: Callable[[bytes], None] | None) -> None:
        """Hand every read to `sink` from the loop's I/O callback (b"" at end of stream).

        No task wakes up per read: on the tool-call path that is one loop round trip less per frame.
        """
        self._sink = sink
        if sink is not None and not self._registered and not self._closed:
            self._loop.add_reader(self.sock.fileno(), self._on_readable)
            self._registered = True

    async def receive(self, max_bytes: int = 1 << 16) -> bytes:
        """Bytes as they arrive; EndOfStream when the peer hung up, BrokenResourceError when it failed."""
        waited = False
        while True:
            if not self._readable:
                await self._wait_readable()
                waited = True
            try:
                data = self.sock.recv(max_bytes)
            except BlockingIOError:
                self._readable = False
                continue
            except OSError as exc:
                raise (anyio.ClosedResourceError() if self._closed else anyio.BrokenResourceError()) from exc
            # A short read drained the socket; the loop says when there is more (level-triggered).
            self._readable = len(data) == max_bytes
            if not waited:
                # Data was already there: yield anyway, so a peer flooding the socket cannot keep the portal's
                # event loop to itself (and a deadline can fire).
                await anyio.lowlevel.checkpoint()
            if not data:
                raise anyio.EndOfStream
            return data

    async def _wait_readable(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if not self._registered:
            self._loop.add_reader(self.sock.fileno(), self._on_readable)
            self._registered = True
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self._closed:
            raise anyio.ClosedResourceError

    def _on_readable(self) -> None:
        self._readable = True
        if self._sink is not None:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            self._readable = False
            if not data and self._registered:
                self._loop.remove_reader(self.sock.fileno())  # level-triggered: EOF would fire forever
                self._registered = False
            self._sink(data)
        elif self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def send(self, data: bytes, fds: tuple[int, ...] = ()) -> None:
        """Write all of `data`; `fds` travel (SCM_RIGHTS) with its first byte."""
        view = memoryview(data)
        ancillary: list[tuple[int, int, Any]] = (
            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        )
        if not ancillary and not self._send_lock.locked():
            # The usual case, a frame that fits the socket buffer while nobody is mid-frame: one system call,
            # no lock. What does not fit is finished under the lock, taken before anything else can run.
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                pass
            except OSError as exc:
                raise (anyio.ClosedResourceError() if self._closed else anyio.BrokenResourceError()) from exc
            if not view:
                return
        async with self._send_lock:
            while view:
                try:
                    sent = self.sock.sendmsg([view], ancillary) if ancillary else self.sock.send(view)
                except BlockingIOError:
                    await anyio.wait_writable(self.sock)
                    continue
                except OSError as exc:
                    raise (anyio.ClosedResourceError() if self._closed else anyio.BrokenResourceError()) from exc
                ancillary = []
                view = view[sent:]

    def send_eof(self) -> None:
        """Shut down our sending direction: the peer reads end of stream."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Close the socket; a pending receive raises ClosedResourceError."""
        if self._closed:
            return
        self._closed = True
        if self._registered:
            self._loop.remove_reader(self.sock.fileno())
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        anyio.notify_closing(self.sock)
        self.sock.close()


class FrameReader:
    """Frames from one channel, size-capped; a malformed one raises ProtocolViolation (from the decoder)."""

    def __init__(self, stream: Channel, max_frame_bytes: int) -> None:
        self._stream = stream
        self.decoder = protocol.FrameDecoder(max_frame_bytes)
        self._ready: collections.deque[dict[str, Any]] = collections.deque()

    async def next(self) -> dict[str, Any] | None:
        """The next frame, or None at end of stream."""
        while not self._ready:
            try:
                data = await self._stream.receive(1 << 16)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return None
            self._ready.extend(self.decoder.feed(data))
        return self._ready.popleft()

    async def dispatch(self, handle: Callable[[dict[str, Any]], T | None]) -> T | None:
        """Give each frame to `handle` until it returns a value (returned here) or the stream ends (None).

        `handle` runs synchronously, in the loop's I/O callback, and may raise ProtocolViolation.
        """
        while self._ready:
            if (result := handle(self._ready.popleft())) is not None:
                return result
        finished: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()

        def on_data(data: bytes) -> None:
            if finished.done():
                return
            if not data:
                finished.set_result(None)
                return
            try:
                for frame in self.decoder.feed(data):
                    if (result := handle(frame)) is not None:
                        finished.set_result(result)
                        return
            except Exception as exc:  # ProtocolViolation, or a bug: either way the waiting task gets it
                finished.set_exception(exc)

        self._stream.set_sink(on_data)
        try:
            return await finished
        finally:
            self._stream.set_sink(None)
