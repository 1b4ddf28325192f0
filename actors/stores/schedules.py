"""Cron schedules in PostgreSQL: each tick of a schedule is enqueued once across every node.

A tick pass locks the schedule's row (SKIP LOCKED: a node that finds it taken skips the pass),
reads `last_tick` and the database's clock (one clock for every node), enqueues the due ticks'
jobs and moves `last_tick` in the same transaction. Which ticks are due is decided by the
caller (`actors.jobs.periodic`).
"""

from __future__ import annotations

import datetime as dt
from typing import Callable, Sequence

from actors.stores.database import Database
from actors.stores.job_ops import insert_jobs, kind_defaults
from actors.stores.queries import load
from actors.stores.rows import NewJob

Q = load("schedules.sql")

#: (last_tick, now, recorded kinds) -> (jobs to enqueue, the new last_tick or None)
Plan = Callable[[dt.datetime, dt.datetime, Callable[[], dict]], tuple[Sequence[NewJob], dt.datetime | None]]


class PgSchedules:
    """The `job_schedules` table: one row per cron schedule (name, cron, kind, `last_tick`).

    `ensure` records a schedule (ensured again, a changed cron or kind is taken over and
    `last_tick` stays); `tick` runs one pass under the row's lock, asking the caller's `Plan`
    which ticks are due and enqueueing their jobs in the same transaction, so each tick is
    enqueued once across every node; `now` is the database's clock, the one clock all nodes
    share; `all` lists the rows."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def now(self) -> dt.datetime:
        with self.database.connection() as conn:
            row = conn.execute(Q["now"]).fetchone()
            conn.commit()
        return row["now"]

    def ensure(self, name: str, cron: str, kind: str, first_tick: dt.datetime, by: str) -> None:
        with self.database.transaction() as conn:
            conn.execute(Q["ensure"], {"name": name, "cron": cron, "kind": kind, "first_tick": first_tick, "by": by})

    def tick(self, name: str, plan: Plan, by: str) -> list[int] | None:
        """One tick pass: the ids enqueued (maybe none), or None if another node holds the row."""
        schema = self.database.config.schema
        with self.database.transaction() as conn:
            cursor = conn.cursor()
            row = cursor.execute(Q["lock"], {"name": name}).fetchone()
            if row is None:
                return None
            jobs, last = plan(row["last_tick"], row["now"], lambda: kind_defaults(cursor, None))
            ids = insert_jobs(cursor, schema, list(jobs)) if jobs else []
            if last is not None:
                cursor.execute(Q["advance"], {"name": name, "tick": last, "by": by})
        return ids

    def all(self) -> list[dict]:
        with self.database.connection() as conn:
            rows = conn.execute(Q["all"]).fetchall()
            conn.commit()
        return rows
