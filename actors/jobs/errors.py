"""Errors of the job system."""

from __future__ import annotations

from supervision.errors import BadRequest, Recoverable


class BadJob(BadRequest):
    """A job that cannot be enqueued as given (field named in the message); nothing is stored."""


class UnknownJobKind(BadJob):
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
