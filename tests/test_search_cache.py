"""`Indexes`: one search index per catalog, built once even when many searches ask for it at the same moment."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from mcp_types import Tool

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.search import SearchIndex
from portal_mcp.catalog.search.cache import Indexes

THREADS = 6


def catalog(count: int) -> Catalog:
    tools = [
        Tool(
            name=f"sync_record_{number}",
            description=f"Sync record {number} of a workspace: its owner, its history and its links.",
            input_schema={"type": "object", "properties": {"record": {"type": "string"}}},
        )
        for number in range(count)
    ]
    return Catalog.build({"big": tools})


def test_searches_arriving_together_after_a_change_share_one_build_of_the_new_index() -> None:
    # Right after a catalog change every search finds the index stale. Each building its own copy would cost N
    # builds' CPU and memory at once (seconds each at 10,000 tools); they wait for one build and share it.
    indexes = Indexes(None, {})
    old, new = catalog(10), catalog(3000)
    first = indexes.get(old)
    start = threading.Barrier(THREADS)

    def search() -> SearchIndex:
        start.wait()
        return indexes.get(new)

    with ThreadPoolExecutor(THREADS) as pool:
        got = list(pool.map(lambda _: search(), range(THREADS)))
    assert len({id(index) for index in got}) == 1
    assert got[0] is not first and indexes.ready(new) and not indexes.ready(old)
    assert indexes.get(new) is got[0]
