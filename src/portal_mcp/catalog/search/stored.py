"""The slow parts of a search index (`Built`) kept on disk, so a portal restarting on the same catalog reads them
back in a fraction of the time building them takes (0.1 s against 2-3 s at 10,000 tools).

A file is named by a hash of everything the parts come from: each tool as listed (server, names, title,
description, input schema), what the config says for search (server descriptions, `search:` curation), the
embedding model's identity, and the search code and its glossary themselves. Anything changing gives another name,
so a stale file is never read; the `KEEP` newest files stay, older ones are removed. Files are written whole (a temporary file
renamed), hold arrays and JSON only (never pickles), and one that cannot be read is rebuilt with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from portal_mcp.catalog.model import ToolEntry
from portal_mcp.catalog.search.built import Built
from portal_mcp.catalog.search.glossary import BUNDLED_GLOSSARY
from portal_mcp.catalog.search.lexical import Lexical
from portal_mcp.config import ServerConfig

logger = logging.getLogger(__name__)

FORMAT = 2
KEEP = 4
"""Index files kept in the folder (a few catalogs: servers coming and going, several portals sharing a cache)."""
_CODE = Path(__file__).resolve().parent


class IndexStore:
    """Built indexes in `folder` (next to the embedding cache), one `index-HASH.npz` per catalog."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.loaded = 0
        """How many indexes were read back rather than built (a warm start reads one)."""

    def key(self, entries: Sequence[ToolEntry], servers: Mapping[str, ServerConfig], model: str | None) -> str:
        """The hash naming the index of `entries` under this config, for `model` (an encoder identity, or None)."""
        digest = hashlib.sha256(f"{FORMAT} {model}".encode())
        for path in sorted([*_CODE.glob("*.py"), BUNDLED_GLOSSARY]):
            digest.update(path.read_bytes())
        for entry in entries:
            fields = [entry.server, entry.name, entry.python_name, entry.title, entry.description, entry.input_schema]
            digest.update(json.dumps(fields, default=dict, ensure_ascii=False).encode())
        for name in sorted(servers):
            config = servers[name]
            digest.update(json.dumps([name, config.description, config.search.model_dump(mode="json")]).encode())
        return digest.hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.folder / f"index-{key}.npz"

    def load(self, key: str, tools: int, servers: int) -> Built | None:
        """The index saved under `key`, or None when there is none (or it is unreadable or does not fit)."""
        path = self.path(key)
        try:
            with np.load(path, allow_pickle=False) as data:
                built = _unpack({name: data[name] for name in data.files})
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.warning("ignoring the unreadable search index %s: %s", path, error)
            return None
        fits = built.documents.size == tools and len(built.name_words) == tools == len(built.rare)
        if built.dense is not None and built.servers_dense is not None:
            fits = fits and len(built.dense) == tools and len(built.servers_dense) == servers
        if not fits:
            logger.warning("ignoring the search index %s: it was built for another catalog", path)
            return None
        self.loaded += 1
        return built

    def save(self, key: str, built: Built) -> None:
        """Write the index under `key` and remove all but the `KEEP` newest; a warning when the folder is
        read-only (search still works from memory)."""
        path = self.path(key)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.folder, prefix=".index-", suffix=".npz", delete=False) as file:
                np.savez(file, **_pack(built))
            os.replace(file.name, path)
            stored = sorted(self.folder.glob("index-*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
            for old in stored[KEEP:]:
                old.unlink(missing_ok=True)
        except OSError as error:
            logger.warning("cannot write the search index %s: %s", path, error)


_LEXICAL = ("documents", "headlines", "other_scripts")
"""The BM25 parts of `Built` (`other_scripts` may be None: then it has no arrays)."""


def _pack(built: Built) -> dict[str, Any]:
    arrays: dict[str, Any] = {}
    meta: dict[str, Any] = {
        "aliases": {word: sorted(servers) for word, servers in built.aliases.items()},
        "name_words": [sorted(words) for words in built.name_words],
        "related": built.related,
        "rare": built.rare,
    }
    for part in _LEXICAL:
        lexical: Lexical | None = getattr(built, part)
        if lexical is not None:
            arrays |= {
                f"{part}.data": lexical.data,
                f"{part}.indices": lexical.indices,
                f"{part}.indptr": lexical.indptr,
            }
            meta[part] = {"vocab": lexical.vocab, "size": lexical.size}
    if built.dense is not None and built.servers_dense is not None:
        # The vectors come float16-rounded from the embedding cache: float16 keeps them exactly, in half the bytes.
        arrays |= {"dense": built.dense.astype(np.float16), "servers_dense": built.servers_dense}
    arrays["meta"] = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode(), dtype=np.uint8)
    return arrays


def _unpack(arrays: Mapping[str, Any]) -> Built:
    meta = json.loads(arrays["meta"].tobytes())
    lexical = {
        part: Lexical(
            meta[part]["vocab"],
            arrays[f"{part}.data"],
            arrays[f"{part}.indices"],
            arrays[f"{part}.indptr"],
            int(meta[part]["size"]),
        )
        for part in _LEXICAL
        if part in meta
    }
    dense = arrays["dense"].astype(np.float32) if "dense" in arrays else None
    return Built(
        documents=lexical["documents"],
        headlines=lexical["headlines"],
        other_scripts=lexical.get("other_scripts"),
        aliases={word: frozenset(servers) for word, servers in meta["aliases"].items()},
        name_words=[frozenset(words) for words in meta["name_words"]],
        related={word: tuple(words) for word, words in meta["related"].items()},
        rare=meta["rare"],
        dense=dense,
        servers_dense=arrays.get("servers_dense"),
    )
