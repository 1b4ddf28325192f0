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


class UnknownKey(Recoverable):
    """No limit is configured for the key and the limiter has no default."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no limit is configured for {key!r}; configure it first or give the limiter a default", key=key)


__all__ = ["BadRequest", "LimitTimeout", "UnknownKey", "UnknownLease"]
