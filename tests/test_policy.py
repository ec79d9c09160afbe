"""The access policy, enforced on calls made inside agent code and reflected in search_api.

A real in-process MCP server stands downstream and records every call it receives, so "refused" is checked where
it matters: the call never arrived. Approvals go through a real MCP client's elicitation callback.
"""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.client import Client
from mcp.server import MCPServer

from portal_mcp.catalog.model import Catalog
from portal_mcp.config import PortalConfig, load_config
from portal_mcp.control.access import AccessPolicy, Decision
from portal_mcp.control.audit import AuditEvent, MemoryAuditSink
from portal_mcp.errors import ConfigError, PolicyDeniedError
from portal_mcp.portal import Portal
from portal_mcp.runs.bridge import Caller
from portal_mcp.runs.run import Refused
from portal_mcp.surface.server import PortalServer
from tests.portals import authorised_client, running_portal
from tests.servers import DEMO_SERVER

READ = types.ToolAnnotations(read_only_hint=True)
ADDITIVE = types.ToolAnnotations(read_only_hint=False, destructive_hint=False)
DESTRUCTIVE = types.ToolAnnotations(destructive_hint=True)

USERS = {
    "alice": {"token": "alice-token", "groups": ["eng"]},
    "bob": {"token": "bob-token", "groups": ["eng", "contractors"]},
    "carol": {"token": "carol-token", "groups": ["ops"]},
}


def ops_server(received: list[str]) -> MCPServer:
    """A downstream whose tools span the annotation cases; every call that arrives is appended to `received`."""
    server = MCPServer("ops")

    @server.tool(annotations=READ)
    def read_rows(table: str) -> str:
        """Read the rows of a table."""
        received.append(f"read_rows {table}")
        return f"rows of {table}"

    @server.tool(annotations=ADDITIVE)
    def insert_row(table: str, value: str) -> str:
        """Add a row to a table."""
        received.append(f"insert_row {table}")
        return "inserted"

    @server.tool()
    def drop_table(table: str) -> str:
        """Delete a table and all its rows."""
        received.append(f"drop_table {table}")
        return "dropped"

    @server.tool(annotations=DESTRUCTIVE)
    def purge_cache(region: str) -> str:
        """Empty the cache of a region."""
        received.append(f"purge_cache {region}")
        return "purged"

    return server


def config_with(policy: dict[str, Any], *, user: str = "alice", **extra: Any) -> PortalConfig:
    # model_validate, not parse_config: the downstream is an in-process server, which the config file cannot name.
    return PortalConfig.model_validate({"user": user, "http": {"users": USERS}, "policy": policy, **extra})


@asynccontextmanager
async def opened(config: PortalConfig, received: list[str]) -> AsyncIterator[tuple[Portal, MemoryAuditSink]]:
    audit = MemoryAuditSink()
    with anyio.fail_after(60):
        async with Portal.open(config, local={"ops": ops_server(received)}, audit=audit) as portal:
            yield portal, audit


def calls_of(audit: MemoryAuditSink, kind: str = "call") -> list[AuditEvent]:
    return [event for event in audit if event.kind == kind]


# --- the rules themselves -------------------------------------------------------------------------------------------


async def catalog_of_ops() -> Catalog:
    async with opened(config_with({}), []) as (portal, _):
        return portal.catalog


@pytest.fixture
async def catalog() -> Catalog:
    return await catalog_of_ops()


def decisions(config: PortalConfig, user: str, catalog: Catalog) -> dict[str, str]:
    rules = AccessPolicy(config).for_user(user)
    found: dict[str, str] = {}
    for entry in catalog:
        try:
            found[entry.python_name] = rules.decide(entry).value
        except PolicyDeniedError as exc:
            found[entry.python_name] = f"denied:{exc.rule}"
    return found


async def test_no_policy_allows_everything_without_asking(catalog: Catalog) -> None:
    assert set(decisions(config_with({}), "alice", catalog).values()) == {"allow"}


async def test_a_deny_anywhere_wins_over_any_allow(catalog: Catalog) -> None:
    policy = {"default": {"deny": ["ops.drop_*"]}, "users": {"alice": {"allow": ["ops"]}}}
    assert decisions(config_with(policy), "alice", catalog) == {
        "read_rows": "allow",
        "insert_row": "allow",
        "drop_table": "denied:deny",
        "purge_cache": "allow",
    }


