"""End to end: an official MCP client talks to the portal, which talks to real downstream servers."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client import Client

from portal_mcp.config import PortalConfig, load_config
from portal_mcp.portal import Portal
from portal_mcp.surface.server import PortalServer
from tests.servers import crm_server, wait_until_exited

DEMO_SERVER = Path(__file__).parent / "servers" / "demo_server.py"


def config_for(tmp_path: Path, extra: str = "") -> PortalConfig:
    text = textwrap.dedent(
        f"""
        servers:
          demo:
            command: {sys.executable}
            args: [{DEMO_SERVER}]
            timeout: 20
          time:
            command: {sys.executable}
            args: [-m, mcp_server_time, --local-timezone, UTC]
        """
    ) + textwrap.indent(textwrap.dedent(extra), "  ")
    path = tmp_path / "portal.yaml"
    path.write_text(text)
    return load_config(path, environ={})


@pytest.fixture
async def portal(tmp_path: Path) -> AsyncIterator[Portal]:
    with anyio.fail_after(60):
        async with Portal.open(config_for(tmp_path), local={"crm": crm_server()}) as opened:
            yield opened


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content)


async def test_the_model_sees_exactly_two_tools(portal: Portal) -> None:
    async with Client(PortalServer(portal).server) as client:
        tools = await client.list_tools()
    assert [tool.name for tool in tools.tools] == ["search_api", "execute_code"]


async def test_search_finds_a_tool_and_shows_its_typed_stub(portal: Portal) -> None:
    async with Client(PortalServer(portal).server) as client:
        result = await client.call_tool("search_api", {"query": "current time in a timezone", "limit": 3})
    text = text_of(result)
    assert "time.get_current_time" in text
    assert "async def get_current_time(" in text
    assert "timezone: str" in text


async def test_code_calls_two_servers_and_combines_their_results(portal: Portal) -> None:
    code = """
import asyncio
customer, now = await asyncio.gather(
    crm.find_customer(email="ada@example.com"),
    time.get_current_time(timezone="Europe/London"),
)
echoed = await demo.echo(text=customer["name"])
print(f"{echoed} is {customer['tier']} at {now['timezone']}")
"""
    async with Client(PortalServer(portal).server) as client:
        with anyio.fail_after(60):
            result = await client.call_tool("execute_code", {"code": code})
    assert not result.is_error, text_of(result)
    assert "Ada is gold at Europe/London" in text_of(result)


async def test_fifty_concurrent_calls_to_a_slow_tool_finish_in_about_one_calls_time(portal: Portal) -> None:
    code = """
import asyncio
results = await asyncio.gather(*[demo.slow(seconds=0.5) for _ in range(50)])
len(results)
"""
    async with Client(PortalServer(portal).server) as client:
        started = anyio.current_time()
        with anyio.fail_after(60):
            result = await client.call_tool("execute_code", {"code": code})
        elapsed = anyio.current_time() - started
    assert not result.is_error, text_of(result)
    assert "50" in text_of(result)
    # 50 sequential calls would take 25 s; concurrency must bring it near one call (generous bound, shared CI).
    assert elapsed < 10, elapsed


async def test_an_invalid_argument_is_refused_before_the_call_and_names_the_field(portal: Portal) -> None:
    # A variable, not a literal: the pre-run check leaves the value to the bridge, which is what this tests.
    code = "b = 'two'\nawait demo.add(a=1, b=b)"
    async with Client(PortalServer(portal).server) as client:
        result = await client.call_tool("execute_code", {"code": code})
    assert result.is_error
    assert "'b'" in text_of(result) and "integer" in text_of(result)
    calls = [event for event in portal.audit if event.kind == "call"]  # type: ignore[attr-defined]
    assert calls and calls[-1].outcome == "refused"


async def test_a_tool_error_raises_in_agent_code_with_the_servers_message(portal: Portal) -> None:
    code = """
try:
    await demo.fail(message="disk on fire")
except ToolError as exc:
    print("caught:", exc)
"""
    async with Client(PortalServer(portal).server) as client:
        result = await client.call_tool("execute_code", {"code": code})
    assert "caught:" in text_of(result) and "disk on fire" in text_of(result)


async def test_a_dead_downstream_is_reported_and_the_rest_keeps_working(tmp_path: Path) -> None:
    config = config_for(tmp_path, "broken:\n  command: /nonexistent/mcp-server\n")
    with anyio.fail_after(60):
        async with Portal.open(config) as portal:
            states = {status.name: status.state for status in portal.statuses()}
            assert states["broken"] == "failed"
            assert states["demo"] == "connected"
            async with Client(PortalServer(portal).server) as client:
                overview = text_of(await client.call_tool("search_api", {"query": ""}))
                result = await client.call_tool("execute_code", {"code": "await demo.echo(text='still here')"})
    assert "broken" in overview
    assert "still here" in text_of(result)


async def test_a_killed_stdio_downstream_is_respawned_on_the_next_call(portal: Portal) -> None:
    async with Client(PortalServer(portal).server) as client:
        first = text_of(await client.call_tool("execute_code", {"code": "print(await demo.pid())"}))
        os.kill(int(first.strip()), signal.SIGKILL)
        with anyio.fail_after(30):
            # Only a call made after the pool saw the exit respawns; one racing the kill fails as "may have run".
            await wait_until_exited(portal, "demo")
            second = await client.call_tool("execute_code", {"code": "print(await demo.pid())"})
    assert not second.is_error, text_of(second)
    assert text_of(second).strip() != first.strip()


async def test_list_changed_updates_search_results(portal: Portal) -> None:
    async with Client(PortalServer(portal).server) as client:
        before = text_of(await client.call_tool("search_api", {"query": "quasar telescope calibration"}))
        await client.call_tool("execute_code", {"code": "await demo.add_tool(name='calibrate_quasar_telescope')"})
        with anyio.fail_after(10):
            while "demo.calibrate_quasar_telescope" not in portal.catalog:
                await anyio.sleep(0.05)
        after = text_of(await client.call_tool("search_api", {"query": "quasar telescope calibration"}))
    assert "calibrate_quasar_telescope" not in before
    assert "demo.calibrate_quasar_telescope" in after


async def test_wrong_tool_calls_are_refused_before_any_downstream_call(portal: Portal) -> None:
    code = """
total = await demo.add(a=1, b="two")
await demo.ecko(text="hi")
demo.echo(text="not awaited")
"""
    async with Client(PortalServer(portal).server) as client:
        result = await client.call_tool("execute_code", {"code": code})
    text = text_of(result)
    assert result.is_error
    assert "was not run" in text
    assert "line 2" in text and "argument 'b'" in text
    assert "line 3" in text and "did you mean demo.echo" in text
    assert "line 4" in text and "await demo.echo" in text
    assert [event for event in portal.audit if event.kind == "call"] == []  # type: ignore[attr-defined]
    runs = [event for event in portal.audit if event.kind == "run"]  # type: ignore[attr-defined]
    assert runs[-1].outcome == "refused"
