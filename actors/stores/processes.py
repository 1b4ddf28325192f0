"""Worker processes and their heartbeats."""

from __future__ import annotations

import os
from typing import Protocol

from actors.stores.database import Database
from actors.stores.errors import NotFound
from actors.stores.queries import load
from actors.stores.rows import ProcessRow
from supervision.liveness import ProcessIdentity, this_host

Q = load("processes.sql")


class ProcessStore(Protocol):
    """Worker processes and their heartbeats (`processes`): a process whose lease expired is dead,
    and the rescuer releases its jobs."""

    def register(self, node: str, ttl: float, pid: int | None = None) -> ProcessRow: ...

    def heartbeat(self, process_id: int, ttl: float) -> bool: ...

    def deregister(self, process_id: int) -> None: ...

    def retire(self, process_id: int, grace: float) -> None: ...

    def get(self, process_id: int) -> ProcessRow: ...

    def all(self) -> list[ProcessRow]: ...


class PgProcessStore:
    """`ProcessStore` on PostgreSQL; queries in `sql/processes.sql`."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def register(self, node: str, ttl: float, pid: int | None = None) -> ProcessRow:
        identity = ProcessIdentity.of(pid or os.getpid())
        params = {
            "node": node,
            "host": this_host(),
            "pid": pid or os.getpid(),
            "start_ticks": identity.start_time if identity else 0,
            "ttl": ttl,
        }
        with self.database.transaction() as conn:
            return ProcessRow.from_row(conn.execute(Q["register"], params).fetchone())

    def heartbeat(self, process_id: int, ttl: float) -> bool:
        """Extend the process's lease; False if it was pruned (the process must stop at once)."""
        with self.database.transaction() as conn:
            return conn.execute(Q["heartbeat"], {"id": process_id, "ttl": ttl}).fetchone() is not None

    def deregister(self, process_id: int) -> None:
        with self.database.transaction() as conn:
            conn.execute(Q["deregister"], {"id": process_id})

    def retire(self, process_id: int, grace: float) -> None:
        """Let the process's lease run out in `grace` seconds (a clean stop; the rescuer removes it)."""
        with self.database.transaction() as conn:
            conn.execute(Q["retire"], {"id": process_id, "grace": grace})

    def get(self, process_id: int) -> ProcessRow:
        with self.database.connection() as conn:
            row = conn.execute(Q["get"], {"id": process_id}).fetchone()
            conn.commit()
        if row is None:
            raise NotFound("process", process_id)
        return ProcessRow.from_row(row)

    def all(self) -> list[ProcessRow]:
        with self.database.connection() as conn:
            rows = conn.execute(Q["all"]).fetchall()
            conn.commit()
        return [ProcessRow.from_row(row) for row in rows]
