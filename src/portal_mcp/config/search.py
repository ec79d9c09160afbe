"""portal.yaml's search settings: `search:` (words and meaning) and each server's `search:` curation."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from mcp_types import Tool
from pydantic import Field

from portal_mcp.config.base import _Model


class ToolCuration(_Model):
    """How search and the stubs present one tool (never sent downstream: a call still goes by the server's name)."""

    description: str | None = Field(default=None, description="replaces the server's description in search and stubs")
    keywords: list[str] = Field(default_factory=list, description="extra words the tool is found by")
    aliases: list[str] = Field(default_factory=list, description="other names the tool is found by exactly")


class ServerCuration(_Model):
    """An operator's help for search: words for all of a server's tools, names for the server, per-tool curation."""

    keywords: list[str] = Field(default_factory=list, description="extra words every tool of the server is found by")
    aliases: list[str] = Field(default_factory=list, description="words that name this server in a query")
    tools: dict[str, ToolCuration] = Field(default_factory=dict, description="tool name -> its curation")

    def apply(self, tools: Sequence[Tool]) -> list[Tool]:
        """The tools with their description overrides (the rest unchanged)."""
        return [
            tool.model_copy(update={"description": curation.description})
            if (curation := self.tools.get(tool.name)) is not None and curation.description is not None
            else tool
            for tool in tools
        ]

    def unmatched(self, server: str, names: Collection[str]) -> list[str]:
        """Curated tool names that are not among `names` (the tools the server lists)."""
        return [
            f"`servers.{server}.search.tools` key {name!r} names no tool of {server}"
            for name in self.tools
            if name not in names
        ]


class SearchConfig(_Model):
    """How `search_api` ranks: words (BM25) fused with meaning (a static embedding model), or words only."""

    semantic: bool = Field(default=True, description="fuse an embedding model's similarity with the word ranking")
    model: str | None = Field(
        default=None,
        description="a model2vec model: a folder, or a hub name (downloads when online); default: the bundled one",
    )
    cache: Path | None = Field(
        default=None,
        description="folder of cached tool embeddings and search indexes (default: ~/.cache/portal-mcp/embeddings)",
    )
