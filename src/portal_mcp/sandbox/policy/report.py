"""How a failed run is told to the model: the error and the agent's own lines, never the portal's frames."""

from __future__ import annotations

import traceback
import types
from collections.abc import Awaitable
from typing import Any

from portal_mcp.sandbox.language import REFUSED_NAMES
from portal_mcp.sandbox.policy.transform import AGENT_FILENAME, CompiledCode

__all__ = ["agent_line", "describe_exception", "is_awaitable"]


def describe_exception(exc: BaseException, compiled: CompiledCode, *, max_frames: int = 6) -> str:
    """`Type: message` plus the agent-code lines that led to it; portal and library frames are never shown.

    Repeats of one line (recursion) are folded into one entry; past `max_frames` entries the outermost two and
    the innermost ones are kept, so both where it started and where it failed stay visible. An exception group
    lists its members (the first few), each with its own lines.
    """
    parts = [_headline(exc), *_agent_lines(exc, compiled, max_frames)]
    if isinstance(exc, BaseExceptionGroup):
        members = exc.exceptions
        for index, member in enumerate(members[:5], 1):
            inner = describe_exception(member, compiled, max_frames=3).replace("\n", "\n    ")
            parts.append(f"  [{index}] {inner}")
        if len(members) > 5:
            parts.append(f"  ... and {len(members) - 5} more")
    return "\n".join(parts)


def _headline(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # a hostile __str__ must not take the report down with it
        text = ""
    try:
        kind = type(exc).__name__
    except Exception:
        kind = "Exception"
    line = f"{kind}: {text}" if text else kind
    if isinstance(exc, NameError) and type(exc.name) is str and exc.name in REFUSED_NAMES:
        line += f" (not available in the sandbox: {REFUSED_NAMES[exc.name]})"
    return line


def _agent_lines(exc: BaseException, compiled: CompiledCode, max_frames: int) -> list[str]:
    entries: list[list[Any]] = []  # [name, line, times]
    for frame, line in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename != AGENT_FILENAME:
            continue
        if entries and entries[-1][:2] == [frame.f_code.co_name, line]:
            entries[-1][2] += 1
        else:
            entries.append([frame.f_code.co_name, line, 1])
    if len(entries) > max_frames:
        hidden = len(entries) - max_frames
        entries = [*entries[:2], [None, hidden, 0], *entries[len(entries) - max_frames + 2 :]]
    parts = []
    for name, line, times in entries:
        if name is None:
            parts.append(f"  ... {line} more calls ...")
            continue
        source = compiled.source_lines[line - 1].strip() if 0 < line <= len(compiled.source_lines) else ""
        where = f"line {line}" if name == "<module>" else f"line {line}, in {name}"
        repeated = f"  (repeated {times} times)" if times > 1 else ""
        parts.append(f"  {where}: {source}{repeated}")
    return parts


def agent_line(frame: types.FrameType | None) -> int | None:
    """The line of the innermost agent-code frame at or above `frame`."""
    while frame is not None:
        if frame.f_code.co_filename == AGENT_FILENAME:
            return frame.f_lineno
        frame = frame.f_back
    return None


def is_awaitable(value: object) -> bool:
    """Whether a final value is something the code forgot to await."""
    return isinstance(value, Awaitable)
