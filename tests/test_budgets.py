"""One user cannot starve the others: sizes are capped before any work, and what a user's runs and calls hold at
once is budgeted per run and per user (`limits:`), each refusal naming its config key."""

from __future__ import annotations

import textwrap
import threading
from collections import Counter
from typing import Any

import anyio
import mcp_types as types
from mcp.server.mcpserver import MCPServer

from portal_mcp.config import LimitsConfig, PortalConfig
from portal_mcp.control.audit import MemoryAuditSink
from portal_mcp.portal import Portal
from portal_mcp.runs.bridge import ApprovalRequest
from portal_mcp.runs.run import RunOutcome


def store(received: list[int]) -> MCPServer:
    server = MCPServer("store")

    @server.tool(annotations=types.ToolAnnotations(read_only_hint=True))
    async def keep(items: list[Any], seconds: float = 0.0) -> int:
        """Hold `items` for `seconds`, then answer how many there were."""
        received.append(len(items))
        await anyio.sleep(seconds)
        return len(items)

    @server.tool(annotations=types.ToolAnnotations(destructive_hint=True))
    async def wipe(items: list[Any]) -> int:
        """Delete the items."""
        received.append(len(items))
        return len(items)

    return server


def config(limits: dict[str, Any], **extra: Any) -> PortalConfig:
    return PortalConfig.model_validate({"user": "alice", "limits": limits, **extra})


async def run(portal: Portal, code: str, user: str = "alice", **kwargs: Any) -> RunOutcome:
    return await portal.execute_code(textwrap.dedent(code), portal.principal(user), **kwargs)


async def test_an_argument_over_the_size_cap_is_refused_before_validation_naming_its_key() -> None:
    received: list[int] = []
    audit = MemoryAuditSink()
    code = """
    items = [0] * 990_000   # 1.98 MB of JSON: under the worker's own cap, over the portal's
    try:
        await store.keep(**{"items": items})
    except Exception as exc:
        print(exc)
    """
    with anyio.fail_after(60):
        async with Portal.open(config({}), local={"store": store(received)}, audit=audit) as portal:
            result = await run(portal, code)
    assert "`limits.max_argument_bytes`" in result.output, result.render()
    assert received == []
    [call] = [event for event in audit if event.kind == "call"]
    assert (call.outcome, call.detail) == ("refused", "LimitError limit=limits.max_argument_bytes")


async def test_calls_of_one_run_hold_no_more_bytes_than_its_budget() -> None:
    received: list[int] = []
    code = """
    import asyncio
    big = list(range(20_000))   # about 120 kB of JSON per call
    results = await asyncio.gather(*[store.keep(items=big, seconds=1) for _ in range(6)], return_exceptions=True)
    print([r if isinstance(r, int) else str(r) for r in results])
    """
    with anyio.fail_after(60):
        async with Portal.open(config({"run_bytes_in_flight": 300_000}), local={"store": store(received)}) as portal:
            result = await run(portal, code)
    assert result.ok, result.render()
    assert result.output.count("20000") == 2 and result.output.count("`limits.run_bytes_in_flight`") == 4
    assert len(received) == 2


async def test_a_call_paused_for_approval_keeps_its_bytes_counted() -> None:
    """The wall clock stops while a person decides; the bytes the waiting call holds stay counted."""
    received: list[int] = []
    asked = anyio.Event()
    done = anyio.Event()

    async def slow_person(request: ApprovalRequest) -> Any:
        asked.set()
        await done.wait()
        return "approved"

    code = """
    import asyncio
    big = list(range(20_000))

    async def second():
        await asyncio.sleep(0.5)
        try:
            await store.keep(items=big)
        except Exception as exc:
            print("second:", exc)

    wiped, _ = await asyncio.gather(store.wipe(items=big), second())
    print("wiped", wiped)
    """
    limits = {"run_bytes_in_flight": 150_000}
    with anyio.fail_after(60):
        async with (
            Portal.open(
                config(limits, policy={"default": {"approve": "destructive"}}), local={"store": store(received)}
            ) as portal,
            anyio.create_task_group() as group,
        ):

            async def release() -> None:
                with anyio.move_on_after(20):
                    await asked.wait()
                    await anyio.sleep(1.5)
                done.set()

            group.start_soon(release)
            result = await run(portal, code, approve=slow_person)
    assert "second:" in result.output and "`limits.run_bytes_in_flight`" in result.output, result.render()
    assert "wiped {'result': 20000}" in result.output
    assert received == [20_000]


