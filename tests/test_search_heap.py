"""`search/heap.py`: an index build's freed memory goes back to the system (glibc)."""

from __future__ import annotations

import os
import platform

import pytest

from portal_mcp.catalog.search.heap import release_free_memory


def resident_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc_trim")
def test_memory_freed_between_kept_blocks_is_returned() -> None:
    # 160 MB in 4 KB blocks (malloc's, not Python's small-object arenas), then every block but one in 50 freed: the
    # holes stay the process's until they are handed back.
    blocks = [bytes(4096) for _ in range(40_000)]
    kept = blocks[::50]
    del blocks
    before = resident_mb()
    assert release_free_memory()
    assert resident_mb() < before - 30
    assert len(kept) == 800
