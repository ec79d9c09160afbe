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
   tool names share: `jira_` for atlassian, `browser_` for playwright). Such a word selects the server rather than
   matching prose: the named server's matching tools are lifted by `SERVER_BOOST` times the best score, so
   "create an issue in jira" ranks Jira's tools above GitHub's.
5. Name coverage: the best `RERANK_DEPTH` tools gain up to `COVERAGE_BOOST` times the best score for the share of
   their name the query says (`jira_create_issue` over `jira_batch_create_issues` for "create a jira issue").

Like the catalog it indexes, an index is immutable: a new catalog gets a new `SearchIndex`.
The words themselves (stopwords, the synonym tables, `tokenize` and `stem`) are in `search_words`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import bm25s
import numpy as np

from portal_mcp.catalog.model import Catalog, ToolEntry
from portal_mcp.catalog.search_words import (
    EQUIVALENT_PHRASES,
    EQUIVALENT_TOKENS,
    RELATED_PHRASES,
    RELATED_TOKENS,
    SEPARATOR,
    WORD,
    tokenize,
)
from portal_mcp.catalog.search_words import stem as stem  # public here too, as before the split

HEADLINE_BOOST = 2.0
NAME_WEIGHT = 2
"""How often name, server and title words repeat in the full document (on top of the headline index)."""
SYNONYM_WEIGHT = 0.5
SERVER_BOOST = 1.0
COVERAGE_BOOST = 0.1
RERANK_DEPTH = 50
# Past this, a long description or parameter text mostly adds words that dilute BM25's length normalisation.
DESCRIPTION_CHARS = 2000
PARAMETER_CHARS = 300
HEADLINE_CHARS = 200
# A word names a server when it is part of the server's name or starts this share of its tools' names, and this
# share of the tools whose headline uses it are that server's.
ALIAS_PURITY = 0.9
ALIAS_COVERAGE = 0.3
# A verb pair is mined when a tool's name starts with one and its description with the other this many times.
MINED_PAIR_COUNT = 3

_SENTENCE_END = re.compile(r"(?<=[.!?])\s|\n")

Scores = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True)
class SearchHit:
    entry: ToolEntry
    score: float