async def test_allow_lists_add_up_across_the_users_groups(catalog: Catalog) -> None:
    policy = {"groups": {"eng": {"allow": ["ops.read_*"]}, "contractors": {"allow": ["ops.insert_row"]}}}
    config = config_with(policy)
    assert decisions(config, "alice", catalog) == {
        "read_rows": "allow",
        "insert_row": "denied:allow",
        "drop_table": "denied:allow",
        "purge_cache": "denied:allow",
    }
    assert decisions(config, "bob", catalog)["insert_row"] == "allow"
    assert set(decisions(config, "carol", catalog).values()) == {"allow"}  # no group rule, no default: open


async def test_read_only_keeps_only_tools_annotated_read_only(catalog: Catalog) -> None:
    found = decisions(config_with({"default": {"read_only": True}}), "alice", catalog)
    assert found == {
        "read_rows": "allow",
        "insert_row": "denied:read_only",
        "drop_table": "denied:read_only",
        "purge_cache": "denied:read_only",
    }


async def test_the_most_specific_level_sets_a_setting_and_groups_take_the_strictest(catalog: Catalog) -> None:
    policy = {
        "default": {"read_only": True, "runs_per_minute": 100},
        "groups": {"ops": {"read_only": False}, "eng": {"runs_per_minute": 10}, "contractors": {"runs_per_minute": 2}},
        "users": {"alice": {"runs_per_minute": 50}},
    }
    access = AccessPolicy(config_with(policy))
    assert access.for_user("carol").read_only is False  # the group lifts the default
    assert access.for_user("alice").read_only is True
    assert access.for_user("alice").runs_per_minute == 50  # the user's own setting beats the group's
    assert access.for_user("bob").runs_per_minute == 2  # strictest of eng and contractors
    assert access.for_user("nobody").runs_per_minute == 100  # unknown callers get the default


async def test_approve_destructive_follows_the_spec_defaults_for_missing_hints(catalog: Catalog) -> None:
    # Per the MCP spec a tool that is not read-only is destructive unless it says destructiveHint: false.
    found = decisions(config_with({"default": {"approve": "destructive"}}), "alice", catalog)
    assert found == {"read_rows": "allow", "insert_row": "allow", "drop_table": "approve", "purge_cache": "approve"}
    every = decisions(config_with({"default": {"approve": "always"}}), "alice", catalog)
    assert set(every.values()) == {"approve"}


async def test_annotation_overrides_in_the_config_correct_the_servers_hints(catalog: Catalog) -> None:
    policy = {"default": {"read_only": True, "approve": "destructive"}}
    # The policy reads overrides from the server's config; here `ops` runs in-process, so a snapshot entry of the
    # same name carries them (the policy never opens the file).
    overrides = {"purge_*": {"read_only": True}, "read_rows": {"read_only": False}}
    servers = {"ops": {"kind": "snapshot", "snapshot": "ops.json", "annotations": overrides}}
    rules = AccessPolicy(config_with(policy, servers=servers)).for_user("alice")
    by_name = {entry.python_name: entry for entry in catalog}
    assert rules.decide(by_name["purge_cache"]) is Decision.ALLOW
    with pytest.raises(PolicyDeniedError, match=r"'read_rows' is not"):
        rules.decide(by_name["read_rows"])


def test_policy_names_must_exist_in_the_config(tmp_path: Path) -> None:
    base = """
        user: alice
        http: {users: {alice: {token: t, groups: [eng]}}}
        servers:
          clock: {command: python3}
    """
    cases = {
        "policy: {users: {alcie: {read_only: true}}}": "'alcie', who is neither in `http.users`",
        "policy: {groups: {engg: {read_only: true}}}": "names 'engg', but no user in `http.users` has that group",
        "policy: {default: {deny: [github.delete_repo]}}": "pattern 'github.delete_repo' matches no configured server",
        "policy: {default: {approve: sometimes}}": "'policy.default.approve': Input should be 'never', 'destructive' or 'always', not 'sometimes'",
        "policy: {default: {deny: ['delete_*']}}": "matches no configured server .* write `\\*.delete_\\*`",
        "http: {users: {bearer: {token: t2}}}": "may not have a user named 'bearer'",
    }
    for extra, message in cases.items():
        path = tmp_path / "portal.yaml"
        path.write_text(textwrap.dedent(base) + extra + "\n")
        with pytest.raises(ConfigError, match=message) as caught:
            load_config(path, environ={})
        assert caught.value.line is not None, extra
    path.write_text(textwrap.dedent(base) + "policy: {default: {deny: ['*.delete_*', clock]}}\n")
    assert load_config(path, environ={}).policy.default.deny == ["*.delete_*", "clock"]


