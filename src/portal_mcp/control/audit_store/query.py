"""The query API every durable audit store answers: `recent` events and per user/server/tool `summary` rows.

One definition serves both stores: `AuditQueries` builds the SQL (the stores differ only in the parameter marker
and in how a group's percentiles are computed: in Python for SQLite, in SQL for PostgreSQL, both nearest-rank),
and `SummaryRow`, `percentile` and `as_json` are the result types and their rendering.

`event_row` is also the one place where an event becomes stored values, and it makes every text value storable
(`storable`): a NUL character becomes U+FFFD (PostgreSQL refuses NUL in text, and one such value made it reject
the whole batch around it), and so does a surrogate code point with no partner (a lone `\\ud800` from JSON has no
UTF-8 encoding: PostgreSQL's driver and SQLite's both refuse it); a pair split into two code points is joined into its
character. SQLite could keep a NUL, but both stores apply the same cleaning so that the same events read back, and
summarise, the same whichever store holds them. The cleaning is lossy only for text that no store can hold as it is.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

from portal_mcp.control.audit import AuditEvent

SCHEMA_VERSION = 1
"""The version of the stored event record; bump it with a migration in each store whenever the tables change.
A store refuses a database whose version is newer than this."""

Kind = Literal["search", "run", "call"]
SummaryKey = Literal["user", "server", "tool"]

COLUMNS = 'kind, "user", outcome, duration_ms, subject, detail, size_in, size_out, at'
"""The stored fields of an `AuditEvent`, in its constructor's order (`user` is quoted: PostgreSQL reserves it)."""


@dataclass(frozen=True)
class SummaryRow:
    """Calls grouped by one key (a user, a server or a qualified tool name); durations in milliseconds."""

    key: str
    calls: int
    errors: int
    """Calls whose outcome was not `ok` (failed or refused)."""
    p50_ms: float
    p95_ms: float


class AuditQueries(ABC):
    """`recent` and `summary` over a table of events with the `COLUMNS` and an insertion-ordered `id`.

    A store sets `_table` and `_param` (its DB-API parameter marker) and implements `_fetch` (run one query
    under the store's lock) and `_groups` (count, errors and percentiles per group).
    """

    _table: str
    _param: str

    @property
    @abstractmethod
    def name(self) -> str:
        """The store for people: a file path, or a DSN without its password."""

    def recent(self, limit: int = 20, kind: Kind | None = None, user: str | None = None) -> list[AuditEvent]:
        """The `limit` most recent events, newest first, optionally only of one kind and/or one user."""
        where, params = self._where(kind=kind, user=user)
        sql = f"SELECT {COLUMNS} FROM {self._table}{where} ORDER BY at DESC, id DESC LIMIT {self._param}"
        return [_event(row) for row in self._fetch(sql, (*params, limit))]

    def summary(self, by: SummaryKey, since: float | None = None, *, kind: Kind = "call") -> list[SummaryRow]:
        """Count, errors and p50/p95 duration of events grouped `by` user, server or tool, busiest first.

        `since` is a Unix time. Server and tool come from the qualified name (`server.tool`) of `call` events, so
        `kind` other than "call" only makes sense grouped by user (e.g. runs per user). A subject without a dot
        (a refused call to a malformed name) counts as its own server.
        """
        if by != "user" and kind != "call":
            raise ValueError(f"a summary by {by} counts `call` events; got kind={kind!r}")
        where, params = self._where(kind=kind, since=since)
        rows = self._groups(by, where, params)
        return sorted(rows, key=lambda row: (-row.calls, row.key))

    @abstractmethod
    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    def _groups(self, by: SummaryKey, where: str, params: tuple[Any, ...]) -> list[SummaryRow]:
        """One `SummaryRow` per group of the events matching `where`, in any order."""

    def _where(
        self, *, kind: Kind | None = None, user: str | None = None, since: float | None = None
    ) -> tuple[str, tuple[Any, ...]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, op, value in (("kind", "=", kind), ('"user"', "=", user), ("at", ">=", since)):
            if value is not None:
                clauses.append(f"{column} {op} {self._param}")
                params.append(storable(value) if isinstance(value, str) else value)  # matches what was stored
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values: always one of the values; 0.0 for none.

    The value at rank ceil(p/100 * n): PostgreSQL's `percentile_disc(p/100)` computes the same one.
    """
    if not sorted_values:
        return 0.0
    rank = math.ceil(p / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


def as_json(rows: Sequence[AuditEvent | SummaryRow]) -> str:
    """Events or summary rows as a JSON array of objects (the field names of the dataclasses)."""
    return json.dumps([asdict(row) for row in rows], indent=2)


def event_row(event: AuditEvent) -> tuple[Any, ...]:
    """The values of `COLUMNS` for one event, every text value made `storable`."""
    return (
        storable(event.kind),
        storable(event.user),
        storable(event.outcome),
        event.duration_ms,
        storable(event.subject),
        storable(event.detail),
        event.size_in,
        event.size_out,
        event.at,
    )


_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` as both stores can hold it: NUL and unpaired surrogates replaced by U+FFFD, split pairs joined.

    Text without either (nearly all of it) is returned as it is, after two scans.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii() and _SURROGATE.search(text):
        # UTF-16 holds any surrogate (surrogatepass); decoding joins the pairs and replaces each lone one with U+FFFD.
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _event(row: tuple[Any, ...]) -> AuditEvent:
    kind, user, outcome, duration_ms, subject, detail, size_in, size_out, at = row
    return AuditEvent(
        cast(Kind, kind), user, outcome, duration_ms, subject, detail, size_in=size_in, size_out=size_out, at=at
    )
