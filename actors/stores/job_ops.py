"""The job operations' side of the jobs table: inspect, retry, cancel, pause, prune, wait, and
enqueue with unique keys (in the store's own transaction or the caller's).

Every statement is in `sql/job_ops.sql`. Nothing here decides what an operation may do: the
caller (`actors.jobs.ops`) passes the states it accepts and raises its typed errors.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from actors.stores.database import Database, session_errors
from actors.stores.events import EVENTS_CHANNEL_PREFIX, notify_events
from actors.stores.jobs import cancel_channel, channel
from actors.stores.queries import load
from actors.stores.rows import Attempt, JobSummary, NewJob

Q = load("job_ops.sql")
FINAL_STATES = ("completed", "failed", "cancelled")
#: how many times an active-scope unique enqueue tries again when the job holding its key
#: finished between the conflict and the look-up (each try is one statement; 2 are rare)
UNIQUE_TRIES = 20


class PgJobOps:
    """The statements behind `actors.jobs.ops.JobOps` and `actors.jobs.client.Jobs`, on one
    schema: list and read jobs and their history, retry and cancel (each locked and fenced on
    the state the caller allows), pause and resume queues, prune in batches, wait for a final
    state (LISTEN/NOTIFY, re-checked every `recheck`), and record the kinds a jobs service handles.

    It validates nothing and decides nothing: `JobOps` checks the arguments and raises the
    typed errors. It owns one listening connection, opened by the first `wait`; `close()` it."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._listener: psycopg.Connection | None = None
        self._listen_lock = threading.Lock()

    @property
    def schema(self) -> str:
        return self.database.config.schema

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    @contextmanager
    def _read(self) -> Iterator[psycopg.Connection]:
        with self.database.connection() as conn:
            yield conn
            conn.commit()

    # --- inspect ------------------------------------------------------------------------------

    def list(self, *, stored: str | None, due: bool | None, kind: str | None, queue: str | None, limit: int, before: int | None) -> list[JobSummary]:
        params = {"stored": stored, "due": due, "kind": kind, "queue": queue, "limit": limit, "before": before}
        with self._read() as conn:
            rows = conn.execute(Q["list"], params, prepare=False).fetchall()
        return [JobSummary.from_row(row) for row in rows]

    def get(self, job_id: int) -> dict | None:
        """The job's summary, payload and raw history (`errors`), or None."""
        with self._read() as conn:
            row = conn.execute(Q["get"], {"id": job_id}).fetchone()
        if row is None:
            return None
        return {"summary": JobSummary.from_row(row), "payload": row["payload"], "errors": row["errors"] or []}

    def history(self, job_id: int) -> list[Attempt] | None:
        """Each attempt, oldest first, from the job's recorded errors, its last claim and the
        process history (node, host, pid of each worker process)."""
        found = self.get(job_id)
        if found is None:
            return None
        summary, entries = found["summary"], found["errors"]
        ids = {e.get("process") for e in entries if isinstance(e.get("process"), int)} | {summary.claimed_by}
        with self._read() as conn:
            rows = conn.execute(Q["processes"], {"ids": [i for i in ids if i is not None]}).fetchall()
        processes = {row["id"]: row for row in rows}
        return build_history(summary, entries, processes)

    def counts(self) -> dict[tuple[str, str], int]:
        with self._read() as conn:
            rows = conn.execute(Q["counts"]).fetchall()
        return {(row["queue"], row["state"]): row["n"] for row in rows}

    def state(self, job_id: int) -> str | None:
        with self._read() as conn:
            row = conn.execute(Q["state"], {"id": job_id}).fetchone()
        return None if row is None else row["state"]

    # --- retry and cancel ----------------------------------------------------------------------

    def change(self, job_id: int, action: str, allowed: Sequence[str], by: str) -> tuple[str | None, str, JobSummary | None]:
        """Retry or cancel one job if its state is in `allowed`, under its row lock.

        Returns (state before, "changed" | "refused" | a reason it could not be done, the job
        as the change left it, read in the same transaction: read after the commit, a worker
        may already have claimed a retried job); state None: no such job. A refused or failed
        change changes nothing."""
        with self.database.transaction() as conn:
            row = conn.execute(Q["lock"], {"id": job_id}).fetchone()
            if row is None:
                return None, "refused", None
            if row["state"] not in allowed:
                return row["state"], "refused", None
            if action == "retry":
                try:
                    with conn.transaction():
                        conn.execute(Q["retry"], {"id": job_id, "by": by})
                except psycopg.errors.UniqueViolation:
                    return row["state"], "another job with its unique key is available or running", None
                conn.execute(Q["notify"], {"channel": channel(self.schema), "payload": row["queue"]})
            else:
                conn.execute(Q["cancel"], {"id": job_id, "by": by})
                if row["state"] == "running":
                    conn.execute(Q["notify"], {"channel": cancel_channel(self.schema), "payload": str(job_id)})
                notify_events(conn, self.schema)
            after = JobSummary.from_row(conn.execute(Q["get"], {"id": job_id}).fetchone())
        return row["state"], "changed", after

    def retry_all(self, *, state: str, kind: str | None, queue: str | None, by: str, batch: int) -> int:
        """Retry every `state` job matching the filter, `batch` per transaction."""
        total, after = 0, 0
        while True:
            params = {"state": state, "kind": kind, "queue": queue, "after": after, "batch": batch, "by": by}
            with self.database.transaction() as conn:
                row = conn.execute(Q["retry_all"], params, prepare=False).fetchone()
                for name in row["queues"]:
                    conn.execute(Q["notify"], {"channel": channel(self.schema), "payload": name})
            total += row["retried"]
            if row["last_id"] is None:
                return total
            after = row["last_id"]

    # --- queues ------------------------------------------------------------------------------

    def pause(self, queue: str, by: str) -> bool:
        with self.database.transaction() as conn:
            return conn.execute(Q["pause"], {"queue": queue, "by": by}).fetchone() is not None

    def resume(self, queue: str) -> bool:
        """Unpause and wake the workers of `queue` on every node (NOTIFY on commit)."""
        with self.database.transaction() as conn:
            resumed = conn.execute(Q["resume"], {"queue": queue}).fetchone() is not None
            if resumed:
                conn.execute(Q["notify"], {"channel": channel(self.schema), "payload": queue})
        return resumed

    def paused(self) -> list[dict]:
        with self._read() as conn:
            return conn.execute(Q["paused"]).fetchall()

    # --- retention ----------------------------------------------------------------------------

    def prune(self, older_than: float, batch: int, pause: float = 0.0) -> int:
        """Delete finished jobs older than `older_than` seconds, one short transaction per
        `batch` ids; `pause` seconds between batches leaves room to other work."""
        total, after = 0, 0
        while after is not None:
            deleted, after = self.prune_step(after, older_than, batch)
            total += deleted
            if after is not None and pause:
                time.sleep(pause)
        self.prune_keys(older_than)
        return total

    def prune_step(self, after: int, older_than: float, batch: int) -> tuple[int, int | None]:
        """One batch of `prune`, in its own transaction: the next `batch` ids after `after`.
        Returns (rows deleted, the id to go on after, or None when no older job is left)."""
        with self.database.transaction() as conn:
            row = conn.execute(Q["prune"], {"after": after, "batch": batch, "older": older_than}).fetchone()
        done = row["last_id"] is None or row["done"]
        return row["deleted"], None if done else row["last_id"]

    def prune_keys(self, older_than: float) -> None:
        """Forget the period-scoped unique keys that expired more than `older_than` s ago."""
        with self.database.transaction() as conn:
            conn.execute(Q["prune_keys"], {"older": older_than})

    # --- waiting ------------------------------------------------------------------------------

    def wait(self, job_id: int, timeout: float, recheck: float) -> str | None:
        """The job's state once final, or when `timeout` runs out (None: no such job).

        Listens on the events channel, which every write that finishes a job notifies (the
        completer, the rescuer, cancel), and reads the state again only when woken, or every
        `recheck` seconds in case a notification came from a statement that does not send it."""
        deadline = time.monotonic() + timeout
        with self._listen_lock:
            conn = self._listening()
            try:
                with session_errors(conn, self.database.config):  # a lost connection: ConnectionLost
                    while True:
                        row = conn.execute(Q["state"], {"id": job_id}).fetchone()
                        if row is None or row["state"] in FINAL_STATES:
                            return None if row is None else row["state"]
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return row["state"]
                        for _ in conn.notifies(timeout=min(remaining, recheck), stop_after=1):
                            pass
            except BaseException:
                self.close()  # a broken or interrupted listener is opened again by the next wait
                raise

    def _listening(self) -> psycopg.Connection:
        if self._listener is None or self._listener.closed:
            conn = self.database.dedicated(application_name="thespian-otp-wait")
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(EVENTS_CHANNEL_PREFIX + self.schema)))
            self._listener = conn
        return self._listener

    # --- kinds ---------------------------------------------------------------------------------

    def register_kinds(self, kinds: Sequence[tuple[str, str, int, str]], node: str) -> None:
        """Record (kind, queue, max_attempts, handler) for each kind this node's service handles."""
        if not kinds:
            return
        params = {
            "kinds": [k[0] for k in kinds],
            "queues": [k[1] for k in kinds],
            "max_attempts": [k[2] for k in kinds],
            "handlers": [k[3] for k in kinds],
            "nodes": [node] * len(kinds),
        }
        with self.database.transaction() as conn:
            conn.execute(Q["register_kinds"], params)

    def kinds(self) -> dict[str, dict]:
        with self._read() as conn:
            return kind_defaults(conn.cursor(), None)


