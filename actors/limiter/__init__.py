"""The limiter: concurrency and rate permits per key, owned by actors or processes, behind a
registered name (docs/design.md story 1).

- `LimiterCore`: the pure core (FIFO waits, timeouts, leases, token bucket), no actors.
- `LimiterServer`: the actor; start it under a supervisor with a `ChildSpec`.
- `Limiter`: the handle users keep (a name, valid across restarts).
"""

from actors.limiter.actor import LimiterServer
from actors.limiter.client import Limiter
from actors.limiter.core import KeyStats, Lease, Limit, LimiterCore, Owner
from actors.limiter.errors import ClusterWaiting, LimitTimeout, UnknownKey, UnknownLease, UnknownLimitKey
from actors.limiter.messages import Acquire, Configure, Held, Release, Stats

__all__ = [
    "Acquire",
    "ClusterWaiting",
    "Configure",
    "Held",
    "KeyStats",
    "Lease",
    "Limit",
    "LimitTimeout",
    "Limiter",
    "LimiterCore",
    "LimiterServer",
    "Owner",
    "Release",
    "Stats",
    "UnknownKey",
    "UnknownLease",
    "UnknownLimitKey",
]
