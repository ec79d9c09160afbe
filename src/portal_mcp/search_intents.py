"""Whole tasks as queries: split "find the trending repos, read the top one's wiki, save a summary as Markdown"
into the intents an agent will need a tool for, each searched on its own.

A query splits at sentence ends, semicolons, numbered or bulleted steps, and at the words that chain steps
("then", "and then", "after that", "and"). A piece needs
`MIN_WORDS` content words to stand as an intent; shorter pieces join their neighbour ("and save it" alone says
too little to search). A query of one intent is searched as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from portal_mcp.search_words import STOPWORDS, WORD

T = TypeVar("T")
MIN_WORDS = 2
MAX_INTENTS = 6
_STEP = re.compile(r"(?:^|\s)(?:\d+[.)]|[-*•])\s+")
_BREAK = re.compile(
    r"[.!?;:]+(?:\s+|$)|\n+|,?\s+(?:and\s+then|then|after\s+that|afterwards|finally|next|also)\s+|,\s+(?:and\s+)?(?=[a-z]+\s)",
    re.IGNORECASE,
)
_AND = re.compile(r"\s+and\s+(?:also\s+)?", re.IGNORECASE)


def content_words(text: str) -> list[str]:
    return [word for word in WORD.findall(text.lower()) if word not in STOPWORDS]


def split_intents(query: str) -> list[str]:
    """The query's intents in order: pieces with at least `MIN_WORDS` content words (at most `MAX_INTENTS`);
    a single-intent query gives `[query]`."""
    pieces: list[str] = []
    for step in _STEP.split(query):
        for sentence in _BREAK.split(step):
            pieces.extend(_AND.split(sentence))
    intents: list[str] = []
    pending = ""
    for piece in (piece.strip(" ,") for piece in pieces):
        if not piece:
            continue
        piece = f"{pending} {piece}".strip() if pending else piece
        if len(content_words(piece)) < MIN_WORDS:
            pending = piece
            continue
        pending = ""
        intents.append(piece)
    if pending:
        if intents:
            intents[-1] = f"{intents[-1]} {pending}"
        else:
            intents.append(pending)
    if len(intents) <= 1:
        return [query.strip()]
    return intents[:MAX_INTENTS]


def interleave(groups: Sequence[Sequence[T]], limit: int, key: Callable[[T], Hashable]) -> list[T]:
    """The first of each group, then the second of each, ... once each, at most `limit`: every intent gets its
    best tools near the top of one flat ranking."""
    seen: set[Hashable] = set()
    merged: list[T] = []
    for rank in range(max((len(group) for group in groups), default=0)):
        for group in groups:
            if rank < len(group) and key(group[rank]) not in seen:
                seen.add(key(group[rank]))
                merged.append(group[rank])
    return merged[:limit]
