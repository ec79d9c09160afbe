"""A real `portal-mcp serve --transport http` process that takes OAuth tokens from a real provider (tests/oidc.py).

```
with OidcProvider.started(resources=portal_resources(port)) as idp, oauth_portal(tmp, idp, port) as portal:
    portal.url                       # http://127.0.0.1:PORT/mcp
    portal.resource                  # the same: the portal's resource indicator (`auth.resource`)
    portal.audit()                   # the audit records so far (SQLite)
```
The portal serves mcp-server-time (`time`), records to `audit.sqlite`, denies `time.convert_time` to the `sales`
group, keeps the static token user `carol` (group `operators`), and accepts tokens for its resource (scope
`mcp:tools`), opaque tokens for `opaque_resource(port)` by introspection, and `Cf-Access-Jwt-Assertion` assertions
from the same issuer for audience `PROXY_AUDIENCE` (user: the `email` claim).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from portal_mcp.control.audit import AuditEvent
from portal_mcp.control.audit_store import SqliteAuditSink
from tests.oidc import DOWNSTREAM, SERVICE, OidcProvider
from tests.portals import STARTUP_TIMEOUT, portal_command

PROXY_AUDIENCE = "cf-access-aud-tag"
PROXY_HEADER = "Cf-Access-Jwt-Assertion"
CAROL_TOKEN = "carol-static-token-0123456789"


def resource_of(port: int) -> str:
    return f"http://127.0.0.1:{port}/mcp"


def opaque_resource(port: int) -> str:
    return f"http://127.0.0.1:{port}/mcp-opaque"


def portal_resources(port: int) -> dict[str, dict[str, Any]]:
    """The provider's resources for a portal on `port`: its own (JWT), an opaque twin, and a downstream."""
    return {
        resource_of(port): {"scope": "mcp:tools mcp:admin"},
        opaque_resource(port): {"scope": "mcp:tools mcp:admin", "format": "opaque"},
        DOWNSTREAM: {"scope": "files:read"},
    }


@dataclass
class OAuthPortal:
    port: int
    folder: Path
    log: Path

    @property
    def url(self) -> str:
        return resource_of(self.port)

    @property
    def resource(self) -> str:
        return resource_of(self.port)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def audit(self) -> list[AuditEvent]:
        """The audit records so far, oldest first. The portal commits them on its audit writer's thread a few
        milliseconds after the reply that recorded them, so this first waits until `/metrics` says none waits (or
        the portal has stopped)."""
        self._audit_written()
        path = self.folder / "audit.sqlite"
        if not path.exists():
            return []
        with SqliteAuditSink(path) as store:
            return list(reversed(store.recent(limit=1000)))

    def _audit_written(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:  # Carol is in `operators`, the group allowed to read /metrics
                metrics = httpx2.get(f"{self.base}/metrics", headers={"Authorization": f"Bearer {CAROL_TOKEN}"})
            except httpx2.ConnectError:
                return  # the portal has stopped: it wrote its queue as it closed
            if re.search(r"^portal_audit_pending_events 0(\.0)?$", metrics.text, re.MULTILINE):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the portal's audit writer still has events waiting after {timeout:g} s")
            time.sleep(0.01)


def write_config(folder: Path, provider: OidcProvider, port: int) -> Path:
    path = folder / "portal.yaml"
    path.write_text(
        f"""servers:
  time: {{command: {sys.executable!r}, args: [-m, mcp_server_time]}}
audit: {{sqlite: audit.sqlite}}
policy:
  groups:
    sales: {{deny: [time.convert_time]}}
http:
  users:
    carol: {{token: '${{CAROL_TOKEN}}', groups: [operators]}}
auth:
  issuer: {provider.issuer}
  resource: {resource_of(port)}
  audience: [{resource_of(port)}, {opaque_resource(port)}]
  scopes: [mcp:tools]
  unknown_key_refetch: 1
  introspection: {{client_id: {SERVICE.client_id}, client_secret: '${{IDP_CLIENT_SECRET}}'}}
  trusted_proxy: {{header: {PROXY_HEADER}, issuer: {provider.issuer}, audience: {PROXY_AUDIENCE}, user_claim: email}}
""",
        encoding="utf-8",
    )
    return path


@contextlib.contextmanager
def oauth_portal(
    folder: Path, provider: OidcProvider, port: int, *, env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()
) -> Iterator[OAuthPortal]:
    """Start the portal (a process group of its own), yield once its servers settled, stop it on exit."""
    config = write_config(folder, provider, port)
    log = folder / "portal.log"
    variables = {"CAROL_TOKEN": CAROL_TOKEN, "IDP_CLIENT_SECRET": SERVICE.client_secret or "", **(env or {})}
    with log.open("wb") as output:
        process = subprocess.Popen(
            portal_command(config, "127.0.0.1", port, *args),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            env={**os.environ, **variables},
            start_new_session=True,
        )
        try:
            _wait_until_ready(process, port, log)
            yield OAuthPortal(port, folder, log)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()


def _wait_until_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"portal exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        text = log.read_text(errors="replace")
        if "settled" in text:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        time.sleep(0.05)  # polling is the only readiness signal a portal subprocess gives
    raise AssertionError(f"portal not ready in {STARTUP_TIMEOUT}s:\n{log.read_text(errors='replace')}")
