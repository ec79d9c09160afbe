"""Per-user OAuth to remote servers: a server's `oauth:` section, and `connections:` (where users' tokens are kept).

```
servers:
  linear:
    url: https://mcp.linear.app/mcp
    oauth:                                  # every user connects their own account (`portal-mcp login linear`)
      scopes: [read, write]                 # default: what the server's 401 or metadata asks for
      client_id: ${LINEAR_CLIENT_ID}        # optional: a client registered by hand (else CIMD, else registration)
      client_secret: ${LINEAR_CLIENT_SECRET}
      redirect_uri: https://portal.example.com/oauth/callback   # where remote users come back (the portal serves it)
  crm:
    url: https://crm.example.com/mcp
    oauth:
      token_exchange:                       # RFC 8693: the caller's sign-in token (`auth:`) is exchanged, no consent
        client_id: portal-exchange          # the portal's client at the server's authorization server
        client_secret: ${CRM_EXCHANGE_SECRET}
        issuer: https://login.example.com   # its metadata names the token endpoint (or `token_endpoint:`)
        audience: crm-api                   # optional; `resource` defaults to the server's url (RFC 8707)
connections:
  key: ${PORTAL_CONNECTIONS_KEY}            # from the secrets file: encrypts every stored token
```
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from portal_mcp.config.base import _Model

CONNECT_WAIT = 600.0
"""`connections.connect_wait`'s default: ten minutes for a user to sign in."""
MAX_CONNECT_WAIT = 86_400.0
_HTTP_URL = re.compile(r"https?://[^/?#\s]+(/[^#\s]*)?")
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
"""RFC 6749 §3.3 scope-token: printable ASCII without space, `"` and `\\`."""


def _url(value: str | None, what: str, *, https: bool = False) -> str | None:
    if value is None:
        return None
    if not _HTTP_URL.fullmatch(value) or (https and not value.startswith("https://")):
        scheme = "an https://" if https else "an http:// or https://"
        raise ValueError(f"{what} {value!r} must be {scheme} URL")
    return value


