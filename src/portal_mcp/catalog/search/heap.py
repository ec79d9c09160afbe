"""Handing an index build's transient memory back to the system.

Building the index of 10,000 tools peaks near twice what the index keeps (tokens, BM25 matrices, vectors by batch),
and glibc's allocator keeps what was freed for reuse instead of returning it, so a portal serving for weeks would
hold the build's peak for good: the added resident memory at 10,000 tools measured 192 MB without this and 148 MB
with it (`benchmarks/bench_search.py`, same run). glibc's `malloc_trim` returns the free pages. Other C libraries
(macOS, musl) have no such call and nothing happens.
"""

from __future__ import annotations

import ctypes


def release_free_memory() -> bool:
    """Return the heap's free pages to the system; False where the C library has no way to (not glibc)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own symbols: libc is among them, no file lookup
    except (OSError, AttributeError):
        return False
    trim(0)
    return True
