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
connections:
  key: ${PORTAL_CONNECTIONS_KEY}            # from the secrets file: encrypts every stored token
```
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from portal_mcp.config.base import _Model

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

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        for scope in value:
            if not _SCOPE.fullmatch(scope):
                raise ValueError(f"scope {scope!r} must be printable ASCII without spaces, quotes or backslashes")
        return value

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
