"""The words of search: stopwords, the synonym tables and `tokenize`/`stem`, shared by the index and the query.

`EQUIVALENTS` and `RELATED` are written as words and phrases; `*_TOKENS` / `*_PHRASES` are the same tables in the
form a query is looked up in (see `portal_mcp.catalog.search` for how each weighs).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import TypeVar

from bm25s.stopwords import STOPWORDS_EN

STOPWORDS = frozenset(STOPWORDS_EN) | {
    *("what", "which", "who", "whom", "how", "when", "where", "why", "i", "me", "my", "we", "our", "you", "your"),
    *("do", "does", "did", "can", "could", "would", "should", "please", "want", "need", "from", "some", "its"),
    *("let", "lets", "us", "them", "someone", "something", "thing", "things", "via", "using", "use"),
}
# Agents' words for what tools call otherwise, applied to queries only (a query still matches its own words first).
# Keys are words or phrases. EQUIVALENTS mean the same thing (abbreviations, idioms) and weigh like the query's own
# words; RELATED words often mean the same thing and weigh `search.SYNONYM_WEIGHT`. Kept generic: an entry is a fact about
# how people and tools talk, never about one query or one tool.
EQUIVALENTS = {
    "repo": "repository",
    "repos": "repositories",
    "pr": "pull request",
    "prs": "pull requests",
    "mr": "merge request",
    "mrs": "merge requests",
    "k8s": "kubernetes",
    "kube": "kubernetes",
    "mongo": "mongodb",
    "pg": "postgres",
    "postgresql": "postgres",
    "folder": "directory",
    "dir": "directory",
    "msg": "message",
    "dm": "direct message",
    "env": "environment",
    "var": "variable",
    "config": "configuration",
    "picture": "image",
    "photo": "image",
    "popup": "dialog",
    "site": "website",
    "several": "multiple",
    "chargeback": "dispute",
    "money back": "refund",
    "on call": "oncall",
    "on-call": "oncall",
    "time zone": "timezone",
    "get rid": "delete",
    "sign off": "approve",
    "lgtm": "approve",
    "rerun": "retry",
    "re-run": "retry",
    "ack": "acknowledge",
    "discussion": "thread",
    "thumbs up": "emoji reaction",
    "share price": "stock price",
    "share prices": "stock prices",
    "colour": "color",
    "colours": "colors",
    "reboot": "restart",
    "address book": "contacts",
}
RELATED = {
    # actions
    "make": "create",
    "new": "create",
    "add": "create",
    "start": "create",
    "open": "create read",
    "write": "create",
    "declare": "create",
    "set up": "create",
    "spin up": "create",
    "kick off": "create start trigger run",
    "show": "get list",
    "see": "get list",
    "view": "get",
    "display": "get",
    "check": "get",
    "load": "read",
    "look up": "search get",
    "lookup": "search get",
    "look for": "search find",
    "find": "search",
    "locate": "search",
    "fetch": "get",
    "retrieve": "get",
    "remove": "delete",
    "detach": "remove delete",
    "take off": "remove",
    "delete": "remove",
    "drop": "delete",
    "erase": "delete",
    "destroy": "delete",
    "forget": "delete",
    "change": "update",
    "edit": "update",
    "modify": "update",
    "fix": "update",
    "alter": "update",
    "rename": "move",
    "send": "post",
    "post": "send",
    "tell": "send post",
    "notify": "send post",
    "give": "assign",
    "land": "merge",
    "reply": "comment",
    "duplicate": "clone copy",
    "restart": "retry",
    "abort": "cancel stop",
    "halt": "stop cancel",
    "kill": "stop cancel delete",
    "silence": "mute",
    "mute": "silence",
    "snooze": "mute silence",
    "watch": "watcher subscribe",
    "subscribe": "watch watcher",
    "attach": "upload link",
    "grab": "get download",
    "save": "write",
    "undo": "rollback revert",
    "roll back": "rollout rollback undo",
    "rollback": "rollout",
    "ship": "deploy",
    "compare": "diff",
    "difference": "diff",
    "summarize": "summary",
    "count": "number",
    "how many": "count number",
    "tail": "log",
    "sum": "aggregate",
    "group by": "aggregate",
    "nightly": "schedule",
    "recurring": "schedule",
    "permitted": "allowed",
    "permit": "allow",
    "who": "user member",
    # things
    "headline": "news",
    "headlines": "news",
    "kind": "type",
    "kinds": "types",
    "ticket": "issue",
    "bug": "issue",
    "error": "issue",
    "png": "image screenshot",
    "spreadsheet": "excel workbook sheet",
    "worksheet": "sheet",
    "tab": "sheet",
    "mail": "email",
    "email": "mail",
    "doc": "document documentation",
    "docs": "document documentation",
    "wiki": "page",
    "now": "current",
    "discount": "coupon",
    "promo": "coupon",
    "bill": "invoice",
    "replicas": "scale",
    "tunnel": "port forward",
    "localhost": "local port",
    "container": "pod",
    "shell": "exec command",
    "member": "user",
    "members": "users",
    "people": "users",
    "person": "user",
    "everyone": "users",
    "automation": "workflow",
    "history": "log",
    "changelog": "history",
    "field": "property",
    "fields": "properties",
    "attribute": "property",
    "structure": "schema",
    "secret": "key",
    "macro": "vba",
    "macros": "vba",
    "crm": "hubspot",
}
# Words are letters and digits of any script (`[^\W_]`): "Größe", "créer" and "文件" are words, not separators.
# ASCII text (nearly all) takes the ASCII pattern, which finds the same words faster.
_COMPOUND = re.compile(r"[^\W_]+(?:[_.\-][^\W_]+)*")
_ASCII_COMPOUND = re.compile(r"[A-Za-z0-9]+(?:[_.\-][A-Za-z0-9]+)*")
SEPARATOR = re.compile(r"[_.\-]")
_CAMEL_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
WORD = re.compile(r"[^\W_](?:[^\W_]|-)*")
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
"""Scripts written without spaces between words (kana, CJK ideographs, Hangul syllables): a run of them is not one
word, so it is read as overlapping pairs of characters ("热门视频" -> 热门, 门视, 视频), the way Lucene's CJK analyzer
reads it: no dictionary, and a query's pair meets the same pair in a description."""


