"""RFC 8693 token exchange for `oauth: {token_exchange: ...}` servers: a caller signed in to the portal with the
organisation's identity provider (`auth:`) reaches the server with a token its authorization server issues in
exchange for theirs, with the server's resource (RFC 8707) and audience: no second consent, no `portal-mcp login`.

```
exchanges = Exchanges(servers, redactor)
exchanges.subjects.remember("ana", token, expires_at)   # the surface, for each request its OAuth token let in
await exchanges.prepare("crm", "ana")                   # before a call: an exchanged token, cached or fresh
auth = exchanges.auth("crm", "ana")                     # the link's httpx auth: that token; a 401 re-exchanges once
```
Exchanged tokens are kept in memory only, per (server, user), until shortly before they expire: they are re-obtained
without the user at any time while the user's own sign-in is valid, so storing them (sealed, in the connection
store) would add writes and secrets at rest and gain only an exchange per replica and restart. The subject tokens
(what users signed in with) are in memory too: the latest one per user. Both go to the redactor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass

import anyio
import httpx2

from portal_mcp.config import RemoteServerConfig, ServerConfig
from portal_mcp.config.oauth import TokenExchangeConfig
from portal_mcp.control.credentials import Redactor
from portal_mcp.control.oauth.discovery import (
    DiscoveryError,
    fetch_authorization_server,
    fetch_protected_resource,
)
from portal_mcp.errors import TokenExchangeError

__all__ = ["GRANT", "TOKEN_TYPE", "ExchangeAuth", "Exchanger", "Exchanges", "SubjectTokens", "probe"]

logger = logging.getLogger("portal_mcp.downstream")

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
LISTING = "\x00listing"
"""The listing link's user: no principal has this name (it exchanges the token of whoever signed in last)."""
_MARGIN = 30.0
"""An exchanged token is replaced this long before it expires (at most a fifth of its lifetime)."""
_TIMEOUT = httpx2.Timeout(15.0)
_CONFIG_ERRORS = {"invalid_client", "unauthorized_client", "unsupported_grant_type", "invalid_target", "invalid_scope"}


@dataclass(frozen=True)
class _Token:
    value: str
    good_until: float | None
    """Wall-clock time after which it is not used (None: until a server refuses it)."""

    def usable(self) -> bool:
        return self.good_until is None or time.time() < self.good_until


class SubjectTokens:
    """The latest access token each user signed in to the portal with (a token the portal's `auth:` verified)."""

    def __init__(self, redactor: Redactor) -> None:
        self._tokens: dict[str, _Token] = {}
        self._order: list[str] = []
        self._redactor = redactor
        self.listeners: list[Callable[[str], None]] = []
        """Told the user's name when they bring a token (the listing links of exchange servers wake up)."""

    def remember(self, user: str, token: str, expires_at: float | None) -> None:
        known = self._tokens.get(user)
        if known is not None and known.value == token:
            return
        self._redactor.add(
            [token], holder=("sign-in", user), expires_at=expires_at
        )  # forgotten once replaced and expired
        self._tokens[user] = _Token(token, expires_at)
        self._order = [*(name for name in self._order if name != user), user]
        for listener in list(self.listeners):
            listener(user)

    def get(self, user: str) -> _Token | None:
        found = self._tokens.get(user)
        return found if found is not None and found.usable() else None

    def latest(self) -> str | None:
        """The user who most recently brought a token that is still valid."""
        return next((user for user in reversed(self._order) if self.get(user) is not None), None)


