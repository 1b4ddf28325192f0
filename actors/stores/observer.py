"""Read-only queries for the observer: job counts, failed and running jobs, nodes, projections, job events.

Everything one snapshot needs is read on one connection (`PgObserverStore.read`), so a page
refresh costs one pooled connection and a handful of statements, whatever the number of tabs.
"""

from __future__ import annotations

from typing import Any, Sequence

import attrs

from actors.stores.database import Database
from actors.stores.events import read_events
from actors.stores.projections import lock_parts, projection_key
from actors.stores.queries import load
from actors.stores.rows import Checkpoint, Event

Q = load("observer.sql")
EVENTS = load("events.sql")
PROJECTIONS = load("projections.sql")


@attrs.frozen
class ProjectionRow:
    """One projection as the observer shows it: its checkpoint (`position`), `lag` (events of
    its types after the checkpoint), the database session holding its lock now (`holder_pid`,
    that session's `application_name` `holder_name` and `holder_addr`; None when no projector
    runs it), the name its last writer recorded (`last_writer`) and when (`updated_at`)."""

    name: str
    position: int
    lag: int
    holder_pid: int | None
    holder_name: str | None
    holder_addr: str | None
    last_writer: str | None
    updated_at: Any


@attrs.frozen
class DatabaseView:
    """What the observer read from the database at one moment (dict rows, as psycopg gives them)."""

    job_counts: list[dict]
    failed: list[dict]
    running: list[dict]
    processes: list[dict]
    projections: list[ProjectionRow]


class PgObserverStore:
    """The observer's read-only queries on one schema: a whole `DatabaseView` snapshot on one
    connection (`read`), one job with its attempts (`job`), and the event log's end and the
    events after a checkpoint, from which the observer counts job outcomes. It writes nothing."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def read(self, projection_types: dict[str, Sequence[str] | None], limit: int = 10) -> DatabaseView:
        """One snapshot. `projection_types`: each known projection's event types (None: all
        events count towards its lag); projections with a checkpoint row are always included."""
        schema = self.database.config.schema
        with self.database.connection() as conn:
            counts = conn.execute(Q["job_counts"]).fetchall()
            failed = conn.execute(Q["failed_jobs"], {"limit": limit}).fetchall()
            running = conn.execute(Q["longest_running"], {"limit": limit}).fetchall()
            processes = conn.execute(Q["processes"]).fetchall()
            rows = {row["name"]: row for row in conn.execute(Q["checkpoints"]).fetchall()}
            projections = []
            for name in sorted(set(rows) | set(projection_types)):
                row = rows.get(name)
                checkpoint = Checkpoint.from_row(row) if row else Checkpoint()
                types = projection_types.get(name)
                params = {"txid": checkpoint.txid, "position": checkpoint.position, "types": list(types) if types else None}
                lag = conn.execute(EVENTS["count_after"], params).fetchone()["n"]
                holder = conn.execute(PROJECTIONS["lock_holder"], lock_parts(projection_key(schema, name))).fetchone()
                projections.append(
                    ProjectionRow(
                        name,
                        checkpoint.position,
                        lag,
                        holder["pid"] if holder else None,
                        holder["application_name"] if holder else None,
                        str(holder["client_addr"]) if holder and holder["client_addr"] else None,
                        row["holder"] if row else None,
                        row["updated_at"] if row else None,
                    )
                )
            conn.commit()
        return DatabaseView(counts, failed, running, processes, projections)

    def job(self, job_id: int) -> dict | None:
        """One job with its attempts' errors (None if there is no such job)."""
        with self.database.connection() as conn:
            row = conn.execute(Q["job"], {"id": job_id}).fetchone()
            conn.commit()
        return row

    def events_tail(self) -> Checkpoint:
        """The end of the event log now (counting job events starts here)."""
        with self.database.connection() as conn:
            row = conn.execute(Q["events_tail"]).fetchone()
            conn.commit()
        return Checkpoint.from_row(row) if row else Checkpoint()

    def events_after(self, checkpoint: Checkpoint, limit: int = 5000) -> list[Event]:
        """Every event after `checkpoint` in commit-safe order (up to `limit`)."""
        with self.database.connection() as conn:
            events = read_events(conn, checkpoint, limit, None)
            conn.commit()
        return events
