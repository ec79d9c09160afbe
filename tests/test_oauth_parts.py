"""The parts behind the portal's OAuth checks, against the real provider: discovery, the key cache's rotation and
its bound on refetching, the introspection cache, and the `auth:` section's errors."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
import pytest

from portal_mcp.config import AuthConfig, parse_config
from portal_mcp.control.oauth.discovery import (
    DiscoveryError,
    authorization_server_urls,
    fetch_authorization_server,
    fetch_json,
    protected_resource_urls,
)
from portal_mcp.control.oauth.keys import IssuerKeys
from portal_mcp.control.oauth.sources import Authenticator
from portal_mcp.errors import ConfigError, TokenRejectedError
from tests.oidc import OPAQUE, RESOURCE, OidcProvider, SigningKey


def test_metadata_urls_follow_the_mcp_specs_order() -> None:
    assert authorization_server_urls("https://idp.example.com/realms/team") == [
        "https://idp.example.com/.well-known/oauth-authorization-server/realms/team",
        "https://idp.example.com/.well-known/openid-configuration/realms/team",
        "https://idp.example.com/realms/team/.well-known/openid-configuration",
    ]
    assert authorization_server_urls("https://tenant.auth0.com/") == [
        "https://tenant.auth0.com/.well-known/oauth-authorization-server",
        "https://tenant.auth0.com/.well-known/openid-configuration",
    ]
    assert protected_resource_urls("https://portal.example.com/mcp") == [
        "https://portal.example.com/.well-known/oauth-protected-resource/mcp",
        "https://portal.example.com/.well-known/oauth-protected-resource",
    ]


async def test_discovery_finds_the_providers_metadata_and_refuses_another_issuers(
    oidc_provider: OidcProvider,
) -> None:
    with anyio.fail_after(30):
        async with httpx2.AsyncClient() as http:
            found = await fetch_authorization_server(oidc_provider.issuer, http)
            with pytest.raises(DiscoveryError, match="describes issuer"):
                await fetch_authorization_server(oidc_provider.issuer + "/", http)
    assert found["jwks_uri"] == oidc_provider.jwks_uri
    assert found["introspection_endpoint"] == oidc_provider.introspection_endpoint


class CountingFetch:
    """GETs for real, counting them."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    async def __call__(self, url: str) -> dict[str, Any]:
        self.urls.append(url)
        async with httpx2.AsyncClient() as http:
            return await fetch_json(http, url)


async def test_tokens_with_made_up_key_ids_fetch_the_keys_at_most_once_per_window(
    oidc_provider: OidcProvider,
) -> None:
    fetch = CountingFetch()
    keys = IssuerKeys(oidc_provider.issuer, oidc_provider.jwks_uri, fetch, unknown_refetch=3600)
    with anyio.fail_after(30):
        assert await keys.key(oidc_provider.keys[0].kid, "RS256") is not None
        found = [await keys.key(secrets.token_hex(8), "RS256") for _ in range(50)]
    assert found == [None] * 50
    assert fetch.urls == [oidc_provider.jwks_uri]


async def test_an_unknown_key_id_past_the_window_fetches_the_rotated_keys(oidc_provider: OidcProvider) -> None:
    fetch = CountingFetch()
    keys = IssuerKeys(oidc_provider.issuer, None, fetch, metadata=_metadata(oidc_provider), unknown_refetch=1)
    with anyio.fail_after(30):
        assert await keys.key(oidc_provider.keys[0].kid, "RS256") is not None
        (new,) = await oidc_provider.rotate()
        assert await keys.key(new.kid, "RS256") is None  # within the window: the cached set answers
        await anyio.sleep(1.1)
        assert await keys.key(new.kid, "RS256") is not None
        assert await keys.key(new.kid, "ES256") is None  # an RSA key never verifies another family's algorithm
    assert fetch.urls == [oidc_provider.jwks_uri] * 2


