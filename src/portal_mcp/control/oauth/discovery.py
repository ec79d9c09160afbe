"""Finding an OAuth authorization server's metadata (RFC 8414, OpenID Connect Discovery) and a protected resource's
metadata (RFC 9728), in the order the MCP authorization spec gives.

```
urls = authorization_server_urls("https://idp.example.com/tenant1")
# https://idp.example.com/.well-known/oauth-authorization-server/tenant1
# https://idp.example.com/.well-known/openid-configuration/tenant1
# https://idp.example.com/tenant1/.well-known/openid-configuration
metadata = await fetch_authorization_server("https://idp.example.com/tenant1", http)   # its `issuer` is checked
resource = await fetch_protected_resource("https://mcp.example.com/mcp", http)         # its `resource` is checked
```
Used by the portal as a resource server (its issuer's `jwks_uri`, `introspection_endpoint`) and as a client of
OAuth-protected downstream servers. Documents are JSON objects of at most `MAX_DOCUMENT_BYTES`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2

from portal_mcp.errors import PortalError

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "DiscoveryError",
    "authorization_server_urls",
    "fetch_authorization_server",
    "fetch_json",
    "fetch_protected_resource",
    "protected_resource_urls",
]

MAX_DOCUMENT_BYTES = 1_000_000
"""The largest metadata, key set or introspection answer read from an authorization server."""


class DiscoveryError(PortalError):
    """Metadata could not be fetched or is not what was asked for; the message names the URL(s) tried. `unreachable`:
    no server answered (refused, timed out) or it failed (5xx, 429), so trying later may work; otherwise an answer
    said the configuration or the metadata is wrong."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def _well_known(url: str, name: str) -> tuple[str, str]:
    """(`/.well-known/NAME` inserted before the path, appended after it) for `url` (RFC 8414 section 3.1)."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    inserted = urlunsplit((parts.scheme, parts.netloc, f"/.well-known/{name}{path}", "", ""))
    appended = urlunsplit((parts.scheme, parts.netloc, f"{path}/.well-known/{name}", "", ""))
    return inserted, appended


def authorization_server_urls(issuer: str) -> list[str]:
    """Where an issuer's metadata may be, in the order to try: RFC 8414 with the issuer's path inserted, OpenID
    Connect Discovery inserted then appended (an issuer without a path has only the first two)."""
    oauth, _ = _well_known(issuer, "oauth-authorization-server")
    openid_inserted, openid_appended = _well_known(issuer, "openid-configuration")
    return list(dict.fromkeys([oauth, openid_inserted, openid_appended]))


def protected_resource_urls(resource: str) -> list[str]:
    """Where a resource's RFC 9728 metadata may be: the path-suffixed well-known URL, then the root one."""
    parts = urlsplit(resource)
    suffixed, _ = _well_known(resource, "oauth-protected-resource")
    root = urlunsplit((parts.scheme, parts.netloc, "/.well-known/oauth-protected-resource", "", ""))
    return list(dict.fromkeys([suffixed, root]))


async def fetch_json(http: httpx2.AsyncClient, url: str, **request: Any) -> dict[str, Any]:
    """GET (or, with `data=`, POST) `url` and return its JSON object; at most `MAX_DOCUMENT_BYTES` are read."""
    method = "POST" if "data" in request else "GET"
    headers = {"accept": "application/json", **request.pop("headers", {})}
    try:
        async with http.stream(method, url, headers=headers, **request) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise DiscoveryError(f"{url}: the answer is larger than {MAX_DOCUMENT_BYTES} bytes")
            if response.status_code != 200:
                failing = response.status_code >= 500 or response.status_code == 429
                raise DiscoveryError(f"{url}: HTTP {response.status_code}", unreachable=failing)
    except httpx2.HTTPError as exc:
        raise DiscoveryError(f"{url}: {type(exc).__name__}: {exc}", unreachable=True) from None
    try:
        found = json.loads(body)
    except ValueError:
        raise DiscoveryError(f"{url}: the answer is not JSON") from None
    if not isinstance(found, dict):
        raise DiscoveryError(f"{url}: the answer is not a JSON object")
    return found


async def fetch_authorization_server(issuer: str, http: httpx2.AsyncClient) -> dict[str, Any]:
    """The issuer's metadata from the first well-known URL that has it; its `issuer` must be `issuer` exactly
    (RFC 8414 section 3.3: otherwise a server could pass off another's keys)."""
    tried: list[DiscoveryError] = []
    for url in authorization_server_urls(issuer):
        try:
            found = await fetch_json(http, url)
        except DiscoveryError as exc:
            tried.append(exc)
            continue
        if found.get("issuer") != issuer:
            raise DiscoveryError(
                f"{url} describes issuer {found.get('issuer')!r}, not {issuer!r}: write the issuer exactly as the "
                "identity provider's metadata does (a trailing slash counts)"
            )
        return found
    raise _none_found(f"no metadata for issuer {issuer!r}", tried)


async def fetch_protected_resource(resource: str, http: httpx2.AsyncClient) -> dict[str, Any]:
    """A protected resource's RFC 9728 metadata; its `resource` must be `resource` (section 3.3)."""
    tried: list[DiscoveryError] = []
    for url in protected_resource_urls(resource):
        try:
            found = await fetch_json(http, url)
        except DiscoveryError as exc:
            tried.append(exc)
            continue
        if found.get("resource") != resource:
            raise DiscoveryError(f"{url} describes resource {found.get('resource')!r}, not {resource!r}")
        return found
    raise _none_found(f"no protected resource metadata for {resource!r}", tried)


def _none_found(what: str, tried: list[DiscoveryError]) -> DiscoveryError:
    """Every well-known URL failed: unreachable when none of them answered (a 404 among them is an answer)."""
    unreachable = all(each.unreachable for each in tried)
    return DiscoveryError(f"{what} ({'; '.join(map(str, tried))})", unreachable=unreachable)
