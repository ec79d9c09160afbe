"""Long runs as tasks (issue 14, point 7): a 2025-11-25 client starts `execute_code` with `task: {ttl}` on a real
`portal-mcp serve` process, gets a task at once, polls `tasks/get`, fetches the outcome with `tasks/result`, lists
and cancels tasks; a 2026-07-28 client is not offered tasks and runs the code as a plain call."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError

from tests.portals import running_portal
from tests.servers import SERVERS

TTL_MS = 60_000


@pytest.fixture
async def portal_url(tmp_path: Path) -> Any:
    log = tmp_path / "slow.log"
    log.write_text("")
    config = tmp_path / "portal.yaml"
    config.write_text(
        f"servers:\n  slow:\n    command: {sys.executable!r}\n    args: [{str(SERVERS / 'slow_server.py')!r}]\n"
        f"    env: {{SLOW_LOG: {str(log)!r}}}\n",
        encoding="utf-8",
    )
    async with running_portal(config) as url:
        yield url


async def start_task(client: Client, code: str) -> types.Task:
    """A task-augmented `tools/call`. The SDK client checks a `tools/call` answer against `CallToolResult` alone (it
    sends no task-augmented calls itself), so this one goes through its dispatcher, the answer checked here."""
    params = {"name": "execute_code", "arguments": {"code": code}, "task": {"ttl": TTL_MS}}
    raw = await client.session._dispatcher.send_raw_request("tools/call", params, {})  # pyright: ignore[reportPrivateUsage]
    return types.CreateTaskResult.model_validate(raw, by_name=False).task


async def get_task(client: Client, task_id: str) -> types.GetTaskResult:
    request = types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=task_id))
    return await client.session.send_request(request, types.GetTaskResult)


async def task_result(client: Client, task_id: str) -> types.CallToolResult:
    request = types.GetTaskPayloadRequest(params=types.GetTaskPayloadRequestParams(task_id=task_id))
    return await client.session.send_request(request, types.CallToolResult)


def _text(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def test_a_legacy_client_is_offered_tasks_and_execute_code_supports_them(portal_url: str) -> None:
    with anyio.fail_after(30):
        async with Client(portal_url, mode="legacy") as client:
            capabilities = client.session.server_capabilities
            tools = await client.list_tools()
    assert capabilities is not None and capabilities.tasks is not None
    assert capabilities.tasks.requests is not None and capabilities.tasks.requests.tools is not None
    execute = next(tool for tool in tools.tools if tool.name == "execute_code")
    assert execute.execution is not None and execute.execution.task_support == "optional"


async def test_a_run_started_as_a_task_answers_at_once_and_its_result_is_fetched_later(portal_url: str) -> None:
    code = "print((await slow.wait(seconds=2, call='task'))['result'])"
    with anyio.fail_after(30):
        async with Client(portal_url, mode="legacy") as client:
            started = anyio.current_time()
            task = await start_task(client, code)
            answered = anyio.current_time() - started
            working = await get_task(client, task.task_id)
            result = await task_result(client, task.task_id)
            done = await get_task(client, task.task_id)

    assert task.status == "working" and task.ttl == TTL_MS and answered < 2  # did not wait for the 2 s call
    assert working.status == "working"
    assert _text(result).strip() == "waited 2 s" and not result.is_error
    assert done.status == "completed"


async def test_a_task_can_be_listed_and_cancelled_and_another_user_cannot_see_it(portal_url: str) -> None:
    with anyio.fail_after(30):
        async with Client(portal_url, mode="legacy") as client:
            task = await start_task(client, "await slow.wait(seconds=30, call='long')")
            listed = await client.session.send_request(types.ListTasksRequest(), types.ListTasksResult)
            cancel = types.CancelTaskRequest(params=types.CancelTaskRequestParams(task_id=task.task_id))
            cancelled = await client.session.send_request(cancel, types.CancelTaskResult)
            result = await task_result(client, task.task_id)
            after = await get_task(client, task.task_id)
            with pytest.raises(MCPError, match="no task 'nope' of yours"):
                await get_task(client, "nope")

    assert [entry.task_id for entry in listed.tasks] == [task.task_id]
    assert cancelled.status == "cancelled" and after.status == "cancelled"
    assert result.is_error and "cancelled" in _text(result)


async def test_a_modern_client_runs_the_code_as_a_plain_call(portal_url: str) -> None:
    with anyio.fail_after(30):
        async with Client(portal_url) as client:
            result = await client.call_tool("execute_code", {"code": "print(6 * 7)"})
    assert _text(result).strip() == "42"
