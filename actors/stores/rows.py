"""Rows as frozen attrs objects, each built in one `from_row`."""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

import attrs


@attrs.frozen
class NewJob:
    """A job to insert (validated by `actors.jobs` before it gets here)."""

    kind: str
    payload: Any = attrs.field(factory=dict)
    queue: str = "default"
    priority: int = 0
    run_at: dt.datetime | None = None
    max_attempts: int = 5


@attrs.frozen
class ClaimedJob:
    """What a worker needs of a job it claimed (`attempt` is this claim's fencing token)."""

    id: int
    queue: str
    kind: str
    payload: Any
    priority: int
    attempt: int
    max_attempts: int
    run_at: dt.datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "ClaimedJob":
        return cls(
            id=row["id"],
            queue=row["queue"],
            kind=row["kind"],
            payload=row["payload"],
            priority=row["priority"],
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            run_at=row["run_at"],
        )


@attrs.frozen
class Job:
    id: int
    queue: str
    kind: str
    payload: Any
    priority: int
    state: str
    attempt: int
    max_attempts: int
    run_at: dt.datetime
    created_at: dt.datetime
    claimed_at: dt.datetime | None
    claimed_by: int | None
    finished_at: dt.datetime | None
    last_error: str | None
    errors: tuple

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Job":
        return cls(
            id=row["id"],
            queue=row["queue"],
            kind=row["kind"],
            payload=row["payload"],
            priority=row["priority"],
            state=row["state"],
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            run_at=row["run_at"],
            created_at=row["created_at"],
            claimed_at=row["claimed_at"],
            claimed_by=row["claimed_by"],
            finished_at=row["finished_at"],
            last_error=row["last_error"],
            errors=tuple(row["errors"] or ()),
        )


@attrs.frozen
class ProcessRow:
    id: int
    node: str
    host: str
    pid: int
    start_ticks: int
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    expires_at: dt.datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "ProcessRow":
        return cls(
            id=row["id"],
            node=row["node"],
            host=row["host"],
            pid=row["pid"],
            start_ticks=row["start_ticks"],
            started_at=row["started_at"],
            heartbeat_at=row["heartbeat_at"],
            expires_at=row["expires_at"],
        )


@attrs.frozen
class NewEvent:
    type: str
    data: Any = attrs.field(factory=dict)


@attrs.frozen(order=True)
class Checkpoint:
    """A reader's place in the event log: events are read in (txid, position) order."""

    txid: int = 0
    position: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | None) -> "Checkpoint":
        if row is None:
            return cls()
        return cls(txid=row["txid"], position=row["position"])


@attrs.frozen
class Event:
    position: int
    txid: int
    type: str
    data: Any
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Event":
        return cls(
            position=row["position"],
            txid=row["txid"],
            type=row["type"],
            data=row["data"],
            created_at=row["created_at"],
        )

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.txid, self.position)


@attrs.frozen
class JobOutcome:
    """What happened to one claimed job, as the completer writes it.

    `status`: completed | failed | deferred (never started; back to available, attempt not
    counted). (`process`, `attempt`) is the claim's fencing token."""

    job_id: int
    process: int
    attempt: int
    status: str
    #: epoch seconds (time.time())
    finished_at: float
    run_ms: float = 0.0
    error: str | None = None
    retry_in: float = 0.0
    discard: bool = False


@attrs.frozen
class WriteResult:
    """What a batch write changed: the rest of the outcomes were fenced off (rescued jobs)."""

    completed: tuple[int, ...] = ()
    failed: tuple[int, ...] = ()
    retried: tuple[int, ...] = ()
    deferred: tuple[int, ...] = ()
    fenced: int = 0


@attrs.frozen
class RescueResult:
    jobs: int
    processes: tuple[dict, ...]
