"""Several replicas: `--stateless` portals behind a per-request round robin on loopback, one shared audit store.

The full load (20 clients x 50 runs) and its figures are `benchmarks/bench_replicas.py`; this is the same harness
(`tests/replicas.py`) at a size CI can afford, asserting the same things: every answer right, both replicas used,
every run and call recorded exactly once.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.replicas import (
    AuditStore,
    check_audit,
    drive_load,
    make_users,
    plan,
    postgres_store,
    proxy_stats,
    replica_config,
    running_proxy,
    running_replicas,
    sqlite_store,
)

CLIENTS = 6
RUNS = 10
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}},
}


@pytest.fixture
def audit_config(tmp_path: Path, request: pytest.FixtureRequest) -> AuditStore:
    """The audit store the replicas share: one PostgreSQL database (a real server, tests/pg.py), or one SQLite file
    for the tests that only need some store."""
    if getattr(request, "param", "sqlite") == "postgres":
        return postgres_store(request.getfixturevalue("pg_dsn"))
    return sqlite_store(tmp_path / "audit.sqlite")


@pytest.mark.parametrize("audit_config", ["postgres", "sqlite"], indirect=True)
async def test_two_stateless_replicas_behind_a_round_robin_answer_every_run_and_record_each_exactly_once(
    tmp_path: Path, audit_config: AuditStore
) -> None:
    users = make_users(CLIENTS)
    runs = plan(list(users), RUNS)
    config = replica_config(tmp_path, audit_config, users)

    async with running_replicas(config, 2) as backends, running_proxy(backends, tmp_path / "proxy.log") as proxy:
        with anyio.fail_after(120):
            load = await drive_load(proxy + "/mcp", users, runs)
            served = await proxy_stats(proxy)

    assert load.wrong == []
    assert load.done == CLIENTS * RUNS
    calls = {backend: counts.get("tool_calls", 0) for backend, counts in served.items()}
    assert all(count > 0 for count in calls.values()), served
    assert sum(calls.values()) == CLIENTS * RUNS
    audit = check_audit(audit_config.events(), runs)
    assert (audit.runs, audit.calls) == (CLIENTS * RUNS, CLIENTS * RUNS)
    assert audit.lost == []
    assert audit.duplicated == []
    assert audit.unexpected == []
    assert audit.not_ok == []


async def test_without_stateless_a_2025_client_behind_the_round_robin_loses_its_session(
    tmp_path: Path, audit_config: AuditStore
) -> None:
    # The control for the test above: the proxy really sends one session's requests to different replicas.
    users = make_users(1)
    [(user, token)] = users.items()
    config = replica_config(tmp_path, audit_config, users)

    async def run_twice(mcp_url: str) -> None:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
            Client(streamable_http_client(mcp_url, http_client=http), mode="legacy") as client,
        ):
            for run in plan([user], 2)[user]:
                await client.call_tool("execute_code", {"code": run.code})

    async with (
        running_replicas(config, 2, stateless=False) as backends,
        running_proxy(backends, tmp_path / "proxy.log") as proxy,
    ):
        refused = pytest.RaisesGroup(pytest.RaisesExc(MCPError, match="Session not found"), flatten_subgroups=True)
        with anyio.fail_after(60), refused:
            await run_twice(proxy + "/mcp")


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # logging/setLevel, still in use
async def test_stateless_comes_from_the_config_and_the_command_line_flag_overrides_it(
    tmp_path: Path, audit_config: AuditStore
) -> None:
    users = make_users(1)
    [token] = users.values()
    config = replica_config(tmp_path, audit_config, users, stateless=True)
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }

    async def session_id(url: str) -> str | None:
        async with httpx2.AsyncClient(timeout=httpx2.Timeout(10)) as http:
            response = await http.post(url + "/mcp", json=INITIALIZE, headers=headers)
        assert response.status_code == 200, response.text
        return response.headers.get("mcp-session-id")

    async with running_replicas(config, 1, stateless=None) as [from_config]:
        with anyio.fail_after(30):
            configured = await session_id(from_config)
            # Without a session there is nothing to keep a log level for: accepted, and the client carries on.
            async with (
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
                Client(streamable_http_client(from_config + "/mcp", http_client=http), mode="legacy") as client,
            ):
                await client.set_logging_level("debug")
                [run] = plan(list(users), 1)[next(iter(users))]
                ran = await client.call_tool("execute_code", {"code": run.code})
    async with running_replicas(config, 1, stateless=False) as [overridden]:
        with anyio.fail_after(30):
            flagged = await session_id(overridden)

    assert configured is None
    assert not ran.is_error
    assert flagged
