"""Token exchange (RFC 8693) to a downstream server, configured per server (`oauth: {token_exchange: ...}`): a user
signed in to the portal with the identity provider reaches the server with a token exchanged for theirs, no consent.

Real parts only: npm `oidc-provider` (tests/oidc.py) issues the portal's tokens and serves the token-exchange grant
(tests/node/oidc/provider.mjs: it checks the subject token is one it issued); tests/servers/oauth_server.py is the
protected MCP server, accepting only tokens for its own audience (introspection); the portal is a real
`portal-mcp serve --transport http` process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest

from portal_mcp.config import PortalConfig, RemoteServerConfig, parse_config
from portal_mcp.control.credentials import REDACTED, Redactor
from portal_mcp.downstream._token_exchange import Exchanges, probe
from portal_mcp.errors import ConfigError, TokenExchangeError
from tests.oauth_downstream import OAUTH_SERVER, calls
from tests.oidc import OidcProvider, require_oidc_provider
from tests.portals import authorised_client, portal_command, started, wait_until_listening, wait_until_settled
from tests.servers import free_port

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
EXCHANGE_ID, EXCHANGE_SECRET = "portal-exchange", "portal-exchange-secret-0123456789"
EXCHANGER: dict[str, Any] = {
    "client_id": EXCHANGE_ID,
    "client_secret": EXCHANGE_SECRET,
    "token_endpoint_auth_method": "client_secret_basic",
    "grant_types": [GRANT],
    "response_types": [],
    "redirect_uris": [],
}
POSTING = {**EXCHANGER, "client_id": "portal-exchange-post", "token_endpoint_auth_method": "client_secret_post"}
CAROL_TOKEN = "carol-static-token-0123456789"
USERS = {"alice": {"groups": ["eng"]}, "bob": {"groups": ["sales"]}, "dave": {"groups": ["eng"]}}
WHOAMI = "print((await protected.whoami())['sub'])"
TOOLS = [
    {"name": "whoami", "description": "Who the token of this call belongs to.", "inputSchema": {"type": "object"}},
    {"name": "bearer", "description": "The bearer token of this call.", "inputSchema": {"type": "object"}},
    {
        "name": "echo",
        "description": "`text` back.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    },
]


@pytest.fixture(autouse=True)
def _needs_provider() -> None:
    require_oidc_provider()


@dataclass
class Stack:
    idp: OidcProvider
    portal: str
    """The portal's MCP URL (also its resource indicator)."""
    downstream: str
    record: Path
    folder: Path

    async def token(self, user: str) -> str:
        """`user` signs in to the portal at the identity provider (a token for the portal's resource)."""
        found: str = (await self.idp.authorize(user, resource=self.portal))["access_token"]
        return found

    async def run(self, token: str, code: str) -> str:
        async with authorised_client(self.portal, token) as client:
            result = await client.call_tool("execute_code", {"code": code})
        return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))

    def log(self) -> str:
        return (self.folder / "portal.log").read_text(errors="replace")


