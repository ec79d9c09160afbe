"""Several replicas: `--stateless` portals behind a per-request round robin on loopback, one shared audit store.

The full load (20 clients x 50 runs) and its figures are `benchmarks/bench_replicas.py`; this is the same harness
(`tests/replicas.py`) at a size CI can afford, asserting the same things: every answer right, both replicas used,
every run and call recorded exactly once. Then approvals across replicas: with `http.replica` ids and peers, an
answer reaching the wrong replica is forwarded to the one holding the run.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from prometheus_client.parser import text_string_to_metric_families

from portal_mcp.config import HttpConfig, ReplicaConfig
from portal_mcp.errors import ConfigError
from portal_mcp.surface.server import PortalServer
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
from tests.servers import free_port

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


# --- approvals across replicas ----------------------------------------------------------------------------------------

APPROVE_DESTRUCTIVE = {"default": {"approve": "destructive"}}
APPROVAL_CLIENTS = 4
APPROVAL_RUNS = 3
APPROVED = ("demo.add", "ok", "approved")
DECLINED = ("demo.add", "refused", "PolicyDeniedError rule=approval:declined")


def approval_code(user: str, index: int) -> str:
    """Two calls to `demo.add` (no annotations: destructive), each asked about: the test approves `a=1`, declines
    `a=2`. The comment makes the code, hence its audit subject, unique."""
    return (
        f"# {user} run {index}\n"
        f"print('sum', await demo.add(a=1, b={index}))\n"
        "try:\n"
        f"    await demo.add(a=2, b={index})\n"
        "except PermissionError as exc:\n"
        "    print('refused:', exc)\n"
    )


def _text(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def forwards(backends: list[str], token: str) -> Counter[tuple[str, str, str]]:
    """`portal_approval_forwards_total` of every replica: (replica, peer, outcome) -> count."""
    found: Counter[tuple[str, str, str]] = Counter()
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(10)) as http:
        for index, backend in enumerate(backends):
            response = await http.get(backend + "/metrics")
            response.raise_for_status()
            for family in text_string_to_metric_families(response.text):
                for sample in family.samples:
                    if sample.name == "portal_approval_forwards_total":
                        key = (f"r{index}", sample.labels["peer"], sample.labels["outcome"])
                        found[key] += int(sample.value)
    return found


@asynccontextmanager
async def modern_client(url: str, token: str, **options: Any) -> AsyncIterator[Client]:
    """A 2026-07-28 client (`mode="auto"`) whose requests carry the user's token (and any extra `headers`)."""
    headers = {"Authorization": f"Bearer {token}", **options.pop("headers", {})}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60)) as http,
        Client(streamable_http_client(url, http_client=http), mode="auto", **options) as client,
    ):
        yield client


