"""Siblings: tools of one server over different objects, told apart by the words only a few of them carry.

A server's tools share its domain, and often its verbs: `get_pod_logs` and `get_k8s_events`, `list_buckets` and
`get_bucket_metadata`, `add_issue_comment` and `merge_pull_request`. Meaning and BM25 then score them close, and
the tie goes to whichever description happens to be nearer to the query. What tells them apart is the object each
is about: the words of its name, less its server's words and its verb. A word counts as much as it is rare among
the server's tools (`log(n / k)` for `k` of its `n` tools carrying it), and not at all when more than `RARE_COUNT`
carry it (`dag` in Airflow, `chart` in a chart server: they name the server's domain, not one tool's object).

Among the index's best candidates, a server's tools are reordered only when one sibling clearly names what the
query asks for: the query says, as written (not by stem: "metadata of the bucket" is `get_bucket_metadata`, while
"buckets" only shares a stem with it), every rare word of its name, and no other candidate of its server carries as
much of that weight. Even then the server's top keeps its place when the query asks for all of its rare words too,
by stem or synonym, and they weigh more ("ship an edge function": `deploy_edge_function`, not `get_edge_function`).
The winner gains up to `SIBLING_BOOST` times the best score, for its share of the server's candidates' rare words
said. Then the server is shifted back so its best score is unchanged: other servers' tools neither gain nor lose
places against its best. A query saying none of the rare words changes nothing.

Why so strict (measured on the train splits, all sets, plain, large and among the shared corpus): a gain for every
rare word said, even only to a sibling carrying strictly more of it than the top, or 1.5 times more, lost 0.02
recall@1 on own and corpus, where a generic word is rare on its server: "web" lifts `brave_web_search` over
`brave_summarizer`, "project" `create_project` over `create_branch`, "app" `get_app_bundle_id` over
`get_sim_app_path`. Asking for every rare word of the name (`get_managed_policy_document` needs "document" too) and
a single winner keeps the wins (`list_workflows` over `get_workflow`, `get_bucket_metadata` over `list_buckets`):
mean recall@1 over the sets 0.608 -> 0.615, metatool_tasks +0.057, no set losing more than 0.003.
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
SIBLING_BOOST = 0.07
"""The most the winning sibling gains, as a share of the best score (0.05 to 0.1 gain alike on the train splits'
recall@1; from 0.08 own loses a query of recall@5: "web" lifts `brave_web_search` into a screenshot query's five)."""

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
    said: frozenset[str],
    meant: Collection[str],
) -> None:
    """Lift, in place, the one tool per server among `candidates` whose rare words `said` (the query's words as
    written, `words.forms`) all holds and whose weight of them beats every sibling candidate's, unless the server's
    top is asked for whole by `meant` (the query's index tokens, synonyms included) and weighs more; then shift the
    server back so its best score stays."""
    carried: dict[int, float] = {}
    union: dict[int, dict[str, float]] = {}
    members: dict[int, list[int]] = {}  # each server's candidates, in the order of `candidates`
    for i, server in zip(candidates.tolist(), server_of[candidates].tolist(), strict=True):
        members.setdefault(server, []).append(i)
        own = rare[i]
        if own and said.issuperset(own):
            carried[i] = sum(own.values())
            union.setdefault(server, {}).update(own)
    if not carried:
        return
    best = float(scores[candidates].max())
    for server, words in union.items():
        group = members[server]
        if len(group) < 2:
            continue
        top = max(group, key=lambda i: float(scores[i]))
        weights = sorted((carried.get(i, 0.0), i) for i in group)
        (runner_up, _), (most, winner) = weights[-2], weights[-1]
        if winner == top or most <= runner_up or _asked_whole(rare[top], said, meant) > most:
            continue
        before = float(scores[top])
        scores[winner] += SIBLING_BOOST * best * most / sum(words.values())
        scores[group] -= float(scores[group].max()) - before


def _asked_whole(words: Mapping[str, float], said: Collection[str], meant: Collection[str]) -> float:
    """The weight of `words` when the query asks for every one, as written or by its tokens (`deploy_edge_function`
    for "ship an edge function": "ship" means deploy); else 0."""
    whole = all(word in said or all(token in meant for token in tokenize(word)) for word in words)
    return sum(words.values()) if whole else 0.0
