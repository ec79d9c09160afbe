"""Asking the issuer about an opaque access token (RFC 7662 token introspection), with answers reused briefly.

```
introspector = Introspector(endpoint, client_id, secret, post, cache_seconds=60)
claims = await introspector.claims(token)   # the active token's claims, or TokenRejectedError
```
An answer is reused for `cache_seconds` (an active token's never past its `exp`), a refusal too, so a client
retrying a bad token does not reach the issuer on every request. Tokens are kept only as SHA-256 digests.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from portal_mcp.errors import TokenRejectedError

__all__ = ["MAX_CACHED", "Introspector", "Post"]

MAX_CACHED = 10_000
"""Answers kept at most (past it, expired ones go, then the oldest)."""

Post = Callable[[str, dict[str, str], tuple[str, str]], Awaitable[dict[str, Any]]]
"""POST a form with HTTP basic authentication and return the JSON object (raises DiscoveryError)."""


class Introspector:
    """One issuer's introspection endpoint, as the portal's own client (see the module docstring)."""

    def __init__(
        self,
        endpoint: Callable[[], Awaitable[str]],
        client_id: str,
        client_secret: str,
        post: Post,
        *,
        cache_seconds: float = 60.0,
    ) -> None:
        self._endpoint = endpoint
        self._credentials = (client_id, client_secret)
        self._post = post
        self._cache_seconds = cache_seconds
        self._answers: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self.requests = 0
        """How many times the issuer was asked (tests: the cache works)."""

    async def claims(self, token: str) -> dict[str, Any]:
        """The claims of an active token; TokenRejectedError for an inactive (revoked, expired, unknown) one."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.time()
        cached = self._answers.get(digest)
        if cached is not None and cached[0] > now:
            answer = cached[1]
        else:
            found = await self._post(
                await self._endpoint(), {"token": token, "token_type_hint": "access_token"}, self._credentials
            )
            self.requests += 1
            answer = found if found.get("active") is True else None
            until = now + self._cache_seconds
            exp = answer.get("exp") if answer is not None else None
            if isinstance(exp, int | float):
                until = min(until, exp)
            self._remember(digest, until, answer, now)
        if answer is None:
            raise TokenRejectedError("the issuer says the token is not active (revoked, expired or unknown)")
        return answer

    def _remember(self, digest: str, until: float, answer: dict[str, Any] | None, now: float) -> None:
        if self._cache_seconds <= 0:
            return
        if len(self._answers) >= MAX_CACHED:
            for key in [key for key, (expires, _) in self._answers.items() if expires <= now]:
                del self._answers[key]
            while len(self._answers) >= MAX_CACHED:
                del self._answers[next(iter(self._answers))]
        self._answers[digest] = (until, answer)
