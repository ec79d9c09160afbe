"""Whole tasks as queries: split "find the trending repos, read the top one's wiki, save a summary as Markdown"
into the intents an agent will need a tool for, each searched on its own.

A query splits at sentence ends, semicolons, numbered or bulleted steps, the words that chain steps ("then",
"after that"), and a comma or "and" followed by a word asking for an action (`ACTIONS`); a task written in Chinese
at its full-width sentence ends and its chaining words (然后, and after a comma 另外, 再, 并 ...: MetaTool's
two-tool tasks translated into Chinese, train split, over its English tools: recall@5 0.903 -> 0.917, needed@10
0.800 -> 0.814). A piece needs `MIN_WORDS` content words to stand as an intent; shorter pieces join their
neighbour ("and save it" alone says too little to search). A query of one intent is searched as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from portal_mcp.catalog.search.glossary import HAN
from portal_mcp.catalog.search.words import STOPWORDS, WORD

T = TypeVar("T")
MIN_WORDS = 2
MAX_INTENTS = 10
"""As many intents as a task's first 10 tools can answer one each (measured on the train split of TRAJECT-Bench's
tasks, which need 3 to 10 tools: 6 intents find 0.58 of a task's tools in the first 10, 8 find 0.62, 10 find 0.64;
every other set's train split unchanged)."""
STEP_SIMILARITY = 0.3
UNSURE_STEP_WEIGHT = 0.5
"""An intent none of whose best 3 tools is within `STEP_SIMILARITY` by meaning counts this much in its task's ranking
(`step_weights`): it is often a step that needs no tool ("keep it short", "I'm new to this"). Train splits: TRAJECT-Bench
needed@10 0.638 -> 0.646, recall@5 0.919 -> 0.927 (recall@1 0.688 -> 0.667), every other set within a query; 0.35 or
0.4, or a weight of 0.3, lose own_tasks or MetaTool's tasks 0.004 to 0.01."""
_STEP = re.compile(r"(?:^|\s)(?:\d+[.)]|[-*•])\s+")
_CHAINS_ZH = "另外|此外|同时|并且|之后|最后|顺便|还有|再|并|还"
# A sentence ends at ".", "!", "?" or ";", but not after an abbreviation or an initial ("equity vs. equality",
# "e.g. a CSV", "J. K. Rowling").
_SENTENCE = re.compile(
    r"(?<!\bvs)(?<!\be\.g)(?<!\bi\.e)(?<!\bdr)(?<!\bmr)(?<!\bms)(?<!\bmrs)(?<!\bst)(?<!\bno)(?<!\b[a-z])"
    r"[.!?;]+(?:\s+|$)|\n+|,?\s+(?:and\s+then|then|after\s+that|afterwards|finally)\s+"
    # Chinese: full-width sentence ends, and the words chaining steps (然后 "then"; after a comma, 另外 "besides",
    # 再 "and then", 并 "and also", ...).
    rf"|[。！？；]+\s*|[，,]?\s*(?:然后|接着|随后)|[，,]\s*(?:{_CHAINS_ZH})",
    re.IGNORECASE,
)
# Words that only chain steps, at either end of a piece: "First, show me ...", "..., and".
_LEADING = re.compile(
    r"^(?:(?:and|then|first(?:ly)?|second(?:ly)?|next|finally|lastly|also|additionally|afterwards|after\s+that)"
    rf"\b[\s,:]*|(?:首先|{_CHAINS_ZH})[\s,:，：]*)+",
    re.IGNORECASE,
)
_SPACE = re.compile(r"\s{2,}")
_TRAILING = re.compile(r"[\s,]+(?:and|then|or)$", re.IGNORECASE)
# A piece that only says where or with what ("From the Numbers API, get a fact", "On Kanji alive, list ...") belongs
# to the step that follows it.
_FRONTED = re.compile(r"^(?:from|on|in|at|using|with|via|through|inside|within|for|by)\b", re.IGNORECASE)
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
    # British spellings
    " analyse organise summarise visualise"
)
_QUESTIONS = "how what which whether where when who why"
ACTIONS = sorted({*_VERBS.split(), *_QUESTIONS.split()})
_ASKING = frozenset(ACTIONS)
_JOIN = re.compile(
    rf",\s*(?:and\s+)?(?=(?:{'|'.join(ACTIONS)})\b)|\s+and\s+(?:also\s+)?(?=(?:{'|'.join(ACTIONS)})\b)"
    # "..., and also ...", "... as well as ...": a new request whatever word follows. (Splitting before "can you"
    # too lost on the train splits of MetaTool: it mostly follows a preamble, "I'm new here. Can you ...".)
    r"|,?\s+and\s+also\s+|,?\s+as\s+well\s+as\s+|,\s+also\s+",
    re.IGNORECASE,
)


