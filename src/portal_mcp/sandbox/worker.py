"""The sandbox worker: a short-lived process that runs one piece of agent code and exits.

Two ways in, one path after: `serve(channel_fd, limits)`. Usually the fork server (`zygote.py`) forks the
worker with everything already imported and hands it a fresh socketpair end; `main()` is the slower spawned
form (`python -I -B` with an empty environment, the channel on fds 0/1, the limits as JSON in argv[1]). Either
way fds 0-2 point at /dev/null, so nothing the code does can write into the channel, and before any agent
code is read the worker creates its event loop, lowers its rlimits and confines itself (`confine.py`), then
says `ready` with the layers in force. It exits with `os._exit` right after the `done` frame. Imports only
`protocol`, `policy` and `confine` from the portal.

Exit codes the host interprets when no `done` frame arrived: `protocol.EXIT_*`.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import select
import sys
import warnings
from collections.abc import Callable, Generator, Mapping
from typing import Any, Final, NoReturn

from portal_mcp.sandbox import confine, policy, protocol
from portal_mcp.sandbox.protocol import EXIT_HOST_GONE, EXIT_INTERNAL, EXIT_OUT_OF_MEMORY

_START_FRAME_LIMIT: Final = 16 * 2**20
_MAX_ERROR_CHARS: Final = 4_000  # the host allows more; its frame cap must hold the done frame
_FRAME_SLACK: Final = 64 * 1024
# Released when MemoryError strikes, so there is room left to report it.
_reserve: bytearray | None = bytearray(2**20)


class ToolError(Exception):
    """Raised in agent code when a tool call is refused or fails; `tool` names it, `message` says why."""

    def __init__(self, tool: str, message: str) -> None:
        super().__init__(message)
        self.tool = tool
        self.message = message


ToolError.__module__ = "builtins"  # agent code sees it as a builtin: `<class 'ToolError'>`


class ToolPermissionError(ToolError, PermissionError):
    """Raised in agent code when the portal's policy refuses a call (denied, or not approved by the user)."""


# Agent code sees a PermissionError (that is also a ToolError): `PermissionError: github.delete_repo: not allowed: ...`
ToolPermissionError.__module__ = "builtins"
ToolPermissionError.__name__ = ToolPermissionError.__qualname__ = "PermissionError"


