"""The portal's half of the sandbox: one fresh worker process per run, its tool calls served, its limits kept.

Everything the worker sends is hostile input: frames are size-capped, JSON only, and checked on exact types
before a tool is called; a call beyond `max_tool_calls` or a result beyond `max_result_bytes` becomes an
error the code sees. The wall clock is kept here, not in the worker (in-process alarms can be defeated): at
the deadline the worker's process group is SIGKILLed and reaped inside a shielded scope. A worker that dies
(memory, CPU limit, crash) gives a RunResult saying so, and the host serves the next run as usual.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import pwd
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal

import anyio
from anyio.abc import ByteReceiveStream, Process, TaskGroup

from portal_mcp.config import SandboxConfig
from portal_mcp.errors import PortalError, SandboxError, UnknownToolError
from portal_mcp.sandbox import protocol

__all__ = ["WORKER_COMMAND", "RunErrorKind", "RunResult", "SandboxHost", "ToolCaller"]

logger = logging.getLogger(__name__)

ToolCaller = Callable[[str, dict[str, Any]], Awaitable[Any]]
"""(qualified "server.python_name", kwargs) -> JSON value; PortalError messages reach the code as ToolError."""

RunErrorKind = Literal[
    "exception", "syntax", "memory", "not_awaited", "internal", "timeout", "cpu", "crash", "protocol", "too_long",
    "precheck",
]  # fmt: skip

# `ssl` is blocked before asyncio loads it: the worker never needs it, and it is the costliest import (~8 ms).
_BOOTSTRAP: Final = "import sys; sys.modules['ssl'] = None\nfrom portal_mcp.sandbox.worker import main\nmain()"
WORKER_COMMAND: tuple[str, ...] = (sys.executable, "-I", "-B", "-c", _BOOTSTRAP)
MAX_CODE_CHARS: Final = 1_000_000
_MAX_ERROR_CHARS: Final = 8_000
_STDERR_KEPT: Final = 4_096


@dataclass(frozen=True)
class RunResult:
    """What one `execute_code` run produced. `error` is None exactly when `ok`."""

    ok: bool
    output: str
    value: str | None
    error: str | None
    tool_calls: int
    duration_ms: float
    error_kind: RunErrorKind | None = None

    def render(self) -> str:
        """The text `execute_code` returns to the model: output, then the final value, then the error."""
        parts = [self.output.rstrip("\n")] if self.output else []
        if self.value is not None:
            parts.append(f"Value: {self.value}")
        if self.error is not None:
            parts.append(f"Error: {self.error}")
        return "\n".join(parts) if parts else "(no output)"


@dataclass(frozen=True)
class _Outcome:
    error: str | None = None
    kind: RunErrorKind | None = None
    value: str | None = None
    dropped: int = 0
    startup_failed: bool = False


class _Violation(Exception):
    """The worker broke the protocol; the run is stopped."""


class SandboxHost:
    """Runs agent code in restricted worker processes under `limits`.

    `run_as` (a user name or uid) starts workers as another user; useful when the portal runs as root, which
    ignores RLIMIT_NPROC and could read other processes' memory and environment.
    """

    def __init__(self, limits: SandboxConfig, *, run_as: str | int | None = None) -> None:
        self.limits = limits
        self.identity: dict[str, Any] = {}
        if run_as is not None:
            account = pwd.getpwnam(run_as) if isinstance(run_as, str) else pwd.getpwuid(run_as)
            self.identity = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        self._closed = False

    async def __aenter__(self) -> SandboxHost:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Each run owns and reaps its worker, so there is nothing left to stop here.
        self._closed = True

    async def run(self, code: str, namespaces: Mapping[str, Sequence[str]], call_tool: ToolCaller) -> RunResult:
        """Run `code` in a fresh worker; `namespaces` maps each server to its tools' python names."""
        if self._closed:
            raise SandboxError("the sandbox host is closed; open a new SandboxHost")
        started = time.perf_counter()
        tools = _namespaces(namespaces)
        if len(code) > MAX_CODE_CHARS:
            too_long = f"ValueError: the code is {len(code)} characters long, over the limit of {MAX_CODE_CHARS}"
            outcome = _Outcome(f"{too_long}; split the work across runs", "too_long")
            return _result(outcome, "", 0, started)
        session = _Session(self, frozenset(tools), call_tool)
        outcome = await session.execute(code, {server: list(names) for server, names in namespaces.items()})
        if outcome.startup_failed:
            raise SandboxError(outcome.error or "the sandbox worker could not start")
        return _result(outcome, session.output.render(outcome.dropped), session.tool_calls, started)


