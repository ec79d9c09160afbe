"""`search_api`'s reply: the CPU part of a search (the ranking, the stubs, the text), apart from its admission and
its audit record (`Portal.search_api` and `Portal.search_api_offloaded` do those, on the event loop).

A ranking over 10,000 tools costs about 10 ms and the reply a few more, so the MCP surface runs `reply` in a
`budgets.offload` thread, one at a time per user: one user's flood of searches never holds the event loop that
serves every other user. The thread reads the catalog as it is when the reply is built (a search queued behind
its user's others never ranks, nor rebuilds the index of, a catalog replaced meanwhile: one assignment, read once)
and the servers' statuses and resources as a `Sources` snapshot taken on the loop, never state the loop is changing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.overview import availability, did_you_mean, overview, scope_of, split_filters, visible_servers
from portal_mcp.catalog.resources import find_resources, render_resources
from portal_mcp.catalog.search import SearchIndex
from portal_mcp.catalog.search.reply import nothing_fits_reply, task_reply
from portal_mcp.catalog.shapes import ShapeBook
from portal_mcp.catalog.status import ServerStatus
from portal_mcp.catalog.stubs import render_stubs
from portal_mcp.config import ServerConfig
from portal_mcp.control.access import AccessPolicy
from portal_mcp.control.principal import Principal
from portal_mcp.downstream import Extras
from portal_mcp.naming import plural
from portal_mcp.tools import MAX_LIMIT

Detail = Literal["name", "signature", "full", "auto"]
FULL_HITS = 2
"""With the default detail ("auto"), this many best hits get full docs and the rest signatures."""


@dataclass(frozen=True)
class Sources:
    """What a search reads (`Portal.search_sources`): statuses and resources as taken on the event loop when it is
    admitted, the catalog as it is when the reply is built."""

    catalog: Callable[[], Catalog]
    """The current catalog (read once per reply)."""
    index: Callable[[Catalog], SearchIndex]
    """A catalog's search index (built on first use after a change: seconds at 10,000 tools)."""
    servers: Mapping[str, ServerConfig]
    policy: AccessPolicy
    shapes: ShapeBook
    statuses: Sequence[ServerStatus]
    extras: Mapping[str, Extras]

    def overview(self, catalog: Catalog, scope: set[str] | None, hidden: frozenset[str]) -> str:
        """Servers with their descriptions, owners and tool counts (catalog/overview.py)."""
        return overview(catalog, self.servers, self.statuses, scope, hidden)


def reply(sources: Sources, query: str, principal: Principal, *, server: str | None, limit: int, detail: Detail) -> str:
    """The text `search_api` returns for an admitted search: matching tools as typed stubs, or an overview for an
    empty query. `owner:NAME`, `tag:NAME` and `server:NAME` words in the query narrow it to matching servers."""
    catalog = sources.catalog()
    hidden = sources.policy.hidden(principal.name, catalog, principal.groups)  # left out of hits, counts, hints
    limit = max(1, min(limit, MAX_LIMIT))
    words, filters = split_filters(query)
    if server is not None:
        filters.append(("server", server))
    scope, problem = scope_of(catalog, sources.servers, filters, hidden)
    if problem:
        return problem
    if not words.strip():
        return sources.overview(catalog, scope, hidden)
    text = _tools(sources, catalog, query, words, principal, hidden, scope, limit, detail)
    # Resources: a result kind of their own (catalog/resources.py), for the servers in scope the user may read.
    reach = {s: (e.resources, e.templates) for s, e in sources.extras.items() if scope is None or s in scope}
    offered = {s: found for s, found in reach.items() if not principal.rules.server_refusal(s)}
    return text + render_resources(find_resources(words, offered, limit))


def _tools(
    sources: Sources,
    catalog: Catalog,
    query: str,
    words: str,
    principal: Principal,
    hidden: frozenset[str],
    scope: set[str] | None,
    limit: int,
    detail: Detail,
) -> str:
    """The tools part of a reply: stubs of the hits, one group per intent of a task, or "nothing fits"."""
    index = sources.index(catalog)
    groups = index.search_intents(words, servers=scope, limit=limit, exclude=hidden)
    hits, intents = groups[0][1], groups[1:]
    hint = did_you_mean(catalog, words, hits, hidden)
    if not hits and not any(found for _, found in intents):
        return f"No tools match {query!r}.{hint}\n\n" + sources.overview(catalog, scope, hidden)
    if not index.understood(words):  # "asdkjh qwpeoi": whatever ranks first is noise (`search/fit.py`)
        return (
            f"No word of {query!r} is one these tools' descriptions use or the search model knows (a typo?): say "
            f"what the tool does in plain words.{hint}\n\n" + sources.overview(catalog, scope, hidden)
        )
    if intents:
        text, shown = task_reply(groups, limit, detail)
        return text + principal.rules.approval_note(
            [entry for name in shown if (entry := catalog.get(name)) is not None]
        )
    if index.weak(words, hits):
        visible = [name for name in visible_servers(catalog, hidden) if scope is None or name in scope]
        closest = index.closest_servers(words, visible)
        about = {name: config.description for name, config in sources.servers.items() if config.description}
        seen = Catalog(entry for entry in catalog if entry.qualified_name not in hidden)
        return nothing_fits_reply(query, closest, hits, seen, about)
    entries = [hit.entry for hit in hits]
    observed = sources.shapes.observed(entries)
    if detail == "auto":
        stubs = render_stubs(entries, detail="full", full_first=FULL_HITS, observed=observed)
    else:
        stubs = render_stubs(entries, detail=detail, observed=observed)
    where = f" on {', '.join(sorted(scope))}" if scope is not None else ""
    return (
        f"{len(hits)} of {plural(len(catalog) - len(hidden), 'tool')} match{where}.{hint} Call them in execute_code "
        f"as `await server.tool(...)`.{principal.rules.approval_note(entries)}"
        f"{availability(entries, sources.statuses)}\n\n{stubs}"
    )
