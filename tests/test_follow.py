"""A run follows its client (issue 14, points 4 to 6), through a real `portal-mcp serve` process and real clients
of both protocol generations: a downstream server's questions reach the user and the answers go back, progress
notifications report calls, downstream progress and printed text, and a cancelled request kills its run."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.client import Client
from mcp.client.session import ClientRequestContext

from tests.everything import Generation, connect, everything_portal
from tests.portals import running_portal
from tests.servers import DEMO_SERVER, SERVERS

SLOW_SERVER = SERVERS / "slow_server.py"
CANCEL_BOUND = 1.0
"""Seconds within which a cancelled run's worker and downstream call must be gone in this test. The issue asks for
100 ms; this machine is shared, so the test keeps a generous bound and `benchmarks/bench_cancel.py` measures it."""


def _text(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


class Asked:
    """A client's elicitation callback that records each question and answers with `answer`."""

    def __init__(self, answer: types.ElicitResult) -> None:
        self.answer = answer
        self.questions: list[types.ElicitRequestParams] = []

    async def __call__(self, context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.questions.append(params)
        return self.answer


# -- elicitation from downstream -------------------------------------------------------------------------------------


async def test_a_downstream_form_question_reaches_the_user_and_the_answer_goes_back(
    everything_transport: Any, generation: Generation, tmp_path: Path
) -> None:
    asked = Asked(types.ElicitResult(action="accept", content={"name": "Ada Lovelace", "check": True}))
    with anyio.fail_after(90):
        async with (
            everything_portal(tmp_path, everything_transport) as url,
            connect(url, generation, elicitation_callback=asked) as client,
        ):
            result = await client.call_tool(
                "execute_code", {"code": "print(await everything.trigger_elicitation_request())"}
            )

    assert not result.is_error, _text(result)
    [question] = asked.questions
    assert isinstance(question, types.ElicitRequestFormParams)
    assert question.message.startswith("[everything] ")  # the person sees which server asks
    assert "name" in question.requested_schema["properties"]
    assert "Name: Ada Lovelace" in _text(result)  # the answer went back downstream and into the tool's result


async def test_a_downstream_url_question_reaches_the_user_with_its_url(generation: Generation, tmp_path: Path) -> None:
    asked = Asked(types.ElicitResult(action="accept"))
    code = "print(await everything.trigger_url_elicitation(url='https://example.com/authorize'))"
    with anyio.fail_after(90):
        async with (
            everything_portal(tmp_path, "stdio") as url,
            connect(url, generation, elicitation_callback=asked) as client,
        ):
            result = await client.call_tool("execute_code", {"code": code})

    assert not result.is_error, _text(result)
    [question] = asked.questions
    assert isinstance(question, types.ElicitRequestURLParams)
    assert question.url == "https://example.com/authorize"
    assert "accept" in _text(result).lower()


async def test_a_client_that_cannot_be_asked_gets_a_decline_the_server_sees(
    generation: Generation, tmp_path: Path
) -> None:
    with anyio.fail_after(90):
        async with everything_portal(tmp_path, "stdio") as url, connect(url, generation) as client:
            result = await client.call_tool(
                "execute_code", {"code": "print(await everything.trigger_elicitation_request())"}
            )

    assert not result.is_error, _text(result)
    assert "decline" in _text(result).lower()  # server-everything reports the action it got


# -- progress --------------------------------------------------------------------------------------------------------


async def test_a_client_with_a_progress_token_sees_calls_downstream_progress_and_printed_text(
    generation: Generation, tmp_path: Path
) -> None:
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    code = (
        "print('starting the long operation')\n"
        "await everything.trigger_long_running_operation(duration=2, steps=4)\n"
        "print('all done')"
    )
    with anyio.fail_after(90):
        async with everything_portal(tmp_path, "stdio") as url, connect(url, generation) as client:
            result = await client.call_tool("execute_code", {"code": code}, progress_callback=on_progress)

    assert not result.is_error, _text(result)
    values = [value for value, _ in seen]
    assert values == sorted(values) and len(set(values)) == len(values)  # the protocol wants it to grow
    messages = [message or "" for _, message in seen]
    assert any("1 tool call made, 1 pending" in message for message in messages)
    assert any("everything: " in message and "/4" in message for message in messages)  # forwarded, server named
    assert any("printed: starting the long operation" in message for message in messages)


async def test_a_search_after_a_listing_change_reports_building_the_index(
    generation: Generation, tmp_path: Path
) -> None:
    config = tmp_path / "portal.yaml"
    config.write_text(f"servers:\n  demo: {{command: {sys.executable!r}, args: [{str(DEMO_SERVER)!r}]}}\n")
    seen: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message)

    new_tool = "await demo.calibrate_quasar_telescope()"
    with anyio.fail_after(60):
        async with running_portal(config) as url, connect(url, generation) as client:
            await client.call_tool("execute_code", {"code": "await demo.add_tool(name='calibrate_quasar_telescope')"})
            while (await client.call_tool("execute_code", {"code": new_tool})).is_error:  # refused until listed
                await anyio.sleep(0.05)
            found = await client.call_tool(
                "search_api", {"query": "quasar telescope calibration"}, progress_callback=on_progress
            )
            again = await client.call_tool("search_api", {"query": "echo"}, progress_callback=on_progress)

    assert "demo.calibrate_quasar_telescope" in _text(found)
    assert not again.is_error
    assert seen[0] is not None and seen[0].startswith("building the search index over ")
    assert seen[1:] == ["the search index is built"]  # the second search found it built: no progress


