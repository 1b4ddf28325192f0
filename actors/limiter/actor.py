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
Every node must configure the same n for the key.

A database outage of any length is waited out, never a crash (`actors.limiter.cluster`): the
limiter connects lazily and reconnects with backoff, shows "waiting for the database" in the
tree, answers cluster-key requests with `ClusterWaiting` (a retryable `DatabaseWaiting`)
meanwhile while local keys keep working, and once the session is back its granted permits
take their slots back (the same slot numbers) before anything new is granted.
"""

from __future__ import annotations

import itertools
from typing import Any

import socket

import attrs

from actors.limiter.cluster import ClusterPermits
from actors.limiter.core import Granted, Lease, Limit, LimiterCore, Outcome, TimedOut, check_seconds
from actors.limiter.errors import BadRequest, ClusterWaiting, LimitTimeout
from actors.limiter.messages import Acquire, Configure, Held, Release, Stats
from actors.stores.config import DatabaseConfig
from actors.stores.outage import WAITING
from supervision import Down, Server
from supervision.logs import logger
from supervision.server import ReplyHandle
from supervision.specs import validate_node

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
        cluster_probe_interval: float = 2.0,
        reclaim_grace: float = 5.0,
    ) -> None:
        """`cluster_check_interval`: how often the lock session is checked while it holds
        slots (a lost session is noticed within that); `cluster_probe_interval`: the same while
        it holds none. `reclaim_grace`: after a lost session comes back, how long nothing new
        is granted on cluster keys, so that every node's permits take their slots back first:
        longer than the longest reconnect backoff (2 s, +20% jitter), with room for a loaded
        host. `node`: this node's name in its lock session's application_name (default the host
        name; a name as for actors, anything else is a `SpecError` naming the field)."""
        node = validate_node(node, "LimiterServer.node")
        for field, value in (("cluster_retry", cluster_retry), ("cluster_check_interval", cluster_check_interval),
                             ("cluster_probe_interval", cluster_probe_interval)):  # fmt: skip
            check_seconds(f"LimiterServer {field}", value)
        check_seconds("LimiterServer reclaim_grace", reclaim_grace, allow_zero=True)
        self.core = LimiterCore(limits, default, on_owner_freed=self._owner_freed)
        self.waiting: dict[int, _Request] = {}
        self.watched: set[str] = set()
        #: watched owners that hold and wait for nothing (see `_owner_freed`)
        self.idle_watched: set[str] = set()
        self.max_idle_watches = max_idle_watches
        self.owner_check_interval = owner_check_interval
        self._requests = itertools.count(1)
        self.cluster_retry = cluster_retry
        self.pending: dict[str, _Pending] = {}  # lease id -> waiting for a slot, in grant order
        self.cluster: ClusterPermits | None = None
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
        self.cluster = ClusterPermits(
            database, node or socket.gethostname(), self.name, reclaim_grace, cluster_check_interval, cluster_probe_interval
        )
        if clustered:
            self.arm_timer(self.clock())  # connect now, without failing the start (the database may be away)

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
        if self.cluster is not None:
            self.cluster.settle(self.core.leases, self.clock())
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

    def _concurrency(self, key: str) -> int:
        bucket = self.core.buckets.get(key)
        return bucket.limit.concurrency if bucket is not None else 0

    def _take_slots(self) -> None:
        """Lost permits take their slots back first; then pending permits that get a slot are
        handed out, first granted first; the rest time out, or, while the database is away,
        are answered `ClusterWaiting`."""
        cluster = self.cluster
        if cluster is None or not (self.pending or cluster.lost):
            return
        now, full, released = self.clock(), set(), []
        cluster.take_back(self._concurrency, now)
        for lease_id, pending in list(self.pending.items()):
            key = pending.lease.key
            if lease_id not in self.core.leases:  # its owner died or it expired meanwhile
                del self.pending[lease_id]
                self.reply_error(pending.request.reply, BadRequest(f"the permit for {key!r} was withdrawn (owner gone)"))
                continue
            if cluster.waiting:
                del self.pending[lease_id]
                self.reply_error(pending.request.reply, ClusterWaiting(self.name, key, cluster.outage.last_error))
                released.append(lease_id)
                continue
            if key not in full and not cluster.held_back(now)(key):  # (a take may have lost the session)
                taken = cluster.take(lease_id, key, self._concurrency(key), now)
                if taken:
                    del self.pending[lease_id]
                    self.reply(pending.request.reply, pending.lease)
                    continue
                if taken is None:  # the database went away just now: this one is answered too
                    del self.pending[lease_id]
                    self.reply_error(pending.request.reply, ClusterWaiting(self.name, key, cluster.outage.last_error))
                    released.append(lease_id)
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
        times = [self.core.next_deadline(now)]
        if self.core.process_owners():
            times.append(now + self.owner_check_interval)
        cluster = self.cluster
        if cluster is not None:
            self.report_status(WAITING if cluster.waiting else None)
            if self.pending or (cluster.lost and not cluster.waiting):
                times.append(now + self.cluster_retry)
            if cluster.session is not None or cluster.outage.active or self.pending or cluster.lost:
                times.append(cluster.next_wakeup(now))
        upcoming = [t for t in times if t is not None]
        if upcoming:
            self.arm_timer(min(upcoming))

    def on_tick(self, now: float) -> float | None:
        if self.cluster is not None:
            self.cluster.tick(now)  # connect, or check the session (a lost one lost our slots)
        for owner in self.core.process_owners():
            if not owner.identity.is_alive():
                self._owner_gone(owner.name, "exited")
        self._deliver(self.core.advance(now))
        return None  # _deliver re-armed the timer

    def terminate(self, reason: str) -> None:
        if self.cluster is not None:
            self.cluster.close()  # the session ends: every slot this node held is free
