"""Test parts for the portal as each user's OAuth client: a real OAuth-protected MCP server behind the real
authorization server of tests/oidc.py, a portal config that uses it, and connecting a user's account.

```
async with protected_server(tmp_path) as (idp, url, record):     # oidc-provider + tests/servers/oauth_server.py
    config = write_config(tmp_path, url)                        # alice, bob; `protected` with `oauth:`
    await connect(idp, config, "alice")                         # `portal-mcp login` done as alice's browser would
    calls(record)                                               # who each call to the server really was
```
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2

from portal_mcp.config import PortalConfig, RemoteServerConfig, load_config
from portal_mcp.control.audit_store.connections import ConnectionStore, connections_beside
from portal_mcp.control.audit_store.opening import open_audit_sink
from portal_mcp.downstream._login import login
from tests.oidc import OidcProvider
from tests.portals import wait_until_listening
from tests.servers import SERVERS, free_port

OAUTH_SERVER = SERVERS / "oauth_server.py"
KEY = "connections-key-" + "k" * 32


@asynccontextmanager
async def protected_server(
    folder: Path, *, ttl: int = 300, log: Path | None = None, forbid: str | None = None
) -> AsyncIterator[tuple[OidcProvider, str, Path]]:
    """The authorization server and, on a free loopback port, the protected MCP server whose tokens it issues
    (opaque, checked by introspection; access tokens live `ttl` seconds; the user `forbid` is answered 403). Yields
    (provider, MCP URL, call record)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    record = folder / "calls.jsonl"
    resources = {url: {"scope": "mcp:tools", "format": "opaque", "ttl": ttl}}
    with OidcProvider.started(resources=resources, scopes=["mcp:tools"], ttl={"AccessToken": ttl}, log=log) as idp:
        process = await anyio.open_process(
            [
                *(sys.executable, str(OAUTH_SERVER), "--port", str(port), "--issuer", idp.issuer),
                *("--record", str(record), *(("--forbid", forbid) if forbid else ())),
            ],
            stdin=subprocess.DEVNULL,
            stdout=None,
            stderr=None,
        )
        try:
            with anyio.fail_after(20):
                await wait_until_listening(process, port)
            yield idp, url, record
        finally:
            with anyio.CancelScope(shield=True):
                process.kill()
                await process.wait()
                await process.aclose()


def write_config(
    folder: Path,
    url: str,
    *,
    redirect_uri: str | None = None,
    audit: str = "audit: {sqlite: audit.sqlite}",
    connections: str = "",
) -> Path:
    """portal.yaml + secrets.yaml: users alice (the stdio user) and bob with HTTP tokens, the server `protected`
    with `oauth:`, and the connections key in the secrets file (`connections`: more keys of `connections:`, such as
    `sqlite: FILE` with no audit database)."""
    tokens = {"ALICE_TOKEN": "alice-" + secrets.token_hex(16), "BOB_TOKEN": "bob-" + secrets.token_hex(16)}
    (folder / "secrets.yaml").write_text(
        "".join(f"{name}: {value}\n" for name, value in {**tokens, "CONNECTIONS_KEY": KEY}.items())
    )
    (folder / "secrets.yaml").chmod(0o600)
    oauth = f"{{redirect_uri: {redirect_uri}}}" if redirect_uri else "{}"
    path = folder / "portal.yaml"
    path.write_text(
        f"""
secrets_file: secrets.yaml
user: alice
{audit}
connections: {{key: "${{CONNECTIONS_KEY}}"{", " + connections if connections else ""}}}
http:
  users:
    alice: {{token: "${{ALICE_TOKEN}}"}}
    bob: {{token: "${{BOB_TOKEN}}"}}
servers:
  protected:
    url: {url}
    oauth: {oauth}
"""
    )
    return path


@asynccontextmanager
async def opened_store(config: PortalConfig) -> AsyncIterator[ConnectionStore]:
    """The connection store the config's portal uses (beside its audit store)."""
    async with open_audit_sink(config, None) as sink:
        store = await anyio.to_thread.run_sync(connections_beside, sink, config, {})
        assert store is not None
        try:
            yield store
        finally:
            store.close()


async def browse_and_return(idp: OidcProvider, url: str, user: str) -> httpx2.Response:
    """Follow an authorization URL as `user`'s browser, then open the redirect back to the client."""
    back = await idp.browse(url, user)
    async with httpx2.AsyncClient() as http:
        return await http.get(back)


async def connect(idp: OidcProvider, config_path: Path, user: str) -> None:
    """`portal-mcp login protected --user USER`, with the test driving the browser part."""
    config = load_config(config_path)
    server = config.servers["protected"]
    assert isinstance(server, RemoteServerConfig)
    shown: list[str] = []
    async with opened_store(config) as store, anyio.create_task_group() as tasks:

        async def browser() -> None:
            while not shown:
                await anyio.sleep(0.02)
            response = await browse_and_return(idp, shown[0], user)
            assert response.status_code == 200, response.text

        tasks.start_soon(browser)
        with anyio.fail_after(30):
            await login(store, "protected", server, user, shown.append)


def calls(record: Path) -> list[dict[str, Any]]:
    """What the protected server saw: one {sub, tool, token_sha256} per call ({sub, refused} per refused request)."""
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]
