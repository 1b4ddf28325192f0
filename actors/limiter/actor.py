"""The limiter actor: `LimiterCore` behind a registered name, watching the owners of its permits.

Start it under a supervisor:

```python
ChildSpec("limiter", LimiterServer, kwargs={"limits": {"db": Limit(4)}, "default": Limit(10)})
```

Owners are actors (by registered name: the limiter watches them through the monitor and gets
their permits back when they die) or OS processes (checked by pid every
`owner_check_interval`). Bad input and unknown leases are replied as typed errors; the
limiter never restarts because of a caller.
"""

from __future__ import annotations

import itertools
from typing import Any

from actors.limiter.core import Granted, Limit, LimiterCore, Outcome, TimedOut
from actors.limiter.errors import BadRequest, LimitTimeout
from actors.limiter.messages import Acquire, Configure, Held, Release, Stats
from supervision import Down, Server
from supervision.logs import logger
from supervision.server import ReplyHandle

log = logger("actors.limiter")


class LimiterServer(Server):
    def init(
        self,
        limits: dict[str, Limit] | None = None,
        default: Limit | None = Limit(10),
        owner_check_interval: float = 0.2,
    ) -> None:
        self.core = LimiterCore(limits, default)
        self.waiting: dict[int, ReplyHandle] = {}
        self.watched: set[str] = set()
        self.owner_check_interval = owner_check_interval
        self._requests = itertools.count(1)

    def handle(self, message: Any) -> Any:
        now = self.clock()
        if isinstance(message, Acquire):
            return self._acquire(message, now)
        if isinstance(message, Release):
            self._deliver(self.core.release(message.lease_id, now))
            return None
        if isinstance(message, Configure):
            self._deliver(self.core.configure(message.key, message.limit, now))
            return None
        if isinstance(message, Stats):
            return self.core.stats()
        if isinstance(message, Held):
            return tuple(l for l in self.core.leases.values() if message.key is None or l.key == message.key)
        if isinstance(message, Down):
            self._owner_gone(message.name, f"died ({message.reason})")
            return None
        return super().handle(message)

    def _acquire(self, message: Acquire, now: float) -> None:
        request_id = next(self._requests)
        reply = self.defer()
        outcomes = self.core.acquire(request_id, message.key, message.owner, now, message.timeout, message.lease_timeout)
        self.waiting[request_id] = reply
        if not message.owner.is_process and message.owner.name not in self.watched:
            self.watched.add(message.owner.name)
            self.watch(message.owner.name)
        self._deliver(outcomes)
        return None

    def _deliver(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            reply = self.waiting.pop(outcome.request_id, None)
            if reply is None:
                continue
            if isinstance(outcome, Granted):
                self.reply(reply, outcome.lease)
            elif isinstance(outcome, TimedOut):
                self.reply_error(reply, LimitTimeout(outcome.key, outcome.timeout, outcome.waiting))
        self._arm()

    def _owner_gone(self, name: str, why: str) -> None:
        self.watched.discard(name)
        released, cancelled, outcomes = self.core.owner_gone(name, self.clock())
        if released or cancelled:
            log.info("%s: owner %s %s; %d permits back, %d requests cancelled", self.name, name, why, len(released), len(cancelled))
        for request_id in cancelled:
            reply = self.waiting.pop(request_id, None)
            if reply is not None:
                self.reply_error(reply, BadRequest(f"the owner {name} {why} while waiting"))
        self._deliver(outcomes)

    def _arm(self) -> None:
        now = self.clock()
        upcoming = self.core.next_deadline(now)
        if any(owner.is_process for owner in self.core.owners()):
            check = now + self.owner_check_interval
            upcoming = check if upcoming is None else min(upcoming, check)
        if upcoming is not None:
            self.arm_timer(upcoming)

    def on_tick(self, now: float) -> float | None:
        for owner in list(self.core.owners()):
            if owner.identity is not None and not owner.identity.is_alive():
                self._owner_gone(owner.name, "exited")
        self._deliver(self.core.advance(now))
        return None  # _deliver re-armed the timer