def build_history(summary: JobSummary, entries: Sequence[dict], processes: dict[int, dict]) -> list[Attempt]:
    """The attempts of a job from its recorded entries (pure: tested without a database)."""

    def attempt(number: int, at: Any, process: Any, outcome: str, error: str | None) -> Attempt:
        found = processes.get(process) if isinstance(process, int) else None
        return Attempt(
            number, at, process, found["node"] if found else None, outcome, error,
            found["host"] if found else None, found["pid"] if found else None,
        )  # fmt: skip

    out = []
    for entry in entries:
        error = entry.get("traceback") or entry.get("error")
        out.append(attempt(entry.get("attempt", 0), _when(entry.get("at")), entry.get("process"), _outcome(entry), error))
    if summary.state == "completed":
        out.append(attempt(summary.attempt, summary.finished_at, summary.claimed_by, "completed", None))
    elif summary.state == "running":
        out.append(attempt(summary.attempt, summary.claimed_at, summary.claimed_by, "running", None))
    return out


def _outcome(entry: dict) -> str:
    if entry.get("outcome"):
        return str(entry["outcome"])
    error = str(entry.get("error") or "")
    if error.startswith("worker process"):
        return "died"
    if error.startswith("timed out"):
        return "timeout"
    if error.startswith("discarded"):
        return "discarded"
    return "error"


