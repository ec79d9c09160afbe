"""Resources, resource templates, prompts and completion of downstream servers through a real portal (issue 14,
points 1-3): server-everything over stdio and streamable HTTP, clients of both protocol generations."""

from __future__ import annotations

import base64
import gzip
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import types
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.everything import Generation, Transport, connect, everything_portal

STATIC = "portal://everything/demo://resource/static/document/architecture.md"
BLOB = "portal://everything/demo://resource/dynamic/blob/1"
TEXT_TEMPLATE = "portal://everything/demo://resource/dynamic/text/{resourceId}"


def _text(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def _run(client: Client, code: str) -> str:
    result = await client.call_tool("execute_code", {"code": textwrap.dedent(code)})
    assert not result.is_error, _text(result)
    return _text(result)


async def test_clients_list_and_read_the_portals_own_and_every_servers_resources_and_templates(
    everything_transport: Transport, generation: Generation, tmp_path: Path
) -> None:
    with anyio.fail_after(90):
        async with everything_portal(tmp_path, everything_transport) as url, connect(url, generation) as client:
            assert client.server_capabilities.resources is not None
            listed = [resource.uri for resource in (await client.list_resources()).resources]
            templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
            static = (await client.read_resource(STATIC)).contents[0]
            blob = (await client.read_resource(BLOB)).contents[0]
            filled = (await client.read_resource(TEXT_TEMPLATE.replace("{resourceId}", "7"))).contents[0]
            overview = (await client.read_resource("portal:overview")).contents[0]
            agents_md = (await client.read_resource("portal:agents-md")).contents[0]
            stubs = (await client.read_resource("portal:stubs/everything")).contents[0]
            with pytest.raises(MCPError, match="not a portal resource"):
                await client.read_resource("demo://resource/static/document/architecture.md")

    assert listed[:3] == ["portal:overview", "portal:agents-md", "portal:stubs/everything"]
    assert STATIC in listed
    assert templates == ["portal:stubs/{server}", TEXT_TEMPLATE, TEXT_TEMPLATE.replace("text", "blob")]
    assert isinstance(static, types.TextResourceContents) and static.uri == STATIC
    assert static.mime_type == "text/markdown" and "Architecture" in static.text
    assert isinstance(blob, types.BlobResourceContents) and blob.uri == BLOB and blob.blob
    assert isinstance(filled, types.TextResourceContents) and filled.text.startswith("Resource 7:")
    assert isinstance(overview, types.TextResourceContents) and "everything" in overview.text
    assert isinstance(agents_md, types.TextResourceContents) and "## Tools through portal-mcp" in agents_md.text
    assert isinstance(stubs, types.TextResourceContents) and stubs.mime_type == "text/x-python"
    assert "def echo(" in stubs.text


async def test_agent_code_lists_and_reads_resources_binary_as_bytes_and_follows_resource_links(
    everything_transport: Transport, generation: Generation, tmp_path: Path
) -> None:
    code = """
        resources = await everything.resources()
        print(len(resources) >= 7, sorted(resources[0]))
        print([t["uri_template"] for t in await everything.resource_templates()])
        blob = (await everything.read_resource("demo://resource/dynamic/blob/2"))[0]
        print(type(blob["data"]).__name__, blob["mime_type"], blob["data"][:11])
        linked = await everything.get_resource_links(count=2)
        links = [item for item in linked if isinstance(item, dict) and item.get("type") == "resource_link"]
        text = (await everything.read_resource(links[1]["uri"]))[0]
        print(links[1]["uri"], "->", text["text"][:11])
        embedded = await everything.gzip_file_as_resource(
            name="e.gz", data="data:text/plain;base64,aGVsbG8=", outputType="resource")
        gz = [block["resource"] for block in embedded if block.get("type") == "resource"][0]
        print(gz["mimeType"], type(gz["data"]).__name__, gz["data"][:2], "blob" in gz)
    """
    with anyio.fail_after(90):
        async with everything_portal(tmp_path, everything_transport) as url, connect(url, generation) as client:
            out = await _run(client, code)
    lines = out.splitlines()
    assert lines[0] == "True ['description', 'mime_type', 'name', 'uri']", out
    assert "'demo://resource/dynamic/text/{resourceId}'" in lines[1]
    assert lines[2] == "bytes text/plain b'Resource 2:'", out
    assert lines[3] == "demo://resource/dynamic/text/2 -> Resource 2:", out
    assert lines[4] == "application/gzip bytes b'\\x1f\\x8b' False", out  # an embedded resource in a tool result


async def test_prompts_are_listed_namespaced_got_with_arguments_and_their_arguments_completed(
    everything_transport: Transport, generation: Generation, tmp_path: Path
) -> None:
    with anyio.fail_after(90):
        async with everything_portal(tmp_path, everything_transport) as url, connect(url, generation) as client:
            assert client.server_capabilities.prompts is not None
            assert client.server_capabilities.completions is not None
            prompts = {prompt.name: prompt for prompt in (await client.list_prompts()).prompts}
            got = await client.get_prompt("everything.args-prompt", {"city": "Lyon", "state": "Rhône"})
            department = await client.complete(
                types.PromptReference(name="everything.completable-prompt"), {"name": "department", "value": "Mar"}
            )
            leader = await client.complete(
                types.PromptReference(name="everything.completable-prompt"),
                {"name": "name", "value": "E"},
                context_arguments={"department": "Sales"},  # the context goes downstream too
            )
            resource_id = await client.complete(
                types.ResourceTemplateReference(uri=TEXT_TEMPLATE), {"name": "resourceId", "value": "12"}
            )
            server = await client.complete(
                types.ResourceTemplateReference(uri="portal:stubs/{server}"), {"name": "server", "value": "ev"}
            )
            with pytest.raises(MCPError):
                await client.get_prompt("nowhere.args-prompt", {})

    assert {"everything.simple-prompt", "everything.args-prompt", "everything.completable-prompt"} <= set(prompts)
    assert [argument.name for argument in prompts["everything.args-prompt"].arguments or []] == ["city", "state"]
    content = got.messages[0].content
    assert isinstance(content, types.TextContent) and content.text == "What's weather in Lyon, Rhône?"
    assert department.completion.values == ["Marketing"]
    assert leader.completion.values == ["Eve"]
    assert resource_id.completion.values == ["12"]
    assert server.completion.values == ["everything"]


async def test_search_api_finds_a_resource_as_a_result_of_its_own_kind(
    everything_transport: Transport, tmp_path: Path
) -> None:
    with anyio.fail_after(90):
        async with everything_portal(tmp_path, everything_transport) as url, connect(url, "modern") as client:
            found = _text(await client.call_tool("search_api", {"query": "architecture document"}))
    resources = found.split("Resources (read in execute_code with `await server.read_resource(uri)`", 1)
    assert len(resources) == 2, found
    assert "- everything: 'demo://resource/static/document/architecture.md'" in resources[1]


@asynccontextmanager
async def _as(url: str, token: str, generation: Generation) -> AsyncIterator[Client]:
    mode: Any = "legacy" if generation == "legacy" else "auto"
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30)) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


