"""A BM25 index as plain arrays: bm25s computes each token's scores once, then a query only adds them up.

bm25s's eager index is a sparse matrix with one column per token (the score every document gets for it). Kept as
three arrays and a vocabulary, it can be written to disk and read back (`search/stored.py`) without building it
again, and it holds nothing else of bm25s's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import bm25s
import numpy as np

Scores = np.ndarray[Any, np.dtype[np.float64]]
Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Lexical:
    """BM25 scores of `size` documents, by token: documents `indices[indptr[t]:indptr[t + 1]]` score `data[...]`
    for the token numbered `vocab[token]`."""

    vocab: Mapping[str, int]
    data: Array
    indices: Array
    indptr: Array
    size: int

    @classmethod
    def build(cls, documents: Sequence[list[str]]) -> Lexical:
        """The index of tokenized documents (bm25s defaults: Lucene's BM25, k1 1.5, b 0.75)."""
        index = bm25s.BM25()
        index.index(list(documents), show_progress=False)
        scores = index.scores
        vocab = {str(token): int(number) for token, number in index.vocab_dict.items()}
        return cls(vocab, scores["data"], scores["indices"], scores["indptr"], int(scores["num_docs"]))

    def scores(self, tokens: Sequence[str]) -> Scores:
        """Each document's BM25 score for the tokens (a token twice counts twice); zeros when none is known."""
        spans = [
            slice(self.indptr[number], self.indptr[number + 1])
            for token in tokens
            if (number := self.vocab.get(token)) is not None
        ]
        if not spans:
            return np.zeros(self.size)
        # One weighted count over every token's documents: far cheaper than adding token by token (`np.add.at`).
        documents = np.concatenate([self.indices[span] for span in spans])
        weights = np.concatenate([self.data[span] for span in spans])  # bincount sums them as float64
        result: Scores = np.asarray(np.bincount(documents, weights, self.size), dtype=np.float64)
        return result
