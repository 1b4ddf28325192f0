"""Enqueueing jobs from outside actors (a `Runtime`), inside them (a `Server`), or in the
caller's own database transaction; `Jobs` is the handle on all of it and on the operations.

```python
jobs = Jobs(rt)                                   # beside Limiter(rt)
jobs.enqueue("resize", {"image": 7}, unique_key="image:7")
with psycopg.connect(dsn) as conn:                # the caller's own transaction
    conn.execute("INSERT INTO images ...")
    jobs.enqueue("resize", {"image": 8}, conn=conn)   # visible, and workers woken, on commit
jobs.retry(42); jobs.wait(43, timeout=30)         # the operations of actors.jobs.ops.JobOps
```
"""

from __future__ import annotations

import datetime as dt
import math
import sys
import time
from typing import Any, Callable, Iterable, Sequence

import attrs

from actors.jobs.core import MAX_ENQUEUE_BYTES, MAX_PAYLOAD_BYTES, prepare
from actors.jobs.errors import BadJob, UnknownJobKind
from actors.jobs.messages import DatabaseInfo, Enqueue
from actors.jobs.registry import JobType, known_kinds, lookup
from actors.stores.rows import NewJob
from supervision import Runtime, Server
from supervision.clients import register_job_client

#: The registered name of the jobs service in `jobs_tree`.
SERVICE = "jobs-service"
#: the longest unique key (characters)
MAX_KEY = 512


def new_job(
    kind: str,
    payload: Any = None,
    *,
    queue: str | None = None,
    priority: int = 0,
    run_at: dt.datetime | None = None,
    max_attempts: int | None = None,
    unique_key: str | None = None,
    unique_for: float | None = None,
    check_kind: bool = True,
) -> NewJob:
    """A validated job. Defaults for queue and max_attempts come from the kind's `@job`.

    If this process did not import the kind's handler module, the defaults it does not give are
    left None and filled in where the job is inserted, from the jobs service's registry or the
    kinds recorded in the database; a kind nobody handles raises `UnknownJobKind` there.
    `unique_key`: a duplicate (same key, a job with it still available or running) returns the
    existing job's id instead of adding one; with `unique_for=S`, for S seconds after the first
    enqueue whatever its state. `check_kind=False`: no kind check, plain defaults."""
    job_type = _registered(kind) if isinstance(kind, str) else None
    if job_type is not None:
        queue = job_type.queue if queue is None else queue
        max_attempts = job_type.max_attempts if max_attempts is None else max_attempts
    elif not check_kind:
        queue = "default" if queue is None else queue
        max_attempts = 5 if max_attempts is None else max_attempts
    # by keyword: NewJob's fields after max_attempts changed in the merge (size came first), and
    # positionally the unique key went into `size` and every unique enqueue made a new job
    return check_new_job(
        NewJob(kind, payload, queue, priority, run_at, max_attempts, unique_key=unique_key, unique_for=unique_for)
    )


