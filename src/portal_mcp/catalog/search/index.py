"""The search index behind `search_api`: BM25 over what each tool is called and what it says it does.

A tool's score for a query adds up these signals:

1. BM25 (bm25s) over everything a tool says: its name split into words and kept whole, server, title,
   description, parameter names and descriptions (names repeated `NAME_WEIGHT` times).
2. BM25 over its headline only (name, server, title, the first sentence of its description), weighted
   `HEADLINE_BOOST`: a query naming the thing ("create issue") beats a tool that merely mentions it.
3. Synonyms: agents ask in their words ("make a PR", "get rid of the collection", "k8s"), tools answer in theirs
   ("create pull request", "drop", "kubernetes"). Equivalents (abbreviations, idioms) count like the query's own
   words; related words (a small thesaurus plus verb pairs mined from the catalog itself: a tool named `delete_x`
   described as "Remove ..." teaches that remove means delete here) weigh `SYNONYM_WEIGHT`.
4. Server awareness: words that name a server are mined from the catalog (its name, and the prefix most of its
   tool names share: `jira_` for atlassian; `search/routing.py`). Such a word selects the server rather than
   matching prose: the named servers' matching tools are lifted by `SERVER_BOOST` times the best score, so
   "create an issue in jira" ranks Jira's tools above GitHub's. A word several servers share names them all, and
   a phrase saying more of one's name ("github enterprise") names that one only.
5. Name coverage: the best `RERANK_DEPTH` tools gain up to `COVERAGE_BOOST` times the best score for the share of
   their name the query says (`jira_create_issue` over `jira_batch_create_issues` for "create a jira issue").
6. Action verbs: of the best `RERANK_DEPTH`, a tool whose name's verb the query did not ask for (changing,
   removing or stopping unasked; only reading when the query asks to make or change) loses `ACTION_PENALTY` times
   the best score (`search/actions.py`); one whose name's words the query says as written, not only by stem, gains
   up to `FORM_BOOST` (`list_pull_requests` over `get_pull_request` for "the open pull requests").
   Siblings: of the best `RERANK_DEPTH`, a server's tools are reordered by the rare words of their names the query
   says as written (`search/siblings.py`: `get_bucket_metadata` over `list_buckets` for "the metadata of our bucket").
7. Meaning (with a model): the query's cosine similarity to each tool and its server, `DENSE_WEIGHT` times, added
   to the word scores scaled to the best (`_fuse`). A query naming a server whose tools its words match leans on
   the words (`NAMED_DENSE_SHARE`): the name already chose the domain, and telling a server's tools apart by their
   verbs is what the words do better. A tool described in Chinese, which no word of an English query can match,
   counts its meaning more when it beats every other tool (`meaning.lift_foreign`).

Like the catalog it indexes, an index is immutable. The words themselves are in `search/words.py`."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from portal_mcp.catalog.model import Catalog, ToolEntry
from portal_mcp.catalog.search import fit, siblings
from portal_mcp.catalog.search.actions import asked, tool_action, unasked
from portal_mcp.catalog.search.built import Built, build
from portal_mcp.catalog.search.embeddings import EmbeddingCache
from portal_mcp.catalog.search.heap import release_free_memory
from portal_mcp.catalog.search.intents import fuse, split_intents, step_weights
from portal_mcp.catalog.search.meaning import Meaning, Scores, described_in_chinese, dot, lift_foreign
from portal_mcp.catalog.search.query import endings, query_tokens, spelled_out
from portal_mcp.catalog.search.routing import named
from portal_mcp.catalog.search.stored import IndexStore
from portal_mcp.catalog.search.words import (
    EQUIVALENT_PHRASES,
    EQUIVALENT_TOKENS,
    RELATED_PHRASES,
    WORD,
    expand,
    forms,
    tokenize,
)
from portal_mcp.config import ServerConfig

HEADLINE_BOOST = 2.0
SYNONYM_WEIGHT = 0.5
SERVER_BOOST = 1.0
COVERAGE_BOOST = 0.1
RERANK_DEPTH = 50
ACTION_PENALTY = 0.15
"""A tool whose verb the query did not ask for (`search/actions.py`) loses this share of the best score (0.1 to 0.2
measured alike on the train splits; 0 loses 0.01 recall@1 on average)."""
FORM_BOOST = 0.03
"""A tool gains up to this share of the best score for the share of its name's words the query says as written
(0.02 to 0.05 measured alike on the train splits; 0 loses 0.006 recall@1 on average)."""
DENSE_WEIGHT = 1.25
"""Tuned on the train splits with the contrastively fitted model, keeping the weight at which every set gains or
holds (the rule the ranking changes follow): 1.25 lifts recall@1 on own, metatool and metatool_tasks with own's
recall@5 unchanged; 1.75 to 2.5 score a little higher on the mean of the sets but lose own 0.01 to 0.03. MCPToolBench++
loses recall@1 at every weight, all of it its two interchangeable web-search tools swapped (google_search.search for
tavily_search and back: 41 such queries against 15; other first-place misses fall from 51 to 41)."""
DENSE_DEPTH = 50
LEXICAL_POWER = 1.0
"""Word scores are scaled by the share of the query's words the catalog uses, to this power (tuned on train)."""
SERVER_WEIGHT = 0.5
NAMED_DENSE_SHARE = 0.2
"""When the query names a server whose tools its words match, meaning weighs this share of `DENSE_WEIGHT`: naming the
server already chose the domain (what meaning is good at), and choosing among its tools ("list" or "create" pull
requests) is the words' job (tuned on train: 0.1 to 0.2 best, own recall@1 0.734 -> 0.780, other sets unchanged)."""
FUSE_DEPTH = 20
"""A whole task's rankings (its own and each intent's) are fused from this many tools each (`intents.fuse`)."""
TASK_NAMED_SHARE = 0.05
"""The same share for a whole task's own ranking (the first group, `search_intents`): its vector blurs several
intents, so among the servers it names its words decide (0 to 0.05 measured alike on train; 0.2 loses own_tasks
recall@1 0.746 -> 0.695)."""


