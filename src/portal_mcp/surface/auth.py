"""Authentication in front of the HTTP app: who is calling, carried in the ASGI scope.

Static bearer tokens (`http.users.NAME.token`, `http.bearer_tokens`) and, with an `auth:` section, OAuth access
tokens from the identity provider or a trusted proxy's assertion (surface/oauth.py) work side by side.
"""

from __future__ import annotations

import hmac
import json

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.types import ASGIApp, Receive, Scope, Send

from portal_mcp.config import AuthConfig, HttpConfig, is_loopback
from portal_mcp.control.principal import Principal
from portal_mcp.errors import ConfigError, TokenRejectedError
from portal_mcp.surface.oauth import OAuthEdge
from portal_mcp.surface.principals import session_owner


class BearerAuth:
    """Requires `Authorization: Bearer <token>` matching a configured token (constant-time compare) or, with `oauth`,
    an access token its issuer vouches for, and records whose token it was in the ASGI scope (`portal_user`: their
    `Principal`) so every search, run and call is attributed.

    A refused request gets `401` (`403` for a token without a required scope; `503` when the identity provider
    cannot be reached to check one) and goes no further: no session, no audit record. Requests for a `public` path
    pass without a token (and without `portal_user`); the endpoint decides what an anonymous caller sees."""

    def __init__(
        self,
        app: ASGIApp,
        users: dict[str, Principal],
        public: frozenset[str] = frozenset(),
        oauth: OAuthEdge | None = None,
    ) -> None:
        self.app = app
        self._users = [(token.encode(), user) for token, user in users.items() if token]
        self._public = public
        self._oauth = oauth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        public = scope.get("path") in self._public
        try:
            found = await self._identify(scope)
        except TokenRejectedError as exc:
            if not public:
                await self._refuse(send, exc)
                return
            found = None
        if found is None and public:
            await self.app({k: v for k, v in scope.items() if k not in ("portal_user", "user")}, receive, send)
            return
        if found is None:
            await self._refuse(send, None)
            return
        # `user`: the SDK refuses a session to any principal but the one that opened it (principals.py).
        user, owner = found
        await self.app({**scope, "portal_user": user, "user": owner}, receive, send)

    async def _identify(self, scope: Scope) -> tuple[Principal, AuthenticatedUser] | None:
        headers = dict(scope.get("headers") or [])
        scheme, _, presented = headers.get(b"authorization", b"").partition(b" ")
        presented = presented.strip()
        if scheme.lower() == b"bearer" and presented:
            # Compare against every token so timing does not reveal which one (or whether any) matched early.
            static: Principal | None = None
            for token, user in self._users:
                if hmac.compare_digest(presented, token):
                    static = user
            if static is not None:
                return static, session_owner(static.name, presented)
        if self._oauth is not None:
            return await self._oauth.identify(headers)
        return None

    async def _refuse(self, send: Send, refusal: TokenRejectedError | None) -> None:
        status = refusal.status if refusal is not None else 401
        if refusal is not None and refusal.error:
            body = {"error": refusal.error, "error_description": refusal.reason}
        elif refusal is not None:
            body = {"error": "temporarily_unavailable", "error_description": refusal.reason}
        else:
            body = {"error": "unauthorized", "error_description": "send Authorization: Bearer <token>"}
        challenge = self._oauth.challenge(refusal) if self._oauth is not None else b'Bearer realm="portal-mcp"'
        headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
        if status in (401, 403):
            headers.append((b"www-authenticate", challenge))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def static_tokens(http: HttpConfig) -> list[str]:
    """Every bearer token the config hands out (anonymous ones and users')."""
    return [*http.bearer_tokens, *(user.token for user in http.users.values() if user.token is not None)]


def check_bind(host: str, http: HttpConfig, source: str | None = None, auth: AuthConfig | None = None) -> None:
    """Refuse to expose the portal beyond this machine without bearer tokens or OAuth (`auth:`)."""
    tokens = static_tokens(http)  # each non-empty and one caller's: checked when the config was loaded
    if not is_loopback(host) and not tokens and auth is None:
        raise ConfigError(
            f"refusing to serve on {host!r} without authentication: binding beyond loopback needs "
            "`http: {bearer_tokens: [...]}` or `http: {users: {NAME: {token: ...}}}` in the config "
            "(e.g. `- ${PORTAL_TOKEN}`), or an identity provider in `auth:`",
            source=source,
        )