async def test_approval_answers_reach_the_replica_holding_the_run_whichever_replica_the_retry_hits(
    tmp_path: Path, audit_config: AuditStore
) -> None:
    users = make_users(APPROVAL_CLIENTS)
    config = replica_config(tmp_path, audit_config, users, policy=APPROVE_DESTRUCTIVE)
    replies: dict[str, list[str]] = {user: [] for user in users}
    asked: Counter[str] = Counter()

    async def client(proxy: str, user: str) -> None:
        async def answer(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
            asked[user] += 1
            return types.ElicitResult(action="accept", content={"approve": "  a = 1\n" in params.message})

        async with modern_client(proxy + "/mcp", users[user], elicitation_callback=answer) as session:
            for index in range(APPROVAL_RUNS):
                reply = await session.call_tool("execute_code", {"code": approval_code(user, index)})
                replies[user].append(("error: " if reply.is_error else "") + _text(reply))

    async with (
        running_replicas(config, 2, peers=True) as backends,
        running_proxy(backends, tmp_path / "proxy.log") as proxy,
    ):
        with anyio.fail_after(90):
            async with anyio.create_task_group() as group:
                for user in users:
                    group.start_soon(client, proxy, user)
            served = await proxy_stats(proxy)
            forwarded = await forwards(backends, next(iter(users.values())))

    for user, texts in replies.items():
        assert texts == [
            f"sum {{'result': {1 + index}}}\nrefused: demo.add: not allowed: the user declined it when asked for approval"
            for index in range(APPROVAL_RUNS)
        ], texts
        assert asked[user] == 2 * APPROVAL_RUNS
    # Every run made 3 tool calls through the round robin (start, approve, decline), so both replicas started runs
    # and got answers for runs on the other one: those went on to the replica that holds the run.
    assert all(counts.get("tool_calls", 0) > 0 for counts in served.values()), served
    assert sum(counts.get("tool_calls", 0) for counts in served.values()) == 3 * APPROVAL_CLIENTS * APPROVAL_RUNS
    assert set(forwarded) <= {("r0", "r1", "forwarded"), ("r1", "r0", "forwarded")}, forwarded
    assert sum(forwarded.values()) > 0, forwarded
    events = audit_config.events()
    runs = Counter((event.user, event.subject, event.outcome) for event in events if event.kind == "run")
    calls = Counter(
        (event.user, event.subject, event.outcome, event.detail) for event in events if event.kind == "call"
    )
    assert runs == Counter(
        {
            (user, hashlib.sha256(approval_code(user, index).encode()).hexdigest()[:16], "ok"): 1
            for user in users
            for index in range(APPROVAL_RUNS)
        }
    )
    assert calls == Counter({(user, *verdict): APPROVAL_RUNS for user in users for verdict in (APPROVED, DECLINED)})
    assert len(events) == sum(runs.values()) + sum(calls.values())


async def test_an_answer_is_forwarded_only_to_a_configured_replica_once_and_only_for_the_runs_own_user(
    tmp_path: Path, audit_config: AuditStore
) -> None:
    users = {"alice": "alice-token-0123", "bob": "bob-token-4567"}
    config = replica_config(tmp_path, audit_config, users, policy=APPROVE_DESTRUCTIVE)
    gone = f"http://127.0.0.1:{free_port()}"  # a configured replica that is not running
    yes: types.InputResponses = {"approve-1": types.ElicitResult(action="accept", content={"approve": True})}

    async def unused(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        raise AssertionError("answered by hand")

    async def answer(url: str, token: str, state: str, **options: Any) -> str:
        async with modern_client(url + "/mcp", token, **options) as client:
            result = await client.session.call_tool(
                "execute_code", {"code": "1"}, request_state=state, input_responses=yes
            )
        return ("error: " if result.is_error else "") + _text(result)

    async with running_replicas(config, 2, peers=True, extra_peers={"gone": gone}) as [r0, r1]:
        with anyio.fail_after(60):
            # Driven by hand (allow_input_required), but the client must say it can answer questions (elicitation).
            async with modern_client(r0 + "/mcp", users["alice"], elicitation_callback=unused) as alice:
                asked = await alice.session.call_tool(
                    "execute_code", {"code": "print(await demo.add(a=1, b=2))"}, allow_input_required=True
                )
            assert isinstance(asked, types.InputRequiredResult)
            state = asked.request_state
            assert state is not None and state.startswith("r0.")
            # At r1, every answer for r0's run goes to r0, which checks who is answering.
            bobs = await answer(r1, users["bob"], state)
            forged = await answer(r1, users["alice"], "r9." + state.removeprefix("r0."))
            unreachable = await answer(r1, users["alice"], "gone." + state.removeprefix("r0."))
            looped = await answer(r1, users["alice"], state, headers={"x-portal-forwarded-by": "r1"})
            alices = await answer(r1, users["alice"], state)  # still waiting: the refusals did not touch it
            counted = await forwards([r0, r1], users["alice"])

    assert bobs.startswith("error: execute_code: this approval answer belongs to no run waiting here"), bobs
    assert forged.startswith("error: execute_code: this approval answer is for a run on portal replica 'r9'"), forged
    assert "'r9' is not among the replicas in `http.replica.peers` (gone, r0, r1)" in forged
    assert "replica 'gone' did not answer (ConnectError; the URL is in `http.replica.peers`" in unreachable
    assert "replica 'r1' already forwarded it here, and a forwarded answer is never forwarded again" in looped
    assert alices == "{'result': 3}"
    assert counted == Counter(
        {
            ("r1", "r0", "forwarded"): 2,
            ("r1", "unknown", "unknown_replica"): 1,
            ("r1", "gone", "unreachable"): 1,
            ("r1", "r0", "second_hop"): 1,
        }
    )
    calls = [
        (event.user, event.subject, event.outcome, event.detail)
        for event in audit_config.events()
        if event.kind == "call"
    ]
    assert calls == [("alice", *APPROVED)]


@pytest.mark.parametrize(
    ("replica", "message"),
    [
        (
            {"peers": {"r0": "http://10.0.0.1:8000"}},
            "this one needs its id: `serve --replica-id NAME` or PORTAL_REPLICA_ID=NAME, one of r0",
        ),
        ({"id": "r7", "peers": {"r0": "http://10.0.0.1:8000"}}, "replica id 'r7' is not one of `peers` (r0)"),
        ({"id": "r0.a"}, "replica id 'r0.a' must be 1-64 letters, digits, - or _"),
    ],
)
def test_a_replica_that_cannot_be_forwarded_to_refuses_to_serve(replica: dict[str, Any], message: str) -> None:
    # The id usually comes from the command line, after the config was validated: checked again before serving.
    http = HttpConfig.model_construct(replica=ReplicaConfig.model_construct(**replica))
    with pytest.raises(ConfigError, match=re.escape(message)):
        PortalServer.check_replica(http)


def test_peers_are_base_urls_of_named_replicas() -> None:
    for peers, message in [
        ({"r0": "http://10.0.0.1:8000/mcp"}, "without `/mcp`"),
        ({"r0": "10.0.0.1:8000"}, "must be an http:// or https:// base URL"),
        ({"r.0": "http://10.0.0.1:8000"}, "peer name 'r.0'"),
    ]:
        with pytest.raises(ValueError, match=message):
            HttpConfig.model_validate({"replica": {"peers": peers}})
    assert HttpConfig.model_validate({"replica": {"peers": {"r0": "https://a.example/portal/"}}}).replica.peers == {
        "r0": "https://a.example/portal"
    }