# --- inside agent code ------------------------------------------------------------------------------------------------


async def test_code_naming_a_denied_tool_is_refused_before_it_runs_and_the_tool_is_not_in_its_namespace() -> None:
    received: list[str] = []
    config = config_with({"users": {"alice": {"deny": ["ops.drop_table"]}}})
    async with opened(config, received) as (portal, audit):
        code = 'print(await ops.read_rows(table="users"))\nawait ops.drop_table(table="users")'
        result = await portal.execute_code(code, portal.local)
        assert isinstance(result, Refused) and result.kind == "precheck"
        assert result.error is not None
        assert "line 2" in result.error
        assert "ops.drop_table: not allowed: the policy denies `ops.drop_table` to 'alice'" in result.error
        # Reached by a name the check cannot see, the tool is simply not there for alice.
        dynamic = await portal.execute_code('await getattr(ops, "drop_" + "table")(table="users")', portal.local)
        assert not dynamic.ok and dynamic.error is not None and "has no tool 'drop_table'" in dynamic.error
        assert received == []
        [run, _] = calls_of(audit, "run")
        assert (run.outcome, run.detail) == ("refused", "line 2: not_allowed")
        # bob has no such rule: the same code runs for him.
        assert (await portal.execute_code(code, portal.principal("bob"))).ok
        assert received == ["read_rows users", "drop_table users"]


async def test_hints_never_name_a_tool_the_policy_hides() -> None:
    config = config_with({"users": {"alice": {"deny": ["ops.drop_table"]}}})
    async with opened(config, []) as (portal, _):
        typo = await portal.execute_code('await ops.drop_tabl(table="t")', portal.local)
        dynamic = await portal.execute_code('await getattr(ops, "drop_tabl")(table="t")', portal.local)
        search = portal.search_api("ops.drop_tabl", portal.local)
        for_bob = await portal.execute_code('await ops.drop_tabl(table="t")', portal.principal("bob"))
    for text in (typo.error, dynamic.error, search):
        assert text is not None and "drop_table" not in text, text
    assert for_bob.error is not None and "did you mean ops.drop_table?" in for_bob.error


async def test_the_bridge_refuses_a_denied_call_itself_audits_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    """Behind the pre-run check and the namespaces, the bridge decides every call on its own too."""
    caplog.set_level("INFO", logger="portal_mcp.runs.bridge")
    received: list[str] = []
    config = config_with({"users": {"alice": {"deny": ["ops.drop_table"]}}})
    async with opened(config, received) as (portal, audit):
        with pytest.raises(PolicyDeniedError, match=r"the policy denies `ops\.drop_table` to 'alice'"):
            await portal.bridge.call("ops.drop_table", {"table": "users"}, caller=Caller(portal.principal("alice")))
    assert received == []
    [denied] = calls_of(audit)
    assert (denied.subject, denied.outcome, denied.detail) == (
        "ops.drop_table",
        "refused",
        "PolicyDeniedError rule=deny",
    )
    [logged] = [record for record in caplog.records if getattr(record, "event", None) == "policy_refused"]
    assert (getattr(logged, "user", None), logged.getMessage()) == (
        "alice",
        "policy refused ops.drop_table for 'alice' (rule deny)",
    )


async def test_read_only_refuses_code_calling_a_tool_that_is_not_annotated_read_only() -> None:
    received: list[str] = []
    async with opened(config_with({"default": {"read_only": True}}), received) as (portal, _):
        result = await portal.execute_code('await ops.insert_row(table="t", value="v")', portal.local)
    assert not result.ok and result.error is not None
    assert "ops.insert_row: not allowed: 'alice' may only call tools annotated read-only" in result.error
    assert received == []


