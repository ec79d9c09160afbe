"""The search index behind `search_api`: BM25 over what each tool is called and what it says it does.

Two BM25 indexes (bm25s) are scored together: one over everything a tool says (its name split into words and kept
whole, server, title, description, parameter names and descriptions) and one over its name, server and title only,
weighted `NAME_BOOST` times. The second lets a query naming the thing ("create issue") beat a tool that merely
mentions it, and among tools named alike prefers the shortest name (`create_issue` over `create_issue_link`): a
long description no longer buries the tool it describes.

Like the catalog it indexes, an index is immutable: a new catalog gets a new `SearchIndex`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN

from portal_mcp.catalog import Catalog, ToolEntry

NAME_BOOST = 2.0
NAME_WEIGHT = 2
"""How often name, server and title words repeat in the full document (on top of the name index)."""
# Past this, a long description or parameter text mostly adds words that dilute BM25's length normalisation.
DESCRIPTION_CHARS = 2000
PARAMETER_CHARS = 300

_STOPWORDS = frozenset(STOPWORDS_EN) | {
    *("what", "which", "who", "whom", "how", "when", "where", "why", "i", "me", "my", "we", "our", "you", "your"),
    *("do", "does", "did", "can", "could", "would", "should", "please", "want", "need", "from", "some", "its"),
}
# Query words that tool descriptions usually spell differently. Applied to queries only, so a query still matches
# its own words first; kept short and generic because every entry also adds noise.
_SYNONYMS = {
    "folder": "directory",
    "dir": "directory",
    "repo": "repository",
    "pr": "pull request",
    "mr": "merge request",
    "delete": "remove",
    "remove": "delete",
    "rename": "move",
    "send": "post",
    "post": "send",
    "find": "search",
    "lookup": "search",
    "ticket": "issue",
    "bug": "issue",
    "msg": "message",
    "dm": "direct message",
    "mail": "email",
    "email": "mail",
    "now": "current",
    "doc": "document documentation",  # also `docs`: the plural stems to the same key
}
_COMPOUND = re.compile(r"[A-Za-z0-9]+(?:[_.\-][A-Za-z0-9]+)*")
_SEPARATOR = re.compile(r"[_.\-]")
_CAMEL_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


@dataclass(frozen=True)
class SearchHit:
    entry: ToolEntry
    score: float


class SearchIndex:
    """BM25 ranking of a catalog's tools for a free-text query."""

    def __init__(self, catalog: Catalog) -> None:
        self._entries = tuple(catalog)
        self._exact: dict[str, list[int]] = {}
        for position, entry in enumerate(self._entries):
            names = {entry.qualified_name, f"{entry.server}.{entry.name}", entry.name, entry.python_name}
            for name in names:
                self._exact.setdefault(name.lower(), []).append(position)
        self._bm25: Any = None
        self._names: Any = None
        if self._entries:
            self._bm25 = bm25s.BM25()
            self._bm25.index([document(entry) for entry in self._entries], show_progress=False)
            self._names = bm25s.BM25()
            self._names.index([name_document(entry) for entry in self._entries], show_progress=False)

    def __len__(self) -> int:
        return len(self._entries)

    def search(
        self, query: str, *, server: str | None = None, servers: Collection[str] | None = None, limit: int = 5
    ) -> list[SearchHit]:
        """The best `limit` tools for `query`, optionally of one server or a set of servers; [] for a blank query.

        A query that is exactly a tool's name (`get_current_time`) or qualified name (`time.get_current_time`)
        ranks that tool first; tools with no query word at all are never returned.
        """
        if not query.strip() or limit <= 0 or self._bm25 is None:
            return []
        scores = self._scores(expand(tokenize(query)))
        exact = self._exact.get(query.strip().lower(), [])
        if exact:
            # Lifted above every other score (keeping their own order), so a named tool comes first.
            scores[exact] += scores.max() + 1.0
        keep = scores > 0
        if server is not None:
            keep &= np.array([entry.server == server for entry in self._entries])
        if servers is not None:
            keep &= np.array([entry.server in servers for entry in self._entries])
        candidates = np.flatnonzero(keep)
        order = candidates[np.argsort(-scores[candidates], kind="stable")][:limit]
        return [SearchHit(self._entries[i], float(scores[i])) for i in order]

    def _scores(self, tokens: list[str]) -> np.ndarray[Any, np.dtype[np.float64]]:
        size = len(self._entries)
        return _bm25_scores(self._bm25, tokens, size) + NAME_BOOST * _bm25_scores(self._names, tokens, size)


def _bm25_scores(index: Any, tokens: list[str], size: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    known = [token for token in tokens if token in index.vocab_dict]
    if not known:
        return np.zeros(size)
    return np.asarray(index.get_scores(known), dtype=np.float64)


def name_document(entry: ToolEntry) -> list[str]:
    """The tokens of what a tool is called: name, server, title."""
    return tokenize(" ".join(filter(None, [entry.name, entry.server, entry.title])))


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


def expand(tokens: list[str]) -> list[str]:
    """Query tokens plus the tokens of their synonyms."""
    extra = [synonym for token in tokens for synonym in _EXPANSIONS.get(token, ())]
    return tokens + extra


def tokenize(text: str) -> list[str]:
    """Lowercased, stemmed words without stopwords; identifiers are split and also kept whole.

    `getCurrentTime` and `get_current_time` both give `get`, `current`, `tim` and the whole name, so a query may
    use either the words or the exact name.
    """
    tokens: list[str] = []
    for compound in _COMPOUND.findall(text):
        tokens.extend(_compound_tokens(compound))
    return tokens


@functools.lru_cache(maxsize=1 << 16)
def _compound_tokens(compound: str) -> tuple[str, ...]:
    # Cached: a catalog repeats the same words thousands of times, and indexing time is mostly spent here.
    parts = [part.lower() for piece in _SEPARATOR.split(compound) for part in _CAMEL_PART.findall(piece)]
    tokens = [stem(part) for part in parts if part not in _STOPWORDS and len(part) > 1]
    if len(parts) > 1:
        tokens.append(compound.lower())
    return tuple(tokens)


def stem(word: str) -> str:
    """A tiny suffix normaliser (plural, -ing, -ed, final e) so `messages`/`message` and `created`/`create` meet.

    Cheaper and cruder than Porter; it only has to map a query word and a description word to the same token.
    """
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word.endswith("ing") and len(word) > 5:
        word = word[:-3]
    elif word.endswith("ed") and len(word) > 4:
        word = word[:-2]
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def _parameters(schema: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        for key, sub in properties.items():
            yield str(key), sub if isinstance(sub, Mapping) else {}


# Built after `tokenize` and `stem` exist, in the same form as query tokens.
_EXPANSIONS = {stem(word): tuple(tokenize(synonyms)) for word, synonyms in _SYNONYMS.items()}
