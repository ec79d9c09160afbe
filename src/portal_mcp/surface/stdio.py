"""The stdio transport: its input repaired before the SDK reads it, and a line it cannot read answered.

A JSON-RPC line holding half a UTF-16 surrogate pair (`"\\ud83d"` alone: what a client writes for a string cut in the
middle of an emoji) is refused whole by the SDK's parser, which then drops the request without a reply: the client
waits until its own timeout (over HTTP the same line gets a 400). Each such half is replaced by U+FFFD, as the
sandbox's frames replace it, and the request is answered. Lines without a surrogate escape, and lines that are not
JSON at all, reach the SDK as they came.

A line the SDK still cannot read (not JSON, or JSON that is no JSON-RPC message) it hands on as an exception, which
its server drops without a word. The portal answers it as JSON-RPC says (`refusal`): -32700 for a line that is not
JSON, -32600 for one that is no message, with the request's id when the line has one, so a client waiting for that
request learns at once what was wrong instead of waiting for its timeout; and logs one warning line.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
import mcp_types as types
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from pydantic import ValidationError
from pydantic_core import from_json

from portal_mcp.sdk import ReadStream, ReadWrapper, UnownedTextWrapper, WriteStream, claim_stdin

logger = logging.getLogger("portal_mcp")

SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_HALF = re.compile("[\ud800-\udfff]")


def repaired(line: str) -> str:
    """`line` with each half surrogate pair in its strings replaced by U+FFFD (the line itself when it has none)."""
    if SURROGATE_ESCAPE.search(line) is None:
        return line
    try:
        from_json(line)  # whole pairs ("\\ud83d\\ude00", as clients that escape every non-ASCII character write)
        return line
    except ValueError:
        pass
    try:
        return json.dumps(_whole(json.loads(line)), ensure_ascii=False)
    except (ValueError, RecursionError):
        return line  # not JSON: the SDK answers it as it answers any such line


def _whole(value: Any) -> Any:
    if isinstance(value, str):
        return _HALF.sub("\ufffd", value)
    if isinstance(value, list):
        return [_whole(item) for item in value]
    if isinstance(value, dict):
        return {_whole(key): _whole(item) for key, item in value.items()}
    return value


async def _repaired(lines: AsyncIterable[str]) -> AsyncIterator[str]:
    async for line in lines:
        if line.strip():  # a blank line holds no message: nothing to answer
            yield repaired(line)


def refusal(error: Exception) -> types.JSONRPCError | None:
    """The answer to a line the SDK could not read (`error`: what its parser raised), or None for a notification
    or a response of the wrong shape (JSON-RPC answers neither)."""
    problems = error.errors(include_url=False) if isinstance(error, ValidationError) else []
    if not problems or problems[0]["type"] == "json_invalid":
        detail = problems[0].get("ctx", {}).get("error", "") if problems else str(error)
        return _error(
            None,
            types.PARSE_ERROR,
            f"Parse error: the line is not JSON ({detail}); send one JSON-RPC message per line, as UTF-8 JSON",
        )
    message = next((problem["input"] for problem in problems if isinstance(problem["input"], dict)), None)
    if message is None:
        return _error(
            None,
            types.INVALID_REQUEST,
            "Invalid Request: a line holds one JSON-RPC message, a JSON object (MCP has no batches)",
        )
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        request_id = None
    if "method" not in message:
        if "result" in message or "error" in message:
            return None  # a response the portal cannot read: JSON-RPC never answers a response
        return _error(request_id, types.INVALID_REQUEST, "Invalid Request: the message has no `method`")
    if request_id is None and "id" not in message:
        return None  # a notification of the wrong shape: JSON-RPC never answers a notification
    fields = [problem for problem in problems if problem["loc"][:1] == ("JSONRPCRequest",)] or problems
    wrong = "; ".join(
        f"`{'.'.join(map(str, problem['loc'][1:])) or 'message'}`: {problem['msg']}" for problem in fields
    )
    return _error(request_id, types.INVALID_REQUEST, f"Invalid Request: {wrong}")


def _error(request_id: int | str | None, code: int, message: str) -> types.JSONRPCError:
    return types.JSONRPCError(jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message))


class _AnsweringRead(ReadWrapper):
    """The SDK's read stream, a line it could not read answered on `write` (see `refusal`) rather than dropped."""

    def __init__(self, inner: ReadStream[SessionMessage | Exception], write: WriteStream[SessionMessage]) -> None:
        super().__init__(inner)
        self._write = write

    async def receive(self) -> SessionMessage | Exception:
        while True:
            item = await self._inner.receive()
            if not isinstance(item, Exception):
                return item
            answer = refusal(item)
            if answer is None:
                logger.warning("stdio: dropped a notification or response of the wrong shape: %s", item)
                continue
            logger.warning("stdio: answered a line that is no JSON-RPC message: %s", answer.error.message)
            await self._write.send(SessionMessage(answer))


@asynccontextmanager
async def stdio_streams() -> AsyncIterator[tuple[ReadStream[Any], WriteStream[Any]]]:
    """The SDK's stdio transport over this process's stdin and stdout, each line of input `repaired`, each line it
    cannot read answered."""
    buffer, restore = claim_stdin()
    try:
        lines = anyio.wrap_file(UnownedTextWrapper(buffer, encoding="utf-8", errors="replace"))
        # The SDK only iterates its input; an async iterator of lines is all it needs.
        async with stdio_server(stdin=cast(Any, _repaired(lines))) as (read, write):
            yield _AnsweringRead(read, write), write
    finally:
        if restore is not None:
            restore()
