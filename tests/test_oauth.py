"""The portal as an OAuth resource server, against a real OpenID provider (npm oidc-provider) and a real
`portal-mcp serve --transport http` process: tokens from the provider are accepted and attributed to their user
with their groups' policy; every kind of bad token is a 401 (403 for a missing scope) that changes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from cryptography.hazmat.primitives import serialization

from tests.oauth_portal import (
    CAROL_TOKEN,
    PROXY_AUDIENCE,
    PROXY_HEADER,
    OAuthPortal,
    oauth_portal,
    opaque_resource,
    portal_resources,
)
from tests.oidc import DOWNSTREAM, OidcProvider, SigningKey
from tests.portals import authorised_client
from tests.servers import free_port

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
CONVERT = "print(await time.convert_time(source_timezone='UTC', time='12:00', target_timezone='Europe/Paris'))"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OidcProvider, OAuthPortal]]:
    """One provider and one portal for the module (the tests only add users' records to its audit)."""
    port = free_port()
    folder = tmp_path_factory.mktemp("oauth")
    with OidcProvider.started(resources=portal_resources(port)) as idp, oauth_portal(folder, idp, port) as portal:
        yield idp, portal


def _text(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def post_initialize(portal: OAuthPortal, headers: dict[str, str]) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(30)) as http:
        return await http.post(portal.url, json=INITIALIZE, headers={**MCP_HEADERS, **headers})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(idp: OidcProvider, portal: OAuthPortal) -> str:
    header = b64(json.dumps({"alg": "none", "typ": "at+jwt"}).encode())
    return f"{header}.{b64(json.dumps(idp.claims('alice', resource=portal.resource)).encode())}."


def key_confusion(idp: OidcProvider, portal: OAuthPortal) -> str:
    """HS256 with the provider's RSA public key (as published) for the HMAC secret: the classic confusion."""
    public = (
        idp.keys[0]
        .private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": idp.keys[0].kid}).encode())
    payload = b64(json.dumps(idp.claims("alice", resource=portal.resource)).encode())
    signature = hmac.new(public, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def forged(**changes: Any) -> Callable[[OidcProvider, OAuthPortal], str]:
    def make(idp: OidcProvider, portal: OAuthPortal) -> str:
        return idp.sign(idp.claims("alice", resource=portal.resource, **changes))

    return make


def wrong_key(idp: OidcProvider, portal: OAuthPortal) -> str:
    impostor = SigningKey.generate(kid=idp.keys[0].kid)  # the published key id, another key
    return idp.sign(idp.claims("alice", resource=portal.resource), key=impostor)


def no_user(idp: OidcProvider, portal: OAuthPortal) -> str:
    claims = idp.claims("alice", resource=portal.resource)
    del claims["sub"]
    return idp.sign(claims)


async def issued(idp: OidcProvider, resource: str, scope: str, revoke: bool = False) -> str:
    tokens = await idp.authorize("alice", resource=resource, scope=scope)
    if revoke:
        await idp.revoke(tokens["access_token"])
    token: str = tokens["access_token"]
    return token


NOW = int(time.time())
BAD: dict[str, tuple[Any, int, str]] = {
    # name: (the Authorization header or how to make its token, status, RFC 6750 error)
    "unsigned (alg none)": (unsigned, 401, "invalid_token"),
    "signed with another key under the published kid": (wrong_key, 401, "invalid_token"),
    "HS256 signed with the RSA public key": (key_confusion, 401, "invalid_token"),
    "wrong issuer": (forged(iss="https://idp.evil.example"), 401, "invalid_token"),
    "wrong audience": (forged(aud="https://other.example/mcp"), 401, "invalid_token"),
    "expired": (forged(exp=NOW - 3600, iat=NOW - 7200), 401, "invalid_token"),
    "not yet valid": (forged(nbf=NOW + 3600), 401, "invalid_token"),
    "issued in the future": (forged(iat=NOW + 3600, exp=NOW + 7200), 401, "invalid_token"),
    "no user claim": (no_user, 401, "invalid_token"),
    "missing scope": ("issued:mcp:admin", 403, "insufficient_scope"),
    "meant for a downstream, replayed": ("downstream", 401, "invalid_token"),
    "opaque and revoked": ("revoked-opaque", 401, "invalid_token"),
    "not a JWT, not known to the issuer": (lambda idp, portal: "garbage-token-0123456789", 401, "invalid_token"),
    "three dots of garbage": (lambda idp, portal: "e30.e30.e30", 401, "invalid_token"),
    "malformed: Bearer without a token": ("Bearer", 401, "invalid_token"),
    "malformed: Bearer with two words": ("Bearer abc def", 401, "invalid_token"),
    "malformed: another scheme": ("Basic YWxpY2U6c2VjcmV0", 401, "invalid_token"),
    "no Authorization header": (None, 401, ""),
}


async def authorization(idp: OidcProvider, portal: OAuthPortal, how: Any) -> str | None:
    if how is None or (isinstance(how, str) and how.startswith(("Bearer", "Basic"))):
        return how
    if how == "issued:mcp:admin":
        return f"Bearer {await issued(idp, portal.resource, 'mcp:admin')}"
    if how == "downstream":
        return f"Bearer {await issued(idp, DOWNSTREAM, 'files:read')}"
    if how == "revoked-opaque":
        return f"Bearer {await issued(idp, opaque_resource(portal.port), 'mcp:tools', True)}"
    return f"Bearer {how(idp, portal)}"


@pytest.mark.parametrize("case", list(BAD))
async def test_a_bad_token_is_refused_with_a_challenge_and_changes_nothing(
    stack: tuple[OidcProvider, OAuthPortal], case: str
) -> None:
    idp, portal = stack
    how, status, error = BAD[case]
    with anyio.fail_after(60):
        header = await authorization(idp, portal, how)
        before = len(portal.audit())
        refused = await post_initialize(portal, {"Authorization": header} if header is not None else {})
        # A request after it that is recorded: anything the refused one recorded would come before it.
        good = await issued(idp, portal.resource, "mcp:tools")
        async with authorised_client(portal.url, good) as client:
            await client.call_tool("search_api", {"query": "current time"})
    challenge = refused.headers.get("www-authenticate", "")
    assert refused.status_code == status, refused.text
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{portal.base}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert (f'error="{error}"' in challenge) == bool(error), challenge
    assert "mcp-session-id" not in refused.headers
    after = portal.audit()[before:]
    assert [(event.kind, event.user) for event in after] == [("search", "alice")]
    if header is not None and len(header) > 12:
        assert header.split(" ", 1)[-1] not in portal.log.read_text(errors="replace")


async def test_the_protected_resource_metadata_names_the_issuer_and_scopes(
    stack: tuple[OidcProvider, OAuthPortal],
) -> None:
    idp, portal = stack
    base = portal.base
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(30)) as http:
        suffixed = await http.get(f"{base}/.well-known/oauth-protected-resource/mcp")
        root = await http.get(f"{base}/.well-known/oauth-protected-resource")
    assert suffixed.status_code == root.status_code == 200
    assert suffixed.json() == root.json()
    assert suffixed.json()["resource"] == portal.resource
    assert suffixed.json()["authorization_servers"] == [idp.issuer]
    assert suffixed.json()["scopes_supported"] == ["mcp:tools"]


async def test_two_users_tokens_are_attributed_to_them_with_their_groups_policy(
    stack: tuple[OidcProvider, OAuthPortal],
) -> None:
    idp, portal = stack
    with anyio.fail_after(90):
        alice = await idp.authorize("alice", resource=portal.resource, scope="mcp:tools")
        bob = await idp.authorize("bob", resource=portal.resource, scope="mcp:tools")
        before = len(portal.audit())
        async with authorised_client(portal.url, alice["access_token"]) as client:
            for_alice = await client.call_tool("execute_code", {"code": CONVERT})
        async with authorised_client(portal.url, bob["access_token"]) as client:
            for_bob = await client.call_tool("execute_code", {"code": CONVERT})
            bob_search = await client.call_tool("search_api", {"query": "convert time between timezones"})
    assert "Europe/Paris" in _text(for_alice), _text(for_alice)
    assert "Europe/Paris" not in _text(for_bob)  # sales may not convert times: bob's token says he is in sales
    assert "time.convert_time" not in _text(bob_search)
    records = [(event.kind, event.user, event.subject, event.outcome) for event in portal.audit()[before:]]
    assert ("call", "alice", "time.convert_time", "ok") in records
    assert {user for _, user, _, _ in records} == {"alice", "bob"}
    assert not any(record[:2] == ("call", "bob") and record[3] == "ok" for record in records)


async def test_static_tokens_opaque_tokens_and_the_trusted_proxy_work_beside_the_issuers_jwts(
    stack: tuple[OidcProvider, OAuthPortal],
) -> None:
    idp, portal = stack
    with anyio.fail_after(90):
        opaque = await idp.authorize("bob", resource=opaque_resource(portal.port), scope="mcp:tools")
        before = len(portal.audit())
        async with authorised_client(portal.url, CAROL_TOKEN) as client:
            await client.call_tool("search_api", {"query": "carol"})
        async with authorised_client(portal.url, opaque["access_token"]) as client:
            await client.call_tool("search_api", {"query": "opaque bob"})
        assertion = idp.sign({**idp.claims("dana", aud=PROXY_AUDIENCE), "email": "dana@example.com"})
        async with (
            httpx2.AsyncClient(headers={PROXY_HEADER: assertion}, timeout=httpx2.Timeout(30)) as http,
            _client_over(portal.url, http) as client,
        ):
            await client.call_tool("search_api", {"query": "proxied dana"})
        wrong = idp.sign({**idp.claims("dana", aud="another-app"), "email": "dana@example.com"})
        refused = await post_initialize(portal, {PROXY_HEADER: wrong})
    records = [(event.user, event.subject) for event in portal.audit()[before:]]
    assert records == [("carol", "carol"), ("bob", "opaque bob"), ("dana@example.com", "proxied dana")]
    assert refused.status_code == 401


def _client_over(url: str, http: httpx2.AsyncClient) -> Any:
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client

    return Client(streamable_http_client(url, http_client=http))


async def test_after_the_issuer_rotates_its_key_the_portal_fetches_the_new_one(tmp_path: Path) -> None:
    port = free_port()
    with OidcProvider.started(resources=portal_resources(port)) as idp, oauth_portal(tmp_path, idp, port) as portal:
        with anyio.fail_after(90):
            old = await idp.authorize("alice", resource=portal.resource)
            async with authorised_client(portal.url, old["access_token"]) as client:
                await client.call_tool("search_api", {"query": "before rotation"})
            await idp.rotate()
            new = await idp.authorize("alice", resource=portal.resource)
            await anyio.sleep(1.1)  # `auth.unknown_key_refetch: 1`: the portal fetches keys at most once a second
            async with authorised_client(portal.url, new["access_token"]) as client:
                await client.call_tool("search_api", {"query": "after rotation"})
            stale = await post_initialize(portal, {"Authorization": f"Bearer {old['access_token']}"})
    assert [(e.user, e.subject) for e in portal.audit()] == [("alice", "before rotation"), ("alice", "after rotation")]
    assert stale.status_code == 401  # the old key is gone from the issuer's set


class MemoryStorage:
    """The SDK client's token storage, in memory."""

    def __init__(self) -> None:
        self.tokens: Any = None
        self.client: Any = None

    async def get_tokens(self) -> Any:
        return self.tokens

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> Any:
        return self.client

    async def set_client_info(self, client_info: Any) -> None:
        self.client = client_info


async def test_an_mcp_client_with_no_token_finds_the_issuer_signs_in_and_calls(
    stack: tuple[OidcProvider, OAuthPortal],
) -> None:
    """What Claude Code does with a remote server: 401 -> the resource metadata -> the issuer's metadata -> dynamic
    registration -> authorization code + PKCE for the portal's resource -> the call, attributed to the user."""
    from urllib.parse import parse_qs, urlsplit

    from mcp.client import Client
    from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.auth import OAuthClientMetadata
    from pydantic import AnyUrl

    idp, portal = stack
    redirected: list[str] = []

    async def sign_in(url: str) -> None:  # the user's browser: bob signs in and consents
        redirected.append(await idp.browse(url, "bob"))

    async def callback() -> AuthorizationCodeResult:
        query = {k: v[-1] for k, v in parse_qs(urlsplit(redirected[-1]).query).items()}
        return AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))

    storage = MemoryStorage()
    auth = OAuthClientProvider(
        portal.url,
        OAuthClientMetadata(
            redirect_uris=[AnyUrl("http://127.0.0.1:33418/callback")],
            client_name="test client",
            token_endpoint_auth_method="none",
        ),
        storage,
        redirect_handler=sign_in,
        callback_handler=callback,
    )
    with anyio.fail_after(60):
        before = len(portal.audit())
        async with (
            httpx2.AsyncClient(auth=auth, timeout=httpx2.Timeout(30)) as http,
            Client(streamable_http_client(portal.url, http_client=http)) as client,
        ):
            found = await client.call_tool("search_api", {"query": "current time in a timezone"})
    assert "time.get_current_time" in _text(found)
    assert len(redirected) == 1 and redirected[0].startswith("http://127.0.0.1:33418/callback?code=")
    assert [(event.kind, event.user) for event in portal.audit()[before:]] == [("search", "bob")]
    assert storage.tokens is not None and "mcp:tools" in (storage.tokens.scope or "")