def tokenize(text: str) -> list[str]:
    """Lowercased, stemmed words without stopwords; identifiers are split and also kept whole.

    `getCurrentTime` and `get_current_time` both give `get`, `current`, `tim` and the whole name, so a query may
    use either the words or the exact name.
    """
    tokens: list[str] = []
    for compound in _compounds(text):
        tokens.extend(_compound_tokens(compound))
    return tokens


def _compounds(text: str) -> list[str]:
    """The words and identifiers of a text (`read-only`, `get_current_time`, `Größe`)."""
    return (_ASCII_COMPOUND if text.isascii() else _COMPOUND).findall(text)


@functools.lru_cache(maxsize=1 << 16)
def _compound_tokens(compound: str) -> tuple[str, ...]:
    # Cached: a catalog repeats the same words thousands of times, and indexing time is mostly spent here.
    pieces = SEPARATOR.split(compound)
    if compound.isascii():  # nearly always: the same as `_parts`, without a call per piece (15% of a build)
        parts = [part.lower() for piece in pieces for part in _CAMEL_PART.findall(piece)]
    else:
        parts = [part for piece in pieces for part in _parts(piece)]
    # One character is no word, unless it is one of a script without spaces (图, "picture").
    tokens = [stem(part) for part in parts if part not in STOPWORDS and (len(part) > 1 or _UNSPACED.match(part))]
    if len(parts) > 1:
        tokens.append(compound.lower())
    return tuple(tokens)