async def test_runs_of_one_user_in_flight_are_capped_whatever_the_protocol_and_others_are_not_affected() -> None:
    received: list[int] = []
    release = anyio.Event()

    async def waiting_person(request: ApprovalRequest) -> Any:
        await release.wait()
        return "declined"

    code = "try:\n    await store.wipe(items=[1])\nexcept PermissionError:\n    print('declined')"
    results: list[RunOutcome] = []
    with anyio.fail_after(60):
        async with (
            Portal.open(
                config({"runs_in_flight": 2}, policy={"default": {"approve": "destructive"}}),
                local={"store": store(received)},
            ) as portal,
            anyio.create_task_group() as group,
        ):

            async def start() -> None:
                results.append(await run(portal, code, approve=waiting_person))

            group.start_soon(start)
            group.start_soon(start)
            while portal.budgets.in_flight("alice")["runs"] < 2:
                await anyio.sleep(0.02)
            third = await run(portal, code, approve=waiting_person)
            bobs = await run(portal, "print('bob ran')", user="bob")
            release.set()
    assert "`limits.runs_in_flight`" in (third.error or ""), third.render()
    assert third.error_kind == "limit"
    assert bobs.ok and bobs.output == "bob ran\n"
    assert [result.output for result in results] == ["declined\n", "declined\n"]


async def test_refused_runs_count_against_runs_per_minute() -> None:
    audit = MemoryAuditSink()
    too_big = "x = 1\n" + "# padding\n" * 30_000  # over limits.max_code_bytes
    policy = {"users": {"bob": {"runs_per_minute": 5}}}
    with anyio.fail_after(60):
        async with Portal.open(config({}, policy=policy), local={"store": store([])}, audit=audit) as portal:
            results = [await run(portal, too_big, user="bob") for _ in range(8)]
    kinds = [result.error_kind for result in results]
    assert kinds == ["limit"] * 5 + ["rate_limit"] * 3
    assert "`limits.max_code_bytes`" in (results[0].error or "")
    assert [event.detail for event in audit if event.kind == "run"][:1] == ["limit=limits.max_code_bytes"]


async def test_code_with_a_big_literal_is_refused_before_it_is_parsed() -> None:
    with anyio.fail_after(60):
        async with Portal.open(config({}), local={"store": store([])}) as portal:
            literal = await run(portal, "x = " + repr([{}] * 6_000))  # 42 kB, under max_code_bytes
            fine = await run(portal, "x = " + repr([{}] * 100) + "\nprint(len(x))")
    assert literal.error_kind == "limit" and "`limits.max_code_items`" in (literal.error or "")
    assert fine.ok and fine.output == "100\n"


async def test_searches_are_capped_in_length_and_rate_and_the_audit_keeps_no_long_query() -> None:
    audit = MemoryAuditSink()
    with anyio.fail_after(60):
        async with Portal.open(config({"searches_per_minute": 3}), local={"store": store([])}, audit=audit) as portal:
            long = portal.search_api("refund " * 600_000, portal.principal("bob"))
            replies = [portal.search_api("keep items", portal.principal("bob")) for _ in range(3)]
            alice = portal.search_api("keep items", portal.principal("alice"))
    assert "`limits.max_query_chars`" in long
    assert "store.keep" in replies[0] and "store.keep" in replies[1]
    assert "`limits.searches_per_minute`" in replies[2]
    assert "store.keep" in alice  # bob's rate is his own
    searches = [event for event in audit if event.kind == "search"]
    assert max(len(event.subject) for event in searches) <= LimitsConfig().max_query_chars
    assert [event.outcome for event in searches] == ["refused", "ok", "ok", "refused", "ok"]


