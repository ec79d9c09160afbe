"""The built search index kept on disk: a restart on the same catalog reads it back; any change builds anew."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from mcp_types import Tool

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.search import SearchIndex
from portal_mcp.catalog.search.embeddings import EmbeddingCache, Encoder
from portal_mcp.catalog.search.stored import KEEP, IndexStore
from portal_mcp.config import PortalConfig, parse_config
from portal_mcp.portal import Portal


def tool(name: str, description: str) -> Tool:
    return Tool(name=name, description=description, input_schema={"type": "object", "properties": {}})


CATALOG = Catalog.build(
    {
        "jira": [
            tool("jira_create_issue", "Create a new Jira issue."),
            tool("jira_batch_create_issues", "Create several Jira issues at once."),
        ],
        "filesystem": [
            tool("write_file", "Create a new file or completely overwrite an existing file with new content."),
            tool("delete_file", "Remove a file from the disk."),
        ],
        "weather": [tool("get_forecast", "Get the weather forecast for a location.")],
    }
)
QUERIES = ("open a ticket in jira", "will it rain tomorrow", "save it as markdown", "get rid of the old file")


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder.load()


def rankings(index: SearchIndex) -> list[list[tuple[str, float]]]:
    return [[(hit.entry.qualified_name, hit.score) for hit in index.search(query, limit=5)] for query in QUERIES]


def test_a_restart_on_the_same_catalog_reads_the_index_back_and_ranks_exactly_as_built(
    encoder: Encoder, tmp_path: Path
) -> None:
    first = IndexStore(tmp_path)
    built = SearchIndex(CATALOG, EmbeddingCache(encoder, tmp_path), store=first)
    assert first.loaded == 0 and len(list(tmp_path.glob("index-*.npz"))) == 1
    again, vectors = IndexStore(tmp_path), EmbeddingCache(encoder, tmp_path)
    read = SearchIndex(CATALOG, vectors, store=again)
    assert again.loaded == 1 and vectors.embedded == 0
    assert rankings(read) == rankings(built)
    assert rankings(read)[0][0][0] == "jira.jira_create_issue"


def test_words_only_indexes_are_kept_too_under_their_own_name(encoder: Encoder, tmp_path: Path) -> None:
    SearchIndex(CATALOG, EmbeddingCache(encoder, tmp_path), store=IndexStore(tmp_path))
    words = IndexStore(tmp_path)
    built = SearchIndex(CATALOG, store=words)
    assert words.loaded == 0
    again = IndexStore(tmp_path)
    assert rankings(SearchIndex(CATALOG, store=again)) == rankings(built) and again.loaded == 1


def test_a_changed_tool_or_curation_builds_a_new_index(encoder: Encoder, tmp_path: Path) -> None:
    SearchIndex(CATALOG, EmbeddingCache(encoder, tmp_path), store=IndexStore(tmp_path))
    changed = CATALOG.replace_server("weather", [tool("get_forecast", "Daily forecast: rain, wind, temperature.")])
    store = IndexStore(tmp_path)
    SearchIndex(changed, EmbeddingCache(encoder, tmp_path), store=store)
    assert store.loaded == 0
    config = parse_config(
        "servers:\n  weather:\n    command: x\n    search: {keywords: [meteo]}\n",
        source="portal.yaml",
        base_dir=tmp_path,
        environ={},
    )
    curated = IndexStore(tmp_path)
    index = SearchIndex(CATALOG, EmbeddingCache(encoder, tmp_path), config.servers, store=curated)
    assert curated.loaded == 0
    assert index.search("meteo", limit=1)[0].entry.qualified_name == "weather.get_forecast"


def test_an_unreadable_index_file_is_rebuilt_with_a_warning(
    encoder: Encoder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = IndexStore(tmp_path)
    SearchIndex(CATALOG, store=store)
    (path,) = tmp_path.glob("index-*.npz")
    path.write_bytes(b"not an npz file")
    again = IndexStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="portal_mcp.catalog.search.stored"):
        index = SearchIndex(CATALOG, store=again)
    assert again.loaded == 0 and "unreadable search index" in caplog.text
    assert index.search("open a ticket in jira", limit=1)[0].entry.qualified_name == "jira.jira_create_issue"
    assert IndexStore(tmp_path).load(again.key(list(CATALOG), {}, None), len(CATALOG), 3) is not None


def test_a_read_only_folder_still_searches_from_memory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING, logger="portal_mcp.catalog.search.stored"):
        index = SearchIndex(CATALOG, store=IndexStore(blocked / "index"))
    assert "cannot write the search index" in caplog.text
    assert index.search("weather forecast", limit=1)[0].entry.qualified_name == "weather.get_forecast"


def test_only_the_newest_indexes_are_kept(tmp_path: Path) -> None:
    for number in range(KEEP + 2):
        catalog = CATALOG.replace_server("weather", [tool("get_forecast", f"Forecast number {number}.")])
        SearchIndex(catalog, store=IndexStore(tmp_path))
        for path in tmp_path.glob("index-*.npz"):  # the next one is newer, whatever the clock's resolution
            os.utime(path, (path.stat().st_mtime - 10, path.stat().st_mtime - 10))
    assert len(list(tmp_path.glob("index-*.npz"))) == KEEP


async def test_a_second_portal_start_embeds_nothing_and_builds_no_index(time_portal_config: PortalConfig) -> None:
    config = time_portal_config
    async with Portal.open(config) as portal:
        assert portal.index_store.loaded == 0
        first = portal.search_api("what hour is it in Tokyo right now", portal.local, limit=2)
    async with Portal.open(config) as portal:
        assert portal.embeddings is not None and portal.embeddings.embedded == 0
        assert portal.index_store.loaded == 1
        assert portal.search_api("what hour is it in Tokyo right now", portal.local, limit=2) == first
