"""The jobs table: insert, look up and count (claiming and completing come with the job workers)."""

from __future__ import annotations

from psycopg import sql

from typing import Protocol, Sequence

import psycopg
from psycopg.types.json import Jsonb

from actors.stores.database import Database, session_errors
from actors.stores.errors import NotFound
from actors.stores.events import notify_events
from actors.stores.queries import load
from actors.stores.rows import ClaimedJob, Job, JobOutcome, NewJob, RescueResult, WriteResult

Q = load("jobs.sql")
#: LISTEN/NOTIFY channel that wakes workers when jobs are enqueued (one per schema)
NOTIFY_PREFIX = "thespian_otp_jobs_"


#: query parameter -> JobOutcome field, for the three batch statements
COMPLETE_COLUMNS = {"ids": "job_id", "processes": "process", "attempts": "attempt", "finished": "finished_at", "run_ms": "run_ms"}
FAIL_COLUMNS = {**COMPLETE_COLUMNS, "errors": "error", "retry_in": "retry_in", "discard": "discard", "tracebacks": "traceback"}
UNCLAIM_COLUMNS = {"ids": "job_id", "processes": "process", "attempts": "attempt", "delays": "retry_in"}


def _columns(outcomes: Sequence[JobOutcome], columns: dict[str, str]) -> dict[str, list]:
    """One array per column: the statements unnest them into rows."""
    return {param: [getattr(o, field) for o in outcomes] for param, field in columns.items()}


def channel(schema: str) -> str:
    return NOTIFY_PREFIX + schema


def cancel_channel(schema: str) -> str:
    """The channel a cancelled running job's id is sent on (`pg_notify(channel, id::text)`),
    so the worker running it notices at once (see CONTRACTS.md)."""
    return "thespian_otp_cancel_" + schema


class JobStore(Protocol):
    """The job table: insert, claim (FOR UPDATE SKIP LOCKED), fenced completions and failures,
    rescue, counts."""

    def insert(self, jobs: Sequence[NewJob], conn: psycopg.Connection | None = None) -> list[int]: ...

    def get(self, job_id: int) -> Job: ...

    def counts(self) -> dict[tuple[str, str], int]: ...

    def claim(self, queue: str, process: int, limit: int) -> list[ClaimedJob]: ...

    def write_outcomes(self, outcomes: Sequence[JobOutcome]) -> WriteResult: ...

    def rescue(self, grace: float = 0.0, tree: str | None = None, untreed: bool = True, orphan_after: float | None = None) -> RescueResult: ...

    def longest_running(self, limit: int = 10) -> list[dict]: ...


