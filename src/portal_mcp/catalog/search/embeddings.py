"""Dense text embeddings for search: the encoder (a static model in model2vec's format) and the on-disk cache.

The bundled model (`model/`, built by `benchmarks/search_eval/build_search_model.py`, refitted on sentences by
`benchmarks/search_eval/tokenlearn.py` and fine-tuned on (query, tool) pairs by
`benchmarks/search_eval/contrastive.py`) holds one vector per token learned from all-MiniLM-L6-v2: a text's vector
is the normalised mean of its tokens' vectors, so embedding 10,000 tools takes about a second on one core and a
query well under a millisecond, with no transformer at run time. `search: {model: NAME_OR_PATH}` loads another model
in model2vec's format (a folder, or a hub name such as `minishlab/potion-base-8M`, downloaded when the machine is
online).

Vectors are cached on disk per model, keyed by a hash of each text: a restart or a catalog change only embeds
the texts that changed. The cache is a plain .npz file written atomically (several portals may share it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from portal_mcp.config import SearchConfig
from portal_mcp.errors import SearchModelError

logger = logging.getLogger(__name__)

BUNDLED_MODEL = Path(__file__).resolve().parent / "model"
MAX_TOKENS = 256
"""Tokens of a text that count: a tool's text is its name, a description head and parameter names."""
BATCH = 256
ON_THE_CALLER = 16
"""Texts up to this many (a query's: a whole task is at most 11) are tokenized on the calling thread, more (an
index build's) by the tokenizer's thread pool, which every search shares and whose threads spin for a while after
each batch, on the cores other searches need. Measured with the code before and after alternating: two threads
searching the speed benchmark's mix at 10,000 tools, 4.75 -> 4.26 s and p95 17.7 -> 15.4 ms (8 rounds each); the
fairness benchmark (7 runs each), Alice's median latency 297 -> 267 ms and the worst round's count of her searches
answered before Bob's 14 -> 4. A build keeps the pool: 10,000 tools' texts embed in 2.45 s with it, 3.49 without."""
ENCODING = 2
"""How texts become vectors, part of an encoder's identity (so cached vectors of an older way are not reused):
2 leaves out the tokenizer's unknown token."""
Vectors = np.ndarray[Any, np.dtype[np.float32]]


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/portal-mcp/embeddings` (default ~/.cache/portal-mcp/embeddings)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "portal-mcp" / "embeddings"


class Encoder:
    """A static embedding model in model2vec's format: texts -> normalised float32 vectors (the mean of their
    tokens' vectors).

    The folder holds `model.safetensors` (an `embeddings` matrix, one row per token; optional per-token `weights`
    and a `mapping` from token to row, as model2vec's vocabulary quantisation writes them) and `tokenizer.json`.
    """

    def __init__(
        self,
        name: str,
        tokenizer: Any,
        embeddings: np.ndarray[Any, Any],  # float16 or float32, as stored; rows are widened when read
        weights: Vectors | None = None,
        mapping: np.ndarray[Any, np.dtype[np.int64]] | None = None,
        tokenizer_file: bytes = b"",
    ) -> None:
        self.name = name
        self._tokenizer = tokenizer
        self._embeddings = embeddings
        self._weights = weights
        self._mapping = mapping
        # Emoji, rare CJK characters and other symbols outside the vocabulary all become the one unknown token:
        # counted, its vector made "𠀋𠀌" and "🎯 📦" the same text (cosine 1.0) and drew every tool whose
        # description is rich in emoji towards them. Left out, as model2vec leaves it out. (The bundled model reads
        # the 6,000 most used Chinese characters: `benchmarks/search_eval/cjk.py`.)
        unknown = getattr(tokenizer.model, "unk_token", None)
        self._unknown = tokenizer.token_to_id(unknown) if isinstance(unknown, str) else None
        # Names are not identities (a folder can be rebuilt, a refit moves only some rows): all the numbers are, and
        # the tokenizer as stored (the same rows read through more tokens, 視頻 as 视频, give other vectors).
        digest = hashlib.sha256(f"{ENCODING} {name}".encode() + str(embeddings.shape).encode() + embeddings.tobytes())
        for extra in (weights, mapping):
            digest.update(b"-" if extra is None else extra.tobytes())
        digest.update(hashlib.sha256(tokenizer_file).digest())
        self.identity = digest.hexdigest()[:16]
        self.dims = int(embeddings.shape[1])

    @classmethod
    def load(cls, model: str | Path | None = None) -> Encoder:
        """The bundled model (None), a model folder, or a hub name (downloaded when the machine is online);
        `SearchModelError` saying why when it cannot load."""
        source = str(model) if model is not None else str(BUNDLED_MODEL)
        try:
            folder = Path(source).expanduser()
            if not folder.is_dir():
                if source.startswith((".", "/", "~")) or source.count("/") != 1:
                    raise FileNotFoundError(f"no model folder at {source}")
                from huggingface_hub import snapshot_download

                folder = Path(snapshot_download(source, allow_patterns=["*.json", "*.safetensors"]))
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer

            tensors = load_file(str(folder / "model.safetensors"))
            tokenizer_file = (folder / "tokenizer.json").read_bytes()
            tokenizer = Tokenizer.from_str(tokenizer_file.decode("utf-8"))
            # Kept as stored (the bundled model is float16: 29 MB, not 58) and widened row by row when read.
            embeddings = tensors["embeddings"]
        except Exception as error:  # a missing file, a hub or network error, a corrupt tensor file
            raise SearchModelError(source, f"{type(error).__name__}: {error}".strip()) from error
        tokenizer.no_padding()
        tokenizer.no_truncation()
        weights = tensors["weights"].astype(np.float32) if "weights" in tensors else None
        mapping = tensors["mapping"].astype(np.int64) if "mapping" in tensors else None
        return cls("bundled" if model is None else source, tokenizer, embeddings, weights, mapping, tokenizer_file)

    def encode(self, texts: Sequence[str]) -> Vectors:
        """One normalised vector per text (zeros for a text with no known token), `BATCH` texts at a time so
        memory stays bounded whatever the catalog's size."""
        vectors = np.zeros((len(texts), self.dims), dtype=np.float32)
        for start in range(0, len(texts), BATCH):
            vectors[start : start + BATCH] = self._encode(texts[start : start + BATCH])
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        normalised: Vectors = vectors / np.maximum(norms, 1e-9)
        return normalised

    def _encode(self, texts: Sequence[str]) -> Vectors:
        """Mean token vectors of a batch (not normalised)."""
        vectors = np.zeros((len(texts), self.dims), dtype=np.float32)
        ids = self.token_ids(texts)
        lengths = np.array([len(row) for row in ids])
        if not lengths.sum():
            return vectors
        flat = np.concatenate(ids)
        # Each distinct row widened to float32 once: a batch repeats its common tokens thousands of times, and
        # widening float16 costs four times a float32 gather.
        distinct, where = np.unique(self._mapping[flat] if self._mapping is not None else flat, return_inverse=True)
        rows = self._embeddings[distinct].astype(np.float32)[where]
        if self._weights is not None:
            rows = rows * self._weights[flat][:, None]
        filled = lengths > 0
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))[filled]
        vectors[filled] = np.add.reduceat(rows, starts, axis=0) / lengths[filled][:, None]
        return vectors

    def whole_words(self, words: Sequence[str]) -> list[bool]:
        """For each word, whether the model reads it as one token of its vocabulary (a word it has a vector of its own
        for), not as pieces of words: "cake" yes; "zzzz" (z + ##zz + ##z), "asdkjh", and some real words ("refund" is
        ref + ##und) no."""
        return [len(encoding.ids) == 1 and encoding.ids[0] != self._unknown for encoding in self._encodings(words)]

    def token_ids(self, texts: Sequence[str]) -> list[np.ndarray[Any, np.dtype[np.int64]]]:
        """Each text's tokens as the model reads them (the unknown token left out, at most `MAX_TOKENS`): the
        training scripts read texts this way too, so a model is fitted to what it is given at run time."""
        known = [np.asarray(encoding.ids, dtype=np.int64) for encoding in self._encodings(texts)]
        return [(ids if self._unknown is None else ids[ids != self._unknown])[:MAX_TOKENS] for ids in known]

    def _encodings(self, texts: Sequence[str]) -> list[Any]:
        """The tokenizer's encodings of `texts` (no special tokens): a few on the calling thread, many by its pool
        (`ON_THE_CALLER`)."""
        if len(texts) <= ON_THE_CALLER:
            return [self._tokenizer.encode(text, add_special_tokens=False) for text in texts]
        return list(self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=False))


class EmbeddingCache:
    """Vectors of texts by one encoder, remembered in `folder` across restarts (None: in memory only).

    `embedded` counts the texts this cache had to run through the encoder (a warm start embeds none).
    """

    def __init__(self, encoder: Encoder, folder: Path | None) -> None:
        self.encoder = encoder
        self.path = folder / f"{encoder.identity}.npz" if folder is not None else None
        self.embedded = 0
        self._vectors: dict[bytes, Vectors] = {}
        self._loaded = False

    def vectors(self, texts: Sequence[str]) -> Vectors:
        """One row per text, from the cache where known; new ones are embedded and saved."""
        self._load()
        keys = [hashlib.sha256(text.encode()).digest()[:16] for text in texts]
        missing = list(dict.fromkeys(key for key in keys if key not in self._vectors))
        if missing:
            first = dict(zip(keys, texts, strict=True))
            # Rounded as the cache stores them, so a warm start ranks exactly as the cold one did.
            fresh = self.encoder.encode([first[key] for key in missing]).astype(np.float16).astype(np.float32)
            self._vectors.update(zip(missing, fresh, strict=True))
            self.embedded += len(missing)
            self._save()
        if not keys:
            return np.zeros((0, self.encoder.dims), dtype=np.float32)
        return np.stack([self._vectors[key] for key in keys]).astype(np.float32)

    def _load(self) -> None:
        if self._loaded or self.path is None:
            return
        self._loaded = True
        try:
            with np.load(self.path) as data:
                keys, vectors = data["keys"], data["vectors"]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError) as error:
            logger.warning("ignoring the unreadable embedding cache %s: %s", self.path, error)
            return
        if vectors.ndim == 2 and vectors.shape[1] == self.encoder.dims and keys.shape == (len(vectors), 16):
            self._vectors.update(zip((key.tobytes() for key in keys), vectors.astype(np.float32), strict=True))

    def _save(self) -> None:
        if self.path is None:
            return
        # As raw bytes (numpy's "S" strings would drop a digest's trailing zero bytes).
        keys = np.frombuffer(b"".join(self._vectors), dtype=np.uint8).reshape(-1, 16)
        vectors = np.stack(list(self._vectors.values())).astype(np.float16)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.path.parent, suffix=".npz", delete=False) as file:
                np.savez(file, keys=keys, vectors=vectors)
            os.replace(file.name, self.path)
        except OSError as error:
            # A read-only home must not stop search: the vectors are still in memory.
            logger.warning("cannot write the embedding cache %s: %s", self.path, error)


def search_embeddings(settings: SearchConfig) -> EmbeddingCache | None:
    """The embedding cache `search_api` ranks with, or None for words only: `semantic: false`, or (with one
    warning line) a model that cannot be loaded."""
    if not settings.semantic:
        return None
    try:
        encoder = Encoder.load(settings.model)
    except SearchModelError as error:
        logger.warning("%s; searching by words only", error, extra={"event": "search_model_unavailable"})
        return None
    return EmbeddingCache(encoder, settings.cache or default_cache_dir())
