"""Rows as frozen attrs objects, each built in one `from_row`."""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

import attrs


def _from_row(cls: type, row: Mapping[str, Any], **converted: Any) -> Any:
    """Build an attrs row class from a dict row: one column per field, by name."""
    return cls(**{f.name: converted[f.name] if f.name in converted else row[f.name] for f in attrs.fields(cls)})


@attrs.frozen
class NewJob:
    """A job to insert (validated by `actors.jobs` before it gets here)."""

    kind: str
    payload: Any = attrs.field(factory=dict)
    queue: str = "default"
    priority: int = 0
    run_at: dt.datetime | None = None
    max_attempts: int = 5
    #: at most one job with this key is available or running (or, with `unique_for`, one per
    #: `unique_for` seconds after the first enqueue, whatever its state); see actors.jobs.ops
    unique_key: str | None = None
    unique_for: float | None = None
    #: bytes of its payload as JSON, measured by `actors.jobs.prepare` (0: not measured)
    size: int = attrs.field(default=0, eq=False, repr=False, kw_only=True)


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
        return _from_row(cls, row)


@attrs.frozen
class Job:
    """A row of `jobs`: the job, its state (available | running | completed | failed | cancelled),
    its attempts and errors."""

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
        return _from_row(cls, row, errors=tuple(row["errors"] or ()))


@attrs.frozen
class ProcessRow:
    """A row of `processes`: a worker process (node name, host, pid, process start time) and its
    heartbeat lease."""

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
        return _from_row(cls, row)


@attrs.frozen
class NewEvent:
    """An event to append: its `type` (`area.verb`) and `data` (a JSON object)."""

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
    """An event as projections receive it: `position`, `txid`, `type`, `data` (decoded JSON) and
    `created_at` (docs/events.md)."""

    position: int
    txid: int
    type: str
    data: Any
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Event":
        return _from_row(cls, row)

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
    #: a failed attempt's traceback text (bounded, storable), kept in the job's history
    traceback: str | None = None


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
    """`jobs` released in all, of which `unstarted` (claimed, never started: the attempt not
    counted) and `completed` (they had ended well: completed, not run again)."""

    jobs: int
    processes: tuple[dict, ...]
    unstarted: int = 0
    completed: int = 0


@attrs.frozen
class JobSummary:
    """One job as the operations show it. `state` is the stored state, except that an available
    job whose `run_at` is still ahead shows as `scheduled`."""

    id: int
    kind: str
    queue: str
    state: str
    attempt: int
    max_attempts: int
    last_error: str | None
    created_at: dt.datetime
    claimed_at: dt.datetime | None
    finished_at: dt.datetime | None
    run_at: dt.datetime
    priority: int
    claimed_by: int | None = None
    unique_key: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "JobSummary":
        return _from_row(cls, row)


@attrs.frozen
class Attempt:
    """One attempt of a job (or an operator's action on it), oldest first in `history`.

    `outcome`: completed | running | error | timeout | discarded | died | cancelled | retried
    (an operator's retry). `error` is the recorded error text (with the traceback when the
    worker recorded one)."""

    attempt: int
    at: dt.datetime | None
    process: int | None
    node: str | None
    outcome: str
    error: str | None = None
    host: str | None = None
    pid: int | None = None