class TokenExchangeConfig(_Model):
    """RFC 8693 token exchange: a caller signed in with the organisation's identity provider (`auth:`) reaches the
    server with a token the server's authorization server issues in exchange for theirs: no consent, no `login`."""

    client_id: str = Field(
        description="the portal's client at the authorization server, allowed the token-exchange grant"
    )
    client_secret: SecretStr = Field(repr=False, description="that client's secret, from the secrets file (`${NAME}`)")
    auth_method: Literal["client_secret_basic", "client_secret_post"] = Field(
        default="client_secret_basic", description="how the client authenticates at the token endpoint"
    )
    token_endpoint: str | None = Field(
        default=None, description="where to exchange (default: from `issuer`'s metadata)"
    )
    issuer: str | None = Field(
        default=None,
        description="the authorization server, whose RFC 8414 / OpenID metadata names the token endpoint (default: the "
        "first one the server's RFC 9728 metadata names)",
    )
    resource: str | None = Field(
        default=None, description="the RFC 8707 resource asked for (default: the server's url)"
    )
    audience: str | None = Field(default=None, description="the RFC 8693 `audience` asked for (default: none sent)")
    scopes: list[str] = Field(
        default_factory=list, description="scopes asked for (default: what the client is allowed)"
    )

    @field_validator("token_endpoint", "issuer", "resource")
    @classmethod
    def _urls(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _url(value, str(info.field_name))

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        return _checked_scopes(value)

    def scope(self) -> str | None:
        return " ".join(self.scopes) or None


def _checked_scopes(value: list[str]) -> list[str]:
    for scope in value:
        if not _SCOPE.fullmatch(scope):
            raise ValueError(f"scope {scope!r} must be printable ASCII without spaces, quotes or backslashes")
    return value


class OAuthConfig(_Model):
    """The portal as each user's OAuth client to this server (authorization code + PKCE + resource indicator)."""

    scopes: list[str] = Field(default_factory=list, description="scopes asked for (default: what the server asks)")
    client_id: str | None = Field(
        default=None, description="a client registered by hand at the authorization server (write it as ${VAR})"
    )
    client_secret: SecretStr | None = Field(
        default=None, description="that client's secret, from the secrets file (`${NAME}`); none: a public client"
    )
    client_metadata_url: str | None = Field(
        default=None,
        description="an https:// URL serving the portal's Client ID Metadata Document: the client id where the "
        "authorization server supports it (else dynamic registration)",
    )
    redirect_uri: str | None = Field(
        default=None,
        description="the portal's `/oauth/callback` as users' browsers reach it: remote users connect through the "
        "portal; none: only `portal-mcp login` (a loopback redirect) connects",
    )

    token_exchange: TokenExchangeConfig | None = Field(
        default=None,
        description="exchange the caller's sign-in token for one of this server (RFC 8693) instead of asking each "
        "user to connect",
    )

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        return _checked_scopes(value)

    @model_validator(mode="after")
    def _one_way(self) -> OAuthConfig:
        if self.token_exchange is not None:
            mixed = [key for key in ("scopes", "client_id", "client_secret", "client_metadata_url", "redirect_uri")
                     if key in self.model_fields_set]  # fmt: skip
            if mixed:
                raise ValueError(
                    f"`token_exchange` replaces connecting each user's account, so {', '.join(mixed)} do not apply "
                    "beside it: move the client and scopes into `token_exchange:`, or drop `token_exchange`"
                )
        return self

    @field_validator("client_metadata_url")
    @classmethod
    def _metadata_url(cls, value: str | None) -> str | None:
        _url(value, "client_metadata_url", https=True)
        if value is not None and value.rstrip("/").count("/") < 3:
            raise ValueError(f"client_metadata_url {value!r} needs a path (the document's own URL, not a site root)")
        return value

    @field_validator("redirect_uri")
    @classmethod
    def _redirect(cls, value: str | None) -> str | None:
        _url(value, "redirect_uri")
        if value is not None and not value.rstrip("/").endswith("/oauth/callback"):
            raise ValueError(f"redirect_uri {value!r} must be the portal's callback URL, ending in /oauth/callback")
        return value

    def scope(self) -> str | None:
        return " ".join(self.scopes) or None


class ConnectionsConfig(_Model):
    """Where users' connected accounts (OAuth tokens per user and server) are kept, encrypted with `key`.

    With `audit: {postgres: DSN}` they are in that database (every replica sees every connection); with
    `audit: {sqlite: PATH}` in that file; else in `sqlite` (default: `connections.sqlite` in the state folder)."""

    key: SecretStr | None = Field(
        default=None,
        repr=False,
        description="encrypts stored tokens: write it as ${NAME} from the secrets file (any long random string; "
        "`portal-mcp connections --new-key` prints one); required once a server has `oauth:`",
    )
    sqlite: Path | None = Field(default=None, description="SQLite file when there is no audit database")
    connect_wait: float = Field(
        default=CONNECT_WAIT,
        description="seconds a started sign-in (connecting an account: a run's question, the error's URL, `portal-mcp "
        "login`) waits for the user's browser to come back before it expires",
    )

    @field_validator("connect_wait")
    @classmethod
    def _connect_wait(cls, value: float) -> float:
        if not 1 <= value <= MAX_CONNECT_WAIT:
            raise ValueError(
                f"connect_wait {value:g} must be between 1 and {MAX_CONNECT_WAIT:g} seconds (a day): how long a "
                f"started sign-in waits for the user's browser (default {CONNECT_WAIT:g})"
            )
        return value


def key_problem(config: ConnectionsConfig, oauth_servers: list[str]) -> str | None:
    """Why `connections.key` is unusable for the servers with `oauth:` (None when it is fine)."""
    if not oauth_servers:
        return None
    names = ", ".join(oauth_servers)
    if config.key is None:
        return (
            f"servers {names} use `oauth:`, so users' tokens are stored, encrypted: set `connections: {{key: "
            "${PORTAL_CONNECTIONS_KEY}}}` with the value in the secrets file (`portal-mcp connections --new-key`)"
        )
    if len(config.key.get_secret_value()) < 32:
        return "`connections.key` must be at least 32 characters (`portal-mcp connections --new-key` prints one)"
    return None
