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

import heapq
import itertools
import math
import uuid
from collections import deque
from typing import Any, Callable, Iterable

import attrs

from actors.limiter.errors import BadRequest, UnknownLimitKey, UnknownLease
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
    #: set by `configure` (and for the limits given at start): never forgotten when idle
    configured: bool = False


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
    deadlines, leases with owners; no actors, no I/O (the clock is passed in). Every operation costs O(what it touches), never O(keys ever seen):
    owners, waiting keys and lease expiries are indexed, and a key that only the default
    covers is forgotten once idle (nothing held or waiting, its token bucket full again), so
    100,000 distinct keys leave nothing behind (the limiter used to keep every bucket and scan
    them all on every message)."""

    def __init__(
        self,
        limits: dict[str, Limit] | None = None,
        default: Limit | None = None,
        on_owner_freed: Callable[[Owner], None] | None = None,
    ) -> None:
        """`on_owner_freed(owner)` is called when an owner no longer holds or waits for
        anything (the actor stops watching it)."""
        self.default = default
        self.on_owner_freed = on_owner_freed
        self.buckets: dict[str, _Bucket] = {}
        self.leases: dict[str, Lease] = {}
        #: owner name -> ids of its leases; owner name -> {key: its waiters in that queue}
        self._owned: dict[str, set[str]] = {}
        self._waits: dict[str, dict[str, int]] = {}
        self._owners: dict[str, Owner] = {}
        #: keys with waiters (the only ones `advance` and `next_deadline` look at)
        self._active: set[str] = set()
        #: (expires_at, lease id) of leases with a lease timeout; stale entries are skipped
        self._expiries: list[tuple[float, str]] = []
        #: (when its bucket is full again, key) of idle default-covered keys with a rate
        self._idle: list[tuple[float, str]] = []
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
            self.buckets[key] = _Bucket(limit, tokens=limit.capacity, refilled_at=now, configured=True)
            return []
        self._refill(bucket, now)
        bucket.limit = limit
        bucket.configured = True
        bucket.tokens = min(bucket.tokens, limit.capacity)
        return self._pump(key, bucket, now)

    def _bucket(self, key: str, now: float) -> _Bucket:
        bucket = self.buckets.get(key)
        if bucket is None:
            if self.default is None:
                raise UnknownLimitKey(key, tuple(sorted(k for k, b in self.buckets.items() if b.configured)[:11]))
            bucket = self.buckets[key] = _Bucket(self.default, tokens=self.default.capacity, refilled_at=now)
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
        check_seconds("timeout", timeout, allow_zero=True)
        if lease_timeout is not None:
            check_seconds("lease_timeout", lease_timeout)
        self._evict_idle(now)
        bucket = self._bucket(key, now)
        bucket.queue.append(_Waiter(request_id, key, owner, now + timeout, timeout, lease_timeout))
        self._waiting(owner, key, +1)
        outcomes = self._pump(key, bucket, now)
        if timeout == 0 and bucket.queue and bucket.queue[-1].request_id == request_id:
            waiter = bucket.queue.pop()
            self._waiting(waiter.owner, key, -1)
            bucket.timed_out += 1
            outcomes.append(TimedOut(waiter.request_id, key, 0.0, len(bucket.queue)))
        self._settle(key, bucket, now)
        return outcomes

    def release(self, lease_id: str, now: float) -> list[Outcome]:
        """Give a permit back; waiters behind it may be granted."""
        lease = self.leases.get(lease_id) if isinstance(lease_id, str) else None
        if lease is None:
            raise UnknownLease(str(lease_id))
        outcomes = self._drop(lease, now)
        self._evict_idle(now)
        return outcomes

    def owner_gone(self, owner_name: str, now: float) -> tuple[list[Lease], list[Any], list[Outcome]]:
        """The owner died: return its leases and cancel its waiting requests.

        Returns (released leases, cancelled request ids, new outcomes for other waiters)."""
        released = [self.leases[i] for i in sorted(self._owned.get(owner_name, ()))]
        cancelled: list[_Waiter] = []
        for key in list(self._waits.get(owner_name, {})):
            bucket = self.buckets[key]
            keep = deque()
            for waiter in bucket.queue:
                (cancelled if waiter.owner.name == owner_name else keep).append(waiter)
            bucket.queue = keep
        self._waits.pop(owner_name, None)
        self._forget_owner(owner_name)
        outcomes: list[Outcome] = []
        for lease in released:
            outcomes.extend(self._drop(lease, now))
        # a cancelled waiter may have been the head that blocked the others
        for key in {w.key for w in cancelled}:
            bucket = self.buckets.get(key)
            if bucket is None:
                continue  # an idle default-covered key, forgotten when the owner's lease went
            outcomes.extend(self._pump(key, bucket, now))
            self._settle(key, bucket, now)
        return released, [w.request_id for w in cancelled], outcomes

    def advance(self, now: float) -> list[Outcome]:
        """Expire leases and waiters whose time is up, refill tokens, grant what can be granted."""
        outcomes: list[Outcome] = []
        while self._expiries and self._expiries[0][0] <= now:
            _, lease_id = heapq.heappop(self._expiries)
            lease = self.leases.get(lease_id)
            if lease is not None and lease.expires_at is not None and lease.expires_at <= now:
                outcomes.extend(self._drop(lease, now))
        for key in list(self._active):
            bucket = self.buckets[key]
            outcomes.extend(self._pump(key, bucket, now))
            keep = deque()
            for waiter in bucket.queue:
                if waiter.deadline <= now:
                    bucket.timed_out += 1
                    self._waiting(waiter.owner, key, -1)
                    outcomes.append(TimedOut(waiter.request_id, key, waiter.timeout, len(bucket.queue) - 1))
                else:
                    keep.append(waiter)
            bucket.queue = keep
            self._settle(key, bucket, now)
        self._evict_idle(now)
        return outcomes

    def next_deadline(self, now: float) -> float | None:
        """When `advance` next has something to do (a timeout, an expiry, a token)."""
        while self._expiries and self._expiries[0][1] not in self.leases:
            heapq.heappop(self._expiries)  # released before it expired
        times = [self._expiries[0][0]] if self._expiries else []
        for key in self._active:
            bucket = self.buckets[key]
            times.append(min(w.deadline for w in bucket.queue))
            rate = bucket.limit.rate
            if rate and len(bucket.held) < bucket.limit.concurrency:
                self._refill(bucket, now)
                times.append(now + max(0.0, (1.0 - bucket.tokens) / rate))
        if self._idle:
            times.append(self._idle[0][0])
        return min(times) if times else None

    # --- inspection -------------------------------------------------------------------------------

    def held(self, key: str) -> int:
        bucket = self.buckets.get(key)
        return len(bucket.held) if bucket else 0

    def stats(self) -> tuple[KeyStats, ...]:
        """The keys configured or in use (an idle key only the default covers is forgotten)."""
        return tuple(
            KeyStats(key, b.limit.concurrency, b.limit.rate, len(b.held), len(b.queue), b.granted, b.timed_out)
            for key, b in sorted(self.buckets.items())
        )

    def owners(self) -> Iterable[Owner]:
        """Everyone holding or waiting for a permit."""
        return self._owners.values()

    def has_owner(self, name: str) -> bool:
        """True while `name` holds or waits for a permit."""
        return name in self._owners

    def process_owners(self) -> list[Owner]:
        """The owners that are OS processes (checked by pid)."""
        return [owner for owner in self._owners.values() if owner.is_process]

    def check(self) -> None:
        """Assert that the indexes agree with the buckets (for the tests)."""
        owned: dict[str, set[str]] = {}
        for lease in self.leases.values():
            owned.setdefault(lease.owner.name, set()).add(lease.id)
        waits: dict[str, dict[str, int]] = {}
        for key, bucket in self.buckets.items():
            for waiter in bucket.queue:
                per_key = waits.setdefault(waiter.owner.name, {})
                per_key[key] = per_key.get(key, 0) + 1
        assert owned == self._owned, (owned, self._owned)
        assert waits == self._waits, (waits, self._waits)
        assert set(self._owners) == set(owned) | set(waits)
        assert self._active == {k for k, b in self.buckets.items() if b.queue}

    # --- internals ---------------------------------------------------------------------------------

    def _waiting(self, owner: Owner, key: str, delta: int) -> None:
        per_key = self._waits.setdefault(owner.name, {})
        count = per_key.get(key, 0) + delta
        if count:
            per_key[key] = count
            self._owners[owner.name] = owner
        else:
            per_key.pop(key, None)
            if not per_key:
                del self._waits[owner.name]
                self._forget_owner(owner.name)

    def _forget_owner(self, name: str) -> None:
        if name not in self._owned and name not in self._waits:
            owner = self._owners.pop(name, None)
            if owner is not None and self.on_owner_freed is not None:
                self.on_owner_freed(owner)

    def _settle(self, key: str, bucket: _Bucket, now: float) -> None:
        """Keep `_active` right, and forget a default-covered key that went idle."""
        if bucket.queue:
            self._active.add(key)
            return
        self._active.discard(key)
        if bucket.configured or bucket.held:
            return
        rate = bucket.limit.rate
        if rate is None:
            del self.buckets[key]  # nothing to remember: a fresh bucket is the same
            return
        self._refill(bucket, now)
        # a fresh bucket starts full: forget this one only once it is full again, or a
        # forgotten key could be granted more than its rate
        heapq.heappush(self._idle, (now + max(0.0, bucket.limit.capacity - bucket.tokens) / rate, key))

    def _evict_idle(self, now: float) -> None:
        while self._idle and self._idle[0][0] <= now:
            _, key = heapq.heappop(self._idle)
            bucket = self.buckets.get(key)
            if bucket is None or bucket.configured or bucket.held or bucket.queue:
                continue
            self._refill(bucket, now)
            if bucket.tokens >= bucket.limit.capacity - _EPSILON:
                del self.buckets[key]
            else:
                heapq.heappush(self._idle, (now + (bucket.limit.capacity - bucket.tokens) / bucket.limit.rate, key))

    def _drop(self, lease: Lease, now: float) -> list[Outcome]:
        self.leases.pop(lease.id, None)
        owned = self._owned.get(lease.owner.name)
        if owned is not None:
            owned.discard(lease.id)
            if not owned:
                del self._owned[lease.owner.name]
                self._forget_owner(lease.owner.name)
        bucket = self.buckets[lease.key]
        bucket.held.pop(lease.id, None)
        outcomes = self._pump(lease.key, bucket, now)
        self._settle(lease.key, bucket, now)
        return outcomes

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
            self._waiting(waiter.owner, key, -1)
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
            self._owned.setdefault(waiter.owner.name, set()).add(lease.id)
            self._owners[waiter.owner.name] = waiter.owner
            if lease.expires_at is not None:
                heapq.heappush(self._expiries, (lease.expires_at, lease.id))
            outcomes.append(Granted(waiter.request_id, lease))
        return outcomes


def _check_key(key: Any) -> None:
    if not isinstance(key, str) or not key or len(key) > 200:
        raise BadRequest(f"a key must be a non-empty string of at most 200 characters; got {key!r}")


def check_seconds(field: str, value: Any, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"{field} must be a number of seconds; got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise BadRequest(f"{field} must be {'>= 0' if allow_zero else '> 0'} seconds; got {value!r}")
