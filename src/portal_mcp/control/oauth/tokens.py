"""Checking a bearer token (a JWT, or an opaque token by introspection) and reading who it is for.

```
verifier = TokenVerifier(Rules.of(config.auth), keys, introspector)
identity = await verifier.verify(token)   # Identity(user, groups, scopes, subject) or TokenRejectedError
```
A JWT must be signed by a key the issuer publishes, with an accepted asymmetric algorithm, and say the right `iss`,
an accepted `aud`, `exp` in the future and `nbf`/`iat` not in the future (with `leeway`), and carry every required
scope. Nothing about a token is trusted before its signature checks out except what picks the key (`kid`, `alg`)
and the cheap early refusal of a foreign `iss`. Messages never quote the token.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from portal_mcp.config import ANONYMOUS, AuthConfig, TrustedProxyConfig
from portal_mcp.control.oauth.discovery import DiscoveryError
from portal_mcp.control.oauth.introspection import Introspector
from portal_mcp.control.oauth.keys import IssuerKeys
from portal_mcp.errors import TokenRejectedError

__all__ = ["Identity", "Rules", "TokenVerifier", "claim_at"]


@dataclass(frozen=True)
class Identity:
    """Who a verified token is for: `user` (the user claim), their `groups`, the token's `scopes`, and `subject`,
    a stable digest of issuer + user (what a session is bound to: it survives the token's refresh)."""

    user: str
    groups: tuple[str, ...]
    scopes: frozenset[str]
    subject: str


@dataclass(frozen=True)
class Rules:
    """What the tokens of one source must say (the `auth:` section, or its `trusted_proxy`)."""

    issuer: str
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...]
    leeway: float
    user_claim: str
    groups_claim: str
    scopes: tuple[str, ...] = ()

    @classmethod
    def of(cls, config: AuthConfig | TrustedProxyConfig) -> Rules:
        assert config.issuer is not None  # the config's validators
        audiences = config.audiences() if isinstance(config, AuthConfig) else config.audience
        scopes = config.scopes if isinstance(config, AuthConfig) else []
        return cls(
            config.issuer,
            tuple(audiences),
            tuple(config.algorithms),
            config.leeway,
            config.user_claim,
            config.groups_claim,
            tuple(scopes),
        )

    def identity(self, claims: Mapping[str, Any]) -> Identity:
        """The caller a token's (verified) claims name; refuses a token without the user claim or a scope."""
        have = scopes_of(claims)
        missing = [scope for scope in self.scopes if scope not in have]
        if missing:
            raise TokenRejectedError(
                f"the token lacks the scope{'s' if len(missing) > 1 else ''} {' '.join(missing)}",
                error="insufficient_scope",
                status=403,
            )
        user = claim_at(claims, self.user_claim)
        if isinstance(user, int) and not isinstance(user, bool):
            user = str(user)
        if not isinstance(user, str) or not user.strip():
            raise TokenRejectedError(f"the token has no `{self.user_claim}` claim naming the user (auth.user_claim)")
        if user == ANONYMOUS:
            raise TokenRejectedError(f"the user name {ANONYMOUS!r} is reserved for `http.bearer_tokens` callers")
        groups = claim_at(claims, self.groups_claim)
        if isinstance(groups, str):
            groups = groups.replace(",", " ").split()
        found = tuple(dict.fromkeys(g for g in groups if isinstance(g, str))) if isinstance(groups, list) else ()
        subject = hashlib.sha256(f"{self.issuer}\n{user}".encode()).hexdigest()[:32]
        return Identity(user, found, frozenset(have), subject)


def claim_at(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by name; a name the claims lack is followed as a dotted path (`realm_access.roles`)."""
    if name in claims:
        return claims[name]
    found: Any = claims
    for part in name.split("."):
        if not isinstance(found, Mapping) or part not in found:
            return None
        found = found[part]
    return found


def scopes_of(claims: Mapping[str, Any]) -> set[str]:
    """The scopes a token grants: `scope` (space separated, RFC 9068) or `scp` (a list or a string: Okta, Entra)."""
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(item for item in value if isinstance(item, str))
    return found


_REASONS: Sequence[tuple[type[jwt.InvalidTokenError], str]] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet (nbf/iat in the future)"),
    (jwt.InvalidAudienceError, "the token is not meant for this portal (aud)"),
    (jwt.InvalidIssuerError, "the token is from another issuer (iss)"),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim"),
    (jwt.InvalidAlgorithmError, "the token's signing algorithm is not accepted"),
    (jwt.DecodeError, "the token is not a well-formed JWT"),
)


class TokenVerifier:
    """Verifies the tokens of one issuer: JWTs against its keys, others by introspection when configured."""

    def __init__(self, rules: Rules, keys: IssuerKeys, introspector: Introspector | None = None) -> None:
        self.rules = rules
        self._keys = keys
        self._introspector = introspector

    async def verify(self, token: str) -> Identity:
        """The identity `token` proves, or TokenRejectedError saying why not (503 when the issuer is unreachable)."""
        try:
            if token.count(".") != 2:
                return await self._opaque(token)
            return self.rules.identity(await self._claims(token))
        except DiscoveryError as exc:
            raise TokenRejectedError(
                f"the identity provider cannot be reached to check the token ({exc})", error="", status=503
            ) from None

    async def _claims(self, token: str) -> dict[str, Any]:
        rules = self.rules
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise TokenRejectedError("the token is not a well-formed JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in rules.algorithms:
            raise TokenRejectedError(
                f"the token's signing algorithm {str(alg)[:20]!r} is not accepted (one of {', '.join(rules.algorithms)})"
            )
        if unverified.get("iss") != rules.issuer:
            raise TokenRejectedError("the token is from another issuer (iss)")  # before any fetch of keys
        kid = header.get("kid")
        key = await self._keys.key(kid if isinstance(kid, str) else None, alg)
        if key is None:
            raise TokenRejectedError("the token is signed with a key the issuer does not publish (kid)")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=list(rules.audiences),
                issuer=rules.issuer,
                leeway=rules.leeway,
                options={"require": ["exp", "iss", "aud"], "verify_sub": False, "verify_jti": False},
            )
        except jwt.InvalidTokenError as exc:
            reason = next((text for kind, text in _REASONS if isinstance(exc, kind)), "the token does not verify")
            raise TokenRejectedError(reason) from None
        return claims

    async def _opaque(self, token: str) -> Identity:
        if self._introspector is None:
            raise TokenRejectedError(
                "the token is not a JWT and the portal has no `auth.introspection` to ask about it"
            )
        claims = await self._introspector.claims(token)
        rules = self.rules
        now = time.time()
        if claims.get("iss", rules.issuer) != rules.issuer:
            raise TokenRejectedError("the token is from another issuer (iss)")
        audiences = claims.get("aud")
        listed = [audiences] if isinstance(audiences, str) else audiences if isinstance(audiences, list) else []
        if not set(listed) & set(rules.audiences):
            raise TokenRejectedError("the token is not meant for this portal (aud)")
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if isinstance(exp, int | float) and exp + rules.leeway < now:
            raise TokenRejectedError("the token has expired")
        if isinstance(nbf, int | float) and nbf - rules.leeway > now:
            raise TokenRejectedError("the token is not valid yet (nbf/iat in the future)")
        return rules.identity(claims)