def check_new_job(job: NewJob, max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> NewJob:
    """Validate every field of `job` (raise `BadJob` naming it); queue and max_attempts may be
    None (the kind's defaults, filled in at insert)."""
    checked = prepare(
        job.kind,
        job.payload,
        queue="default" if job.queue is None else job.queue,
        priority=job.priority,
        run_at=job.run_at,
        max_attempts=5 if job.max_attempts is None else job.max_attempts,
        max_payload_bytes=max_payload_bytes,
    )
    if job.unique_key is not None and (not isinstance(job.unique_key, str) or not 1 <= len(job.unique_key) <= MAX_KEY):
        raise BadJob(f"unique_key: must be a string of 1 to {MAX_KEY} characters; got {job.unique_key!r}")
    period = job.unique_for
    if period is not None:
        if job.unique_key is None:
            raise BadJob("unique_for: give a unique_key too (unique_for is how long the key is held)")
        if isinstance(period, bool) or not isinstance(period, (int, float)) or not math.isfinite(period) or period <= 0:
            raise BadJob(f"unique_for: must be a number of seconds > 0; got {period!r}")
    if job.queue is None or job.max_attempts is None or job.unique_key is not None:
        return attrs.evolve(checked, queue=job.queue, max_attempts=job.max_attempts, unique_key=job.unique_key, unique_for=period)
    return checked  # the common case, without a copy (enqueue_many of 20,000 jobs: see docs/NOTES.md)


def resolve_kinds(jobs: Sequence[NewJob], recorded: Callable[[], dict[str, dict]], check: bool = True) -> list[NewJob]:
    """Fill in the defaults left None, from this process's handlers or, for kinds it did not
    import, the kinds the jobs services recorded (`recorded()`: kind -> row, read only when
    needed). A kind found in neither raises `UnknownJobKind` (unless `check` is False)."""
    found: dict[str, dict] | None = None
    out = []
    for job in jobs:
        job_type = _registered(job.kind)
        if job_type is not None and job.queue is not None and job.max_attempts is not None:
            out.append(job)  # a kind this process handles, nothing to fill in: no copy
            continue
        if job_type is not None:
            defaults = (job_type.queue, job_type.max_attempts)
        else:
            if found is None:
                found = recorded()
            row = found.get(job.kind)
            if row is not None:
                defaults = (row["queue"], row["max_attempts"])
            elif check:
                raise UnknownJobKind(job.kind, tuple(sorted(set(known_kinds()) | set(found))))
            else:
                defaults = ("default", 5)
        out.append(
            attrs.evolve(
                job,
                queue=defaults[0] if job.queue is None else job.queue,
                max_attempts=defaults[1] if job.max_attempts is None else job.max_attempts,
            )
        )
    return out


def _registered(kind: str) -> JobType | None:
    try:
        return lookup(kind)
    except UnknownJobKind:
        return None


def enqueue(target: Runtime, kind: str, payload: Any = None, *, timeout: float | None = None, service: str = SERVICE, **options: Any) -> int:
    """Validate and insert one job; returns its id. Bad input raises `BadJob` and stores nothing."""
    [job_id] = enqueue_many(target, [new_job(kind, payload, **options)], timeout=timeout, service=service)
    return job_id


def enqueue_many(target: Runtime, jobs: Iterable[NewJob], *, timeout: float | None = None, service: str = SERVICE) -> list[int]:
    """Insert many jobs in one statement; returns their ids in order."""
    batch = tuple(jobs)
    if not batch:
        return []
    if not all(isinstance(job, NewJob) for job in batch):
        raise BadJob("enqueue_many takes NewJob objects (see actors.jobs.new_job)")
    if not isinstance(target, Runtime):
        raise TypeError("inside an actor, send Enqueue(jobs) to the jobs service with self.ask/self.tell")
    size = sum(job.size for job in batch)
    if size > MAX_ENQUEUE_BYTES:
        raise BadJob(f"one enqueue may carry at most {MAX_ENQUEUE_BYTES:,} bytes of payloads; got {size:,}: split the batch")
    return target.ask(service, Enqueue(batch), timeout=timeout or max(5.0, len(batch) / 2000))


def enqueue_from(actor: Server, kind: str, payload: Any = None, *, service: str = SERVICE, **options: Any) -> None:
    """Inside an actor: enqueue without waiting (message-driven)."""
    actor.tell(service, Enqueue((new_job(kind, payload, **options),)))


def wait_for_workers(rt: Runtime, count: int, *, tree: str = "jobs", timeout: float = 15.0, interval: float = 0.05) -> tuple[str, ...]:
    """Wait until `count` workers of the job tree `tree` run; return their names.

    `rt.start(...)` returns once the tree's supervisors are up; the pool manager then starts the
    workers one by one (each connects to PostgreSQL and registers its process), so right after
    `start` the tree can show `worker-2 starting`. Jobs enqueued meanwhile wait in the table and
    are claimed as workers come up; call this when you need the whole pool (a benchmark, a test).
    Raises `StartFailed` after `timeout` seconds."""
    from supervision.errors import StartFailed

    deadline = time.monotonic() + timeout
    while True:
        node = rt.tree().find(tree)
        running = tuple(n.name for n in (node.walk() if node else ()) if n.actor_class == "Worker" and n.status == "running")
        if len(running) >= count:
            return running
        if time.monotonic() >= deadline:
            raise StartFailed(tree, f"{len(running)} of {count} workers running after {timeout:g} s")
        time.sleep(interval)


#: the operations of `JobOps` a `Jobs` handle offers
OPERATIONS = ("list_jobs", "get", "payload", "history", "retry", "retry_all", "cancel", "counts",
              "pause", "resume", "paused", "wait", "prune", "kinds")  # fmt: skip


class Jobs:
    """The job system from a program: enqueue (through the jobs service, straight into the
    database, or in the caller's own transaction) and the operations of `JobOps`.

    `Jobs(rt)` goes through the runtime's jobs service, which imported the handlers, and asks
    it once for the database (for `conn=` enqueues and the operations). `Jobs(database=config)`
    needs no runtime: kinds this process did not import are checked against the kinds the jobs
    services recorded in the database."""

    def __init__(self, target: Runtime | None = None, database: Any = None, *, service: str = SERVICE, timeout: float | None = None) -> None:
        if target is not None and not isinstance(target, Runtime):
            raise TypeError("Jobs takes a Runtime; inside an actor use enqueue_from(self, ...)")
        if target is None and database is None:
            raise TypeError("Jobs needs a Runtime (Jobs(rt)) or a database (Jobs(database=DatabaseConfig(...)))")
        self.target = target
        self.service = service
        self.timeout = timeout
        self._database_arg = database
        self._database: Any = None
        self._ops: Any = None

    def enqueue(self, kind: str, payload: Any = None, *, conn: Any = None, **options: Any) -> int:
        """Validate and insert one job; returns its id (a duplicate's unique key: the holder's)."""
        [job_id] = self.enqueue_many([new_job(kind, payload, **options)], conn=conn)
        return job_id

    def enqueue_many(self, jobs: Iterable[NewJob], *, conn: Any = None) -> list[int]:
        """Insert many `new_job(...)` objects; with `conn` (a psycopg connection), inside the
        caller's transaction: the jobs exist, and the workers are woken, only if it commits."""
        batch = tuple(jobs)
        if not all(isinstance(job, NewJob) for job in batch):
            raise BadJob("enqueue_many takes NewJob objects (see actors.jobs.new_job)")
        batch = tuple(check_new_job(job) for job in batch)
        if not batch:
            return []
        if conn is None and self.target is not None:
            return enqueue_many(self.target, batch, timeout=self.timeout, service=self.service)
        from actors.stores.job_ops import in_schema, insert_jobs, kind_defaults, own_transaction

        database = self.database
        scope = in_schema(conn, database.config.schema) if conn is not None else own_transaction(database)
        with scope as cursor:
            resolved = resolve_kinds(batch, lambda: kind_defaults(cursor, None))
            return insert_jobs(cursor, database.config.schema, resolved)

    @property
    def database(self) -> Any:
        """The `Database` of the operations (asked of the jobs service when not given)."""
        if self._database is None:
            from actors.stores.config import DatabaseConfig
            from actors.stores.database import Database

            given = self._database_arg
            if given is None:
                given = self.target.ask(self.service, DatabaseInfo(), timeout=self.timeout)
            if not isinstance(given, (Database, DatabaseConfig)):
                raise TypeError(f"Jobs(database=...) takes a DatabaseConfig; got {type(given).__name__}")
            self._database = given if isinstance(given, Database) else Database(given)
        return self._database

    @property
    def ops(self) -> Any:
        if self._ops is None:
            from actors.jobs.ops import JobOps

            self._ops = JobOps(self.database)
        return self._ops

    def __getattr__(self, name: str) -> Any:
        if name in OPERATIONS:
            return getattr(self.ops, name)
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    def close(self) -> None:
        if self._ops is not None:
            self._ops.close()
        if self._database is not None and self._database is not self._database_arg:
            self._database.close()

    def __enter__(self) -> "Jobs":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


# rt.enqueue / rt.enqueue_many call this module's enqueue and enqueue_many (supervision imports no workload)
register_job_client(sys.modules[__name__])
