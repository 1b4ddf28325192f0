"""Errors of the limiter: all recoverable (the caller gets them, the limiter keeps running)."""

from __future__ import annotations

from actors.stores.outage import DatabaseWaiting
from supervision.errors import BadRequest, Recoverable


class LimitTimeout(Recoverable):
    """No permit became free within the request's timeout."""

    def __init__(self, key: str, timeout: float, waiting: int = 0) -> None:
        super().__init__(
            f"no permit for {key!r} within {timeout:g} s ({waiting} requests were waiting); "
            "retry later or raise the limit",
            key=key,
            timeout=timeout,
            waiting=waiting,
        )


class UnknownLease(Recoverable):
    """The lease is not held here: already released, expired, or the limiter restarted."""

    def __init__(self, lease_id: str) -> None:
        super().__init__(
            f"lease {lease_id!r} is not held (released, expired, or the limiter restarted since)",
            lease_id=lease_id,
        )


class UnknownLimitKey(Recoverable):
    """No limit is configured for the key and the limiter has no default: a typo'd key is an
    error, never silently limited by a guess."""

    def __init__(self, key: str, known: tuple[str, ...] = ()) -> None:
        shown = ", ".join(repr(k) for k in known[:10]) + (", ..." if len(known) > 10 else "")
        super().__init__(
            f"no limit is configured for {key!r} (configured: {shown or 'none'}); check the key, "
            "configure it (Configure(key, Limit(n))), or start the limiter with default=Limit(n)",
            key=key,
        )


class ClusterWaiting(DatabaseWaiting):
    """No permit on a cluster-wide key now: the limiter cannot reach the database (an outage,
    a restart) and reconnects by itself; no permit was granted. Keys without `cluster=True`
    keep working meanwhile. Retry shortly (a `DatabaseWaiting`, `retryable`)."""

    def __init__(self, actor: str, key: str, problem: str) -> None:
        # DatabaseWaiting's own text speaks of stored jobs; the fields are the same
        Recoverable.__init__(
            self,
            f"{actor} is waiting for the database ({problem}): no permit for {key!r} was granted; retry shortly "
            "(keys without cluster=True keep working)",
            actor=actor,
            key=key,
            problem=problem,
            stored="no",
        )


#: the earlier name
UnknownKey = UnknownLimitKey

__all__ = ["BadRequest", "ClusterWaiting", "LimitTimeout", "UnknownKey", "UnknownLimitKey", "UnknownLease"]