class PgJobStore:
    """`JobStore` on PostgreSQL; queries in `sql/jobs.sql`. Every outcome is fenced on the claim's
    (process, attempt), and writes its event in the same statement."""

    def __init__(self, database: Database) -> None:
        self.database = database

    @property
    def channel(self) -> str:
        return channel(self.database.config.schema)

    def insert(self, jobs: Sequence[NewJob], conn: psycopg.Connection | None = None) -> list[int]:
        """Insert `jobs` (one statement for those without a unique key) and wake the workers;
        returns their ids in order. `conn`: the caller's connection, in its transaction. The
        one insert path of every enqueue: `job_ops.insert_jobs`."""
        if not jobs:
            return []
        from actors.stores.job_ops import insert_in  # job_ops imports this module

        return insert_in(self.database, jobs, conn)

    def copy_in(self, jobs: Sequence[NewJob], *, state: str = "available") -> int:
        """Bulk insert with COPY (the fastest way in; no ids back, no notification).

        `state="completed"` loads history (finished rows), for tests and benchmarks."""
        if state not in ("available", "completed"):
            raise ValueError("copy_in loads available or completed jobs")
        now = _now()
        finished = now if state == "completed" else None
        with self.database.transaction() as conn, conn.cursor() as cursor:
            columns = "queue, kind, payload, priority, run_at, max_attempts, state, attempt, finished_at"
            with cursor.copy(f"COPY jobs ({columns}) FROM STDIN") as copy:
                for job in jobs:
                    copy.write_row(
                        (job.queue, job.kind, Jsonb(job.payload), job.priority, job.run_at or now, job.max_attempts,
                         state, 1 if finished else 0, finished)
                    )  # fmt: skip
        return len(jobs)

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

    def claim(self, queue: str, process: int, limit: int, conn: psycopg.Connection | None = None) -> list[ClaimedJob]:
        """Claim up to `limit` available jobs of `queue` for `process` (one transaction),
        highest priority first. `conn`: a dedicated autocommit connection (one round trip)."""
        params = {"queue": queue, "process": process, "limit": limit}
        if conn is not None:
            with session_errors(conn, self.database.config):
                rows = conn.execute(Q["claim"], params).fetchall()
        else:
            with self.database.transaction() as own:
                rows = own.execute(Q["claim"], params).fetchall()
        return sorted((ClaimedJob.from_row(row) for row in rows), key=lambda j: (-j.priority, j.run_at, j.id))

    def write_outcomes(self, outcomes: Sequence[JobOutcome]) -> WriteResult:
        """Write a batch of outcomes in one transaction: one statement per kind of outcome."""
        done = [o for o in outcomes if o.status == "completed"]
        failed = [o for o in outcomes if o.status == "failed"]
        deferred = [o for o in outcomes if o.status == "deferred"]
        completed_ids: list[int] = []
        failed_ids: list[int] = []
        retried_ids: list[int] = []
        deferred_ids: list[int] = []
        with self.database.transaction() as conn:
            if done:
                rows = conn.execute(Q["complete"], _columns(done, COMPLETE_COLUMNS), prepare=False).fetchall()
                completed_ids = [row["id"] for row in rows]
            if failed:
                params = _columns(failed, FAIL_COLUMNS)
                params["errors"] = [error or "" for error in params["errors"]]
                rows = conn.execute(Q["fail"], params, prepare=False).fetchall()
                failed_ids = [row["id"] for row in rows if row["type"] == "job.failed"]
                retried_ids = [row["id"] for row in rows if row["type"] == "job.retried"]
            if deferred:
                rows = conn.execute(Q["unclaim"], _columns(deferred, UNCLAIM_COLUMNS), prepare=False).fetchall()
                deferred_ids = [row["id"] for row in rows]
            if completed_ids or failed_ids or retried_ids:
                notify_events(conn, self.database.config.schema)
        written = len(completed_ids) + len(failed_ids) + len(retried_ids) + len(deferred_ids)
        return WriteResult(tuple(completed_ids), tuple(failed_ids), tuple(retried_ids), tuple(deferred_ids), len(outcomes) - written)

    def write_one_by_one(self, outcomes: Sequence[JobOutcome]) -> WriteResult:
        """The row-at-a-time baseline (one transaction per outcome), for the benchmark."""
        total = WriteResult()
        for outcome in outcomes:
            result = self.write_outcomes([outcome])
            total = WriteResult(
                total.completed + result.completed,
                total.failed + result.failed,
                total.retried + result.retried,
                total.deferred + result.deferred,
                total.fenced + result.fenced,
            )
        return total

    def listen(self, conn: psycopg.Connection) -> None:
        """LISTEN on a dedicated autocommit connection for enqueue notifications."""
        with session_errors(conn, self.database.config):
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))

    def notified(self, conn: psycopg.Connection) -> bool:
        """Whether a notification came on the listening connection (never blocks)."""
        with session_errors(conn, self.database.config):
            return any(True for _ in conn.notifies(timeout=0))

    def mark(
        self, process: int, start: ClaimedJob | None, ended: ClaimedJob | None = None, error: str | None = None,
        conn: psycopg.Connection | None = None,
    ) -> bool:
        """Before a handler starts: record on the rows that `ended` ended (with `error`, or
        None if it succeeded) and that `start` starts, in one statement. False: `start` is no
        longer this worker's (rescued, cancelled) and must not run."""
        params = {
            "process": process,
            "start_id": start.id if start else None,
            "start_attempt": start.attempt if start else None,
            "ended_id": ended.id if ended else None,
            "ended_attempt": ended.attempt if ended else None,
            "ended_error": error,
        }
        if conn is not None:  # the worker's own autocommit connection: one round trip
            with session_errors(conn, self.database.config):
                row = conn.execute(Q["mark"], params).fetchone()
        else:
            with self.database.connection() as own:
                row = own.execute(Q["mark"], params).fetchone()
                own.commit()
        return bool(row["started"])

    def owns(self, job: ClaimedJob, process: int) -> bool:
        with self.database.connection() as conn:
            row = conn.execute(Q["owns"], {"id": job.id, "process": process, "attempt": job.attempt}).fetchone()
            conn.commit()
        return bool(row["n"])

    def release(self, conn: psycopg.Connection, jobs: Sequence[ClaimedJob], process: int) -> list[int]:
        """On a given (autocommit) connection: claimed jobs that will not start soon go back
        to available, the attempt not counted; idle workers are woken."""
        if not jobs:
            return []
        params = {"ids": [j.id for j in jobs], "processes": [process] * len(jobs), "attempts": [j.attempt for j in jobs], "delays": [0.0] * len(jobs)}
        with session_errors(conn, self.database.config), conn.transaction():
            released = [row["id"] for row in conn.execute(Q["unclaim"], params, prepare=False).fetchall()]
            for queue in sorted({j.queue for j in jobs}):
                conn.execute(Q["notify"], {"channel": self.channel, "queue": queue})
        return released

    def rescue(self, grace: float = 0.0, tree: str | None = None, untreed: bool = True, orphan_after: float | None = None) -> RescueResult:
        """Release the jobs of processes whose heartbeat expired (and of vanished ones); none
        is declared dead within `grace` seconds of the server's start (a restart). With
        `tree`, only that job tree's processes (and, with `untreed`, those without a tree),
        and with `orphan_after` also another tree's once expired that long (no rescuer of its
        own runs)."""
        params = {"grace": grace, "tree": tree, "untreed": untreed, "orphan_after": orphan_after}
        with self.database.transaction() as conn:
            row = conn.execute(Q["rescue"], params).fetchone()
            if row["jobs"]:
                notify_events(conn, self.database.config.schema)
        return RescueResult(row["jobs"], tuple(row["processes"]), row["unstarted"], row["completed"])

    def longest_running(self, limit: int = 10) -> list[dict]:
        with self.database.connection() as conn:
            rows = conn.execute(Q["longest_running"], {"limit": limit}).fetchall()
            conn.commit()
        return rows

    def explain_claim(self, queue: str = "default", limit: int = 100) -> str:
        with self.database.connection() as conn:
            rows = conn.execute(Q["explain_claim"], {"queue": queue, "limit": limit}).fetchall()
            conn.rollback()
        return "\n".join(row["QUERY PLAN"] for row in rows)


def _now():
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc)