def _metadata(provider: OidcProvider) -> Any:
    async def metadata() -> dict[str, Any]:
        async with httpx2.AsyncClient() as http:
            return await fetch_authorization_server(provider.issuer, http)

    return metadata


def auth_config(provider: OidcProvider, **extra: Any) -> AuthConfig:
    return AuthConfig.model_validate({"issuer": provider.issuer, "resource": RESOURCE, **extra})


async def test_introspection_answers_are_reused_and_a_revoked_token_is_refused(oidc_provider: OidcProvider) -> None:
    config = auth_config(
        oidc_provider,
        audience=[RESOURCE, OPAQUE],
        introspection={"client_id": "test-service", "client_secret": "test-service-secret-0123456789"},
    )
    authenticator = Authenticator(config)
    assert authenticator.issuer is not None
    with anyio.fail_after(30):
        active = (await oidc_provider.authorize("alice", resource=OPAQUE))["access_token"]
        revoked = (await oidc_provider.authorize("bob", resource=OPAQUE))["access_token"]
        await oidc_provider.revoke(revoked)
        first = await authenticator.bearer(active)
        again = await authenticator.bearer(active)
        for _ in range(3):
            with pytest.raises(TokenRejectedError, match="not active"):
                await authenticator.bearer(revoked)
    introspector = authenticator.issuer._introspector
    assert introspector is not None
    assert first == again and (first.user, first.groups) == ("alice", ("eng",))
    assert introspector.requests == 2  # one per token, whatever the number of requests


async def test_an_unreachable_issuer_is_a_503_not_a_bad_token() -> None:
    config = AuthConfig.model_validate({"issuer": "http://127.0.0.1:9", "resource": RESOURCE})
    claims = {"iss": "http://127.0.0.1:9", "aud": RESOURCE, "sub": "alice", "exp": 2**40}
    token = jwt.encode(claims, SigningKey.generate().private, algorithm="RS256", headers={"kid": "k"})
    with anyio.fail_after(30), pytest.raises(TokenRejectedError) as refused:
        await Authenticator(config).bearer(token)
    assert refused.value.status == 503
    assert token not in str(refused.value)


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ("{issuer: https://idp.example.com}", "`auth.resource` is this portal's URL"),
        ("{resource: https://p.example.com/mcp}", "`auth` needs `issuer`"),
        ("{issuer: https://i.example.com, resource: https://p.example.com/mcp, algorithms: [HS256]}", "signed with a"),
        ("{issuer: https://i.example.com, resource: https://p.example.com/mcp, algorithms: [none]}", "not accepted"),
        ("{issuer: i.example.com, resource: https://p.example.com/mcp}", "must be an http:// or https:// URL"),
        ("{issuer: https://i.example.com, resource: https://p.example.com/mcp, user_clam: email}", "user_claim"),
        ("{trusted_proxy: {header: X-Assertion, audience: a}}", "needs the `issuer`"),
        (
            "{issuer: https://i.example.com, resource: https://p.example.com/mcp, introspection: {client_id: p}}",
            "client_secret",
        ),
    ],
)
def test_an_unusable_auth_section_is_refused_with_the_reason(tmp_path: Path, auth: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(f"auth: {auth}\n", source="portal.yaml", base_dir=tmp_path, environ={})
    assert message in str(refused.value)
    assert "portal.yaml:1" in str(refused.value)


def test_the_introspection_secret_is_redacted_wherever_it_comes_from(tmp_path: Path) -> None:
    secret = secrets.token_hex(12)
    text = (
        "auth:\n  issuer: https://i.example.com\n  resource: https://p.example.com/mcp\n"
        "  introspection: {client_id: p, client_secret: '${IDP_CS}'}\n"
    )
    config = parse_config(text, source="portal.yaml", base_dir=tmp_path, environ={"IDP_CS": secret})
    assert secret in config.secret_values()
    assert secret not in repr(config)
