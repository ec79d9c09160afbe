"""Bearer-token authentication in front of the HTTP app: who is calling, carried in the ASGI scope."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from portal_mcp.control.principal import Principal
from portal_mcp.surface.principals import session_owner


class BearerAuth:
    """Requires `Authorization: Bearer <token>` matching a configured token (constant-time compare), and records
    whose token it was in the ASGI scope (`portal_user`: their `Principal`) so every search, run and call is
    attributed.

    Requests for a `public` path pass without a token (and without `portal_user`); the endpoint decides what an
    anonymous caller sees."""

    def __init__(self, app: ASGIApp, users: dict[str, Principal], public: frozenset[str] = frozenset()) -> None:
        self.app = app
        self._users = [(token.encode(), user) for token, user in users.items() if token]
        self._public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            user = self._identify(scope)
            if user is None and scope.get("path") in self._public:
                await self.app({k: v for k, v in scope.items() if k not in ("portal_user", "user")}, receive, send)
                return
            if user is None:
                body = b'{"error": "unauthorized", "error_description": "send Authorization: Bearer <token>"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b'Bearer realm="portal-mcp"'),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
            # `user`: the SDK refuses a session to any principal but the one that opened it (principals.py).
            scope = {**scope, "portal_user": user, "user": session_owner(user.name, self._presented(scope))}
        await self.app(scope, receive, send)

    @staticmethod
    def _presented(scope: Scope) -> bytes:
        header: bytes = dict(scope.get("headers") or []).get(b"authorization", b"")
        return header.partition(b" ")[2].strip()

    def _identify(self, scope: Scope) -> Principal | None:
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, presented = header.partition(b" ")
        if scheme.lower() != b"bearer" or not presented:
            return None
        # Compare against every token so timing does not reveal which one (or whether any) matched early.
        found: Principal | None = None
        for token, user in self._users:
            if hmac.compare_digest(presented.strip(), token):
                found = user
        return found
