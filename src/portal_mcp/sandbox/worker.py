"""The sandbox worker: a short-lived process that runs one piece of agent code and exits.

Two ways in, one path after: `serve(channel_fd, limits)`. Usually the fork server (`zygote.py`) forks the
worker with everything already imported and hands it a fresh socketpair end; `main()` is the slower spawned
form (`python -I -B` with an empty environment, the channel on fds 0/1, the limits as JSON in argv[1]). Either
way fds 0-2 point at /dev/null, so nothing the code does can write into the channel, and before any agent
code is read the worker creates its event loop, lowers its rlimits and confines itself (`confine.py`), then
says `ready` with the layers in force, and picks its language level from them. It exits with `os._exit` right
after the `done` frame. Imports only `protocol`, `calls`, `policy`, `facades` and `confine` from the portal.

Exit codes the host interprets when no `done` frame arrived: `protocol.EXIT_*`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any, Final, NoReturn

from portal_mcp.sandbox import calls, confine, facades, policy, protocol
from portal_mcp.sandbox.calls import Channel, ToolError
from portal_mcp.sandbox.protocol import EXIT_INTERNAL, EXIT_OUT_OF_MEMORY

_MAX_ERROR_CHARS: Final = 4_000  # the host allows more; its frame cap must hold the done frame
# Released when MemoryError strikes, so there is room left to report it.
_reserve: bytearray | None = bytearray(2**20)


def _cap(text: str, limit: int, what: str) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{what} truncated: {len(text) - limit} more characters]"


async def _run(
    start: dict[str, Any],
    limits: protocol.WorkerLimits,
    channel: Channel,
    printer: policy.Printer,
    level: policy.Language = "open",
) -> dict[str, Any]:
    global _reserve
    try:
        compiled = policy.compile_agent_code(start["code"], level)
    except policy.AgentSyntaxError as exc:
        return _done(printer, error=str(exc), kind="syntax")
    # Classes the code defines get `__module__ == "__main__"`; the stdlib (dataclasses) looks that module up.
    sys.modules["__main__"] = types.ModuleType("__main__")
    names = calls.namespaces(channel, start["namespaces"])
    agent_globals = policy.make_globals(
        printer=printer,
        names=names,
        # A builtin, so a server named `portal` (a global) still wins.
        extra_builtins={
            "ToolError": ToolError,
            "PermissionError": PermissionError,
            "portal": calls.PortalActions(channel, names),
        },
        level=level,
        describe=lambda exc: policy.describe_exception(exc, compiled),
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
            shown = policy.cut_middle(repr(value), limits.max_output_bytes, "the value")
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
    # Bytes cut from the output already reached the host as `skipped` counts of output frames.
    return protocol.done_frame(ok=error is None, value=value, error=error, error_kind=kind, output_dropped=0)


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


def _warm_up(loop: asyncio.AbstractEventLoop, limits: protocol.WorkerLimits, level: policy.Language) -> None:
    """Run a fixed snippet through the whole run path once, writing to nowhere.

    A forked worker shares the fork server's memory copy-on-write, and CPython writes to every object it
    touches (reference counts), so the first run through any code path pays hundreds of page faults. Paying
    them here, while the worker waits as a spare, takes them off the agent's clock. The snippet is ours and
    leaves nothing behind that the agent's run could see: it gets its own globals, printer and channel.
    """
    channel = Channel(-1, -1, limits.max_result_bytes)
    printer = policy.Printer(limits.max_output_bytes, _ignore)
    done = loop.run_until_complete(_run({"code": _WARM_UP_CODE, "namespaces": {}}, limits, channel, printer, level))
    printer.flush()
    protocol.encode_frame(protocol.output_frame("1", 1))
    protocol.encode_frame(done)


_WARM_UP_CODE: Final = """
import json
async def f(x):
    return [x]
print(await f(json.dumps({'a': 1})))
1
"""


def _ignore(text: str, skipped: int) -> None:
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
        # The language follows the layers actually in force here (docs/sandbox.md, "Language levels").
        level = policy.choose_language(limits.language, confinement.layers)
        _warm_up(loop, limits, level)
        channel = Channel(channel_fd, channel_fd, limits.max_result_bytes)
        printer = policy.Printer(
            limits.max_output_bytes,
            lambda text, skipped: channel.send(protocol.output_frame(text, skipped)),
        )
        channel.flush_output = printer.flush
        channel.listen(loop)
        ready = protocol.ready_frame(confinement.layers, confinement.unavailable)
        calls.write_all(channel_fd, protocol.encode_frame(ready))

        async def session() -> dict[str, Any]:
            return await _run(await channel.start_frame(), limits, channel, printer, level)

        done = loop.run_until_complete(session())
        printer.flush()
        channel.send(done)
    except MemoryError:
        os._exit(EXIT_OUT_OF_MEMORY)
    except BaseException as exc:
        try:
            error = f"internal sandbox error ({type(exc).__name__}); the run was stopped"
            frame = protocol.done_frame(ok=False, value=None, error=error, error_kind="internal", output_dropped=0)
            calls.write_all(channel_fd, protocol.encode_frame(frame))
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
    facades.preload(zones=False)  # a confined worker cannot read a module file; time zones: only the fork server
    serve(channel_fd, limits)


if __name__ == "__main__":
    main()
