"""What search_api says besides stubs: the overview of servers, query filters (server:, owner:, tag:), the
did-you-mean for a tool name that does not exist, and notes on servers that are not connected now."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence

from portal_mcp.catalog.model import Catalog, ToolEntry
from portal_mcp.catalog.search import SearchHit
from portal_mcp.catalog.status import ServerStatus
from portal_mcp.config import ServerConfig
from portal_mcp.naming import plural

_FILTER = re.compile(r"(?<!\S)(owner|tag|server):(\S+)")


def overview(
    catalog: Catalog,
    servers: Mapping[str, ServerConfig],
    statuses: Sequence[ServerStatus],
    scope: set[str] | None = None,
    hidden: frozenset[str] = frozenset(),
) -> str:
    """Servers with their descriptions, owners and tool counts (and tool names when one server is asked for);
    `hidden` tools (the caller's policy forbids them) are left out, and servers with none left too."""
    visible = {
        name: [entry for entry in catalog.by_server(name) if entry.qualified_name not in hidden]
        for name in catalog.servers()
        if scope is None or name in scope
    }
    names = [name for name, entries in visible.items() if entries]
    total = sum(len(visible[name]) for name in names)
    lines = [f"{plural(total, 'tool')} on {plural(len(names), 'server')}:"]
    for name in names:
        entries = visible[name]
        config = servers.get(name)
        about = [f"- {name} ({plural(len(entries), 'tool')})"]
        if config is not None:
            if config.description:
                about.append(f": {config.description}")
            extras = [f"owner: {config.owner}"] if config.owner else []
            extras += [f"tags: {', '.join(config.tags)}"] if config.tags else []
            extras += [f"docs: {config.docs}"] if config.docs else []
            if extras:
                about.append(f" [{'; '.join(extras)}]")
        lines.append("".join(about))
        if len(names) == 1:
            lines.extend(f"  - {entry.qualified_name}" for entry in entries)
    connecting = [s for s in statuses if s.state == "connecting"]
    if connecting:  # until each is up: its last known tools, and a call waits for it
        lines.append("Still connecting: " + ", ".join(f"{s.name} ({s.for_seconds:.0f} s)" for s in connecting))
    down = [s for s in statuses if s.state in ("failed", "down")]
    if down:
        lines.append("Unavailable: " + ", ".join(f"{s.name} ({s.error}{retry(s)})" for s in down))
    lines.append(
        "Search with words for what you need, e.g. search_api(query='create an issue'); "
        "narrow with server:NAME, owner:NAME or tag:NAME in the query."
    )
    return "\n".join(lines)


def scope_of(
    catalog: Catalog,
    servers: Mapping[str, ServerConfig],
    filters: list[tuple[str, str]],
    hidden: frozenset[str] = frozenset(),
) -> tuple[set[str] | None, str]:
    """The servers the filters leave (None: all), or a message saying which filter matched nothing. A server the
    caller sees no tool of (`hidden`) is not there for them: never matched, never named."""
    if not filters:  # nearly every search: no walk over the catalog for the servers the caller sees
        return None, ""
    scope: set[str] | None = None
    seen = visible_servers(catalog, hidden)
    for key, value in filters:
        matching = {name for name in seen if _server_matches(servers, name, key, value)}
        if not matching:
            known = ", ".join(seen) or "none"
            return None, f"Unknown {key} {value!r}. Servers: {known}. Send an empty query for an overview."
        scope = matching if scope is None else scope & matching
    return scope, ""


def _server_matches(servers: Mapping[str, ServerConfig], name: str, key: str, value: str) -> bool:
    config = servers.get(name)
    if key == "server":
        return name == value
    if config is None:
        return False
    if key == "owner":
        return (config.owner or "").lower() == value.lower()
    return value.lower() in (tag.lower() for tag in config.tags)


def did_you_mean(catalog: Catalog, words: str, hits: list[SearchHit], hidden: frozenset[str] = frozenset()) -> str:
    """A hint when the query looks like a tool name that does not exist."""
    name = words.strip()
    if " " in name or not any(mark in name for mark in "._-") or name in catalog:
        return ""
    if any(name in (hit.entry.name, hit.entry.python_name, hit.entry.qualified_name) for hit in hits):
        return ""
    near = [match for match in catalog.close_matches(name) if match not in hidden] or difflib.get_close_matches(
        name, [entry.python_name for entry in catalog if entry.qualified_name not in hidden], n=3, cutoff=0.7
    )
    return f" No tool is named {name!r}; did you mean {', '.join(near)}?" if near else ""


def visible_in(catalog: Catalog, server: str, hidden: frozenset[str]) -> bool:
    """Whether the caller sees any tool of `server`."""
    return any(entry.qualified_name not in hidden for entry in catalog.by_server(server))


def visible_servers(catalog: Catalog, hidden: frozenset[str]) -> list[str]:
    """The servers the caller sees a tool of, in catalog order."""
    return [name for name in catalog.servers() if visible_in(catalog, name, hidden)]


def availability(entries: Sequence[ToolEntry], statuses: Sequence[ServerStatus]) -> str:
    """A note on the servers of `entries` not connected now (their tools are the last known list)."""
    servers = {entry.server for entry in entries}
    notes = [
        f"{s.name} is still connecting ({s.for_seconds:.0f} s; a call waits for it)"
        if s.state == "connecting"
        else f"{s.name} is down ({retry(s).lstrip('; ') or 'not retried'})"
        for s in statuses
        if s.name in servers and s.state in ("connecting", "failed", "down")
    ]
    return f" Not connected now: {'; '.join(notes)}; the stubs below are its last known tools." if notes else ""


def retry(status: ServerStatus) -> str:
    return f"; retrying in {status.retry_in:.0f} s" if status.retry_in is not None else ""


def split_filters(query: str) -> tuple[str, list[tuple[str, str]]]:
    """`"refund owner:payments"` -> `("refund", [("owner", "payments")])`."""
    filters = [(key, value) for key, value in _FILTER.findall(query)]
    return _FILTER.sub(" ", query).strip(), filters
