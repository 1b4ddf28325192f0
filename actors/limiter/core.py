"""The limiter's pure core: permits per key, with a concurrency limit, an optional token-bucket
rate, a FIFO wait queue with per-request timeouts, and leases owned by an owner.

No actors and no clock of its own: every call takes `now`. The actor around it only turns
messages into calls and outcomes into replies, and sets its timer to `next_deadline()`.

Guarantees (checked by a Hypothesis state machine against a model):
- a key never has more permits out than its concurrency limit;
- waiters are served first come, first served (a newcomer never jumps the queue);
- permits of an owner that died, or of a lease past its lease timeout, come back;
- with a rate, grants in any window of T seconds are at most `burst + rate * T`.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections import deque
from typing import Any, Iterable

import attrs

from actors.limiter.errors import BadRequest, UnknownKey, UnknownLease
from supervision.liveness import ProcessIdentity

_EPSILON = 1e-9


def _positive_int(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(f"Limit.{attribute.name} must be an integer >= 1; got {value!r}")


def _optional_positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise BadRequest(f"Limit.{attribute.name} must be a positive number or None; got {value!r}")


@attrs.frozen
class Limit:
    """`concurrency` permits at once; with `rate`, at most `rate` grants per second on average
    and `burst` (default: max(1, rate)) at once.

    `cluster=True` makes the concurrency limit hold across every node's limiter that shares the
    database (see `LimiterServer(database=...)`); the rate stays per node."""

    concurrency: int = attrs.field(validator=_positive_int)
    rate: float | None = attrs.field(default=None, validator=_optional_positive)
    burst: int | None = attrs.field(default=None)
    cluster: bool = attrs.field(default=False, kw_only=True)

    @cluster.validator
    def _check_cluster(self, attribute: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, bool):
            raise BadRequest(f"Limit.cluster must be True or False; got {value!r}")

    @burst.validator
    def _check_burst(self, attribute: attrs.Attribute, value: Any) -> None:
        if value is not None:
            _positive_int(self, attribute, value)
            if self.rate is None:
                raise BadRequest("Limit.burst needs a rate")

    @property
    def capacity(self) -> float:
        """The token bucket's size."""
        return float(self.burst if self.burst is not None else max(1, math.ceil(self.rate or 1)))


@attrs.frozen
class Owner:
    """Who holds a permit: an actor (by registered name) or an OS process (checked by pid)."""

    name: str
    identity: ProcessIdentity | None = None

    @classmethod
    def actor(cls, name: str) -> "Owner":
        return cls(name)

    @classmethod
    def this_process(cls, label: str = "") -> "Owner":
        identity = ProcessIdentity.current()
        return cls(f"process:{identity.host}:{identity.pid}{':' + label if label else ''}", identity)

    @property
    def is_process(self) -> bool:
        return self.identity is not None


@attrs.frozen
class Lease:
    """A granted permit: its id, key and owner (an actor name or a process), when it was granted
    and when it expires. Release it with `Limiter.release(lease)` or by leaving `permit(...)`."""

    id: str
    key: str
    owner: Owner
    granted_at: float
    expires_at: float | None = None


@attrs.frozen
class Granted:
    """An outcome of the limiter core: request `request_id` got `lease`."""

    request_id: Any
    lease: Lease


@attrs.frozen
class TimedOut:
    """An outcome of the limiter core: request `request_id` waited `timeout` seconds for `key`
    without a permit (`waiting` requests were still queued)."""

    request_id: Any
    key: str
    timeout: float
    waiting: int


Outcome = Granted | TimedOut


@attrs.define
class _Waiter:
    request_id: Any
    key: str
    owner: Owner
    deadline: float
    timeout: float
    lease_timeout: float | None


@attrs.define
class _Bucket:
    limit: Limit
    held: dict[str, Lease] = attrs.field(factory=dict)
    queue: deque = attrs.field(factory=deque)
    tokens: float = 0.0
    refilled_at: float = 0.0
    granted: int = 0
    timed_out: int = 0


@attrs.frozen
class KeyStats:
    """A key's state in the limiter: its concurrency and rate, permits held, requests waiting,
    granted and timed out so far."""

    key: str
    concurrency: int
    rate: float | None
    held: int
    waiting: int
    granted: int
    timed_out: int


