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

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import TextIO

import anyio
from anyio.abc import TaskGroup
from mcp.server.mcpserver import MCPServer
from mcp_types import Tool

from portal_mcp.catalog.model import Catalog, ToolEntry
from portal_mcp.catalog.overview import overview, visible_in, visible_servers
from portal_mcp.catalog.schemas import Validators
from portal_mcp.catalog.search import Indexes, SearchIndex
from portal_mcp.catalog.search.embeddings import EmbeddingCache, default_cache_dir, search_embeddings
from portal_mcp.catalog.search.meaning import one_blas_thread
from portal_mcp.catalog.search.stored import IndexStore
from portal_mcp.catalog.shapes import ShapeBook
from portal_mcp.config import ANONYMOUS, PortalConfig
from portal_mcp.control.access import AccessPolicy, RunLimiter, UserView
from portal_mcp.control.audit import AuditSink, MemoryAuditSink
from portal_mcp.control.audit_store import PostgresAuditSink, SqliteAuditSink
from portal_mcp.control.audit_store.connections import ConnectionStore, open_connections
from portal_mcp.control.audit_store.opening import open_audit_sink
from portal_mcp.control.audit_store.shapes import open_shapes
from portal_mcp.control.budgets import Budgets
from portal_mcp.control.credentials import Redactor
from portal_mcp.control.metrics import Metrics, MetricsTee
from portal_mcp.control.principal import Principal, Principals, local_user
from portal_mcp.control.searches import Searches
from portal_mcp.downstream import DownstreamEvent, DownstreamPool, ServerStatus, await_starting, unlisted
from portal_mcp.errors import ArgumentError, LimitError
from portal_mcp.runs import code_search
from portal_mcp.runs.approvals import PendingRuns
from portal_mcp.runs.bridge import Approver, Bridge
from portal_mcp.runs.precheck import check_code, render
from portal_mcp.runs.progress import RunProgress, counted
from portal_mcp.runs.resources import ResourceCalls
from portal_mcp.runs.run import ASK_LATER, Asking, Elicitor, Refused, Run, RunOutcome, UrlsDone, since_ms
from portal_mcp.sandbox.facades import name_clashes
from portal_mcp.sandbox.host import RunResult, SandboxHost
from portal_mcp.search_api import Detail, Sources, reply

logger = logging.getLogger(__name__)

EventListener = Callable[[DownstreamEvent], Awaitable[None]]


