"""The verifiers the `auth:` section asks for, built once: the issuer's (bearer tokens) and the trusted proxy's
(its identity assertion header), sharing one way to fetch documents and each issuer's cached metadata.

```
authenticator = Authenticator(config.auth)
identity = await authenticator.bearer(token)        # TokenRejectedError when not acceptable
identity = await authenticator.assertion(value)     # the trusted proxy's header
```
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx2

from portal_mcp.config import AuthConfig, TrustedProxyConfig
from portal_mcp.control.oauth.discovery import DiscoveryError, fetch_authorization_server, fetch_json
from portal_mcp.control.oauth.introspection import Introspector
from portal_mcp.control.oauth.keys import IssuerKeys
from portal_mcp.control.oauth.tokens import Identity, Rules, TokenVerifier
from portal_mcp.errors import TokenRejectedError

__all__ = ["FETCH_TIMEOUT", "Authenticator", "IssuerMetadata"]

FETCH_TIMEOUT = 10.0
"""Seconds for one request to an identity provider (metadata, keys, introspection)."""


async def _get(url: str) -> dict[str, Any]:
    async with httpx2.AsyncClient(timeout=FETCH_TIMEOUT) as http:
        return await fetch_json(http, url)


async def _post(url: str, form: dict[str, str], credentials: tuple[str, str]) -> dict[str, Any]:
    async with httpx2.AsyncClient(timeout=FETCH_TIMEOUT) as http:
        return await fetch_json(http, url, data=form, auth=httpx2.BasicAuth(*credentials))


class IssuerMetadata:
    """One issuer's discovered metadata (RFC 8414 / OpenID), fetched on first use and after `refresh` seconds."""

    def __init__(self, issuer: str, refresh: float) -> None:
        self.issuer = issuer
        self._refresh = refresh
        self._found: dict[str, Any] | None = None
        self._at = float("-inf")
        self._lock = anyio.Lock()

    async def get(self) -> dict[str, Any]:
        async with self._lock:
            if self._found is None or time.monotonic() - self._at >= self._refresh:
                async with httpx2.AsyncClient(timeout=FETCH_TIMEOUT) as http:
                    self._found = await fetch_authorization_server(self.issuer, http)
                self._at = time.monotonic()
            return self._found

    async def endpoint(self, name: str) -> str:
        found = (await self.get()).get(name)
        if not isinstance(found, str):
            raise DiscoveryError(f"issuer {self.issuer!r}: its metadata has no `{name}`")
        return found


def _verifier(config: AuthConfig | TrustedProxyConfig, refresh: float, refetch: float) -> TokenVerifier:
    assert config.issuer is not None  # the config's validators
    metadata = IssuerMetadata(config.issuer, refresh)
    keys = IssuerKeys(
        config.issuer, config.jwks_uri, _get, metadata=metadata.get, refresh=refresh, unknown_refetch=refetch
    )
    introspector = None
    if isinstance(config, AuthConfig) and config.introspection is not None:
        settings = config.introspection
        endpoint = settings.endpoint

        async def introspection_endpoint() -> str:
            return endpoint or await metadata.endpoint("introspection_endpoint")

        introspector = Introspector(
            introspection_endpoint,
            settings.client_id,
            settings.client_secret.get_secret_value(),
            _post,
            cache_seconds=settings.cache_seconds,
        )
    return TokenVerifier(Rules.of(config), keys, introspector)


class Authenticator:
    """The portal's OAuth side of authentication (see the module docstring)."""

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        refresh, refetch = config.discovery_refresh, config.unknown_key_refetch
        self.issuer = _verifier(config, refresh, refetch) if config.issuer is not None else None
        proxy = config.trusted_proxy
        self.proxy = _verifier(proxy, refresh, refetch) if proxy is not None else None
        self.proxy_header = proxy.header.lower().encode() if proxy is not None else None

    async def bearer(self, token: str) -> Identity:
        if self.issuer is None:
            raise TokenRejectedError("the portal accepts no OAuth tokens (no `auth.issuer`)")
        return await self.issuer.verify(token)

    async def assertion(self, value: str) -> Identity:
        assert self.proxy is not None
        return await self.proxy.verify(value)
