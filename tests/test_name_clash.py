"""A server named like a module the sandbox offers (the bundled `time`): `import time` gives the module, the
server stays reachable as `time_` (and as `time` where nothing imported the module), the portal warns at start,
and the `execute_code` description says so, with the module list taken from the sandbox's facades."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from mcp.client import Client

from portal_mcp.config import load_config
from portal_mcp.portal import Portal
from portal_mcp.sandbox.facades import FACADE_NAMES
from portal_mcp.surface.server import PortalServer
from tests.servers import crm_server

pytestmark = pytest.mark.anyio


@pytest.fixture
async def portal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Portal]:
    config = tmp_path / "portal.yaml"
    config.write_text("servers: {}\n")
    caplog.set_level(logging.WARNING)
    with anyio.fail_after(60):
        async with Portal.open(load_config(config, environ={}), local={"time": crm_server()}) as opened:
            yield opened


async def _run(portal: Portal, code: str) -> str:
    with anyio.fail_after(30):
        return (await portal.execute_code(textwrap.dedent(code).strip(), portal.local)).render()


async def test_the_portal_warns_at_start_about_a_server_named_like_a_module(
    portal: Portal, caplog: pytest.LogCaptureFixture
) -> None:
    started = caplog.get_records("setup")
    warnings = [record.getMessage() for record in started if getattr(record, "event", "") == "name_clash"]
    assert warnings == [
        "server 'time' is named like the module `time`: in execute_code `import time` gives the module, and the "
        "server stays reachable as `time_` (and as `time` where nothing imported the module)"
    ]


async def test_import_gives_the_module_and_the_alias_gives_the_server(portal: Portal) -> None:
    reply = await _run(
        portal,
        """
        import time
        start = time.monotonic()
        customer = await time_.find_customer(email="ada@example.com")
        print(customer["name"], time.monotonic() >= start)
        """,
    )
    assert reply == "Ada True"


async def test_without_an_import_the_server_keeps_its_own_name(portal: Portal) -> None:
    reply = await _run(portal, 'r = await time.find_customer(email="bo@example.com")\nr["tier"]')
    assert reply == "Value: 'gold'"


async def test_a_tool_call_on_the_module_says_to_use_the_alias(portal: Portal) -> None:
    reply = await _run(portal, 'import time\nawait time.find_customer(email="x@example.com")')
    assert "module 'time' in the sandbox has no attribute 'find_customer'" in reply
    assert "call it as `time_.find_customer(...)`" in reply


async def test_the_pre_run_check_knows_the_alias(portal: Portal) -> None:
    reply = await _run(portal, "await time_.find_custmer(email='x@example.com')")
    assert "find_customer" in reply and "time_" not in reply.split("find_customer")[0][-20:]


async def test_the_execute_code_description_names_the_alias_and_every_importable_module(portal: Portal) -> None:
    async with Client(PortalServer(portal).server) as client:
        listed = await client.list_tools()
    description = next(tool.description for tool in listed.tools if tool.name == "execute_code") or ""
    assert "server `time` is also `time_`" in description
    modules = description.split("Imports (curated subsets): ")[1].split(". ")[0].split(", ")
    assert modules == [name for name in FACADE_NAMES if name != "urllib"]
