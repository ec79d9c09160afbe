"""Shared test setup: `async def` tests run on anyio's asyncio backend (`anyio_mode = "auto"` in pyproject).

`tests/pg.py` provides the `postgres_server` (session) and `pg_dsn` (per test database) fixtures: a real,
throwaway PostgreSQL server started on first use. `tests/oidc.py` provides `oidc_provider`: a real OpenID provider
(npm oidc-provider) on loopback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from portal_mcp.config import PortalConfig, parse_config

pytest_plugins = ["tests.pg", "tests.everything", "tests.oidc"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's portals (and the `portal-mcp` processes it starts) keep their last known tools in a folder of
    their own, never in the user's ~/.local/state."""
    folder = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("PORTAL_MCP_STATE_DIR", str(folder))
    return folder


@pytest.fixture(autouse=True, scope="session")
def _embedding_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Portals opened by tests keep their search embeddings in a temporary folder, not the user's ~/.cache."""
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture
def time_portal_config(tmp_path: Path) -> PortalConfig:
    """A portal of the bundled `time` snapshot alone, run as user "tester", its search cache in `tmp_path`/vectors."""
    snapshot = Path(__file__).resolve().parents[1] / "schemas" / "time.json"
    config = parse_config(
        f"search: {{cache: ./vectors}}\nservers:\n  time:\n    snapshot: {snapshot}\n",
        source="portal.yaml",
        base_dir=tmp_path,
        environ={},
    )
    return config.model_copy(update={"user": "tester"})
