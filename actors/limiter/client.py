"""`Limiter`: the handle users keep. It holds the limiter's *name*, never an address, so it stays
valid across restarts of the limiter (docs/design.md story 1).

Outside actors (code that holds a `Runtime`):

```python
limiter = Limiter(rt)                 # name="limiter"
with limiter.permit("db", timeout=2.0):
    run_query()
```

Inside an actor (message-driven, never blocking):

```python
class Worker(Server):
    def handle(self, message):
        Limiter(self).acquire_then("db", lambda answer: self.work(answer.unwrap()))
```
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

from actors.limiter.core import Lease, Owner
from actors.limiter.errors import UnknownLease
from actors.limiter.messages import Acquire, Release, Stats
from supervision import Answer, Runtime, Server
from supervision.logs import logger

log = logger("actors.limiter.client")

#: Extra seconds an ask waits beyond the acquire timeout, so the limiter's own LimitTimeout
#: (not an AskTimeout) is what the caller sees.
REPLY_MARGIN = 2.0


class Limiter:
    """A handle on the limiter actor that keeps its *name* (valid across the limiter's restarts):
    `with Limiter(rt).permit(key, timeout=...)` outside actors, `Limiter(self).acquire_then(key,
    then=...)` inside one. Permits are owned by this process (or the calling actor) and come
    back when the owner dies."""

    def __init__(self, target: Runtime | Server, name: str = "limiter", owner: Owner | None = None, timeout: float = 5.0) -> None:
        if not isinstance(target, (Runtime, Server)):
            raise TypeError(f"Limiter needs a Runtime or a Server (the actor using it); got {type(target).__name__}")
        self.target = target
        self.name = name
        self.timeout = timeout
        if owner is None:
            owner = Owner.actor(target.name) if isinstance(target, Server) else Owner.this_process()
        self.owner = owner

    # --- outside actors -------------------------------------------------------------------------

    def acquire(self, key: str, timeout: float | None = None, lease_timeout: float | None = None) -> Lease:
        """Wait for a permit (raises `LimitTimeout`, or the runtime's typed errors)."""
        runtime = self._runtime()
        timeout = self.timeout if timeout is None else timeout
        return runtime.ask(self.name, Acquire(key, self.owner, timeout, lease_timeout), timeout=timeout + REPLY_MARGIN)

    def release(self, lease: Lease) -> bool:
        """Give the permit back; False if the limiter no longer knows it (it restarted since)."""
        try:
            self._runtime().ask(self.name, Release(lease.id))
        except UnknownLease:
            log.debug("lease %s was unknown to %s (restarted since it was granted)", lease.id, self.name)
            return False
        return True

    @contextmanager
    def permit(self, key: str, timeout: float | None = None, lease_timeout: float | None = None) -> Iterator[Lease]:
        lease = self.acquire(key, timeout, lease_timeout)
        try:
            yield lease
        finally:
            self.release(lease)

    def stats(self) -> Any:
        return self._runtime().ask(self.name, Stats())

    def _runtime(self) -> Runtime:
        if not isinstance(self.target, Runtime):
            raise TypeError("inside an actor use acquire_then()/release_later(); acquire() would block the actor")
        return self.target

    # --- inside actors -------------------------------------------------------------------------------

    def acquire_then(
        self,
        key: str,
        then: Callable[[Answer], None] | None = None,
        timeout: float | None = None,
        lease_timeout: float | None = None,
        tag: Any = None,
    ) -> None:
        """Ask for a permit; the `Answer` (a `Lease`, or a typed error) goes to `then`, or to
        the actor's `handle` when `then` is None."""
        actor = self._actor()
        timeout = self.timeout if timeout is None else timeout
        actor.ask(self.name, Acquire(key, self.owner, timeout, lease_timeout), timeout=timeout + REPLY_MARGIN, then=then, tag=tag)

    def release_later(self, lease: Lease) -> None:
        """Give the permit back without waiting for the answer."""
        self._actor().tell(self.name, Release(lease.id))

    def _actor(self) -> Server:
        if not isinstance(self.target, Server):
            raise TypeError("outside an actor use acquire()/release()/permit()")
        return self.target