async def test_the_policy_hides_a_servers_resources_and_prompts_and_reads_are_audited(
    everything_transport: Transport, generation: Generation, tmp_path: Path
) -> None:
    extra = textwrap.dedent(
        """
        http: {users: {alice: {token: alice-token-123}, bob: {token: bob-token-4567}}}
        policy: {users: {bob: {deny: [everything]}}}
        audit: {sqlite: audit.db}
        """
    )
    read = "print((await everything.read_resource('demo://resource/dynamic/text/3'))[0]['text'][:10])"
    with anyio.fail_after(90):
        async with everything_portal(tmp_path, everything_transport, extra=extra) as url:
            async with _as(url, "alice-token-123", generation) as alice:
                alice_resources = [r.uri for r in (await alice.list_resources()).resources]
                await alice.read_resource(STATIC)
                alice_code = await _run(alice, read)
            async with _as(url, "bob-token-4567", generation) as bob:
                bob_resources = [r.uri for r in (await bob.list_resources()).resources]
                bob_templates = [t.uri_template for t in (await bob.list_resource_templates()).resource_templates]
                bob_prompts = (await bob.list_prompts()).prompts
                with pytest.raises(
                    MCPError, match="not allowed: the policy denies every tool of `everything` to 'bob'"
                ):
                    await bob.read_resource(STATIC)
                bob_search = _text(await bob.call_tool("search_api", {"query": "architecture document"}))
    assert STATIC in alice_resources and alice_code.strip() == "Resource 3"
    assert not any(uri.startswith("portal://everything/") for uri in bob_resources)
    assert "portal:stubs/everything" not in bob_resources and bob_templates == ["portal:stubs/{server}"]
    assert bob_prompts == [] and "demo://" not in bob_search
    with sqlite3.connect(tmp_path / "audit.db") as db:
        rows = db.execute("SELECT user, outcome, subject, detail FROM events WHERE kind = 'call'").fetchall()
    assert ("alice", "ok", "everything.read_resource", "") in rows
    assert rows.count(("alice", "ok", "everything.read_resource", "")) == 2  # the client's read and the code's
    assert ("bob", "refused", "everything.read_resource", "PolicyDeniedError") in rows
    assert not any("demo://" in str(row) for row in rows)  # URIs are values: never in the audit


