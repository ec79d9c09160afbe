"""DownstreamPool against real servers: the demo server (stdio, HTTP, SSE), mcp-server-time, npm servers."""

from __future__ import annotations

import io
import os
import re
import signal
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.server import Server
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    UNSUPPORTED_PROTOCOL_VERSION,
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    TextContent,
    Tool,
)

from portal_mcp.catalog.snapshot import dump_snapshot
from portal_mcp.config import ServerConfig, SnapshotServerConfig, StdioServerConfig
from portal_mcp.downstream import DownstreamEvent, DownstreamPool, ServerStatus
from portal_mcp.errors import (
    DownstreamError,
    ServerUnavailableError,
    SnapshotOnlyError,
    ToolTimeoutError,
)
from tests.servers import alive, demo_http, demo_stdio, descendants, ensure_node_servers, kill_all

DEMO_TOOLS = ["echo", "add", "slow", "fail", "crash", "add_tool", "stats", "header", "pid"]
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="inspects processes through /proc")


@pytest.fixture(scope="session")
def node_modules() -> Path:
    try:
        return ensure_node_servers()
    except FileNotFoundError:
        pytest.skip("npm is not installed, so the npm MCP servers cannot be installed into tests/node")


class Recorder:
    """Collects what the pool reports, and lets a test wait for a tools_changed callback."""

    def __init__(self) -> None:
        self.events: list[DownstreamEvent] = []
        self.statuses: list[ServerStatus] = []
        self.changes: list[tuple[str, list[str]]] = []
        self.errlog = io.StringIO()
        self._send, self._receive = anyio.create_memory_object_stream[tuple[str, list[str]]](100)

    def pool(self, servers: Mapping[str, ServerConfig], **kwargs: Any) -> DownstreamPool:
        return DownstreamPool(
            servers,
            on_event=self._on_event,
            on_tools_changed=self._on_tools_changed,
            on_status=self.statuses.append,
            errlog=self.errlog,
            **kwargs,
        )

    async def _on_event(self, event: DownstreamEvent) -> None:
        self.events.append(event)

    async def _on_tools_changed(self, server: str, tools: list[Tool]) -> None:
        change = (server, [tool.name for tool in tools])
        self.changes.append(change)
        self._send.send_nowait(change)

    async def next_change(self) -> tuple[str, list[str]]:
        return await self._receive.receive()

    def kinds(self, server: str) -> list[str]:
        return [event.kind for event in self.events if event.server == server]

    def close(self) -> None:
        self._send.close()
        self._receive.close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.close()


def text(result: Any) -> str:
    first = result.content[0]
    assert isinstance(first, TextContent)
    return first.text


def status_of(pool: DownstreamPool, name: str) -> ServerStatus:
    return next(status for status in pool.statuses() if status.name == name)


async def test_a_stdio_python_server_lists_its_tools_and_answers_calls(recorder: Recorder) -> None:
    with anyio.fail_after(30):
        async with recorder.pool({"demo": demo_stdio()}) as pool:
            assert [tool.name for tool in pool.listings()["demo"]] == DEMO_TOOLS
            add = next(tool for tool in pool.listings()["demo"] if tool.name == "add")
            assert add.output_schema is not None

            assert (await pool.call_tool("demo", "add", {"a": 2, "b": 3})).structured_content == {"result": 5}
            assert text(await pool.call_tool("demo", "echo", {"text": "hi"})) == "hi"
            failed = await pool.call_tool("demo", "fail", {"message": "nope"})
            assert failed.is_error and text(failed) == "nope"

            status = status_of(pool, "demo")
            assert (status.transport, status.state, status.tool_count, status.error) == ("stdio", "connected", 9, None)
            assert status.connect_ms is not None and status.connect_ms > 0
    assert [(s.name, s.state) for s in recorder.statuses] == [("demo", "connected")]


