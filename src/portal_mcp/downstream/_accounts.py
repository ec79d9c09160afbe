"""The pool's `oauth:` servers: whose connection lists their tools, each user's `UserAuth`, "connect your account".

An `oauth:` server is a per-user server (like one whose headers say `${user.KEY}`): each calling user has their own
link, authenticated with their own stored tokens. Its tools are listed by the `list_as` user's link, else by the
first user who connected (the earliest stored connection), else by the local user's (which fails until someone
connects, and is retried in the background).
"""

from __future__ import annotations

from collections.abc import Mapping

import anyio
import anyio.abc

from portal_mcp.config import RemoteServerConfig, ServerConfig
from portal_mcp.control.audit_store.connections import ConnectionStore
from portal_mcp.control.credentials import Redactor
from portal_mcp.downstream._connect import Connector
from portal_mcp.downstream._oauth import StoredConnection, UserAuth, oauth_of
from portal_mcp.errors import ConnectionNeededError


class Accounts:
    """Users' connected accounts for the pool's `oauth:` servers, kept in `store` (None: no server is managed)."""

    def __init__(
        self, store: ConnectionStore | None, servers: Mapping[str, ServerConfig], local_user: str, redactor: Redactor
    ) -> None:
        self._store = store
        self._redactor = redactor
        self._servers = {
            name: config
            for name, config in servers.items()
            if isinstance(config, RemoteServerConfig) and config.oauth is not None and not config.disabled
        }
        self._local_user = local_user
        self.connector: Connector | None = None
        self._auths: dict[tuple[str, str], UserAuth] = {}

    @property
    def store(self) -> ConnectionStore:
        assert self._store is not None, "only used for managed servers"
        return self._store

    def manages(self, server: str) -> bool:
        return self._store is not None and server in self._servers

    def start(self, task_group: anyio.abc.TaskGroup) -> None:
        if self._store is not None and self._servers:
            self.connector = Connector(self._store, self._servers, task_group)

    async def listing(self, server: str) -> tuple[str, UserAuth]:
        """Whose connection lists the tools of `server` (`list_as`, else the user whose connection is the oldest,
        else the local user), and their auth."""
        user = self._servers[server].list_as
        if user is None:
            rows = await anyio.to_thread.run_sync(self.store.listing)
            connected = sorted((at, name) for name, each, at in rows if each == server)
            user = connected[0][1] if connected else self._local_user
        return user, self.auth(server, user)

    def auth(self, server: str, user: str) -> UserAuth:
        """`user`'s auth for `server`, one per (server, user): their links share its refreshed tokens."""
        key = (server, user)
        found = self._auths.get(key)
        if found is None:
            storage = StoredConnection(self.store, user, server, on_secret=self._redactor.add)
            found = self._auths[key] = UserAuth(self._servers[server], storage)
        return found

    async def check(self, server: str, user: str | None) -> bool:
        """Whether `server` is managed here; if so, raise `ConnectionNeededError` (with the URL to connect at, where
        the portal serves the callback) when `user` has no stored connection to it. A connection changed in the store
        since this portal last read it (connected again, refreshed by another replica) is read again before the call."""
        if not self.manages(server):
            return False
        if user is None:
            raise ConnectionNeededError(server, "(nobody)", reason="the call has no user")
        sealed = await anyio.to_thread.run_sync(self.store.raw, user, server)
        if sealed is None:
            raise await self.needed(server, user)
        auth = self.auth(server, user)
        if auth.seen != sealed:
            auth.reload()
            auth.seen = sealed
        return True

    def take_lost(self, server: str, user: str) -> bool:
        """Whether `user`'s grant for `server` turned out revoked or expired; their auth reads the store again."""
        auth = self._auths.get((server, user))
        if auth is None or not auth.lost:
            return False
        auth.reload()
        return True

    async def needed(self, server: str, user: str, *, reconnect: bool = False) -> ConnectionNeededError:
        """The error telling `user` to connect, with a live authorization URL when the portal serves the callback."""
        redirect = oauth_of(self._servers[server]).redirect_uri
        url = None
        if redirect is not None and self.connector is not None:
            try:
                url = await self.connector.start(server, user, redirect)
            except ConnectionNeededError as exc:
                return exc
        return ConnectionNeededError(server, user, url=url, reconnect=reconnect)