def content_words(text: str) -> list[str]:
    """The words of a text that say something; a run of Chinese characters, written without spaces, counts a word
    for each two characters (Chinese words are mostly of two)."""
    words = []
    for word in WORD.findall(text.lower()):
        if HAN.match(word):
            words += [word[start : start + 2] for start in range(0, len(word), 2)]
        elif word not in STOPWORDS:
            words.append(word)
    return words


def _only_where(piece: str) -> bool:
    """A piece saying only where or with what a step happens: it starts with such a preposition and asks nothing."""
    return bool(_FRONTED.match(piece)) and not any(word in _ASKING for word in WORD.findall(piece.lower()))


def split_intents(query: str) -> list[str]:
    """The query's intents in order: pieces with at least `MIN_WORDS` content words (at most `MAX_INTENTS`);
    a single-intent query gives `[query]`."""
    pieces: list[str] = []
    # Each run of spaces made one: the patterns above, tried at every space of a long run, cost its length squared.
    spaced = _SPACE.sub(lambda run: "\n" if "\n" in run.group() else " ", query)
    for step in _STEP.split(spaced):
        for sentence in _SENTENCE.split(step):
            pieces.extend(_JOIN.split(sentence))
    intents: list[str] = []
    pending = ""
    for piece in (_TRAILING.sub("", _LEADING.sub("", piece.strip(" ,"))).strip(" ,") for piece in pieces):
        if not piece:
            continue
        piece = f"{pending} {piece}".strip() if pending else piece
        if len(content_words(piece)) < MIN_WORDS or _only_where(piece):
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


def fuse(
    groups: Sequence[Sequence[T]], limit: int, key: Callable[[T], Hashable], weights: Sequence[float] = ()
) -> list[T]:
    """One flat ranking from several (the whole task's, then each intent's): an item scores 1/rank in every group
    that has it, summed (reciprocal rank fusion). Each intent's best tool comes near the top, right after the whole
    task's best, in the order the task names them; a tool that several intents (or the task and an intent) rank
    high comes before one only a single ranking wants; ties keep the groups' order.

    Measured on the train splits against the earlier round-robin (the whole task 2 tools a round, each intent 1):
    share of a task's tools in the first 10 own_tasks 0.910 -> 0.928, TRAJECT-Bench 0.569 -> 0.582 (with
    `MAX_INTENTS` 10: 0.637), MetaTool's tasks 0.849 -> 0.851; giving the whole task more weight (1.25, 1.5) or a
    rank offset (1/(k + rank), k 0.5 to 10) measured lower. `weights` (1 for each group not given) scale a
    group's share."""
    scores: dict[Hashable, float] = {}
    items: dict[Hashable, T] = {}
    for number, group in enumerate(groups):
        weight = weights[number] if number < len(weights) else 1.0
        for rank, item in enumerate(group, 1):
            name = key(item)
            items.setdefault(name, item)
            scores[name] = scores.get(name, 0.0) + weight / rank
    order = sorted(scores, key=lambda name: -scores[name])  # stable: ties keep the order first seen
    return [items[name] for name in order[:limit]]


def step_weights(similarities: Sequence[Sequence[float | None]]) -> list[float]:
    """The weights of a task's own ranking (1) and of each intent's, given the similarities by meaning of each
    intent's tools, best first (None without a model: every intent then weighs 1)."""
    weights = [1.0]
    for found in similarities:
        near = [similarity for similarity in found[:3] if similarity is not None]
        sure = len(near) < len(found[:3]) or not found or max(near) >= STEP_SIMILARITY
        weights.append(1.0 if sure else UNSURE_STEP_WEIGHT)
    return weights