async def test_mcp_server_time_from_pypi_tells_the_time(recorder: Recorder) -> None:
    time_server = StdioServerConfig(command=sys.executable, args=["-m", "mcp_server_time"])
    with anyio.fail_after(30):
        async with recorder.pool({"time": time_server}) as pool:
            assert {tool.name for tool in pool.listings()["time"]} == {"get_current_time", "convert_time"}
            result = await pool.call_tool("time", "get_current_time", {"timezone": "UTC"})
    assert not result.is_error
    assert result.structured_content is not None and result.structured_content["timezone"] == "UTC"


async def test_the_npm_memory_server_creates_entities_and_reads_them_back(
    recorder: Recorder, node_modules: Path, tmp_path: Path
) -> None:
    script = node_modules / "@modelcontextprotocol" / "server-memory" / "dist" / "index.js"
    memory = StdioServerConfig(command="node", args=[str(script)], env={"MEMORY_FILE_PATH": str(tmp_path / "m.jsonl")})
    entity = {"name": "portal", "entityType": "project", "observations": ["speaks MCP"]}
    with anyio.fail_after(30):
        async with recorder.pool({"memory": memory}) as pool:
            assert {"create_entities", "read_graph"} <= {tool.name for tool in pool.listings()["memory"]}
            created = await pool.call_tool("memory", "create_entities", {"entities": [entity]})
            assert not created.is_error
            graph = await pool.call_tool("memory", "read_graph", {})
    assert "speaks MCP" in text(graph)
    assert (tmp_path / "m.jsonl").is_file()  # `env:` reached the server
    assert "[memory] Knowledge Graph MCP Server running on stdio" in recorder.errlog.getvalue()


@linux_only
async def test_npx_and_its_node_children_are_gone_after_the_pool_exits(
    recorder: Recorder, node_modules: Path, tmp_path: Path
) -> None:
    # npx runs `npm exec`, which runs `sh -c`, which runs node: three processes below the one the pool starts.
    memory = StdioServerConfig(
        command="npx",
        args=["--no-install", "mcp-server-memory"],
        cwd=node_modules.parent,
        env={"MEMORY_FILE_PATH": str(tmp_path / "m.jsonl")},
    )
    before = descendants()
    with anyio.fail_after(60):
        async with recorder.pool({"memory": memory}) as pool:
            assert status_of(pool, "memory").state == "connected"
            started = descendants() - before
            assert len(started) >= 3
    try:
        assert alive(started) == set()
    finally:
        kill_all(started)


@linux_only
async def test_children_a_server_started_are_ended_with_it(recorder: Recorder) -> None:
    before = descendants()
    with anyio.fail_after(30):
        async with recorder.pool({"demo": demo_stdio("--spawn-child")}) as pool:
            assert status_of(pool, "demo").state == "connected"
            started = descendants() - before
            assert len(started) == 2  # the server and its sleeping child
    try:
        assert alive(started) == set()
    finally:
        kill_all(started)


async def test_an_http_server_gets_the_configured_headers() -> None:
    async with demo_http("http") as server:
        with anyio.fail_after(30):
            async with DownstreamPool({"web": server.config(headers={"X-Portal-Test": "sesame"})}) as pool:
                assert [tool.name for tool in pool.listings()["web"]] == DEMO_TOOLS
                assert text(await pool.call_tool("web", "header", {"name": "x-portal-test"})) == "sesame"
                assert (await pool.call_tool("web", "add", {"a": 1, "b": 1})).structured_content == {"result": 2}
                assert status_of(pool, "web").transport == "http"


async def test_an_sse_server_gets_the_configured_headers() -> None:
    async with demo_http("sse") as server:
        with anyio.fail_after(30):
            async with DownstreamPool({"old": server.config(headers={"X-Portal-Test": "sse"})}) as pool:
                assert text(await pool.call_tool("old", "header", {"name": "x-portal-test"})) == "sse"
                assert status_of(pool, "old").transport == "sse"


