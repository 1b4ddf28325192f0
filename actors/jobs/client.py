"""Enqueueing jobs from outside actors (a `Runtime`) or inside them (a `Server`)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Iterable

from actors.jobs.core import MAX_ENQUEUE_BYTES, prepare
from actors.jobs.errors import BadJob
from actors.jobs.messages import Enqueue
from actors.jobs.registry import lookup
from actors.stores.rows import NewJob
from supervision import Runtime, Server

#: The registered name of the jobs service in `jobs_tree`.
SERVICE = "jobs-service"


def new_job(
    kind: str,
    payload: Any = None,
    *,
    queue: str | None = None,
    priority: int = 0,
    run_at: dt.datetime | None = None,
    max_attempts: int | None = None,
    check_kind: bool = True,
) -> NewJob:
    """A validated job. Defaults for queue and max_attempts come from the kind's `@job`."""
    job_type = lookup(kind) if check_kind else None
    return prepare(
        kind,
        payload,
        queue=(job_type.queue if job_type else "default") if queue is None else queue,
        priority=priority,
        run_at=run_at,
        max_attempts=(job_type.max_attempts if job_type else 5) if max_attempts is None else max_attempts,
    )


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
