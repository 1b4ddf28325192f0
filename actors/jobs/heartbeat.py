"""A worker's heartbeat thread: liveness that does not depend on its handlers returning.

A worker runs handlers on its main thread (the actor loop waits while one runs). This thread,
with its own database connection, every `ttl / 3.5` seconds:

- extends the process's lease and, in the same round trip, checks that the job being run is
  still this worker's; it also LISTENs on the cancel channel, so a cancelled job is noticed at
  once. A job that is no longer its own (cancelled, or rescued after this process was frozen
  past its expiry) is marked cancelled for the handler (`current_job().cancelled`); after
  `cancel_grace` the handler is interrupted with `JobCancelled`, and after another
  `cancel_grace` the process ends itself (its supervisor starts a new one);
- releases the claimed-but-unstarted jobs when the running one has run `release_after`
  seconds, so idle workers take them instead of waiting behind a long job;
- ends the process when a handler ignores its timeout interrupt for `kill_grace` seconds,
  after writing that job's failure (fenced) itself.

While the database is away, beats fail and are retried every beat; the lease then runs out
only if the outage outlasts the ttl, and the rescuer waits a ttl after its own reconnect
before rescuing, so live workers beat again first.
"""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from typing import Any

import attrs

from actors.jobs.context import JobContext
from actors.stores.database import Database
from actors.stores.errors import StoreError
from actors.stores.jobs import PgJobStore, cancel_channel
from actors.stores.processes import PgProcessStore
from actors.stores.rows import ClaimedJob, JobOutcome
from supervision.logs import logger

log = logger("actors.jobs.heartbeat")

#: exit status of a worker that ended itself (a handler it could not stop)
HARD_EXIT = 70


@attrs.define(eq=False)
class WorkerState:
    """What the main thread and the heartbeat thread share, under `lock`."""

    lock: threading.Lock = attrs.field(factory=threading.Lock)
    #: claimed, not yet started (the main thread pops from the left)
    claimed: collections.deque = attrs.field(factory=collections.deque)
    #: the job whose handler runs now, and its context
    current: tuple[ClaimedJob, JobContext] | None = None
    #: True while the main thread is inside a handler (interrupts are only raised there)
    in_handler: bool = False
    #: why the handler is being interrupted: "cancelled" or None (then: its timeout)
    interrupt: str | None = None
    #: the process row is gone: the worker must stop
    pruned: bool = False
    #: the last beat failed (the database is away)
    beat_failing: bool = False
    released: int = 0
    #: (monotonic clock) until when this process's lease is surely not expired on the server:
    #: a job started before then cannot have been rescued from it (set by each beat)
    lease_until: float = 0.0
    #: ids that came on the cancel channel (every cancelled running job of the schema): a
    #: claimed job among them is marked synchronously, so it is not started (see worker.run)
    cancelled_ids: set = attrs.field(factory=set)
    #: outcomes of jobs that ended before the running one, parked by the main thread as the
    #: handler starts: the heartbeat writes them once that handler has run `flush_after`, so a
    #: short job's outcome never waits behind a long one (the main thread takes them back)
    parked: list | None = None
    #: what the heartbeat wrote of them: (batch, WriteResult or the exception), for the main thread
    flushed: list = attrs.field(factory=list)

    def note_cancelled(self, payloads: list[str]) -> None:
        if len(self.cancelled_ids) > 10_000:  # ids of other workers' jobs pile up: forget them
            self.cancelled_ids.clear()
        self.cancelled_ids.update(int(p) for p in payloads if p.isdigit())


#: the part of a ttl the main thread trusts a beat for: a lease renewed at t (sent then) is not
#: expired on the server before t + ttl (the server renews it after t); 0.8 leaves room for clock-rate
#: differences and is longer than the gap between two beats (ttl / 3.5 plus a 0.25 s tick)
LEASE_TRUST = 0.8


