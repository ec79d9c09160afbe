"""A query by meaning: its cosine similarity to each tool's vector and to each server's, as `search/index.py` fuses
them with the words' scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from portal_mcp.catalog.search.embeddings import Vectors

Scores = np.ndarray[Any, np.dtype[np.float64]]


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


def one_blas_thread() -> None:
    """Keep BLAS (numpy's OpenBLAS, or MKL) on one thread for the whole process, as the portal's composition root
    does once: searches already run in threads of their own (`limits.heavy_threads`), and a multithreaded BLAS
    product on a busy machine waits for a core another thread holds (8 to 600 ms for what takes 3 on one thread,
    measured at 10,000 tools)."""
    threadpool_limits(limits=1, user_api="blas")
