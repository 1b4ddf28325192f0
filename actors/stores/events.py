"""The append-only event log: append in the caller's transaction, read in commit-safe order."""

from __future__ import annotations

from typing import Protocol, Sequence

import psycopg
from psycopg.types.json import Jsonb

from actors.stores.database import Database
from actors.stores.queries import load
from actors.stores.rows import Checkpoint, Event, NewEvent

Q = load("events.sql")
EVENTS_CHANNEL_PREFIX = "thespian_otp_events_"


def notify_events(conn: psycopg.Connection, schema: str) -> None:
    """Wake the projectors (delivered when the caller's transaction commits)."""
    conn.execute("SELECT pg_notify(%s, '')", (EVENTS_CHANNEL_PREFIX + schema,))


class EventStore(Protocol):
    """The append-only event log (`events`): append, read in commit-safe order, count."""

    def append(self, events: Sequence[NewEvent], conn: psycopg.Connection | None = None) -> list[int]: ...

    def read_after(self, checkpoint: Checkpoint, limit: int, types: Sequence[str] | None = None, conn: psycopg.Connection | None = None) -> list[Event]: ...

    def head(self) -> int: ...

    def count_after(self, checkpoint: Checkpoint, types: Sequence[str] | None = None) -> int: ...


class PgEventStore:
    """`EventStore` on PostgreSQL: `PgEventStore(database).append([NewEvent(type, data)])` appends
    (with `conn=`, inside your transaction) and notifies the projectors (docs/events.md)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def append(self, events: Sequence[NewEvent], conn: psycopg.Connection | None = None) -> list[int]:
        """Append `events`; with `conn`, inside the caller's transaction."""
        if not events:
            return []
        params = {"types": [e.type for e in events], "datas": [Jsonb(e.data) for e in events]}
        if conn is not None:
            return self._append(conn, params)
        with self.database.transaction() as own:
            return self._append(own, params)

    def _append(self, conn: psycopg.Connection, params: dict) -> list[int]:
        positions = [row["position"] for row in conn.execute(Q["append"], params).fetchall()]
        notify_events(conn, self.database.config.schema)
        return positions

    def read_after(
        self,
        checkpoint: Checkpoint,
        limit: int,
        types: Sequence[str] | None = None,
        conn: psycopg.Connection | None = None,
    ) -> list[Event]:
        if conn is not None:
            return read_events(conn, checkpoint, limit, types)
        with self.database.connection() as own:
            events = read_events(own, checkpoint, limit, types)
            own.commit()
        return events

    def head(self) -> int:
        with self.database.connection() as conn:
            row = conn.execute(Q["head"]).fetchone()
            conn.commit()
        return row["position"]

    def count_after(self, checkpoint: Checkpoint, types: Sequence[str] | None = None) -> int:
        params = {"txid": checkpoint.txid, "position": checkpoint.position, "types": list(types) if types else None}
        with self.database.connection() as conn:
            row = conn.execute(Q["count_after"], params).fetchone()
            conn.commit()
        return row["n"]


def read_events(conn: psycopg.Connection, checkpoint: Checkpoint, limit: int, types: Sequence[str] | None) -> list[Event]:
    """Up to `limit` events of `types` after `checkpoint`, in order; fewer only at the end.

    Walks the events in windows of `limit` (see `read_after` in events.sql), skipping the
    events of other types, until `limit` events are found or the events run out."""
    found: list[Event] = []
    wanted = list(types) if types else None
    while True:
        params = {"txid": checkpoint.txid, "position": checkpoint.position, "limit": limit, "types": wanted}
        rows = conn.execute(Q["read_after"], params).fetchall()
        found += [Event.from_row(row) for row in rows if row["wanted"]]
        if len(found) >= limit or len(rows) < limit:
            return found[:limit]
        checkpoint = Checkpoint(rows[-1]["txid"], rows[-1]["position"])
