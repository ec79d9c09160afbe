"""Siblings: tools of one server over different objects, told apart by the words only a few of them carry.

A server's tools share its domain, and often its verbs: `get_pod_logs` and `get_k8s_events`, `list_buckets` and
`get_bucket_metadata`, `add_issue_comment` and `merge_pull_request`. Meaning and BM25 then score them close, and
the tie goes to whichever description happens to be nearer to the query. What tells them apart is the object each
is about: the words of its name, less its server's words and its verb. A word counts as much as it is rare among
the server's tools (`log(n / k)` for `k` of its `n` tools carrying it), and not at all when more than `RARE_COUNT`
carry it (`dag` in Airflow, `chart` in a chart server: they name the server's domain, not one tool's object).

Among the index's best candidates, each server's tools gain for the rare words the query says as written (not by
stem: "metadata of the bucket" is `get_bucket_metadata`, while "buckets" only shares a stem with it): up to
`SIBLING_BOOST` times the best score, for the weight of those words a tool carries against the weight any of its
sibling candidates carries. The gain only reorders a server's tools: its best candidate keeps its score, so other
servers' tools neither gain nor lose places against it. A query saying none of the rare words changes nothing.

Measured on the train splits (all sets, plain, large and among the shared corpus): metatool_tasks gains 0.05
recall@1 and metatool_tasks_corpus 0.03, but own loses 0.02 (`brave_web_search` over `brave_summarizer` for "an AI
summary of web search results": "web" is said, "summarizer" is not) and corpus 0.01. Parameter names as object
words, or a gain lifting a server above others, lost more.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from portal_mcp.catalog.model import ToolEntry
from portal_mcp.catalog.search.actions import ACTIONS
from portal_mcp.catalog.search.words import forms, tokenize

RARE_COUNT = 5
"""A word more than this many of a server's tools carry names its domain, not one tool's object."""
SIBLING_BOOST = 0.1
"""The most a candidate gains, as a share of the best score, for carrying all the query's rare words its siblings do
(0.15 and 0.2 lose more of own's recall@1 on the train splits)."""

RareWords = Sequence[Mapping[str, float]]
"""Per tool, its rare object words as written (lowercased) and their weights within its server."""


def object_words(entry: ToolEntry, server_words: Collection[str]) -> frozenset[str]:
    """What a tool's name says it is about, as written: its words less stopwords, verbs (`actions.ACTIONS`) and
    words whose token names its server (`server_words`)."""
    words = set()
    for word in forms(entry.name.replace("-", "_")):
        tokens = tokenize(word)
        if tokens and tokens[0] not in server_words and tokens[0] not in ACTIONS:
            words.add(word)
    return frozenset(words)


def rare_words(entries: Sequence[ToolEntry], server_words: Mapping[str, Collection[str]]) -> list[dict[str, float]]:
    """Per tool, its object words carried by at most `RARE_COUNT` of its server's tools (and not all), weighted
    `log(n / k)`; `server_words` holds the tokens naming each server (no tool's object)."""
    words = [object_words(entry, server_words.get(entry.server, ())) for entry in entries]
    tools = Counter(entry.server for entry in entries)
    carriers = Counter((entry.server, word) for entry, own in zip(entries, words, strict=True) for word in own)
    rare: list[dict[str, float]] = []
    for entry, own in zip(entries, words, strict=True):
        n = tools[entry.server]
        counts = {word: carriers[entry.server, word] for word in own}
        rare.append({word: math.log(n / k) for word, k in sorted(counts.items()) if k <= RARE_COUNT and k < n})
    return rare


def rerank(
    scores: np.ndarray[Any, np.dtype[np.float64]],
    candidates: np.ndarray[Any, Any],
    server_of: np.ndarray[Any, Any],
    rare: RareWords,
    said: Collection[str],
) -> None:
    """Reorder, in place, each server's tools among `candidates` by the rare words of `said` (the query's words as
    written, `words.forms`) each carries against those its sibling candidates carry; a server's best score stays."""
    carried: dict[int, float] = {}
    union: dict[int, dict[str, float]] = {}
    for i in candidates:
        found = {word: weight for word, weight in rare[int(i)].items() if word in said}
        if found:
            carried[int(i)] = sum(found.values())
            union.setdefault(int(server_of[i]), {}).update(found)
    if not carried:
        return
    best = float(scores[candidates].max())
    members = candidates[np.isin(server_of[candidates], list(union))]
    for server, words in union.items():
        group = members[server_of[members] == server]
        if len(group) < 2:
            continue
        top = float(scores[group].max())
        total = sum(words.values())
        for i in group:
            scores[i] += SIBLING_BOOST * best * carried.get(int(i), 0.0) / total
        scores[group] -= float(scores[group].max()) - top