class Exchanger:
    """One server's exchanges: its token endpoint (configured or discovered once), each user's exchanged token."""

    def __init__(self, server: str, config: RemoteServerConfig, subjects: SubjectTokens, redactor: Redactor) -> None:
        assert config.oauth is not None and config.oauth.token_exchange is not None
        self.server = server
        self.config = config
        self.settings: TokenExchangeConfig = config.oauth.token_exchange
        self._subjects = subjects
        self._redactor = redactor
        self._endpoint = self.settings.token_endpoint
        self._tokens: dict[str, _Token] = {}
        self._locks: dict[str, anyio.Lock] = {}

    async def token(self, user: str) -> str:
        """`user`'s exchanged token: the cached one while usable, else a new exchange (one at a time per user)."""
        lock = self._locks.setdefault(user, anyio.Lock())
        async with lock:
            found = self._tokens.get(user)
            if found is None or not found.usable():
                found = self._tokens[user] = await self._exchange(user)
            return found.value

    def forget(self, user: str, token: str) -> None:
        """The server refused `token` (401): the next call exchanges again."""
        if (found := self._tokens.get(user)) is not None and found.value == token:
            del self._tokens[user]

    async def endpoint(self, http: httpx2.AsyncClient) -> str:
        """The token endpoint: configured, else from the issuer's metadata, else from the authorization server the
        server's RFC 9728 metadata names."""
        if self._endpoint is None:
            issuer = self.settings.issuer
            if issuer is None:
                resource = await fetch_protected_resource(self.config.url, http)
                servers = resource.get("authorization_servers")
                if not isinstance(servers, list) or not servers or not isinstance(servers[0], str):
                    raise DiscoveryError(f"the metadata of {self.config.url} names no authorization server")
                issuer = servers[0]
            metadata = await fetch_authorization_server(issuer, http)
            grants = metadata.get("grant_types_supported")
            if isinstance(grants, list) and GRANT not in grants:
                raise DiscoveryError(f"the authorization server {issuer} does not offer token exchange ({GRANT})")
            endpoint = metadata.get("token_endpoint")
            if not isinstance(endpoint, str):
                raise DiscoveryError(f"the metadata of {issuer} names no token_endpoint")
            self._endpoint = endpoint
        return self._endpoint

    def form(self, subject_token: str) -> tuple[dict[str, str], httpx2.BasicAuth | None]:
        """The exchange request's form (RFC 8693 section 2.1) and the client's authentication."""
        settings = self.settings
        form = {
            "grant_type": GRANT,
            "subject_token": subject_token,
            "subject_token_type": TOKEN_TYPE,
            "requested_token_type": TOKEN_TYPE,
            "resource": settings.resource or self.config.url,
        }
        if settings.audience is not None:
            form["audience"] = settings.audience
        if (scope := settings.scope()) is not None:
            form["scope"] = scope
        secret = settings.client_secret.get_secret_value()
        if settings.auth_method == "client_secret_post":
            return {**form, "client_id": settings.client_id, "client_secret": secret}, None
        return form, httpx2.BasicAuth(settings.client_id, secret)

    async def _exchange(self, user: str) -> _Token:
        subject = self._subjects.get(user)
        if subject is None:
            raise TokenExchangeError(
                self.server,
                user,
                "no_token",
                "the portal holds no valid access token of theirs from its identity provider (they called with a "
                "static bearer token, over stdio, or their sign-in expired)",
            )
        async with httpx2.AsyncClient(timeout=_TIMEOUT) as http:
            try:
                endpoint = await self.endpoint(http)
            except DiscoveryError as exc:
                kind = "unreachable" if exc.unreachable else "config"
                raise TokenExchangeError(self.server, user, kind, self._clean(str(exc))) from None
            form, auth = self.form(subject.value)
            try:
                response = await http.post(endpoint, data=form, auth=auth or httpx2.USE_CLIENT_DEFAULT)
            except httpx2.HTTPError as exc:
                raise TokenExchangeError(
                    self.server, user, "unreachable", f"{endpoint} cannot be reached ({type(exc).__name__})"
                ) from None
        answer = self._answer(response, user)
        value, token_type, expires_in = answer.get("access_token"), answer.get("token_type"), answer.get("expires_in")
        if not isinstance(value, str) or not value or str(token_type).lower() != "bearer":
            raise TokenExchangeError(
                self.server, user, "config", "the authorization server's answer holds no bearer token"
            )
        good_until = expires_at = None
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            expires_at = time.time() + expires_in
            good_until = expires_at - min(_MARGIN, expires_in / 5)
        self._redactor.add([value], holder=("exchanged", self.server, user), expires_at=expires_at)
        if subject.good_until is not None:  # never act for the user past their own sign-in
            good_until = min(good_until or subject.good_until, subject.good_until)
        logger.info("server %r: exchanged user %r's sign-in token", self.server, user,
                    extra={"server": self.server, "user": user, "event": "token_exchanged"})  # fmt: skip
        return _Token(value, good_until)

    def _answer(self, response: httpx2.Response, user: str) -> dict[str, object]:
        """The token response (RFC 8693 section 2.2), or the typed error its refusal means (section 2.2.2)."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        if response.status_code == 200:
            return body
        error = str(body.get("error", ""))
        described = str(body.get("error_description", ""))[:200]
        said = self._clean(f"{error}: {described}" if described else error or f"HTTP {response.status_code}")
        if error == "invalid_grant":
            raise TokenExchangeError(
                self.server, user, "sign_in", f"the authorization server refused their token ({said})"
            )
        if error in _CONFIG_ERRORS or response.status_code in (400, 401, 403):
            raise TokenExchangeError(
                self.server, user, "config", f"the authorization server refused the exchange ({said})"
            )
        raise TokenExchangeError(self.server, user, "unreachable", f"the token endpoint answered {said}")

    def _clean(self, text: str) -> str:
        return self._redactor.text(text)


class ExchangeAuth(httpx2.Auth):
    """A link's auth to an exchange server: `user`'s exchanged token on every request; a 401 drops it and sends once
    more with a new exchange. `failure` holds why the last request could not be authorised (the pool tells the
    caller). The listing link's user is whoever signed in last (`LISTING`)."""

    requires_request_body = True

    def __init__(self, exchanger: Exchanger, user: str, subjects: SubjectTokens) -> None:
        self._exchanger = exchanger
        self._user = user
        self._subjects = subjects
        self.failure: TokenExchangeError | None = None

    def _who(self) -> str:
        if self._user != LISTING:
            return self._user
        user = self._subjects.latest()
        if user is None:
            raise TokenExchangeError(
                self._exchanger.server,
                "",
                "no_token",
                "nobody has signed in to the portal with its identity provider since it started, so there is no token "
                "to exchange for listing its tools; they are listed after the first signed-in user's request",
                expected=True,
            )
        return user

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        user = self._who()
        for _ in range(2):  # a 401 drops the token and exchanges once more
            try:
                token = await self._exchanger.token(user)
            except TokenExchangeError as exc:
                self.failure = exc
                raise
            request.headers["Authorization"] = f"Bearer {token}"
            response = yield request
            if response.status_code != 401:
                return
            self._exchanger.forget(user, token)
        self.failure = TokenExchangeError(
            self._exchanger.server,
            user,
            "config",
            "the server refused a freshly exchanged token (HTTP 401): check `resource` and `audience` of "
            "`oauth.token_exchange` against what the server accepts",
        )


