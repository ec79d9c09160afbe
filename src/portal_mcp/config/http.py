"""The `http:` section of portal.yaml: who may call over HTTP (`users`, `bearer_tokens`), the DNS-rebinding guard,
replicas behind a load balancer, and the HTTP limits."""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from portal_mcp.config.base import _Model
from portal_mcp.config.limits import HttpLimitsConfig
from portal_mcp.config.user_refs import SECRET_NAME


class HttpUser(_Model):
    """A user: an HTTP caller known by their bearer token (write it as `${VAR}`, never inline), their groups (for
    the policy) and their own downstream secrets. A user without a token (e.g. the stdio `user:`) has no HTTP access."""

    token: str | None = Field(
        default=None, repr=False, description="none: the user cannot call over HTTP (e.g. the stdio `user:`)"
    )
    groups: list[str] = Field(default_factory=list)
    secrets: dict[str, str] = Field(
        default_factory=dict,
        repr=False,
        description="KEY -> this user's downstream credential, used where a server's headers/env say `${user.KEY}`",
    )

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not SECRET_NAME.fullmatch(key):
                raise ValueError(f"secret name {key!r} must be a letter or _ followed by letters, digits or _")
        return value


REPLICA_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A replica's name: it prefixes the approval tokens the replica hands out (`r1.<random>`), so it has no dot."""


class ReplicaConfig(_Model):
    """This portal among several replicas behind a load balancer: an approval answer (a 2026-07-28 retry) that
    reaches a replica other than the one whose run asked is forwarded to that one, at the address listed here."""

    id: str | None = Field(
        default=None,
        description="this replica's name; replicas share one config, so usually `serve --replica-id` or "
        "PORTAL_REPLICA_ID instead",
    )
    peers: dict[str, str] = Field(
        default_factory=dict,
        description="replica name -> base URL its portal serves at (`http://10.0.0.1:8000`, `/mcp` is added), "
        "every replica including this one; only these are ever forwarded to",
    )

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is not None and not REPLICA_ID.fullmatch(value):
            raise ValueError(f"replica id {value!r} must be 1-64 letters, digits, - or _")
        return value

    @field_validator("peers")
    @classmethod
    def _peers(cls, value: dict[str, str]) -> dict[str, str]:
        peers = {}
        for name, url in value.items():
            if not REPLICA_ID.fullmatch(name):
                raise ValueError(f"peer name {name!r} must be 1-64 letters, digits, - or _ (a replica id)")
            if not re.fullmatch(r"https?://[^/?#@\s]+(/[^?#\s]*)?", url):
                raise ValueError(f"peer {name!r}: {url!r} must be an http:// or https:// base URL (no query or user)")
            url = url.rstrip("/")
            if url.endswith("/mcp"):
                raise ValueError(f"peer {name!r}: give the replica's base URL without `/mcp` ({url[:-4]!r})")
            peers[name] = url
        return peers

    @model_validator(mode="after")
    def _known_id(self) -> ReplicaConfig:
        if self.id is not None and self.peers and self.id not in self.peers:
            raise PydanticCustomError(
                "replica_id",
                f"replica id {self.id!r} is not one of `peers` ({', '.join(sorted(self.peers))}): list every "
                "replica, this one included",
            )
        return self


class HttpConfig(_Model):
    """The portal's own streamable HTTP endpoint."""

    bearer_tokens: list[str] = Field(
        default_factory=list,
        repr=False,
        description="tokens of anonymous callers (user 'bearer'); some token is required off loopback",
    )
    users: dict[str, HttpUser] = Field(default_factory=dict, description="user name -> token: who each caller is")
    allowed_hosts: list[str] = Field(default_factory=list, description="extra Host headers (DNS rebinding guard)")
    allowed_origins: list[str] = Field(default_factory=list, description="extra Origin values (DNS rebinding guard)")
    stateless: bool = Field(
        default=False,
        description="no MCP sessions: any replica can serve any request (no log notifications or elicitation)",
    )
    replica: ReplicaConfig = Field(
        default_factory=ReplicaConfig,
        description="several replicas: this one's id and every replica's URL, to forward approval answers",
    )
    limits: HttpLimitsConfig = Field(default_factory=HttpLimitsConfig)
    operator_groups: list[str] = Field(
        default=["operators"], description="users in these groups see /metrics and /healthz details"
    )
    metric_user_labels: bool = Field(default=True, description="per-user names in metric labels (else `other`)")


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
