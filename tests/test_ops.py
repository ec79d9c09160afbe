"""Operations: `/metrics`, `/healthz` and JSON logs of a real `portal-mcp serve --transport http` process, and the
`Metrics` sink in process."""

from __future__ import annotations

import json
import logging
import secrets
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from portal_mcp.benchmark import measure_tokens
from portal_mcp.catalog.model import Catalog
from portal_mcp.catalog.tokens import portal_tools_json
from portal_mcp.control.audit import AuditEvent, MemoryAuditSink
from portal_mcp.control.metrics import Metrics, MetricsTee
from portal_mcp.downstream import ServerStatus
from portal_mcp.logs import DownstreamStderr, JsonFormatter
from tests.portals import authorised_client, running_portal
from tests.servers import DEMO_SERVER

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _config(folder: Path) -> Path:
    """A portal with the demo server (plus filler tools, so listing it inline costs more than the portal's two
    tools), a server whose command does not exist, and two users."""
    path = folder / "portal.yaml"
    path.write_text(
        "servers:\n"
        f"  demo:\n    command: {sys.executable!r}\n    args: [{str(DEMO_SERVER)!r}, --many, '20']\n"
        "  dead:\n    command: /nonexistent/portal-test-command\n"
        "http:\n  users:\n    alice: {token: '${ALICE_TOKEN}', groups: [operators]}\n    bob: {token: '${BOB_TOKEN}'}\n",
        encoding="utf-8",
    )
    return path


@asynccontextmanager
async def _serving(config: Path, env: dict[str, str]) -> AsyncIterator[str]:
    """`portal-mcp serve --transport http --log-format json` on loopback; yields its base URL. Logs go to
    `portal.log` next to the config (stdout and stderr, so a stray print would show up there too)."""
    async with running_portal(config, env=env, args=["--log-format", "json"]) as url:
        yield url.removesuffix("/mcp")


