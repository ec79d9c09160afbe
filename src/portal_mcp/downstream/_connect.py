"""Connecting and disconnecting users' accounts (`oauth:` servers): the flows waiting for a browser, revocation.

```
connector = Connector(store, servers)
flow = await connector.start("linear", "ana", "https://portal.example.com/oauth/callback")   # show ana flow.url
await connector.complete(state, code, iss)      # /oauth/callback, on whichever replica ana's browser comes back to
await connector.wait(flow.key)                  # a run that asked ana to connect continues (None: connected)
await disconnect(store, servers["linear"], "ana")   # RFC 7009 revocation, then the record is forgotten
```
A flow waits at most `timeout` (`connections.connect_wait`, default ten minutes) for the user. It lives in the state
database (`PendingFlows`), not in this process: the callback is matched to it by the `state` the authorization
server hands back (random per flow, PKCE-bound), used once; an unknown, used or expired state is refused. A run
waiting on the flow polls the database, so the callback may land on another replica.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import anyio
import httpx2
from mcp.shared.auth import OAuthClientInformationFull, OAuthMetadata

from portal_mcp.config import CONNECT_WAIT, RemoteServerConfig
from portal_mcp.control.audit_store.connections import ConnectionStore, Record
from portal_mcp.control.audit_store.pending import CLAIMED, EXPIRED, OK, WAITING, PendingFlows
from portal_mcp.downstream._flow import begin, finish
from portal_mcp.downstream._oauth import StoredConnection
from portal_mcp.errors import ConnectionNeededError

logger = logging.getLogger("portal_mcp.downstream")

POLL_EVERY = 0.5
"""How often a run waiting for its user to connect reads the flow's outcome from the database."""


@dataclass(frozen=True)
class Flow:
    """A started connect flow: the URL to send the user to, and its key (the URL elicitation's id)."""

    server: str
    user: str
    url: str
    key: str


class Connector:
    """Starts connect flows, completes them when a browser comes back, tells waiting runs how they ended."""

    def __init__(
        self, store: ConnectionStore, servers: Mapping[str, RemoteServerConfig], *, timeout: float = CONNECT_WAIT
    ) -> None:
        self._store = store
        self._servers = dict(servers)
        self._pending: PendingFlows | None = None
        self._latest: dict[tuple[str, str], Flow] = {}
        self.timeout = timeout

    def known(self, server: str) -> bool:
        return server in self._servers

    async def pending(self) -> PendingFlows:
        if self._pending is None:
            self._pending = await anyio.to_thread.run_sync(PendingFlows, self._store)
        return self._pending

    async def start(self, server: str, user: str, redirect_uri: str) -> Flow:
        """Begin connecting `user` to `server`. While a flow of theirs started here waits for their browser, it is
        handed out again (no new registration per failing call)."""
        pending = await self.pending()
        waiting = self._latest.get((server, user))
        if waiting is not None and await anyio.to_thread.run_sync(pending.outcome, waiting.key) == WAITING:
            return waiting
        storage = StoredConnection(self._store, user, server, fresh=True)
        url, state, record = await begin(self._servers[server], storage, redirect_uri)
        key = await anyio.to_thread.run_sync(lambda: pending.add(user, server, state, record, ttl=self.timeout))
        flow = self._latest[(server, user)] = Flow(server, user, url, key)
        return flow

    async def complete(self, state: str | None, code: str | None, iss: str | None, error: str | None = None) -> str:
        """Complete the flow `state` belongs to (started on any replica): exchange the code, store the connection.
        Returns the server's name. Raises `ConnectionNeededError` when it failed, `LookupError` for a state no flow
        waits on (unknown, used, or expired)."""
        pending = await self.pending()
        claimed = await anyio.to_thread.run_sync(pending.claim, state or "")
        if claimed is None:
            raise LookupError("this sign-in link is unknown, was already used, or expired; start connecting again")
        key, user, server, record = claimed
        problem = None
        if error is not None:
            problem = f"the authorization server answered {error!r}"
        elif server not in self._servers:
            problem = "the server is no longer configured with `oauth:` here"
        else:
            try:
                await finish(self._servers[server], StoredConnection(self._store, user, server, fresh=True), record,
                             code or "", iss)  # fmt: skip
            except ConnectionNeededError as exc:
                problem = exc.reason or str(exc)
        await anyio.to_thread.run_sync(pending.finish, key, problem)
        if problem is not None:
            logger.warning("server %r: user %r could not connect: %s", server, user, problem,
                           extra={"server": server, "user": user, "event": "oauth_failed"})  # fmt: skip
            raise ConnectionNeededError(server, user, reason=problem)
        logger.info("server %r: user %r connected their account", server, user,
                    extra={"server": server, "user": user, "event": "oauth_connected"})  # fmt: skip
        return server

    async def wait(self, key: str) -> str | None:
        """Wait for the flow `key` to end, completed here or on another replica: None when it connected its user,
        else why not (failed, or nobody came back before it expired)."""
        pending = await self.pending()
        while True:
            outcome = await anyio.to_thread.run_sync(pending.outcome, key)
            if outcome == OK:
                return None
            if outcome == EXPIRED:
                return f"nobody came back from the authorization server within {self.timeout:g} s"
            if outcome not in (WAITING, CLAIMED):
                return outcome
            await anyio.sleep(POLL_EVERY)


async def disconnect(store: ConnectionStore, config: RemoteServerConfig, user: str, server: str) -> bool:
    """Revoke `user`'s tokens at the authorization server (RFC 7009, where it offers revocation) and forget the
    connection. True when there was one. A revocation the server refuses is logged; the record goes anyway."""
    record: Record | None = await anyio.to_thread.run_sync(store.get, user, server)
    if record is None:
        return False
    try:
        await revoke(record, config)
    except (httpx2.HTTPError, ValueError) as exc:
        logger.warning("server %r: revoking user %r's tokens failed (%s); the connection is forgotten anyway",
                       server, user, type(exc).__name__)  # fmt: skip
    return await anyio.to_thread.run_sync(store.delete, user, server)


async def revoke(record: Record, config: RemoteServerConfig) -> None:
    asm = record.get("asm")
    client = record.get("client")
    tokens = record.get("tokens") or {}
    if not asm or not client:
        return
    endpoint = OAuthMetadata.model_validate(asm).revocation_endpoint
    if endpoint is None:
        return
    info = OAuthClientInformationFull.model_validate(client)
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(15.0), headers=dict(config.headers)) as http:
        for kind in ("refresh_token", "access_token"):  # the refresh token first: revoking it ends the grant
            if not tokens.get(kind):
                continue
            data = {"token": tokens[kind], "token_type_hint": kind, "client_id": info.client_id}
            if info.client_secret:
                data["client_secret"] = info.client_secret
            response = await http.post(str(endpoint), data=data)
            if response.status_code >= 400:
                raise ValueError(f"revocation answered HTTP {response.status_code}")
