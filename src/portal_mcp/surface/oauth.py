"""The portal as an OAuth resource server at its HTTP edge: Protected Resource Metadata (RFC 9728) and the
`WWW-Authenticate` challenges (RFC 6750) that point clients to it.

```
edge = OAuthEdge(config.auth, resolve=portal.principal)
edge.routes(guard)                  # GET /.well-known/oauth-protected-resource[/mcp]: where to get a token
principal, owner = await edge.identify(headers)   # or TokenRejectedError; None when no OAuth credential came
edge.challenge(exc)                 # `Bearer error="invalid_token", ..., resource_metadata="https://.../..."`
```
A client without a token gets `401` and the metadata URL, fetches the metadata, signs the user in at the issuer
(asking for a token for `resource`, RFC 8707) and comes back with it: the MCP authorization spec's flow.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.transport_security import TransportSecurityMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from portal_mcp.config import AuthConfig
from portal_mcp.control.oauth import Authenticator
from portal_mcp.control.principal import Principal
from portal_mcp.errors import TokenRejectedError
from portal_mcp.surface.principals import session_owner

__all__ = ["WELL_KNOWN", "OAuthEdge", "bearer_token"]

logger = logging.getLogger("portal_mcp.http")

WELL_KNOWN = "/.well-known/oauth-protected-resource"

_TOKEN = re.compile(rb"[A-Za-z0-9\-._~+/]+=*")
"""RFC 6750's b64token: what a bearer token may look like."""


def bearer_token(headers: Mapping[bytes, bytes]) -> bytes | None:
    """The token of `Authorization: Bearer <token>`, b"" for a malformed header, None for no header."""
    header = headers.get(b"authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(b" ")
    token = token.strip()
    if scheme.lower() != b"bearer" or not _TOKEN.fullmatch(token):
        return b""
    return token


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class OAuthEdge:
    """OAuth at the HTTP edge for one `auth:` section (see the module docstring)."""

    def __init__(self, config: AuthConfig, resolve: Callable[[str, tuple[str, ...]], Principal]) -> None:
        self.config = config
        self.authenticator = Authenticator(config)
        self._resolve = resolve
        self.metadata_url = self._metadata_url()

    def _metadata_url(self) -> str | None:
        """The path-suffixed metadata URL of the resource (RFC 9728 section 3.1)."""
        if self.config.resource is None:
            return None
        parts = urlsplit(self.config.resource)
        path = parts.path.rstrip("/")
        return urlunsplit((parts.scheme, parts.netloc, WELL_KNOWN + path, "", ""))

    def paths(self) -> list[str]:
        """Where the portal serves its metadata: the root well-known path, the one suffixed with `/mcp`, and the
        one suffixed with the resource URL's path (when a proxy in front serves the portal under another path)."""
        found = [WELL_KNOWN, f"{WELL_KNOWN}/mcp"]
        if self.metadata_url is not None:
            found.append(urlsplit(self.metadata_url).path)
        return list(dict.fromkeys(found))

    def metadata(self) -> dict[str, Any]:
        config = self.config
        document: dict[str, Any] = {
            "resource": config.resource,
            "authorization_servers": [config.issuer],
            "bearer_methods_supported": ["header"],
            "resource_name": config.resource_name,
        }
        if config.scopes:
            document["scopes_supported"] = list(config.scopes)
        return document

    def routes(self, guard: TransportSecurityMiddleware) -> list[Route]:
        """The metadata endpoints (public: a client reads them before it has a token); none without an issuer."""
        if self.config.issuer is None:
            return []

        async def metadata(request: Request) -> Response:
            if (refused := await guard.validate_request(request)) is not None:
                return refused
            headers = {"cache-control": "max-age=3600", "access-control-allow-origin": "*"}
            return JSONResponse(self.metadata(), headers=headers)

        return [Route(path, metadata, methods=["GET"]) for path in self.paths()]

    def challenge(self, refusal: TokenRejectedError | None = None) -> bytes:
        """The `WWW-Authenticate` value: Bearer with the metadata URL, the scopes, and the error (RFC 6750 3.1)."""
        params: list[str] = []
        if refusal is not None and refusal.error:
            params.append(f"error={_quoted(refusal.error)}")
            params.append(f"error_description={_quoted(refusal.reason)}")
        if self.metadata_url is not None:
            params.append(f"resource_metadata={_quoted(self.metadata_url)}")
        if self.config.scopes:
            params.append(f"scope={_quoted(' '.join(self.config.scopes))}")
        if not params:
            params.append('realm="portal-mcp"')
        return ("Bearer " + ", ".join(params)).encode()

    async def identify(self, headers: Mapping[bytes, bytes]) -> tuple[Principal, AuthenticatedUser] | None:
        """Who an OAuth token (or, without an Authorization header, the trusted proxy's assertion) says the caller
        is: their principal and the session owner the SDK checks. None when neither was sent; TokenRejectedError
        when one was and is not acceptable."""
        token = bearer_token(headers)
        try:
            if token == b"":
                raise TokenRejectedError("send `Authorization: Bearer <token>`")
            if token is not None:
                identity = await self.authenticator.bearer(token.decode("ascii"))
            elif self.authenticator.proxy_header is not None and self.authenticator.proxy_header in headers:
                assertion = headers[self.authenticator.proxy_header].decode("latin-1").strip()
                identity = await self.authenticator.assertion(assertion)
            else:
                return None
        except TokenRejectedError as exc:
            logger.info("token refused: %s", exc.reason, extra={"event": "token_refused"})
            raise
        principal = self._resolve(identity.user, identity.groups)
        return principal, session_owner(principal.name, identity.subject.encode())
