"""The portal as each user's OAuth client to a remote server (`oauth:`), on top of the SDK's `OAuthClientProvider`.

The SDK does the protocol: discovery (RFC 9728 protected resource metadata from the 401, then RFC 8414 / OpenID
discovery), the client (Client ID Metadata Document where the server supports it, else dynamic registration, or the
configured static client), authorization code with PKCE (S256) and the `resource` indicator (RFC 8707), refresh.
This module keeps what it learns per (user, server) in the connection store (`StoredConnection`), and adds what a
portal needs on top (`UserAuth`): a call never starts an authorization (a user who has not connected is told how to,
`ConnectionNeededError`), a 401 mid-session is answered by one refresh before giving up, and a grant that no refresh
can restore marks the connection lost so the caller is told to reconnect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import NoReturn

import anyio
import httpx2
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.auth.utils import extract_field_from_www_auth
from mcp.shared.auth import (
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthMetadata,
    OAuthToken,
    ProtectedResourceMetadata,
)
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from pydantic import AnyUrl, ValidationError

from portal_mcp.config import RemoteServerConfig
from portal_mcp.config.oauth import OAuthConfig
from portal_mcp.control.audit_store.connections import ConnectionStore, Record
from portal_mcp.errors import AuditStoreError, ConnectionNeededError, DownstreamError

logger = logging.getLogger("portal_mcp.downstream")

CLIENT_NAME = "portal-mcp"


def oauth_of(config: RemoteServerConfig) -> OAuthConfig:
    assert config.oauth is not None, "only servers with `oauth:`"
    return config.oauth


class StoredConnection:
    """The SDK's `TokenStorage` for one (user, server): the sealed record in the connection store. The discovered
    metadata and the absolute expiry are kept beside the tokens, so a portal that restarts (or another replica)
    refreshes at the right endpoint and time."""

    def __init__(
        self,
        store: ConnectionStore,
        user: str,
        server: str,
        *,
        fresh: bool = False,
        on_secret: Callable[[Iterable[str], float | None], None] | None = None,
    ) -> None:
        self.store = store
        self._on_secret = on_secret
        """Told every token and client secret this connection holds, with when its access token expires (the portal's
        redaction takes them out, and forgets them once they have expired and been replaced)."""
        self.user = user
        self.server = server
        self.record: Record = {}
        self._fresh = fresh
        """Connecting anew: start from nothing, write only what this flow produces."""
        self.provider: OAuthClientProvider | None = None
        self.unsaved = False
        """Tokens a refresh got that the store could not take: held here (the stored refresh token may be spent,
        the authorization server rotating them) and written by `save` before the connection is used again."""

    async def load(self) -> Record:
        if self.unsaved:
            return self.record  # newer than the stored one
        if not self._fresh:
            found = await anyio.to_thread.run_sync(self.store.get, self.user, self.server)
            self.record = found or {}
        self.record_secrets()
        return self.record

    def record_secrets(self) -> None:
        if self._on_secret is not None:
            tokens, client = self.record.get("tokens") or {}, self.record.get("client") or {}
            found = [tokens.get("access_token"), tokens.get("refresh_token"), client.get("client_secret")]
            expires_at = self.record.get("expires_at")
            until = float(expires_at) if isinstance(expires_at, int | float) else None
            self._on_secret([value for value in found if isinstance(value, str) and value], until)

    async def get_tokens(self) -> OAuthToken | None:
        tokens = self.record.get("tokens")
        return OAuthToken.model_validate(tokens) if tokens else None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        context = self.provider.context if self.provider is not None else None
        self.record["tokens"] = tokens.model_dump(mode="json", exclude_none=True)
        self.record["expires_at"] = context.token_expiry_time if context is not None else None
        if context is not None and context.oauth_metadata is not None:
            self.record["asm"] = context.oauth_metadata.model_dump(mode="json", exclude_none=True)
        if context is not None and context.protected_resource_metadata is not None:
            self.record["prm"] = context.protected_resource_metadata.model_dump(mode="json", exclude_none=True)
        self.record["at"] = time.time()
        self.record_secrets()
        if self._fresh:  # connecting: the user is there to be told the store failed, and can connect again
            await anyio.to_thread.run_sync(self.store.put, self.user, self.server, dict(self.record))
        else:
            self.unsaved = True
            await self.save()

    async def save(self) -> bool:
        """Write refreshed tokens the store has not taken yet; True once it has. A store that cannot take them
        now keeps them `unsaved` here, with a warning: the call goes on with them, and the next one writes again.
        Losing them instead would end the grant wherever the old refresh token is the only one left (a restart,
        another replica): it was spent by the refresh."""
        if not self.unsaved:
            return True
        try:
            await anyio.to_thread.run_sync(self.store.put, self.user, self.server, dict(self.record))
        except AuditStoreError as exc:
            logger.warning("server %r: user %r's refreshed tokens are held in memory until the store takes them: %s",
                           self.server, self.user, exc)  # fmt: skip
            return False
        self.unsaved = False
        return True

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        client = self.record.get("client")
        return OAuthClientInformationFull.model_validate(client) if client else None

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.record["client"] = client_info.model_dump(mode="json", exclude_none=True)


def client_metadata(oauth: OAuthConfig, redirect_uri: str, *, confidential: bool) -> OAuthClientMetadata:
    return OAuthClientMetadata(
        client_name=CLIENT_NAME,
        redirect_uris=[AnyUrl(redirect_uri)],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="client_secret_post" if confidential else "none",
        scope=oauth.scope(),
    )


def static_client(oauth: OAuthConfig, redirect_uri: str) -> OAuthClientInformationFull | None:
    """The client registered by hand (`client_id`, `client_secret`), as the SDK's stored client record."""
    if oauth.client_id is None:
        return None
    secret = oauth.client_secret.get_secret_value() if oauth.client_secret is not None else None
    return OAuthClientInformationFull(
        client_id=oauth.client_id,
        client_secret=secret,
        redirect_uris=[AnyUrl(redirect_uri)],
        grant_types=["authorization_code", "refresh_token"],
        token_endpoint_auth_method="client_secret_post" if secret else "none",
        scope=oauth.scope(),
    )


