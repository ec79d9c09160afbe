"""Runs served as tasks (the 2025-11-25 tasks utility): a run outlives the request that started it.

A client that may give up on a request before a long run ends (its request timeout) calls `execute_code` with
`task: {ttl}`; the portal answers at once with a task, and the client polls `tasks/get`, fetches the outcome with
`tasks/result` (which waits for the end), or stops the run with `tasks/cancel`. `RunTasks` keeps them:

- a task belongs to the user who started it: another user's task id is unknown to them;
- a task is kept `ttl` ms after it was created (the client's ask, capped at `MAX_TTL_MS`, `DEFAULT_TTL_MS` if it did
  not say); an expired task whose run still goes is cancelled, and its outcome is gone;
- a user may have `MAX_PER_USER` tasks still running at once; one more is refused (`TooManyTasksError`).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import mcp_types as types

from portal_mcp.errors import RunCancelledError, TooManyTasksError, UnknownRunError
from portal_mcp.runs.run import Run, RunOutcome

DEFAULT_TTL_MS = 3_600_000
"""How long a task is kept when the client did not say: an hour."""
MAX_TTL_MS = 86_400_000
"""The longest a client may ask a task to be kept: a day."""
MAX_PER_USER = 8
"""Tasks of one user running at once (each holds a sandbox worker)."""
POLL_INTERVAL_MS = 1_000


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class RunTask:
    task_id: str
    run: Run
    created: float
    ttl_ms: int
    updated: float

    @property
    def expires(self) -> float:
        return self.created + self.ttl_ms / 1000

    def status(self) -> types.TaskStatus:
        if not self.run.done:
            return "input_required" if self.run.open_questions() else "working"
        if self.run.cancelled:
            return "cancelled"
        outcome = self.run.outcome
        return "completed" if outcome is not None and outcome.ok else "failed"

    def describe(self) -> types.Task:
        status = self.status()
        message = {"working": "the code is running", "input_required": "the run waits for an answer"}.get(status)
        return types.Task(
            task_id=self.task_id,
            status=status,
            status_message=message,
            created_at=_iso(self.created),
            last_updated_at=_iso(self.run.finished_at_wall or self.updated),
            ttl=self.ttl_ms,
            poll_interval=POLL_INTERVAL_MS,
        )


class RunTasks:
    """The tasks of one portal, by id."""

    def __init__(self, max_per_user: int = MAX_PER_USER) -> None:
        self._tasks: dict[str, RunTask] = {}
        self._max_per_user = max_per_user

    def check_room(self, user: str) -> None:
        """Raise `TooManyTasksError` when `user` has too many tasks running to start another."""
        self._expire()
        running = sum(1 for task in self._tasks.values() if task.run.principal.name == user and not task.run.done)
        if running >= self._max_per_user:
            raise TooManyTasksError(user, running)

    def add(self, run: Run, ttl_ms: int | None) -> RunTask:
        now = time.time()
        ttl = min(ttl_ms if ttl_ms is not None and ttl_ms > 0 else DEFAULT_TTL_MS, MAX_TTL_MS)
        task = RunTask(secrets.token_urlsafe(18), run, now, ttl, now)
        self._tasks[task.task_id] = task
        return task

    def get(self, user: str, task_id: str) -> RunTask:
        """The task `task_id` of `user`; `UnknownRunError` for any other (expired, never existed, someone else's)."""
        self._expire()
        task = self._tasks.get(task_id)
        if task is None or task.run.principal.name != user:
            raise UnknownRunError(
                f"tasks: no task {task_id!r} of yours is kept here: it may have expired (tasks are kept for their "
                "ttl after they start) or belong to another user; run the code again"
            )
        return task

    def of(self, user: str) -> list[RunTask]:
        self._expire()
        return [task for task in self._tasks.values() if task.run.principal.name == user]

    async def outcome(self, user: str, task_id: str) -> RunOutcome | None:
        """Wait for the task's run to end: its outcome, or None when it was cancelled."""
        task = self.get(user, task_id)
        try:
            return await task.run.wait()
        except RunCancelledError:
            return None

    def cancel(self, user: str, task_id: str) -> RunTask:
        task = self.get(user, task_id)
        task.run.cancel()
        task.updated = time.time()
        return task

    def _expire(self) -> None:
        now = time.time()
        for task_id, task in list(self._tasks.items()):
            if now > task.expires:
                task.run.cancel()
                del self._tasks[task_id]
