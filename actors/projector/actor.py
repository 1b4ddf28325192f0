"""The projector actor: one per projection per node; only the holder of the projection's
advisory lock applies events (docs/design.md story 3).

- It contends for the lock (`pg_try_advisory_lock`, every `retry_interval` while another node
  holds it) on a dedicated connection: the `LockSession`.
- Holding it, it reads events after its checkpoint in batches, folds them with the projection,
  and writes the read model and the checkpoint in one transaction, all on that connection.
- It checks that its own session still holds the lock (a pid-filtered `pg_locks` query) every
  `lock_check_interval` and inside every batch's transaction before the checkpoint write. If the
  lock is gone it raises `LockLost` and crashes at once; its supervisor restarts it and it
  contends again.
- If the database goes away (the connection drops, the server is down), it drops its session
  (the lock goes with it), shows "waiting for the database" in the tree and reconnects with
  backoff, then contends again: an outage of any length is waited out, never a crash loop.
- New events wake it through LISTEN/NOTIFY; it also polls every `poll_interval`.
- A projection that raises: the events before the failing one are saved, then the projector
  crashes with the failing position in the reason (`ProjectionFailed`); the event is never skipped.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import attrs

from actors.projector.errors import LockLost, ProjectionFailed
from actors.projector.projection import Projection, load_projection
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database, is_connection_error
from actors.stores.errors import StoreError
from actors.stores.outage import WAITING, Outage
from actors.stores.projections import LockSession
from actors.stores.rows import Checkpoint
from supervision import Server
from supervision.logs import logger
from supervision.messages import Message
from supervision.specs import validate_node

log = logger("actors.projector")


@attrs.frozen
class ProjectorStatus(Message):
    """Reply: a dict with the projection, node, whether this projector holds the lock, its
    checkpoint and how many events it applied."""


@attrs.frozen
class _CatchUp(Message):
    pass


def default_node() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Projector(Server):
    """Applies one projection on this node while it holds the projection's advisory lock, on one
    dedicated connection that carries the reads, the read-model writes and the checkpoint;
    crashes with `LockLost` when its session loses the lock (its supervisor restarts it and it
    contends again). Start it with `projector_spec`."""

    def init(
        self,
        database: DatabaseConfig,
        projection: Any = "job_stats",
        node: str | None = None,
        batch: int = 500,
        lock_check_interval: float = 0.5,
        retry_interval: float = 0.5,
        poll_interval: float = 1.0,
        notify_check: float = 0.05,
        idle_session_timeout: float = 15.0,
        max_scan: int | None = None,
    ) -> None:
        """`max_scan`: the most rows of the log one step reads looking for wanted events
        (default 10 batches); the checkpoint then moves past the unwanted ones it saw, so a
        projection that wants few events pays per wake-up for what is new, not for the tail."""
        self.projection: Projection = load_projection(projection)
        self.node = validate_node(node, "Projector.node") or default_node()
        self.batch = batch
        self.max_scan = max_scan if max_scan is not None else 10 * batch
        self.lock_check_interval = lock_check_interval
        self.retry_interval = retry_interval
        self.poll_interval = poll_interval
        self.notify_check = notify_check
        self.database = Database(database)
        self.idle_session_timeout = idle_session_timeout
        self.session: LockSession | None = None
        self.outage = Outage()
        self.retry_at = 0.0
        self.holding = False
        self.checkpoint = Checkpoint()
        self.applied = 0
        self.batches = 0
        self.scanned_rows = 0
        self.last_scan_rows = 0
        self.want = True
        now = self.clock()
        self.next_check = now
        self.next_poll = now
        self.arm_timer(now)

    # --- the loop ------------------------------------------------------------------------------

    def handle(self, message: Any) -> Any:
        if isinstance(message, _CatchUp):
            self.guarded_step(self.clock())
            return None
        if isinstance(message, ProjectorStatus):
            return {
                "projection": self.projection.name,
                "node": self.node,
                "holding": self.holding,
                "position": self.checkpoint.position,
                "txid": self.checkpoint.txid,
                "applied": self.applied,
                "batches": self.batches,
                "scanned_rows": self.scanned_rows,
                "last_scan_rows": self.last_scan_rows,
                "waiting_for_database": self.outage.active,
            }
        return super().handle(message)

    def on_tick(self, now: float) -> float | None:
        if self.outage.active and now < self.retry_at:
            return self.retry_at
        if not self.guarded_step(now):
            return self.retry_at
        if not self.holding:
            return now + self.retry_interval
        return min(self.next_check, now + self.notify_check)

    def guarded_step(self, now: float) -> bool:
        """One step; False while the database is away (the session is dropped, the lock with
        it, and the next attempt is at `retry_at`)."""
        try:
            if self.session is None:
                self.session = LockSession(self.database, self.projection.name, self.node, idle_session_timeout=self.idle_session_timeout)
            self.step(now)
        except Exception as exc:  # noqa: BLE001 - outages are waited out, anything else crashes
            self.retry_at = self.outage.away(self.clock(), exc, log, self.name)
            self._drop_session()
            self.report_status(WAITING)
            return False
        if self.outage.active:
            log.warning("%s: the database is back after %.1f s", self.name, self.outage.recovered(self.clock()))
            self.report_status(None)
        return True

    def _drop_session(self) -> None:
        session, self.session = self.session, None
        self.holding = False
        if session is not None:
            session.close()

    def step(self, now: float) -> None:
        assert self.session is not None
        if not self.holding and not self.contend():
            return
        if now >= self.next_check:
            self.verify("periodic check")
        if self.session.notified() or now >= self.next_poll:
            self.want = True
        if self.want:
            self.apply_batch()

    def contend(self) -> bool:
        if not self.session.try_lock():
            return False
        self.holding = True
        with self.session.transaction() as conn:
            self.projection.setup(conn)
        self.checkpoint = self.session.checkpoint()
        self.want = True
        # a handover is the normal course (a start, a standby taking over): not a warning
        log.info(
            "%s: %s now applies projection %s from position %d",
            self.name, self.node, self.projection.name, self.checkpoint.position,
        )  # fmt: skip
        return True

    def verify(self, when: str) -> None:
        if not self.session.holds_lock():
            self.holding = False
            raise LockLost(self.projection.name, f"{when}: this session no longer holds it")
        self.next_check = self.clock() + self.lock_check_interval

    # --- applying ---------------------------------------------------------------------------------

    def apply_batch(self) -> None:
        failure: ProjectionFailed | None = None
        good: list = []
        with self.session.transaction() as conn:
            scan = self.session.scan(conn, self.checkpoint, self.batch, self.projection.event_types, self.max_scan)
            self.last_scan_rows = scan.rows
            self.scanned_rows += scan.rows
            if scan.events:
                good, failure = self._fold(conn, scan.events)
            # every event up to `scanned` is applied or not wanted, unless the projection failed
            reached = scan.scanned if failure is None else (good[-1].checkpoint if good else None)
            if reached is not None and reached != self.checkpoint:
                self.verify("before the checkpoint write")
                self.session.save_checkpoint(conn, reached)
        if reached is not None:
            self.checkpoint = reached
        if good:
            self.applied += len(good)
            self.batches += 1
        if failure is not None:
            raise failure
        self.want = not scan.exhausted
        if self.want:
            self.send(self.myAddress, _CatchUp())  # more to catch up on: yield, then go on
        else:
            self.next_poll = self.clock() + self.poll_interval

    def _fold(self, conn: Any, events: list) -> tuple[list, ProjectionFailed | None]:
        """Apply the batch; if the projection raises, keep the events before the failing one."""
        try:
            with conn.transaction():
                self.projection.apply(conn, events)
            return events, None
        except Exception as exc:  # noqa: BLE001 - find which event it was
            if isinstance(exc, StoreError) or is_connection_error(exc):
                raise
        good = []
        for event in events:
            try:
                with conn.transaction():
                    self.projection.apply(conn, [event])
            except Exception as exc:  # noqa: BLE001
                if isinstance(exc, StoreError) or is_connection_error(exc):
                    raise
                error = f"{type(exc).__name__}: {exc}"
                return good, ProjectionFailed(self.projection.name, event.position, event.txid, error)
            good.append(event)
        return good, None

    def terminate(self, reason: str) -> None:
        if self.session is None:
            return
        try:
            if self.holding:
                self.session.unlock()
        except StoreError:
            pass
        finally:
            self.session.close()
