"""Shared test setup: `async def` tests run on anyio's asyncio backend (`anyio_mode = "auto"` in pyproject).

`tests/pg.py` provides the `postgres_server` (session) and `pg_dsn` (per test database) fixtures: a real,
throwaway PostgreSQL server started on first use.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.pg"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
