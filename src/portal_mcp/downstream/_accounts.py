"""The pool's `oauth:` servers: whose connection lists their tools, each user's `UserAuth`, "connect your account".

An `oauth:` server is a per-user server (like one whose headers say `${user.KEY}`): each calling user has their own
link, authenticated with their own stored tokens. Its tools are listed by the `list_as` user's link, else by the
first user who connected (the earliest stored connection), else by the local user's (which fails until someone
connects, and is retried in the background). A server with `oauth: {token_exchange: ...}` needs no stored connection:
each user's sign-in token is exchanged for one of the server (`_token_exchange`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeVar

import anyio
import mcp_types as types

from portal_mcp.config import CONNECT_WAIT, RemoteServerConfig, ServerConfig
from portal_mcp.control.audit_store.connections import ConnectionStore
from portal_mcp.control.credentials import Redactor
from portal_mcp.downstream._asking import CallContext
from portal_mcp.downstream._connect import Connector
from portal_mcp.downstream._link import Link
from portal_mcp.downstream._oauth import StoredConnection, UserAuth, oauth_of
from portal_mcp.downstream._token_exchange import LISTING, ExchangeAuth, Exchanges
from portal_mcp.errors import ConnectionNeededError, DownstreamError

T = TypeVar("T")


class Accounts:
    """Users' connected accounts for the pool's `oauth:` servers, kept in `store` (None: no server is managed)."""

    def __init__(
        self,
        store: ConnectionStore | None,
        servers: Mapping[str, ServerConfig],
        local_user: str,
        redactor: Redactor,
        *,
        connect_wait: float = CONNECT_WAIT,
    ) -> None:
        self._store = store
        self._connect_wait = connect_wait
        self._redactor = redactor
        self._servers = {
            name: config
            for name, config in servers.items()
            if isinstance(config, RemoteServerConfig)
            and config.oauth is not None
            and config.oauth.token_exchange is None
            and not config.disabled
        }
        self.exchanges = Exchanges(servers, redactor)
        self._local_user = local_user
        self.connector: Connector | None = None
        self._auths: dict[tuple[str, str], UserAuth] = {}

    @property
    def store(self) -> ConnectionStore:
        assert self._store is not None, "only used for managed servers"
        return self._store

    def manages(self, server: str) -> bool:
        return server in self.exchanges or (self._store is not None and server in self._servers)

    def linked(self, server: str, link: Link) -> Link:
        """`link` (the server's own); an exchange server's wakes up to list its tools when someone signs in."""
        if server in self.exchanges:
            self.exchanges.subjects.listeners.append(lambda user: link.retry_soon())
        return link

    def start(self) -> None:
        if self._store is not None and self._servers:
            self.connector = Connector(self._store, self._servers, timeout=self._connect_wait)

    async def listing(self, server: str) -> tuple[str, UserAuth | ExchangeAuth]:
        """Whose connection lists the tools of `server` (`list_as`, else the user whose connection is the oldest,
        else the local user; an exchange server: whoever signed in last), and their auth."""
        if server in self.exchanges:
            return LISTING, self.exchanges.auth(server, LISTING)
        user = self._servers[server].list_as
        if user is None:
            rows = await anyio.to_thread.run_sync(self.store.listing)
            connected = sorted((at, name) for name, each, at in rows if each == server)
            user = connected[0][1] if connected else self._local_user
        return user, self.auth(server, user)

    def auth(self, server: str, user: str) -> UserAuth | ExchangeAuth:
        """`user`'s auth for `server`, one per (server, user): their links share its refreshed tokens."""
        if server in self.exchanges:
            return self.exchanges.auth(server, user)
        key = (server, user)
        found = self._auths.get(key)
        if found is None:
            storage = StoredConnection(self.store, user, server, on_secret=self._secrets(server, user))
            found = self._auths[key] = UserAuth(self._servers[server], storage)
        return found

    async def call(
        self, server: str, user: str | None, attempt: Callable[[], Awaitable[T]], context: CallContext | None
    ) -> T:
        """`attempt` a call to the managed `server` as `user`. When they have not connected (or their grant is gone)
        and the run's client opens URLs, they are asked to connect (URL-mode elicitation), the run waits until they
        have, and the call is made then; otherwise, or when they decline or do not finish, `ConnectionNeededError`
        says how to connect."""
        if server in self.exchanges:
            await self.exchanges.prepare(server, user)  # a TokenExchangeError says why not
            return await attempt()
        if user is None:
            raise ConnectionNeededError(server, "(nobody)", reason="the call has no user")
        reconnect, problem = False, None
        for asked in (False, True):
            if await self._connected(server, user):
                try:
                    return await attempt()
                except ConnectionNeededError:  # the grant is gone (`lost`)
                    reconnect = True
            if asked:
                break
            problem = await self._ask(server, user, context)
            if problem is not None:
                break
        raise await self.needed(server, user, reconnect=reconnect, reason=problem or None)

    async def _connected(self, server: str, user: str) -> bool:
        """Whether `user` has a stored connection to `server`; one changed in the store since this portal last read
        it (connected again, refreshed by another replica) is read again before the call."""
        sealed = await anyio.to_thread.run_sync(self.store.raw, user, server)
        if sealed is None:
            return False
        auth = self.auth(server, user)
        assert isinstance(auth, UserAuth)
        if auth.seen != sealed:
            auth.reload()
            auth.seen = sealed
        return True

    async def _ask(self, server: str, user: str, context: CallContext | None) -> str | None:
        """Ask `user` to connect through their client (None once they have), or why not ("": nobody to ask)."""
        redirect = oauth_of(self._servers[server]).redirect_uri
        connector = self.connector
        if context is None or context.connect is None or connector is None or redirect is None:
            return ""
        try:
            flow = await connector.start(server, user, redirect)
        except ConnectionNeededError as exc:
            return exc.reason or str(exc)
        message = "Connect your account: sign in at this link so the portal can call this server as you; the code "
        message += "waits until you have."
        params = types.ElicitRequestURLParams(message=message, url=flow.url, elicitation_id=flow.key)
        return await context.connect(server, params, lambda: connector.wait(flow.key))

    def _secrets(self, server: str, user: str) -> Callable[[Iterable[str], float | None], None]:
        """Where `user`'s connection to `server` tells its tokens: the redaction, one generation per refresh."""

        def told(values: Iterable[str], expires_at: float | None) -> None:
            self._redactor.add(values, holder=("oauth", server, user), expires_at=expires_at)

        return told

    def lost(self, server: str, user: str | None) -> DownstreamError | None:
        """The error to raise when `user`'s grant for `server` turned out revoked or expired (their auth reads the
        store again), its refresh could not be made just now, or the exchange for their token failed; else None."""
        if server in self.exchanges:
            return None if user is None else self.exchanges.take_failure(server, user)
        auth = self._auths.get((server, user or ""))
        if auth is None or user is None:
            return None
        if auth.unavailable is not None:  # a refresh the authorization server could not serve: nothing was sent
            unavailable, auth.unavailable = auth.unavailable, None
            return unavailable
        if not auth.lost:
            return None
        auth.reload()
        return ConnectionNeededError(server, user, reconnect=True)

    async def needed(
        self, server: str, user: str, *, reconnect: bool = False, reason: str | None = None
    ) -> ConnectionNeededError:
        """The error telling `user` to connect, with a live authorization URL when the portal serves the callback."""
        redirect = oauth_of(self._servers[server]).redirect_uri
        url = None
        if redirect is not None and self.connector is not None:
            try:
                url = (await self.connector.start(server, user, redirect)).url
            except ConnectionNeededError as exc:
                return exc
        return ConnectionNeededError(server, user, url=url, reconnect=reconnect, reason=reason)