async def test_search_shows_each_user_only_the_tools_they_may_call() -> None:
    policy = {"groups": {"eng": {"read_only": True}, "ops": {"approve": "destructive"}}}
    async with opened(config_with(policy), []) as (portal, _):
        for_alice = portal.search_api("table rows", portal.principal("alice"), detail="name")
        for_carol = portal.search_api("table rows", portal.principal("carol"), detail="name")
        overview = portal.search_api("", portal.principal("alice"))
    assert "ops.read_rows" in for_alice and "drop_table" not in for_alice and "insert_row" not in for_alice
    assert "1 tool on 1 server" in overview, overview
    assert "ops.drop_table" in for_carol and "ops.insert_row" in for_carol
    # Search by meaning may add other destructive tools (purge_cache) to the list: drop_table must be in it.
    approval = for_carol.split("Calls to ", 1)[1].split(" ask the user for approval first", 1)[0]
    assert "ops.drop_table" in approval.split(", ")
    assert "approval" not in for_alice


async def test_calls_per_run_caps_one_run_not_the_next() -> None:
    received: list[str] = []
    async with opened(config_with({"default": {"calls_per_run": 3}}), received) as (portal, audit):
        code = textwrap.dedent(
            """
            for i in range(5):
                try:
                    await ops.read_rows(table=f"t{i}")
                except PermissionError as exc:
                    print(i, exc)
            """
        )
        result = await portal.execute_code(code, portal.local)
        assert result.ok, result.error
        assert "3 ops.read_rows: not allowed: 'alice' may make 3 tool calls per run" in result.output
        assert received == ["read_rows t0", "read_rows t1", "read_rows t2"]
        assert [event.detail for event in calls_of(audit)][-2:] == ["PolicyDeniedError rule=calls_per_run"] * 2
        assert (await portal.execute_code('await ops.read_rows(table="again")', portal.local)).ok


async def test_runs_per_minute_is_counted_per_user() -> None:
    async with opened(config_with({"default": {"runs_per_minute": 2}}), []) as (portal, audit):
        first, second, third = [await portal.execute_code("1 + 1", portal.local) for _ in range(3)]
        other = await portal.execute_code("1 + 1", portal.principal("bob"))
    assert first.ok and second.ok and other.ok
    assert isinstance(third, Refused) and third.kind == "rate_limit"
    assert third.error is not None and "'alice' may start 2 runs per minute" in third.error
    assert [(event.user, event.outcome) for event in calls_of(audit, "run")] == [
        ("alice", "ok"),
        ("alice", "ok"),
        ("alice", "refused"),
        ("bob", "ok"),
    ]


# --- approvals through MCP elicitation ---------------------------------------------------------------------------------

Answer = Callable[[types.ElicitRequestParams], types.ElicitResult | Awaitable[types.ElicitResult]]