class SearchIndex:
    """BM25 ranking of a catalog's tools for a free-text query, with synonyms and server awareness."""

    def __init__(self, catalog: Catalog) -> None:
        self._entries = tuple(catalog)
        self._exact: dict[str, list[int]] = {}
        self._position = {entry.qualified_name: position for position, entry in enumerate(self._entries)}
        for position, entry in enumerate(self._entries):
            names = {entry.qualified_name, f"{entry.server}.{entry.name}", entry.name, entry.python_name}
            for name in names:
                self._exact.setdefault(name.lower(), []).append(position)
        self._server_names = sorted({entry.server for entry in self._entries})
        server_ids = {name: number for number, name in enumerate(self._server_names)}
        self._server_of = np.array([server_ids[entry.server] for entry in self._entries], dtype=np.int32)
        self._bm25: Any = None
        self._headlines: Any = None
        self._aliases: dict[str, frozenset[int]] = {}
        self._name_words: list[frozenset[str]] = []
        self._related: dict[str, tuple[str, ...]] = dict(RELATED_TOKENS)
        if self._entries:
            headlines = [headline(entry) for entry in self._entries]
            self._bm25 = bm25s.BM25()
            self._bm25.index([document(entry) for entry in self._entries], show_progress=False)
            self._headlines = bm25s.BM25()
            self._headlines.index(headlines, show_progress=False)
            aliases = server_aliases(self._entries, headlines)
            self._aliases = {word: frozenset(server_ids[s] for s in names) for word, names in aliases.items()}
            own = {server: {word for word, names in aliases.items() if server in names} for server in server_ids}
            self._name_words = [name_words(entry) - own[entry.server] for entry in self._entries]
            for word, synonyms in mined_synonyms(self._entries).items():
                self._related[word] = tuple(dict.fromkeys((*self._related.get(word, ()), *synonyms)))

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
        `exclude` (qualified names); [] for a blank query.

        A query that is exactly a tool's name (`get_current_time`) or qualified name (`time.get_current_time`)
        ranks that tool first; tools with no query word (or synonym) at all are never returned.
        """
        if not query.strip() or limit <= 0 or self._bm25 is None:
            return []
        words = WORD.findall(query.lower())
        tokens = tokenize(query)
        tokens += [word for word in _expand(words, tokens, EQUIVALENT_TOKENS, EQUIVALENT_PHRASES) if word not in tokens]
        related = [word for word in _expand(words, tokens, self._related, RELATED_PHRASES) if word not in tokens]
        mentioned = self._mentioned(tokens + related)
        # A word naming a server selects its tools (the boost below) instead of matching their prose: a tool whose
        # description happens to repeat "MongoDB" is no better an answer to "list collections in mongo".
        naming = {token for token in tokens if self._names_server(token)}
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
        return [SearchHit(self._entries[i], float(scores[i])) for i in order]

    def _reward_named_coverage(
        self, scores: Scores, keep: np.ndarray[Any, np.dtype[np.bool_]], terms: set[str]
    ) -> None:
        """Rerank the best `RERANK_DEPTH` tools by how much of their name the query says, in place.

        BM25 rewards a tool for each query word it contains; this rewards a tool whose name is covered by the
        query: "create an issue in jira" says all of `jira_create_issue` but not the `batch` of
        `jira_batch_create_issues`. Only the top few are rescored, which keeps big catalogs fast.
        """
        candidates = np.flatnonzero(keep)
        if len(candidates) > RERANK_DEPTH:
            candidates = candidates[np.argpartition(-scores[candidates], RERANK_DEPTH - 1)[:RERANK_DEPTH]]
        best = float(scores[candidates].max())
        for i in candidates:
            words = self._name_words[i]
            if words:
                scores[i] += COVERAGE_BOOST * best * len(words & terms) / len(words)

    def _names_server(self, token: str) -> bool:
        return token in self._aliases or any(word in self._aliases for word in EQUIVALENT_TOKENS.get(token, ()))

    def _scores(self, tokens: list[str]) -> Scores:
        size = len(self._entries)
        return _bm25_scores(self._bm25, tokens, size) + HEADLINE_BOOST * _bm25_scores(self._headlines, tokens, size)

    def _mentioned(self, tokens: Iterable[str]) -> set[int]:
        """The servers the query names, by their mined aliases."""
        return {server for token in tokens for server in self._aliases.get(token, ())}


def _expand(
    words: list[str], tokens: list[str], by_token: Mapping[str, Sequence[str]], by_phrase: Mapping[str, Sequence[str]]
) -> list[str]:
    """Synonyms of a query's phrases (of up to 3 words) and tokens, as index tokens, in order and once each."""
    extra: list[str] = []
    for size in (1, 2, 3):
        for start in range(len(words) - size + 1):
            extra.extend(by_phrase.get(" ".join(words[start : start + size]), ()))
    for token in tokens:
        extra.extend(by_token.get(token, ()))
    return list(dict.fromkeys(extra))


def _bm25_scores(index: Any, tokens: list[str], size: int) -> Scores:
    known = [token for token in tokens if token in index.vocab_dict]
    if not known:
        return np.zeros(size)
    return np.asarray(index.get_scores(known), dtype=np.float64)


def name_document(entry: ToolEntry) -> list[str]:
    """The tokens of what a tool is called: name, server, title."""
    return tokenize(" ".join(filter(None, [entry.name, entry.server, entry.title])))


def name_words(entry: ToolEntry) -> frozenset[str]:
    """The words of a tool's name (`jira_create_issue` -> jira, creat, issue), without the whole name."""
    return frozenset(token for token in tokenize(entry.name) if not SEPARATOR.search(token))


