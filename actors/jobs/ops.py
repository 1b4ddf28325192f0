"""Operating the job system: list and inspect jobs, retry and cancel them, pause queues, wait
for a job, prune old ones; safe to run from several nodes at once.

```python
from actors.jobs.ops import JobOps

with JobOps(db_config) as ops:
    for job in ops.list_jobs(state="failed", kind="resize"):
        print(job.id, job.attempt, job.last_error)
    ops.retry(42)                 # failed | cancelled -> available (one more attempt)
    ops.cancel(43)                # available | scheduled | running -> cancelled
    ops.pause("images"); ops.resume("images")
    ops.wait(44, timeout=30)      # its final state, woken by LISTEN/NOTIFY
    ops.prune(7 * 86400)          # finished jobs older than a week, in batches
```

Every operation checks its arguments and answers a wrong one with a typed error
(`BadJob`, `JobNotFound`, `JobStateError`) having changed nothing. Two nodes retrying (or
cancelling) one job: the row lock orders them, one changes it and the other gets
`JobStateError` naming the state the first one left.
"""

from __future__ import annotations

import getpass
import math
import os
import socket
from typing import Any

from actors.jobs.core import QUEUE_PATTERN
from actors.jobs.errors import ALLOWED, BadJob, JobNotFound, JobStateError, JobWaitTimeout
from actors.jobs.registry import check_kind
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.job_ops import FINAL_STATES, PgJobOps
from actors.stores.rows import Attempt, JobSummary

#: the states a job shows (`scheduled`: available, its run_at still ahead)
STATES = ("available", "scheduled", "running", "completed", "failed", "cancelled")
MAX_LIMIT = 10_000

__all__ = ["Attempt", "JobOps", "JobSummary", "STATES", "operator"]