def _samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _text(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def _until_connected(base: str, token: str | None, server: str, state: str = "connected") -> None:
    """`serve` answers at once and connects its servers meanwhile: wait until `server` is up (or in `state`)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30)) as http:
        while True:
            report = (await http.get(f"{base}/healthz")).json()
            if any(s["name"] == server and s["state"] == state for s in report["servers"]):
                return
            await anyio.sleep(0.1)


MARKER = "marker-argument-value-7f3a"

RUNS = {
    # code -> what the run does
    "ok": f"r = await demo.echo(text={MARKER!r})\ns = await demo.add(a=2, b=3)\nprint(r, s['result'])",
    "failed call": "await demo.fail(message='nope')",
    "exception": "1 / 0",
    "refused": "await demo.no_such_tool()",
}


async def test_metrics_health_and_json_logs_of_a_real_http_portal(tmp_path: Path) -> None:
    alice, bob = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    config = _config(tmp_path)
    async with _serving(config, {"ALICE_TOKEN": alice, "BOB_TOKEN": bob}) as base:
        with anyio.fail_after(90):
            await _until_connected(base, alice, "demo")  # serve answers at once; the tokens saved need the catalog
            async with authorised_client(f"{base}/mcp", alice) as client:
                await client.list_tools()
                await client.call_tool("search_api", {"query": "echo text"})
                await client.call_tool("search_api", {"query": "add two numbers"})
                replies = {what: await client.call_tool("execute_code", {"code": code}) for what, code in RUNS.items()}
            # bob speaks the handshake era: one session, listed twice, counts once.
            async with (
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {bob}"}, timeout=httpx2.Timeout(30)) as http,
                Client(streamable_http_client(f"{base}/mcp", http_client=http), mode="legacy") as client,
            ):
                await client.list_tools()
                await client.list_tools(cache_mode="bypass")
                await client.call_tool("search_api", {"query": ""})
            async with httpx2.AsyncClient(timeout=httpx2.Timeout(30)) as http:
                as_alice = {"Authorization": f"Bearer {alice}"}
                # The dead server is retried in the background (2 s, then 4, 8 ...), "connecting" for the moment
                # each retry takes: read the reports just after it failed again, not during one.
                await _until_connected(base, alice, "dead", "failed")
                anonymous_metrics = await http.get(f"{base}/metrics")
                wrong_token = await http.get(f"{base}/metrics", headers={"Authorization": f"Bearer {alice}x"})
                scraped = await http.get(f"{base}/metrics", headers=as_alice)
                anonymous_health = await http.get(f"{base}/healthz")
                health = await http.get(f"{base}/healthz", headers=as_alice)
                as_bob = {"Authorization": f"Bearer {bob}"}  # a user, not an operator
                bobs_metrics = await http.get(f"{base}/metrics", headers=as_bob)
                bobs_health = await http.get(f"{base}/healthz", headers=as_bob)
                rebound = [
                    (await http.get(f"{base}{path}", headers={**as_alice, "Host": "evil.example"})).status_code
                    for path in ("/metrics", "/healthz")
                ]
    log_lines = config.with_suffix(".log").read_text(encoding="utf-8").splitlines()

    assert not replies["ok"].is_error and MARKER in _text(replies["ok"]), _text(replies["ok"])
    assert all(replies[what].is_error for what in ("failed call", "exception", "refused"))

    # Bearer auth guards /metrics; /healthz answers anyone, but only with its overall status.
    assert (anonymous_metrics.status_code, wrong_token.status_code) == (401, 401)
    assert scraped.status_code == 200, scraped.text
    assert scraped.headers["content-type"].startswith("text/plain")
    assert anonymous_health.status_code == 200
    assert anonymous_health.json() == {"status": "degraded"}
    # The details (other users' names and activity, servers' errors) are the operators' (`http.operator_groups`).
    assert bobs_metrics.status_code == 403 and "operator_groups" in bobs_metrics.text
    assert bobs_health.json() == {"status": "degraded"}
    # The DNS-rebinding check applies to both, token or not.
    assert rebound == [421, 421]

    # /healthz: the dead server is failed with its error, the demo server connected.
    assert health.status_code == 200
    report = health.json()
    servers = {server["name"]: server for server in report["servers"]}
    assert report["status"] == "degraded"
    assert servers["dead"]["state"] == "failed"
    assert servers["dead"]["kind"] == "stdio"
    assert "not found" in servers["dead"]["error"]
    assert servers["demo"]["state"] == "connected"
    assert servers["demo"]["tools"] == 29
    assert servers["demo"]["error"] is None

    # /metrics counts exactly what was done.
    samples = _samples(scraped.text)
    assert _value(samples, "portal_searches_total", user="alice") == 2
    assert _value(samples, "portal_searches_total", user="bob") == 1
    assert _value(samples, "portal_runs_total", user="alice", outcome="ok") == 1
    assert _value(samples, "portal_runs_total", user="alice", outcome="error") == 2
    assert _value(samples, "portal_runs_total", user="alice", outcome="refused") == 1
    assert _value(samples, "portal_tool_calls_total", server="demo", tool="echo", outcome="ok") == 1
    assert _value(samples, "portal_tool_calls_total", server="demo", tool="add", outcome="ok") == 1
    assert _value(samples, "portal_tool_calls_total", server="demo", tool="fail", outcome="error") == 1
    assert sum(v for (name, _), v in samples.items() if name == "portal_tool_calls_total") == 3
    assert _value(samples, "portal_errors_total", kind="call", error="ToolFailedError") == 1
    assert _value(samples, "portal_errors_total", kind="run", error="exception") == 2
    assert _value(samples, "portal_errors_total", kind="run", error="precheck") == 1
    run_count = sum(v for (name, _), v in samples.items() if name == "portal_run_duration_seconds_count")
    assert run_count == 4
    assert _value(samples, "portal_tool_call_duration_seconds_count", server="demo") == 3
    assert _value(samples, "portal_tool_call_duration_seconds_bucket", server="demo", le="+Inf") == 3
    assert _value(samples, "portal_sandbox_runs_in_flight") == 0
    assert _value(samples, "portal_downstream_up", server="demo") == 1
    assert _value(samples, "portal_downstream_up", server="dead") == 0
    assert _value(samples, "portal_downstream_state", server="dead", state="failed") == 1
    assert _value(samples, "portal_downstream_state", server="dead", state="connected") == 0
    assert _value(samples, "portal_catalog_tools") == 29
    # Two clients listed tools: alice's (sessionless, the listing cached for its calls) and bob's session. Each
    # kept the direct listing's tokens, less the portal's two tools, out of context.
    direct = _value(samples, "portal_context_tokens_direct")
    portal = _value(samples, "portal_context_tokens_portal")
    assert direct > portal > 0
    assert _value(samples, "portal_tool_listings_total") == 2
    assert _value(samples, "portal_context_tokens_saved_total") == 2 * (direct - portal)

    # JSON logs: every line on stderr and stdout is one JSON object with the expected fields; no values leak.
    records = [json.loads(line) for line in log_lines if line.strip()]
    assert records
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
        assert record["time"].endswith("Z")
    failed = [r for r in records if r.get("server") == "dead" and r.get("event") == "failed"]
    assert failed and failed[0]["level"] == "error" and failed[0]["logger"] == "portal_mcp.downstream"
    joined = "\n".join(log_lines)
    assert MARKER not in joined
    assert alice not in joined and bob not in joined


async def test_without_tokens_on_loopback_metrics_and_full_health_need_no_token(tmp_path: Path) -> None:
    config = tmp_path / "portal.yaml"
    config.write_text(
        f"servers:\n  demo:\n    command: {sys.executable!r}\n    args: [{str(DEMO_SERVER)!r}]\n", encoding="utf-8"
    )
    async with _serving(config, {}) as base, httpx2.AsyncClient(timeout=httpx2.Timeout(30)) as http:
        with anyio.fail_after(30):
            await _until_connected(base, None, "demo")
            scraped = await http.get(f"{base}/metrics")
            health = await http.get(f"{base}/healthz")
            openmetrics = await http.get(f"{base}/metrics", headers={"Accept": "application/openmetrics-text"})

    assert scraped.status_code == 200
    assert _value(_samples(scraped.text), "portal_downstream_up", server="demo") == 1
    assert health.json()["status"] == "ok"
    assert [server["state"] for server in health.json()["servers"]] == ["connected"]
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


# In process: the Metrics sink.


def _catalog() -> Catalog:
    def tool(name: str, params: dict[str, Any]) -> types.Tool:
        schema = {"type": "object", "properties": params, "required": list(params)}
        return types.Tool(name=name, description=f"The {name} tool, with a description.", input_schema=schema)

    return Catalog.build(
        {
            "github": [tool(f"tool_{i}", {"repo": {"type": "string"}, "n": {"type": "integer"}}) for i in range(30)],
            "time": [tool("get_current_time", {"timezone": {"type": "string"}})],
        }
    )


def _metrics(catalog: Catalog | None = None, statuses: list[ServerStatus] | None = None) -> Metrics:
    fixed = catalog or _catalog()
    return Metrics(lambda: fixed, lambda: statuses or [], users={"alice"})


def _scrape(metrics: Metrics) -> Samples:
    body, _ = metrics.exposition()
    return _samples(body.decode())


def test_events_are_counted_with_bounded_labels() -> None:
    metrics = _metrics()
    metrics.record(AuditEvent("search", "alice", "ok", 3.0, "list issues"))
    metrics.record(AuditEvent("search", "mallory", "ok", 3.0, "free text never becomes a label"))
    metrics.record(AuditEvent("run", "alice", "ok", 250.0, "abc123"))
    metrics.record(AuditEvent("run", "alice", "refused", 1.0, "abc124", "line 1: unknown-tool"))
    metrics.record(AuditEvent("run", "alice", "error", 5.0, "abc125", "timeout"))
    metrics.record(AuditEvent("call", "alice", "ok", 20.0, "github.tool_3"))
    metrics.record(AuditEvent("call", "alice", "refused", 0.1, "github.tool_3", "ArgumentError field=repo"))
    metrics.record(AuditEvent("call", "alice", "refused", 0.1, "github.made_up_name", "UnknownToolError"))
    metrics.record(AuditEvent("call", "alice", "error", 0.1, "time.get_current_time", "a sentence: not a name"))

    samples = _scrape(metrics)
    assert _value(samples, "portal_searches_total", user="alice") == 1
    assert _value(samples, "portal_searches_total", user="other") == 1
    assert _value(samples, "portal_runs_total", user="alice", outcome="refused") == 1
    assert _value(samples, "portal_errors_total", kind="run", error="precheck") == 1
    assert _value(samples, "portal_errors_total", kind="run", error="timeout") == 1
    assert _value(samples, "portal_run_duration_seconds_bucket", outcome="ok", le="0.25") == 1
    assert _value(samples, "portal_run_duration_seconds_bucket", outcome="ok", le="0.1") == 0
    assert _value(samples, "portal_tool_calls_total", server="github", tool="tool_3", outcome="ok") == 1
    assert _value(samples, "portal_tool_calls_total", server="github", tool="tool_3", outcome="refused") == 1
    assert _value(samples, "portal_tool_calls_total", server="unknown", tool="unknown", outcome="refused") == 1
    assert _value(samples, "portal_errors_total", kind="call", error="ArgumentError") == 1
    assert _value(samples, "portal_errors_total", kind="call", error="UnknownToolError") == 1
    assert _value(samples, "portal_errors_total", kind="call", error="other") == 1
    labels = {value for (_, pairs) in samples for _, value in pairs}
    assert not labels & {"mallory", "list issues", "github.made_up_name", "abc123"}


def test_each_metrics_object_owns_its_registry_and_the_global_one_stays_empty() -> None:
    first, second = _metrics(), _metrics()
    first.record(AuditEvent("search", "alice", "ok", 1.0, "q"))

    assert _value(_scrape(first), "portal_searches_total", user="alice") == 1
    assert _value(_scrape(second), "portal_searches_total", user="alice") == 0
    assert not [m for m in REGISTRY.collect() if m.name.startswith("portal_")]


def test_context_tokens_are_the_benchmarks_rows_a_and_d_and_listings_add_up_the_saving() -> None:
    catalog = _catalog()
    metrics = _metrics(catalog)
    report = measure_tokens(catalog, portal_tools_json(), [])

    assert metrics.context_tokens() == (report.row("a").tokens, report.row("d").tokens)
    metrics.tools_listed()
    metrics.tools_listed()
    samples = _scrape(metrics)
    saved = report.row("a").tokens - report.row("d").tokens
    assert saved > 0
    assert _value(samples, "portal_tool_listings_total") == 2
    assert _value(samples, "portal_context_tokens_saved_total") == 2 * saved
    assert _value(samples, "portal_context_tokens_direct") == report.row("a").tokens


def test_a_catalog_smaller_than_the_portals_tools_saves_nothing_rather_than_a_negative_count() -> None:
    metrics = _metrics(Catalog.build({"time": [types.Tool(name="now", input_schema={"type": "object"})]}))
    metrics.tools_listed()
    assert _value(_scrape(metrics), "portal_context_tokens_saved_total") == 0


def test_downstream_states_and_runs_in_flight_are_read_when_scraped() -> None:
    statuses = [
        ServerStatus("github", "http", "connected", 30, 12.0, None),
        ServerStatus("jira", "stdio", "down", 0, None, "gave up after 3 restarts", restarts=3),
    ]
    metrics = _metrics(statuses=statuses)
    with metrics.running():
        during = _scrape(metrics)
    after = _scrape(metrics)

    assert _value(during, "portal_sandbox_runs_in_flight") == 1
    assert _value(after, "portal_sandbox_runs_in_flight") == 0
    assert _value(after, "portal_downstream_up", server="github") == 1
    assert _value(after, "portal_downstream_up", server="jira") == 0
    assert _value(after, "portal_downstream_state", server="jira", state="down") == 1
    assert _value(after, "portal_downstream_restarts", server="jira") == 3
    assert _value(after, "portal_catalog_tools") == 31


class _BrokenSink:
    def record(self, event: AuditEvent) -> None:
        raise OSError("disk full")


def test_the_tee_counts_an_event_even_when_the_audit_sink_fails() -> None:
    metrics = _metrics()
    memory = MemoryAuditSink()
    event = AuditEvent("search", "alice", "ok", 1.0, "q")

    MetricsTee(memory, metrics).record(event)
    with pytest.raises(OSError, match="disk full"):
        MetricsTee(_BrokenSink(), metrics).record(event)

    assert list(memory) == [event]
    assert _value(_scrape(metrics), "portal_searches_total", user="alice") == 2


def test_a_failure_inside_the_metrics_never_reaches_the_recorded_action(caplog: pytest.LogCaptureFixture) -> None:
    def broken_catalog() -> Catalog:
        raise RuntimeError("bug")

    metrics = Metrics(broken_catalog, list, users=())
    memory = MemoryAuditSink()
    with caplog.at_level(logging.ERROR, logger="portal_mcp.control.metrics"):
        MetricsTee(memory, metrics).record(AuditEvent("call", "alice", "ok", 1.0, "github.tool_1"))

    assert len(memory) == 1
    assert "counting an audit event" in caplog.text


# In process: the JSON log format.


def _records(*lines: str) -> Iterator[dict[str, Any]]:
    yield from (json.loads(line) for line in lines)


def test_a_json_log_line_holds_time_level_logger_message_and_the_structured_fields() -> None:
    record = logging.LogRecord(
        "portal_mcp.downstream", logging.ERROR, __file__, 1, "server %r: %s", ("gh", "down"), None
    )
    record.server, record.event = "gh", "down"

    (line,) = _records(JsonFormatter().format(record))

    assert line["level"] == "error"
    assert line["logger"] == "portal_mcp.downstream"
    assert line["message"] == "server 'gh': down"
    assert (line["server"], line["event"]) == ("gh", "down")
    assert "user" not in line
    assert line["time"].endswith("Z")


def test_downstream_stderr_lines_become_records_with_the_server_name(caplog: pytest.LogCaptureFixture) -> None:
    stream = DownstreamStderr()
    with caplog.at_level(logging.INFO, logger="portal_mcp.downstream.stderr"):
        stream.write("[github] starting up\n[git")
        stream.write('hub] {"json": "as text"}\nno prefix\n')

    assert [(r.server, r.event, r.getMessage()) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("github", "stderr", "starting up"),
        ("github", "stderr", '{"json": "as text"}'),
        (None, "stderr", "no prefix"),
    ]
