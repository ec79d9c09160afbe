"""Prometheus metrics (`/metrics` in HTTP mode), fed by the audit event stream.

`Metrics` is an `AuditSink`: the portal tees every `AuditEvent` (search, run, call) to it next to the configured
audit sink, so the counters and the audit log come from the same records and no code path is instrumented twice.
What events cannot say is read at scrape time (`_StateCollector`: downstream states, catalog size) or told
directly (`running()` around a sandbox run, `tools_listed()` when an MCP session lists tools).

Each `Metrics` owns its `CollectorRegistry`; nothing registers in prometheus_client's global `REGISTRY`.

Label values are bounded: users by the configured users (others count as `other`), servers and tools by the
catalog (a call to an unknown tool counts as `unknown`), errors by kind names; never a query or an argument.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.status import ServerState, ServerStatus
from portal_mcp.control.audit import AuditBacklog, AuditEvent, AuditSink, RunErrorKind, Verdict

RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Seconds. A run starts a sandbox worker (tens of ms warm) and may wait on several tool calls."""
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds. A downstream call: a local stdio server answers in milliseconds, a remote API in up to seconds."""

OTHER_USER = "other"
UNKNOWN = "unknown"
USABLE: frozenset[ServerState] = frozenset({"connected", "exited", "snapshot"})
"""States in which a server's tools are listed and (except snapshots) callable: `exited` reconnects on the next
call."""

logger = logging.getLogger(__name__)
_ERROR_CLASS = re.compile(r"[A-Z][A-Za-z0-9]{0,60}(Error|Exception)")
_RUN_ERRORS = frozenset(get_args(RunErrorKind))


class Metrics:
    """The portal's metrics. `catalog` and `statuses` are callables so a refreshed catalog is seen at once."""

    def __init__(
        self,
        catalog: Callable[[], Catalog],
        statuses: Callable[[], list[ServerStatus]],
        users: Collection[str] = (),
        backlog: Callable[[], AuditBacklog | None] = lambda: None,
    ) -> None:
        self._catalog = catalog
        self._backlog = backlog
        self._users = frozenset(users)
        self._lock = threading.Lock()
        self._context: tuple[Catalog, int, int] | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.searches = Counter("portal_searches", "search_api calls", ["user"], registry=r)
        self.runs = Counter("portal_runs", "execute_code runs by outcome (ok, error, refused)", ["user", "outcome"], registry=r)  # fmt: skip
        self.run_seconds = Histogram(
            "portal_run_duration_seconds", "execute_code run time", ["outcome"], buckets=RUN_BUCKETS, registry=r
        )
        self.calls = Counter(
            "portal_tool_calls", "downstream tool calls made from code", ["server", "tool", "outcome"], registry=r
        )
        self.call_seconds = Histogram(
            "portal_tool_call_duration_seconds", "downstream tool call time", ["server"], buckets=CALL_BUCKETS, registry=r
        )  # fmt: skip
        self.approvals = Counter(
            "portal_approvals",
            "calls that asked the user for approval, by answer (approved, declined, cancelled, timeout, unsupported, failed)",
            ["verdict"],
            registry=r,
        )
        self.errors = Counter(
            "portal_errors",
            "failed or refused runs and calls by what went wrong (a run's error kind, a call's error class)",
            ["kind", "error"],
            registry=r,
        )
        self.forwards = Counter(
            "portal_approval_forwards",
            "approval answers for a run on another replica, by that replica (a configured peer, else unknown) and "
            "outcome (forwarded, unreachable, unknown_replica, second_hop)",
            ["peer", "outcome"],
            registry=r,
        )
        self.in_flight = Gauge("portal_sandbox_runs_in_flight", "execute_code runs executing now", registry=r)
        self.listings = Counter("portal_tool_listings", "MCP sessions that listed the portal's tools", registry=r)
        self.tokens_saved = Counter(
            "portal_context_tokens_saved",
            "tokens of tool definitions kept out of context: per session that lists tools, what listing every "
            "downstream tool would cost minus the portal's two tools (cl100k_base)",
            registry=r,
        )
        r.register(_StateCollector(self, statuses))

    def record(self, event: AuditEvent) -> None:
        """The `AuditSink` side: count one search, run or call."""
        if event.kind == "search":
            self.searches.labels(self._user(event.user)).inc()
            return
        failed = event.outcome != "ok"
        if event.kind == "run":
            self.runs.labels(self._user(event.user), event.outcome).inc()
            self.run_seconds.labels(event.outcome).observe(event.duration_ms / 1000)
            if failed:
                refused = "rate_limit" if event.detail == "rate_limit" else "precheck"
                refused = "limit" if event.detail.startswith("limit=") else refused
                self.errors.labels("run", refused if event.outcome == "refused" else _kind(event.detail)).inc()
            return
        entry = self._catalog().get(event.subject)
        server, tool = (entry.server, entry.name) if entry is not None else (UNKNOWN, UNKNOWN)
        self.calls.labels(server, tool, event.outcome).inc()
        self.call_seconds.labels(server).observe(event.duration_ms / 1000)
        if failed:
            self.errors.labels("call", _kind(event.detail)).inc()
        verdict = _verdict(event.detail)
        if verdict is not None:
            self.approvals.labels(verdict).inc()

    @contextmanager
    def running(self) -> Iterator[None]:
        """Around one sandbox run: counts it in `portal_sandbox_runs_in_flight` while it executes."""
        self.in_flight.inc()
        try:
            yield
        finally:
            self.in_flight.dec()

    def tools_listed(self) -> None:
        """An MCP session listed the portal's tools: it loaded two tools instead of every downstream one.

        Counts tokens on the first listing after a catalog change (tens of ms for hundreds of tools): call it
        from a worker thread.
        """
        direct, portal = self.context_tokens()
        self.listings.inc()
        self.tokens_saved.inc(max(direct - portal, 0))

    def context_tokens(self) -> tuple[int, int]:
        """(every downstream tool listed inline, the portal's two tools) in cl100k tokens, for the current catalog.

        The counting is `portal-mcp bench`'s (rows a and d), imported late: tiktoken loads only when needed.
        """
        catalog = self._catalog()
        with self._lock:
            cached = self._context
            if cached is not None and cached[0] is catalog:
                return cached[1], cached[2]
            from portal_mcp.catalog.tokens import count_tokens, portal_tools_json, tool_json

            direct = sum(
                count_tokens(tool_json(entry.qualified_name, entry.description, entry.input_schema))
                for entry in catalog
            )
            portal = count_tokens(portal_tools_json())
            self._context = (catalog, direct, portal)
            return direct, portal

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The scrape body and its content type (Prometheus text, or OpenMetrics when `accept` asks for it)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def _user(self, user: str) -> str:
        return user if user in self._users else OTHER_USER