def operator() -> str:
    """Who is acting, recorded with each retry, cancel and pause: user@host:pid."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}:{os.getpid()}"


class JobOps:
    """Job operations on one schema. Owns its connections: `close()` it, or use `with`.

    `recheck`: while waiting, seconds between reads of a job's state when no notification
    came (notifications wake it at once; this only bounds a missed one)."""

    def __init__(self, database: DatabaseConfig | Database, *, recheck: float = 5.0, by: str | None = None) -> None:
        if isinstance(database, DatabaseConfig):
            self.database, self._owned = Database(database), True
        elif isinstance(database, Database):
            self.database, self._owned = database, False
        else:
            raise TypeError(f"JobOps needs a DatabaseConfig; got {type(database).__name__}")
        self.store = PgJobOps(self.database)
        self.recheck = _seconds("recheck", recheck, positive=True)
        self.by = by or operator()

    def close(self) -> None:
        self.store.close()
        if self._owned:
            self.database.close()

    def __enter__(self) -> "JobOps":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # --- inspect ------------------------------------------------------------------------------

    def list_jobs(
        self,
        state: str | None = None,
        kind: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        before_id: int | None = None,
    ) -> list[JobSummary]:
        """Jobs newest first, `limit` at most; the next page: `before_id=` the last id shown."""
        stored, due = _state_filter(state)
        if kind is not None:
            check_kind(kind)
        if queue is not None:
            _check_queue(queue)
        _count("limit", limit, 1, MAX_LIMIT)
        if before_id is not None:
            _job_id(before_id, "before_id")
        return self.store.list(stored=stored, due=due, kind=kind, queue=queue, limit=limit, before=before_id)

    def get(self, job_id: int) -> JobSummary:
        return self._found(job_id)["summary"]

    def payload(self, job_id: int) -> Any:
        return self._found(job_id)["payload"]

    def history(self, job_id: int) -> list[Attempt]:
        """Every attempt, oldest first: when, which process (and its node, host, pid), how it
        ended, and its error; operators' retries and cancels are in it too."""
        found = self.store.history(_job_id(job_id))
        if found is None:
            raise JobNotFound(job_id)
        return found

    def counts(self) -> dict[tuple[str, str], int]:
        """(queue, state) -> jobs; `scheduled` counted apart from `available`."""
        return self.store.counts()

    def _found(self, job_id: int) -> dict:
        found = self.store.get(_job_id(job_id))
        if found is None:
            raise JobNotFound(job_id)
        return found

    # --- retry and cancel ----------------------------------------------------------------------

    def retry(self, job_id: int) -> JobSummary:
        """A failed or cancelled job runs again as soon as a worker is free (with one more
        attempt if it had used them all)."""
        return self._change(job_id, "retry")

    def cancel(self, job_id: int) -> JobSummary:
        """An available or scheduled job never runs; a running one is marked cancelled in one
        fenced update (its worker's outcome can no longer complete it) and its id is sent on
        `cancel_channel(schema)` so the worker can stop the handler."""
        return self._change(job_id, "cancel")

    def _change(self, job_id: int, action: str) -> JobSummary:
        before, result, after = self.store.change(_job_id(job_id), action, ALLOWED[action], self.by)
        if before is None:
            raise JobNotFound(job_id)
        if result != "changed":
            raise JobStateError(job_id, before, action, "" if result == "refused" else result)
        return after  # as the change left it (a worker may have claimed it since)

    def retry_all(self, state: str = "failed", kind: str | None = None, queue: str | None = None, batch: int = 1000) -> int:
        """Retry every failed (or cancelled) job matching the filter; returns how many."""
        if state not in ALLOWED["retry"]:
            raise BadJob(f"retry_all: state must be one of {', '.join(ALLOWED['retry'])}; got {state!r}")
        if kind is not None:
            check_kind(kind)
        if queue is not None:
            _check_queue(queue)
        _count("batch", batch, 1, MAX_LIMIT)
        return self.store.retry_all(state=state, kind=kind, queue=queue, by=self.by, batch=batch)

    # --- queues ------------------------------------------------------------------------------

    def pause(self, queue: str) -> bool:
        """Workers on every node stop claiming from `queue` at their next claim (jobs already
        claimed finish). False if it was paused already."""
        return self.store.pause(_check_queue(queue), self.by)

    def resume(self, queue: str) -> bool:
        """Workers claim from `queue` again, woken at once. False if it was not paused."""
        return self.store.resume(_check_queue(queue))

    def paused(self) -> set[str]:
        return {row["queue"] for row in self.store.paused()}

    # --- waiting and retention -----------------------------------------------------------------

    def wait(self, job_id: int, timeout: float) -> JobSummary:
        """The job once it is completed, failed or cancelled (`JobWaitTimeout` after `timeout`
        seconds). Sleeps on LISTEN/NOTIFY, no polling loop."""
        _seconds("timeout", timeout)
        state = self.store.wait(_job_id(job_id), timeout, self.recheck)
        if state is None:
            raise JobNotFound(job_id)
        if state not in FINAL_STATES:
            raise JobWaitTimeout(job_id, state, timeout)
        return self.get(job_id)

    def prune(self, older_than_seconds: float, batch: int = 1000, pause: float = 0.0) -> int:
        """Delete completed, failed and cancelled jobs that finished more than
        `older_than_seconds` ago, `batch` per short transaction; returns how many. `pause`:
        seconds between batches, so that a big prune leaves the CPU to the claims (on 2 cores a
        prune at full speed cost claims 29%; with 0.05 s pauses, see docs/NOTES.md)."""
        _seconds("older_than_seconds", older_than_seconds)
        _count("batch", batch, 1, 100_000)
        _seconds("pause", pause)
        return self.store.prune(older_than_seconds, batch, pause)

    def kinds(self) -> dict[str, dict]:
        """The kinds the running jobs services handle (recorded when each one starts)."""
        return self.store.kinds()


# --- argument checks (each raises BadJob naming the argument) ---------------------------------


def _job_id(value: Any, name: str = "job_id") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63:
        raise BadJob(f"{name}: must be a job id (a positive integer); got {value!r}")
    return value


def _check_queue(queue: Any) -> str:
    if not isinstance(queue, str) or not QUEUE_PATTERN.fullmatch(queue):
        raise BadJob(f"queue: {queue!r} is not a valid queue name (1-64 letters, digits and _ . : -)")
    return queue


def _state_filter(state: Any) -> tuple[str | None, bool | None]:
    """(stored state, due) for the list statement."""
    if state is None:
        return None, None
    if state not in STATES:
        raise BadJob(f"state: must be one of {', '.join(STATES)}; got {state!r}")
    if state == "scheduled":
        return "available", False
    if state == "available":
        return "available", True
    return state, None


def _count(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadJob(f"{name}: must be an integer from {low} to {high}; got {value!r}")
    return value


def _seconds(name: str, value: Any, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise BadJob(f"{name}: must be a finite number of seconds {'> 0' if positive else '>= 0'}; got {value!r}")
    return float(value)