class LimiterCore:
    """The limiter's pure core: per-key concurrency and token-bucket rate, FIFO waiters with
    deadlines, leases with owners. No actors, no I/O: the clock is passed in; tested with a
    Hypothesis state machine."""

    def __init__(self, limits: dict[str, Limit] | None = None, default: Limit | None = None) -> None:
        self.default = default
        self.buckets: dict[str, _Bucket] = {}
        self.leases: dict[str, Lease] = {}
        self._ids = itertools.count(1)
        # lease ids of a restarted limiter never match those of the one before it
        self._lease_prefix = uuid.uuid4().hex[:12]
        for key, limit in (limits or {}).items():
            self.configure(key, limit, now=0.0)

    # --- configuration ------------------------------------------------------------------------

    def configure(self, key: str, limit: Limit, now: float) -> list[Outcome]:
        """Set (or change) the limit of `key`; a higher limit may grant waiters at once."""
        _check_key(key)
        if not isinstance(limit, Limit):
            raise BadRequest(f"a Limit is needed for {key!r}; got {type(limit).__name__}")
        bucket = self.buckets.get(key)
        if bucket is None:
            self.buckets[key] = _Bucket(limit, tokens=limit.capacity, refilled_at=now)
            return []
        self._refill(bucket, now)
        bucket.limit = limit
        bucket.tokens = min(bucket.tokens, limit.capacity)
        return self._pump(key, bucket, now)

    def _bucket(self, key: str, now: float) -> _Bucket:
        bucket = self.buckets.get(key)
        if bucket is None:
            if self.default is None:
                raise UnknownKey(key)
            self.configure(key, self.default, now)
            bucket = self.buckets[key]
        return bucket

    # --- the operations -------------------------------------------------------------------------

    def acquire(
        self,
        request_id: Any,
        key: str,
        owner: Owner,
        now: float,
        timeout: float,
        lease_timeout: float | None = None,
    ) -> list[Outcome]:
        """Ask for a permit. Returns the outcomes this caused: a `Granted` for this request if
        a permit is free at once; otherwise the request waits (FIFO) until granted or timed out."""
        _check_key(key)
        if not isinstance(owner, Owner):
            raise BadRequest(f"owner must be an Owner; got {type(owner).__name__}")
        _check_seconds("timeout", timeout, allow_zero=True)
        if lease_timeout is not None:
            _check_seconds("lease_timeout", lease_timeout)
        bucket = self._bucket(key, now)
        bucket.queue.append(_Waiter(request_id, key, owner, now + timeout, timeout, lease_timeout))
        outcomes = self._pump(key, bucket, now)
        if timeout == 0 and bucket.queue and bucket.queue[-1].request_id == request_id:
            waiter = bucket.queue.pop()
            bucket.timed_out += 1
            outcomes.append(TimedOut(waiter.request_id, key, 0.0, len(bucket.queue)))
        return outcomes

    def release(self, lease_id: str, now: float) -> list[Outcome]:
        """Give a permit back; waiters behind it may be granted."""
        lease = self.leases.get(lease_id) if isinstance(lease_id, str) else None
        if lease is None:
            raise UnknownLease(str(lease_id))
        return self._drop(lease, now)

    def owner_gone(self, owner_name: str, now: float) -> tuple[list[Lease], list[Any], list[Outcome]]:
        """The owner died: return its leases and cancel its waiting requests.

        Returns (released leases, cancelled request ids, new outcomes for other waiters)."""
        released = [lease for lease in self.leases.values() if lease.owner.name == owner_name]
        cancelled = []
        for bucket in self.buckets.values():
            keep = deque()
            for waiter in bucket.queue:
                (cancelled if waiter.owner.name == owner_name else keep).append(waiter)
            bucket.queue = keep
        outcomes: list[Outcome] = []
        for lease in released:
            outcomes.extend(self._drop(lease, now))
        # a cancelled waiter may have been the head that blocked the others
        for key, bucket in self.buckets.items():
            outcomes.extend(self._pump(key, bucket, now))
        return released, [w.request_id for w in cancelled], outcomes

    def advance(self, now: float) -> list[Outcome]:
        """Expire leases and waiters whose time is up, refill tokens, grant what can be granted."""
        outcomes: list[Outcome] = []
        for lease in [l for l in self.leases.values() if l.expires_at is not None and l.expires_at <= now]:
            outcomes.extend(self._drop(lease, now))
        for key, bucket in self.buckets.items():
            outcomes.extend(self._pump(key, bucket, now))
            keep = deque()
            for waiter in bucket.queue:
                if waiter.deadline <= now:
                    bucket.timed_out += 1
                    outcomes.append(TimedOut(waiter.request_id, key, waiter.timeout, len(bucket.queue) - 1))
                else:
                    keep.append(waiter)
            bucket.queue = keep
        return outcomes

    def next_deadline(self, now: float) -> float | None:
        """When `advance` next has something to do (a timeout, an expiry, a token)."""
        times = [l.expires_at for l in self.leases.values() if l.expires_at is not None]
        for bucket in self.buckets.values():
            if not bucket.queue:
                continue
            times.append(min(w.deadline for w in bucket.queue))
            rate = bucket.limit.rate
            if rate and len(bucket.held) < bucket.limit.concurrency:
                self._refill(bucket, now)
                times.append(now + max(0.0, (1.0 - bucket.tokens) / rate))
        return min(times) if times else None

    # --- inspection -------------------------------------------------------------------------------

    def held(self, key: str) -> int:
        bucket = self.buckets.get(key)
        return len(bucket.held) if bucket else 0

    def stats(self) -> tuple[KeyStats, ...]:
        return tuple(
            KeyStats(key, b.limit.concurrency, b.limit.rate, len(b.held), len(b.queue), b.granted, b.timed_out)
            for key, b in sorted(self.buckets.items())
        )

    def owners(self) -> Iterable[Owner]:
        """Everyone holding or waiting for a permit."""
        seen = {}
        for lease in self.leases.values():
            seen[lease.owner.name] = lease.owner
        for bucket in self.buckets.values():
            for waiter in bucket.queue:
                seen[waiter.owner.name] = waiter.owner
        return seen.values()

    # --- internals ---------------------------------------------------------------------------------

    def _drop(self, lease: Lease, now: float) -> list[Outcome]:
        self.leases.pop(lease.id, None)
        bucket = self.buckets[lease.key]
        bucket.held.pop(lease.id, None)
        return self._pump(lease.key, bucket, now)

    def _refill(self, bucket: _Bucket, now: float) -> None:
        rate = bucket.limit.rate
        if rate is None:
            return
        if now > bucket.refilled_at:
            bucket.tokens = min(bucket.limit.capacity, bucket.tokens + (now - bucket.refilled_at) * rate)
            bucket.refilled_at = now

    def _pump(self, key: str, bucket: _Bucket, now: float) -> list[Outcome]:
        """Grant waiters in order while a permit (and a token, with a rate) is free."""
        outcomes: list[Outcome] = []
        self._refill(bucket, now)
        while bucket.queue and len(bucket.held) < bucket.limit.concurrency:
            if bucket.limit.rate is not None:
                if bucket.tokens < 1.0 - _EPSILON:
                    break
                bucket.tokens -= 1.0
            waiter = bucket.queue.popleft()
            if waiter.deadline < now:  # its time ran out before this permit freed
                bucket.timed_out += 1
                outcomes.append(TimedOut(waiter.request_id, key, waiter.timeout, len(bucket.queue)))
                if bucket.limit.rate is not None:
                    bucket.tokens += 1.0
                continue
            lease = Lease(
                f"{self._lease_prefix}-{next(self._ids)}",
                key,
                waiter.owner,
                now,
                None if waiter.lease_timeout is None else now + waiter.lease_timeout,
            )
            bucket.held[lease.id] = lease
            bucket.granted += 1
            self.leases[lease.id] = lease
            outcomes.append(Granted(waiter.request_id, lease))
        return outcomes


def _check_key(key: Any) -> None:
    if not isinstance(key, str) or not key or len(key) > 200:
        raise BadRequest(f"a key must be a non-empty string of at most 200 characters; got {key!r}")


def _check_seconds(field: str, value: Any, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"{field} must be a number of seconds; got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise BadRequest(f"{field} must be {'>= 0' if allow_zero else '> 0'} seconds; got {value!r}")
