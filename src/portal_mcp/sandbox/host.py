"""The portal's half of the sandbox: one fresh, confined worker process per run, its tool calls served, its
limits kept.

Workers come from `forkserver.py`: by default forked from a warm fork server that has imported everything
already, with spares confined and waiting, so a run costs a frame round trip rather than an interpreter start;
`backend: spawn` (`launcher.py`) starts a fresh interpreter per run instead. Either way no process ever runs
two pieces of code.

Each run is a `Session` (session.py), which treats everything the worker sends as hostile input and keeps the
wall clock outside the worker: at the deadline the worker's process group is SIGKILLed inside a shielded scope.
A worker that dies (memory, CPU limit, crash) gives a RunResult saying so, and the host serves the next run as
usual.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal

from portal_mcp.config import SandboxConfig
from portal_mcp.control.audit import RunErrorKind
from portal_mcp.errors import SandboxError
from portal_mcp.naming import RESOURCE_METHODS
from portal_mcp.sandbox.forkserver import ForkServer
from portal_mcp.sandbox.language import Language, choose_language
from portal_mcp.sandbox.launcher import Layers, Spawner
from portal_mcp.sandbox.protocol import WorkerLimits
from portal_mcp.sandbox.session import Outcome, RunClock, Session, ToolCaller

__all__ = ["MAX_CODE_CHARS", "RunClock", "RunErrorKind", "RunResult", "SandboxHost", "ToolCaller"]

logger = logging.getLogger(__name__)

MAX_CODE_CHARS: Final = 1_000_000


@dataclass(frozen=True)
class RunResult:
    """What one `execute_code` run produced. `error` is None exactly when `ok`."""

    ok: bool
    output: str
    value: str | None
    error: str | None
    tool_calls: int
    duration_ms: float
    error_kind: RunErrorKind | None = None

    def render(self) -> str:
        """The text `execute_code` returns to the model: output, then the final value, then the error."""
        parts = [self.output.rstrip("\n")] if self.output else []
        if self.value is not None:
            parts.append(f"Value: {self.value}")
        if self.error is not None:
            parts.append(f"Error: {self.error}")
        return "\n".join(parts) if parts else "(no output)"


class SandboxHost:
    """Runs agent code in confined, single-use worker processes under `limits`; enter it before running code.

    `run_as` (a user name or uid) starts workers as another user; useful when the portal runs as root, whose
    workers otherwise only lose their capabilities (and RLIMIT_NPROC does not bind root).
    """

    def __init__(self, limits: SandboxConfig, *, run_as: str | int | None = None) -> None:
        self.limits = limits
        self.identity: dict[str, Any] = {}
        if run_as is not None:
            import pwd  # POSIX only; the portal runs on Windows without `run_as`

            account = pwd.getpwnam(run_as) if isinstance(run_as, str) else pwd.getpwuid(run_as)
            self.identity = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        worker_limits = WorkerLimits(
            memory_mb=limits.memory_mb,
            cpu_seconds=limits.cpu_seconds,
            max_output_bytes=limits.max_output_bytes,
            max_result_bytes=limits.max_result_bytes,
            language=limits.language,
        )
        self._launcher: ForkServer | Spawner = (
            ForkServer(worker_limits, self.identity, limits.spare_workers)
            if limits.backend == "fork"
            else Spawner(worker_limits, self.identity)
        )
        self._state: Literal["new", "open", "closed"] = "new"
        self._stack = contextlib.AsyncExitStack()

    @property
    def layers(self) -> Layers:
        """Which mechanisms enforce each layer ("network", "filesystem writes", ...) in the latest worker.

        An empty tuple means nothing on this kernel enforces that layer (a warning was logged). Known once the
        host is entered (the fork server starts a worker then) or, with `backend: spawn`, after the first run.
        """
        return self._launcher.seen.layers

    @property
    def language(self) -> Language:
        """The language level workers run code in ("open" or "strict"), from `sandbox.language` and the layers the
        latest worker reported (each worker decides the same way for itself: `policy.language.choose_language`)."""
        return choose_language(self.limits.language, self.layers)

    async def __aenter__(self) -> SandboxHost:
        # The fork server starts here and one worker is confined, so configuration problems surface now.
        if isinstance(self._launcher, ForkServer):
            await self._stack.enter_async_context(self._launcher.open())
        self._state = "open"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._state = "closed"
        await self._stack.__aexit__(exc_type, exc, tb)

    async def run(
        self,
        code: str,
        namespaces: Mapping[str, Sequence[str]],
        call_tool: ToolCaller,
        *,
        clock: RunClock | None = None,
        on_output: Callable[[str], None] | None = None,
    ) -> RunResult:
        """Run `code` in a fresh worker; `namespaces` maps each server to its tools' python names. Pass a `clock`
        to let `call_tool` pause the run's wall clock, `on_output` to see printed text as it arrives."""
        if self._state != "open":
            state = "closed; open a new SandboxHost" if self._state == "closed" else "not open; use `async with`"
            raise SandboxError(f"the sandbox host is {state}")
        started = time.perf_counter()
        tools = _namespaces(namespaces)
        if len(code) > MAX_CODE_CHARS:
            too_long = f"ValueError: the code is {len(code)} characters long, over the limit of {MAX_CODE_CHARS}"
            outcome = Outcome(f"{too_long}; split the work across runs", "too_long")
            return _result(outcome, "", 0, started)
        session = Session(self.limits, frozenset(tools), call_tool, clock or RunClock(), on_output)
        outcome = await session.execute(
            self._launcher, code, {server: list(names) for server, names in namespaces.items()}
        )
        if outcome.startup_failed:
            raise SandboxError(outcome.error or "the sandbox worker could not start")
        return _result(outcome, session.output.render(outcome.dropped), session.tool_calls, started)


def _namespaces(namespaces: Mapping[str, Sequence[str]]) -> set[str]:
    tools: set[str] = set()
    for server, names in namespaces.items():
        if type(server) is not str or not server.isidentifier():
            raise ValueError(f"server name {server!r} is not a Python identifier")
        for name in names:
            if type(name) is not str or not name.isidentifier():
                raise ValueError(f"tool name {name!r} of server {server!r} is not a Python identifier")
            tools.add(f"{server}.{name}")
        tools.update(f"{server}.{method}" for method in RESOURCE_METHODS)  # the bridge decides (runs/resources.py)
    return tools


def _result(outcome: Outcome, output: str, tool_calls: int, started: float) -> RunResult:
    return RunResult(
        ok=outcome.error is None,
        output=output,
        value=outcome.value,
        error=outcome.error,
        tool_calls=tool_calls,
        duration_ms=(time.perf_counter() - started) * 1000,
        error_kind=outcome.kind,
    )
