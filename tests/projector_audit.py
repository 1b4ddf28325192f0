"""Audit helpers for projector tests: a steady event appender, a pg_locks sampler, and the
checks that no event was applied twice or skipped and no two nodes applied at once."""

from __future__ import annotations

import threading
import time

import psycopg

from actors.projector import rebuild
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.errors import StoreError
from actors.stores.events import PgEventStore
from actors.stores.projections import lock_holder, lock_parts, projection_key
from actors.stores.rows import NewEvent
from tests.projections import Audited


def holder_name(database, projection="audited"):
    try:
        holder = lock_holder(database, projection)
    except StoreError:
        return None
    return holder["application_name"].removeprefix("thespian-otp:projector:") if holder else None


class Appender(threading.Thread):
    """Appends tick events continuously, riding out server restarts."""

    def __init__(self, config: DatabaseConfig) -> None:
        super().__init__(daemon=True)
        self.config = config
        self.halt = threading.Event()
        self.batches = 0

    def run(self) -> None:
        n = 0
        while not self.halt.is_set():
            try:
                with Database(self.config) as database:
                    store = PgEventStore(database)
                    while not self.halt.is_set():
                        store.append([NewEvent("tick", {"key": f"k{(n + i) % 7}"}) for i in range(5)])
                        n += 5
                        self.batches += 1
                        time.sleep(0.005)
            except StoreError:
                time.sleep(0.05)


class LockSampler(threading.Thread):
    """Samples pg_locks: who holds the projection's lock, and whether two sessions ever do."""

    def __init__(self, config: DatabaseConfig, projection: str = "audited") -> None:
        super().__init__(daemon=True)
        self.config = config
        self.parts = lock_parts(projection_key(config.schema, projection))
        self.halt = threading.Event()
        self.samples = 0
        self.most_holders = 0
        self.holders: set[str] = set()

    def run(self) -> None:
        query = (
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %(classid)s AND l.objid = %(objid)s AND l.objsubid = 1"
        )
        while not self.halt.is_set():
            try:
                with psycopg.connect(self.config.dsn, autocommit=True, connect_timeout=2) as conn:
                    while not self.halt.is_set():
                        rows = conn.execute(query, self.parts).fetchall()
                        self.samples += 1
                        self.most_holders = max(self.most_holders, len(rows))
                        self.holders.update(r[0] for r in rows)
                        time.sleep(0.01)
            except psycopg.Error:
                time.sleep(0.05)


def audit(database: Database) -> dict[str, int]:
    """Events of the Audited projection applied twice, never applied, and batches of two
    appliers that overlapped in time."""
    with database.connection() as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM (SELECT position FROM applied_positions GROUP BY 1 HAVING count(*) > 1) d) AS twice,"
            " (SELECT count(*) FROM events e WHERE e.type = 'tick' AND NOT EXISTS"
            "   (SELECT 1 FROM applied_positions p WHERE p.position = e.position)) AS skipped,"
            " (SELECT count(*) FROM applied_batches a JOIN applied_batches b ON a.applier <> b.applier"
            "   AND a.started < b.finished AND b.started < a.finished) AS overlapping"
        ).fetchone()
        conn.commit()
    return dict(row)


def assert_read_model_equals_a_replay(database: Database) -> None:
    def counts(conn) -> dict:
        return {r["key"]: r["n"] for r in conn.execute("SELECT key, n FROM audit_counts")}

    with database.connection() as conn:
        before = counts(conn)
        conn.commit()
    replay = Audited()
    replay.audit = False
    rebuild(database, replay)
    with database.connection() as conn:
        after = counts(conn)
        expected = {r["k"]: r["n"] for r in conn.execute("SELECT data->>'key' AS k, count(*) AS n FROM events WHERE type = 'tick' GROUP BY 1")}
        conn.commit()
    assert before == after == expected
