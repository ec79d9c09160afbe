"""What a link lists from its server: every page of a paginated list, with credentials taken out of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mcp.client import Client
from mcp_types import Tool

from portal_mcp.control.credentials import Redactor
from portal_mcp.naming import plural

MAX_PAGES = 1000
"""List pages followed before giving up on a paginator that never ends."""

Warn = Callable[[str], Awaitable[None]]
"""Reports a problem with the listing (the link turns it into a warning event)."""


async def list_tools(client: Client, redactor: Redactor, warn: Warn) -> list[Tool]:
    """Every page of tools/list (at most `MAX_PAGES`, stopping at a repeated cursor); the first listing of a name
    wins; credential values taken out of names, descriptions and schemas."""
    tools: dict[str, Tool] = {}
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        page = await client.list_tools(cursor=cursor)
        for tool in page.tools:
            tools.setdefault(tool.name, tool)
        cursor = page.next_cursor
        if cursor is None:
            return redacted(list(tools.values()), redactor)
        if cursor in seen:
            await warn(f"tools/list repeats cursor {cursor!r}; using the tools so far")
            return redacted(list(tools.values()), redactor)
        seen.add(cursor)
    await warn(f"tools/list did not end after {MAX_PAGES} pages; using those")
    return redacted(list(tools.values()), redactor)


def redacted(tools: list[Tool], redactor: Redactor) -> list[Tool]:
    """The tools with any credential value taken out of their names, descriptions and schemas."""
    if not redactor:
        return tools
    return [
        tool
        if (dumped := tool.model_dump(mode="json", by_alias=True, exclude_none=True)) == redactor.value(dumped)
        else Tool.model_validate(redactor.value(dumped))
        for tool in tools
    ]


def differ(old: Sequence[Tool], new: Sequence[Tool]) -> bool:
    """Whether two listings differ in anything a client can see."""
    return _dump(old) != _dump(new)


def lists(count: int) -> str:
    """`lists 3 tools`, for events."""
    return f"lists {plural(count, 'tool')}"


def _dump(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    return [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools]
