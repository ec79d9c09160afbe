"""A query by meaning: its cosine similarity to each tool's vector and to each server's, as `search/index.py` fuses
them with the words' scores."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from portal_mcp.catalog.model import ToolEntry
from portal_mcp.catalog.search.embeddings import Vectors
from portal_mcp.catalog.search.glossary import HAN, in_chinese

Scores = np.ndarray[Any, np.dtype[np.float64]]
Mask = np.ndarray[Any, np.dtype[np.bool_]]
FOREIGN_LIFT = 1.5
"""Meaning counts this many times for a tool described in Chinese that meaning ranks above every other tool for a
query with no Chinese (`lift_foreign`). Chosen on the train splits (recall@1/@5) of `metatool_zh_mixed` (MetaTool's
queries for its tools described in Chinese, among the bundled catalog's English tools) and `own_with_metatool_zh`
(the team's queries, those Chinese tools as distractors): at 1.5 the first goes 0.304/0.471 -> 0.361/0.544 and the
second holds (0.785/0.960); 2 and 3 lift the first 0.01-0.02 more and cost the second one query (0.780). Lifting
every Chinese tool whatever its rank gained more and cost the second 0.017 to 0.067 recall@1 (measured with the
characters-only model)."""


@dataclass(frozen=True)
class Meaning:
    """Its cosine similarity to each tool, that plus its server's (`index.SERVER_WEIGHT` times), and whether the model
    read any of it."""

    similarity: Scores
    routed: Scores
    read: bool


def dot(matrix: Vectors, vectors: Vectors) -> Scores:
    """Each row's dot product with each of `vectors`, a row per vector, on the one thread `one_blas_thread` leaves
    BLAS: a matrix-vector product for one vector, one matrix-matrix product for several (a whole task's intents).

    At 10,000 tools of 256 dimensions the matrix is 10 MB, and between two searches the rest of a search pushes it
    out of the cache: read from memory, one product per vector cost 6.2 ms for eleven vectors against 3.4 for the
    matrix-matrix product, which reads the matrix once (1.6 against 1.7 ms for one vector). The speed benchmark's
    query mix, in one process with the two ways alternating: p95 25.7 -> 21.2 and 22.3 -> 20.5 ms (two runs)."""
    if len(vectors) == 1:
        products: Scores = (matrix @ vectors[0]).astype(np.float64)[np.newaxis]
        return products
    return (vectors @ matrix.T).astype(np.float64)


def described_in_chinese(entries: Iterable[ToolEntry]) -> Mask:
    """Per tool, whether its description is written in Chinese (`glossary.in_chinese`)."""
    return np.array([in_chinese(entry.description) for entry in entries], bool)


def lift_foreign(routed: Scores, similarities: Scores, chinese: Mask, texts: Sequence[str]) -> Scores:
    """`routed` (a row per text) with `FOREIGN_LIFT` times the meaning of each tool described in Chinese whose
    similarity to a text without Chinese beats every other tool's: the query's words can never match such a tool, so
    it loses to any tool sharing a word with the query, even when meaning says it is the better answer. (A Chinese
    query matches Chinese descriptions by words, and English ones by meaning: left as it is, as is a catalog with no
    tool described in Chinese.)"""
    if not chinese.any() or chinese.all():
        return routed
    for row, text in enumerate(texts):
        if not HAN.search(text):
            routed[row, chinese & (similarities[row] > similarities[row][~chinese].max())] *= FOREIGN_LIFT
    return routed


def one_blas_thread() -> None:
    """Keep BLAS (numpy's OpenBLAS, or MKL) on one thread for the whole process, as the portal's composition root
    does once: searches already run in threads of their own (`limits.heavy_threads`), and a multithreaded BLAS
    product on a busy machine waits for a core another thread holds (8 to 600 ms for what takes 3 on one thread,
    measured at 10,000 tools)."""
    threadpool_limits(limits=1, user_api="blas")