async def test_a_whole_task_pasted_as_the_query_is_answered_not_refused() -> None:
    # Public agent tasks run to about 1,200 characters; a model that pastes one gets tools, not a length refusal.
    step = "Keep the items of the order for a while and report how many there were, then wipe the old ones. "
    task = step * (1_800 // len(step))
    assert 1_500 < len(task) < LimitsConfig().max_query_chars
    with anyio.fail_after(60):
        async with Portal.open(config({}), local={"store": store([])}) as portal:
            reply = portal.search_api(task, portal.principal("bob"))
    assert not reply.startswith("search_api: "), reply
    assert "store.keep" in reply and "store.wipe" in reply


async def test_offloaded_searches_are_refused_before_any_thread_and_answered_as_on_the_command_line() -> None:
    # The MCP surface's search ranks in a thread (`search_api_offloaded`); the rate is checked on the event loop
    # first, so of five searches sent at once over a limit of three, the two refused answer before any ranking.
    audit = MemoryAuditSink()
    answered: list[str] = []

    async def search(portal: Portal) -> None:
        reply = await portal.search_api_offloaded("keep items", portal.principal("bob"), limit=1)
        answered.append("refused" if "`limits.searches_per_minute`" in reply else reply)

    with anyio.fail_after(60):
        async with Portal.open(config({"searches_per_minute": 3}), local={"store": store([])}, audit=audit) as portal:
            async with anyio.create_task_group() as group:
                for _ in range(5):
                    group.start_soon(search, portal)
            assert answered[2:] == [portal.search_api("keep items", portal.principal("alice"), limit=1)] * 3
    assert answered[:2] == ["refused", "refused"]
    assert [event.outcome for event in audit if event.kind == "search"] == [
        "refused",
        "refused",
        "ok",
        "ok",
        "ok",
        "ok",
    ]


async def test_a_search_query_is_redacted_before_the_audit_keeps_it() -> None:
    audit = MemoryAuditSink()
    secret = "sk-live-Qx7RZ2pL9vW4mK8d"
    cfg = config({}, http={"users": {"alice": {"token": secret}}})
    with anyio.fail_after(60):
        async with Portal.open(cfg, local={"store": store([])}, audit=audit) as portal:
            portal.search_api(f"keep items {secret}", portal.principal("alice"))
    [search] = [event for event in audit if event.kind == "search"]
    assert secret not in search.subject and "[redacted]" in search.subject


async def test_work_on_big_inputs_runs_off_the_event_loop_one_thread_per_user() -> None:
    from portal_mcp.config import LimitsConfig
    from portal_mcp.control.budgets import INLINE_BYTES, Budgets

    budgets = Budgets(LimitsConfig(heavy_threads=4), max_result_bytes=1_000)
    loop_thread = threading.get_ident()
    running: Counter[str] = Counter()
    most: Counter[str] = Counter()
    gate = threading.Event()

    def work(user: str) -> int:
        running[user] += 1
        most[user] = max(most[user], running[user])
        gate.wait(5)
        running[user] -= 1
        return threading.get_ident()

    assert await budgets.offload(threading.get_ident, size=INLINE_BYTES, user="alice") == loop_thread
    # Work whose cost is not its input's size (a search of the whole catalog) always goes to a thread.
    assert await budgets.offload(threading.get_ident, size=None, user="alice") != loop_thread
    assert budgets.in_flight("alice")["offloaded"] == 0
    threads: list[int] = []
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:

            async def big(user: str) -> None:
                threads.append(await budgets.offload(work, user, size=INLINE_BYTES + 1, user=user))

            for user in ("alice", "alice", "alice", "bob"):
                group.start_soon(big, user)
            while sum(running.values()) < 2:  # alice's first and bob's, at once; alice's others wait their turn
                await anyio.sleep(0.01)
            gate.set()
    assert loop_thread not in threads and len(threads) == 4
    assert most == Counter({"alice": 1, "bob": 1})
