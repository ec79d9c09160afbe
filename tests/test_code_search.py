"""`portal.search` inside execute_code: the catalog searched from agent code, through the bridge, under the policy."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp.server import MCPServer
from mcp.server.mcpserver import Context

from portal_mcp.config import PortalConfig
from portal_mcp.control.audit import AuditEvent, MemoryAuditSink
from portal_mcp.errors import ArgumentError
from portal_mcp.portal import Portal
from portal_mcp.runs.bridge import Caller
from portal_mcp.runs.code_search import search_hits
from portal_mcp.sandbox.protocol import SEARCH_ACTION
from tests.servers.big_server import add_tools

USERS = {"alice": {"token": "alice-token"}, "carol": {"token": "carol-token"}}


def tables_server(received: list[str]) -> MCPServer:
    server = MCPServer("ops")

    @server.tool()
    def insert_row(table: str, value: str) -> str:
        """Add a row to a table. The value is stored as text."""
        received.append(f"insert_row {table} {value}")
        return "inserted"

    @server.tool()
    def drop_table(table: str) -> str:
        """Delete a table and all its rows."""
        received.append(f"drop_table {table}")
        return "dropped"

    @server.tool()
    def read_rows(table: str, limit: int = 10) -> str:
        """Read the rows of a table."""
        return f"rows of {table}"

    return server


@asynccontextmanager
async def opened(
    received: list[str], policy: dict[str, Any] | None = None, **extra: Any
) -> AsyncIterator[tuple[Portal, MemoryAuditSink]]:
    config = PortalConfig.model_validate({"user": "alice", "http": {"users": USERS}, "policy": policy or {}, **extra})
    audit = MemoryAuditSink()
    with anyio.fail_after(60):
        async with Portal.open(config, local={"ops": tables_server(received)}, audit=audit) as portal:
            yield portal, audit


def searches(audit: MemoryAuditSink) -> list[AuditEvent]:
    return [event for event in audit if event.kind == "search"]


async def test_code_finds_a_tool_by_what_it_does_and_calls_it_in_the_same_run() -> None:
    received: list[str] = []
    code = textwrap.dedent(
        """
        hits = await portal.search("add a row to a table", limit=2)
        print(hits[0]["name"], "|", hits[0]["signature"], "|", hits[0]["description"])
        print(await portal.tool(hits[0]["name"])(table="t", value="v"))
        """
    )
    async with opened(received) as (portal, audit):
        result = await portal.execute_code(code, portal.local)
    assert result.ok, result.error
    found, called = result.output.splitlines()
    assert found == "ops.insert_row | async def insert_row(*, table: str, value: str) -> dict | Add a row to a table."
    assert "inserted" in called
    assert received == ["insert_row t v"]
    [event] = searches(audit)
    assert (event.user, event.outcome, event.subject, event.detail) == ("alice", "ok", "add a row to a table", "code")


async def test_a_query_of_no_word_the_tools_or_the_model_know_finds_nothing_rather_than_noise() -> None:
    # Code would go on to call hits[0]: for a typo that is whatever ranks first by word pieces (`search/fit.py`).
    code = 'print(await portal.search("asdkjh qwpeoi"), [h["name"] for h in await portal.search("asdkjh table rows")])'
    async with opened([]) as (portal, audit):
        result = await portal.execute_code(code, portal.local)
    assert result.ok, result.error
    nonsense, with_a_real_word = result.output.split(" ", 1)
    assert nonsense == "[]"
    assert "ops.read_rows" in with_a_real_word
    assert [event.outcome for event in searches(audit)] == ["ok", "ok"]


async def test_a_tool_the_policy_hides_is_never_found_from_code() -> None:
    policy = {"users": {"alice": {"deny": ["ops.drop_table"]}}}
    code = 'print([hit["name"] for hit in await portal.search("delete a table and its rows", limit=5)])'
    async with opened([], policy) as (portal, _):
        for_alice = await portal.execute_code(code, portal.principal("alice"))
        for_carol = await portal.execute_code(code, portal.principal("carol"))
    assert for_alice.ok and for_carol.ok, (for_alice.error, for_carol.error)
    assert "ops.drop_table" not in for_alice.output and "ops.read_rows" in for_alice.output
    assert "ops.drop_table" in for_carol.output


async def test_wrong_arguments_are_python_errors_in_the_code() -> None:
    code = textwrap.dedent(
        """
        for args in ([""], [3], ["rows", 0], ["rows", "5"]):
            try:
                await portal.search(*args)
            except (TypeError, ValueError) as error:
                print(type(error).__name__)
        try:
            portal.tool("nowhere.tool")
        except ValueError as error:
            print(error)
        """
    )
    async with opened([]) as (portal, audit):
        result = await portal.execute_code(code, portal.local)
    assert result.ok, result.error
    assert result.output.splitlines() == [
        "TypeError",
        "TypeError",
        "ValueError",
        "ValueError",
        "portal.tool(name) takes a qualified name `server.tool` of a known server, not 'nowhere.tool'",
    ]
    assert searches(audit) == []


async def test_the_bridge_refuses_forged_search_arguments_and_audits_the_refusal() -> None:
    async with opened([]) as (portal, audit):
        caller = Caller(portal.local)
        forgeries = (
            {"query": 3, "limit": 5},
            {"query": "rows", "limit": 500},
            {"query": "rows"},
            ["rows"],
            {"query": "rows", "limit": 1, "server": 7},
            {"query": "rows", "limit": 1, "server": "ops", "more": 1},
        )
        for forged in forgeries:
            with pytest.raises(ArgumentError):
                await portal.bridge.call(SEARCH_ACTION, forged, caller=caller)  # type: ignore[arg-type]
        found = await portal.bridge.call(SEARCH_ACTION, {"query": "read rows", "limit": 1}, caller=caller)
    entry = portal.catalog.get("ops.read_rows")
    assert entry is not None and found == search_hits([entry])
    assert [event.outcome for event in searches(audit)] == ["refused"] * 6 + ["ok"]
    assert all(event.detail.startswith("code ArgumentError") for event in searches(audit)[:6])


def sheets_server() -> MCPServer:
    server = MCPServer("sheets")

    @server.tool()
    def append_row(sheet: str, cells: list[str]) -> str:
        """Add a row at the end of a spreadsheet."""
        return "appended"

    @server.tool()
    def delete_sheet(sheet: str) -> str:
        """Delete a spreadsheet."""
        return "deleted"

    return server


async def test_code_searches_one_server_and_no_search_names_a_server_the_user_sees_nothing_of() -> None:
    code = textwrap.dedent(
        """
        print([hit["name"] for hit in await portal.search("add a row", limit=5, server="sheets")])
        print([hit["name"] for hit in await portal.search("add a row", limit=5)])
        for server in ("nowhere", "secret", 3):
            try:
                await portal.search("add a row", server=server)
            except (ToolError, TypeError) as error:
                print(type(error).__name__, error)
        """
    )
    policy = {"users": {"alice": {"deny": ["secret.*"]}}}
    config = PortalConfig.model_validate({"user": "alice", "policy": policy})
    local = {"ops": tables_server([]), "sheets": sheets_server(), "secret": tables_server([])}
    with anyio.fail_after(60):
        async with Portal.open(config, local=local) as portal:
            result = await portal.execute_code(code, portal.local)
            replies = [portal.search_api("add a row", portal.local, server=name) for name in ("nowhere", "secret")]
            replies.append(portal.search_api("add a row server:secret", portal.local))
    assert result.ok, result.error
    # search_api named the hidden server among the known ones, and answered for it as for one with no match.
    assert replies[0] == "Unknown server 'nowhere'. Servers: ops, sheets. Send an empty query for an overview."
    assert replies[1] == replies[2] == replies[0].replace("'nowhere'", "'secret'")
    scoped, everywhere, nowhere, secret, wrong = result.output.splitlines()
    assert scoped == "['sheets.append_row', 'sheets.delete_sheet']"
    assert "ops.insert_row" in everywhere and "sheets.append_row" in everywhere
    # A server the user sees none of is answered like one that does not exist: its name is not given away.
    assert nowhere == "ToolError portal.search: argument 'server': no server 'nowhere' here; the servers: ops, sheets"
    assert secret == nowhere.replace("'nowhere'", "'secret'")
    assert wrong.startswith("TypeError portal.search(server=...) takes a server's name")


async def test_searches_from_code_count_against_the_users_search_budget() -> None:
    code = textwrap.dedent(
        """
        for _ in range(3):
            try:
                print(len(await portal.search("read rows")))
            except ToolError as error:
                print(error)
        """
    )
    async with opened([], limits={"searches_per_minute": 2}) as (portal, audit):
        result = await portal.execute_code(code, portal.local)
    assert result.ok, result.error
    lines = result.output.splitlines()
    assert lines[:2] == ["3", "3"] and "`limits.searches_per_minute`" in lines[2]
    assert [event.outcome for event in searches(audit)] == ["ok", "ok", "refused"]


def big_server(tools: int) -> MCPServer:
    """A server of `tools` tools; `grow` adds one and announces the change (the catalog's search index is then stale,
    and the next search builds it anew over every tool: seconds in big catalogs)."""
    server = MCPServer("big")
    add_tools(server, tools)

    @server.tool()
    async def grow(name: str, ctx: Context) -> str:
        """Register a tool called `name`."""
        server.add_tool(lambda: "grown", name=name, description="Calibrate the quasar telescope.")
        await ctx.session.send_tool_list_changed()
        return "grown"

    return server


def gate_server(go: anyio.Event) -> MCPServer:
    server = MCPServer("gate")

    @server.tool()
    async def wait() -> str:
        """Return once the test says so."""
        await go.wait()
        return "go"

    return server


async def test_code_searching_in_a_loop_never_holds_up_another_users_run() -> None:
    # Alice's code changes the catalog, then searches in a tight loop: the first search after the change builds the
    # index over thousands of tools, and every one is CPU work in the portal. They run in a thread
    # (`budgets.offload`), so Bob's run is served while Alice's search is under way: the event loop is not hers.
    code = textwrap.dedent(
        """
        await big.grow(name="calibrate_quasar_telescope")
        await gate.wait()
        found = [(await portal.search("calibrate the quasar telescope", limit=1))[0]["name"] for _ in range(40)]
        print(set(found), len(found))
        """
    )
    config = PortalConfig.model_validate({"user": "alice", "http": {"users": USERS}, "search": {"semantic": False}})
    go = anyio.Event()
    outcomes: dict[str, Any] = {}
    with anyio.fail_after(120):
        async with (
            Portal.open(config, local={"big": big_server(4000), "gate": gate_server(go)}) as portal,
            anyio.create_task_group() as group,
        ):

            async def alices_run() -> None:
                outcomes["alice"] = await portal.execute_code(code, portal.principal("alice"))

            group.start_soon(alices_run)
            while "big.calibrate_quasar_telescope" not in portal.catalog:
                await anyio.sleep(0.01)
            assert not portal.indexed  # the first search from now on builds the index
            go.set()
            while not portal.budgets.in_flight("alice")["offloaded"]:  # Alice's first search is under way
                assert "alice" not in outcomes, "Alice's searches held the event loop until her run ended"
                await anyio.sleep(0.001)
            bobs = await portal.execute_code("print('bob ran')", portal.principal("carol"))
            outcomes["built when bob was done"] = portal.indexed
    assert bobs.ok and bobs.output == "bob ran\n", bobs.render()
    assert outcomes["built when bob was done"] is False  # Bob's whole run was served during Alice's index build
    assert outcomes["alice"].ok, outcomes["alice"].render()
    assert outcomes["alice"].output == "{'big.calibrate_quasar_telescope'} 40\n"