async def test_an_in_process_server_is_served_through_local(recorder: Recorder) -> None:
    server = MCPServer("inproc")

    @server.tool()
    def shout(word: str) -> str:
        """Upper-case a word."""
        return word.upper()

    with anyio.fail_after(10):
        async with recorder.pool({}, local={"inproc": server}) as pool:
            assert [tool.name for tool in pool.listings()["inproc"]] == ["shout"]
            assert text(await pool.call_tool("inproc", "shout", {"word": "hey"})) == "HEY"
            assert status_of(pool, "inproc").transport == "inproc"


async def test_tools_list_is_followed_through_every_page(recorder: Recorder) -> None:
    with anyio.fail_after(30):
        async with recorder.pool({"many": demo_stdio("--many", "250", "--page-size", "40")}) as pool:
            names = [tool.name for tool in pool.listings()["many"]]
    assert len(names) == 259
    assert names[:9] == DEMO_TOOLS and names[-1] == "extra_0249"


async def test_a_paginator_that_loops_is_cut_off_with_a_warning(recorder: Recorder) -> None:
    with anyio.fail_after(30):
        async with recorder.pool({"loop": demo_stdio("--loop-cursor", "--page-size", "3")}) as pool:
            assert [tool.name for tool in pool.listings()["loop"]] == DEMO_TOOLS[:3]
    assert "repeats cursor" in recorder.events[0].message


async def test_tools_list_changed_relists_and_reports_the_new_tool(recorder: Recorder) -> None:
    with anyio.fail_after(30):
        async with recorder.pool({"demo": demo_stdio()}) as pool:
            await pool.call_tool("demo", "add_tool", {"name": "fresh"})
            server, names = await recorder.next_change()
            assert (server, names) == ("demo", [*DEMO_TOOLS, "fresh"])
            assert pool.listings()["demo"][-1].name == "fresh"
            assert text(await pool.call_tool("demo", "fresh", {})) == "fresh ok"


async def test_tools_list_changed_arrives_over_streamable_http_too(recorder: Recorder) -> None:
    async with demo_http("http") as server:
        with anyio.fail_after(30):
            async with recorder.pool({"web": server.config()}) as pool:
                await pool.call_tool("web", "add_tool", {"name": "remote_fresh"})
                assert await recorder.next_change() == ("web", [*DEMO_TOOLS, "remote_fresh"])


async def test_a_call_past_the_timeout_is_cancelled_downstream_and_the_server_still_answers(
    recorder: Recorder,
) -> None:
    with anyio.fail_after(30):
        async with recorder.pool({"demo": demo_stdio(timeout=0.5)}) as pool:
            with pytest.raises(ToolTimeoutError) as caught:
                await pool.call_tool("demo", "slow", {"seconds": 30})
            assert caught.value.tool == "slow" and caught.value.timeout == 0.5
            assert "raise `timeout:`" in str(caught.value)
            # The server saw notifications/cancelled: its handler was interrupted, not left running.
            stats = await pool.call_tool("demo", "stats", {})
            assert stats.structured_content == {"calls": 2, "cancelled": 1, "lists": 1}
            assert status_of(pool, "demo").restarts == 0


async def test_a_bad_command_is_reported_failed_and_the_other_servers_work(recorder: Recorder) -> None:
    servers = {"typo": StdioServerConfig(command="npx-typo"), "demo": demo_stdio()}
    with anyio.fail_after(30):
        async with recorder.pool(servers) as pool:
            typo = status_of(pool, "typo")
            assert typo.state == "failed" and typo.tool_count == 0
            assert typo.error == "command 'npx-typo' not found; check `command:` (is it installed and on PATH?)"
            assert list(pool.listings()) == ["demo"]
            assert text(await pool.call_tool("demo", "echo", {"text": "fine"})) == "fine"
            with pytest.raises(ServerUnavailableError, match="failed to start: command 'npx-typo' not found"):
                await pool.call_tool("typo", "anything", {})
    assert recorder.kinds("typo") == ["failed"]
    assert {s.name: s.state for s in recorder.statuses} == {"typo": "failed", "demo": "connected"}


