"""`Portal`, the composition root: it owns every long-lived part and wires them together.

```
async with Portal.open(config) as portal:
    print(portal.search_api("current time in Tokyo"))
    print((await portal.execute_code("await time.get_current_time(timezone='Asia/Tokyo')")).render())
```
Nothing below this module reaches for a global: connections, the catalog, the search index, the sandbox host and
the audit sink are created here and passed in.
"""

from __future__ import annotations

import difflib
import getpass
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal, TextIO

import anyio
from mcp.server.mcpserver import MCPServer
from mcp_types import Tool

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.search import SearchHit, SearchIndex
from portal_mcp.catalog.stubs import render_stubs
from portal_mcp.config import ANONYMOUS, PortalConfig
from portal_mcp.control.access import AccessPolicy, RunLimiter
from portal_mcp.control.audit import AuditEvent, AuditSink, MemoryAuditSink
from portal_mcp.control.audit_store import PostgresAuditSink, SqliteAuditSink
from portal_mcp.control.credentials import Redactor
from portal_mcp.control.metrics import Metrics, MetricsTee
from portal_mcp.downstream import DownstreamEvent, DownstreamPool, ServerStatus
from portal_mcp.runs.bridge import Approver, Bridge, Caller
from portal_mcp.runs.precheck import check_code, render
from portal_mcp.sandbox.facades import server_alias
from portal_mcp.sandbox.host import RunClock, RunResult, SandboxHost
from portal_mcp.tools import MAX_LIMIT

logger = logging.getLogger(__name__)

Detail = Literal["name", "signature", "full", "auto"]
FULL_HITS = 2
"""With the default detail ("auto"), this many best hits get full docs and the rest signatures."""
EventListener = Callable[[DownstreamEvent], Awaitable[None]]


