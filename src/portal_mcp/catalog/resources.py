"""Resources in `search_api` replies: a result kind of its own, found by the words of their names, titles,
descriptions and URIs, listed after the tools with how agent code reads them (`await server.read_resource(uri)`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mcp_types import Resource, ResourceTemplate

from portal_mcp.catalog.search.words import STOPWORDS, stem, tokenize

MIN_SHARE = 0.5
"""The share of the query's words a resource must have to be shown."""

Offered = Mapping[str, tuple[Sequence[Resource], Sequence[ResourceTemplate]]]
"""server -> its resources and resource templates (what the searching user may reach)."""


def _words(text: str) -> set[str]:
    return {stem(token) for token in tokenize(text) if token not in STOPWORDS}


def find_resources(query: str, offered: Offered, limit: int) -> list[tuple[str, Resource | ResourceTemplate]]:
    """The `limit` resources best matching `query` (at least `MIN_SHARE` of its words), best first."""
    wanted = _words(query)
    if not wanted:
        return []
    scored = []
    for server, (resources, templates) in offered.items():
        items: list[Resource | ResourceTemplate] = [*resources, *templates]
        for item in items:
            uri = item.uri if isinstance(item, Resource) else item.uri_template
            have = _words(" ".join(filter(None, [item.name, item.title, item.description, uri])))
            share = len(wanted & have) / len(wanted)
            if share >= MIN_SHARE:
                scored.append((-share, server, item))
    scored.sort(key=lambda hit: hit[0])
    return [(server, item) for _, server, item in scored[:limit]]


def render_resources(hits: Sequence[tuple[str, Resource | ResourceTemplate]]) -> str:
    """The reply's resources section ("" when there are none)."""
    if not hits:
        return ""
    lines = [
        "",
        "",
        "Resources (read in execute_code with `await server.read_resource(uri)`; fill a template's {...}):",
    ]
    for server, item in hits:
        uri = item.uri if isinstance(item, Resource) else item.uri_template
        about = f": {item.description.splitlines()[0][:120]}" if item.description else ""
        mime = f" [{item.mime_type}]" if item.mime_type else ""
        lines.append(f"- {server}: {uri!r} {item.title or item.name}{mime}{about}")
    return "\n".join(lines)