async def test_a_resource_list_change_reaches_the_catalog_and_handshake_era_sessions(
    everything_transport: Transport, generation: Generation, tmp_path: Path
) -> None:
    """gzip-file-as-resource registers a session resource: server-everything announces resources/list_changed."""
    heard = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceListChangedNotification):
            heard.set()

    code = """
        print(await everything.gzip_file_as_resource(
            name="notes.gz", data="data:text/plain;base64,aGVsbG8gcG9ydGFs", outputType="resourceLink"))
    """
    uri = "portal://everything/demo://resource/session/notes.gz"
    with anyio.fail_after(90):
        async with (
            everything_portal(tmp_path, everything_transport) as url,
            connect(url, generation, message_handler=on_message) as client,
        ):
            assert uri not in [r.uri for r in (await client.list_resources()).resources]
            await _run(client, code)
            if generation == "legacy":
                await heard.wait()  # a session that outlives its requests is told
            while uri not in [r.uri for r in (await client.list_resources()).resources]:
                await anyio.sleep(0.05)
            gz = (await client.read_resource(uri)).contents[0]
    assert isinstance(gz, types.BlobResourceContents)
    assert gzip.decompress(base64.b64decode(gz.blob)) == b"hello portal"


async def test_a_server_that_never_announces_changes_is_relisted_on_its_interval(tmp_path: Path) -> None:
    """demo_server.py --silent-changes adds tools without tools/list_changed; `relist_every` finds them."""
    from portal_mcp.config import load_config
    from portal_mcp.portal import Portal
    from tests.servers import DEMO_SERVER

    config = tmp_path / "portal.yaml"
    config.write_text(
        f"servers:\n  demo: {{command: {sys.executable!r}, args: [{str(DEMO_SERVER)!r}, --silent-changes], "
        "relist_every: 0.1}\n",
        encoding="utf-8",
    )
    with anyio.fail_after(60):
        async with Portal.open(load_config(config)) as portal:
            before, index = portal.catalog, portal.index()

            async def lists() -> int:
                stats = (await portal.pool.call_tool("demo", "stats", {})).structured_content
                assert stats is not None
                return int(stats["lists"])

            while await lists() < 4:  # the start's listing and three re-listings
                await anyio.sleep(0.05)
            assert portal.catalog is before and portal.index() is index  # re-listed, nothing changed: nothing rebuilt
            await portal.pool.call_tool("demo", "add_tool", {"name": "fresh_tool"})
            while portal.catalog.get("demo.fresh_tool") is None:
                await anyio.sleep(0.05)
            found = portal.search_api("fresh_tool", portal.local)
    assert "demo.fresh_tool" in found and portal.index() is not index


async def test_relist_every_off_turns_the_interval_off(tmp_path: Path) -> None:
    """Under a portal default of 0.1 s, a server with `relist_every: off` is listed once, while its neighbour on the
    default is listed again and again (the neighbour is the clock)."""
    from portal_mcp.config import load_config
    from portal_mcp.portal import Portal
    from tests.servers import DEMO_SERVER

    config = tmp_path / "portal.yaml"
    demo = f"command: {sys.executable!r}, args: [{str(DEMO_SERVER)!r}, --silent-changes]"
    config.write_text(
        f"relist_every: 0.1\nservers:\n  quiet: {{{demo}, relist_every: off}}\n  ticking: {{{demo}}}\n",
        encoding="utf-8",
    )
    loaded = load_config(config)
    assert loaded.servers["quiet"].relist_every == 0.0 and loaded.servers["ticking"].relist_every is None
    with anyio.fail_after(60):
        async with Portal.open(loaded) as portal:

            async def lists(server: str) -> int:
                stats = (await portal.pool.call_tool(server, "stats", {})).structured_content
                assert stats is not None
                return int(stats["lists"])

            while await lists("ticking") < 6:  # the start's listing and five re-listings at the default interval
                await anyio.sleep(0.05)
            assert await lists("quiet") == 1
