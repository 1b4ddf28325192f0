"""The limiter actor: `LimiterCore` behind a registered name, watching the owners of its permits.

Start it under a supervisor:

```python
ChildSpec("limiter", LimiterServer, kwargs={"limits": {"db": Limit(4)}})
```

A key that is not configured is `UnknownLimitKey`, unless the limiter is given a `default`
limit for every other key (`"default": Limit(10)`).

Owners are actors (by registered name: the limiter watches them through the monitor and gets
their permits back when they die) or OS processes (checked by pid every
`owner_check_interval`). Bad input and unknown leases are replied as typed errors; the
limiter never restarts because of a caller.

Cluster-wide limits: give the limiter a database (`database=DatabaseConfig(...)`) and a key
`Limit(n, cluster=True)`. A permit granted by this node's core is handed out only once it also
holds one of the key's n slots in PostgreSQL (session advisory locks, `actors.stores.slots`);
until then the request waits (retried every `cluster_retry` seconds, within its timeout).
Every node must configure the same n for the key. If the limiter's database session is lost,
every slot it held is gone: it tells its waiting callers and crashes, and its supervisor
restarts it with fresh state (holders then get `UnknownLease` on release).
"""

from __future__ import annotations

import itertools
from typing import Any

import socket

import attrs

from actors.limiter.core import Granted, Lease, Limit, LimiterCore, Outcome, TimedOut
from actors.limiter.errors import BadRequest, LimitTimeout
from actors.limiter.messages import Acquire, Configure, Held, Release, Stats
from actors.stores.config import DatabaseConfig
from actors.stores.errors import StoreError
from supervision import Down, Server
from supervision.logs import logger
from supervision.server import ReplyHandle

log = logger("actors.limiter")


@attrs.define
class _Request:
    """An Acquire waiting for its answer."""

    reply: ReplyHandle
    deadline: float
    timeout: float


@attrs.define
class _Pending:
    """A permit granted by this node's core, waiting for a cluster slot."""

    request: _Request
    lease: Lease


