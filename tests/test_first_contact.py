"""First contact: the portal answers at once whatever its servers do, searches their last known tools while they
start or are down, and brings a server back by itself when it comes up."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import anyio
import mcp_types as types
from mcp.client import Client

from portal_mcp.config import load_config
from portal_mcp.portal import Portal
from portal_mcp.surface.server import PortalServer
from tests.servers import DEMO_SERVER, demo_http, free_port


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


def state_of(portal: Portal, server: str) -> str:
    return next(status.state for status in portal.statuses() if status.name == server)


def slow_config(tmp_path: Path, delay: float) -> Path:
    config = tmp_path / "portal.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            servers:
              slow:
                command: {sys.executable}
                args: [{DEMO_SERVER}]
                env: {{DEMO_START_DELAY: "{delay}"}}
                connect_timeout: 90
            """
        )
    )
    return config


async def test_a_server_that_takes_30_s_to_start_does_not_hold_up_initialize_search_or_its_first_call(
    tmp_path: Path,
) -> None:
    config = slow_config(tmp_path, 0)
    with anyio.fail_after(60):
        # An earlier run listed the server's tools: they are kept in the state folder.
        async with Portal.open(load_config(config, environ={})) as first:
            assert "slow.echo" in first.catalog
    config = slow_config(tmp_path, 30)  # the same command: only its start-up got slow (env is not part of the key)
    with anyio.fail_after(120):
        async with Portal.open(load_config(config, environ={}), background=True) as portal:
            server = PortalServer(portal)
            async with Client(server.server) as client:  # initialize
                listed = await client.list_tools()
                assert [tool.name for tool in listed.tools] == ["search_api", "execute_code"]
                found = text_of(await client.call_tool("search_api", {"query": "echo text back"}))
                assert state_of(portal, "slow") == "connecting"  # none of the above waited for it
                assert "slow.echo" in found
                assert "Not connected now: slow is still connecting" in found
                assert "the stubs below are its last known tools" in found
                overview = text_of(await client.call_tool("search_api", {"query": ""}))
                assert re.search(r"Still connecting: slow \(\d+ s\)", overview)

                # The call waits for the server's first start (up to its connect_timeout), then runs.
                ran = await client.call_tool("execute_code", {"code": "print(await slow.echo(text='at last'))"})
                assert not ran.is_error, text_of(ran)
                assert "at last" in text_of(ran)
                assert state_of(portal, "slow") == "connected"


async def test_a_server_down_at_start_is_retried_and_its_tools_appear_without_a_restart(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "portal.yaml"
    config.write_text(f"servers:\n  remote: {{url: 'http://127.0.0.1:{port}/mcp', connect_timeout: 5}}\n")
    with anyio.fail_after(90):
        async with Portal.open(load_config(config, environ={}), background=True) as portal:
            while state_of(portal, "remote") != "failed":
                await anyio.sleep(0.05)
            assert "remote" not in portal.catalog.servers()
            run = await portal.execute_code("print(await remote.echo(text='hi'))", portal.local)
            assert not run.ok and run.error is not None
            assert "NameError" not in run.error
            assert re.search(
                r"server 'remote' is down since \d\d:\d\d:\d\d \(it failed to start: cannot reach "
                r"http://127\.0\.0\.1:\d+/mcp .*\); retrying in \d+ s",
                run.error,
            ), run.error

            async with demo_http("http", port=port):
                while "remote.echo" not in portal.catalog:  # retried in the background, no call needed
                    await anyio.sleep(0.1)
                assert "remote.echo" in portal.search_api("echo text", portal.local)
                run = await portal.execute_code("print(await remote.echo(text='back'))", portal.local)
                assert run.ok, run.error
                assert "back" in run.output


async def test_a_server_that_went_down_keeps_its_tools_searchable_and_a_call_says_when_it_is_retried(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = tmp_path / "portal.yaml"
    config.write_text(f"servers:\n  remote: {{url: 'http://127.0.0.1:{port}/mcp', connect_timeout: 5}}\n")
    with anyio.fail_after(90):
        async with demo_http("http", port=port), Portal.open(load_config(config, environ={})):
            pass  # lists the tools once: the state folder keeps them
        # The server is gone now; a new portal still knows its tools.
        async with Portal.open(load_config(config, environ={})) as portal:
            assert state_of(portal, "remote") == "failed"
            found = portal.search_api("echo text", portal.local)
            assert "remote.echo" in found and "remote is down (retrying in" in found
            run = await portal.execute_code("print(await remote.echo(text='hi'))", portal.local)
            assert run.error is not None
            assert re.search(
                r"server 'remote' is down since [\d:]+ \(it failed to start: cannot reach .*; retrying in \d+ s",
                run.error,
            )
