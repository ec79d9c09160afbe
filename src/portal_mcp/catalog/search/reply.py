"""The parts of a `search_api` reply that are not one ranked list: a whole task answered intent by intent, and
"nothing fits" (the closest servers, one line each, instead of tools that merely share a word)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.search.index import SearchHit, task_ranking
from portal_mcp.catalog.stubs import render_stubs
from portal_mcp.naming import plural

Detail = Literal["name", "signature", "full", "auto"]
FULL_TOOLS = 1
"""With the default detail ("auto"), this many of a task's tools (the first shown) get full docs, the others
signatures: a task reply holds as many tools as a plain one, and must stay as small."""
SERVER_TOOLS_SHOWN = 4


def task_reply(groups: Sequence[tuple[str, Sequence[SearchHit]]], limit: int, detail: Detail) -> tuple[str, list[str]]:
    """A whole task's best `limit` tools (the first group is the task's own ranking, then one per intent, as
    `SearchIndex.search_intents` gives them), the same tools `SearchIndex.search` ranks first (`task_ranking`),
    each shown under the intent that ranks it highest; and the qualified names shown, in that order.

    An intent whose best tools are shown under an earlier one names them; one with none among the task's best says
    so, so the agent can search that step alone."""
    chosen = task_ranking(groups, limit)
    intents = groups[1:]
    ranks = [{hit.entry.qualified_name: rank for rank, hit in enumerate(hits)} for _, hits in intents]
    under: list[list[SearchHit]] = [[] for _ in intents]
    for hit in chosen:
        name = hit.entry.qualified_name
        # The intent ranking it highest (the earlier on a tie); one no intent ranks goes to the first.
        best = min(range(len(intents)), key=lambda number: (ranks[number].get(name, len(groups[0][1]) + 1), number))
        under[best].append(hit)
    chosen_names = {hit.entry.qualified_name for hit in chosen}
    shown: list[str] = []
    blocks = []
    for number, ((intent, hits), own) in enumerate(zip(intents, under, strict=True), 1):
        lines = [f"## {number}. {intent}"]
        if own:
            entries = [hit.entry for hit in own]
            if detail == "auto":
                full = max(0, FULL_TOOLS - len(shown))
                lines.append(render_stubs(entries, detail="full", full_first=full).rstrip("\n"))
            else:
                lines.append(render_stubs(entries, detail=detail).rstrip("\n"))
            shown += [entry.qualified_name for entry in entries]
        own_names = {hit.entry.qualified_name for hit in own}
        again = [
            name for hit in hits[:2] if (name := hit.entry.qualified_name) in chosen_names and name not in own_names
        ]
        if again:
            lines.append(f"# also: {', '.join(again)} (above)")
        elif not own:
            lines.append(
                "# no tool of its own among the best: search this step alone for more"
                if hits
                else "# no tool fits this step"
            )
        blocks.append("\n".join(lines))
    head = (
        f"A task of {len(intents)} steps: its best {plural(len(chosen), 'tool')}, under the step each fits best. Call "
        "them in one execute_code run as `await server.tool(...)`."
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