def elicitation(answer: Answer, asked: list[str]) -> Any:
    async def callback(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        result = answer(params)
        return result if isinstance(result, types.ElicitResult) else await result

    return callback


@pytest.fixture(params=["legacy", "modern"])
def era(request: pytest.FixtureRequest) -> str:
    """Handshake-era clients are asked with a server request; 2026-07-28 clients through InputRequiredResult."""
    return str(request.param)


async def run_with_client(portal: Portal, code: str, callback: Any | None, era: str = "modern") -> str:
    mode: Any = "legacy" if era == "legacy" else "auto"
    async with Client(PortalServer(portal).server, elicitation_callback=callback, mode=mode) as client:
        result = await client.call_tool("execute_code", {"code": code})
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


APPROVE_DESTRUCTIVE = {"default": {"approve": "destructive"}}
DROP = textwrap.dedent(
    """
    try:
        print(await ops.drop_table(table="users"))
    except PermissionError as exc:
        print("refused:", exc)
    print(await ops.read_rows(table="users"))
    """
)


async def test_an_approved_destructive_call_runs_and_the_decision_is_audited(era: str) -> None:
    received: list[str] = []
    asked: list[str] = []
    accept = elicitation(lambda _: types.ElicitResult(action="accept", content={"approve": True}), asked)
    async with opened(config_with(APPROVE_DESTRUCTIVE), received) as (portal, audit):
        text = await run_with_client(portal, DROP, accept, era)
        approved = portal.metrics.registry.get_sample_value("portal_approvals_total", {"verdict": "approved"})
    assert "dropped" in text and "refused" not in text
    assert received == ["drop_table users", "read_rows users"]
    assert len(asked) == 1  # the read-only call was not asked about
    assert "alice" in asked[0] and "ops.drop_table" in asked[0] and 'table = "users"' in asked[0]
    drop = calls_of(audit)[0]
    assert (drop.subject, drop.outcome, drop.detail) == ("ops.drop_table", "ok", "approved")
    assert approved == 1


@pytest.mark.parametrize(
    ("result", "verdict", "message"),
    [
        (types.ElicitResult(action="decline"), "declined", "the user declined it"),
        (types.ElicitResult(action="cancel"), "cancelled", "the user dismissed the approval request"),
        (types.ElicitResult(action="accept", content={"approve": False}), "declined", "the user declined it"),
        # Fail closed: only an explicit `true` approves (an unticked box may come as null, "false" or nothing).
        (types.ElicitResult(action="accept", content={"approve": None}), "declined", "the user declined it"),
        (types.ElicitResult(action="accept", content={"approve": "false"}), "declined", "the user declined it"),
        (types.ElicitResult(action="accept", content={}), "declined", "the user declined it"),
        (types.ElicitResult(action="accept"), "declined", "the user declined it"),
    ],
)
async def test_a_declined_call_raises_permission_error_and_never_runs(
    result: types.ElicitResult, verdict: str, message: str, era: str
) -> None:
    received: list[str] = []
    asked: list[str] = []
    async with opened(config_with(APPROVE_DESTRUCTIVE), received) as (portal, audit):
        text = await run_with_client(portal, DROP, elicitation(lambda _: result, asked), era)
        counted = portal.metrics.registry.get_sample_value("portal_approvals_total", {"verdict": verdict})
    assert counted == 1
    assert f"refused: ops.drop_table: not allowed: {message}" in text
    assert received == ["read_rows users"] and len(asked) == 1
    assert calls_of(audit)[0].detail == f"PolicyDeniedError rule=approval:{verdict}"


async def test_a_client_without_elicitation_cannot_approve(era: str) -> None:
    received: list[str] = []
    async with opened(config_with(APPROVE_DESTRUCTIVE), received) as (portal, audit):
        text = await run_with_client(portal, DROP, None, era)
        direct = await portal.execute_code(DROP, portal.local)  # the CLI's `exec`: nobody to ask
    assert "this client cannot ask for it (no MCP elicitation support)" in text
    assert "refused:" in direct.output
    assert received == ["read_rows users", "read_rows users"]
    assert {event.detail for event in calls_of(audit) if event.subject == "ops.drop_table"} == {
        "PolicyDeniedError rule=approval:unsupported"
    }


async def test_an_unanswered_approval_times_out(era: str) -> None:
    received: list[str] = []

    async def never(_: types.ElicitRequestParams) -> types.ElicitResult:
        # Answers long after the portal stopped waiting (a 2026-07-28 client only comes back after answering).
        await anyio.sleep(2)
        return types.ElicitResult(action="accept", content={"approve": True})

    config = config_with({**APPROVE_DESTRUCTIVE, "approval_timeout": 0.5})
    async with opened(config, received) as (portal, audit):
        text = await run_with_client(portal, DROP, elicitation(never, []), era)
    assert "did not answer the approval request within 0.5 s" in text
    assert received == ["read_rows users"]
    assert calls_of(audit)[0].detail == "PolicyDeniedError rule=approval:timeout"


async def test_waiting_for_a_person_does_not_count_against_the_runs_time_limit(era: str) -> None:
    received: list[str] = []

    async def slow_yes(_: types.ElicitRequestParams) -> types.ElicitResult:
        await anyio.sleep(2.5)  # longer than the run may take
        return types.ElicitResult(action="accept", content={"approve": True})

    config = config_with(APPROVE_DESTRUCTIVE, sandbox={"timeout": 1.5})
    async with opened(config, received) as (portal, _):
        text = await run_with_client(portal, DROP, elicitation(slow_yes, []), era)
        # The clock runs again after the answer: a run that then loops past its limit is still stopped.
        late = await run_with_client(
            portal, 'await ops.drop_table(table="t")\nwhile True:\n    pass', elicitation(slow_yes, []), era
        )
    assert "dropped" in text and "TimeoutError" not in text, text
    assert "TimeoutError: the code ran longer than 1.5 s" in late
    assert received[:2] == ["drop_table users", "read_rows users"]


async def test_calls_gathered_at_once_are_each_asked_about(era: str) -> None:
    received: list[str] = []
    asked: list[str] = []

    def answer(params: types.ElicitRequestParams) -> types.ElicitResult:
        approve = "eu" in params.message  # yes to the EU purge, no to the US one
        return types.ElicitResult(action="accept", content={"approve": approve})

    code = textwrap.dedent(
        """
        import asyncio
        results = await asyncio.gather(
            ops.purge_cache(region="eu"), ops.purge_cache(region="us"), ops.read_rows(table="t"),
            return_exceptions=True,
        )
        for r in results:
            print("refused:" if isinstance(r, PermissionError) else "ok:", r)
        """
    )
    async with opened(config_with(APPROVE_DESTRUCTIVE), received) as (portal, _):
        text = await run_with_client(portal, code, elicitation(answer, asked), era)
    assert len(asked) == 2
    assert sorted(received) == ["purge_cache eu", "read_rows t"]
    assert "refused: ops.purge_cache: not allowed: the user declined it" in text, text
    assert text.count("ok:") == 2


async def test_an_answer_for_no_waiting_run_gets_a_clear_error() -> None:
    def unused(_: types.ElicitRequestParams) -> types.ElicitResult:
        raise AssertionError("answered by hand, never through the callback")

    callback = elicitation(unused, [])
    async with (
        opened(config_with(APPROVE_DESTRUCTIVE), []) as (portal, _),
        Client(PortalServer(portal).server, elicitation_callback=callback) as client,
    ):
        results = [
            await client.session.call_tool(
                "execute_code",
                {"code": "1"},
                request_state=state,
                input_responses={"approve-1": types.ElicitResult(action="accept", content={"approve": True})},
            )
            for state in ("not-a-run", "r2.not-a-run")
        ]
    assert all(result.is_error for result in results)
    plain, named = ("\n".join(b.text for b in r.content if isinstance(b, types.TextContent)) for r in results)
    assert "belongs to no run waiting here" in plain and "another portal replica" in plain
    # A token naming a replica that this portal cannot forward to (none configured): what to configure.
    assert "is for a run on portal replica 'r2', and this replica (which has no id) could not forward it" in named
    assert "`serve --replica-id NAME`" in named and "`http: {replica: {peers: {NAME: URL}}}`" in named


async def test_over_http_each_token_gets_its_own_users_policy(tmp_path: Path) -> None:
    """A real `portal-mcp serve --transport http`: the bearer token decides the user, the user decides the rules."""
    config = tmp_path / "portal.yaml"
    config.write_text(
        "servers:\n"
        f"  demo: {{command: {sys.executable!r}, args: [{str(DEMO_SERVER)!r}]}}\n"
        "http:\n  users:\n"
        "    alice: {token: alice-secret-token, groups: [eng]}\n"
        "    bob: {token: bob-secret-token}\n"
        "policy:\n  groups: {eng: {deny: [demo.add]}}\n",
        encoding="utf-8",
    )
    code = "try:\n    print(await demo.add(a=1, b=2))\nexcept PermissionError as exc:\n    print('refused:', exc)"
    replies: dict[str, list[str]] = {}
    async with running_portal(config) as url:
        for user, token in (("alice", "alice-secret-token"), ("bob", "bob-secret-token")):
            async with authorised_client(url, token) as client:
                found = await client.call_tool("search_api", {"query": "add two numbers", "detail": "name"})
                ran = await client.call_tool("execute_code", {"code": code})
            replies[user] = [
                "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))
                for result in (found, ran)
            ]
    alice_search, alice_run = replies["alice"]
    bob_search, bob_run = replies["bob"]
    # Alice's search neither shows nor counts the denied tool: a list of what fits among 8, or (when nothing of
    # those 8 fits adding numbers) the closest servers with 8 tools. Bob sees all 9 (meaning may add hits).
    assert not re.search(r"(demo\.|, |: )add(?!\w)", alice_search)
    assert " of 8 tools match" in alice_search or "- demo (8 tools)" in alice_search
    assert "# demo.add:" in bob_search
    assert "demo.add: not allowed: the policy denies `demo.add` to 'alice'" in alice_run
    assert "refused" not in bob_run and "3" in bob_run


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_over_stateless_http_only_2026_clients_can_be_asked(tmp_path: Path, era: str) -> None:
    """Without a session a 2025-era client cannot take a server request: its call is refused as unsupported
    (never answered with a result type it does not know); a 2026-07-28 client is asked in the result."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    config = tmp_path / "portal.yaml"
    config.write_text(
        f"servers:\n  demo: {{command: {sys.executable!r}, args: [{str(DEMO_SERVER)!r}]}}\n"
        "policy: {default: {approve: destructive}}\n",
        encoding="utf-8",
    )
    asked: list[str] = []
    accept = elicitation(lambda _: types.ElicitResult(action="accept", content={"approve": True}), asked)
    code = "try:\n    print(await demo.add(a=1, b=2))\nexcept PermissionError as exc:\n    print('refused:', exc)"
    mode: Any = "legacy" if era == "legacy" else "auto"
    async with (
        running_portal(config, args=["--stateless"]) as url,
        httpx2.AsyncClient(timeout=httpx2.Timeout(30)) as http,
        Client(streamable_http_client(url, http_client=http), elicitation_callback=accept, mode=mode) as client,
    ):
        result = await client.call_tool("execute_code", {"code": code})
    text = "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))
    if era == "legacy":
        assert "refused: demo.add: not allowed: it needs the user's approval, and the user cannot be asked on" in text
        assert "a 2025-era client over stateless HTTP has no session" in text
        assert asked == []
    else:
        assert "3" in text and "refused" not in text, text
        assert len(asked) == 1


async def test_runs_waiting_for_answers_are_capped_per_user_and_forgotten_after_they_finish() -> None:
    from portal_mcp.control.principal import Principal
    from portal_mcp.errors import TooManyWaitingError
    from portal_mcp.runs.approvals import PendingRuns
    from portal_mcp.runs.bridge import ApprovalRequest
    from portal_mcp.runs.run import ASK_LATER, Run, RunOutcome
    from portal_mcp.sandbox.host import RunResult

    asked = ApprovalRequest("alice", "ops.drop_table", "drop", {"table": "t"}, "it may delete data")

    async def body(run: Run) -> RunResult:
        assert run.caller.approve is not None
        verdict = await run.caller.approve(asked)
        return RunResult(True, verdict, None, None, 1, 1.0)

    pending = PendingRuns(keep_seconds=0.0, max_waiting=2)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:

            def start(user: str) -> Coroutine[Any, Any, RunOutcome | types.InputRequiredResult]:
                pending.check_room(user)
                run = Run("code", Principal.unrestricted(user), pending.new_token(), ASK_LATER)
                tasks.start_soon(run.execute, body)
                return pending.progress(run)

            first, second = [await start("alice") for _ in range(2)]
            assert isinstance(first, types.InputRequiredResult) and isinstance(second, types.InputRequiredResult)
            with pytest.raises(TooManyWaitingError, match="2 of your runs are already waiting"):
                await start("alice")
            bobs = await start("bob")
            assert isinstance(bobs, types.InputRequiredResult)  # bob has his own allowance
            assert first.request_state is not None and first.input_requests is not None
            [key] = first.input_requests
            yes = types.ElicitResult(action="accept", content={"approve": True})
            done = await pending.progress(pending.resume("alice", first.request_state, {key: yes}))
            assert isinstance(done, RunResult) and done.output == "approved"
            third = await start("alice")
            assert isinstance(third, types.InputRequiredResult)  # room again
            assert len(pending) == 3  # the finished run was handed back and dropped; three still wait
            no = types.ElicitResult(action="decline")
            for waiting in (second, third, bobs):
                assert waiting.request_state is not None and waiting.input_requests is not None
                owner = "bob" if waiting is bobs else "alice"
                resumed = pending.resume(owner, waiting.request_state, dict.fromkeys(waiting.input_requests, no))
                answered = await pending.progress(resumed)
                assert isinstance(answered, RunResult) and answered.output == "declined"
            assert len(pending) == 0