def _namespaces(namespaces: Mapping[str, Sequence[str]]) -> set[str]:
    tools: set[str] = set()
    for server, names in namespaces.items():
        if type(server) is not str or not server.isidentifier():
            raise ValueError(f"server name {server!r} is not a Python identifier")
        for name in names:
            if type(name) is not str or not name.isidentifier():
                raise ValueError(f"tool name {name!r} of server {server!r} is not a Python identifier")
            tools.add(f"{server}.{name}")
    return tools


def _result(outcome: _Outcome, output: str, tool_calls: int, started: float) -> RunResult:
    return RunResult(
        ok=outcome.error is None,
        output=output,
        value=outcome.value,
        error=outcome.error,
        tool_calls=tool_calls,
        duration_ms=(time.perf_counter() - started) * 1000,
        error_kind=outcome.kind,
    )


class _Output:
    """Printed text as streamed by the worker, re-capped here because the worker is not trusted."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._parts: list[str] = []
        self._kept = 0
        self._dropped = 0

    def append(self, text: str) -> None:
        data = text.encode(errors="replace")
        room = self.limit - self._kept
        if len(data) > room:
            self._dropped += len(data) - max(room, 0)
            data = data[: max(room, 0)]
        self._kept += len(data)
        self._parts.append(data.decode(errors="ignore"))

    def render(self, dropped_in_worker: int) -> str:
        text = "".join(self._parts)
        dropped = self._dropped + dropped_in_worker
        if dropped:
            note = f"[output truncated: {dropped} more bytes were printed; the limit is {self.limit} bytes]"
            text = f"{text}\n{note}" if text and not text.endswith("\n") else f"{text}{note}"
        return text


class _FrameReader:
    def __init__(self, stream: ByteReceiveStream, max_frame_bytes: int) -> None:
        self._stream = stream
        self._decoder = protocol.FrameDecoder(max_frame_bytes)
        self._ready: list[dict[str, Any]] = []

    async def next(self) -> dict[str, Any] | None:
        """The next frame, or None at end of stream."""
        while not self._ready:
            try:
                data = await self._stream.receive(1 << 16)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return None
            try:
                self._ready = self._decoder.feed(data)
            except protocol.ProtocolError as exc:
                raise _Violation(str(exc)) from None
        return self._ready.pop(0)


class _Session:
    """One run: spawn, handshake, serve calls until `done` or death, always kill and reap."""

    def __init__(self, host: SandboxHost, tools: frozenset[str], call_tool: ToolCaller) -> None:
        self.limits = host.limits
        self.identity = host.identity
        self.tools = tools
        self.call_tool = call_tool
        self.output = _Output(self.limits.max_output_bytes)
        self.tool_calls = 0
        self._calls_requested = 0
        self._inflight: dict[int, anyio.CancelScope] = {}
        self._send_lock = anyio.Lock()
        self._stderr = bytearray()
        self._stderr_closed = anyio.Event()
        self._process: Process | None = None

    async def execute(self, code: str, namespaces: dict[str, list[str]]) -> _Outcome:
        outcome = _Outcome()
        with anyio.move_on_after(self.limits.timeout) as deadline:
            outcome = await self._spawn_and_serve(code, namespaces)
        if deadline.cancelled_caught:
            return _Outcome(
                f"TimeoutError: the code ran longer than {self.limits.timeout:g} s (the sandbox's wall-clock "
                "limit) and was stopped; do less per run, or make fewer or smaller tool calls",
                "timeout",
            )
        return outcome

    async def _spawn_and_serve(self, code: str, namespaces: dict[str, list[str]]) -> _Outcome:
        try:
            process = await anyio.open_process(WORKER_COMMAND, env={}, cwd="/", start_new_session=True, **self.identity)
        except OSError as exc:
            return _Outcome(f"could not start the sandbox worker: {exc}", "internal", startup_failed=True)
        self._process = process
        try:
            async with anyio.create_task_group() as tg:
                assert process.stderr is not None
                tg.start_soon(self._drain_stderr, process.stderr)
                try:
                    outcome = await self._serve(process, tg, code, namespaces)
                except _Violation as exc:
                    logger.warning("sandbox worker broke the protocol: %s", exc)
                    outcome = _Outcome(
                        f"SandboxError: the sandbox worker sent an invalid message ({exc}) and was stopped",
                        "protocol",
                    )
                tg.cancel_scope.cancel()
            return outcome
        finally:
            with anyio.CancelScope(shield=True):
                await _reap(process)

    async def _serve(self, process: Process, tg: TaskGroup, code: str, namespaces: dict[str, list[str]]) -> _Outcome:
        assert process.stdout is not None
        limits = self.limits
        reader = _FrameReader(
            process.stdout, limits.max_result_bytes + 8 * limits.max_output_bytes + 6 * _MAX_ERROR_CHARS + 65_536
        )
        ready = await reader.next()
        if ready is None:
            return await self._startup_failed(process)
        if ready != protocol.ready_frame():
            raise _Violation(f"expected a ready frame, got {ready.get('type')!r}")
        worker_limits = {
            "memory_mb": limits.memory_mb,
            "cpu_seconds": limits.cpu_seconds,
            "max_output_bytes": limits.max_output_bytes,
            "max_result_bytes": limits.max_result_bytes,
        }
        await self._send(protocol.encode_frame(protocol.start_frame(code, namespaces, worker_limits)))
        while True:
            frame = await reader.next()
            if frame is None:
                return await self._died(process)
            kind = frame["type"]
            if kind == "call":
                stop = self._on_call(frame, tg)
                if stop is not None:
                    return stop
            elif kind == "output" and frame.keys() == {"type", "text"} and type(frame["text"]) is str:
                self.output.append(frame["text"])
            elif kind == "cancel" and frame.keys() == {"type", "id"}:
                scope = self._inflight.get(frame["id"]) if type(frame["id"]) is int else None
                if scope is not None:
                    scope.cancel()
            elif kind == "done":
                return _finished(frame, limits)
            else:
                raise _Violation(f"unexpected or malformed {kind!r} frame")

    def _on_call(self, frame: dict[str, Any], tg: TaskGroup) -> _Outcome | None:
        if frame.keys() != {"type", "id", "tool", "args"}:
            raise _Violation("a call frame must have exactly the keys type, id, tool, args")
        call_id, tool, args = frame["id"], frame["tool"], frame["args"]
        if type(call_id) is not int or not 0 < call_id < 2**53 or call_id in self._inflight:
            raise _Violation("a call id must be a new positive integer")
        if type(tool) is not str or type(args) is not dict or any(type(key) is not str for key in args):
            raise _Violation("a call needs a string tool name and an object of arguments")
        self._calls_requested += 1
        if self._calls_requested > 2 * self.limits.max_tool_calls + 100:
            # Each refusal costs the portal a task and a write; a loop retrying forever must not cost more.
            return _Outcome(
                f"ToolCallLimitError: the code kept calling tools after reaching the limit of "
                f"{self.limits.max_tool_calls} calls per run and was stopped",
                "exception",
            )
        error = None
        if self._calls_requested > self.limits.max_tool_calls:
            error = (
                f"{tool}: this run reached its limit of {self.limits.max_tool_calls} tool calls; "
                "make fewer calls (filter, batch) or continue in a new run"
            )
        elif tool not in self.tools:
            error = str(UnknownToolError(tool, difflib.get_close_matches(tool, self.tools, n=3)))
        if error is not None:
            tg.start_soon(self._send, protocol.encode_frame(protocol.error_result_frame(call_id, error)))
            return None
        self.tool_calls += 1
        scope = self._inflight[call_id] = anyio.CancelScope()
        tg.start_soon(self._call, scope, call_id, tool, args)
        return None

    async def _call(self, scope: anyio.CancelScope, call_id: int, tool: str, args: dict[str, Any]) -> None:
        try:
            with scope:
                frame = await self._answer(call_id, tool, args)
                await self._send(frame)
        finally:
            self._inflight.pop(call_id, None)

    async def _answer(self, call_id: int, tool: str, args: dict[str, Any]) -> bytes:
        try:
            value = await self.call_tool(tool, args)
        except PortalError as exc:
            return protocol.encode_frame(protocol.error_result_frame(call_id, _cap(str(exc), _MAX_ERROR_CHARS)))
        except Exception:
            # Not a PortalError: a portal bug. Its message may hold internals, so the code only learns the type.
            logger.exception("tool call %s raised an unexpected error", tool)
            error = f"{tool} failed inside the portal (an internal error); see the portal log"
            return protocol.encode_frame(protocol.error_result_frame(call_id, error))
        try:
            frame = protocol.encode_frame(protocol.ok_result_frame(call_id, value), allow_nan=True)
        except (TypeError, ValueError, RecursionError) as exc:
            error = f"{tool} returned a value that is not JSON ({exc}); this is a portal bug"
            return protocol.encode_frame(protocol.error_result_frame(call_id, error))
        if len(frame) > self.limits.max_result_bytes:
            error = (
                f"the result of {tool} is {len(frame)} bytes, over the limit of {self.limits.max_result_bytes} "
                "bytes per result; ask for less (filter, paginate or select fields)"
            )
            return protocol.encode_frame(protocol.error_result_frame(call_id, error))
        return frame

    async def _send(self, data: bytes) -> None:
        assert self._process is not None
        assert self._process.stdin is not None
        async with self._send_lock:
            # A gone worker is not an error here: the reader sees the end of its stream and reports why.
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self._process.stdin.send(data)

    async def _drain_stderr(self, stream: ByteReceiveStream) -> None:
        # Only the worker's own startup can write here: it points fd 2 at /dev/null before running code.
        try:
            async for chunk in stream:
                self._stderr += chunk[: max(_STDERR_KEPT - len(self._stderr), 0)]
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            self._stderr_closed.set()

    async def _startup_failed(self, process: Process) -> _Outcome:
        with anyio.move_on_after(2):
            await process.wait()
            await self._stderr_closed.wait()
        detail = self._stderr.decode(errors="replace").strip() or f"exit status {process.returncode}"
        return _Outcome(f"the sandbox worker failed to start: {detail}", "internal", startup_failed=True)

    async def _died(self, process: Process) -> _Outcome:
        with anyio.move_on_after(2):
            await process.wait()
        return _death_outcome(process.returncode, self.limits)


def _finished(frame: dict[str, Any], limits: SandboxConfig) -> _Outcome:
    fields = {"type", "ok", "value", "error", "error_kind", "output_dropped"}
    ok, value, error, kind, dropped = (
        frame.get(key) for key in ("ok", "value", "error", "error_kind", "output_dropped")
    )
    if (
        frame.keys() != fields
        or type(ok) is not bool
        or not (value is None or type(value) is str)
        or not (error is None or type(error) is str)
        or ok != (error is None)
        or ok != (kind is None)
        or not (kind is None or (type(kind) is str and kind in protocol.ERROR_KINDS))
        or type(dropped) is not int
        or dropped < 0
    ):
        raise _Violation("malformed done frame")
    return _Outcome(
        error=None if error is None else _cap(error, _MAX_ERROR_CHARS),
        kind=kind,  # type: ignore[arg-type]  # checked against ERROR_KINDS above
        value=None if value is None else _cap(value, limits.max_output_bytes + 100),
        dropped=dropped,
    )


def _death_outcome(returncode: int | None, limits: SandboxConfig) -> _Outcome:
    if returncode is None:
        return _Outcome("SandboxCrash: the sandbox worker closed its channel without finishing", "crash")
    if returncode in (protocol.EXIT_INTERNAL, protocol.EXIT_HOST_GONE):
        return _Outcome(f"SandboxError: the sandbox worker failed internally (status {returncode})", "internal")
    if returncode == protocol.EXIT_OUT_OF_MEMORY:
        return _Outcome(f"MemoryError: the code ran out of memory (limit {limits.memory_mb} MB)", "memory")
    if returncode == -signal.SIGXCPU:
        return _Outcome(
            f"CPULimitError: the code used more than {limits.cpu_seconds:g} s of CPU time (the sandbox's CPU "
            "limit) and was stopped; do less computation per run",
            "cpu",
        )
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        hint = (
            "the CPU limit or the out-of-memory killer" if returncode == -signal.SIGKILL else "deep recursion or memory"
        )
        return _Outcome(f"SandboxCrash: the sandbox worker was killed by {name} (likely {hint})", "crash")
    return _Outcome(f"SandboxCrash: the sandbox worker exited unexpectedly (status {returncode})", "crash")


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... [truncated: {len(text) - limit} more characters]"


async def _reap(process: Process) -> None:
    # The whole process group, so anything the worker managed to fork dies too. The group id cannot be reused
    # while a member lives, and killing an empty group only fails with ProcessLookupError.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()
    await process.aclose()