class _StateCollector:
    """Gauges read at scrape time: downstream servers, the catalog, the context token counts."""

    def __init__(self, metrics: Metrics, statuses: Callable[[], list[ServerStatus]]) -> None:
        self._metrics = metrics
        self._statuses = statuses

    def describe(self) -> Iterable[Metric]:
        return []  # the families depend on the servers at scrape time; nothing to check at registration

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("portal_downstream_up", "1 when the server's tools are usable", labels=["server"])
        state = GaugeMetricFamily(
            "portal_downstream_state", "1 for the server's current state, 0 for the others", labels=["server", "state"]
        )
        tools = GaugeMetricFamily("portal_downstream_tools", "tools the server lists", labels=["server"])
        restarts = GaugeMetricFamily(
            "portal_downstream_restarts", "times the portal restarted the server", labels=["server"]
        )
        for status in self._statuses():
            up.add_metric([status.name], 1 if status.state in USABLE else 0)
            for name in get_args(ServerState):
                state.add_metric([status.name, name], 1 if status.state == name else 0)
            tools.add_metric([status.name], status.tool_count)
            restarts.add_metric([status.name], status.restarts)
        catalog = self._metrics._catalog()
        direct, portal = self._metrics.context_tokens()
        yield from (up, state, tools, restarts)
        yield GaugeMetricFamily("portal_catalog_tools", "tools in the catalog", value=len(catalog))
        yield GaugeMetricFamily("portal_catalog_servers", "servers with tools in the catalog", value=len(catalog.servers()))  # fmt: skip
        yield GaugeMetricFamily(
            "portal_context_tokens_direct", "tokens a client listing every downstream tool would load", value=direct
        )
        yield GaugeMetricFamily("portal_context_tokens_portal", "tokens of the portal's two tools", value=portal)
        backlog = self._metrics._backlog()
        if backlog is not None:  # a durable audit store (queued): what waits, and what it had to give up on
            yield GaugeMetricFamily("portal_audit_pending_events", "audit events waiting to be written", value=backlog.pending)  # fmt: skip
            yield CounterMetricFamily(
                "portal_audit_dropped_events", "audit events refused because the queue was full", value=backlog.dropped
            )
            yield CounterMetricFamily(
                "portal_audit_lost_events", "audit events the store rejected or that were queued at close", value=backlog.lost
            )  # fmt: skip


class MetricsTee:
    """An `AuditSink` that records to the configured sink, then counts the event in `Metrics`.

    The metrics count the event even when the sink raises (the action happened); a failure in the metrics is
    logged and never reaches the search, run or call being recorded.
    """

    def __init__(self, sink: AuditSink, metrics: Metrics) -> None:
        self.sink = sink
        self.metrics = metrics

    def record(self, event: AuditEvent) -> None:
        try:
            self.sink.record(event)
        finally:
            try:
                self.metrics.record(event)
            except Exception:
                logger.exception("counting an audit event in the metrics failed")


_VERDICTS = frozenset(get_args(Verdict))


def _verdict(detail: str) -> str | None:
    """The user's answer, when the call asked for approval: `approved` (it ran) or `rule=approval:<answer>`."""
    if detail.endswith("approved"):
        return "approved"
    _, found, verdict = detail.partition("rule=approval:")
    verdict = verdict.split(" ", 1)[0]
    return verdict if found and verdict in _VERDICTS else None


def _kind(detail: str) -> str:
    """The error label of a failure's audit detail: a run's error kind or a call's error class, else `other`."""
    word = detail.split(" ", 1)[0]
    return word if word in _RUN_ERRORS or _ERROR_CLASS.fullmatch(word) else "other"
