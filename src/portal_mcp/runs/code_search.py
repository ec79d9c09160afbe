"""`portal.search` from agent code, portal side: the arguments checked, and each hit as the small value code gets.

The worker asks with a call frame naming `protocol.SEARCH_ACTION`; the bridge answers it (budgets, the user's
policy through the searcher the portal hands it, the audit) and this module says what the question and the
answer look like: `{"name": "server.tool", "signature": "async def tool(*, x: str) -> dict", "description":
"What it does, one sentence."}` per tool, best first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from portal_mcp.catalog.model import ToolEntry
from portal_mcp.catalog.search.text import first_sentence
from portal_mcp.catalog.stubs import render_stub
from portal_mcp.errors import ArgumentError
from portal_mcp.tools import MAX_LIMIT

NAME = "portal.search"
"""What agent code calls it, in error messages."""
SIGNATURE_CHARS = 300
"""A signature longer than this (dozens of parameters) is cut: the full stub is one `search_api` away."""


def search_arguments(arguments: Any) -> tuple[str, int, str | None]:
    """The query, limit and server (None: every server) of a search from code (the worker checked them too, but it
    is not trusted)."""
    if type(arguments) is not dict or not {"query", "limit"} <= arguments.keys() <= {"query", "limit", "server"}:
        raise ArgumentError(NAME, "", "portal.search takes a query, a limit and a server")
    query, limit = arguments["query"], arguments["limit"]
    if type(query) is not str or not query.strip():
        raise ArgumentError(NAME, "query", "the query must be a non-empty string")
    if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
        raise ArgumentError(NAME, "limit", f"the limit must be a whole number from 1 to {MAX_LIMIT}")
    server = arguments.get("server")
    if server is not None and (type(server) is not str or not server.strip()):
        raise ArgumentError(NAME, "server", "the server must be a server's name")
    return query, limit, server


def search_hits(entries: Iterable[ToolEntry]) -> list[dict[str, str]]:
    """Each tool as agent code gets it: qualified name, one-line signature, first sentence of its description."""
    return [
        {"name": entry.qualified_name, "signature": _signature(entry), "description": first_sentence(entry.description)}
        for entry in entries
    ]


def _signature(entry: ToolEntry) -> str:
    lines = render_stub(entry, detail="signature").splitlines()
    line = next((line for line in lines if line.startswith("async def ")), f"async def {entry.python_name}(...)")
    line = line.removesuffix(":")
    return line if len(line) <= SIGNATURE_CHARS else line[: SIGNATURE_CHARS - 3] + "..."
