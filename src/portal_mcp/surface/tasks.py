"""`execute_code` as a task (the 2025-11-25 tasks utility), for runs longer than a client waits for one request.

The installed SDK has the 2025-11-25 task types but serves no `tasks/*` method, and the 2026-07-28 protocol moved
tasks to an extension (`io.modelcontextprotocol/tasks`) the SDK does not describe; so this serves the 2025-11-25
form on handshake-era connections:

- `initialize` advertises `capabilities.tasks` (`list`, `cancel`, `requests.tools.call`), and `execute_code` says
  `execution.taskSupport: optional`;
- `tools/call` of `execute_code` with `task: {ttl}` starts the run and answers at once with a `CreateTaskResult`
  (a server middleware answers it: the SDK's result check knows only `CallToolResult`);
- `tasks/get`, `tasks/result` (waits for the end, then the `CallToolResult`), `tasks/cancel`, `tasks/list`.

A task run asks its questions (approvals, downstream elicitation) with server requests when the client declared
elicitation, and is otherwise refused what needs an answer. How long tasks are kept and how many a user may run:
`runs/tasks.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mcp_types as types
from mcp.server import Server
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from portal_mcp.control.principal import Principal
from portal_mcp.errors import RunError
from portal_mcp.portal import Portal
from portal_mcp.runs.approvals import can_elicit, direct_approver, direct_elicitor
from portal_mcp.runs.tasks import RunTask, RunTasks

TASKS_VERSION = "2025-11-25"
CAPABILITY = types.ServerTasksCapability(
    list=types.TasksListCapability(),
    cancel=types.TasksCancelCapability(),
    requests=types.ServerTasksRequestsCapability(tools=types.TasksToolsCapability(call=types.TasksCallCapability())),
)
RELATED = "io.modelcontextprotocol/related-task"


class TaskSurface:
    """Serves runs as tasks on a `Server`: `install` adds the middleware and the `tasks/*` handlers."""

    def __init__(self, portal: Portal, principal_of: Callable[[ServerRequestContext[Any]], Principal]) -> None:
        self.portal = portal
        self.tasks = RunTasks()
        self._principal = principal_of

    def install(self, server: Server[Any]) -> None:
        server.middleware.append(self._middleware)
        server.add_request_handler("tasks/get", types.GetTaskRequestParams, self._get)
        server.add_request_handler("tasks/result", types.GetTaskPayloadRequestParams, self._result)
        server.add_request_handler("tasks/cancel", types.CancelTaskRequestParams, self._cancel)
        server.add_request_handler("tasks/list", types.PaginatedRequestParams, self._list)

    async def _middleware(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params or {}
        if ctx.method == "tools/call" and params.get("task") is not None and ctx.protocol_version == TASKS_VERSION:
            return await self._start(ctx)
        result = await call_next(ctx)
        if ctx.method == "initialize" and isinstance(result, dict) and result.get("protocolVersion") == TASKS_VERSION:
            capabilities = result.setdefault("capabilities", {})
            capabilities["tasks"] = CAPABILITY.model_dump(by_alias=True, exclude_none=True)
        return result

    async def _start(self, ctx: ServerRequestContext[Any, Any]) -> HandlerResult:
        try:
            params = types.CallToolRequestParams.model_validate(ctx.params, by_name=False)
        except ValidationError as exc:
            raise MCPError(code=types.INVALID_PARAMS, message=f"tools/call: {exc.errors()[0]['msg']}") from None
        code = (params.arguments or {}).get("code")
        if params.name != "execute_code" or not isinstance(code, str):
            raise MCPError(
                code=types.INVALID_PARAMS,
                message="only `execute_code` (with `code`: a string of Python source) runs as a task",
            )
        principal = self._principal(ctx)
        asking = can_elicit(ctx)
        try:
            self.tasks.check_room(principal.name)
            run = await self.portal.start_run(
                code,
                principal,
                approve=direct_approver(ctx) if asking else None,
                elicit=direct_elicitor(ctx) if asking else None,
            )
        except RunError as exc:
            raise MCPError(code=types.INVALID_REQUEST, message=str(exc)) from None
        task = self.tasks.add(run, params.task.ttl if params.task is not None else None)
        return types.CreateTaskResult(task=task.describe()).model_dump(by_alias=True, exclude_none=True)

    async def _get(self, ctx: ServerRequestContext[Any], params: types.GetTaskRequestParams) -> HandlerResult:
        return self._task(ctx, params.task_id).describe().model_dump(by_alias=True, exclude_none=False)

    async def _cancel(self, ctx: ServerRequestContext[Any], params: types.CancelTaskRequestParams) -> HandlerResult:
        task = self._task(ctx, params.task_id)
        if task.run.done:
            raise MCPError(code=types.INVALID_PARAMS, message=f"task {params.task_id!r} has ended ({task.status()})")
        task = self.tasks.cancel(self._principal(ctx).name, params.task_id)
        # The cancel stops the run now; its status reads `cancelled` once the worker is gone.
        return task.describe().model_dump(by_alias=True, exclude_none=False) | {"status": "cancelled"}

    async def _list(self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams) -> HandlerResult:
        tasks = [task.describe() for task in self.tasks.of(self._principal(ctx).name)]
        return types.ListTasksResult(tasks=tasks).model_dump(by_alias=True, exclude_none=True)

    async def _result(self, ctx: ServerRequestContext[Any], params: types.GetTaskPayloadRequestParams) -> HandlerResult:
        user = self._principal(ctx).name
        try:
            outcome = await self.tasks.outcome(user, params.task_id)
        except RunError as exc:
            raise MCPError(code=types.INVALID_PARAMS, message=str(exc)) from None
        if outcome is None:
            result = types.CallToolResult(content=[types.TextContent(text="the run was cancelled")], is_error=True)
        else:
            result = types.CallToolResult(content=[types.TextContent(text=outcome.render())], is_error=not outcome.ok)
        dumped = result.model_dump(by_alias=True, exclude_none=True)
        return dumped | {"_meta": {RELATED: {"taskId": params.task_id}}}

    def _task(self, ctx: ServerRequestContext[Any], task_id: str) -> RunTask:
        try:
            return self.tasks.get(self._principal(ctx).name, task_id)
        except RunError as exc:
            raise MCPError(code=types.INVALID_PARAMS, message=str(exc)) from None