class Heartbeat(threading.Thread):
    """One worker process's heartbeat thread (see the module docstring for what each beat does).

    Started by the worker (`actors.jobs.worker`), one per process, with its own database
    connection; it shares `state` with the main thread. `ttl` is the process's lease: a beat
    every `ttl / 3.5` seconds. `release_after`, `cancel_grace` and `kill_grace` are seconds.
    `stop()` ends it and closes its connection (it is a daemon thread: it never holds up exit)."""

    def __init__(
        self,
        database: Database,
        process_id: int,
        ttl: float,
        state: WorkerState,
        *,
        release_after: float = 1.0,
        cancel_grace: float = 5.0,
        kill_grace: float = 5.0,
        flush_after: float = 0.1,
    ) -> None:
        super().__init__(name=f"heartbeat-{process_id}", daemon=True)
        self.database = database
        self.jobs = PgJobStore(database)
        self.processes = PgProcessStore(database)
        self.process_id = process_id
        self.ttl = ttl
        self.every = ttl / 3.5  # at least three beats per expiry window
        self.tick = min(0.25, self.every)
        self.state = state
        self.release_after = release_after
        self.flush_after = flush_after
        self.cancel_grace = cancel_grace
        self.kill_grace = kill_grace
        self.halt = threading.Event()
        self.main_thread = threading.main_thread().ident
        self._conn: Any = None

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=2.0)

    def run(self) -> None:
        next_beat = 0.0
        failures = 0
        while not self.halt.is_set():
            try:
                if self._conn is None:
                    self._conn = self.database.dedicated(application_name=f"thespian-otp heartbeat {self.process_id}")
                    self.processes.listen(self._conn, cancel_channel(self.database.config.schema))
                # the first beat at once: until then the worker waits for every mark's answer
                payloads = self.processes.wait_notifies(self._conn, 0.0 if next_beat == 0.0 else self.tick)
                if self.halt.is_set():
                    break
                now = time.monotonic()
                current = self.state.current
                if payloads:
                    self.state.note_cancelled(payloads)
                # also an id that came just before its job became current (see worker.run)
                urgent = current is not None and current[0].id in self.state.cancelled_ids
                if now >= next_beat or urgent:
                    self.beat(current)
                    if urgent:
                        self.state.cancelled_ids.discard(current[0].id)
                    next_beat = now + self.every
                    failures = 0
                    self.state.beat_failing = False
                self.release_if_long(current)
                self.flush_if_long(current)
            except StoreError as exc:
                failures += 1
                self.state.beat_failing = True
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("worker process %s: heartbeat failed (%s); retrying", self.process_id, exc)
                self._close()
                self.halt.wait(min(self.every, 0.1 * 2 ** min(failures, 5)))
            except Exception as exc:  # noqa: BLE001 - the thread must keep beating
                log.error("worker process %s: heartbeat error %s: %s", self.process_id, type(exc).__name__, exc)
                self._close()
                self.halt.wait(self.every)
            self.enforce(time.monotonic())
        self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def beat(self, current: tuple[ClaimedJob, JobContext] | None) -> None:
        job = current[0] if current else None
        sent = time.monotonic()
        alive, owns = self.processes.beat(self._conn, self.process_id, self.ttl, job.id if job else None, job.attempt if job else None)
        self.state.lease_until = sent + self.ttl * LEASE_TRUST if alive else 0.0
        if not alive:
            self.state.pruned = True
            with self.state.lock:
                self.state.claimed.clear()  # rescued with the process: no longer ours
        if current is not None and (not alive or not owns):
            reason = "rescued (this worker missed its heartbeats past the expiry)" if not alive else "cancelled or rescued"
            if not current[1].cancelled:
                log.warning("worker process %s: job %s is no longer its own (%s)", self.process_id, job.id, reason)
            current[1].cancel(reason)

    def release_if_long(self, current: tuple[ClaimedJob, JobContext] | None) -> None:
        if current is None or current[1].elapsed < self.release_after or not self.state.claimed:
            return
        with self.state.lock:
            taken = list(self.state.claimed)
            self.state.claimed.clear()
        try:
            released = self.jobs.release(self._conn, taken, self.process_id)
        except BaseException:
            # not released (the database is away): they are still this worker's to run; dropped
            # here they stayed claimed by a live process that would never start them (chaos run)
            with self.state.lock:
                self.state.claimed.extendleft(reversed(taken))
            raise
        self.state.released += len(released)
        log.info("worker process %s: released %d unstarted jobs while job %s runs long", self.process_id, len(released), current[0].id)

    def flush_if_long(self, current: tuple[ClaimedJob, JobContext] | None) -> None:
        """Write the outcomes parked behind a handler that has run `flush_after` (fenced, with
        their events, in one transaction); the result, or the failure, goes back to the main
        thread, which tells the completer or puts the batch back."""
        if current is None or current[1].elapsed < self.flush_after or not self.state.parked:
            return
        with self.state.lock:
            batch, self.state.parked = self.state.parked, None
        try:
            result: Any = self.jobs.write_outcomes(batch)
        except Exception as exc:  # noqa: BLE001 - the main thread decides (an outage: the completer)
            result = exc
        with self.state.lock:
            self.state.flushed.append((batch, result))

    def enforce(self, now: float) -> None:
        """Interrupt, then end, a handler running work that is no longer its own or past its timeout."""
        current = self.state.current
        if current is None:
            return
        job, context = current
        if context.cancelled and context.cancelled_at is not None:
            late = now - context.cancelled_at
            if late >= self.cancel_grace and self.state.interrupt is None:
                self.interrupt("cancelled")
            elif late >= 2 * self.cancel_grace:
                self.hard_exit(f"the handler of job {job.id} kept running {late:.1f} s after the job was {context.reason}")
        elif context.elapsed >= context.timeout + self.kill_grace:
            error = f"timed out after {context.timeout:g} s and ignored the interrupt for {self.kill_grace:g} s; its worker process was ended"
            try:
                self.jobs.write_outcomes([JobOutcome(job.id, self.process_id, job.attempt, "failed", time.time(), context.elapsed * 1000, error, 1.0)])
            except StoreError:
                pass  # the rescuer counts the attempt instead
            self.hard_exit(f"job {job.id}: {error}")

    def interrupt(self, reason: str) -> None:
        self.state.interrupt = reason
        if self.state.in_handler:
            signal.pthread_kill(self.main_thread, signal.SIGALRM)

    def hard_exit(self, why: str) -> None:
        log.error("worker process %s ends itself: %s", self.process_id, why)
        os._exit(HARD_EXIT)