class Channel:
    """The worker's end of the frame channel (one socket): blocking writes, reads driven by the event loop.

    The first frame read is `start`; every later one a `result`.
    """

    def __init__(self, read_fd: int, write_fd: int, max_result_bytes: int) -> None:
        self.max_args_bytes = max_result_bytes
        self.flush_output: Any = lambda: None
        self.unawaited: dict[int, PendingCall] = {}
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._max_result_frame = max_result_bytes + _FRAME_SLACK
        self._decoder = protocol.FrameDecoder(_START_FRAME_LIMIT, allow_nan=True)
        self._start: asyncio.Future[dict[str, Any]] | None = None
        self._waiting: dict[int, tuple[str, asyncio.Future[Any]]] = {}
        self._next_id = 0

    def send(self, frame: Mapping[str, Any]) -> None:
        """Write one frame (blocking: the host always drains the channel)."""
        self.send_bytes(protocol.encode_frame(frame))

    def send_bytes(self, data: bytes) -> None:
        """Write an encoded frame."""
        _write_all(self._write_fd, data)

    def listen(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start reading frames on `loop` (done while a spare waits, so none of it is on the run's clock)."""
        os.set_blocking(self._read_fd, False)
        self._start = loop.create_future()
        loop.add_reader(self._read_fd, self._on_readable)

    async def start_frame(self) -> dict[str, Any]:
        """Wait for the `start` frame."""
        assert self._start is not None
        return await self._start

    def _on_readable(self) -> None:
        try:
            data = os.read(self._read_fd, 1 << 16)
        except BlockingIOError:
            return
        if not data:
            os._exit(EXIT_HOST_GONE)
        try:
            frames = self._decoder.feed(data)
        except protocol.ProtocolViolation:
            os._exit(EXIT_INTERNAL)
        if frames and self._start is not None and not self._start.done():
            start = frames.pop(0)
            if (
                start["type"] != "start"
                or type(start.get("code")) is not str
                or type(start.get("namespaces")) is not dict
            ):
                os._exit(EXIT_INTERNAL)
            self._decoder.max_frame_bytes = self._max_result_frame
            self._start.set_result(start)
        for frame in frames:
            call_id = frame.get("id")
            entry = self._waiting.pop(call_id, None) if type(call_id) is int and frame["type"] == "result" else None
            if entry is None or entry[1].done():
                continue  # answers to cancelled calls
            tool, future = entry
            if frame.get("ok") is True:
                future.set_result(frame.get("value"))
            else:
                error = ToolPermissionError if frame.get("denied") is True else ToolError
                future.set_exception(error(tool, str(frame.get("error"))))

    async def call(self, tool: str, args_json: str) -> Any:
        """Send a call frame and wait for its result; concurrent calls are matched by id."""
        self._next_id += 1
        call_id = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = (tool, future)
        self.flush_output()
        self.send_bytes(protocol.encode_call_frame(call_id, tool, args_json))
        try:
            return await future
        except asyncio.CancelledError:
            if self._waiting.pop(call_id, None) is not None:
                self.send(protocol.cancel_frame(call_id))
            raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:  # the socket is non-blocking for the loop's reads; wait for the host to drain
                select.select([], [fd], [])
    except OSError:  # the host is gone; nobody is left to report to
        os._exit(EXIT_HOST_GONE)


class PendingCall:
    """What a tool stub returns: awaiting it makes the call; using it as a value says to add `await`."""

    __slots__ = ("_args_json", "_awaited", "_channel", "_line", "_tool")

    def __init__(self, channel: Channel, tool: str, args_json: str, line: int | None) -> None:
        self._channel = channel
        self._tool = tool
        self._args_json = args_json
        self._line = line
        self._awaited = False
        channel.unawaited[id(self)] = self

    def __await__(self) -> Generator[Any, None, Any]:
        if self._awaited:
            raise RuntimeError(f"this `{self._tool}(...)` call was already awaited; call the tool again")
        self._awaited = True
        self._channel.unawaited.pop(id(self), None)
        return self._channel.call(self._tool, self._args_json).__await__()

    def not_awaited_message(self) -> str:
        """The fix, in one sentence, naming the line."""
        where = f" on line {self._line}" if self._line else ""
        return (
            f"`{self._tool}(...)`{where} was not awaited, so the tool was not called; write `await {self._tool}(...)`"
        )

    def _misuse(self, *args: object) -> NoReturn:
        raise TypeError(self.not_awaited_message())

    def __getattr__(self, name: str) -> NoReturn:
        self._misuse()

    __getitem__ = __iter__ = __len__ = __bool__ = __contains__ = __str__ = __format__ = _misuse

    def __repr__(self) -> str:
        return f"<{self._tool}(...) not awaited>"


class Namespace:
    """One server's tools, as attributes (or `ns["_odd_name"]` for names starting with `_`)."""

    __slots__ = ("_server", "_tools")

    def __init__(self, server: str, tools: dict[str, Any]) -> None:
        self._server = server
        self._tools = tools

    def __getattr__(self, name: str) -> Any:
        stub = self._tools.get(name)
        if stub is None:
            close = difflib.get_close_matches(name, self._tools, n=3)
            hint = f"did you mean {', '.join(f'{self._server}.{c}' for c in close)}?" if close else "use search_api"
            raise AttributeError(f"server {self._server!r} has no tool {name!r}; {hint}")
        return stub

    __getitem__ = __getattr__

    def __repr__(self) -> str:
        return f"<tools of server {self._server!r}: {len(self._tools)}>"


def _refuse_json(value: object) -> NoReturn:
    if isinstance(value, PendingCall):
        raise TypeError(value.not_awaited_message())
    raise TypeError(f"a {type(value).__name__} is not a JSON value")


def _make_stub(channel: Channel, qualified: str) -> Any:
    def stub(*args: Any, **kwargs: Any) -> PendingCall:
        if args:
            raise TypeError(f"{qualified}() takes keyword arguments only; write `{qualified}(name=value, ...)`")
        try:
            args_json = json.dumps(
                kwargs, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_refuse_json
            )
        except (TypeError, ValueError, RecursionError) as exc:
            raise TypeError(
                f"arguments of {qualified}() must be JSON values (dict, list, str, int, float, bool, None): {exc}"
            ) from None
        size = len(args_json.encode())
        if size > channel.max_args_bytes:
            raise ValueError(
                f"arguments of {qualified}() are {size} bytes of JSON, over the limit of "
                f"{channel.max_args_bytes}; send less per call"
            )
        return PendingCall(channel, qualified, args_json, policy.agent_line(sys._getframe(1)))

    stub.__name__ = qualified.partition(".")[2]
    stub.__qualname__ = qualified
    return stub


def _cap(text: str, limit: int, what: str) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{what} truncated: {len(text) - limit} more characters]"


async def _run(
    start: dict[str, Any], limits: protocol.WorkerLimits, channel: Channel, printer: policy.Printer
) -> dict[str, Any]:
    global _reserve
    try:
        compiled = policy.compile_agent_code(start["code"])
    except policy.AgentSyntaxError as exc:
        return _done(printer, error=str(exc), kind="syntax")
    namespaces = {
        server: Namespace(server, {name: _make_stub(channel, f"{server}.{name}") for name in names})
        for server, names in start["namespaces"].items()
    }
    agent_globals = policy.make_globals(
        printer=printer, names=namespaces, extra_builtins={"ToolError": ToolError, "PermissionError": PermissionError}
    )
    never_awaited: list[str] = []

    def collect(message: Warning | str, *args: object, **kwargs: object) -> None:
        if "was never awaited" in str(message):
            never_awaited.append(str(message))

    warnings.showwarning = collect
    try:
        outcome = eval(compiled.code, agent_globals)
        if compiled.is_async:
            await outcome
    except MemoryError as exc:
        _reserve = None
        detail = policy.describe_exception(exc, compiled).partition("\n")[2]
        agent_globals.clear()
        message = f"MemoryError: the code ran out of memory (limit {limits.memory_mb} MB)"
        return _done(printer, error=f"{message}\n{detail}".rstrip(), kind="memory")
    except BaseException as exc:  # SystemExit, KeyboardInterrupt and the code's own BaseExceptions included
        return _done(printer, error=policy.describe_exception(exc, compiled), kind="exception")
    has_value, value = policy.final_value(agent_globals)
    pending = list(channel.unawaited.values())
    if pending:
        return _done(
            printer,
            error="NotAwaitedError: " + "\n".join(p.not_awaited_message() for p in pending[:3]),
            kind="not_awaited",
        )
    if never_awaited:
        return _done(
            printer, error=f"NotAwaitedError: {never_awaited[0]}; add `await` before the call", kind="not_awaited"
        )
    if has_value and policy.is_awaitable(value):
        return _done(
            printer,
            error="NotAwaitedError: the last expression is awaitable; write `await` before it",
            kind="not_awaited",
        )
    shown = None
    if has_value and value is not None:
        try:
            shown = _cap(repr(value), limits.max_output_bytes, "value")
        except Exception as exc:
            return _done(printer, error=policy.describe_exception(exc, compiled), kind="exception")
    return _done(printer, value=shown)


def _done(
    printer: policy.Printer,
    *,
    value: str | None = None,
    error: str | None = None,
    kind: protocol.ErrorKind | None = None,
) -> dict[str, Any]:
    if error is not None:
        error = _cap(error, _MAX_ERROR_CHARS, "error")
    return protocol.done_frame(
        ok=error is None, value=value, error=error, error_kind=kind, output_dropped=printer.dropped
    )


def _take_channel() -> int:
    """Spawned form: move the channel off fds 0/1 and point 0-2 at /dev/null."""
    channel_fd = os.dup(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    return channel_fd


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def _warm_up(loop: asyncio.AbstractEventLoop, limits: protocol.WorkerLimits) -> None:
    """Run a fixed snippet through the whole run path once, writing to nowhere.

    A forked worker shares the fork server's memory copy-on-write, and CPython writes to every object it
    touches (reference counts), so the first run through any code path pays hundreds of page faults. Paying
    them here, while the worker waits as a spare, takes them off the agent's clock. The snippet is ours and
    leaves nothing behind that the agent's run could see: it gets its own globals, printer and channel.
    """
    channel = Channel(-1, -1, limits.max_result_bytes)
    printer = policy.Printer(limits.max_output_bytes, _ignore)
    done = loop.run_until_complete(_run({"code": _WARM_UP_CODE, "namespaces": {}}, limits, channel, printer))
    printer.flush()
    protocol.encode_frame(protocol.output_frame("1"))
    protocol.encode_frame(done)


_WARM_UP_CODE: Final = """
import json
async def f(x):
    return [x]
print(await f(json.dumps({'a': 1})))
1
"""


def _ignore(text: str) -> None:
    pass


def serve(
    channel_fd: int, limits: protocol.WorkerLimits, *, netns: Callable[[], tuple[str, ...]] | None = None
) -> NoReturn:
    """Confine this process, handshake, run the code of the `start` frame, report, exit. Never returns.

    `netns` is how the fork server reports the network namespace it made for its workers (`confine.confine`).
    """
    sys.stdin = None
    sys.stdout = sys.stderr = _Discard()
    try:
        # Before confinement: the event loop opens a socketpair, which seccomp forbids afterwards.
        loop = asyncio.new_event_loop()
        confinement = confine.confine(limits.memory_mb, limits.cpu_seconds, netns=netns)
        _warm_up(loop, limits)
        channel = Channel(channel_fd, channel_fd, limits.max_result_bytes)
        printer = policy.Printer(limits.max_output_bytes, lambda text: channel.send(protocol.output_frame(text)))
        channel.flush_output = printer.flush
        channel.listen(loop)
        ready = protocol.ready_frame(confinement.layers, confinement.unavailable)
        _write_all(channel_fd, protocol.encode_frame(ready))

        async def session() -> dict[str, Any]:
            return await _run(await channel.start_frame(), limits, channel, printer)

        done = loop.run_until_complete(session())
        printer.flush()
        channel.send(done)
    except MemoryError:
        os._exit(EXIT_OUT_OF_MEMORY)
    except BaseException as exc:
        try:
            error = f"internal sandbox error ({type(exc).__name__}); the run was stopped"
            frame = protocol.done_frame(ok=False, value=None, error=error, error_kind="internal", output_dropped=0)
            _write_all(channel_fd, protocol.encode_frame(frame))
        finally:
            os._exit(EXIT_INTERNAL)
    # Skip interpreter teardown: nothing of the run may execute after its report, and exiting is faster.
    os._exit(0)


def main() -> NoReturn:
    """Spawned entry point: `python -I -B -c '...main()' '<limits as JSON>'`."""
    channel_fd = _take_channel()
    try:
        limits = protocol.WorkerLimits.from_json(json.loads(sys.argv[1]))
    except (IndexError, ValueError, protocol.ProtocolViolation):
        os._exit(EXIT_INTERNAL)
    serve(channel_fd, limits)


if __name__ == "__main__":
    main()
