"""The MCP surface: two small tools, clear errors for bad calls, and downstream trouble sent as log messages."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.client import Client

from portal_mcp.catalog.tokens import token_counter
from portal_mcp.config import bundled_schemas_dir, load_config
from portal_mcp.portal import Portal
from portal_mcp.surface.server import PortalServer
from portal_mcp.tools import TOOLS
from tests.servers import wait_until_exited

DEMO_SERVER = Path(__file__).parent / "servers" / "demo_server.py"


@pytest.fixture
async def portal(tmp_path: Path) -> AsyncIterator[Portal]:
    config = tmp_path / "portal.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            servers:
              demo: {{command: {sys.executable}, args: [{DEMO_SERVER}]}}
              fs: {{snapshot: {bundled_schemas_dir() / "filesystem.json"}}}
            """
        )
    )
    with anyio.fail_after(60):
        async with Portal.open(load_config(config, environ={})) as opened:
            yield opened


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


def test_the_whole_tools_list_costs_at_most_400_tokens() -> None:
    listing = types.ListToolsResult(tools=TOOLS).model_dump(by_alias=True, exclude_none=True, mode="json")
    tokens = token_counter()(json.dumps(listing, separators=(",", ":")))
    assert tokens <= 400, tokens


def test_the_tool_descriptions_teach_the_workflow() -> None:
    search, execute = TOOLS
    assert search.description is not None and "execute_code" in search.description
    assert execute.description is not None and "await" in execute.description and "search_api" in execute.description


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"query": 3}, "`query` must be a string"),
        ({"query": "x", "limit": 0}, "`limit` must be an integer from 1 to 20"),
        ({"query": "x", "detail": "everything"}, "`detail` must be"),
        ({"query": "x", "server": "nope"}, "Unknown server 'nope'"),
    ],
)
async def test_bad_search_arguments_get_a_message_that_says_what_to_send(
    portal: Portal, arguments: dict[str, Any], message: str
) -> None:
    async with Client(PortalServer(portal).server) as client:
        result = await client.call_tool("search_api", arguments)
    assert message in text_of(result)


async def test_an_empty_query_gives_an_overview_of_servers(portal: Portal) -> None:
    async with Client(PortalServer(portal).server) as client:
        result = await client.call_tool("search_api", {"query": ""})
    assert "- demo (" in text_of(result)
    assert "- fs (14 tools)" in text_of(result)


async def test_a_syntax_error_in_agent_code_names_the_line(portal: Portal) -> None:
    async with Client(PortalServer(portal).server) as client:
        result = await client.call_tool("execute_code", {"code": "x = 1\nif x\n    print(x)"})
    assert result.is_error
    assert "line 2" in text_of(result)
    assert "Traceback" not in text_of(result)


async def test_calling_a_snapshot_tool_says_it_is_a_snapshot(portal: Portal) -> None:
    async with Client(PortalServer(portal).server) as client:
        result = await client.call_tool("execute_code", {"code": "await fs.list_allowed_directories()"})
    assert result.is_error
    assert "snapshot" in text_of(result)


async def test_an_unknown_tool_in_agent_code_suggests_near_names(portal: Portal) -> None:
    async with Client(PortalServer(portal).server) as client:
        result = await client.call_tool("execute_code", {"code": "await demo.ecko(text='x')"})
    assert result.is_error
    assert "echo" in text_of(result)


async def restart_demo_while_listening(
    portal: Portal, level: types.LoggingLevel
) -> tuple[types.CallToolResult, list[types.LoggingMessageNotificationParams]]:
    """Kill the demo server under a client logging at `level`, call it again; the call and the log messages."""
    received: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        received.append(params)

    async with Client(PortalServer(portal).server, mode="legacy", logging_callback=on_log) as client:
        await client.set_logging_level(level)
        pid = text_of(await client.call_tool("execute_code", {"code": "print(await demo.pid())"}))
        os.kill(int(pid), signal.SIGKILL)
        with anyio.fail_after(30):
            await wait_until_exited(portal, "demo")
            result = await client.call_tool("execute_code", {"code": "print(await demo.pid())"})
            while level == "info" and not any(message.data.get("server") == "demo" for message in received):
                await anyio.sleep(0.05)
    return result, received


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_a_downstream_restart_reaches_the_client_as_a_log_message(portal: Portal) -> None:
    result, received = await restart_demo_while_listening(portal, "info")
    assert not result.is_error, text_of(result)
    levels = {message.level for message in received if message.data.get("server") == "demo"}
    assert levels & {"warning", "info"}
    assert all(message.logger == "portal-mcp" for message in received)


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_set_level_error_silences_warnings(portal: Portal) -> None:
    result, received = await restart_demo_while_listening(portal, "error")
    assert not result.is_error, text_of(result)
    assert [message for message in received if message.level in ("info", "warning")] == []


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_a_client_hears_about_servers_that_failed_before_it_connected(tmp_path: Path) -> None:
    config = tmp_path / "portal.yaml"
    config.write_text("servers:\n  broken: {command: /nonexistent/mcp-server}\n")
    received: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        received.append(params)

    with anyio.fail_after(30):
        async with (
            Portal.open(load_config(config, environ={})) as portal,
            Client(PortalServer(portal).server, mode="legacy", logging_callback=on_log) as client,
        ):
            await client.list_tools()
            while not received:
                await anyio.sleep(0.02)
    assert received[0].level == "error"
    assert received[0].data["server"] == "broken"
    assert "/nonexistent/mcp-server" in received[0].data["message"]
