"""Search behind `search_api`: words (BM25, synonyms, server names) fused with meaning (a static embedding model).

index.py      SearchIndex: the ranking (lexical signals, dense fusion, server routing, "nothing fits")
words.py      stopwords, the synonym tables, tokenize/stem (shared by index and query)
query.py      what a query says beyond its words: politeness and literals left out, abbreviations spelled out, the
              English of a query written in Chinese
glossary.py   Chinese words' English (glossary_zh.tsv, from CC-CEDICT), for descriptions and queries in Chinese
actions.py    action verbs: what a tool's name does (read, create, update, delete, stop) and what a query asks for
text.py       what a tool is found by: its documents, headline, dense text; verb pairs mined from the catalog
routing.py    which servers a query names: the words naming servers (mined from the catalog), the most specific
siblings.py   a server's tools told apart by the rare words of their names (reordered among the best candidates)
embeddings.py the static model (model/, or `search: {model: ...}`) and the on-disk cache of tool vectors
lexical.py    a BM25 index as plain arrays (built by bm25s, saved and read back without it)
meaning.py    a query's similarities by meaning; a tool described in Chinese lifted for an English query
built.py      the slow parts of an index (BM25, mined words, vectors) and how they are built
stored.py     those parts kept on disk under a hash of the catalog: a restart reads them back
intents.py    a whole task split into intents, and the interleaving of their rankings
reply.py      the search_api replies that are not one list: a task by intent, "nothing fits"
cache.py      Indexes: the index of the current catalog, built once per catalog (in threads too)
"""

from portal_mcp.catalog.search.cache import Indexes
from portal_mcp.catalog.search.index import SearchHit, SearchIndex
from portal_mcp.catalog.search.routing import server_aliases
from portal_mcp.catalog.search.text import headline, mined_synonyms
from portal_mcp.catalog.search.words import stem, tokenize

__all__ = ["Indexes", "SearchHit", "SearchIndex", "headline", "mined_synonyms", "server_aliases", "stem", "tokenize"]
