"""Errors of the limiter: all recoverable (the caller gets them, the limiter keeps running)."""

from __future__ import annotations

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


#: the earlier name
UnknownKey = UnknownLimitKey

__all__ = ["BadRequest", "LimitTimeout", "UnknownKey", "UnknownLimitKey", "UnknownLease"]
