"""Whether a search's best tools fit the query at all: `search_api` answers "nothing fits" (the closest servers,
`search/reply.py`) instead of tools that merely share a word with it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from portal_mcp.catalog.model import ToolEntry
from portal_mcp.catalog.search.embeddings import Encoder
from portal_mcp.catalog.search.query import query_tokens
from portal_mcp.catalog.search.text import document
from portal_mcp.catalog.search.words import STOPWORDS, WORD, tokenize

# Measured on the train splits: 1% of queries that have a tool are judged weak.
WEAK_SIMILARITY = 0.25
WEAK_COVERAGE = 0.34


def weak(
    query: str,
    similarities: Sequence[float],
    entries: Sequence[ToolEntry],
    knows: Callable[[str], bool],
    model: Encoder,
) -> bool:
    """True when the best tools (`entries`, with their cosine `similarities` to the query) fit it poorly: the query
    has no word the catalog (`knows`) or the model knows (`understood`), or none of them is close by meaning
    (`WEAK_SIMILARITY`) and none says a `WEAK_COVERAGE` share of the query's words."""
    if not understood(query, knows, model):
        return True
    if max(similarities) >= WEAK_SIMILARITY:
        return False
    words = set(tokenize(query))
    said = max(len(words & set(document(entry))) for entry in entries)
    return said < WEAK_COVERAGE * len(words)


def understood(query: str, knows: Callable[[str], bool], model: Encoder) -> bool:
    """Whether some word of the query (stopwords aside) is one a tool's text uses or one the model has a token of its
    own for. The model reads any other word as pieces of words, and a text of nothing but pieces ("zzzz qqqq",
    "asdkjh qwpeoi") lies near every tool (cosine 0.5 to the best, as close as a real query's best), so such a
    query, or one of no word at all ("!!!???"), fits nothing."""
    if any(knows(token) for token in query_tokens(query)):
        return True
    words = WORD.findall(query.lower().replace("-", " "))  # "de-stress" says "stress"
    # Each word once, in one call: 4,000 characters of nonsense (570 words) take 3.5 ms with the GIL let go, not 11.
    return any(model.whole_words(list(dict.fromkeys(word for word in words if word not in STOPWORDS))))
