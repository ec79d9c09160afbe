"""Connect flows waiting for a user's browser, kept in the connection store's database so the OAuth callback may
land on any replica behind a load balancer.

```
pending = PendingFlows(store)                                  # the table beside the connections
key = pending.add("ana", "linear", state, {"verifier": ...}, ttl=600)   # sealed, expiring
claimed = pending.claim(state)                                 # once: (user, server, record); None after that
pending.finish(key, None)                                      # or an error text: what the waiting run reads
pending.outcome(key)                                           # WAITING, CLAIMED, OK, an error text, or EXPIRED
```
A flow is found by the digest (SHA-256) of its `state`, never the state itself: a reader of the database cannot
complete it. Its record (PKCE verifier, client, discovered metadata) is sealed like a connection, bound to the user,
the server and the flow's key. `claim` is single use across replicas (a conditional UPDATE: one replica wins) and
wipes the sealed record; a flow past its expiry cannot be claimed. Rows are deleted an hour after they expire.
"""

from __future__ import annotations

import hashlib
import time
from typing import Final

from portal_mcp.control.audit_store.connections import ConnectionStore, Record

WAITING: Final = "waiting"
CLAIMED: Final = "claimed"
"""A replica got the callback and is exchanging the code for tokens."""
OK: Final = "ok"
EXPIRED: Final = "expired"
"""Nobody came back before the flow expired (or no such flow)."""
_KEEP_AFTER_EXPIRY = 3600.0


def key_of(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


class PendingFlows:
    """The `oauth_pending` table (PostgreSQL: `portal_oauth_pending`) of a connection store's database. Every method
    does I/O: call it off the event loop."""

    def __init__(self, store: ConnectionStore) -> None:
        self._store = store
        self._table = "portal_oauth_pending" if store.dialect == "postgres" else "oauth_pending"
        self._store.query(
            f'CREATE TABLE IF NOT EXISTS {self._table} (flow TEXT PRIMARY KEY, "user" TEXT NOT NULL, '
            "server TEXT NOT NULL, sealed TEXT NOT NULL, expires DOUBLE PRECISION NOT NULL, outcome TEXT)",
            (),
        )

    def add(self, user: str, server: str, state: str, record: Record, *, ttl: float) -> str:
        """Keep a new flow for `ttl` seconds; returns its key (also the elicitation id the user's client sees)."""
        key = key_of(state)
        now = time.time()
        self._store.query(f"DELETE FROM {self._table} WHERE expires < ?", (now - _KEEP_AFTER_EXPIRY,))
        sealed = self._store.sealer.seal(user, _bound(server, key), record)
        self._store.query(
            f'INSERT INTO {self._table} (flow, "user", server, sealed, expires, outcome) VALUES (?, ?, ?, ?, ?, NULL)',
            (key, user, server, sealed, now + ttl),
        )
        return key

    def claim(self, state: str) -> tuple[str, str, str, Record] | None:
        """Take the flow `state` belongs to: (key, user, server, record), once. None when there is no such flow,
        it was claimed already (here or on another replica), or it expired."""
        key = key_of(state)
        rows, _ = self._store.query(f'SELECT "user", server, sealed FROM {self._table} WHERE flow = ?', (key,))
        if not rows:
            return None
        user, server, sealed = (str(value) for value in rows[0])
        _, won = self._store.query(
            f"UPDATE {self._table} SET outcome = ?, sealed = '' WHERE flow = ? AND outcome IS NULL AND expires > ?",
            (CLAIMED, key, time.time()),
        )
        if won != 1:
            return None
        try:
            record = self._store.sealer.open(user, _bound(server, key), sealed)
        except ValueError:
            self.finish(key, "the sign-in was stored with another `connections.key`; start connecting again")
            return None
        return key, user, server, record

    def finish(self, key: str, error: str | None) -> None:
        """Record how a claimed flow ended (None: connected) for whoever waits on it."""
        self._store.query(f"UPDATE {self._table} SET outcome = ? WHERE flow = ?", (error or OK, key))

    def outcome(self, key: str) -> str:
        """WAITING, CLAIMED, OK, EXPIRED, or why the flow failed."""
        rows, _ = self._store.query(f"SELECT outcome, expires FROM {self._table} WHERE flow = ?", (key,))
        if not rows:
            return EXPIRED
        outcome, expires = rows[0]
        if outcome is None or outcome == CLAIMED:  # a replica that died mid-exchange leaves CLAIMED behind
            current = WAITING if outcome is None else CLAIMED
            return current if float(expires) + (60.0 if outcome else 0.0) > time.time() else EXPIRED
        return str(outcome)


def _bound(server: str, key: str) -> str:
    """What a pending record is sealed to besides its user: its server and flow (never a connection's slot)."""
    return f"{server}\x00pending\x00{key}"
