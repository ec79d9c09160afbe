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
# read the wiki and save a summary" splits, "papers on climate, oceans and currents" does not. The verbs are the
# common ones of agent tasks (more of them, and "and also": 0.78 -> 0.84 of a task's tools in the first 10 on
# tasks made by joining own train queries with "and"; MetaTool's train splits unchanged).
_VERBS = (
    "add analyze approve assign attach book build calculate cancel change check click close collect comment commit"
    " compare compute convert copy count crawl create debug delete deploy describe download draw edit email"
    " estimate explain export extract fetch filter find fix forecast format gather generate get give identify"
    " import install invite learn list look make merge monitor move navigate notify open order organize parse"
    " pay plan play plot post predict print provide publish pull push put query rank read recommend record"
    " register remind remove rename reply report research resolve restart retrieve review run save schedule"
    " scrape search send set share show sort start stop store subscribe suggest summarize take tell test track"
    " transcribe translate understand update upload visit visualize write"
)
_QUESTIONS = "how what which whether where when who why"
ACTIONS = sorted({*_VERBS.split(), *_QUESTIONS.split()})
_JOIN = re.compile(
    rf",\s*(?:and\s+)?(?=(?:{'|'.join(ACTIONS)})\b)|\s+and\s+(?:also\s+)?(?=(?:{'|'.join(ACTIONS)})\b)"
    # "..., and also ...", "... as well as ...": a new request whatever word follows. (Splitting before "can you"
    # too lost on the train splits of MetaTool: it mostly follows a preamble, "I'm new here. Can you ...".)
    r"|,?\s+and\s+also\s+|,?\s+as\s+well\s+as\s+|,\s+also\s+",
    re.IGNORECASE,
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
