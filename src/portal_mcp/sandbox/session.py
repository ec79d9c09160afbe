"""One run in one sandbox worker: send the code, serve its tool calls, keep its limits, read how it ended.

`SandboxHost` (host.py) takes a worker from the launcher and hands it to a `Session` per run. Everything the
worker sends is hostile input: frames are size-capped, JSON only, and checked on exact types before a tool is
called; a call beyond `max_tool_calls` or a result beyond `max_result_bytes` becomes an error the code sees.
The wall clock is kept here, not in the worker (in-process alarms can be defeated); `RunClock` lets a call stop
it while a person decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import itertools
import logging
import math
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Final

import anyio

from portal_mcp.config import SandboxConfig
from portal_mcp.control.audit import RunErrorKind
from portal_mcp.errors import PolicyDeniedError, PortalError, ProtocolViolation, UnknownToolError, WorkerStartError
from portal_mcp.sandbox import protocol
from portal_mcp.sandbox.forkserver import ForkServer
from portal_mcp.sandbox.launcher import Spawner, Worker
from portal_mcp.sandbox.output import Output

logger = logging.getLogger("portal_mcp.sandbox.host")  # the name operators know from the portal log

ToolCaller = Callable[[str, dict[str, Any]], Awaitable[Any]]
"""(qualified "server.python_name", kwargs) -> JSON value; PortalError messages reach the code as ToolError."""

_MAX_ERROR_CHARS: Final = 8_000
_CALL_KEYS: Final = frozenset({"type", "id", "tool", "args"})


@dataclass(frozen=True)
class Outcome:
    error: str | None = None
    kind: RunErrorKind | None = None
    value: str | None = None
    dropped: int = 0
    startup_failed: bool = False
    finished: bool = False  # the worker sent a valid `done` (and exits by itself)


class RunClock:
    """The wall clock of one run, which a tool call can stop while a person decides (an approval).

    While any call holds `paused()` the run's deadline is lifted; when the last one lets go, the run gets back the
    time it had left. The worker's CPU limit is unaffected (a waiting worker uses no CPU).
    """

    def __init__(self) -> None:
        self._scope: anyio.CancelScope | None = None
        self._holders = 0
        self._remaining = 0.0

    def attach(self, scope: anyio.CancelScope) -> None:
        self._scope = scope

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        scope = self._scope
        if scope is None:
            yield
            return
        if self._holders == 0:
            self._remaining = scope.deadline - anyio.current_time()
            scope.deadline = math.inf
        self._holders += 1
        try:
            yield
        finally:
            self._holders -= 1
            if self._holders == 0:
                scope.deadline = anyio.current_time() + max(self._remaining, 0.0)


class Session:
    """One run: take a ready worker, send the code, serve calls until `done` or death, always kill it."""

    def __init__(
        self,
        limits: SandboxConfig,
        tools: frozenset[str],
        call_tool: ToolCaller,
        clock: RunClock,
        on_output: Callable[[str], None] | None = None,
    ) -> None:
        self.limits = limits
        self.on_output = on_output
        """Told each piece of printed text as the worker streams it (the run's progress notifications)."""
        self.clock = clock
        self.tools = tools
        self.call_tool = call_tool
        self.output = Output(self.limits.max_output_bytes)
        self.tool_calls = 0
        self._calls_requested = 0
        self._calls: _Calls | None = None
        self._worker: Worker | None = None

    async def execute(self, launcher: ForkServer | Spawner, code: str, namespaces: dict[str, list[str]]) -> Outcome:
        outcome = Outcome()
        with anyio.move_on_after(self.limits.timeout) as deadline:
            self.clock.attach(deadline)
            outcome = await self._acquire_and_serve(launcher, code, namespaces)
        if deadline.cancelled_caught:
            return Outcome(
                f"TimeoutError: the code ran longer than {self.limits.timeout:g} s (the sandbox's wall-clock "
                "limit) and was stopped; do less per run, or make fewer or smaller tool calls",
                "timeout",
            )
        return outcome

    async def _acquire_and_serve(
        self, launcher: ForkServer | Spawner, code: str, namespaces: dict[str, list[str]]
    ) -> Outcome:
        try:
            worker = await launcher.acquire()
        except WorkerStartError as exc:
            return Outcome(str(exc), "internal", startup_failed=True)
        except ProtocolViolation as exc:
            return _violation(exc)
        self._worker = worker
        finished = False
        try:
            async with asyncio.TaskGroup() as group:
                calls = self._calls = _Calls(group)
                try:
                    outcome = await self._serve(worker, code, namespaces)
                    finished = outcome.finished
                except ProtocolViolation as exc:
                    outcome = _violation(exc)
                finally:
                    calls.cancel_all()
            return outcome
        finally:
            with anyio.CancelScope(shield=True):
                await worker.aclose(finished=finished)

    async def _serve(self, worker: Worker, code: str, namespaces: dict[str, list[str]]) -> Outcome:
        limits = self.limits
        reader = worker.reader
        reader.decoder.max_frame_bytes = (
            limits.max_result_bytes + 8 * limits.max_output_bytes + 6 * _MAX_ERROR_CHARS + 65_536
        )
        await self._send(protocol.encode_frame(protocol.start_frame(code, namespaces)))
        outcome = await reader.dispatch(self._handle)
        if outcome is None:
            return _death_outcome(await worker.wait(), limits)
        return outcome

    def _handle(self, frame: dict[str, Any]) -> Outcome | None:
        """One frame from the worker, handled synchronously; an outcome ends the run."""
        kind = frame["type"]
        if kind == "call":
            return self._on_call(frame)
        if kind == "output" and _is_output(frame):
            self.output.append(frame["text"], frame.get("skipped", 0))
            if self.on_output is not None:
                self.on_output(frame["text"])
        elif kind == "cancel" and frame.keys() == {"type", "id"}:
            if type(frame["id"]) is int:
                self._active().cancel(frame["id"])
        elif kind == "done":
            return _finished(frame, self.limits)
        else:
            raise ProtocolViolation(f"unexpected or malformed {kind!r} frame")
        return None

    def _on_call(self, frame: dict[str, Any]) -> Outcome | None:
        """Start the call, or send its refusal; an outcome stops a worker that keeps calling past its limit."""
        if frame.keys() != _CALL_KEYS:
            raise ProtocolViolation("a call frame must have exactly the keys type, id, tool, args")
        call_id, tool, args = frame["id"], frame["tool"], frame["args"]
        calls = self._active()
        if type(call_id) is not int or not 0 < call_id < 2**53 or call_id in calls:
            raise ProtocolViolation("a call id must be a new positive integer")
        if type(tool) is not str or type(args) is not dict or any(type(key) is not str for key in args):
            raise ProtocolViolation("a call needs a string tool name and an object of arguments")
        self._calls_requested += 1
        if self._calls_requested > 2 * self.limits.max_tool_calls + 100:
            # Each refusal costs the portal a task and a write; a loop retrying forever must not cost more.
            return Outcome(
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
        elif tool not in self.tools and tool != protocol.SEARCH_ACTION:
            error = str(UnknownToolError(tool, difflib.get_close_matches(tool, self.tools, n=3)))
        if error is not None:
            calls.start(None, self._send(protocol.encode_frame(protocol.error_result_frame(call_id, error))))
            return None
        self.tool_calls += 1
        calls.start(call_id, self._call(call_id, tool, args))
        return None

    async def _call(self, call_id: int, tool: str, args: dict[str, Any]) -> None:
        await self._send(await self._answer(call_id, tool, args))

    async def _answer(self, call_id: int, tool: str, args: dict[str, Any]) -> bytes:
        try:
            value = await self.call_tool(tool, args)
        except PolicyDeniedError as exc:
            # Raised in the code as PermissionError (and ToolError), so `except PermissionError` reads naturally.
            refusal = protocol.error_result_frame(call_id, _cap(str(exc), _MAX_ERROR_CHARS), denied=True)
            return protocol.encode_frame(refusal)
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

    def _active(self) -> _Calls:
        assert self._calls is not None  # frames are handled only while the session serves its worker
        return self._calls

    async def _send(self, data: bytes) -> None:
        assert self._worker is not None
        await self._worker.send(data)


class _Calls:
    """The tool calls in flight in one session, each cancellable by its id, all cancelled when the session ends.

    Tasks of an `asyncio.TaskGroup` the session enters: structured, and one task creation per call (anyio's
    `start_soon` costs about five times as much, on the hot path of every tool call). A call never raises into the
    group: a failure is logged, so one broken call cannot cancel the others or the run.
    """

    def __init__(self, group: asyncio.TaskGroup) -> None:
        self._group = group
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._anonymous = itertools.count(1)

    def __contains__(self, call_id: int) -> bool:
        return call_id in self._tasks

    def start(self, call_id: int | None, call: Coroutine[Any, Any, None]) -> None:
        """Run `call` concurrently; with an id it can be cancelled (a refusal being sent has none)."""
        key = call_id if call_id is not None else -next(self._anonymous)
        self._tasks[key] = self._group.create_task(self._guarded(key, call))

    async def _guarded(self, key: int, call: Coroutine[Any, Any, None]) -> None:
        try:
            await call
        except Exception:
            logger.exception("a sandbox tool call failed in the portal")
        finally:
            self._tasks.pop(key, None)

    def cancel(self, call_id: int) -> None:
        """The code stopped waiting for this call."""
        if (task := self._tasks.get(call_id)) is not None:
            task.cancel()

    def cancel_all(self) -> None:
        """The run is over: nobody waits for the calls still in flight."""
        for task in list(self._tasks.values()):
            task.cancel()


def _is_output(frame: dict[str, Any]) -> bool:
    skipped = frame.get("skipped", 0)
    return (
        frame.keys() <= {"type", "text", "skipped"}
        and type(frame.get("text")) is str
        and type(skipped) is int
        and 0 <= skipped < 2**53
    )


def _violation(exc: ProtocolViolation) -> Outcome:
    logger.warning("sandbox worker broke the protocol: %s", exc)
    return Outcome(f"SandboxError: the sandbox worker sent an invalid message ({exc}) and was stopped", "protocol")


def _finished(frame: dict[str, Any], limits: SandboxConfig) -> Outcome:
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
        raise ProtocolViolation("malformed done frame")
    return Outcome(
        error=None if error is None else _cap(error, _MAX_ERROR_CHARS),
        kind=kind,  # type: ignore[arg-type]  # checked against ERROR_KINDS above
        value=None if value is None else _cap(value, limits.max_output_bytes + 1_000),  # room for the cut note
        dropped=dropped,
        finished=True,
    )


def _death_outcome(returncode: int | None, limits: SandboxConfig) -> Outcome:
    if returncode is None:
        return Outcome("SandboxCrash: the sandbox worker closed its channel without finishing", "crash")
    if returncode in (protocol.EXIT_INTERNAL, protocol.EXIT_HOST_GONE):
        return Outcome(f"SandboxError: the sandbox worker failed internally (status {returncode})", "internal")
    if returncode == protocol.EXIT_OUT_OF_MEMORY:
        return Outcome(f"MemoryError: the code ran out of memory (limit {limits.memory_mb} MB)", "memory")
    if returncode == -signal.SIGXCPU:
        return Outcome(
            f"CPULimitError: the code used more than {limits.cpu_seconds:g} s of CPU time (the sandbox's CPU "
            "limit) and was stopped; do less computation per run",
            "cpu",
        )
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        hint = (
            "the CPU limit or the out-of-memory killer" if returncode == -signal.SIGKILL else "deep recursion or memory"
        )
        return Outcome(f"SandboxCrash: the sandbox worker was killed by {name} (likely {hint})", "crash")
    return Outcome(f"SandboxCrash: the sandbox worker exited unexpectedly (status {returncode})", "crash")


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... [truncated: {len(text) - limit} more characters]"
