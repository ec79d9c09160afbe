"""The parts of a `search_api` reply that are not one ranked list: a whole task answered intent by intent, and
"nothing fits" (the closest servers, one line each, instead of tools that merely share a word)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.search.index import SearchHit
from portal_mcp.catalog.stubs import render_stubs

Detail = Literal["name", "signature", "full", "auto"]
FULL_INTENTS = 1
"""With the default detail ("auto"), the best tool of this many intents (the whole task first) gets full docs, the
others signatures: a task reply holds about as many tools as a plain one, and must stay as small."""
SERVER_TOOLS_SHOWN = 4


def per_intent(limit: int, intents: int) -> int:
    """How many tools each intent gets: the reply holds about `limit` tools whatever the number of intents."""
    return max(1, math.ceil(limit / max(intents, 1)))


def task_reply(groups: Sequence[tuple[str, Sequence[SearchHit]]], limit: int, detail: Detail) -> tuple[str, list[str]]:
    """The intents of a task with their best tools (a tool shown under an earlier intent is named, not repeated),
    and the qualified names shown."""
    count = per_intent(limit, len(groups))
    shown: list[str] = []
    blocks = []
    for number, (intent, hits) in enumerate(groups, 1):
        entries = [hit.entry for hit in hits[:count]]
        fresh = [entry for entry in entries if entry.qualified_name not in shown]
        again = [entry.qualified_name for entry in entries if entry.qualified_name in shown]
        shown += [entry.qualified_name for entry in fresh]
        lines = [f"## {number}. {intent}"]
        if fresh:
            if detail == "auto":
                full = 1 if number <= FULL_INTENTS else 0
                lines.append(render_stubs(fresh, detail="full", full_first=full).rstrip("\n"))
            else:
                lines.append(render_stubs(fresh, detail=detail).rstrip("\n"))
        if again:
            lines.append(f"# also: {', '.join(again)} (above)")
        if not entries:
            lines.append("# no tool fits this step")
        blocks.append("\n".join(lines))
    head = (
        f"A task of {len(groups)} steps: the best tools for each. Call them in one execute_code run as "
        "`await server.tool(...)`."
    )
    return head + "\n\n" + "\n\n".join(blocks) + "\n", shown


def nothing_fits_reply(
    query: str, servers: Sequence[str], hits: Sequence[SearchHit], catalog: Catalog, about: Mapping[str, str]
) -> str:
    """Say that nothing fits well, with the closest servers (one line each) and the loose matches by name."""
    lines = [f"Nothing here fits {query!r} well. The closest servers:"]
    for server in servers:
        entries = catalog.by_server(server)
        line = about.get(server) or "tools: " + ", ".join(entry.python_name for entry in entries[:SERVER_TOOLS_SHOWN])
        lines.append(f"- {server} ({len(entries)} tools): {line}")
    if hits:
        lines.append("Loose matches: " + ", ".join(hit.entry.qualified_name for hit in hits) + ".")
    lines.append(
        "Search again in other words (what the tool does, not the goal), or list a server's tools with "
        "search_api(query='server:NAME')."
    )
    return "\n".join(lines) + "\n"
