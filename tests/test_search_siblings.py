"""Siblings in search: a server's tools over different objects are told apart by the rare words of their names
the query says as written. Only one sibling saying every rare word of its name, ahead of all others, is lifted; the
server's best score stays, and a query saying no rare word ranks as before."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
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


def reranked(rare: list[dict[str, float]], said: set[str], meant: frozenset[str] = frozenset()) -> list[float]:
    """Three tools of one server scored 1.0, 0.97, 0.8 (the first is its top), reranked by `siblings.rerank`."""
    scores = np.array([1.0, 0.97, 0.8])
    siblings.rerank(scores, np.arange(3), np.zeros(3, dtype=np.int64), rare, frozenset(said), meant)
    return [round(float(score), 6) for score in scores]


def test_the_one_sibling_saying_every_rare_word_of_its_name_is_lifted_to_the_servers_best_score() -> None:
    # It gains 0.07 (all the rare weight said), then the server moves back by 0.04: its best score stays 1.0.
    scores = reranked([{"buckets": 1.0}, {"bucket": 1.0, "metadata": 2.0}, {}], {"bucket", "metadata"})
    assert scores == pytest.approx([0.96, 1.0, 0.76])


@pytest.mark.parametrize(
    ("rare", "said"),
    [
        # "document" is not said: `get_managed_policy_document` is not what "a managed policy" names.
        ([{}, {"managed": 2.0, "document": 1.0}, {}], {"managed"}),
        # Two siblings say as much: no clear winner.
        ([{}, {"tables": 1.0}, {"buckets": 1.0}], {"tables", "buckets"}),
        # The top says as much as the sibling.
        ([{"web": 2.0}, {"search": 2.0}, {}], {"web", "search"}),
    ],
)
def test_without_one_clear_sibling_saying_its_whole_name_nothing_moves(
    rare: list[dict[str, float]], said: set[str]
) -> None:
    assert reranked(rare, said) == [1.0, 0.97, 0.8]


def test_the_top_keeps_its_place_when_the_query_asks_for_its_whole_name_by_a_synonym() -> None:
    rare = [{"deploy": 1.0, "edge": 1.0, "function": 1.0}, {"edge": 1.0, "function": 1.0}, {}]
    said = {"ship", "edge", "function"}
    assert reranked(rare, said)[1] == 1.0
    # "ship" means deploy (the index's related words): the top is asked for whole, and it weighs more.
    assert reranked(rare, said, frozenset({"ship", "deploy", "edg", "funct"})) == [1.0, 0.97, 0.8]
