"""An issuer's signing keys (its JWKS), cached, with key rotation and a bound on refetching.

```
keys = IssuerKeys(issuer, jwks_uri=None, fetch=fetch)   # jwks_uri None: the issuer's discovered metadata says
key = await keys.key("kid-2025", "RS256")               # a public key object for jwt.decode, or None
```
The key set is fetched on first use and again after `refresh` seconds. A token naming a key id the cached set does
not have (the issuer rotated its keys) fetches the set once more, but at most once per `unknown_refetch` seconds, so
tokens with made-up key ids cannot make the portal hammer the issuer. Concurrent fetches are one fetch.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import jwt

from portal_mcp.control.oauth.discovery import DiscoveryError

__all__ = ["Fetch", "IssuerKeys"]

Fetch = Callable[[str], Awaitable[dict[str, Any]]]
"""GET a URL's JSON object (discovery.fetch_json bound to an HTTP client), raising DiscoveryError."""

FAILURE_BACKOFF = 5.0
"""Seconds a failed fetch is answered from memory before the issuer is tried again."""

_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
"""The JWK `kty` each algorithm family signs with."""


class IssuerKeys:
    """The public keys one issuer signs with (see the module docstring)."""

    def __init__(
        self,
        issuer: str,
        jwks_uri: str | None,
        fetch: Fetch,
        *,
        metadata: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        refresh: float = 3600.0,
        unknown_refetch: float = 30.0,
    ) -> None:
        self.issuer = issuer
        self._jwks_uri = jwks_uri
        self._fetch = fetch
        self._metadata = metadata
        self._refresh = refresh
        self._unknown_refetch = unknown_refetch
        self._keys: list[dict[str, Any]] | None = None
        self._fetched_at = float("-inf")
        self._lock = anyio.Lock()
        self._failure: tuple[float, DiscoveryError] | None = None
        self.fetches = 0
        """How many times the key set was fetched (tests and the rate bound)."""

    async def key(self, kid: str | None, alg: str) -> Any | None:
        """The public key for a token's `kid` and `alg`, or None when the issuer publishes none (after at most one
        refetch in `unknown_refetch` seconds). Raises DiscoveryError when the keys cannot be fetched at all."""
        now = time.monotonic()
        if self._keys is None or now - self._fetched_at >= self._refresh:
            await self._load(self._fetched_at)
        found = self._pick(kid, alg)
        if found is None and time.monotonic() - self._fetched_at >= self._unknown_refetch:
            await self._load(self._fetched_at)  # a rotation the cached set does not have yet
            found = self._pick(kid, alg)
        return found

    async def _load(self, seen: float) -> None:
        async with self._lock:
            if self._fetched_at != seen:
                return  # another task fetched while this one waited
            if self._failure is not None and time.monotonic() - self._failure[0] < FAILURE_BACKOFF:
                if self._keys is not None:
                    return  # keep using the keys we have while the issuer is unreachable
                raise self._failure[1]
            try:
                uri = self._jwks_uri or await self._discovered_uri()
                document = await self._fetch(uri)
                keys = document.get("keys")
                if not isinstance(keys, list):
                    raise DiscoveryError(f"{uri}: not a JWK set (no `keys` list)")
            except DiscoveryError as exc:
                self._failure = (time.monotonic(), exc)
                if self._keys is not None:
                    return
                raise
            self._keys = [key for key in keys if isinstance(key, dict)]
            self._fetched_at = time.monotonic()
            self._failure = None
            self.fetches += 1

    async def _discovered_uri(self) -> str:
        if self._metadata is None:
            raise DiscoveryError(f"no jwks_uri for issuer {self.issuer!r}: configure one")
        uri = (await self._metadata()).get("jwks_uri")
        if not isinstance(uri, str):
            raise DiscoveryError(f"issuer {self.issuer!r}: its metadata has no `jwks_uri`")
        return uri

    def _pick(self, kid: str | None, alg: str) -> Any | None:
        kty = _KEY_TYPES.get(alg[:2])
        candidates = [
            key
            for key in self._keys or ()
            if key.get("kty") == kty
            and key.get("use", "sig") == "sig"
            and key.get("alg", alg) == alg
            and (kid is None or key.get("kid") == kid)
        ]
        if kid is None and len(candidates) != 1:
            return None  # without a key id, only an unambiguous key set will do
        for candidate in candidates:
            public = {name: value for name, value in candidate.items() if name not in ("d", "p", "q", "dp", "dq", "qi")}
            try:
                return jwt.PyJWK(public, alg).key
            except jwt.PyJWKError:
                continue
        return None
