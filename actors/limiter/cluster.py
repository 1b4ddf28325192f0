"""The cluster side of the limiter: the PostgreSQL slots its permits hold, kept through a lost
database session and an outage of any length.

The lock session is opened lazily (never in the actor's `init`, so a limiter starts while the
database is away) and reopened with backoff (`actors.stores.outage`). A lost session takes
every slot it held with it, but not the permits: their holders are still working. So those
permits stay granted, counted by this node's core, and are marked *lost*; when a session is
back they take their slots back, the same slot numbers first, before anything new is granted
on their keys. Permits of different nodes held before the loss had different slot numbers, so
taking them back never competes; and for `reclaim_grace` seconds after a lost session comes
back this node grants nothing new on a cluster key, so that the other nodes, reconnecting on
their own backoff, get their slots back before anyone takes a free-looking one (the same
after an outage that began before this limiter's first connect).
"""

from __future__ import annotations

from typing import Any, Callable, Container

from actors.stores.config import DatabaseConfig
from actors.stores.outage import Outage, is_outage
from supervision.logs import logger

log = logger("actors.limiter")


class ClusterPermits:
    """The slots held by this node's cluster permits on one lock session, reconnected with
    backoff. Methods never raise for an outage: `waiting` says the database is away (the
    actor refuses new cluster permits meanwhile); any other error propagates (a crash)."""

    def __init__(
        self,
        config: DatabaseConfig,
        node: str,
        name: str,
        reclaim_grace: float,
        check_interval: float,
        probe_interval: float,
    ) -> None:
        """`check_interval`: how often the session is checked while it holds slots (a lost
        one is noticed within that); `probe_interval`: the same while it holds none (so an
        outage shows in the tree, and the server's idle_session_timeout never ends it)."""
        from actors.stores.database import Database  # (psycopg: only for limiters with a database)
        from actors.stores.slots import ClusterSlots

        self.connect = ClusterSlots
        self.database = Database(config)
        self.node = node
        self.name = name
        self.reclaim_grace = reclaim_grace
        self.check_interval = check_interval
        self.probe_interval = probe_interval
        self.session: Any = None
        self.outage = Outage()
        self.retry_at = 0.0
        self.next_check = 0.0
        #: a session was lost since the last connect: the next connect starts the grace
        self.lost_session = False
        #: no new cluster permit before this (monotonic): other nodes take theirs back first
        self.hold_until = 0.0
        #: lease id -> (key, slot) held on the current session, in grant order
        self.held: dict[str, tuple[str, int]] = {}
        #: lease id -> (key, slot it had): granted, handed out, its slot lost with a session
        self.lost: dict[str, tuple[str, int]] = {}

    @property
    def waiting(self) -> bool:
        """True while the database is away (no session, and the last connect failed)."""
        return self.session is None and self.outage.active

    def held_back(self, now: float) -> Callable[[str], bool]:
        """Whether nothing new may be granted on a key now: on every key during the grace
        after a lost session; else on the keys with a permit still to take its slot back."""
        if now < self.hold_until:
            return lambda key: True
        keys = {key for key, _ in self.lost.values()}
        return keys.__contains__

    # --- the session ------------------------------------------------------------------------

    def ready(self, now: float) -> bool:
        """True with a live session (connecting now when due); False while the database is away."""
        if self.session is not None:
            return True
        if self.outage.active and now < self.retry_at:
            return False
        try:
            self.session = self.connect(self.database, self.node)
        except Exception as exc:  # noqa: BLE001 - outages are waited out, anything else crashes
            self.retry_at = self.outage.away(now, exc, log, self.name, "cluster keys wait, local keys keep working")
            return False
        self.next_check = now + self._interval()
        after_outage = self.outage.active
        if after_outage:
            log.warning("%s: the database is back after %.1f s", self.name, self.outage.recovered(now))
        if self.lost_session or after_outage:  # (other nodes' permits may be taking their slots back)
            self.lost_session = False
            self.hold_until = now + self.reclaim_grace
            if self.lost:
                log.warning("%s: taking back the slots of %d permits; nothing new granted on cluster keys for %.1f s", self.name, len(self.lost), self.reclaim_grace)
        return True

    def _session_lost(self, exc: BaseException) -> None:
        """The session ended (a restart, an outage, idle_session_timeout): its slots are gone."""
        log.warning("%s: the limiter's database session is lost (%s); %d permits keep running and take their slots back", self.name, exc, len(self.held))
        self.lost.update(self.held)
        self.held.clear()
        self.lost_session = True
        session, self.session = self.session, None
        try:
            session.close()
        except Exception:  # noqa: BLE001 - it is gone either way
            pass

    def _run(self, now: float, call: Callable[[Any], Any], again: bool = True) -> tuple[bool, Any]:
        """(True, call(session)), or (False, None) when no session can be had now. With
        `again`, a session found dead is replaced at once and the call made once more (a
        server that restarted is usually back already)."""
        for attempt in range(2 if again else 1):
            if not self.ready(now):
                return False, None
            try:
                return True, call(self.session)
            except Exception as exc:  # noqa: BLE001
                if not is_outage(exc):
                    raise
                self._session_lost(exc)
                if attempt:
                    self.retry_at = self.outage.failed(now, exc)
        return False, None

    def _mine(self, key: str) -> list[int]:
        """The slots of `key` this session holds (session locks stack: never take one twice)."""
        return [slot for k, slot in self.held.values() if k == key]

    def _interval(self) -> float:
        return self.check_interval if self.held or self.lost else self.probe_interval

    # --- the slots -----------------------------------------------------------------------------

    def take(self, lease_id: str, key: str, limit: int, now: float) -> bool | None:
        """Take a free slot of `key` for the permit `lease_id`: True, False when every slot is
        held, None while the database is away.

        Never on a session replaced during the call: a new session must first let the lost
        permits (this node's and others') take their slots back, so a take whose session was
        found dead answers False (not now; the permit waits) and the next pass holds back."""
        ok, slot = self._run(now, lambda s: s.take(key, limit, self._mine(key)), again=False)
        if not ok:
            return False if self.lost_session else None
        if slot is None:
            return False
        self.held[lease_id] = (key, slot)
        return True

    def take_back(self, limit_of: Callable[[str], int], now: float) -> None:
        """The lost permits take a slot again, the one they had first, oldest first."""
        for lease_id, (key, had) in list(self.lost.items()):
            ok, slot = self._run(now, lambda s: s.take(key, limit_of(key), self._mine(key), prefer=had))
            if not ok:
                return
            if slot is not None and lease_id in self.lost:
                del self.lost[lease_id]
                self.held[lease_id] = (key, slot)

    def settle(self, leases: Container[str], now: float) -> None:
        """Give back the slots of permits that are no longer granted (released, expired, owner
        gone); forget such permits among the lost ones."""
        for lease_id in [i for i in self.held if i not in leases]:
            key_slot = self.held.pop(lease_id, None)
            if key_slot is not None and self.session is not None:  # (a lost session freed it anyway)
                key, slot = key_slot
                self._run(now, lambda s: s.give_back(key, slot), again=False)
        for lease_id in [i for i in self.lost if i not in leases]:
            del self.lost[lease_id]

    def tick(self, now: float) -> None:
        """Check the session when due; connect when due."""
        if self.session is not None and now >= self.next_check:
            self.next_check = now + self._interval()
            self._run(now, lambda s: s.check(), again=False)
        if self.session is None:
            self.ready(now)

    def next_wakeup(self, now: float) -> float:
        if self.session is None:
            return max(now, self.retry_at)
        return max(now, min(self.next_check, now + self._interval()))

    def close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.close()  # the session ends: every slot this node held is free
