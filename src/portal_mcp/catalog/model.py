"""The namespaced catalog: every downstream tool the agent may use, as a `ToolEntry`.

A catalog is an immutable value. When a server's listing changes the portal builds a new catalog and swaps it in,
so readers (search, stubs, the bridge) never see a half-updated one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mcp_types import Tool

from portal_mcp.config import ToolFilter
from portal_mcp.naming import assign_python_names, qualified_name


@dataclass(frozen=True)
class ToolEntry:
    """One downstream tool as the portal knows it."""

    server: str
    name: str
    """The tool's name on its server (what `tools/call` needs)."""
    python_name: str
    """The attribute name in agent code, per `naming`."""
    description: str
    input_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any] | None = None
    title: str | None = None
    annotations: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """MCP ToolAnnotations as a plain dict with wire names (`readOnlyHint`, `destructiveHint`, ...)."""

    @property
    def qualified_name(self) -> str:
        return qualified_name(self.server, self.python_name)

    @classmethod
    def from_tool(cls, server: str, python_name: str, tool: Tool) -> ToolEntry:
        annotations = tool.annotations.model_dump(by_alias=True, exclude_none=True) if tool.annotations else {}
        return cls(
            server=server,
            name=tool.name,
            python_name=python_name,
            description=(tool.description or "").strip(),
            input_schema=tool.input_schema or {"type": "object"},
            output_schema=tool.output_schema,
            title=tool.title or (tool.annotations.title if tool.annotations else None),
            annotations=annotations,
        )


class Catalog:
    """All tools of all servers, keyed by qualified name, in config order then listing order."""

    def __init__(self, entries: Iterable[ToolEntry] = ()) -> None:
        self._entries: dict[str, ToolEntry] = {}
        for entry in entries:
            self._entries[entry.qualified_name] = entry
        # Grouped once: the catalog never changes, and every run asks for its namespaces.
        self._by_server: dict[str, list[ToolEntry]] = {}
        for entry in self._entries.values():
            self._by_server.setdefault(entry.server, []).append(entry)
        self._namespaces: Mapping[str, tuple[str, ...]] = MappingProxyType(
            {server: tuple(entry.python_name for entry in group) for server, group in self._by_server.items()}
        )

    @classmethod
    def build(cls, listings: Mapping[str, Sequence[Tool]], filters: Mapping[str, ToolFilter] | None = None) -> Catalog:
        """Namespace each server's tools, apply its allow/deny filter and assign collision-free python names."""
        filters = filters or {}
        entries: list[ToolEntry] = []
        for server, tools in listings.items():
            tool_filter = filters.get(server, ToolFilter())
            kept = [tool for tool in tools if tool_filter.permits(tool.name)]
            # A server listing the same name twice is broken; keep the first so calls stay unambiguous.
            unique: dict[str, Tool] = {}
            for tool in kept:
                unique.setdefault(tool.name, tool)
            names = assign_python_names(unique)
            entries.extend(ToolEntry.from_tool(server, names[name], tool) for name, tool in unique.items())
        return cls(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[ToolEntry]:
        return iter(self._entries.values())

    def __contains__(self, qualified: object) -> bool:
        return qualified in self._entries

    @property
    def entries(self) -> list[ToolEntry]:
        return list(self._entries.values())

    def get(self, qualified: str) -> ToolEntry | None:
        return self._entries.get(qualified)

    def servers(self) -> list[str]:
        return list(self._by_server)

    def by_server(self, server: str) -> list[ToolEntry]:
        return list(self._by_server.get(server, ()))

    def namespaces(self) -> Mapping[str, tuple[str, ...]]:
        """server -> python names: what the sandbox needs to build its namespace objects."""
        return self._namespaces

    def close_matches(self, qualified: str, limit: int = 3) -> list[str]:
        """Qualified names that look like `qualified`, for "did you mean" hints."""
        return difflib.get_close_matches(qualified, list(self._entries), n=limit, cutoff=0.6)

    def replace_server(self, server: str, tools: Sequence[Tool], tool_filter: ToolFilter | None = None) -> Catalog:
        """A new catalog with `server`'s tools replaced by `tools`, other servers untouched and in order."""
        fresh = Catalog.build({server: tools}, {server: tool_filter or ToolFilter()}).by_server(server)
        seen = False
        merged: list[ToolEntry] = []
        for entry in self._entries.values():
            if entry.server == server:
                if not seen:
                    merged.extend(fresh)
                    seen = True
                continue
            merged.append(entry)
        if not seen:
            merged.extend(fresh)
        return Catalog(merged)