class UserAuth(OAuthClientProvider):
    """`httpx2.Auth` of one user's connection to one server: their stored token on every request, refreshed when
    it expires or is refused (401) once; never a new authorization (that needs the user: `ConnectionNeededError`).

    `lost` is set when the server refused the connection and no refresh restored it: the grant was revoked or
    expired, and the user must reconnect."""

    def __init__(
        self,
        config: RemoteServerConfig,
        storage: StoredConnection,
        *,
        redirect_uri: str = "http://127.0.0.1/oauth/callback",
        redirect_handler: Callable[[str], Awaitable[None]] | None = None,
        callback_handler: Callable[[], Awaitable[AuthorizationCodeResult]] | None = None,
    ) -> None:
        oauth = oauth_of(config)
        super().__init__(
            config.url,
            client_metadata(oauth, redirect_uri, confidential=oauth.client_secret is not None),
            storage,
            redirect_handler=redirect_handler or self._needs_user,
            callback_handler=callback_handler,
            client_metadata_url=oauth.client_metadata_url,
        )
        self.storage = storage
        storage.provider = self
        self.server = storage.server
        self.lost = False
        self.unavailable: DownstreamError | None = None
        """Why the last refresh could not be made (the authorization server busy or down): the call's error."""
        self._refused: str | None = None
        """The access token the server refused (401): it is not sent again."""
        self.seen: str | None = None
        """The sealed record this auth last loaded (`Accounts.check` reloads when the store holds another)."""
        self._static = static_client(oauth, redirect_uri)

    def reload(self) -> None:
        """Read the stored connection again before the next request."""
        self._initialized = False
        self.lost = False

    async def _needs_user(self, url: str) -> None:
        self.lost = True
        raise ConnectionNeededError(self.server, self.storage.user, reconnect=True)

    async def _initialize(self) -> None:
        record = await self.storage.load()
        await super()._initialize()
        if self.context.client_info is None and self._static is not None:
            self.context.client_info = self._static
            await self.storage.set_client_info(self._static)
        context = self.context
        try:
            if record.get("asm"):
                context.oauth_metadata = OAuthMetadata.model_validate(record["asm"])
            if record.get("prm"):
                context.protected_resource_metadata = ProtectedResourceMetadata.model_validate(record["prm"])
                servers = context.protected_resource_metadata.authorization_servers
                context.auth_server_url = str(servers[0]) if servers else None
        except ValidationError:
            logger.warning("server %r: the stored metadata of user %r's connection is unreadable", self.server,
                           self.storage.user)  # fmt: skip
        expires_at = record.get("expires_at")
        context.token_expiry_time = float(expires_at) if isinstance(expires_at, int | float) else None

    async def _auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        """A call with the user's stored token: without a stored connection nothing is sent (the user must connect
        first); an expired token is refreshed first (`_refresh`); a 401 is answered by one refresh; a 401 no refresh
        cures, a refresh the authorization server refuses, or a 403 asking for more scope means the grant is gone
        (`lost`: the user must reconnect).

        Not the SDK's flow: that one holds the auth's lock across the call itself, decides to refresh outside the
        connection's lock (an expiry passing between two checks sent a refresh token no other replica was kept
        from sending), and takes a 401 for a cue to authorize anew."""
        async with self.context.lock:  # a read of the store never lands over a refresh made meanwhile
            if not self._initialized:
                await self._initialize()
        if self.context.current_tokens is None:
            raise ConnectionNeededError(self.server, self.storage.user)
        self.context.protocol_version = request.headers.get(MCP_PROTOCOL_VERSION_HEADER)
        if self.storage.unsaved:  # the store refused refreshed tokens earlier: write them before going on
            async with self._locked():
                await self.storage.save()
        retried = False
        while True:
            if not self._usable():
                refreshing = self._refresh()
                try:
                    outgoing = await refreshing.__anext__()  # none when the stored tokens were refreshed elsewhere
                    while True:
                        outgoing = await refreshing.asend((yield outgoing))
                except StopAsyncIteration:
                    pass
                finally:
                    await refreshing.aclose()
            tokens = self.context.current_tokens
            if tokens is None:  # another call's refresh was refused meanwhile
                self._gone()
            request.headers["Authorization"] = f"Bearer {tokens.access_token}"
            response = yield request
            if response.status_code == 403 and extract_field_from_www_auth(response, "error") == "insufficient_scope":
                self._gone()  # the grant does not cover the call: only connecting again asks for more
            if response.status_code != 401:
                return
            if retried:
                self._gone()
            retried = True
            if self.context.current_tokens is tokens:
                self._refused = tokens.access_token  # the next pass refreshes (or takes another replica's) first

    def _usable(self) -> bool:
        """Whether the held access token is unexpired (by the expiry this portal holds) and not refused already."""
        tokens = self.context.current_tokens
        return self.context.is_token_valid() and tokens is not None and tokens.access_token != self._refused

    async def _refresh(self) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        """Read, refresh and store under the connection's lock (every replica's and every link's): the stored tokens
        when another holder refreshed them meanwhile, else one refresh request whose result is stored before the lock
        is released. Oidc-provider and others rotate refresh tokens and end the whole grant when one is used twice,
        so no two holders may refresh from the same stored token. The auth's own lock is held too: reading the store
        again (`reload`) while this refresh runs would put the refreshed tokens back to the stored, stale ones."""
        async with self._locked():
            await self._adopt_stored()
            if self._usable():
                return
            if not self.context.can_refresh_token():
                self._gone()
            response = yield await self._refresh_token()
            if response.status_code >= 500 or response.status_code == 429:
                raise self._unavailable(response)
            if not await self._handle_refresh_response(response):  # it logs why, and forgets the tokens
                self._gone()

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        """The connection's lock (every replica's and every link's) and the auth's own, held together."""
        async with self.context.lock:
            release = await anyio.to_thread.run_sync(self.storage.store.lock, self.storage.user, self.server)
            try:
                yield
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(release)

    def _unavailable(self, response: httpx2.Response) -> DownstreamError:
        """The authorization server could not refresh just now (5xx, 429): the grant is not in question, so the
        tokens and the connection are kept and the next call tries again."""
        logger.warning("server %r: the authorization server answered HTTP %d to refreshing user %r's token",
                       self.server, response.status_code, self.storage.user)  # fmt: skip
        self.unavailable = DownstreamError(
            self.server,
            f"the authorization server answered HTTP {response.status_code} to refreshing user "
            f"{self.storage.user!r}'s token, so the call was not sent; the connection is kept: run the code again "
            "shortly",
        )
        return self.unavailable

    def _gone(self) -> NoReturn:
        self.lost = True
        self._initialized = False  # the next call reads the store again (reconnected, or refreshed elsewhere)
        raise ConnectionNeededError(self.server, self.storage.user, reconnect=True)

    async def _adopt_stored(self) -> None:
        """Take the stored tokens when they are not the ones held here (refreshed elsewhere), unless the ones held
        here are newer: refreshed here while the store could not take them (then they are written now, if it can)."""
        if not await self.storage.save():
            return
        held = self.context.current_tokens
        record = await StoredConnection(self.storage.store, self.storage.user, self.server).load()
        tokens = record.get("tokens")
        if tokens and held is not None and tokens.get("access_token") != held.access_token:
            self.storage.record = record
            self.storage.record_secrets()
            self.context.current_tokens = OAuthToken.model_validate(tokens)
            expires_at = record.get("expires_at")
            self.context.token_expiry_time = float(expires_at) if isinstance(expires_at, int | float) else None