@dataclass(frozen=True)
class SearchHit:
    entry: ToolEntry
    score: float
    similarity: float | None = None
    """Cosine similarity of the query and the tool by meaning (None without a model)."""


class SearchIndex:
    """BM25 ranking of a catalog's tools for a free-text query, with synonyms and server awareness."""

    def __init__(
        self,
        catalog: Catalog,
        embeddings: EmbeddingCache | None = None,
        servers: Mapping[str, ServerConfig] | None = None,
        store: IndexStore | None = None,
    ) -> None:
        """`servers` (the config's) adds what operators wrote for search: server descriptions (routing),
        `search.keywords` and `search.aliases` of servers and tools (see `ServerCuration`). With a `store`, the
        slow parts are read from disk when this catalog was indexed before, and saved when not."""
        self._entries = tuple(catalog)
        self._embeddings = embeddings
        servers = servers or {}
        self._exact: dict[str, list[int]] = {}
        self._position = {entry.qualified_name: position for position, entry in enumerate(self._entries)}
        for position, entry in enumerate(self._entries):
            names = {entry.qualified_name, f"{entry.server}.{entry.name}", entry.name, entry.python_name}
            config = servers.get(entry.server)
            curation = config.search.tools.get(entry.name) if config is not None else None
            names |= set(curation.aliases) if curation is not None else set()
            for name in names:
                self._exact.setdefault(name.lower(), []).append(position)
        self._server_names = sorted({entry.server for entry in self._entries})
        server_ids = {name: number for number, name in enumerate(self._server_names)}
        self._server_of = np.array([server_ids[entry.server] for entry in self._entries], dtype=np.int32)
        self._actions = [tool_action(entry) for entry in self._entries]
        self._name_forms = [forms(entry.name) for entry in self._entries]
        self._chinese = described_in_chinese(self._entries)
        self._built: Built | None = None
        if self._entries:
            model = embeddings.encoder.identity if embeddings is not None else None
            key = store.key(self._entries, servers, model) if store is not None else ""
            if store is not None:
                self._built = store.load(key, len(self._entries), len(self._server_names))
            if self._built is None:
                self._built = build(self._entries, servers, embeddings, self._server_names)
                if store is not None:
                    store.save(key, self._built)
            release_free_memory()  # a build peaks near twice what it keeps (`search/heap.py`)
        # Per server, the words of its name and those naming it: what tells the more specific of two named apart.
        self._names = [frozenset(tokenize(name)) for name in self._server_names]
        if self._built is not None:
            for word, numbers in self._built.aliases.items():
                for number in numbers:
                    self._names[number] |= {word}
        self._dense = self._built.dense if self._built is not None else None
        self._servers_dense = self._built.servers_dense if self._built is not None else None

    @property
    def _parts(self) -> Built:
        assert self._built is not None, "an empty index answers every query before asking for its parts"
        return self._built

    def __len__(self) -> int:
        return len(self._entries)

    def search(
        self,
        query: str,
        *,
        server: str | None = None,
        servers: Collection[str] | None = None,
        limit: int = 5,
        exclude: Collection[str] = (),
    ) -> list[SearchHit]:
        """The best `limit` tools for `query`, optionally of one server or a set of servers, never one named in
        `exclude` (qualified names); [] for a blank query. A whole task ("find X, then save it as Y") ranks the
        best tools of each of its intents first, in turn (`search_intents`)."""
        groups = self.search_intents(query, server=server, servers=servers, limit=limit, exclude=exclude)
        if len(groups) == 1:
            return groups[0][1]
        return task_ranking(groups, limit)

    def search_intents(
        self,
        query: str,
        *,
        server: str | None = None,
        servers: Collection[str] | None = None,
        limit: int = 5,
        exclude: Collection[str] = (),
    ) -> list[tuple[str, list[SearchHit]]]:
        """(intent, its best tools) for each intent of the query, in order: one group of `limit` tools for a plain
        query; for a whole task, the task itself first, then each intent, with `FUSE_DEPTH` tools each (at least
        `limit`) for `intents.fuse` to choose the task's best `limit` from."""
        intents = split_intents(query)
        if len(intents) == 1:
            return [(query, self._search(query, server, servers, limit, exclude))]
        depth = max(limit, FUSE_DEPTH)
        # The whole task ranks first: its best tool is often what every intent needs (and its words say more).
        texts = [query, *intents]
        meanings = self._meanings(texts)
        return [
            (text, self._search(text, server, servers, depth, exclude, task=number == 0, meaning=meanings[number]))
            for number, text in enumerate(texts)
        ]

    def _search(
        self,
        query: str,
        server: str | None,
        servers: Collection[str] | None,
        limit: int,
        exclude: Collection[str],
        task: bool = False,
        meaning: Meaning | None = None,
    ) -> list[SearchHit]:
        """The ranking of one intent (see `search`); `task` when it is a whole task of several intents; `meaning`
        its similarities when already computed with its task's others (`_meanings`).

        A query that is exactly a tool's name (`get_current_time`) or qualified name (`time.get_current_time`)
        ranks that tool first; tools with no query word (or synonym) at all are never returned.
        """
        if not query.strip() or limit <= 0 or self._built is None:
            return []
        words = WORD.findall(query.lower())
        own = query_tokens(query)
        tokens = own + [w for w in expand(words, own, EQUIVALENT_TOKENS, EQUIVALENT_PHRASES) if w not in own]
        related = [word for word in expand(words, tokens, self._parts.related, RELATED_PHRASES) if word not in tokens]
        data = endings(query)  # "main.py" names no server called *_py
        names = [token for token in own if token not in data]
        mentioned = named(names, self._parts.aliases, self._names, [*tokens[len(own) :], *related])
        # A word naming a server selects its tools (the boost below) instead of matching their prose: a tool whose
        # description happens to repeat "MongoDB" is no better an answer to "list collections in mongo".
        naming = {token for token in tokens if token not in data and self._names_server(token)}
        content = [token for token in tokens if token not in naming]
        scores = self._scores(content) + SYNONYM_WEIGHT * self._scores([w for w in related if w not in naming])
        keep = scores > 0
        in_mentioned = np.isin(self._server_of, list(mentioned))
        if naming and not (keep & in_mentioned).any():
            # None of the named server's tools says any other query word ("what time is it", "how much money is
            # in stripe"): its name is then the best clue there is, so it counts as a word again.
            scores = self._scores(tokens) + SYNONYM_WEIGHT * self._scores(related)
            keep = scores > 0
        if mentioned and (keep & in_mentioned).any():
            # An agent that names a service means it: at SERVER_BOOST 1 its matching tools come before any other.
            scores = scores + (keep & in_mentioned) * (SERVER_BOOST * scores.max())
        if keep.any():
            self._reward_named_coverage(scores, keep, set(tokens) | set(related))
        similarity: Scores | None = None
        meaning = meaning or self._meanings([query])[0]
        if meaning is not None:
            share = NAMED_DENSE_SHARE if mentioned and (keep & in_mentioned).any() else 1.0
            if task and share < 1:
                share = TASK_NAMED_SHARE
            scores, keep, similarity = self._fuse(meaning, tokens, scores, keep, share)
        if keep.any():
            written, meant = forms(query), tokens + related
            self._rerank_by_name(scores, keep, asked(query, meant), written)
            best = _best(scores, keep, RERANK_DEPTH)
            siblings.rerank(scores, best, self._server_of, self._parts.rare, written, frozenset(meant))
        exact = self._exact.get(query.strip().lower(), [])
        if exact:
            # Lifted above every other score (keeping their own order), so a named tool comes first.
            scores[exact] += scores.max() + 1.0
            keep[exact] = True
        if server is not None:
            servers = [server] if servers is None else [name for name in servers if name == server]
        if servers is not None:
            wanted = [number for number, name in enumerate(self._server_names) if name in servers]
            keep &= np.isin(self._server_of, wanted)
        if exclude:
            keep[[self._position[name] for name in exclude if name in self._position]] = False
        candidates = np.flatnonzero(keep)
        if len(candidates) > limit:
            # Only the best `limit` need sorting: a partial selection first keeps big catalogs fast.
            best = np.argpartition(-scores[candidates], limit - 1)[:limit]
            candidates = candidates[best]
        order = candidates[np.argsort(-scores[candidates], kind="stable")][:limit]
        return [
            SearchHit(self._entries[i], float(scores[i]), None if similarity is None else float(similarity[i]))
            for i in order
        ]

    def _reward_named_coverage(
        self, scores: Scores, keep: np.ndarray[Any, np.dtype[np.bool_]], terms: set[str]
    ) -> None:
        """Rerank the best `RERANK_DEPTH` tools by how much of their name the query says, in place.

        BM25 rewards a tool for each query word it contains; this rewards a tool whose name is covered by the
        query: "create an issue in jira" says all of `jira_create_issue` but not the `batch` of
        `jira_batch_create_issues`. Only the top few are rescored, which keeps big catalogs fast.
        """
        candidates = _best(scores, keep, RERANK_DEPTH)
        best, name_words = float(scores[candidates].max()), self._parts.name_words
        scores[candidates] += [
            COVERAGE_BOOST * best * len(words & terms) / len(words) if (words := name_words[i]) else 0.0
            for i in candidates.tolist()
        ]

    def _rerank_by_name(
        self, scores: Scores, keep: np.ndarray[Any, np.dtype[np.bool_]], wanted: frozenset[str], said: frozenset[str]
    ) -> None:
        """Rescore the best `RERANK_DEPTH` tools by their names, in place: lower those whose verb the query did not
        ask for (`wanted`: "comment on a jira issue" wants `jira_add_comment`, not `jira_edit_comment`; "file a
        ticket", not `get_issue`), and lift those whose name's words the query says as written (`said`: "open pull
        requests" is `list_pull_requests` rather than `get_pull_request`, whose stems are the same)."""
        candidates = _best(scores, keep, RERANK_DEPTH)
        best, numbers = float(scores[candidates].max()), candidates.tolist()
        scores[candidates] -= [ACTION_PENALTY * best if unasked(self._actions[i], wanted) else 0.0 for i in numbers]
        scores[candidates] += [
            FORM_BOOST * best * len(name & said) / len(name) if (name := self._name_forms[i]) else 0.0 for i in numbers
        ]

    def _meanings(self, texts: Sequence[str]) -> list[Meaning | None]:
        """Each text's `Meaning` (None without a model), from one pass of the model and of each matrix over them all:
        a whole task of ten intents costs one encoding call, not eleven."""
        if self._dense is None or self._servers_dense is None or self._embeddings is None:
            return [None] * len(texts)
        # The query's abbreviations and idioms in plain words, for its vector too ("k8s", "share price").
        said = [f"{text} ({', '.join(plain)})" if (plain := spelled_out(text)) else text for text in texts]
        vectors = self._embeddings.encoder.encode(said)
        similarities, closeness = dot(self._dense, vectors), dot(self._servers_dense, vectors)
        # Server routing: a tool whose server is about the query (the mean of its tools' vectors) gains.
        routed = similarities + SERVER_WEIGHT * closeness[:, self._server_of]
        routed = lift_foreign(routed, similarities, self._chinese, texts)
        return [
            Meaning(similarity, routing, bool(vector.any()))
            for similarity, routing, vector in zip(similarities, routed, vectors, strict=True)
        ]

    def _fuse(
        self,
        meaning: Meaning,
        tokens: Sequence[str],
        lexical: Scores,
        keep: np.ndarray[Any, np.dtype[np.bool_]],
        share: float = 1.0,
    ) -> tuple[Scores, Any, Scores]:
        """Lexical scores (scaled to the best) plus `share` of `DENSE_WEIGHT` times the query's cosine similarity to each
        tool (plus `SERVER_WEIGHT` times its server's), over the tools the words found and the `DENSE_DEPTH` nearest by
        meaning; and the tools' own similarities."""
        routed = meaning.routed
        keep = keep.copy()
        if meaning.read:  # a query the model reads nothing of ("热门视频" to an English model) is near no tool
            keep[np.argpartition(-routed, min(DENSE_DEPTH, len(routed) - 1))[:DENSE_DEPTH]] = True
        best = lexical.max()
        # Words of the query the catalog never uses cannot be matched by words: meaning counts for more.
        known = sum(1 for token in tokens if self._parts.knows(token)) / max(1, len(tokens))
        lexical = (lexical / best if best > 0 else lexical) * known**LEXICAL_POWER
        fused = lexical + share * DENSE_WEIGHT * np.maximum(routed, 0)
        return fused, keep, meaning.similarity

    def weak(self, query: str, hits: Sequence[SearchHit]) -> bool:
        """True when even the best hits fit the query poorly (`search/fit.py`). Only judged with a model (False
        without)."""
        if self._dense is None or self._embeddings is None or not hits:
            return self._dense is not None
        similarities = [hit.similarity or 0.0 for hit in hits]
        return fit.weak(query, similarities, [hit.entry for hit in hits], self._parts.knows, self._embeddings.encoder)

    def understood(self, query: str) -> bool:
        """Whether some word of the query is one the catalog or the model knows (`fit.understood`; True without)."""
        if self._embeddings is None or self._built is None:
            return True
        return fit.understood(query, self._parts.knows, self._embeddings.encoder)

    def closest_servers(self, query: str, servers: Collection[str], limit: int = 3) -> list[str]:
        """The `limit` servers among `servers` nearest to the query by meaning (by name order without a model)."""
        wanted = [number for number, name in enumerate(self._server_names) if name in servers]
        if self._servers_dense is None or self._embeddings is None:
            return [self._server_names[number] for number in wanted[:limit]]
        closeness = dot(self._servers_dense[wanted], self._embeddings.encoder.encode([query]))[0]
        return [self._server_names[wanted[i]] for i in np.argsort(-closeness, kind="stable")[:limit]]

    def _names_server(self, token: str) -> bool:
        aliases = self._parts.aliases
        return token in aliases or any(word in aliases for word in EQUIVALENT_TOKENS.get(token, ()))

    def _scores(self, tokens: list[str]) -> Scores:
        parts = self._parts
        scores = parts.documents.scores(tokens) + HEADLINE_BOOST * parts.headlines.scores(tokens)
        others = [token for token in tokens if not token.isascii()]
        if others and parts.other_scripts is not None:
            scores += parts.other_scripts.scores(others)
        return scores


def task_ranking(groups: Sequence[tuple[str, Sequence[SearchHit]]], limit: int) -> list[SearchHit]:
    """A whole task's best `limit` tools from `search_intents`' groups (the task's own ranking, then each intent's),
    fused by `intents.fuse` with each intent weighed by how near its best tools are (`intents.step_weights`)."""
    weights = step_weights([[hit.similarity for hit in hits] for _, hits in groups[1:]])
    return fuse([hits for _, hits in groups], limit, lambda hit: hit.entry.qualified_name, weights)


def _best(scores: Scores, keep: np.ndarray[Any, np.dtype[np.bool_]], depth: int) -> np.ndarray[Any, Any]:
    """The positions of the (at most) `depth` best kept scores, in no order."""
    candidates = np.flatnonzero(keep)
    if len(candidates) > depth:
        candidates = candidates[np.argpartition(-scores[candidates], depth - 1)[:depth]]
    return candidates
