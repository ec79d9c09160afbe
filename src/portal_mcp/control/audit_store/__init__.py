"""Durable audit stores: where `AuditEvent`s are kept and queried.

```
query.py     the query API both stores answer (recent, summary), SummaryRow, percentile, as_json, SCHEMA_VERSION
sqlite.py    SqliteAuditSink: one file, embedded (`audit: {sqlite: PATH}`), queued writes
postgres.py  PostgresAuditSink: one database shared by replicas (`audit: {postgres: DSN}`), queued writes
queued.py    QueuedStore: what both share (record queues; flush, backlog, close write the queue first)
writer.py    BatchWriter: the bounded queue + background thread + retry that keeps file and network I/O off the event
             loop (a locked file or a database outage delays the writer, never a run)
```
`AuditStoreError` lives in `portal_mcp.errors` and is re-exported here.
"""

from portal_mcp.control.audit_store.postgres import PostgresAuditSink, redact_dsn
from portal_mcp.control.audit_store.query import (
    SCHEMA_VERSION,
    AuditQueries,
    Kind,
    SummaryKey,
    SummaryRow,
    as_json,
    percentile,
)
from portal_mcp.control.audit_store.sqlite import SqliteAuditSink
from portal_mcp.errors import AuditStoreError

AuditStore = SqliteAuditSink | PostgresAuditSink
"""Either durable store: an `AuditSink` with the `AuditQueries` API and `close`."""

__all__ = [
    "SCHEMA_VERSION",
    "AuditQueries",
    "AuditStore",
    "AuditStoreError",
    "Kind",
    "PostgresAuditSink",
    "SqliteAuditSink",
    "SummaryKey",
    "SummaryRow",
    "as_json",
    "percentile",
    "redact_dsn",
]