class Portal:
    """The running portal. Build it with `Portal.open(config)`; the constructor only wires parts."""

    def __init__(
        self, config: PortalConfig, pool: DownstreamPool, sandbox: SandboxHost, audit: AuditSink, user: str
    ) -> None:
        self.config = config
        self.pool = pool
        self.sandbox = sandbox
        self.audit = audit
        self.user = user
        self._catalog = Catalog.build(pool.listings(), config.tool_filters())
        self._index: SearchIndex | None = None
        self._listeners: list[EventListener] = []
        users = {user, *config.http.users, *([ANONYMOUS] if config.http.bearer_tokens else [])}
        backlog = audit.backlog if isinstance(audit, PostgresAuditSink) else lambda: None
        self.metrics = Metrics(lambda: self._catalog, self.statuses, users, backlog)
        # Every search, run and call goes to the audit sink and, from the same event, to the metrics.
        self.events: AuditSink = MetricsTee(audit, self.metrics)
        self.redactor = Redactor(config.secret_values())
        self.policy = AccessPolicy(config)
        self._runs = RunLimiter()
        self.bridge = Bridge(lambda: self._catalog, pool, self.events, user, self.redactor, self.policy)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        config: PortalConfig,
        *,
        local: Mapping[str, MCPServer] | None = None,
        on_status: Callable[[ServerStatus], None] | None = None,
        audit: AuditSink | None = None,
        user: str | None = None,
        errlog: TextIO | None = None,
    ) -> AsyncIterator[Portal]:
        """Connect every downstream server (failures are reported, not raised) and start the sandbox host.

        Stdio servers' stderr goes to `errlog` (default: the portal's stderr) as `[name] line`."""
        portal: Portal | None = None

        async def tools_changed(server: str, tools: list[Tool]) -> None:
            if portal is not None:
                await portal._tools_changed(server, tools)

        async def event(evt: DownstreamEvent) -> None:
            if portal is not None:
                for listener in list(portal._listeners):
                    await listener(evt)

        pool = DownstreamPool(
            config.enabled_servers(),
            local=local,
            on_tools_changed=tools_changed,
            on_event=event,
            on_status=on_status,
            errlog=errlog,
            users=config.user_secrets(),
            redactor=Redactor(config.secret_values()),
        )
        # The sink outlives the pool and the sandbox, so calls finishing during shutdown are still recorded.
        async with _audit_sink(config, audit) as sink, pool, SandboxHost(config.sandbox) as sandbox:
            portal = cls(config, pool, sandbox, sink, user or config.user or _os_user())
            for problem in portal.policy.unmatched(portal.catalog):
                logger.warning("%s: a typo? it has no effect", problem, extra={"event": "policy_unmatched"})
            for server in portal.catalog.servers():
                if (alias := server_alias(server)) is not None:
                    logger.warning(
                        "server %r is named like the module `%s`: in execute_code `import %s` gives the module, "
                        "and the server stays reachable as `%s` (and as `%s` where nothing imported the module)",
                        server, server, server, alias, server,
                        extra={"server": server, "event": "name_clash"},
                    )  # fmt: skip
            yield portal

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    def statuses(self) -> list[ServerStatus]:
        return self.pool.statuses()

    def add_listener(self, listener: EventListener) -> None:
        """Be told about downstream failures, restarts and listing changes (the MCP server logs them to clients)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def _tools_changed(self, server: str, tools: list[Tool]) -> None:
        tool_filter = self.config.servers[server].tools.as_filter() if server in self.config.servers else None
        self._catalog = self._catalog.replace_server(server, tools, tool_filter)
        self._index = None

    def index(self) -> SearchIndex:
        """The search index of the current catalog, built on first use after every change."""
        if self._index is None:
            self._index = SearchIndex(self._catalog)
        return self._index

    def search_api(
        self,
        query: str,
        *,
        server: str | None = None,
        limit: int = 5,
        detail: Detail = "auto",
        user: str | None = None,
    ) -> str:
        """The text `search_api` returns: matching tools as typed stubs, or an overview for an empty query.

        `owner:NAME`, `tag:NAME` and `server:NAME` words in the query narrow the search to matching servers.
        """
        started = time.perf_counter()
        who = user or self.user
        hidden = self.policy.hidden(who, self._catalog)
        limit = max(1, min(limit, MAX_LIMIT))
        words, filters = _split_filters(query)
        if server is not None:
            filters.append(("server", server))
        scope, problem = self._scope(filters)
        if problem:
            reply = problem
        elif not words.strip():
            reply = self.overview(scope, hidden=hidden)
        else:
            hits = self.index().search(words, servers=scope, limit=limit, exclude=hidden)
            hint = self._did_you_mean(words, hits, hidden)
            if not hits:
                reply = f"No tools match {query!r}.{hint}\n\n" + self.overview(scope, hidden=hidden)
            else:
                entries = [hit.entry for hit in hits]
                if detail == "auto":
                    stubs = render_stubs(entries, detail="full", full_first=FULL_HITS)
                else:
                    stubs = render_stubs(entries, detail=detail)
                where = f" on {', '.join(sorted(scope))}" if scope is not None else ""
                approval = self.policy.for_user(who).needs_approval(entries)
                asks = (
                    f" Calls to {', '.join(approval)} ask the user for approval first; refused calls raise "
                    "PermissionError."
                    if approval
                    else ""
                )
                reply = (
                    f"{len(hits)} of {len(self._catalog) - len(hidden)} tools match{where}.{hint} Call them in "
                    f"execute_code as `await server.tool(...)`.{asks}\n\n{stubs}"
                )
        self.events.record(
            AuditEvent("search", who, "ok", (time.perf_counter() - started) * 1000, query, size_out=len(reply))
        )
        return reply

    def _scope(self, filters: list[tuple[str, str]]) -> tuple[set[str] | None, str]:
        """The servers the filters leave (None: all), or a message saying which filter matched nothing."""
        scope: set[str] | None = None
        for key, value in filters:
            matching = {name for name in self._catalog.servers() if self._server_matches(name, key, value)}
            if not matching:
                known = ", ".join(self._catalog.servers()) or "none"
                return None, f"Unknown {key} {value!r}. Servers: {known}. Send an empty query for an overview."
            scope = matching if scope is None else scope & matching
        return scope, ""

    def _server_matches(self, name: str, key: str, value: str) -> bool:
        config = self.config.servers.get(name)
        if key == "server":
            return name == value
        if config is None:
            return False
        if key == "owner":
            return (config.owner or "").lower() == value.lower()
        return value.lower() in (tag.lower() for tag in config.tags)

    def _did_you_mean(self, words: str, hits: list[SearchHit], hidden: frozenset[str] = frozenset()) -> str:
        """A hint when the query looks like a tool name that does not exist."""
        name = words.strip()
        if " " in name or not any(mark in name for mark in "._-") or name in self._catalog:
            return ""
        if any(name in (hit.entry.name, hit.entry.python_name, hit.entry.qualified_name) for hit in hits):
            return ""
        near = [
            match for match in self._catalog.close_matches(name) if match not in hidden
        ] or difflib.get_close_matches(
            name, [entry.python_name for entry in self._catalog if entry.qualified_name not in hidden], n=3, cutoff=0.7
        )
        return f" No tool is named {name!r}; did you mean {', '.join(near)}?" if near else ""

    def overview(self, scope: set[str] | None = None, *, hidden: frozenset[str] = frozenset()) -> str:
        """Servers with their descriptions, owners and tool counts (and tool names when one server is asked for);
        `hidden` tools (the caller's policy forbids them) are left out, and servers with none left too."""
        visible = {
            name: [entry for entry in self._catalog.by_server(name) if entry.qualified_name not in hidden]
            for name in self._catalog.servers()
            if scope is None or name in scope
        }
        names = [name for name, entries in visible.items() if entries]
        total = sum(len(visible[name]) for name in names)
        lines = [f"{total} tools on {len(names)} servers:"]
        for name in names:
            entries = visible[name]
            config = self.config.servers.get(name)
            about = [f"- {name} ({len(entries)} tools)"]
            if config is not None:
                if config.description:
                    about.append(f": {config.description}")
                extras = [f"owner: {config.owner}"] if config.owner else []
                extras += [f"tags: {', '.join(config.tags)}"] if config.tags else []
                extras += [f"docs: {config.docs}"] if config.docs else []
                if extras:
                    about.append(f" [{'; '.join(extras)}]")
            lines.append("".join(about))
            if len(names) == 1:
                lines.extend(f"  - {entry.qualified_name}" for entry in entries)
        down = [s for s in self.pool.statuses() if s.state in ("failed", "down")]
        if down:
            lines.append("Unavailable: " + ", ".join(f"{s.name} ({s.error})" for s in down))
        lines.append(
            "Search with words for what you need, e.g. search_api(query='create an issue'); "
            "narrow with server:NAME, owner:NAME or tag:NAME in the query."
        )
        return "\n".join(lines)

    async def execute_code(self, code: str, *, user: str | None = None, approve: Approver | None = None) -> RunResult:
        """Check agent code against the catalog, then run it in a fresh sandbox worker.

        Code with a wrong tool call (unknown tool, bad or missing arguments, no `await`) is refused before anything
        runs; every call the code makes goes through the bridge, under `user`'s policy. `approve` asks the user
        about calls the policy wants approved (None: they are refused).
        """
        started = time.perf_counter()
        who = user or self.user
        view = self.policy.view(who, self._catalog)
        problems = check_code(code, view.catalog, view.refused)
        wait = self._runs.admit(who, self.policy.for_user(who).runs_per_minute) if not problems else 0.0
        if problems:
            duration = (time.perf_counter() - started) * 1000
            result = RunResult(False, "", None, render(problems), 0, duration, "precheck")
        elif wait:
            limit = self.policy.for_user(who).runs_per_minute
            error = (
                f"RateLimitError: {who!r} may start {limit} runs per minute; the next run is allowed in {wait:.0f} s. "
                "Do more per run (asyncio.gather, loops) instead of many small runs."
            )
            result = RunResult(False, "", None, error, 0, (time.perf_counter() - started) * 1000, "rate_limit")
        else:
            clock = RunClock()
            caller = Caller(who, approve, clock.paused)

            async def call(qualified: str, arguments: dict[str, Any]) -> Any:
                return await self.bridge.call(qualified, arguments, caller=caller)

            with self.metrics.running():
                result = await self.sandbox.run(code, view.catalog.namespaces(), call, clock=clock)
        digest = hashlib.sha256(code.encode()).hexdigest()[:16]
        outcome: Any = "ok" if result.ok else "refused" if problems or wait else "error"
        # The audit keeps rules and lines, not the rendered problems: those quote argument values.
        # Nor the error text of a failed run: it can quote the code and the values it handled.
        detail = "; ".join(f"line {p.line}: {p.rule}" for p in problems) or (result.error_kind or "")
        self.events.record(
            AuditEvent("run", who, outcome, result.duration_ms, digest, detail, len(code), len(result.output))
        )
        return result


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


_FILTER = re.compile(r"(?<!\S)(owner|tag|server):(\S+)")


def _split_filters(query: str) -> tuple[str, list[tuple[str, str]]]:
    """`"refund owner:payments"` -> `("refund", [("owner", "payments")])`."""
    filters = [(key, value) for key, value in _FILTER.findall(query)]
    return _FILTER.sub(" ", query).strip(), filters


@asynccontextmanager
async def _audit_sink(config: PortalConfig, given: AuditSink | None) -> AsyncIterator[AuditSink]:
    """The sink passed in (its caller closes it), else the configured store (closed here), else memory.

    The PostgreSQL store connects when opened and writes its queue when closed: both happen on a worker thread,
    off the event loop.
    """
    if given is not None:
        yield given
    elif config.audit.sqlite is not None:
        with SqliteAuditSink(config.audit.sqlite) as store:
            yield store
    elif config.audit.postgres is not None:
        dsn = config.audit.postgres.get_secret_value()
        pg = await anyio.to_thread.run_sync(lambda: PostgresAuditSink(dsn))
        try:
            yield pg
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(pg.close)
    else:
        yield MemoryAuditSink()
