"""Worker processes and their heartbeats."""

from __future__ import annotations

from psycopg import sql

import os
from typing import Any, Callable, Protocol

from actors.stores.database import Database, session_errors
from actors.stores.errors import NotFound
from actors.stores.queries import load
from actors.stores.rows import ProcessRow
from supervision.liveness import ProcessIdentity, this_host

Q = load("processes.sql")


class ProcessStore(Protocol):
    """Worker processes and their heartbeats (`processes`): a process whose lease expired is dead,
    and the rescuer releases its jobs."""

    def register(self, node: str, ttl: float, pid: int | None = None, tree: str | None = None) -> ProcessRow: ...

    def heartbeat(self, process_id: int, ttl: float) -> bool: ...

    def deregister(self, process_id: int) -> None: ...

    def retire(self, process_id: int, grace: float) -> None: ...

    def get(self, process_id: int) -> ProcessRow: ...

    def beat(self, conn: Any, process_id: int, ttl: float, job: int | None = None, attempt: int | None = None) -> tuple[bool, bool]: ...

    def expire_dead_local(self, is_alive: Callable[[int, int], bool]) -> int: ...

    def all(self) -> list[ProcessRow]: ...


class PgProcessStore:
    """`ProcessStore` on PostgreSQL; queries in `sql/processes.sql`."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def register(self, node: str, ttl: float, pid: int | None = None, tree: str | None = None) -> ProcessRow:
        """`tree`: the job tree the process works for; only that tree's rescuer rescues it."""
        identity = ProcessIdentity.of(pid or os.getpid())
        params = {
            "node": node,
            "host": this_host(),
            "pid": pid or os.getpid(),
            "start_ticks": identity.start_time if identity else 0,
            "ttl": ttl,
            "tree": tree,
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

    def beat(self, conn: Any, process_id: int, ttl: float, job: int | None = None, attempt: int | None = None) -> tuple[bool, bool]:
        """On the heartbeat thread's own connection: extend the lease; return (alive, owns):
        whether the process row still exists and whether it still holds `job` at `attempt`."""
        with session_errors(conn, self.database.config):
            row = conn.execute(Q["beat"], {"id": process_id, "ttl": ttl, "job": job, "attempt": attempt}).fetchone()
        return bool(row["alive"]), bool(row["owns"])

    def listen(self, conn: Any, *channels: str) -> None:
        with session_errors(conn, self.database.config):
            for channel in channels:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    def wait_notifies(self, conn: Any, timeout: float) -> list[str]:
        """Block up to `timeout` seconds on a LISTENing connection; the payloads that came."""
        with session_errors(conn, self.database.config):
            return [n.payload for n in conn.notifies(timeout=max(0.0, timeout), stop_after=100)]

    def expire_dead_local(self, is_alive: Callable[[int, int], bool]) -> int:
        """End now the leases of this host's processes that are gone (`is_alive(pid, start_ticks)`
        False), so the next rescue pass releases their jobs without waiting for the expiry."""
        with self.database.connection() as conn:
            rows = conn.execute(Q["local_processes"], {"host": this_host()}).fetchall()
            dead = [row["id"] for row in rows if not is_alive(row["pid"], row["start_ticks"])]
            if dead:
                conn.execute(Q["expire_dead"], {"ids": dead})
            conn.commit()
        return len(dead)

    def all(self) -> list[ProcessRow]:
        with self.database.connection() as conn:
            rows = conn.execute(Q["all"]).fetchall()
            conn.commit()
        return [ProcessRow.from_row(row) for row in rows]