class Exchanges:
    """The exchange servers of one pool, the users' subject tokens, and each (server, user)'s `ExchangeAuth`."""

    def __init__(self, servers: Mapping[str, ServerConfig], redactor: Redactor) -> None:
        self.subjects = SubjectTokens(redactor)
        self.exchangers = {
            name: Exchanger(name, config, self.subjects, redactor)
            for name, config in servers.items()
            if isinstance(config, RemoteServerConfig)
            and config.oauth is not None
            and config.oauth.token_exchange is not None
            and not config.disabled
        }
        self._auths: dict[tuple[str, str], ExchangeAuth] = {}

    def remember(self, user: str, token: str, expires_at: float | None) -> None:
        """A request of `user` came with this access token (kept only while some server exchanges tokens)."""
        if self.exchangers:
            self.subjects.remember(user, token, expires_at)

    def __contains__(self, server: str) -> bool:
        return server in self.exchangers

    def auth(self, server: str, user: str) -> ExchangeAuth:
        key = (server, user)
        if (found := self._auths.get(key)) is None:
            found = self._auths[key] = ExchangeAuth(self.exchangers[server], user, self.subjects)
        return found

    async def prepare(self, server: str, user: str | None) -> None:
        """Before a call: `user`'s exchanged token for `server` (cached or new), or the `TokenExchangeError` why not."""
        if user is None or user == LISTING:
            raise TokenExchangeError(server, "", "no_token", "the call has no signed-in user")
        self.auth(server, user).failure = None
        await self.exchangers[server].token(user)

    def failed(self, server: str, user: str) -> bool:
        auth = self._auths.get((server, user))
        return auth is not None and auth.failure is not None

    def take_failure(self, server: str, user: str) -> TokenExchangeError | None:
        auth = self._auths.get((server, user))
        if auth is None or auth.failure is None:
            return None
        failure, auth.failure = auth.failure, None
        return failure


async def probe(exchanger: Exchanger) -> str:
    """`portal-mcp check`: ask the token endpoint to exchange a token that is not one. An authorization server that
    authenticated the client and supports the grant answers `invalid_grant` (ready); anything else names the problem."""
    async with httpx2.AsyncClient(timeout=_TIMEOUT) as http:
        try:
            endpoint = await exchanger.endpoint(http)
        except DiscoveryError as exc:
            return f"no token endpoint: {exc}"
        form, auth = exchanger.form("portal-mcp-check-not-a-token")
        try:
            response = await http.post(endpoint, data=form, auth=auth or httpx2.USE_CLIENT_DEFAULT)
        except httpx2.HTTPError as exc:
            return f"{endpoint} cannot be reached ({type(exc).__name__})"
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if error == "invalid_grant":
        return f"ready: {endpoint} authenticated client {exchanger.settings.client_id!r} and offers token exchange"
    return f"{endpoint} answered HTTP {response.status_code} {error or ''}".rstrip() + (
        ": is the client allowed the token-exchange grant, and its secret right?"
    )