def first_sentence(text: str) -> str:
    """The first sentence of a description (cut at `HEADLINE_CHARS`): what the tool does, before the how."""
    text = text.strip()[:HEADLINE_CHARS]
    return _SENTENCE_END.split(text, maxsplit=1)[0] if text else ""


def headline(entry: ToolEntry) -> list[str]:
    """The tokens of a tool's name, server, title and the first sentence of its description."""
    return name_document(entry) + tokenize(first_sentence(entry.description))


def document(entry: ToolEntry) -> list[str]:
    """The tokens a tool is found by, names repeated to weigh them above the prose."""
    tokens = name_document(entry) * NAME_WEIGHT
    tokens += tokenize(entry.description[:DESCRIPTION_CHARS])
    for key, schema in _parameters(entry.input_schema):
        tokens += tokenize(key)
        description = schema.get("description")
        if isinstance(description, str):
            tokens += tokenize(description[:PARAMETER_CHARS])
    return tokens


def server_aliases(entries: Sequence[ToolEntry], headlines: Sequence[Sequence[str]]) -> dict[str, set[str]]:
    """Words that name a server in this catalog (`headlines[i]` is the headline of `entries[i]`).

    Candidates are the words of a server's own name and the prefix most of its tools' names share (`jira_`,
    `kubectl_`, `browser_`, `slack_`). A candidate is an alias when hardly any other server's tool headlines use
    it: `sqlite` and `jira` are, `time` and `fetch` (which every description uses) are not.
    """
    size = Counter(entry.server for entry in entries)
    prefixes = Counter((entry.server, tokenize(entry.name)[0]) for entry in entries if tokenize(entry.name))
    candidates = {
        (server, word) for (server, word), count in prefixes.items() if count >= max(2, ALIAS_COVERAGE * size[server])
    }
    candidates |= {(server, word) for server in size for word in tokenize(server)}
    uses: dict[str, Counter[str]] = {}
    for entry, tokens in zip(entries, headlines, strict=True):
        for token in set(tokens):
            uses.setdefault(token, Counter())[entry.server] += 1
    aliases: dict[str, set[str]] = {}
    for server, word in sorted(candidates):
        used = uses.get(word, Counter())
        if used.total() - used[server] <= (1 - ALIAS_PURITY) * used.total():
            aliases.setdefault(word, set()).add(server)
    return aliases


def mined_synonyms(entries: Iterable[ToolEntry]) -> dict[str, tuple[str, ...]]:
    """Verb pairs the catalog itself uses interchangeably: `remov` -> `delet` when tools named `delete_x` are
    described as "Remove ..." at least `MINED_PAIR_COUNT` times.

    A tool's verb is the word of its name that most descriptions of the catalog start with (`create` in
    `create_merge_request_note`); its description's first word is what it is called in prose ("Add a note").
    Both words of a pair must be some tool's verb, which drops boilerplate openers ("Notion | ...", "This tool
    will ...").
    """
    entries = list(entries)
    said = [tokenize(first_sentence(entry.description))[:1] for entry in entries]
    openers = Counter(words[0] for words in said if words)
    pairs: Counter[tuple[str, str]] = Counter()
    verbs: set[str] = set()
    for entry, first in zip(entries, said, strict=True):
        words = [word for word in tokenize(entry.name) if openers[word] >= MINED_PAIR_COUNT]
        if words:
            verb = max(words, key=lambda word: openers[word])
            verbs.add(verb)
            if first and verb != first[0]:
                pairs[first[0], verb] += 1
    mined: dict[str, list[str]] = {}
    for (prose, verb), count in sorted(pairs.items()):
        if count >= MINED_PAIR_COUNT and prose in verbs:
            mined.setdefault(prose, []).append(verb)
    return {word: tuple(verbs) for word, verbs in mined.items()}


def _parameters(schema: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        for key, sub in properties.items():
            yield str(key), sub if isinstance(sub, Mapping) else {}
