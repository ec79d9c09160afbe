"""What a `SearchIndex` derives from its catalog that takes long to build: the two BM25 indexes, the words naming
servers, the words of tool names (and the rare ones telling a server's tools apart), the synonyms mined from the
catalog, and the tools' and servers' vectors.

`build` makes it from the tools (seconds at 10,000 tools, mostly tokenizing and BM25); `search/stored.py` keeps it
on disk, so a portal restarting on the same catalog reads it back instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from portal_mcp.catalog.model import ToolEntry
from portal_mcp.catalog.search.embeddings import EmbeddingCache, Vectors
from portal_mcp.catalog.search.lexical import Lexical
from portal_mcp.catalog.search.routing import server_aliases
from portal_mcp.catalog.search.siblings import RareWords, rare_words
from portal_mcp.catalog.search.text import dense_text, document, headline, mined_synonyms, name_words
from portal_mcp.catalog.search.words import RELATED_TOKENS, tokenize
from portal_mcp.config import ServerConfig


@dataclass(frozen=True)
class Built:
    """The slow parts of an index over `entries` (servers numbered in sorted name order)."""

    documents: Lexical
    """BM25 over everything a tool says (`text.document`)."""
    headlines: Lexical
    """BM25 over a tool's headline (`text.headline`)."""
    other_scripts: Lexical | None
    """BM25 over the words of a tool's text written in other scripts than ASCII ("Größe", "файл", 文件's pairs), None
    when no tool has any. Kept apart from `documents` and `headlines`, whose tokens are ASCII only, so a description
    that says the same thing twice (in English and in Chinese) is not longer, and weaker, for an English query."""
    aliases: Mapping[str, frozenset[int]]
    """Word -> the servers it names (mined, plus `search.aliases` of the config)."""
    name_words: Sequence[frozenset[str]]
    """Per tool, the words of its name that do not name its own server."""
    related: Mapping[str, tuple[str, ...]]
    """Query token -> related index tokens: the thesaurus plus verb pairs mined from the catalog."""
    rare: RareWords
    """Per tool, the words telling it from its server's other tools, weighted (`siblings.rare_words`)."""
    dense: Vectors | None
    """Per tool, its vector (None without a model)."""
    servers_dense: Vectors | None
    """Per server, the normalised mean of its tools' vectors and its description's."""

    def knows(self, token: str) -> bool:
        """Whether some tool's text has the token (in `documents`, or `other_scripts` for a token outside ASCII)."""
        if token.isascii():
            return token in self.documents.vocab
        return self.other_scripts is not None and token in self.other_scripts.vocab


def build(
    entries: Sequence[ToolEntry],
    servers: Mapping[str, ServerConfig],
    embeddings: EmbeddingCache | None,
    server_names: Sequence[str],
) -> Built:
    """The slow parts of an index over `entries` (not empty), with what the operator wrote for search."""
    server_ids = {name: number for number, name in enumerate(server_names)}
    server_of = np.array([server_ids[entry.server] for entry in entries], dtype=np.int32)
    extra = [curated_words(entry, servers.get(entry.server)) for entry in entries]
    dense: Vectors | None = None
    servers_dense: Vectors | None = None
    if embeddings is not None:
        dense = embeddings.vectors(
            [
                f"{dense_text(entry)}. {words}" if words else dense_text(entry)
                for entry, words in zip(entries, extra, strict=True)
            ]
        )
        # A server's vector: the mean of its tools' and of its description (what the server is about).
        centroids = np.zeros((len(server_names), dense.shape[1]), dtype=np.float32)
        np.add.at(centroids, server_of, dense)
        about = {name: config.description for name, config in servers.items() if config.description}
        described = [name for name in server_names if name in about]
        if described:
            vectors = embeddings.vectors([about[name] for name in described])
            counts = np.bincount(server_of, minlength=len(server_names))
            for name, vector in zip(described, vectors, strict=True):
                # As much as all its tools together: the operator's line says what the server is for.
                centroids[server_ids[name]] += vector * counts[server_ids[name]]
        servers_dense = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-9)
    headlines = [headline(entry) + tokenize(words) for entry, words in zip(entries, extra, strict=True)]
    documents = [document(entry) + tokenize(words) for entry, words in zip(entries, extra, strict=True)]
    mined = server_aliases(entries, headlines, documents)
    for name, config in servers.items():
        if name in server_ids:
            for alias in config.search.aliases:
                for word in tokenize(alias):
                    mined.setdefault(word, set()).add(name)
    own = {server: {word for word, names in mined.items() if server in names} for server in server_ids}
    related: dict[str, tuple[str, ...]] = dict(RELATED_TOKENS)
    for word, synonyms in mined_synonyms(entries).items():
        related[word] = tuple(dict.fromkeys((*related.get(word, ()), *synonyms)))
    split = [_by_script(document) for document in documents]
    others = [other for _, other in split]
    return Built(
        documents=Lexical.build([ascii_only for ascii_only, _ in split]),
        headlines=Lexical.build([_by_script(headline)[0] for headline in headlines]),
        other_scripts=Lexical.build(others) if any(others) else None,
        aliases={word: frozenset(server_ids[s] for s in names) for word, names in mined.items()},
        name_words=[name_words(entry) - own[entry.server] for entry in entries],
        related=related,
        rare=rare_words(entries, {server: words | set(tokenize(server)) for server, words in own.items()}),
        dense=dense,
        servers_dense=servers_dense,
    )


def _by_script(text: list[str]) -> tuple[list[str], list[str]]:
    """A text's ASCII tokens and its others. A text with no other (nearly always) is passed on itself: copies of
    10,000 tools' token lists would hold megabytes more at the build's peak, which the process keeps."""
    if all(map(str.isascii, text)):
        return text, []
    return [token for token in text if token.isascii()], [token for token in text if not token.isascii()]


def curated_words(entry: ToolEntry, config: ServerConfig | None) -> str:
    """The words an operator added for a tool: its server's keywords, its own keywords and aliases."""
    if config is None:
        return ""
    curation = config.search.tools.get(entry.name)
    words = [*config.search.keywords, *(curation.keywords if curation else ()), *(curation.aliases if curation else ())]
    return " ".join(word.replace("_", " ") for word in words)
