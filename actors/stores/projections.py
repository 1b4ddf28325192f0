"""The projector's session: one dedicated connection that holds the projection's advisory lock,
listens for new events, and carries every read and write of the projection, so that a lost
session makes the writes fail rather than race the next lock holder (docs/design.md story 3)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import psycopg

from actors.stores.checkpoints import PgCheckpointStore
from actors.stores.database import Database, advisory_key, lock_session, session_errors
from actors.stores.events import EVENTS_CHANNEL_PREFIX, Scan, read_events, scan_events
from actors.stores.queries import load
from actors.stores.rows import Checkpoint, Event

Q = load("projections.sql")
CHECKPOINTS = load("checkpoints.sql")


def events_channel(schema: str) -> str:
    return EVENTS_CHANNEL_PREFIX + schema


def projection_key(schema: str, name: str) -> int:
    """The advisory-lock key of a projection: `advisory_key('projection', schema, name)`."""
    return advisory_key("projection", schema, name)


def lock_parts(key: int) -> dict[str, int]:
    """How `key` shows in pg_locks: classid (high 32 bits), objid (low 32 bits), objsubid 1."""
    return {"classid": (key >> 32) & 0xFFFFFFFF, "objid": key & 0xFFFFFFFF}


class LockSession:
    """A dedicated connection for one projection. Every method raises `ConnectionLost` (or
    another `StoreError`) when the session is gone; never reconnects by itself."""

    def __init__(
        self,
        database: Database,
        name: str,
        node: str,
        *,
        idle_session_timeout: float = 15.0,
    ) -> None:
        self.database = database
        self.name = name
        self.node = node
        self.key = projection_key(database.config.schema, name)
        self.conn = lock_session(database, f"thespian-otp:projector:{node}", idle_session_timeout=idle_session_timeout)
        with self._errors():
            self.conn.execute(f"LISTEN {events_channel(database.config.schema)}")

    def _errors(self):
        return session_errors(self.conn, self.database.config)

    def try_lock(self) -> bool:
        with self._errors():
            return bool(self.conn.execute(Q["try_lock"], {"key": self.key}).fetchone()["locked"])

    def holds_lock(self) -> bool:
        """Ask the server whether this very session holds the lock (pid-filtered pg_locks)."""
        with self._errors():
            return bool(self.conn.execute(Q["holds_lock"], lock_parts(self.key)).fetchone()["held"])

    def unlock(self) -> None:
        with self._errors():
            self.conn.execute(Q["unlock"], {"key": self.key})

    def notified(self) -> bool:
        with self._errors():
            return any(True for _ in self.conn.notifies(timeout=0))

    def checkpoint(self) -> Checkpoint:
        with self._errors():
            return Checkpoint.from_row(self.conn.execute(CHECKPOINTS["load"], {"name": self.name}).fetchone())

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """A transaction on the lock connection (reads, read-model writes and the checkpoint)."""
        with self._errors():
            with self.conn.transaction():
                yield self.conn

    def read_after(self, conn: Any, checkpoint: Checkpoint, limit: int, types: Sequence[str] | None) -> list[Event]:
        return read_events(conn, checkpoint, limit, types)

    def scan(self, conn: Any, checkpoint: Checkpoint, limit: int, types: Sequence[str] | None, max_rows: int | None) -> Scan:
        """Like `read_after`, reading at most about `max_rows` rows, and saying how far it looked."""
        return scan_events(conn, checkpoint, limit, types, max_rows)

    def save_checkpoint(self, conn: Any, checkpoint: Checkpoint) -> None:
        PgCheckpointStore(self.database).save(self.name, checkpoint, self.node, conn)

    def reset_checkpoint(self, conn: Any) -> None:
        PgCheckpointStore(self.database).reset(self.name, conn)

    def close(self) -> None:
        try:
            self.conn.close()
        except psycopg.Error:
            pass


def lock_holder(database: Database, name: str) -> dict | None:
    """Who holds the lock of projection `name` right now (pid, application_name), or None."""
    key = projection_key(database.config.schema, name)
    with database.connection() as conn:
        row = conn.execute(Q["lock_holder"], lock_parts(key)).fetchone()
        conn.commit()
    return row
