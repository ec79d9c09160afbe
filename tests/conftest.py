"""Shared test setup: `async def` tests run on anyio's asyncio backend (`anyio_mode = "auto"` in pyproject)."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
