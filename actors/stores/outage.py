"""Waiting out a database outage: which errors mean "the database is away", and when to try
again. Database-backed actors wait and reconnect instead of crashing: a crash loop would use
up their supervisors' restart intensity (10 restarts in 10 s) within seconds of an outage and
take the runtime's kernel down with it, however healthy the rest of the tree.
"""

from __future__ import annotations

import random
from typing import Any

import attrs

from actors.stores.errors import ConnectionLost, DatabaseUnavailable
from supervision.errors import Recoverable

#: what an actor shows in `tree()` while it waits
WAITING = "waiting for the database"


def is_outage(exc: BaseException) -> bool:
    """True for errors that go away when the server comes back (not bad SQL, not bad data)."""
    if isinstance(exc, (ConnectionLost, DatabaseUnavailable)):
        return True
    from actors.stores.database import is_connection_error

    return is_connection_error(exc)


@attrs.define
class Outage:
    """Backoff between reconnect attempts: `first` seconds, doubling to `most` (with +/-20%
    jitter so that many actors do not reconnect in step). `since` is when it began."""

    first: float = 0.1
    most: float = 2.0
    since: float | None = None
    failures: int = 0
    last_error: str = ""

    @property
    def active(self) -> bool:
        return self.since is not None

    def failed(self, now: float, exc: BaseException) -> float:
        """Record a failed attempt; return when to try again (monotonic seconds)."""
        if self.since is None:
            self.since = now
        self.failures += 1
        self.last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        delay = min(self.most, self.first * 2 ** (self.failures - 1))
        return now + delay * random.uniform(0.8, 1.2)

    def away(self, now: float, exc: BaseException, log: Any, name: str, meanwhile: str = "waiting") -> float:
        """Called in an `except` block: anything but an outage is raised again; an outage is
        recorded, its first failure logged on the actor's `log` ("<name>: the database is away
        (<error>); <meanwhile>", if any). Returns when to try again (monotonic seconds)."""
        if not is_outage(exc):
            raise exc
        if not self.active:
            log.warning("%s: the database is away (%s)%s", name, exc, f"; {meanwhile}" if meanwhile else "")
        return self.failed(now, exc)

    def recovered(self, now: float) -> float:
        """The database answered again; returns how long the outage lasted."""
        lasted = 0.0 if self.since is None else now - self.since
        self.since, self.failures, self.last_error = None, 0, ""
        return lasted


class DatabaseWaiting(Recoverable):
    """An actor (the jobs service, the rescuer, the completer, the cluster limiter) cannot reach
    the database right now (an outage, a restart); it waits and reconnects by itself. Retry
    the call. `stored` says whether the jobs may have been stored: "no", or "unknown" when the
    connection dropped during the commit (retry with a unique key to be safe). Importable from
    `actors.jobs` too."""

    retryable = True

    def __init__(self, actor: str, problem: str, stored: str = "no") -> None:
        detail = "nothing was stored" if stored == "no" else "the jobs may or may not be stored"
        super().__init__(f"{actor} is waiting for the database ({problem}): {detail}; retry shortly", actor=actor, problem=problem, stored=stored)