# -- cancellation ----------------------------------------------------------------------------------------------------


def _workers(portal_pid: int) -> set[int]:
    """The sandbox workers of a portal: its grandchildren forked by the sandbox's fork server (warm ones included)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    forkers = [pid for pid in children.get(portal_pid, []) if _is_sandbox(pid)]
    return {pid for forker in forkers for pid in children.get(forker, []) if _is_sandbox(pid)}


def _is_sandbox(pid: int) -> bool:
    try:
        return b"portal_mcp.sandbo" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@asynccontextmanager
async def slow_portal(folder: Path) -> AsyncIterator[tuple[str, Path, int]]:
    """A portal in front of tests/servers/slow_server.py with a SQLite audit log: (its URL, the server's log of
    started and cancelled calls, the portal's pid)."""
    _need_proc()
    log = folder / "slow.log"
    log.write_text("")
    config = folder / "portal.yaml"
    config.write_text(
        f"servers:\n  slow:\n    command: {sys.executable!r}\n    args: [{str(SLOW_SERVER)!r}]\n"
        f"    env: {{SLOW_LOG: {str(log)!r}}}\naudit:\n  sqlite: audit.db\n",
        encoding="utf-8",
    )
    async with running_portal(config) as url:
        yield url, log, _portal_pid(url)


def _need_proc() -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("the cancellation tests read processes from /proc")


def _portal_pid(url: str) -> int:
    port = url.rsplit(":", 1)[1].split("/", 1)[0]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"portal_mcp" in cmdline and b"serve" in cmdline and port.encode() in cmdline:
                return int(entry)
    raise AssertionError(f"no portal process listens on port {port}")


async def _logged(log: Path, line: str) -> float:
    """When the slow server wrote `line` (its wall clock), waiting for it."""
    while True:
        for written in (await anyio.Path(log).read_text()).splitlines():
            if written.startswith(line + " "):
                return float(written.rsplit(" ", 1)[1])
        await anyio.sleep(0.005)


async def cancel_blocked_run(client: Client, log: Path, portal_pid: int, call: str) -> tuple[float, float]:
    """Start a run blocked in a 30 s downstream call, cancel the request, and return how long after the cancel
    (seconds) its worker process was gone and the downstream saw the call cancelled."""
    code = f"await slow.wait(seconds=30, call={call!r})"
    async with anyio.create_task_group() as group:
        before = _workers(portal_pid)
        group.start_soon(client.call_tool, "execute_code", {"code": code})
        await _logged(log, f"started {call}")
        during = _workers(portal_pid)
        assert during, "the run has a sandbox worker"
        cancelled_at, wall = time.perf_counter(), time.time()
        group.cancel_scope.cancel()
    while all(_alive(pid) for pid in during):
        await anyio.sleep(0.001)
    worker_gone = time.perf_counter() - cancelled_at
    downstream = await _logged(log, f"cancelled {call}") - wall
    gone = {pid for pid in during if not _alive(pid)}
    assert len(gone) == 1 and gone <= before | during  # exactly the run's worker; the warm ones stay
    return worker_gone, downstream


async def test_a_cancelled_run_loses_its_worker_and_its_downstream_call_and_the_next_run_works(
    generation: Generation, tmp_path: Path
) -> None:
    with anyio.fail_after(60):
        async with slow_portal(tmp_path) as (url, log, pid), connect(url, generation) as client:
            worker_gone, downstream = await cancel_blocked_run(client, log, pid, "first")
            after = await client.call_tool("execute_code", {"code": "print(1 + 1)"})

    assert worker_gone < CANCEL_BOUND, f"the worker outlived the cancel by {worker_gone * 1000:.0f} ms"
    assert downstream < CANCEL_BOUND, f"the downstream saw the cancel {downstream * 1000:.0f} ms later"
    assert _text(after).strip() == "2"
    with sqlite3.connect(tmp_path / "audit.db") as db:
        rows = db.execute("SELECT kind, subject, outcome, detail FROM events ORDER BY id").fetchall()
    assert ("call", "slow.wait", "error", "cancelled") in rows
    assert [row[2:] for row in rows if row[0] == "run"] == [("error", "cancelled"), ("ok", "")]


async def test_cancelling_one_run_never_touches_another(generation: Generation, tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with (
            slow_portal(tmp_path) as (url, log, pid),
            connect(url, generation) as other_client,
            connect(url, generation) as client,
            anyio.create_task_group() as group,
        ):
            results: list[types.CallToolResult] = []

            async def other() -> None:
                code = "print((await slow.wait(seconds=2, call='other'))['result'])"
                results.append(await other_client.call_tool("execute_code", {"code": code}))

            group.start_soon(other)
            await _logged(log, "started other")
            await cancel_blocked_run(client, log, pid, "cancelled")

    [result] = results
    assert _text(result).strip() == "waited 2 s"
    assert "cancelled other" not in log.read_text()