class Portal:
    """The running portal. Build it with `Portal.open(config)`; the constructor only wires parts."""

    def __init__(
        self,
        config: PortalConfig,
        pool: DownstreamPool,
        sandbox: SandboxHost,
        audit: AuditSink,
        tasks: TaskGroup,
        shapes: ShapeBook | None = None,
        embeddings: EmbeddingCache | None = None,
    ) -> None:
        self.config = config
        self.embeddings = embeddings
        self.index_store = IndexStore(config.search.cache or default_cache_dir())
        self.pool = pool
        self.sandbox = sandbox
        self.audit = audit
        self.policy = AccessPolicy(config)
        self.principals = Principals(config, self.policy)
        self.local = self.principals.local
        """The stdio / command-line user (`user:` of the config, else the OS user)."""
        listings = {server: config.curated(server, tools) for server, tools in pool.known_listings().items()}
        self._catalog = Catalog.build(listings, config.tool_filters())
        self._indexes = Indexes(embeddings, config.servers, self.index_store)
        self._listeners: list[EventListener] = []
        users = {self.local.name, *config.http.users, *([ANONYMOUS] if config.http.bearer_tokens else [])}
        users = users if config.http.metric_user_labels else set()  # without names every user counts as `other`
        backlog = audit.backlog if isinstance(audit, PostgresAuditSink | SqliteAuditSink) else lambda: None
        self.metrics = Metrics(lambda: self._catalog, self.statuses, users, backlog)
        # Every search, run and call goes to the audit sink and, from the same event, to the metrics.
        self.events: AuditSink = MetricsTee(audit, self.metrics)
        self.redactor = pool.redactor  # one redaction: it learns users' OAuth tokens as the pool obtains them
        self._runs = RunLimiter()
        self._tasks = tasks
        """Where runs live: closing the portal cancels the runs still going."""
        self.approvals = PendingRuns(keep_seconds=self.policy.approval_timeout)
        """Runs paused on approval questions until their client comes back with answers (2026-07-28)."""
        self.validators = Validators()  # one cache of schema validators for the pre-run check and the bridge
        self.budgets = Budgets(config.limits, config.sandbox.max_result_bytes)
        self.searches = Searches(self.budgets, self.events, self.redactor)  # search_api's budget, thread and audit
        # What tools without an outputSchema return, learned from calls: shown as their return types in stubs.
        self.shapes = shapes or ShapeBook(skip=config.unobserved)
        self.bridge = Bridge(
            lambda: self._catalog,
            pool,
            self.events,
            self.redactor,
            self.validators,
            approval_timeout=self.policy.approval_timeout,
            budgets=self.budgets,
            observe=self.shapes.observe,
            search=self.visible_tools,
            resources=ResourceCalls(pool, self.events, self.redactor, self.budgets),
        )

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        config: PortalConfig,
        *,
        local: Mapping[str, MCPServer] | None = None,
        on_status: Callable[[ServerStatus], None] | None = None,
        audit: AuditSink | None = None,
        errlog: TextIO | None = None,
        background: bool = False,
        catalog_only: bool = False,
    ) -> AsyncIterator[Portal]:
        """Connect every downstream server (failures are reported, not raised) and start the sandbox host.

        Stdio servers' stderr goes to `errlog` (default: the portal's stderr) as `[name] line`. With `background`
        the portal is usable at once and servers connect meanwhile: until one is up, search and stubs use its last
        known tools (kept in the state folder) and a call to it waits for its first attempt (`connect_timeout`).
        With `catalog_only` (stubs, snapshot, search, agents-md) no fork server starts (a run raises SandboxError),
        and neither the audit store nor users' OAuth connections open: events go to memory unless `audit` is given."""
        portal: Portal | None = None

        async def tools_changed(server: str, tools: list[Tool]) -> None:
            await (portal._tools_changed(server, tools) if portal is not None else anyio.lowlevel.checkpoint())

        async def event(evt: DownstreamEvent) -> None:
            for listener in list(portal._listeners if portal is not None else ()):
                await listener(evt)

        def pool_of(connections: ConnectionStore | None) -> DownstreamPool:
            return DownstreamPool(
                config.enabled_servers(),
                local=local,
                on_tools_changed=tools_changed,
                on_event=event,
                on_status=on_status,
                errlog=errlog,
                users=config.user_secrets(),
                redactor=Redactor(config.secret_values()),
                state_dir=config.state_folder(os.environ),
                background=background,
                connections=connections,
                local_user=local_user(config),
                relist_every=config.relist_every,
                connect_wait=config.connections.connect_wait,
            )

        # The sink outlives the pool and the sandbox, so calls finishing during shutdown are still recorded.
        failure: Exception | None = None
        embeddings = await anyio.to_thread.run_sync(search_embeddings, config.search)
        one_blas_thread()  # searches run in threads of their own: each product on one core (`meaning.dot`)
        sandbox = SandboxHost(config.sandbox)
        audit = (audit or MemoryAuditSink()) if catalog_only else audit
        started = contextlib.nullcontext(sandbox) if catalog_only else sandbox
        async with (
            open_audit_sink(config, audit) as sink,
            open_shapes(sink, skip=config.unobserved) as shapes,
            open_connections(sink, config, os.environ, skip=catalog_only) as connections,
            pool_of(connections) as pool,
            started,
            anyio.create_task_group() as tasks,
        ):
            try:
                portal = cls(config, pool, sandbox, sink, tasks, shapes, embeddings)
                await anyio.to_thread.run_sync(portal.index)  # off the loop: a first embedding takes seconds
                for problem in portal.unmatched():
                    logger.warning("%s: a typo? it has no effect", problem, extra={"event": "policy_unmatched"})
                for server, warning in name_clashes(portal.catalog.servers()):
                    logger.warning("%s", warning, extra={"server": server, "event": "name_clash"})
                yield portal
            except Exception as exc:  # raised as itself below, not wrapped in the task group's ExceptionGroup
                failure = exc
            finally:
                tasks.cancel_scope.cancel()  # the runs still going: before the sandbox and the pool close
        if failure is not None:
            raise failure

    def principal(self, name: str, groups: tuple[str, ...] = ()) -> Principal:
        """User `name`'s principal (HTTP user, `--user`); `groups`: more than the config gives (their OAuth token's)."""
        return self.principals.get(name, groups)

    def unmatched(self) -> list[str]:
        """Policy patterns, annotation overrides and search curation that name no tool of a known server."""
        problems = self.policy.unmatched(self._catalog)
        for server in self._catalog.servers():
            if (config := self.config.servers.get(server)) is not None:
                problems += config.search.unmatched(server, {entry.name for entry in self._catalog.by_server(server)})
        return problems

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    def statuses(self) -> list[ServerStatus]:
        return self.pool.statuses()

    def add_listener(self, listener: EventListener) -> None:
        """Be told about downstream failures, restarts and listing changes (the MCP server logs them to clients)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        self._listeners = [known for known in self._listeners if known is not listener]

    async def _tools_changed(self, server: str, tools: list[Tool]) -> None:
        # One assignment: a search or run sees the old catalog (and its index) or the new one (its index built anew).
        listings = {name: self.config.curated(name, tools) for name, tools in self.pool.known_listings().items()}
        self._catalog = Catalog.build(listings, self.config.tool_filters())

    @property
    def indexed(self) -> bool:
        """Whether the current catalog's search index is built (else the next search builds it)."""
        return self._indexes.ready(self._catalog)

    def index(self) -> SearchIndex:
        """The search index of the current catalog, built on first use after every change."""
        return self._indexes.get(self._catalog)

    def visible_tools(self, query: str, limit: int, principal: Principal, server: str | None = None) -> list[ToolEntry]:
        """The best tools for `query` among those `principal` may call, of `server` only when given (`portal.search`
        from code, via the bridge); none for a query of no word a tool's text uses or the search model knows (as
        `search_api` says so); `ArgumentError` naming the servers the caller sees for a server they do not."""
        catalog = self._catalog
        hidden = self.policy.hidden(principal.name, catalog, principal.groups)
        if server is not None and not visible_in(catalog, server, hidden):
            seen = ", ".join(visible_servers(catalog, hidden)) or "none"
            raise ArgumentError(code_search.NAME, "server", f"no server {server!r} here; the servers: {seen}")
        index = self.index()
        if not index.understood(query):  # "asdkjh qwpeoi": whatever ranks first is noise, and code would call it
            return []
        return [hit.entry for hit in index.search(query, server=server, limit=limit, exclude=hidden)]

    def search_sources(self) -> Sources:
        """What a search reads (taken on the event loop: the reply may be built in a thread)."""
        statuses, extras = self.pool.statuses(), self.pool.extras()
        servers, policy, shapes = self.config.servers, self.policy, self.shapes
        # The catalog is read in the thread, when the reply is built: the newest one, even after a wait.
        return Sources(lambda: self._catalog, self._indexes.get, servers, policy, shapes, statuses, extras)

    def search_api(
        self, query: str, principal: Principal, *, server: str | None = None, limit: int = 5, detail: Detail = "auto"
    ) -> str:
        """The text `search_api` returns (search_api.py: matching tools as typed stubs, or an overview for an empty
        query), built on the calling thread: the command line and embedders. The MCP surface, serving many users on
        one event loop, uses `search_api_offloaded`."""
        started = time.perf_counter()
        if (refusal := self._admit_search(query, principal, started)) is not None:
            return refusal
        text = reply(self.search_sources(), query, principal, server=server, limit=limit, detail=detail)
        self.searches.record(principal.name, "ok", started, query, "", len(text))
        return text

    async def search_api_offloaded(
        self, query: str, principal: Principal, *, server: str | None = None, limit: int = 5, detail: Detail = "auto"
    ) -> str:
        """`search_api` with its ranking and reply in a thread (`budgets.offload`: one at a time per user, at most
        `limits.heavy_threads` in all); admission and audit stay on the event loop, so a flood over the rate limit
        is refused before any thread work."""
        started = time.perf_counter()
        if (refusal := self._admit_search(query, principal, started)) is not None:
            return refusal
        work = partial(reply, self.search_sources(), query, principal, server=server, limit=limit, detail=detail)
        text = await self.searches.offload(work, user=principal.name)
        self.searches.record(principal.name, "ok", started, query, "", len(text))
        return text

    def _admit_search(self, query: str, principal: Principal, started: float) -> str | None:
        """None, or the reply refusing the search: its length and its user's rate first, before any work."""
        try:
            self.searches.admit(principal.name, query)
        except LimitError as exc:
            self.searches.record(principal.name, "refused", started, query, f"limit={exc.key}")
            return f"search_api: {exc}"
        return None

    def overview(self, scope: set[str] | None = None, *, hidden: frozenset[str] = frozenset()) -> str:
        """Servers with their descriptions, owners and tool counts (catalog/overview.py)."""
        return overview(self._catalog, self.config.servers, self.pool.statuses(), scope, hidden)

    async def start_run(self, code: str, principal: Principal, *, approve: Asking = None,
                        elicit: Elicitor | None = None, progress: RunProgress | None = None,
                        urls: UrlsDone | None = None) -> Run:  # fmt: skip
        """Check agent code against `principal`'s view of the catalog, then run it in a fresh sandbox worker.

        Code with a wrong tool call (unknown tool, bad or missing arguments, no `await`) is refused before anything
        runs, as is a run over the user's `runs_per_minute`: the run returned is over already, its outcome `Refused`.
        Otherwise it runs in the portal's task group (closing the portal cancels it); every call the code makes goes
        through the bridge under `principal`'s policy. `approve` says how calls the policy wants approved are asked
        (see `Asking`); with `ASK_LATER` a user may have only so many runs waiting (TooManyWaitingError). `elicit`,
        `progress`, `urls`: see `Run`; a run stopped by `Run.cancel()` is audited as `cancelled`."""
        started = time.perf_counter()
        if approve == ASK_LATER:
            self.approvals.check_room(principal.name)
        run = Run(code, principal, self.approvals.new_token(), approve, elicit, progress, urls)
        await await_starting(self.pool, code, self._catalog.namespaces())
        view = self.policy.view(principal.name, self._catalog, principal.groups)
        slot = contextlib.ExitStack()
        refusal = await self._admit(code, principal, view, started)
        if refusal is None:
            try:  # runs in flight (running, or paused for an approval answer): held until the run ends
                slot.enter_context(self.budgets.run(principal.name))
            except LimitError as exc:
                refusal = Refused("limit", f"LimitError: {exc}", since_ms(started), rule=f"limit={exc.key}")
        if refusal is None:
            body = partial(self._sandboxed, namespaces=view.catalog.namespaces(), slot=slot)
            self._tasks.start_soon(run.execute, body, self.events.record)
            return run
        run.refuse(refusal)
        self.events.record(run.audit_event(refusal))
        return run

    async def execute_code(self, code: str, principal: Principal, *, approve: Approver | None = None) -> RunOutcome:
        """`start_run` and wait for the outcome (the command line's `exec`, and whoever asks questions right away);
        a caller that stops waiting stops the run."""
        run = await self.start_run(code, principal, approve=approve)
        try:
            return await run.wait()
        finally:
            run.cancel()  # a no-op once it is over

    async def _sandboxed(
        self, run: Run, *, namespaces: Mapping[str, Sequence[str]], slot: contextlib.ExitStack
    ) -> RunResult:
        call = counted(partial(self.bridge.call, caller=run.caller), run.progress)
        with slot, self.metrics.running():
            result = await self.sandbox.run(run.code, namespaces, call, clock=run.clock, on_output=run.printed)
        self.events.record(run.audit_event(result))
        return result

    async def _admit(self, code: str, principal: Principal, view: UserView, started: float) -> Refused | None:
        """May this run start? None, or why not.

        Every run counts against `runs_per_minute`, refused ones too (a refusal costs the portal work as well); the
        code's size is checked before the pre-run check reads it, and big code is checked off the event loop."""
        wait = self._runs.admit(principal.name, principal.rules.runs_per_minute)
        if wait:
            error = (
                f"RateLimitError: {principal.name!r} may start {principal.rules.runs_per_minute} runs per minute; the "
                f"next run is allowed in {wait:.0f} s. Do more per run (asyncio.gather, loops) instead of many small "
                "runs."
            )
            return Refused("rate_limit", error, since_ms(started))
        try:
            self.budgets.code(code)
        except LimitError as exc:
            return Refused("limit", f"LimitError: {exc}", since_ms(started), rule=f"limit={exc.key}")
        check = partial(check_code, validators=self.validators)
        problems = await self.budgets.offload(
            check,
            code,
            view.catalog,
            view.refused,
            unlisted(self.pool, self._catalog.namespaces()),
            size=len(code),
            user=principal.name,
        )
        if problems:
            return Refused("precheck", render(problems), since_ms(started), tuple(problems))
        return None
