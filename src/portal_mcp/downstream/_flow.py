"""One user connecting their account, in two halves that may run on different replicas.

`begin` runs the SDK's flow (an MCP `initialize` the server answers 401: discovery, the client, PKCE) up to the
authorization URL and stops there: what the second half needs (state, PKCE verifier, client, discovered metadata,
scope) goes into the pending flows of the state database. `finish` is the callback's half, on whichever replica
the browser comes back to: it checks the `iss` of the answer (RFC 9207), exchanges the code with the stored
verifier, and stores the connection.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode

import httpx2
from mcp.client.auth import OAuthClientProvider, PKCEParameters
from mcp.client.auth.utils import validate_authorization_response_iss

from portal_mcp.config import RemoteServerConfig
from portal_mcp.control.audit_store.connections import Record
from portal_mcp.downstream._oauth import CLIENT_NAME, StoredConnection, UserAuth
from portal_mcp.errors import ConnectionNeededError

_INITIALIZE: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": CLIENT_NAME, "version": "connect"},
    },
}


class _Published(BaseException):
    """The authorization URL is ready: the flow stops here and waits in the store, not in this process. (Not an
    `Exception`: the SDK logs those as flow errors on their way out.)"""


class _Starting(UserAuth):
    """The SDK's whole flow (discovery, the client), whose authorization step builds the URL and stops."""

    def __init__(self, config: RemoteServerConfig, storage: StoredConnection, redirect_uri: str) -> None:
        super().__init__(config, storage, redirect_uri=redirect_uri)
        self.redirect_uri = redirect_uri
        self.url = ""
        self.state = ""
        self.pending: Record = {}

    def _auth_flow(self, request: httpx2.Request) -> Any:
        return OAuthClientProvider._auth_flow(self, request)

    async def _perform_authorization_code_grant(self) -> tuple[str, str]:
        """As the SDK's: PKCE (S256), a random state, the resource indicator (RFC 8707), the scope."""
        context = self.context
        if context.client_info is None or context.oauth_metadata is None:
            raise ConnectionNeededError(self.server, self.storage.user, reason="the server's OAuth metadata is missing")
        pkce = PKCEParameters.generate()
        self.state = secrets.token_urlsafe(32)
        params = {
            "response_type": "code",
            "client_id": context.client_info.client_id,
            "redirect_uri": self.redirect_uri,
            "state": self.state,
            "code_challenge": pkce.code_challenge,
            "code_challenge_method": "S256",
        }
        if context.should_include_resource_param(context.protocol_version):
            params["resource"] = context.get_resource_url()
        if context.client_metadata.scope:
            params["scope"] = context.client_metadata.scope
            if "offline_access" in context.client_metadata.scope.split():
                params["prompt"] = "consent"
        self.url = f"{context.oauth_metadata.authorization_endpoint}?{urlencode(params)}"
        self.pending = {
            "verifier": pkce.code_verifier,
            "redirect_uri": self.redirect_uri,
            "scope": context.client_metadata.scope,
            "protocol_version": context.protocol_version,
            "client": context.client_info.model_dump(mode="json", exclude_none=True),
            "asm": context.oauth_metadata.model_dump(mode="json", exclude_none=True),
            "prm": (
                context.protected_resource_metadata.model_dump(mode="json", exclude_none=True)
                if context.protected_resource_metadata is not None
                else None
            ),
        }
        raise _Published


async def begin(config: RemoteServerConfig, storage: StoredConnection, redirect_uri: str) -> tuple[str, str, Record]:
    """Discover the server's authorization server, identify the portal to it (registering where needed), and build
    the authorization URL: (url, state, what `finish` needs). Raises `ConnectionNeededError` when the server does
    not lead to one."""
    auth = _Starting(config, storage, redirect_uri)
    headers = {"Accept": "application/json, text/event-stream", **config.headers}
    try:
        async with httpx2.AsyncClient(auth=auth, timeout=httpx2.Timeout(30.0)) as http:
            response = await http.post(config.url, json=_INITIALIZE, headers=headers)
    except _Published:
        return auth.url, auth.state, auth.pending
    except ConnectionNeededError:
        raise
    except Exception as exc:  # the SDK's OAuthFlowError / OAuthRegistrationError, an HTTP failure
        raise ConnectionNeededError(storage.server, storage.user, reason=f"{type(exc).__name__}: {exc}") from None
    raise ConnectionNeededError(
        storage.server, storage.user, reason=f"the server asked for no sign-in (HTTP {response.status_code})"
    )


async def finish(config: RemoteServerConfig, storage: StoredConnection, pending: Record, code: str,
                 iss: str | None) -> None:  # fmt: skip
    """Exchange the authorization code (with the flow's PKCE verifier) for tokens and store them as `storage`'s
    connection. Raises `ConnectionNeededError` saying why when the authorization server refuses."""
    storage.record = {key: pending[key] for key in ("client", "asm", "prm") if pending.get(key)}
    auth = UserAuth(config, storage, redirect_uri=str(pending["redirect_uri"]))
    await auth._initialize()
    auth.context.client_metadata.scope = pending.get("scope")
    auth.context.protocol_version = pending.get("protocol_version")
    try:
        validate_authorization_response_iss(iss, auth.context.oauth_metadata)
        request = await auth._exchange_token_authorization_code(code, str(pending["verifier"]))
        async with httpx2.AsyncClient(timeout=httpx2.Timeout(30.0)) as http:
            response = await http.send(request)
        await auth._handle_token_response(response)
    except Exception as exc:  # the SDK's OAuthFlowError / OAuthTokenError, an HTTP failure
        raise ConnectionNeededError(storage.server, storage.user, reason=f"{type(exc).__name__}: {exc}") from None
