"""`Indexes`: the search index of the current catalog, built once per catalog.

A `Catalog` is immutable (a listing change builds a new one), so an index belongs to one catalog object. Builds may
run in worker threads (at 10,000 tools one takes seconds; the MCP surface builds off the event loop): a build keeps
its catalog, so a build that finishes after the catalog changed again is never served for the newer catalog. One
build at a time: the searches that arrive during a build wait for it instead of each building the same index (N
searches right after a change would otherwise cost N builds' CPU and memory at once).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.search.embeddings import EmbeddingCache
from portal_mcp.catalog.search.index import SearchIndex
from portal_mcp.catalog.search.stored import IndexStore
from portal_mcp.config import ServerConfig


class Indexes:
    """The index of the latest catalog asked for; `get` builds it on first use after every change."""

    def __init__(
        self, embeddings: EmbeddingCache | None, servers: Mapping[str, ServerConfig], store: IndexStore | None = None
    ) -> None:
        self._embeddings = embeddings
        self._servers = servers
        self._store = store
        self._built: tuple[Catalog, SearchIndex] | None = None
        self._building = threading.Lock()

    def ready(self, catalog: Catalog) -> bool:
        """Whether `catalog`'s index is built (a search over it answers without building first)."""
        return self._built is not None and self._built[0] is catalog

    def get(self, catalog: Catalog) -> SearchIndex:
        built = self._built
        if built is not None and built[0] is catalog:
            return built[1]
        with self._building:
            built = self._built  # a build finished while this thread waited may be the one it needs
            if built is None or built[0] is not catalog:
                built = (catalog, SearchIndex(catalog, self._embeddings, self._servers, self._store))
                self._built = built  # one assignment: a reader sees the old pair or the new one
        return built[1]