def _when(value: Any) -> Any:
    import datetime as dt

    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    return value


# --- enqueue in any transaction -------------------------------------------------------------

JOBS_Q = load("jobs.sql")


@contextmanager
def in_schema(conn: psycopg.Connection, schema: str) -> Iterator[psycopg.Cursor]:
    """A dict-row cursor on the caller's own connection, inside the caller's transaction (a
    savepoint; in autocommit mode a transaction of its own), with `search_path` set to `schema`
    for that time only. The caller's session is as it was afterwards; a failure rolls back to
    the savepoint and leaves the caller's transaction usable."""
    cursor = conn.cursor(row_factory=dict_row)
    # this first statement opens the caller's transaction if none is open yet (autocommit off),
    # so the savepoint below is inside it rather than a transaction committed on its own
    before = cursor.execute(Q["get_search_path"]).fetchone()["path"]
    with conn.transaction():
        cursor.execute(Q["set_search_path"], {"path": f"{schema}, public"})
        yield cursor
        cursor.execute(Q["set_search_path"], {"path": before})


@contextmanager
def own_transaction(database: Database) -> Iterator[psycopg.Cursor]:
    with database.transaction() as conn:
        yield conn.cursor(row_factory=dict_row)


def insert_in(database: Database, jobs: Sequence[NewJob], conn: psycopg.Connection | None = None) -> list[int]:
    """`insert_jobs` on `conn` (the caller's, in its transaction) or in a transaction of our own."""
    scope = in_schema(conn, database.config.schema) if conn is not None else own_transaction(database)
    with scope as cursor:
        return insert_jobs(cursor, database.config.schema, jobs)


