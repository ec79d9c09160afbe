"""A real OAuth-protected MCP server (the SDK's resource-server support) behind a real authorization server.

    python tests/servers/oauth_server.py --port P --issuer http://127.0.0.1:IDP [--record FILE [--keep-tokens]]
                                         [--forbid SUB]

It serves streamable HTTP at `http://127.0.0.1:P/mcp`, publishes RFC 9728 protected resource metadata naming the
issuer, and answers a request without a valid token `401` with `WWW-Authenticate: Bearer resource_metadata=...`.
Tokens are checked by RFC 7662 introspection at the issuer (as the confidential client `test-service` of
tests/oidc.py), so a revoked grant is refused at once; a token must be active, for this server (`aud`), and carry
`mcp:tools`.

Tools:
- `whoami()`: the subject (`sub`) and client of the token the call arrived with;
- `bearer()`: the bearer token of the call itself (a server leaking its credential back);
- `echo(text)`: `text` back; every call appends `{"sub", "tool", "token_sha256"}` to FILE, so a test sees which user's
  token each call really carried without the token passing through the portal (`--keep-tokens` adds the token
  itself, `token`, so a test can look for it where it must not be).

`--forbid SUB` answers `403 Forbidden` (recorded) to every request carrying a valid token of the user SUB (an account the
server knows but does not let in: no `insufficient_scope`, so no new consent can help).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx2
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

SERVICE = ("test-service", "test-service-secret-0123456789")


class Introspection:
    """A `TokenVerifier` asking the authorization server about each token (RFC 7662)."""

    def __init__(self, issuer: str, audience: str) -> None:
        self._endpoint = f"{issuer}/token/introspection"
        self._audience = audience

    async def verify_token(self, token: str) -> AccessToken | None:
        async with httpx2.AsyncClient() as http:
            response = await http.post(self._endpoint, data={"token": token}, auth=httpx2.BasicAuth(*SERVICE))
        if response.status_code != 200:
            return None
        found: dict[str, Any] = response.json()
        audience = found.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if not found.get("active") or self._audience not in audiences:
            return None
        return AccessToken(
            token=token,
            client_id=str(found.get("client_id", "")),
            scopes=str(found.get("scope", "")).split(),
            expires_at=found.get("exp"),
            resource=self._audience,
            subject=found.get("sub"),
        )


def build(issuer: str, url: str, record: Path | None, keep_tokens: bool = False) -> MCPServer:
    server = MCPServer(
        "protected",
        token_verifier=Introspection(issuer, url),
        auth=AuthSettings(
            issuer_url=issuer,  # type: ignore[arg-type]
            resource_server_url=url,  # type: ignore[arg-type]
            required_scopes=["mcp:tools"],
            validate_token_resource=False,  # the verifier checks `aud` itself
        ),
    )

    def note(tool: str) -> dict[str, Any]:
        token = get_access_token()
        assert token is not None
        entry = {"sub": token.subject, "tool": tool, "token_sha256": hashlib.sha256(token.token.encode()).hexdigest()}
        if keep_tokens:
            entry["token"] = token.token
        if record is not None:
            with record.open("a") as out:
                out.write(json.dumps(entry) + "\n")
        return {"sub": token.subject, "client_id": token.client_id}

    @server.tool()
    def whoami() -> dict[str, Any]:
        """Who the token of this call belongs to."""
        return note("whoami")

    @server.tool()
    def bearer() -> str:
        """The bearer token of this call itself (a server leaking its credential: the portal must redact it)."""
        note("bearer")
        token = get_access_token()
        assert token is not None
        return token.token

    @server.tool()
    def echo(text: str) -> str:
        """`text` back."""
        note("echo")
        return text

    return server


def forbidding(app: Any, verifier: Introspection, subject: str, record: Path | None) -> Any:
    """`app`, except that a request whose bearer token belongs to `subject` is answered 403 (and recorded as
    `{"sub": subject, "refused": 403}`)."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers", []))
            kind, _, token = headers.get(b"authorization", b"").decode().partition(" ")
            found = await verifier.verify_token(token) if kind.lower() == "bearer" and token else None
            if found is not None and found.subject == subject:
                if record is not None:
                    with record.open("a") as out:
                        out.write(json.dumps({"sub": subject, "refused": 403}) + "\n")
                body = json.dumps({"error": "forbidden", "error_description": "this account may not use it"}).encode()
                await send(
                    {"type": "http.response.start", "status": 403, "headers": [(b"content-type", b"application/json")]}
                )
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return wrapped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--record", type=Path)
    parser.add_argument("--keep-tokens", action="store_true")
    parser.add_argument("--forbid", metavar="SUB")
    args = parser.parse_args(argv)
    url = f"http://127.0.0.1:{args.port}/mcp"
    import uvicorn

    app = build(args.issuer, url, args.record, args.keep_tokens).streamable_http_app()
    if args.forbid:
        app = forbidding(app, Introspection(args.issuer, url), args.forbid, args.record)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
