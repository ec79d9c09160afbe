"""`portal-mcp serve --transport http` as a real subprocess: the tools, the bind guard, bearer tokens, DNS rebinding."""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp.client import Client

from tests.portals import STARTUP_TIMEOUT, PortalExited, authorised_client, portal_command, running_portal
from tests.servers import free_port

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "test_http", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def write_config(folder: Path, extra: str = "") -> Path:
    """A portal.yaml with one live downstream server (mcp-server-time) plus `extra` top-level YAML."""
    path = folder / "portal.yaml"
    path.write_text(
        f"servers:\n  time:\n    command: {sys.executable!r}\n    args: [-m, mcp_server_time]\n{extra}",
        encoding="utf-8",
    )
    return path


async def post_initialize(url: str, headers: Mapping[str, str]) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(10)) as http:
        return await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, **headers})


def _text(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def test_a_client_over_http_sees_exactly_search_api_and_execute_code_and_can_search(tmp_path: Path) -> None:
    async with running_portal(write_config(tmp_path)) as url:
        with anyio.fail_after(30):
            async with Client(url) as client:
                tools = await client.list_tools()
                found = await client.call_tool("search_api", {"query": "current time in a timezone"})

    assert sorted(tool.name for tool in tools.tools) == ["execute_code", "search_api"]
    assert not found.is_error, _text(found)
    assert "time.get_current_time" in _text(found)


async def test_serving_beyond_loopback_without_bearer_tokens_exits_2_and_says_why(tmp_path: Path) -> None:
    config = write_config(tmp_path)

    with anyio.fail_after(STARTUP_TIMEOUT):
        result = await anyio.run_process(portal_command(config, "0.0.0.0", free_port()), check=False)

    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 2, stderr
    # rich wraps the message to the terminal width; compare it as one line.
    message = re.sub(r"\s+", " ", stderr)
    assert "'0.0.0.0'" in message
    assert "bearer_tokens" in message
    assert "Traceback" not in stderr


async def test_an_empty_bearer_token_does_not_count_as_authentication_beyond_loopback(tmp_path: Path) -> None:
    # An unset variable with an empty default is the easy way to get here: `${PORTAL_TOKEN:-}`.
    config = write_config(tmp_path, "http:\n  bearer_tokens: ['${PORTAL_TOKEN:-}']\n")

    with pytest.raises(PortalExited) as exited:
        async with running_portal(config, host="0.0.0.0", env={"PORTAL_TOKEN": ""}):
            pass

    assert exited.value.returncode == 2, exited.value.output
    assert "bearer_tokens" in re.sub(r"\s+", " ", exited.value.output)
    assert "Traceback" not in exited.value.output


async def test_with_bearer_tokens_requests_without_the_right_token_get_401(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(16)
    config = write_config(tmp_path, "http:\n  bearer_tokens: ['${PORTAL_TOKEN}']\n")
    wrong = {
        "no Authorization header": {},
        "a wrong token": {"Authorization": f"Bearer {token}x"},
        "a prefix of the token": {"Authorization": f"Bearer {token[:-1]}"},
        "the token without the Bearer scheme": {"Authorization": token},
        "the token as Basic credentials": {"Authorization": f"Basic {token}"},
        "the Bearer scheme without a token": {"Authorization": "Bearer"},
    }

    async with running_portal(config, host="0.0.0.0", env={"PORTAL_TOKEN": token}) as url:
        with anyio.fail_after(30):
            statuses = {case: (await post_initialize(url, headers)).status_code for case, headers in wrong.items()}
            accepted = await post_initialize(url, {"Authorization": f"Bearer {token}"})

    assert statuses == dict.fromkeys(wrong, 401)
    assert accepted.status_code == 200, accepted.text


async def test_with_bearer_tokens_a_client_sending_the_token_can_list_and_call_tools(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(16)
    config = write_config(tmp_path, "http:\n  bearer_tokens: ['${PORTAL_TOKEN}']\n")

    async with running_portal(config, host="0.0.0.0", env={"PORTAL_TOKEN": token}) as url:
        with anyio.fail_after(30):
            async with authorised_client(url, token) as client:
                tools = await client.list_tools()
                found = await client.call_tool("search_api", {"query": "current time in a timezone"})

    assert sorted(tool.name for tool in tools.tools) == ["execute_code", "search_api"]
    assert "time.get_current_time" in _text(found)


async def test_a_request_from_a_foreign_origin_is_rejected_with_403(tmp_path: Path) -> None:
    async with running_portal(write_config(tmp_path)) as url:
        with anyio.fail_after(30):
            foreign = await post_initialize(url, {"Origin": "http://evil.example"})
            local = await post_initialize(url, {"Origin": url.removesuffix("/mcp")})

    assert foreign.status_code == 403, foreign.text
    assert local.status_code == 200, local.text


async def test_a_request_with_a_foreign_host_header_is_rejected_with_421(tmp_path: Path) -> None:
    async with running_portal(write_config(tmp_path)) as url:
        with anyio.fail_after(30):
            foreign = await post_initialize(url, {"Host": "evil.example"})
            rebound = await post_initialize(url, {"Host": "evil.example:80", "Origin": "http://evil.example"})

    assert foreign.status_code == 421, foreign.text
    assert rebound.status_code == 421, rebound.text


async def test_each_callers_searches_runs_and_calls_are_attributed_to_their_user(tmp_path: Path) -> None:
    from portal_mcp.control.audit_store import SqliteAuditSink

    alice, bob = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    config = write_config(
        tmp_path,
        "audit: {sqlite: audit.sqlite}\n"
        "http:\n  users:\n    alice: {token: '${ALICE_TOKEN}', groups: [eng]}\n    bob: {token: '${BOB_TOKEN}'}\n",
    )
    code = "print((await time.get_current_time(timezone='UTC'))['timezone'])"
    async with running_portal(config, env={"ALICE_TOKEN": alice, "BOB_TOKEN": bob}) as url:
        with anyio.fail_after(60):
            async with authorised_client(url, alice) as client:
                await client.call_tool("search_api", {"query": "current time"})
                ran = await client.call_tool("execute_code", {"code": code})
            async with authorised_client(url, bob) as client:
                await client.call_tool("search_api", {"query": "convert a time"})

    assert "UTC" in _text(ran), _text(ran)
    with SqliteAuditSink(tmp_path / "audit.sqlite") as store:
        events = store.recent(limit=50)
    who = {(event.kind, event.user) for event in events}
    assert {("search", "alice"), ("run", "alice"), ("call", "alice"), ("search", "bob")} <= who
    assert not any(event.user not in ("alice", "bob") for event in events)


async def test_two_callers_sharing_a_token_is_refused_at_start(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http:\n  users:\n    a: {token: same}\n    b: {token: same}\n")
    with pytest.raises(PortalExited) as exited:
        async with running_portal(config):
            pass
    assert exited.value.returncode == 2, exited.value.output
    assert "user 'a' and user 'b' have the same token; give each caller its own" in exited.value.output
    assert "portal.yaml:" in exited.value.output  # with the line


async def test_sigterm_shuts_the_portal_down_in_order_and_exits_zero(tmp_path: Path) -> None:
    """uvicorn re-raises the signal after its own graceful stop: it must not kill the portal before the portal closes
    its audit store (a PostgreSQL queue would be lost), downstream servers and sandbox."""
    import signal as signals

    from tests.portals import started, wait_until_listening

    config = write_config(tmp_path)
    port = free_port()
    log_path = tmp_path / "portal.log"
    async with started(portal_command(config, "127.0.0.1", port), log_path) as process:
        with anyio.fail_after(STARTUP_TIMEOUT):
            await wait_until_listening(process, port, log_path)
        process.send_signal(signals.SIGTERM)
        with anyio.fail_after(30):
            returncode = await process.wait()
    log = log_path.read_text()
    assert returncode == 0, log
    assert "known tools on http://127.0.0.1:" in log and "while servers connect" in log
    assert "received SIGTERM" in log and "stopping: closing the audit store" in log
    assert "Traceback" not in log
