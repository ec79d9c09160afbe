"""Siblings in search: a server's tools over different objects are told apart by the rare words of their names
the query says as written; the server's best score stays, and a query saying no rare word ranks as before."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.search import SearchIndex, siblings
from portal_mcp.catalog.search.siblings import object_words, rare_words
from portal_mcp.catalog.snapshot import load_snapshot

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
SERVERS = ("sqlite", "slack", "filesystem", "time", "gitlab")
BOOST = siblings.SIBLING_BOOST


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.build({name: load_snapshot(SCHEMAS / f"{name}.json") for name in SERVERS})


def ranked(catalog: Catalog, query: str, boost: float, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    monkeypatch.setattr(siblings, "SIBLING_BOOST", boost)
    return [(hit.entry.qualified_name, hit.score) for hit in SearchIndex(catalog).search(query, limit=5)]


def test_a_tools_object_words_are_its_names_words_less_its_verb_and_its_servers_words(catalog: Catalog) -> None:
    tools = {entry.name: entry for entry in catalog}
    assert object_words(tools["list_tables"], {"sqlite"}) == {"tables"}
    assert object_words(tools["slack_get_channel_history"], {"slack"}) == {"channel", "history"}


def test_a_word_counts_by_how_few_of_its_servers_tools_carry_it_and_not_past_the_rare_count(catalog: Catalog) -> None:
    entries = list(catalog)
    rare = dict(zip([entry.qualified_name for entry in entries], rare_words(entries, {}), strict=True))
    sqlite = sum(1 for entry in entries if entry.server == "sqlite")
    assert rare["sqlite.list_tables"]["tables"] == pytest.approx(math.log(sqlite / 1))
    # `file` is in most of the filesystem server's names: its domain, nobody's object.
    assert all("file" not in rare[entry.qualified_name] for entry in entries if entry.server == "filesystem")


def test_the_sibling_whose_rare_name_word_the_query_says_comes_first_and_the_best_score_stays(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = ranked(catalog, "the tables of my sqlite file", 0.0, monkeypatch)
    after = ranked(catalog, "the tables of my sqlite file", BOOST, monkeypatch)
    assert before[0][0] == "sqlite.describe_table"
    assert after[0][0] == "sqlite.list_tables"
    assert after[0][1] == pytest.approx(before[0][1])


@pytest.mark.parametrize("query", ["read the file notes.txt", "what time is it in Tokyo"])
def test_a_query_saying_no_rare_word_ranks_as_before(
    catalog: Catalog, query: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ranked(catalog, query, BOOST, monkeypatch) == ranked(catalog, query, 0.0, monkeypatch)
