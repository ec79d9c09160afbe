"""Who an HTTP request is, in the form the MCP SDK checks sessions against.

The SDK binds a streamable HTTP session to the principal in `scope["user"]` that opened it (an `AuthenticatedUser`)
and answers any later request on that session from another principal with `404 Session not found`, logging it
(`mcp.server.streamable_http_manager`: "credential does not match"). Without it, anyone holding a token and another
user's session id could answer that user's approval questions, cancel their calls or read their stream.
"""

from __future__ import annotations

import hashlib

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken


def session_owner(user: str, token: bytes) -> AuthenticatedUser:
    """The principal of a request authenticated as `user` with `token`.

    The subject is a digest of the token (never the token), so two anonymous callers (`http.bearer_tokens`, all
    named the same user) do not share sessions either."""
    subject = hashlib.sha256(token).hexdigest()[:32]
    return AuthenticatedUser(AccessToken(token="", client_id=user, scopes=[], subject=subject))
