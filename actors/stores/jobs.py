"""The jobs table: insert, look up and count (claiming and completing come with the job workers)."""

from __future__ import annotations

from typing import Protocol, Sequence

import psycopg
from psycopg.types.json import Jsonb

from actors.stores.database import Database
from actors.stores.errors import NotFound
from actors.stores.queries import load
from actors.stores.rows import Job, NewJob

Q = load("jobs.sql")
#: LISTEN/NOTIFY channel that wakes workers when jobs are enqueued (one per schema)
NOTIFY_PREFIX = "thespian_otp_jobs_"


def channel(schema: str) -> str:
    return NOTIFY_PREFIX + schema


class JobStore(Protocol):
    def insert(self, jobs: Sequence[NewJob], conn: psycopg.Connection | None = None) -> list[int]: ...

    def get(self, job_id: int) -> Job: ...

    def counts(self) -> dict[tuple[str, str], int]: ...


class PgJobStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    @property
    def channel(self) -> str:
        return channel(self.database.config.schema)

    def insert(self, jobs: Sequence[NewJob], conn: psycopg.Connection | None = None) -> list[int]:
        """Insert `jobs` in one statement and wake the workers; returns their ids in order."""
        if not jobs:
            return []
        params = {
            "queues": [j.queue for j in jobs],
            "kinds": [j.kind for j in jobs],
            "payloads": [Jsonb(j.payload) for j in jobs],
            "priorities": [j.priority for j in jobs],
            "run_ats": [j.run_at for j in jobs],
            "max_attempts": [j.max_attempts for j in jobs],
        }
        if conn is not None:
            return self._insert(conn, params, {j.queue for j in jobs})
        with self.database.transaction() as own:
            return self._insert(own, params, {j.queue for j in jobs})

    def _insert(self, conn: psycopg.Connection, params: dict, queues: set[str]) -> list[int]:
        ids = [row["id"] for row in conn.execute(Q["insert_many"], params).fetchall()]
        for queue in sorted(queues):
            conn.execute(Q["notify"], {"channel": self.channel, "queue": queue})
        return ids

    def get(self, job_id: int) -> Job:
        with self.database.connection() as conn:
            row = conn.execute(Q["get"], {"id": job_id}).fetchone()
            conn.commit()
        if row is None:
            raise NotFound("job", job_id)
        return Job.from_row(row)

    def counts(self) -> dict[tuple[str, str], int]:
        with self.database.connection() as conn:
            rows = conn.execute(Q["counts"]).fetchall()
            conn.commit()
        return {(row["queue"], row["state"]): row["n"] for row in rows}
