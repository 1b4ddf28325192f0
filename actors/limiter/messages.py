"""Messages of the limiter actor (module-level frozen attrs classes, picklable)."""

from __future__ import annotations


import attrs

from supervision.messages import Message

from actors.limiter.core import Lease, Limit, Owner


@attrs.frozen
class Acquire(Message):
    """Ask for a permit on `key`. Reply: `Granted`-style `Lease`, or a `LimitTimeout` error.

    `lease_timeout` (seconds) returns the permit by itself if the holder never releases it."""

    key: str
    owner: Owner
    timeout: float = 5.0
    lease_timeout: float | None = None


@attrs.frozen
class Release(Message):
    """Give a permit back. Reply: None, or an `UnknownLease` error."""

    lease_id: str


@attrs.frozen
class Configure(Message):
    """Set the limit of a key. Reply: None."""

    key: str
    limit: Limit


@attrs.frozen
class Stats(Message):
    """Reply: a tuple of `KeyStats`."""


@attrs.frozen
class Held(Message):
    """Reply: the leases currently held, optionally of one key (for tests and tools)."""

    key: str | None = None


__all__ = ["Acquire", "Configure", "Held", "Lease", "Limit", "Owner", "Release", "Stats"]