def _parts(piece: str) -> list[str]:
    """The lowercased words of one piece of an identifier: camelCase split for ASCII (`getCurrentTime`); other
    scripts as whole words, casefolded ("Straße" meets "strasse"), with unspaced runs as pairs (`_UNSPACED`)."""
    if piece.isascii():
        return [part.lower() for part in _CAMEL_PART.findall(piece)]
    parts: list[str] = []
    start = 0
    for run in _UNSPACED.finditer(piece):
        if run.start() > start:
            parts.append(piece[start : run.start()].casefold())
        text = run.group()
        parts.extend([text] if len(text) == 1 else [text[i : i + 2] for i in range(len(text) - 1)])
        start = run.end()
    if start < len(piece):
        parts.append(piece[start:].casefold())
    return parts


@functools.lru_cache(maxsize=1 << 16)
def forms(text: str) -> frozenset[str]:
    """The words of a text or identifier as written, lowercased and not stemmed (`list_pullRequests` -> list,
    pull, requests): what tells `list_pull_requests` from `get_pull_request` once stems agree."""
    return frozenset(
        part for compound in _compounds(text) for piece in SEPARATOR.split(compound) for part in _parts(piece)
    )


# Words whose suffix is not an inflection: "news" is not the plural of "new", nor "series" of "sery".
UNSTEMMED = frozenset(
    {"news", "series", "species", "analytics", "physics", "mathematics", "always", "canvas", "status"}
)


@functools.lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """A tiny suffix normaliser (plural, -ing, -ed, -ment, -ion, final e) so `messages`/`message`,
    `created`/`create`/`creation` and `deployment`/`deploy` meet.

    Cheaper and cruder than Porter; it only has to map a query word and a description word to the same token.
    """
    if len(word) <= 3 or word.isdigit() or word in UNSTEMMED or not word.isascii():
        return word  # the suffixes below are English ones
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
    elif word.endswith("ment") and len(word) > 9:
        word = word[:-4]
    elif word.endswith(("tion", "sion")) and len(word) > 7:
        word = word[:-3]
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


# Built after `tokenize` and `stem` exist, in the same form as query tokens: one-word keys by their token (so
# `folders` finds `folder`'s synonyms), phrases (and stopwords: "now", "who") by their lowercased words.
def _by_token(table: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    return {tokenize(k)[0]: tuple(tokenize(v)) for k, v in table.items() if " " not in k and len(tokenize(k)) == 1}


def _by_phrase(table: Mapping[str, str]) -> Phrases[tuple[str, ...]]:
    return Phrases({k: tuple(tokenize(v)) for k, v in table.items() if " " in k or len(tokenize(k)) != 1})


V = TypeVar("V")


class Phrases(dict[str, V]):
    """A table keyed by phrases of up to 3 lowercased words, looked up by a query's runs of words (`found`).

    A whole task has a hundred words and three hundred runs; only those whose first word starts some phrase are
    joined and looked up (a tenth of a task's search time was spent joining runs that start none)."""

    def __init__(self, table: Mapping[str, V]) -> None:
        super().__init__(table)
        self.starts = frozenset(phrase.split(" ")[0] for phrase in table)

    def found(self, words: Sequence[str], sizes: Sequence[int] = (1, 2, 3)) -> list[V]:
        """The values of the runs of `sizes` words that are phrases of the table, by size, then in order."""
        starts = self.starts
        return [
            value
            for size in sizes
            for start in range(len(words) - size + 1)
            if words[start] in starts and (value := self.get(" ".join(words[start : start + size]))) is not None
        ]


EQUIVALENT_TOKENS, EQUIVALENT_PHRASES = _by_token(EQUIVALENTS), _by_phrase(EQUIVALENTS)
RELATED_TOKENS, RELATED_PHRASES = _by_token(RELATED), _by_phrase(RELATED)


def expand(
    words: list[str], tokens: list[str], by_token: Mapping[str, Sequence[str]], by_phrase: Phrases[tuple[str, ...]]
) -> list[str]:
    """Synonyms of a query's phrases (of up to 3 words) and tokens, as index tokens, in order and once each."""
    extra: list[str] = [token for synonyms in by_phrase.found(words) for token in synonyms]
    for token in tokens:
        extra.extend(by_token.get(token, ()))
    return list(dict.fromkeys(extra))