async def test_a_missing_working_directory_is_named(recorder: Recorder, tmp_path: Path) -> None:
    server = demo_stdio(cwd=tmp_path / "nowhere")
    with anyio.fail_after(30):
        async with recorder.pool({"demo": server}) as pool:
            assert (
                status_of(pool, "demo").error
                == f"working directory {str(tmp_path / 'nowhere')!r} does not exist; check `cwd:`"
            )


async def test_a_server_that_exits_at_start_is_failed_and_its_stderr_is_in_the_log(recorder: Recorder) -> None:
    with anyio.fail_after(30):
        async with recorder.pool({"quits": demo_stdio("--exit-at-start")}) as pool:
            status = status_of(pool, "quits")
    assert status.state == "failed"
    assert status.error is not None
    assert status.error.startswith("the process exited before the MCP handshake finished")
    assert status.error.endswith("its stderr is in the portal's log")
    assert "[quits] demo server: refusing to start (--exit-at-start)" in recorder.errlog.getvalue()


async def test_a_server_that_hangs_at_start_fails_after_its_connect_timeout(recorder: Recorder) -> None:
    with anyio.fail_after(30):
        async with recorder.pool({"hangs": demo_stdio("--hang-at-start", connect_timeout=0.5)}) as pool:
            status = status_of(pool, "hangs")
    assert status.state == "failed"
    assert status.error is not None and status.error.startswith("did not finish starting")
    assert "within 0.5s; raise `connect_timeout:`" in status.error


async def test_a_crashed_server_is_respawned_by_the_next_call(recorder: Recorder) -> None:
    with anyio.fail_after(30):
        async with recorder.pool({"demo": demo_stdio()}) as pool:
            with pytest.raises(DownstreamError, match="was not retried because it may have run") as caught:
                await pool.call_tool("demo", "crash", {})
            assert "its stderr is in the portal's log" in str(caught.value)
            assert status_of(pool, "demo").state == "exited"
            assert list(pool.listings()) == ["demo"]  # still callable: the next call respawns it

            assert text(await pool.call_tool("demo", "echo", {"text": "again"})) == "again"
            status = status_of(pool, "demo")
            assert (status.state, status.restarts) == ("connected", 1)
    assert recorder.kinds("demo") == ["exited", "restarting", "restarted"]


async def test_a_server_that_keeps_dying_ends_down(recorder: Recorder, tmp_path: Path) -> None:
    # --once: the first start works, every respawn exits at once.
    server = demo_stdio("--once", str(tmp_path / "started"), max_restarts=2)
    with anyio.fail_after(30):
        async with recorder.pool({"flaky": server}) as pool:
            with pytest.raises(DownstreamError):
                await pool.call_tool("flaky", "crash", {})
            with pytest.raises(ServerUnavailableError) as caught:
                await pool.call_tool("flaky", "echo", {"text": "x"})
            message = str(caught.value)
            assert re.match(r"server 'flaky' is down since \d\d:\d\d:\d\d \(after 2 restart attempt\(s\)", message)
            assert "its stderr is in the portal's log" in message and re.search(r"; retrying in \d+ s$", message)
            assert "this is a respawn; exiting" in recorder.errlog.getvalue()
            assert status_of(pool, "flaky").state == "down"
            assert "flaky" not in pool.listings()

            # Within down_retry_after a call fails at once instead of respawning again.
            with pytest.raises(ServerUnavailableError):
                await pool.call_tool("flaky", "echo", {"text": "x"})
    assert recorder.kinds("flaky") == ["exited", "restarting", "restarting", "down"]


async def test_max_restarts_zero_means_a_dead_server_stays_down(recorder: Recorder) -> None:
    with anyio.fail_after(30):
        async with recorder.pool({"demo": demo_stdio(max_restarts=0)}) as pool:
            with pytest.raises(DownstreamError):
                await pool.call_tool("demo", "crash", {})
            with pytest.raises(ServerUnavailableError, match="restarts are disabled"):
                await pool.call_tool("demo", "echo", {"text": "x"})


