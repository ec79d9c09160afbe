"""The stdio transport, its input repaired before the SDK reads it.

A JSON-RPC line holding half a UTF-16 surrogate pair (`"\\ud83d"` alone: what a client writes for a string cut in the
middle of an emoji) is refused whole by the SDK's parser, which then drops the request without a reply: the client
waits until its own timeout (over HTTP the same line gets a 400). Each such half is replaced by U+FFFD, as the
sandbox's frames replace it, and the request is answered. Lines without a surrogate escape, and lines that are not
JSON at all, reach the SDK as they came.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
from mcp.server.stdio import stdio_server
from pydantic_core import from_json

from portal_mcp.sdk import ReadStream, UnownedTextWrapper, WriteStream, claim_stdin

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
        yield repaired(line)


@asynccontextmanager
async def stdio_streams() -> AsyncIterator[tuple[ReadStream[Any], WriteStream[Any]]]:
    """The SDK's stdio transport over this process's stdin and stdout, each line of input `repaired`."""
    buffer, restore = claim_stdin()
    try:
        lines = anyio.wrap_file(UnownedTextWrapper(buffer, encoding="utf-8", errors="replace"))
        # The SDK only iterates its input; an async iterator of lines is all it needs.
        async with stdio_server(stdin=cast(Any, _repaired(lines))) as streams:
            yield streams
    finally:
        if restore is not None:
            restore()
