"""Messages of the job system (module-level frozen attrs classes, picklable)."""

from __future__ import annotations

import attrs

from supervision.messages import Message

from actors.stores.rows import JobOutcome, NewJob, WriteResult


@attrs.frozen
class Enqueue(Message):
    """Insert jobs (one statement). Reply: their ids, in order. Nothing is stored if any is invalid."""

    jobs: tuple[NewJob, ...]


@attrs.frozen
class Complete(Message):
    """Worker -> completer: outcomes of claimed jobs. Reply (after they are written): the count."""

    outcomes: tuple[JobOutcome, ...]


@attrs.frozen
class Subscribe(Message):
    """Ask the completer to publish `JobsFinished` to the actor registered as `name`.

    At most `window` deliveries are in flight unacknowledged; at most `buffer` finished jobs
    wait behind them (older ones are dropped and counted): a slow subscriber never slows the
    completer, a dead one is removed."""

    name: str
    buffer: int = 1000
    window: int = 4


@attrs.frozen
class Unsubscribe(Message):
    """Subscriber -> completer: stop sending finished jobs to the subscriber registered as `name`."""

    name: str


@attrs.frozen
class FinishedJob(Message):
    """One finished job in a `JobsFinished` batch: its id and what happened (completed | failed |
    retried | deferred)."""

    id: int
    status: str  # completed | failed | retried | deferred


@attrs.frozen
class JobsFinished(Message):
    """Completer -> subscriber. Acknowledge with `Ack(seq)` (`Subscriber` does it for you)."""

    seq: int
    jobs: tuple[FinishedJob, ...]
    dropped: int = 0


@attrs.frozen
class Ack(Message):
    """Subscriber -> completer: the batch `seq` was handled (`Subscriber` sends it for you); the
    completer then sends the next one."""

    subscriber: str
    seq: int


@attrs.frozen
class CompleterStats(Message):
    """Ask the completer for its counters. Reply: a dict (outcomes written, batches, per-subscriber
    buffer state)."""

    pass


@attrs.frozen
class Flush(Message):
    """Write what is buffered now. Reply: the number of outcomes written."""


@attrs.frozen
class Rescue(Message):
    """Run a rescue pass now. Reply: a `RescueResult`."""


@attrs.frozen
class WorkerStatus(Message):
    """Reply: a dict with the worker's process id, claimed and finished counts."""


@attrs.frozen
class Continue(Message):
    """Internal: a worker's next step (claim, or the next job of its batch)."""

    reason: str = ""


@attrs.frozen
class Written(Message):
    """Worker -> completer (a tell): an idle worker wrote these outcomes itself (fenced, with
    their events, durably); the completer counts them and publishes them to its subscribers."""

    result: WriteResult



__all__ = [
    "Ack",
    "Complete",
    "CompleterStats",
    "Continue",
    "DatabaseInfo",
    "Enqueue",
    "FinishedJob",
    "Flush",
    "JobOutcome",
    "JobsFinished",
    "NewJob",
    "Rescue",
    "Subscribe",
    "Unsubscribe",
    "WorkerStatus",
    "Written",
]


@attrs.frozen
class DatabaseInfo(Message):
    """Ask the jobs service for its `DatabaseConfig` (how `Jobs(rt)` reaches the operations)."""