async def test_a_restarted_http_server_is_reconnected_and_the_call_resent() -> None:
    async with demo_http("http") as server:
        with anyio.fail_after(30):
            async with DownstreamPool({"web": server.config()}) as pool:
                assert text(await pool.call_tool("web", "echo", {"text": "one"})) == "one"
                await server.stop()
                await server.start()
                # The new process does not know the old session: the call is answered 404 and sent again.
                assert text(await pool.call_tool("web", "echo", {"text": "two"})) == "two"
                assert status_of(pool, "web").restarts == 1


async def test_an_http_server_that_went_away_is_unavailable_until_it_is_back(recorder: Recorder) -> None:
    async with demo_http("http") as server:
        with anyio.fail_after(30):
            async with recorder.pool({"web": server.config()}, down_retry_after=0) as pool:
                await server.stop()
                with pytest.raises(ServerUnavailableError, match=r"cannot reach http://127\.0\.0\.1:"):
                    await pool.call_tool("web", "echo", {"text": "gone"})
                assert status_of(pool, "web").state == "down"
                await server.start()
                assert text(await pool.call_tool("web", "echo", {"text": "back"})) == "back"
    assert recorder.kinds("web")[-2:] == ["down", "restarted"]  # one attempt when called, no restart series


async def test_unreachable_and_misaddressed_http_servers_fail_with_the_reason(recorder: Recorder) -> None:
    async with demo_http("http") as server:
        servers: dict[str, ServerConfig] = {
            "refused": server.config(url="http://127.0.0.1:9/mcp"),
            "wrong_path": server.config(url=server.url.replace("/mcp", "/nope")),
        }
        with anyio.fail_after(30):
            async with recorder.pool(servers) as pool:
                refused, wrong_path = pool.statuses()
    assert refused.state == "failed" and refused.error is not None
    assert refused.error.startswith("cannot reach http://127.0.0.1:9/mcp")
    assert wrong_path.error is not None and "answered HTTP 404 Not Found; check the path in `url:`" in wrong_path.error


async def test_snapshot_and_disabled_servers_need_no_process(recorder: Recorder, tmp_path: Path) -> None:
    tool = Tool(name="saved", description="From a file.", input_schema={"type": "object"})
    path = tmp_path / "saved.json"
    path.write_text(dump_snapshot("saved", "test", [tool]), encoding="utf-8")
    servers: dict[str, ServerConfig] = {
        "off": StdioServerConfig(command="never-run", disabled=True),
        "saved": SnapshotServerConfig(snapshot=path),
    }
    with anyio.fail_after(10):
        async with recorder.pool(servers) as pool:
            assert pool.listings() == {"saved": [tool]}
            assert [(s.name, s.transport, s.state, s.tool_count) for s in pool.statuses()] == [
                ("off", "stdio", "disabled", 0),
                ("saved", "snapshot", "snapshot", 1),
            ]
            with pytest.raises(SnapshotOnlyError, match="comes from the snapshot file"):
                await pool.call_tool("saved", "saved", {})
            with pytest.raises(DownstreamError, match="disabled"):
                await pool.call_tool("off", "x", {})
            with pytest.raises(DownstreamError, match="no server has this name"):
                await pool.call_tool("nope", "x", {})


