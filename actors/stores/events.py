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
    def append(self, events: Sequence[NewEvent], conn: psycopg.Connection | None = None) -> list[int]: ...

    def read_after(self, checkpoint: Checkpoint, limit: int, types: Sequence[str] | None = None, conn: psycopg.Connection | None = None) -> list[Event]: ...

    def head(self) -> int: ...

    def count_after(self, checkpoint: Checkpoint, types: Sequence[str] | None = None) -> int: ...


class PgEventStore:
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
        params = {"txid": checkpoint.txid, "position": checkpoint.position, "limit": limit, "types": list(types) if types else None}
        if conn is not None:
            return [Event.from_row(row) for row in conn.execute(Q["read_after"], params).fetchall()]
        with self.database.connection() as own:
            rows = own.execute(Q["read_after"], params).fetchall()
            own.commit()
        return [Event.from_row(row) for row in rows]

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
