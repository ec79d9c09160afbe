"""Search by meaning: the bundled embedding model, its on-disk cache, and the word-only fallback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mcp_types import Tool

from portal_mcp.catalog import Catalog
from portal_mcp.config import parse_config
from portal_mcp.embeddings import EmbeddingCache, Encoder
from portal_mcp.errors import SearchModelError
from portal_mcp.portal import Portal, search_embeddings
from portal_mcp.search import SearchIndex


def tool(name: str, description: str) -> Tool:
    return Tool(name=name, description=description, input_schema={"type": "object", "properties": {}})


CATALOG = Catalog.build(
    {
        "bilibili": [tool("get_popular_videos", "Get the ranking of popular videos on Bilibili.")],
        "filesystem": [
            tool("write_file", "Create a new file or completely overwrite an existing file with new content."),
            tool("read_file", "Read the complete contents of a file."),
        ],
        "weather": [tool("get_forecast", "Get the weather forecast for a location.")],
        "stripe": [tool("create_refund", "Refund a charge that has been previously created.")],
    }
)


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder.load()


def names(index: SearchIndex, query: str, limit: int = 3) -> list[str]:
    return [hit.entry.qualified_name for hit in index.search(query, limit=limit)]


def test_a_query_sharing_no_word_with_the_tool_finds_it_by_meaning(encoder: Encoder) -> None:
    index = SearchIndex(CATALOG, EmbeddingCache(encoder, None))
    assert names(index, "will it rain tomorrow in Lisbon", 1) == ["weather.get_forecast"]
    assert names(SearchIndex(CATALOG), "will it rain tomorrow in Lisbon") == []


def test_a_second_start_embeds_nothing_and_a_changed_tool_is_embedded_alone(encoder: Encoder, tmp_path: Path) -> None:
    first = EmbeddingCache(encoder, tmp_path)
    SearchIndex(CATALOG, first)
    assert first.embedded == len(CATALOG)
    again = EmbeddingCache(encoder, tmp_path)
    warm = SearchIndex(CATALOG, again)
    assert again.embedded == 0
    assert names(warm, "will it rain tomorrow") == names(SearchIndex(CATALOG, first), "will it rain tomorrow")
    changed = CATALOG.replace_server("weather", [tool("get_forecast", "Daily forecast: rain, wind, temperature.")])
    after = EmbeddingCache(encoder, tmp_path)
    SearchIndex(changed, after)
    assert after.embedded == 1


def test_an_unreadable_cache_file_is_rebuilt(encoder: Encoder, tmp_path: Path) -> None:
    cache = EmbeddingCache(encoder, tmp_path)
    assert cache.path is not None
    cache.path.write_bytes(b"not an npz file")
    SearchIndex(CATALOG, cache)
    assert cache.embedded == len(CATALOG)
    assert EmbeddingCache(encoder, tmp_path).vectors(["Read the complete contents of a file."]).shape == (
        1,
        encoder.dims,
    )


def test_a_model_that_cannot_load_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SearchModelError) as caught:
        Encoder.load(tmp_path / "no-such-model")
    assert caught.value.model == str(tmp_path / "no-such-model")
    assert "semantic: false" in str(caught.value)


def test_the_portal_falls_back_to_words_with_one_warning_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = parse_config("search: {model: ./missing-model}\n", source="portal.yaml", base_dir=tmp_path, environ={})
    assert config.search.model == str(tmp_path / "missing-model")
    with caplog.at_level(logging.WARNING, logger="portal_mcp.portal"):
        assert search_embeddings(config.search) is None
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "missing-model" in warnings[0].getMessage() and "searching by words only" in warnings[0].getMessage()


def test_semantic_false_searches_by_words_only_and_loads_no_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = parse_config(
        "search: {semantic: false, model: ./missing}\n", source="p.yaml", base_dir=tmp_path, environ={}
    )
    with caplog.at_level(logging.WARNING):
        assert search_embeddings(config.search) is None
    assert caplog.records == []


async def test_a_portal_ranks_by_meaning_and_keeps_the_cache_where_the_config_says(tmp_path: Path) -> None:
    config = parse_config(
        f"search: {{cache: ./vectors}}\nservers:\n  time:\n    snapshot: {SNAPSHOT}\n",
        source="portal.yaml",
        base_dir=tmp_path,
        environ={},
    )
    async with Portal.open(config, user="tester") as portal:
        assert portal.embeddings is not None and portal.embeddings.embedded == len(portal.catalog)
        assert "time.get_current_time" in portal.search_api("what hour is it in Tokyo right now", limit=1)
    assert list((tmp_path / "vectors").glob("*.npz"))


SNAPSHOT = Path(__file__).resolve().parents[1] / "schemas" / "time.json"
