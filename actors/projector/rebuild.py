"""Rebuild a projection from position 0, and report where every projection stands."""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Callable, Iterable

import attrs

from actors.projector.errors import LockLost, ProjectionBusy, ProjectionFailed
from actors.projector.projection import load_projection
from actors.stores.database import Database
from actors.stores.events import PgEventStore
from actors.stores.projections import LockSession, lock_holder
from actors.stores.rows import Checkpoint


@attrs.frozen
class ProjectionStatus:
    """Where a projection stands: its checkpoint position, how many events it has not applied yet
    (lag), which node holds its lock now (None: nobody), and who wrote its checkpoint last,
    when."""

    name: str
    position: int
    lag: int
    holder: str | None
    last_writer: str | None
    updated_at: Any


#: the application_name prefix of a projector's lock session (the node follows it)
PROJECTOR_APP = "thespian-otp:projector:"


def holder_description(holder: dict | None) -> str:
    """Who holds a projection's lock, in words: the projector's node (host:pid of the
    projector process unless a node was given) or the session's application name."""
    if not holder:
        return "another session (it has just let go: try again)"
    app = holder.get("application_name") or ""
    if app.startswith(PROJECTOR_APP):
        return f"the projector on node {app.removeprefix(PROJECTOR_APP)} (PostgreSQL backend pid {holder['pid']})"
    return f"the PostgreSQL session {app or '(no application name)'} (backend pid {holder['pid']})"


def rebuild(
    database: Database,
    projection: Any,
    *,
    wait: float = 0.0,
    batch: int = 2000,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Empty the read model and replay every event into it, holding the projection's lock (no
    projector applies meanwhile). Returns the number of events applied."""
    projection = load_projection(projection)
    node = f"rebuild:{socket.gethostname()}:{os.getpid()}"
    session = LockSession(database, projection.name, node)
    try:
        deadline = time.monotonic() + wait
        while not session.try_lock():
            if time.monotonic() >= deadline:
                raise ProjectionBusy(projection.name, holder_description(lock_holder(database, projection.name)))
            time.sleep(0.2)
        total = PgEventStore(database).count_after(Checkpoint(), projection.event_types)
        with session.transaction() as conn:
            projection.setup(conn)
            projection.reset(conn)
            session.reset_checkpoint(conn)
        checkpoint, applied = Checkpoint(), 0
        while True:
            with session.transaction() as conn:
                events = session.read_after(conn, checkpoint, batch, projection.event_types)
                if not events:
                    break
                try:
                    projection.apply(conn, events)
                except Exception as exc:  # noqa: BLE001 - reported with where it happened
                    raise ProjectionFailed(projection.name, events[0].position, events[0].txid, f"{type(exc).__name__}: {exc}") from exc
                if not session.holds_lock():
                    raise LockLost(projection.name, "during the rebuild")
                session.save_checkpoint(conn, events[-1].checkpoint)
            checkpoint = events[-1].checkpoint
            applied += len(events)
            if progress is not None:
                progress(applied, max(total, applied))
        session.unlock()
        return applied
    finally:
        session.close()


def status(database: Database, projections: Iterable[Any]) -> list[ProjectionStatus]:
    from actors.stores.checkpoints import PgCheckpointStore

    rows = {row.name: row for row in PgCheckpointStore(database).all()}
    events = PgEventStore(database)
    result = []
    for reference in projections:
        projection = load_projection(reference)
        row = rows.get(projection.name)
        checkpoint = row.checkpoint if row else Checkpoint()
        holder = lock_holder(database, projection.name)
        name = holder["application_name"].removeprefix(PROJECTOR_APP) if holder else None
        result.append(
            ProjectionStatus(
                projection.name,
                checkpoint.position,
                events.count_after(checkpoint, projection.event_types),
                name,
                row.holder if row else None,
                row.updated_at if row else None,
            )
        )
    return result
