"""Whole tasks as queries: split "find the trending repos, read the top one's wiki, save a summary as Markdown"
into the intents an agent will need a tool for, each searched on its own.

A query splits at sentence ends, semicolons, numbered or bulleted steps, the words that chain steps ("then",
"after that"), and a comma or "and" followed by a word asking for an action (`ACTIONS`). A piece needs
`MIN_WORDS` content words to stand as an intent; shorter pieces join their neighbour ("and save it" alone says
too little to search). A query of one intent is searched as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from portal_mcp.catalog.search.words import STOPWORDS, WORD

T = TypeVar("T")
LEAD = 2
"""Tools of the whole task per round of `interleave` (measured on the train split of MetaTool's tasks: 1 loses
recall@5 against the whole task alone, 2 to 5 match or beat it)."""
MIN_WORDS = 2
MAX_INTENTS = 6
_STEP = re.compile(r"(?:^|\s)(?:\d+[.)]|[-*•])\s+")
_SENTENCE = re.compile(
    r"[.!?;]+(?:\s+|$)|\n+|,?\s+(?:and\s+then|then|after\s+that|afterwards|finally)\s+", re.IGNORECASE
)
# "," or "and" start a new intent only before a word that asks for an action or a question: "find the repos,
# read the wiki and save a summary" splits, "papers on climate, oceans and currents" does not.
ACTIONS = [
    "add",
    "analyze",
    "book",
    "build",
    "calculate",
    "check",
    "click",
    "compare",
    "compute",
    "convert",
    "copy",
    "create",
    "delete",
    "deploy",
    "download",
    "draw",
    "email",
    "explain",
    "export",
    "extract",
    "fetch",
    "find",
    "generate",
    "get",
    "give",
    "identify",
    "import",
    "list",
    "look",
    "make",
    "monitor",
    "move",
    "navigate",
    "notify",
    "open",
    "order",
    "pay",
    "plot",
    "post",
    "publish",
    "put",
    "read",
    "record",
    "reply",
    "retrieve",
    "review",
    "run",
    "save",
    "schedule",
    "search",
    "send",
    "set",
    "share",
    "show",
    "store",
    "summarize",
    "take",
    "tell",
    "track",
    "translate",
    "update",
    "upload",
    "visualize",
    "write",
    "how",
    "what",
    "which",
    "whether",
    "where",
    "when",
    "who",
    "why",
]
_JOIN = re.compile(
    rf",\s*(?:and\s+)?(?=(?:{'|'.join(ACTIONS)})\b)|\s+and\s+(?:also\s+)?(?=(?:{'|'.join(ACTIONS)})\b)", re.IGNORECASE
)


def content_words(text: str) -> list[str]:
    return [word for word in WORD.findall(text.lower()) if word not in STOPWORDS]


def split_intents(query: str) -> list[str]:
    """The query's intents in order: pieces with at least `MIN_WORDS` content words (at most `MAX_INTENTS`);
    a single-intent query gives `[query]`."""
    pieces: list[str] = []
    for step in _STEP.split(query):
        for sentence in _SENTENCE.split(step):
            pieces.extend(_JOIN.split(sentence))
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
    """One flat ranking from several: in each round the first group (the whole task) gives `LEAD` items and
    every other group (an intent) one, skipping repeats, until `limit`. Each intent's best tools come near the
    top without pushing the whole task's best ones down."""
    seen: set[Hashable] = set()
    merged: list[T] = []
    for rank in range(max((len(group) for group in groups), default=0)):
        for index, group in enumerate(groups):
            for item in group[rank * LEAD : (rank + 1) * LEAD] if index == 0 else group[rank : rank + 1]:
                if key(item) not in seen:
                    seen.add(key(item))
                    merged.append(item)
    return merged[:limit]
