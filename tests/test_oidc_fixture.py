"""The OpenID provider the OAuth tests run against (tests/oidc.py) does what they rely on."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import httpx2
import jwt
import pytest

from tests.oidc import DOWNSTREAM, OPAQUE, RESOURCE, OidcProvider, pkce_pair


async def published_keys(provider: OidcProvider) -> jwt.PyJWKSet:
    async with httpx2.AsyncClient() as http:
        metadata = (await http.get(f"{provider.issuer}/.well-known/openid-configuration")).json()
        return jwt.PyJWKSet.from_dict((await http.get(metadata["jwks_uri"])).json())


def verified(token: str, keys: jwt.PyJWKSet, provider: OidcProvider, audience: str) -> dict[str, Any]:
    key = keys[jwt.get_unverified_header(token)["kid"]]
    claims: dict[str, Any] = jwt.decode(token, key, algorithms=["RS256"], audience=audience, issuer=provider.issuer)
    return claims


async def test_a_users_token_is_a_jwt_for_the_resource_that_verifies_against_the_published_jwks(
    oidc_provider: OidcProvider,
) -> None:
    with anyio.fail_after(30):
        tokens = await oidc_provider.authorize("alice", resource=RESOURCE, scope="mcp:tools")
        claims = verified(tokens["access_token"], await published_keys(oidc_provider), oidc_provider, RESOURCE)
    assert jwt.get_unverified_header(tokens["access_token"])["typ"] == "at+jwt"
    assert (claims["sub"], claims["email"], claims["groups"], claims["scope"]) == (
        "alice",
        "alice@example.com",
        ["eng"],
        "mcp:tools",
    )
    with pytest.raises(jwt.InvalidAudienceError):
        verified(tokens["access_token"], await published_keys(oidc_provider), oidc_provider, DOWNSTREAM)


async def test_refresh_client_credentials_and_a_forged_token_all_verify(oidc_provider: OidcProvider) -> None:
    with anyio.fail_after(30):
        keys = await published_keys(oidc_provider)
        tokens = await oidc_provider.authorize("bob", resource=DOWNSTREAM, scope="files:read")
        refreshed = await oidc_provider.refresh(tokens["refresh_token"])
        service = await oidc_provider.client_credentials(resource=RESOURCE, scope="mcp:admin")
    assert verified(refreshed["access_token"], keys, oidc_provider, DOWNSTREAM)["sub"] == "bob"
    assert verified(service["access_token"], keys, oidc_provider, RESOURCE)["scope"] == "mcp:admin"
    forged = oidc_provider.sign(oidc_provider.claims("carol"))
    assert verified(forged, keys, oidc_provider, RESOURCE)["sub"] == "carol"


async def test_rotation_publishes_the_new_key_and_signs_with_it(oidc_provider: OidcProvider) -> None:
    with anyio.fail_after(30):
        before = (await oidc_provider.authorize("alice"))["access_token"]
        old = oidc_provider.keys[0]
        (new,) = await oidc_provider.rotate()
        keys = await published_keys(oidc_provider)
        after = (await oidc_provider.authorize("alice"))["access_token"]
    assert [key.key_id for key in keys.keys] == [new.kid] != [old.kid]
    assert jwt.get_unverified_header(before)["kid"] == old.kid
    assert verified(after, keys, oidc_provider, RESOURCE)["sub"] == "alice"


async def test_opaque_tokens_are_introspected_and_revoked(oidc_provider: OidcProvider) -> None:
    with anyio.fail_after(30):
        tokens = await oidc_provider.authorize("alice", resource=OPAQUE)
        active = await oidc_provider.introspect(tokens["access_token"])
        await oidc_provider.revoke(tokens["access_token"])
        revoked = await oidc_provider.introspect(tokens["access_token"])
    assert tokens["access_token"].count(".") == 0
    assert (active["active"], active["sub"], active["aud"], active["groups"]) == (True, "alice", OPAQUE, ["eng"])
    assert revoked == {"active": False}


async def test_a_dynamically_registered_client_gets_a_users_token(oidc_provider: OidcProvider) -> None:
    redirect = "http://127.0.0.1:5555/oauth/callback"
    verifier, challenge = pkce_pair()
    with anyio.fail_after(30):
        async with httpx2.AsyncClient() as http:
            metadata = (await http.get(f"{oidc_provider.issuer}/.well-known/oauth-authorization-server")).json()
            registered = await http.post(
                metadata["registration_endpoint"],
                json={
                    "redirect_uris": [redirect],
                    "token_endpoint_auth_method": "none",
                    "grant_types": ["authorization_code", "refresh_token"],
                    "application_type": "native",
                },
            )
            client_id = registered.json()["client_id"]
            query = {
                "client_id": client_id,
                "response_type": "code",
                "redirect_uri": redirect,
                "scope": "mcp:tools",
                "resource": RESOURCE,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
            back = await oidc_provider.browse(f"{metadata['authorization_endpoint']}?{urlencode(query)}", "bob")
            code = parse_qs(urlsplit(back).query)["code"][0]
            tokens = (
                await http.post(
                    metadata["token_endpoint"],
                    data={
                        "grant_type": "authorization_code",
                        "code": code,
                        "redirect_uri": redirect,
                        "code_verifier": verifier,
                        "client_id": client_id,
                    },
                )
            ).json()
        keys = await published_keys(oidc_provider)
    assert registered.status_code == 201
    assert back.startswith(redirect)
    assert verified(tokens["access_token"], keys, oidc_provider, RESOURCE)["client_id"] == client_id
