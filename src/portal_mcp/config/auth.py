"""portal.yaml's `auth:`: the portal as an OAuth 2.1 resource server (the MCP authorization spec).

```yaml
auth:
  issuer: https://login.example.com/oauth2/default   # the authorization server users sign in with
  resource: https://portal.example.com/mcp           # this portal's URL as clients reach it (RFC 8707 / RFC 9728)
  audience: [api://portal]                           # accepted `aud` values (default: the resource)
  scopes: [mcp:tools]                                # every one required in each token
  user_claim: email                                  # who the caller is (default `sub`)
  groups_claim: groups                               # their groups for `policy.groups` (a dotted path works too)
  introspection: {client_id: portal, client_secret: ${IDP_CLIENT_SECRET}}   # opaque tokens (RFC 7662)
  trusted_proxy: {header: Cf-Access-Jwt-Assertion, issuer: https://TEAM.cloudflareaccess.com, audience: AUD,
                  jwks_uri: https://TEAM.cloudflareaccess.com/cdn-cgi/access/certs}
```
control/oauth/ checks the tokens; surface/ serves the metadata and the `401`s.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from portal_mcp.config.base import _Model

ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
"""The signing algorithms a token may use: public-key ones only. With a symmetric one (HS256) anyone who can check a
token can forge one, and a public key passed off as an HMAC secret is the classic key-confusion attack."""

_URL = re.compile(r"https?://[^/?#\s]+(/[^?#\s]*)?")


def _listed(value: object) -> object:
    return [value] if isinstance(value, str) else value


def _http_url(value: str, what: str) -> str:
    if not _URL.fullmatch(value):
        raise ValueError(f"{what} {value!r} must be an http:// or https:// URL without a query or fragment")
    return value


class _TokenSource(_Model):
    """What the JWTs of one issuer must say: whose keys sign them, for whom they are, and who the caller is."""

    issuer: str | None = Field(default=None, description="the `iss` every token carries, exactly as the IdP writes it")
    jwks_uri: str | None = Field(
        default=None, description="the issuer's signing keys (default: `jwks_uri` of its discovered metadata)"
    )
    algorithms: list[str] = Field(
        default_factory=lambda: list(ASYMMETRIC), description="signing algorithms accepted (asymmetric only)"
    )
    user_claim: str = Field(default="sub", description="the claim naming the user (`sub`, `email`, ...)")
    groups_claim: str = Field(
        default="groups", description="the claim listing the user's groups (a dotted path such as realm_access.roles)"
    )
    leeway: float = Field(default=30.0, ge=0, le=300, description="seconds of clock skew allowed on exp/nbf/iat")

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value, "issuer")

    @field_validator("jwks_uri")
    @classmethod
    def _jwks(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value, "jwks_uri")

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one signing algorithm (e.g. RS256)")
        for name in value:
            if name.upper().startswith("HS") or name.lower() == "none":
                raise ValueError(
                    f"algorithm {name!r} is not accepted: tokens must be signed with a private key "
                    f"(one of {', '.join(ASYMMETRIC)}), so that checking a token cannot forge one"
                )
            if name not in ASYMMETRIC:
                raise ValueError(f"unknown algorithm {name!r}: use some of {', '.join(ASYMMETRIC)}")
        return value


class IntrospectionConfig(_Model):
    """Opaque (non-JWT) access tokens, asked about at the issuer's introspection endpoint (RFC 7662)."""

    endpoint: str | None = Field(
        default=None, description="default: `introspection_endpoint` of the issuer's discovered metadata"
    )
    client_id: str = Field(description="the portal's client at the issuer (introspection needs one)")
    client_secret: SecretStr = Field(description="its secret: write it as ${VAR} (environment or `secrets_file`)")
    cache_seconds: float = Field(
        default=60.0, ge=0, le=3600, description="how long an answer is reused (never past the token's exp)"
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value, "introspection endpoint")


class TrustedProxyConfig(_TokenSource):
    """A signed identity assertion set by a proxy in front of the portal (Cloudflare Access's
    `Cf-Access-Jwt-Assertion`): a request carrying a valid one is that user, with no Authorization header."""

    header: str = Field(description="the request header holding the proxy's JWT")
    audience: Annotated[list[str], BeforeValidator(_listed)] = Field(
        description="accepted `aud` values (Cloudflare Access: the application's AUD tag)"
    )

    @model_validator(mode="after")
    def _source(self) -> TrustedProxyConfig:
        if self.issuer is None:
            raise PydanticCustomError("proxy_issuer", "`trusted_proxy` needs the `issuer` of its assertions")
        if not self.audience:
            raise PydanticCustomError("proxy_audience", "`trusted_proxy.audience` needs at least one value")
        return self


class AuthConfig(_TokenSource):
    """The portal as an OAuth resource server: bearer tokens from `issuer`, for this portal (`resource`)."""

    resource: str | None = Field(
        default=None, description="this portal's URL as clients reach it, e.g. https://portal.example.com/mcp"
    )
    audience: Annotated[list[str], BeforeValidator(_listed)] = Field(
        default_factory=list, description="accepted `aud` values (default: `resource`)"
    )
    scopes: list[str] = Field(default_factory=list, description="scopes every token must carry")
    resource_name: str = Field(default="portal-mcp", description="the name clients show (RFC 9728 resource_name)")
    introspection: IntrospectionConfig | None = None
    trusted_proxy: TrustedProxyConfig | None = None
    discovery_refresh: float = Field(
        default=3600.0, ge=60, description="seconds before the issuer's metadata and keys are fetched again"
    )
    unknown_key_refetch: float = Field(
        default=30.0, ge=1, description="at most one fetch of the keys per this many seconds for an unknown `kid`"
    )

    @field_validator("resource")
    @classmethod
    def _resource(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value, "resource")

    @model_validator(mode="after")
    def _complete(self) -> AuthConfig:
        if self.issuer is None and self.trusted_proxy is None:
            raise PydanticCustomError(
                "auth_source",
                "`auth` needs `issuer` (tokens from an identity provider) or `trusted_proxy` (a proxy's assertion)",
            )
        if self.issuer is not None and self.resource is None:
            raise PydanticCustomError(
                "auth_resource",
                "`auth.resource` is this portal's URL as clients reach it (e.g. https://portal.example.com/mcp): "
                "clients ask the issuer for tokens meant for it",
            )
        if self.issuer is None and (self.introspection is not None or self.scopes):
            raise PydanticCustomError(
                "auth_issuer", "`auth.introspection` and `auth.scopes` are about the issuer's tokens: set `auth.issuer`"
            )
        return self

    def audiences(self) -> list[str]:
        """Accepted `aud` values: `audience`, else the resource URL."""
        return list(self.audience) or ([self.resource] if self.resource else [])