class LimiterServer(Server):
    """The limiter actor: `ChildSpec("limiter", LimiterServer, kwargs={"limits": {"db":
    Limit(4)}})`. Grants permits per key (FIFO, with timeouts), watches owner actors and checks
    owner processes so a dead owner's permits come back; with `database=`, keys marked
    `cluster=True` also hold one of N PostgreSQL advisory-lock slots, a limit across nodes."""

    def init(
        self,
        limits: dict[str, Limit] | None = None,
        default: Limit | None = None,
        owner_check_interval: float = 0.2,
        database: DatabaseConfig | None = None,
        node: str | None = None,
        cluster_retry: float = 0.05,
        cluster_check_interval: float = 1.0,
        max_idle_watches: int = 1000,
    ) -> None:
        self.core = LimiterCore(limits, default, on_owner_freed=self._owner_freed)
        self.waiting: dict[int, _Request] = {}
        self.watched: set[str] = set()
        #: watched owners that hold and wait for nothing (see `_owner_freed`)
        self.idle_watched: set[str] = set()
        self.max_idle_watches = max_idle_watches
        self.owner_check_interval = owner_check_interval
        self._requests = itertools.count(1)
        self.cluster_retry = cluster_retry
        self.cluster_check_interval = cluster_check_interval
        self.next_cluster_check = 0.0
        self.pending: dict[str, _Pending] = {}  # lease id -> waiting for a slot, in grant order
        self.slots: dict[str, tuple[str, int]] = {}  # lease id -> (key, slot) held in PostgreSQL
        self.cluster = None
        clustered = [key for key, limit in (limits or {}).items() if limit.cluster]
        if default is not None and default.cluster:
            clustered.append("(the default)")
        if database is None:
            if clustered:
                raise BadRequest(
                    f"cluster limits ({', '.join(clustered)}) need a database: "
                    "LimiterServer(database=DatabaseConfig(...)), the same on every node"
                )
            return
        from actors.stores.database import Database
        from actors.stores.slots import ClusterSlots

        self.cluster = ClusterSlots(Database(database), node or socket.gethostname())

    def handle(self, message: Any) -> Any:
        now = self.clock()
        if isinstance(message, Acquire):
            return self._acquire(message, now)
        if isinstance(message, Release):
            self._deliver(self.core.release(message.lease_id, now))
            return None
        if isinstance(message, Configure):
            if isinstance(message.limit, Limit) and message.limit.cluster and self.cluster is None:
                raise BadRequest(f"a cluster limit for {message.key!r} needs a limiter started with a database")
            self._deliver(self.core.configure(message.key, message.limit, now))
            return None
        if isinstance(message, Stats):
            return self.core.stats()
        if isinstance(message, Held):
            return tuple(
                l for l in self.core.leases.values() if (message.key is None or l.key == message.key) and l.id not in self.pending
            )
        if isinstance(message, Down):
            self._owner_gone(message.name, f"died ({message.reason})")
            return None
        return super().handle(message)

    def _acquire(self, message: Acquire, now: float) -> None:
        request_id = next(self._requests)
        reply = self.defer()
        outcomes = self.core.acquire(request_id, message.key, message.owner, now, message.timeout, message.lease_timeout)
        self.waiting[request_id] = _Request(reply, now + message.timeout, message.timeout)
        owner = message.owner
        self.idle_watched.discard(owner.name)
        if not owner.is_process and owner.name not in self.watched and self.core.has_owner(owner.name):
            self.watched.add(owner.name)
            self.watch(owner.name)
        self._deliver(outcomes)
        return None

    def _deliver(self, outcomes: list[Outcome]) -> None:
        self._give_back_slots()
        for outcome in outcomes:
            request = self.waiting.pop(outcome.request_id, None)
            if request is None:
                continue
            if isinstance(outcome, Granted):
                if self._clustered(outcome.lease.key):
                    self.pending[outcome.lease.id] = _Pending(request, outcome.lease)
                else:
                    self.reply(request.reply, outcome.lease)
            elif isinstance(outcome, TimedOut):
                self.reply_error(request.reply, LimitTimeout(outcome.key, outcome.timeout, outcome.waiting))
        self._take_slots()
        self._arm()

    # --- cluster slots ------------------------------------------------------------------------

    def _clustered(self, key: str) -> bool:
        bucket = self.core.buckets.get(key)
        return self.cluster is not None and bucket is not None and bucket.limit.cluster

    def _give_back_slots(self) -> None:
        """The slots of leases the core no longer holds (released, expired, owner gone)."""
        for lease_id, (key, slot) in list(self.slots.items()):
            if lease_id not in self.core.leases:
                del self.slots[lease_id]
                self._guard_session(self.cluster.give_back, key, slot)

    def _take_slots(self) -> None:
        """Hand out pending permits that get a slot, first granted first; time out the rest."""
        if not self.pending:
            return
        now, full, released = self.clock(), set(), []
        for lease_id, pending in list(self.pending.items()):
            key = pending.lease.key
            if lease_id not in self.core.leases:  # its owner died or it expired meanwhile
                del self.pending[lease_id]
                self.reply_error(pending.request.reply, BadRequest(f"the permit for {key!r} was withdrawn (owner gone)"))
                continue
            if key not in full:
                held = [slot for k, slot in self.slots.values() if k == key]
                slot = self._guard_session(self.cluster.take, key, self.core.buckets[key].limit.concurrency, held)
                if slot is not None:
                    del self.pending[lease_id]
                    self.slots[lease_id] = (key, slot)
                    self.reply(pending.request.reply, pending.lease)
                    continue
                full.add(key)  # no slot free in the cluster: the later ones wait too (FIFO)
            if now >= pending.request.deadline:
                del self.pending[lease_id]
                waiting = sum(1 for p in self.pending.values() if p.lease.key == key)
                self.reply_error(pending.request.reply, LimitTimeout(key, pending.request.timeout, waiting))
                released.append(lease_id)
        for lease_id in released:
            outcomes = self.core.release(lease_id, now)
            if outcomes:
                self._deliver(outcomes)

    def _guard_session(self, call: Any, *args: Any) -> Any:
        """Run a slot call; if the session is gone, every slot went with it: tell the callers
        still waiting, then crash (the supervisor restarts this limiter with fresh state)."""
        try:
            return call(*args)
        except StoreError as exc:
            for request in [*self.waiting.values(), *(p.request for p in self.pending.values())]:
                self.reply_error(request.reply, exc)
            self.waiting.clear()
            self.pending.clear()
            raise

    def _owner_freed(self, owner: Any) -> None:
        """`owner` holds and waits for nothing here any more. Its watch is kept (an unwatch and
        a new watch per permit would cost two messages each), up to `max_idle_watches` such
        owners; past that they are all unwatched, so the watches never grow with the owners
        ever seen."""
        if owner.name not in self.watched:
            return
        self.idle_watched.add(owner.name)
        if len(self.idle_watched) > self.max_idle_watches:
            for name in self.idle_watched:
                self.watched.discard(name)
                self.unwatch(name)
            self.idle_watched.clear()

    def _owner_gone(self, name: str, why: str) -> None:
        self.watched.discard(name)
        self.idle_watched.discard(name)
        released, cancelled, outcomes = self.core.owner_gone(name, self.clock())
        if released or cancelled:
            log.info("%s: owner %s %s; %d permits back, %d requests cancelled", self.name, name, why, len(released), len(cancelled))
        for request_id in cancelled:
            request = self.waiting.pop(request_id, None)
            if request is not None:
                self.reply_error(request.reply, BadRequest(f"the owner {name} {why} while waiting"))
        self._deliver(outcomes)

    def _arm(self) -> None:
        now = self.clock()
        upcoming = self.core.next_deadline(now)
        if self.core.process_owners():
            check = now + self.owner_check_interval
            upcoming = check if upcoming is None else min(upcoming, check)
        if self.pending:
            retry = now + self.cluster_retry
            upcoming = retry if upcoming is None else min(upcoming, retry)
        if self.slots:
            check = max(now, self.next_cluster_check)
            upcoming = check if upcoming is None else min(upcoming, check)
        if upcoming is not None:
            self.arm_timer(upcoming)

    def on_tick(self, now: float) -> float | None:
        if self.slots and now >= self.next_cluster_check:
            self.next_cluster_check = now + self.cluster_check_interval
            self._guard_session(self.cluster.check)  # a lost session lost our slots: crash now
        for owner in self.core.process_owners():
            if not owner.identity.is_alive():
                self._owner_gone(owner.name, "exited")
        self._deliver(self.core.advance(now))
        return None  # _deliver re-armed the timer

    def terminate(self, reason: str) -> None:
        if self.cluster is not None:
            self.cluster.close()  # the session ends: every slot this node held is free
