"""What a query says, beyond its words (`search/words.py`): the words of asking politely and its paths and URLs
left out, the endings of its dotted names (data, not names), its abbreviations and idioms spelled out for the
model, and the English of a query written in Chinese (`search/glossary.py`)."""

from __future__ import annotations

import functools
import re

from portal_mcp.catalog.search.glossary import bundled, in_chinese
from portal_mcp.catalog.search.words import EQUIVALENTS, WORD, Phrases, stem, tokenize

POLITE = frozenset({"help", "assist", "assistance", "hi", "hey", "hello", "kindly", "interested", "specifically"})
"""How agents and people ask ("can you help me", "I'm interested in"), not what they ask for: dropped from queries
only (a tool may well be about help). Measured on the train splits: never worse, +0.006 recall@1 on whole tasks."""


# Paths and URLs in a query are its data, not what it asks for: `./test_project_root/src/main.py` should not match a
# tool about test reports of projects. Only shapes that cannot be prose count ("read/write" stays).
LITERAL = re.compile(
    r"(?:https?://|www\.)\S+"  # a URL
    r"|(?<![\w.~])(?:\.{1,2}|~)?/[\w.~/\\-]+"  # /abs, ./rel, ../up, ~/home
    r"|(?<![\w.~-])[\w.~-]+(?:[/\\][\w.~-]+){2,}"  # a/b/c
    r"|(?<![\w~-])[\w~-]+[/\\][\w~-]*\.[a-z0-9]{1,5}\b"  # dir/file.ext
)
"""Each shape starts where a run of its characters starts (the look-behinds): without them a long word was tried
from every one of its letters, a cost growing with the square of its length (30 ms for one word of 1,000)."""


_ENDING = re.compile(r"(?<=[^\W_])\.([^\W\d_][^\W_]{0,4})\b")


def endings(text: str) -> frozenset[str]:
    """The tokens a query writes only as the ending of a dotted name: a file's extension or a domain's ("main.py",
    "tomorrow.io"). Such a word is data, not a name: "main.py" does not mean the server elasticsearch_py."""
    ends = {token for match in _ENDING.finditer(text) for token in tokenize(match.group(1))}
    if not ends:
        return frozenset()
    alone = {
        token
        for match in WORD.finditer(text)
        if text[match.start() - 1 : match.start()] != "."
        for token in tokenize(match.group())
    }
    return frozenset(ends - alone)


def query_tokens(text: str) -> list[str]:
    """A query's tokens: `tokenize` without the words of asking politely (`POLITE`) and of its paths and URLs
    (`LITERAL`); a query written in Chinese also says the English of its words (`glossary.py`), which English tool
    texts use (MetaTool's queries in Chinese over its English tools, train split, recall@1/@5: 0.290/0.513 ->
    0.356/0.602; among the bundled catalog's English tools 0.189/0.340 -> 0.271/0.457; `GLOSSED_QUERY_CHARS`)."""
    text = LITERAL.sub(" ", text)
    if english := _english(text):
        text += " " + english
    return [token for token in tokenize(text) if token not in _POLITE_TOKENS]


GLOSSED_QUERY_CHARS = 200
"""A query's English is that of its first this many characters, each English word once: a Chinese task of several
steps fits, and a hostile query costs about what it did (4,000 characters of 热 at 4,027 tools: 13 ms unglossed,
129 ms glossed whole, 16,000 English words; "CJK runs" of the speed benchmark 13 -> 20 ms). Each word once also
scored higher on the train split (metatool_zh_queries_mixed recall@1 0.276 -> 0.291)."""


def _english(query: str) -> str:
    """The glossary's English of a query written in Chinese, "" for any other (`glossary.py`)."""
    return _glossed(query[:GLOSSED_QUERY_CHARS]) if in_chinese(query) else ""


@functools.lru_cache(maxsize=256)
def _glossed(head: str) -> str:
    # Cached: a query's words and its vector both ask (`query_tokens`, `spelled_out`), and so does `fit.understood`.
    return " ".join(dict.fromkeys(bundled().english(head).split()))


_POLITE_TOKENS = frozenset(stem(word) for word in POLITE)
_SPELLED_WORDS = {stem(k): v for k, v in EQUIVALENTS.items() if " " not in k}
_SPELLED_PHRASES = Phrases({k: v for k, v in EQUIVALENTS.items() if " " in k})


def spelled_out(text: str) -> list[str]:
    """What the query's abbreviations and idioms say in plain words (`EQUIVALENTS`: "k8s" -> "kubernetes", "share
    price" -> "stock price"), once each, for the query's vector: a model may not know them either. A query written
    in Chinese says its words' English too (the model reads both: recall@5 among English tools 0.457 -> 0.505 on
    the train split above, where the English alone scored 0.478)."""
    words = WORD.findall(text.lower())
    found = [plain for word in words if (plain := _SPELLED_WORDS.get(stem(word))) is not None]
    if english := _english(text):
        found.append(english)
    return list(dict.fromkeys(found + _SPELLED_PHRASES.found(words, (2, 3))))
