"""What a tool is found by: the texts and tokens the search index builds from each tool, and what it mines from
the whole catalog (verb pairs used interchangeably; the words naming servers are `routing.py`'s). Used by
`portal_mcp.search`."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from portal_mcp.catalog.model import ToolEntry
from portal_mcp.catalog.search.glossary import bundled, in_chinese
from portal_mcp.catalog.search.words import SEPARATOR, WORD, tokenize

NAME_WEIGHT = 2
"""How often name, server and title words repeat in the full document (on top of the headline index)."""
# Past this, a long description or parameter text mostly adds words that dilute BM25's length normalisation.
DESCRIPTION_CHARS = 2000
PARAMETER_CHARS = 300
HEADLINE_CHARS = 200
DENSE_DESCRIPTION_CHARS = 400
# A verb pair is mined when a tool's name starts with one and its description with the other this many times.
MINED_PAIR_COUNT = 3

_SENTENCE_END = re.compile(r"(?<=[.!?])\s|\n")


def dense_text(entry: ToolEntry) -> str:
    """What a tool's vector is made of: its name in words, server, title, description head, parameter names."""
    name = " ".join(WORD.findall(re.sub(r"([a-z])([A-Z])", r"\1 \2", entry.name).replace("_", " ").lower()))
    parameters = " ".join(key.replace("_", " ") for key, _ in _parameters(entry.input_schema))
    parts = [
        name,
        entry.server.replace("_", " "),
        entry.title or "",
        entry.description[:DENSE_DESCRIPTION_CHARS],
        parameters,
    ]
    return ". ".join(part for part in parts if part)


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
    return name_document(entry) + prose(first_sentence(entry.description))


def document(entry: ToolEntry) -> list[str]:
    """The tokens a tool is found by, names repeated to weigh them above the prose."""
    tokens = name_document(entry) * NAME_WEIGHT
    tokens += prose(entry.description[:DESCRIPTION_CHARS])
    for key, schema in _parameters(entry.input_schema):
        tokens += tokenize(key)
        description = schema.get("description")
        if isinstance(description, str):
            tokens += prose(description[:PARAMETER_CHARS])
    return tokens


def prose(text: str) -> list[str]:
    """The tokens of a description, and for one written in Chinese the English words of its Chinese words
    (`search/glossary.py`): an English query's words then match a tool described in Chinese. A description that
    says it in English too is not glossed: its English already says it, and more words would only weaken it.

    Train splits (recall@1/@5): metatool_zh 0.440/0.674 -> 0.464/0.693, metatool_zh_mixed 0.360/0.544 ->
    0.402/0.595, own_with_metatool_zh (the cost side) 0.785/0.960 -> 0.791/0.955; every other set unchanged. The
    headline and the document alike; glossing the text of a tool's vector too lost 0.02-0.04 (the model reads
    Chinese already, `cjk.py`); moving the model's Chinese words toward their glosses' vectors measured alike or
    lower."""
    tokens = tokenize(text)
    if in_chinese(text):
        tokens += tokenize(bundled().english(text))
    return tokens


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
