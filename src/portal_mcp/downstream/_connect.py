"""Connecting and disconnecting users' accounts (`oauth:` servers): the flows waiting for a browser, revocation.

```
connector = Connector(store, servers, task_group)
url = await connector.start("linear", "ana", "https://portal.example.com/oauth/callback")   # show it to ana
await connector.complete(state, code, iss)          # the portal's /oauth/callback, when ana's browser comes back
await connector.wait("linear", "ana")               # a run that asked ana to connect continues
await disconnect(store, servers["linear"], "ana")   # RFC 7009 revocation, then the record is forgotten
```
A flow waits at most `CONNECT_TIMEOUT` for the user. The callback is matched to its flow by the `state` the
authorization server hands back (random per flow, PKCE-bound): an unknown state is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlparse

import anyio
import anyio.abc
import httpx2
from mcp.shared.auth import OAuthClientInformationFull, OAuthMetadata

from portal_mcp.config import RemoteServerConfig
from portal_mcp.control.audit_store.connections import ConnectionStore, Record
from portal_mcp.downstream._oauth import Connecting, StoredConnection, authorize
from portal_mcp.errors import ConnectionNeededError, PortalError

logger = logging.getLogger("portal_mcp.downstream")

CONNECT_TIMEOUT = 600.0
"""How long a started connection waits for its user to come back from the authorization server."""


@dataclass
class _Flow:
    server: str
    user: str
    auth: Connecting
    done: anyio.Event = field(default_factory=anyio.Event)
    error: str | None = None


class Connector:
    """The connect flows in progress, by `state`; each runs in `task_group` until its user comes back."""

    def __init__(
        self, store: ConnectionStore, servers: Mapping[str, RemoteServerConfig], task_group: anyio.abc.TaskGroup
    ) -> None:
        self._store = store
        self._servers = dict(servers)
        self._tasks = task_group
        self._flows: dict[str, _Flow] = {}
        self._latest: dict[tuple[str, str], _Flow] = {}

    def known(self, server: str) -> bool:
        return server in self._servers

    async def start(self, server: str, user: str, redirect_uri: str) -> str:
        """Begin connecting `user` to `server`; returns the authorization URL to send them to. While one flow of
        theirs waits for their browser, its URL is handed out again (no new registration per failing call)."""
        waiting = self._latest.get((server, user))
        if waiting is not None and not waiting.done.is_set() and waiting.auth.url is not None:
            return waiting.auth.url
        config = self._servers[server]
        auth = Connecting(config, StoredConnection(self._store, user, server, fresh=True), redirect_uri)
        flow = _Flow(server, user, auth)

        async def run() -> None:
            try:
                with anyio.fail_after(CONNECT_TIMEOUT):
                    await authorize(config, auth)
                logger.info("server %r: user %r connected their account", server, user,
                            extra={"server": server, "user": user, "event": "oauth_connected"})  # fmt: skip
            except TimeoutError:
                flow.error = f"nobody came back from the authorization server within {CONNECT_TIMEOUT:g} s"
            except PortalError as exc:
                flow.error = str(exc)
            except Exception as exc:  # the SDK's OAuthFlowError / OAuthTokenError, an HTTP failure
                flow.error = f"{type(exc).__name__}: {exc}"
            finally:
                auth.url_ready.set()
                flow.done.set()
                self._flows.pop(state_of(auth.url), None)
                if flow.error is not None:
                    logger.warning("server %r: user %r could not connect: %s", server, user, flow.error,
                                   extra={"server": server, "user": user, "event": "oauth_failed"})  # fmt: skip

        self._tasks.start_soon(run)
        await auth.url_ready.wait()
        if auth.url is None:
            raise ConnectionNeededError(server, user, reason=flow.error or "the authorization server gave no URL")
        self._flows[state_of(auth.url)] = flow
        self._latest[(server, user)] = flow
        return auth.url

    async def complete(self, state: str | None, code: str | None, iss: str | None, error: str | None = None) -> str:
        """Hand the authorization server's answer to its flow and wait for the tokens; returns the server's name.
        Raises `ConnectionNeededError` when the flow failed, `LookupError` for a state no flow waits on."""
        flow = self._flows.get(state or "")
        if flow is None:
            raise LookupError("this sign-in link is unknown or was already used; start connecting again")
        if error is not None:
            flow.error = f"the authorization server answered {error!r}"
        flow.auth.called_back(code if error is None else None, state, iss)
        await flow.done.wait()
        if flow.error is not None:
            raise ConnectionNeededError(flow.server, flow.user, reason=flow.error)
        return flow.server

    async def wait(self, server: str, user: str) -> bool:
        """Wait for `user`'s latest connect flow to `server` to end; True when it connected them."""
        flow = self._latest.get((server, user))
        if flow is None:
            return False
        await flow.done.wait()
        return flow.error is None

    def failure(self, server: str, user: str) -> str | None:
        """Why `user`'s latest connect flow to `server` failed (None: it did not, or there is none)."""
        flow = self._latest.get((server, user))
        return flow.error if flow is not None else None


def state_of(url: str | None) -> str:
    values = parse_qs(urlparse(url or "").query).get("state") or [""]
    return values[0]


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
