"""The append-only event log: append in the caller's transaction, read in commit-safe order."""

from __future__ import annotations

from typing import Protocol, Sequence

import attrs
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


@attrs.frozen
class Scan:
    """What one read of the log found: the wanted `events`, and how far it looked.

    `scanned` is the checkpoint after the last event *considered* (wanted or not): every event up
    to it is either in `events` or not wanted, so a projection may save it as its checkpoint even
    when `events` is empty. `rows` counts the rows read; `exhausted` is True when the log (below
    the commit-safe horizon) ran out before `limit` events or `max_rows` rows were reached."""

    events: list[Event]
    scanned: Checkpoint
    rows: int
    exhausted: bool


def scan_events(
    conn: psycopg.Connection,
    checkpoint: Checkpoint,
    limit: int,
    types: Sequence[str] | None,
    max_rows: int | None = None,
) -> Scan:
    """Up to `limit` events of `types` after `checkpoint`, in order, reading at most about
    `max_rows` rows of the log (None: no cap).

    Walks the events in windows of `limit` (see `read_after` in events.sql), skipping the events
    of other types. A projection that wants 1 % of the log would otherwise re-read the whole tail
    of unwanted events on every wake-up, since its checkpoint only moved to the last event it
    wanted: the scan says how far it looked, and the cap bounds the work of one step."""
    found: list[Event] = []
    wanted = list(types) if types else None
    rows_read = 0
    position = checkpoint
    while True:
        params = {"txid": position.txid, "position": position.position, "limit": limit, "types": wanted}
        rows = conn.execute(Q["read_after"], params).fetchall()
        rows_read += len(rows)
        for row in rows:
            if row["wanted"]:
                found.append(Event.from_row(row))
                if len(found) == limit:
                    # stop at the limit-th wanted event: the rows after it were not considered
                    return Scan(found, found[-1].checkpoint, rows_read, False)
        if rows:
            position = Checkpoint(rows[-1]["txid"], rows[-1]["position"])
        if len(rows) < limit:
            return Scan(found, position, rows_read, True)
        if max_rows is not None and rows_read >= max_rows:
            return Scan(found, position, rows_read, False)


def read_events(conn: psycopg.Connection, checkpoint: Checkpoint, limit: int, types: Sequence[str] | None) -> list[Event]:
    """Up to `limit` events of `types` after `checkpoint`, in order; fewer only at the end."""
    return scan_events(conn, checkpoint, limit, types).events