def insert_jobs(cursor: psycopg.Cursor, schema: str, jobs: Sequence[NewJob]) -> list[int]:
    """Insert `jobs` with `cursor` (in its transaction, search_path set) and wake the workers of
    their queues: the NOTIFY is delivered on commit, like the rows, and never on rollback. A job
    whose unique key is held gets the holder's id back, and no row is added."""
    ids: list[int] = [0] * len(jobs)
    plain = [i for i, j in enumerate(jobs) if j.unique_key is None]
    woken: set[str] = set()
    if plain:
        params = {
            "queues": [jobs[i].queue for i in plain],
            "kinds": [jobs[i].kind for i in plain],
            "payloads": [Jsonb(jobs[i].payload) for i in plain],
            "priorities": [jobs[i].priority for i in plain],
            "run_ats": [jobs[i].run_at for i in plain],
            "max_attempts": [jobs[i].max_attempts for i in plain],
        }
        for index, row in zip(plain, cursor.execute(JOBS_Q["insert_many"], params).fetchall()):
            ids[index] = row["id"]
        woken.update(jobs[i].queue for i in plain)
    for index, job in enumerate(jobs):
        if job.unique_key is not None:
            ids[index], inserted = _insert_unique(cursor, job)
            if inserted:
                woken.add(job.queue)
    for queue in sorted(woken):
        cursor.execute(Q["notify"], {"channel": channel(schema), "payload": queue})
    return ids


def _insert_unique(cursor: psycopg.Cursor, job: NewJob) -> tuple[int, bool]:
    params = {
        "queue": job.queue, "kind": job.kind, "payload": Jsonb(job.payload), "priority": job.priority,
        "run_at": job.run_at, "max_attempts": job.max_attempts, "key": job.unique_key,
    }  # fmt: skip
    if job.unique_for is not None:
        taken = cursor.execute(Q["take_key"], {"key": job.unique_key, "period": job.unique_for}).fetchone()
        if taken is None:
            return cursor.execute(Q["key_holder"], {"key": job.unique_key}).fetchone()["job_id"], False
        row = cursor.execute(Q["insert_keyed"], {**params, "id": taken["job_id"], "until": taken["expires_at"]}).fetchone()
        return row["id"], True
    for _ in range(UNIQUE_TRIES):
        row = cursor.execute(Q["insert_unique"], params).fetchone()
        if row is not None:
            return row["id"], True
        holder = cursor.execute(Q["active_holder"], {"key": job.unique_key}).fetchone()
        if holder is not None:
            return holder["id"], False
    raise RuntimeError(f"unique key {job.unique_key!r}: its holder kept finishing during {UNIQUE_TRIES} tries")


def kind_defaults(cursor: psycopg.Cursor, kinds: Sequence[str] | None) -> dict[str, dict]:
    """The recorded kinds (queue, max_attempts, handler, node) the jobs services handle."""
    rows = cursor.execute(Q["kinds"], {"kinds": list(kinds) if kinds is not None else None}).fetchall()
    return {row["kind"]: row for row in rows}
