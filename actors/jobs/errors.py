"""Errors of the job system."""

from __future__ import annotations

from actors.stores.outage import DatabaseWaiting  # (defined there: the limiter raises it too)
from supervision.errors import BadRequest, Recoverable


class BadJob(BadRequest):
    """A job that cannot be enqueued as given (field named in the message); nothing is stored."""


class UnknownJobKind(BadJob):
    """No handler is registered for this job kind (decorate it with `@job` and list its module in
    the job tree's `handlers`)."""

    def __init__(self, kind: str, known: tuple[str, ...] = ()) -> None:
        hint = f"; known kinds: {', '.join(sorted(known))}" if known else ""
        super().__init__(
            f"no handler is registered for job kind {kind!r}: decorate it with @job and list its module in "
            f"the job tree's handlers{hint}",
            kind=kind,
        )


class JobTimeout(Exception):
    """Raised inside a handler that ran past its timeout (it is retried like any failure)."""


class DiscardJob(Recoverable):
    """Raise it in a handler to fail the job at once, without further attempts."""


class JobCancelled(BaseException):
    """Raised inside a handler whose job is no longer its worker's: cancelled by an operator, or
    rescued from a worker that was frozen past its heartbeat expiry. `current_job().check()`
    raises it; past the worker's grace period the handler is interrupted with it. A
    `BaseException`, like `asyncio.CancelledError`, so that `except Exception` in a handler does
    not swallow it. The worker writes no outcome for such a job: it is no longer its own."""

    def __init__(self, job_id: int, reason: str) -> None:
        super().__init__(f"job {job_id} was {reason}; stop working on it")
        self.job_id = job_id
        self.reason = reason


class NotInJob(Recoverable):
    """`current_job()` was called outside a job handler."""


# --- job operations (issue 15) -----------------------------------------------------------------

#: which states each operation accepts (the message of `JobStateError` lists them)
ALLOWED = {
    "retry": ("failed", "cancelled"),
    "cancel": ("available", "scheduled", "running"),
}


class JobNotFound(Recoverable, LookupError):
    """No job with that id (never enqueued, or pruned)."""

    def __init__(self, job_id: object) -> None:
        super().__init__(f"no job with id {job_id!r} (never enqueued, or pruned since)", job_id=job_id)


class JobStateError(Recoverable):
    """The job is in a state the operation does not apply to; nothing was changed."""

    def __init__(self, job_id: int, state: str, action: str, reason: str = "") -> None:
        allowed = ALLOWED.get(action, ())
        text = f"cannot {action} job {job_id}: it is {state}"
        if reason:
            text += f" ({reason})"
        elif allowed:
            text += f"; only {' or '.join(allowed)} jobs can be {'retried' if action == 'retry' else action + 'led'}"
        super().__init__(text, job_id=job_id, state=state, action=action)


class JobWaitTimeout(Recoverable, TimeoutError):
    """`wait` gave up before the job reached a final state (the job is unchanged)."""

    def __init__(self, job_id: int, state: str, timeout: float) -> None:
        super().__init__(
            f"job {job_id} is still {state} after {timeout:g} s; wait longer or check its workers",
            job_id=job_id,
            state=state,
            timeout=timeout,
        )