@asynccontextmanager
async def stack(folder: Path, *, ttl: int = 300) -> AsyncIterator[Stack]:
    """The provider, the protected server (its tokens live `ttl` seconds) and a portal exchanging tokens for it."""
    port, down_port = free_port(), free_port()
    portal, downstream = f"http://127.0.0.1:{port}/mcp", f"http://127.0.0.1:{down_port}/mcp"
    resources: dict[str, dict[str, Any]] = {
        portal: {"scope": "mcp:tools"},
        downstream: {"scope": "mcp:tools", "format": "opaque", "ttl": ttl},
    }
    record = folder / "calls.jsonl"
    with OidcProvider.started(
        resources=resources,
        users=USERS,
        clients=[EXCHANGER, POSTING],
        scopes=["mcp:tools"],
        exchange={"refuse": ["dave"]},
    ) as idp:
        server = await anyio.open_process(
            [sys.executable, str(OAUTH_SERVER), "--port", str(down_port), "--issuer", idp.issuer,
             "--record", str(record), "--keep-tokens"],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            with anyio.fail_after(20):
                await wait_until_listening(server, down_port)
            (folder / "tools.json").write_text(json.dumps({"tools": TOOLS}))
            config = folder / "portal.yaml"
            config.write_text(
                f"""audit: {{sqlite: audit.sqlite}}
http:
  users:
    carol: {{token: '${{CAROL_TOKEN}}', groups: [operators]}}
auth: {{issuer: {idp.issuer}, resource: {portal}, scopes: [mcp:tools]}}
servers:
  protected:
    url: {downstream}
    known_tools: tools.json
    oauth:
      token_exchange:
        client_id: {EXCHANGE_ID}
        client_secret: ${{EXCHANGE_SECRET}}
        issuer: {idp.issuer}
"""
            )
            env = {"CAROL_TOKEN": CAROL_TOKEN, "EXCHANGE_SECRET": EXCHANGE_SECRET}
            log = folder / "portal.log"
            async with started(portal_command(config, "127.0.0.1", port), log, env=env) as process:
                with anyio.fail_after(30):
                    await wait_until_listening(process, port, log)
                    await wait_until_settled(log)
                yield Stack(idp, portal, downstream, record, folder)
        finally:
            with anyio.CancelScope(shield=True):
                server.kill()
                await server.wait()
                await server.aclose()


async def test_two_signed_in_users_reach_the_server_each_with_their_own_exchanged_token(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        alice, bob = await s.token("alice"), await s.token("bob")
        with anyio.fail_after(60):
            seen = [await s.run(token, WHOAMI) for token in (alice, bob, alice, bob)]
            leaked = await s.run(alice, "print(await protected.bearer())")  # a server echoing its credential
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {CAROL_TOKEN}"}) as http:
                metrics = (await http.get(s.portal.removesuffix("/mcp") + "/metrics")).text
        log = s.log()
        audit = (tmp_path / "audit.sqlite").read_bytes()
    assert seen == ["alice", "bob", "alice", "bob"], seen
    assert leaked == str({"result": REDACTED}), leaked
    assert 'server="protected"' in metrics, metrics
    made = [call for call in calls(s.record) if call["tool"] == "whoami"]
    assert [call["sub"] for call in made] == ["alice", "bob", "alice", "bob"]
    # each user's exchanged token is reused (one exchange each), and it is not their sign-in token
    assert made[0]["token"] == made[2]["token"] and made[1]["token"] == made[3]["token"]
    assert made[0]["token"] != made[1]["token"]
    assert {alice, bob}.isdisjoint(call["token"] for call in made)
    assert log.count("exchanged user 'alice'") == 1 and log.count("exchanged user 'bob'") == 1, log
    # nobody signed in yet: expected, said once and not as an error
    waiting = [line for line in log.splitlines() if "not listed yet: calls to this server exchange" in line]
    assert len(waiting) == 1 and "INFO" in waiting[0] and "after the first signed-in user's request" in waiting[0], log
    assert "failed to start" not in log and "ERROR" not in log, log
    assert "server 'protected': is up after retrying" in log  # listed with the first signed-in user's exchange
    for token in {alice, bob, *(call["token"] for call in calls(s.record))}:
        assert token not in log and token.encode() not in audit and token not in metrics
        assert token not in "".join(seen)


async def test_the_exchanged_token_is_reused_until_it_expires_then_exchanged_again(tmp_path: Path) -> None:
    async with stack(tmp_path, ttl=3) as s:
        alice = await s.token("alice")
        with anyio.fail_after(60):
            await s.run(alice, WHOAMI + "\n" + WHOAMI)
            await anyio.sleep(3.5)  # the exchanged token's own lifetime (the provider's `ttl`) runs out
            await s.run(alice, WHOAMI)
        log = s.log()
    tokens = [call["token"] for call in calls(s.record)]
    assert len(tokens) == 3 and tokens[0] == tokens[1] != tokens[2]
    assert log.count("exchanged user 'alice'") == 2, log


async def test_a_token_the_server_refuses_is_exchanged_again_once(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        alice = await s.token("alice")
        with anyio.fail_after(60):
            assert await s.run(alice, WHOAMI) == "alice"
            async with httpx2.AsyncClient() as http:
                revoked = await http.post(f"{s.idp.issuer}/_test/revoke-exchanged", json={"sub": "alice"})
            assert revoked.status_code == 204
            assert await s.run(alice, WHOAMI) == "alice"  # the 401 was answered by a new exchange
    tokens = [call["token"] for call in calls(s.record)]
    assert len(tokens) == 2 and tokens[0] != tokens[1]


async def test_a_refused_exchange_after_the_server_refused_the_token_tells_the_user_to_sign_in_again(
    tmp_path: Path,
) -> None:
    async with stack(tmp_path) as s:
        alice = await s.token("alice")
        with anyio.fail_after(60):
            assert await s.run(alice, WHOAMI) == "alice"
            async with httpx2.AsyncClient() as http:
                await http.post(f"{s.idp.issuer}/_test/revoke-exchanged", json={"sub": "alice", "refuse": True})
            refused = await s.run(alice, WHOAMI)
            again = await s.run(alice, WHOAMI)  # nothing cached: the exchange before the call is refused
    assert "refused their token (invalid_grant" in refused and "sign in to the portal again" in refused, refused
    assert "refused their token (invalid_grant" in again, again
    assert len(calls(s.record)) == 1


async def test_a_refused_exchange_and_a_static_token_user_get_typed_errors_saying_what_to_do(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        dave = await s.token("dave")  # the authorization server's policy refuses to exchange dave's tokens
        with anyio.fail_after(60):
            refused = await s.run(dave, WHOAMI)
            static = await s.run(CAROL_TOKEN, WHOAMI)
        log = s.log()
    assert "exchange each user's own sign-in for a token of the server (RFC 8693); for user 'dave'" in refused, refused
    assert "refused their token (invalid_grant" in refused and "sign in to the portal again" in refused, refused
    assert "static bearer token" in static and "access token from its identity provider" in static, static
    assert calls(s.record) == []
    assert dave not in log and dave not in refused


async def test_check_probes_the_token_endpoint_with_the_configured_client(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        servers = {
            "good": _server(s, {"issuer": s.idp.issuer}),
            "wrong": _server(s, {"issuer": s.idp.issuer, "client_secret": "not-the-secret-0123456789"}),
            "discovered": _server(s, {}),  # the authorization server the server's RFC 9728 metadata names
            "posting": _server(
                s,
                {
                    "client_id": POSTING["client_id"],
                    "auth_method": "client_secret_post",
                    "token_endpoint": f"{s.idp.issuer}/token",
                },
            ),
        }
        redactor = Redactor()
        exchanges = Exchanges(servers, redactor)
        with anyio.fail_after(30):
            ready = await probe(exchanges.exchangers["good"])
            refused = await probe(exchanges.exchangers["wrong"])
            others = [await probe(exchanges.exchangers[name]) for name in ("discovered", "posting")]
            with pytest.raises(TokenExchangeError) as nobody:
                await exchanges.prepare("good", "erin")
            subject = await s.token("alice")
            exchanges.remember("alice", subject, None)
            await exchanges.prepare("good", "alice")
            exchanges.remember("bob", await s.token("bob"), None)
            with pytest.raises(TokenExchangeError) as bad_client:
                await exchanges.prepare("wrong", "bob")
            checked = await anyio.run_process(
                [sys.executable, "-m", "portal_mcp", "check", "--config", str(s.folder / "portal.yaml")],
                env={**os.environ, "CAROL_TOKEN": CAROL_TOKEN, "EXCHANGE_SECRET": EXCHANGE_SECRET, "COLUMNS": "300"},
                check=False,
            )
    assert ready.startswith("ready: ") and GRANT not in ready, ready
    assert all(answer.startswith(f"ready: {s.idp.issuer}/token authenticated client") for answer in others), others
    output = checked.stdout.decode()
    assert "token exchange protected: ready" in output and checked.returncode == 0, output + checked.stderr.decode()
    assert EXCHANGE_SECRET not in output
    assert "invalid_client" in refused, refused
    assert nobody.value.kind == "no_token" and "erin" in str(nobody.value)
    assert bad_client.value.kind == "config" and "invalid_client" in str(bad_client.value)
    assert "portal-mcp check" in str(bad_client.value)
    assert subject not in redactor.text(f"log line with {subject}")  # the redactor learnt the sign-in token


async def test_an_exchanged_token_is_never_used_past_the_users_own_sign_in(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        exchanges = Exchanges({"protected": _server(s, {"issuer": s.idp.issuer})}, Redactor())
        exchanger = exchanges.exchangers["protected"]
        with anyio.fail_after(30):
            exchanges.remember("alice", await s.token("alice"), time.time() + 1.5)  # her sign-in ends in 1.5 s
            first = await exchanger.token("alice")
            assert await exchanger.token("alice") == first  # reused (the exchanged one would live 300 s)
            await anyio.sleep(1.6)
            with pytest.raises(TokenExchangeError) as expired:
                await exchanges.prepare("protected", "alice")
            exchanges.remember("alice", await s.token("alice"), None)  # she signs in again
            second = await exchanger.token("alice")
    assert expired.value.kind == "no_token" and "their sign-in expired" in str(expired.value)
    assert second != first


async def test_an_unreachable_authorization_server_is_unreachable_and_wrong_metadata_is_config(
    oidc_provider: OidcProvider,
) -> None:
    nothing = f"http://127.0.0.1:{free_port()}"  # refuses connections
    servers = {
        name: _exchanging(f"{nothing}/mcp", exchange)
        for name, exchange in {
            "down": {"issuer": nothing},
            "undiscoverable": {},  # the server's RFC 9728 metadata is not reachable either
            "misspelt": {"issuer": oidc_provider.issuer + "/"},  # its metadata names the issuer without the slash
        }.items()
    }
    exchanges = Exchanges(servers, Redactor())
    exchanges.remember("alice", "alice-sign-in-token-0123456789", None)
    kinds = {}
    with anyio.fail_after(30):
        for name in servers:
            with pytest.raises(TokenExchangeError) as failed:
                await exchanges.prepare(name, "alice")
            kinds[name] = (failed.value.kind, str(failed.value))
    assert kinds["down"][0] == kinds["undiscoverable"][0] == "unreachable", kinds
    assert "ConnectError" in kinds["down"][1] and "try again later" in kinds["down"][1]
    assert kinds["misspelt"][0] == "config" and "a trailing slash counts" in kinds["misspelt"][1], kinds


def _server(s: Stack, exchange: dict[str, str]) -> RemoteServerConfig:
    return _exchanging(s.downstream, exchange)


def _exchanging(url: str, exchange: dict[str, str]) -> RemoteServerConfig:
    settings = {"client_id": EXCHANGE_ID, "client_secret": EXCHANGE_SECRET, **exchange}
    return RemoteServerConfig.model_validate({"url": url, "oauth": {"token_exchange": settings}})


def test_token_exchange_config_refuses_connect_flow_keys_beside_it_and_needs_no_connections_key(tmp_path: Path) -> None:
    def parse(text: str) -> PortalConfig:
        return parse_config(text, source="portal.yaml", base_dir=tmp_path, environ={})

    with pytest.raises(ConfigError) as mixed:
        parse(
            "servers:\n  crm:\n    url: https://crm.example.com/mcp\n    oauth:\n"
            "      redirect_uri: https://portal.example.com/oauth/callback\n"
            "      token_exchange: {client_id: portal, client_secret: s3cret-value-123}\n"
        )
    assert "`token_exchange` replaces connecting each user's account" in str(mixed.value)
    assert "redirect_uri" in str(mixed.value)
    with pytest.raises(ConfigError) as bad_url:
        parse(
            "servers:\n  crm:\n    url: https://crm.example.com/mcp\n    oauth:\n"
            "      token_exchange: {client_id: portal, client_secret: s3cret-value-123, token_endpoint: ftp://x}\n"
        )
    assert "token_endpoint" in str(bad_url.value)
    exchanging = (
        "servers:\n  crm:\n    url: https://crm.example.com/mcp\n    oauth:\n"
        "      token_exchange: {client_id: portal, client_secret: s3cret-value-123, audience: crm-api}\n"
    )
    with pytest.raises(ConfigError) as no_sign_in:
        parse(exchanging)
    assert "add `auth: {issuer: ..., resource: ...}`" in str(no_sign_in.value)
    config = parse(exchanging + "auth: {issuer: https://login.example.com, resource: https://portal.example.com/mcp}\n")
    assert "s3cret-value-123" in config.secret_values()
    assert "s3cret-value-123" not in repr(config)