async def test_a_broken_snapshot_is_a_failed_server(recorder: Recorder, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json", encoding="utf-8")
    with anyio.fail_after(10):
        async with recorder.pool({"broken": SnapshotServerConfig(snapshot=path)}) as pool:
            status = status_of(pool, "broken")
    assert status.state == "failed" and status.error is not None and "not valid JSON" in status.error


async def test_listings_and_statuses_follow_config_order_then_local(recorder: Recorder) -> None:
    local = MCPServer("inproc")
    local.add_tool(lambda: "ok", name="ping")
    servers: dict[str, ServerConfig] = {"b": demo_stdio(), "a": demo_stdio("--many", "1")}
    with anyio.fail_after(30):
        async with recorder.pool(servers, local={"c": local}) as pool:
            assert list(pool.listings()) == ["b", "a", "c"]
            assert [status.name for status in pool.statuses()] == ["b", "a", "c"]


async def test_stderr_goes_to_the_errlog_with_the_server_name(recorder: Recorder) -> None:
    with anyio.fail_after(30):
        async with recorder.pool({"demo": demo_stdio()}) as pool:
            with pytest.raises(DownstreamError):
                await pool.call_tool("demo", "crash", {})
            assert pool.stderr_tail("demo")[-1] == "demo server: crashing on request"
    assert "[demo] demo server: crashing on request\n" in recorder.errlog.getvalue()


async def test_server_stderr_goes_to_the_portals_stderr_never_its_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    with anyio.fail_after(30):
        async with DownstreamPool({"quits": demo_stdio("--exit-at-start")}):
            pass
    out, err = capfd.readouterr()
    assert out == ""
    assert "[quits] demo server: refusing to start (--exit-at-start)\n" in err


async def test_a_name_cannot_be_both_configured_and_local() -> None:
    with pytest.raises(ValueError, match="both configured and passed as `local`"):
        DownstreamPool({"x": demo_stdio()}, local={"x": MCPServer("x")})


async def test_concurrent_calls_share_one_connection_and_one_respawn(recorder: Recorder) -> None:
    with anyio.fail_after(30):
        async with recorder.pool({"demo": demo_stdio()}) as pool:
            results: list[str] = []

            async def echo(i: int) -> None:
                results.append(text(await pool.call_tool("demo", "echo", {"text": str(i)})))

            async with anyio.create_task_group() as task_group:
                for i in range(20):
                    task_group.start_soon(echo, i)
            assert sorted(results, key=int) == [str(i) for i in range(20)]

            with pytest.raises(DownstreamError):
                await pool.call_tool("demo", "crash", {})
            results.clear()
            async with anyio.create_task_group() as task_group:
                for i in range(5):
                    task_group.start_soon(echo, i)
            assert len(results) == 5
            assert status_of(pool, "demo").restarts == 1


def modern_only_server() -> MCPServer:
    """An in-process server that refuses the `initialize` handshake, like a 2026-only server would."""
    server = MCPServer("modern")

    async def refuse_initialize(ctx: Any, call_next: Any) -> Any:
        if ctx.method == "initialize":
            raise MCPError(UNSUPPORTED_PROTOCOL_VERSION, "initialize is gone", data={"supported": ["2026-07-28"]})
        return await call_next(ctx)

    server.middleware.append(refuse_initialize)

    @server.tool()
    async def grow(name: str, ctx: Context) -> str:
        """Register a tool called `name`."""
        server.add_tool(lambda: "grown", name=name)
        await ctx.notify_tools_changed()
        return "ok"

    return server


async def test_a_server_refusing_the_old_handshake_is_spoken_to_in_the_2026_protocol(recorder: Recorder) -> None:
    with anyio.fail_after(10):
        async with recorder.pool({}, local={"modern": modern_only_server()}) as pool:
            assert status_of(pool, "modern").state == "connected"
            assert text(await pool.call_tool("modern", "grow", {"name": "sprout"})) == "ok"
            # 2026 servers announce list changes on a subscriptions/listen stream, which the pool follows.
            assert await recorder.next_change() == ("modern", ["grow", "sprout"])


async def test_a_server_killed_while_idle_is_noticed_and_respawned_by_the_next_call(recorder: Recorder) -> None:
    with anyio.fail_after(30):
        async with recorder.pool({"demo": demo_stdio()}) as pool:
            await pool.call_tool("demo", "add_tool", {"name": "extra"})  # a wake-up before the death
            await recorder.next_change()
            pid = int(text(await pool.call_tool("demo", "pid", {})))
            os.kill(pid, signal.SIGKILL)
            while status_of(pool, "demo").state != "exited":
                await anyio.sleep(0.02)
            assert recorder.kinds("demo") == ["tools_changed", "exited"]
            assert int(text(await pool.call_tool("demo", "pid", {}))) != pid
            assert status_of(pool, "demo").restarts == 1


def strict_server() -> Server[Any]:
    """A low-level server whose `lies` breaks its own outputSchema and whose `refuses` answers a JSON-RPC error."""
    lies = Tool(
        name="lies",
        input_schema={"type": "object"},
        output_schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    )
    refuses = Tool(name="refuses", input_schema={"type": "object"})

    async def list_tools(ctx: Any, params: Any) -> ListToolsResult:
        return ListToolsResult(tools=[lies, refuses])

    async def call_tool(ctx: Any, params: CallToolRequestParams) -> CallToolResult:
        if params.name == "refuses":
            raise MCPError(INVALID_PARAMS, "no such thing")
        return CallToolResult(content=[], structured_content={"n": "not a number"})

    return Server("strict", on_list_tools=list_tools, on_call_tool=call_tool)


async def test_protocol_errors_and_invalid_results_become_downstream_errors(recorder: Recorder) -> None:
    with anyio.fail_after(10):
        async with recorder.pool({}, local={"strict": strict_server()}) as pool:
            with pytest.raises(DownstreamError, match=r"tool 'refuses' was rejected: no such thing \(JSON-RPC error"):
                await pool.call_tool("strict", "refuses", {})
            with pytest.raises(DownstreamError, match="tool 'lies' returned an invalid result"):
                await pool.call_tool("strict", "lies", {})
            assert status_of(pool, "strict").state == "connected"


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_missing_credentials_are_reported_as_the_http_status(recorder: Recorder, transport: str) -> None:
    async with demo_http(transport, "--require-header", "Authorization=Bearer sesame") as server:
        servers: dict[str, ServerConfig] = {
            "denied": server.config(headers={"Authorization": "Bearer wrong"}),
            "allowed": server.config(headers={"Authorization": "Bearer sesame"}),
        }
        with anyio.fail_after(30):
            async with recorder.pool(servers) as pool:
                denied, allowed = pool.statuses()
    assert allowed.state == "connected"
    assert denied.state == "failed"
    assert denied.error == f"{server.url} answered HTTP 401 Unauthorized; check the credentials in `headers:`"


async def test_errors_quote_no_stderr_and_the_operators_log_has_each_processs_own_lines(
    recorder: Recorder, tmp_path: Path
) -> None:
    server = demo_stdio("--once", str(tmp_path / "started"), max_restarts=1)
    with anyio.fail_after(30):
        async with recorder.pool({"flaky": server}) as pool:
            with pytest.raises(DownstreamError) as crashed:
                await pool.call_tool("flaky", "crash", {})
            with pytest.raises(ServerUnavailableError) as caught:
                await pool.call_tool("flaky", "echo", {"text": "x"})
    for message in (str(crashed.value), str(caught.value)):
        assert "crashing on request" not in message and "this is a respawn" not in message, message
        assert "its stderr is in the portal's log" in message
    log = recorder.errlog.getvalue()
    assert log.count("crashing on request") == 1 and log.count("this is a respawn; exiting") == 1, log


async def test_the_spawn_marker_in_a_servers_environment_does_not_read_as_a_credential(recorder: Recorder) -> None:
    with anyio.fail_after(30):
        async with recorder.pool({"demo": demo_stdio(env={"GREETING": "hi"})}) as pool:
            pid = int(text(await pool.call_tool("demo", "pid", {})))
            environ = (await anyio.Path(f"/proc/{pid}/environ").read_bytes()).split(b"\0")
    names = {entry.split(b"=", 1)[0].decode() for entry in environ if entry}
    portal_names = {name for name in names if name.startswith("PORTAL_MCP_") and name != "PORTAL_MCP_STATE_DIR"}
    assert portal_names == {"PORTAL_MCP_SPAWN_ID"}
