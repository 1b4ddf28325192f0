"""Errors of the job system."""

from __future__ import annotations

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
