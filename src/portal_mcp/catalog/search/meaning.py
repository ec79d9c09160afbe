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
    """Each row's dot product with each of `vectors`, a row per vector: one BLAS matrix-vector product per vector,
    on the one thread `one_blas_thread` leaves BLAS. At 10,000 tools of 256 dimensions (measured on two cores): 0.25
    ms a vector against 0.6 for the einsum this replaced, which made a whole task of ten intents cost 6 to 9 ms; one
    matrix-matrix product is no faster for ten vectors and four times slower for two."""
    products: Scores = np.empty((len(vectors), len(matrix)), dtype=np.float64)
    for row, vector in zip(products, vectors, strict=True):
        row[:] = matrix @ vector
    return products


def one_blas_thread() -> None:
    """Keep BLAS (numpy's OpenBLAS, or MKL) on one thread for the whole process, as the portal's composition root
    does once: searches already run in threads of their own (`limits.heavy_threads`), and a multithreaded BLAS
    product on a busy machine waits for a core another thread holds (8 to 600 ms for what takes 3 on one thread,
    measured at 10,000 tools)."""
    threadpool_limits(limits=1, user_api="blas")
