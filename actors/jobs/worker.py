"""A job worker: one OS process that claims jobs in batches, runs their handlers, and hands the
outcomes to the completer.

- It registers its process in `processes` and heartbeats at least three times per expiry
  window; a heartbeat that finds its row gone (it was pruned as dead) stops it at once.
- It claims up to `batch` jobs with FOR UPDATE SKIP LOCKED when woken by NOTIFY, when its
  polling fallback is due, or right after a full batch.
- It runs handlers in time slices, so a stop request gets in between jobs. A handler past its
  timeout is interrupted (SIGALRM) and the job retried; a handler that ignores that too stops
  heartbeating, and the rescuer releases its jobs and kills the process.
- Outcomes go to the completer as requests; unconfirmed ones are resent (fencing makes that
  safe), and on stop the worker writes what it still holds itself.
"""

from __future__ import annotations

import collections
import itertools
import signal
import time
from typing import Any

from actors.jobs.core import retry_delay
from actors.jobs.errors import DiscardJob, JobTimeout, UnknownJobKind
from actors.jobs.messages import Complete, Continue, WorkerStatus
from actors.jobs.registry import import_handlers, lookup
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.errors import StoreError
from actors.stores.jobs import PgJobStore
from actors.stores.processes import PgProcessStore
from actors.stores.rows import ClaimedJob as Job, JobOutcome
from supervision import Answer, Server
from supervision.logs import logger

log = logger("actors.jobs.worker")


class WorkerPruned(StoreError):
    """This worker's process row was removed as dead: it must stop (and be restarted)."""


def _alarm(signum: int, frame: Any) -> None:
    raise JobTimeout("the handler ran past its timeout")


class Worker(Server):
    """A worker process: registers itself and heartbeats in `processes`, claims jobs in batches
    (FOR UPDATE SKIP LOCKED), asks the limiter for a permit when the kind has a `limit_key`,
    runs the handlers and sends outcomes to the completer."""

    def init(
        self,
        database: DatabaseConfig,
        queue: str = "default",
        handlers: tuple[str, ...] = (),
        batch: int = 50,
        heartbeat_ttl: float = 15.0,
        poll_interval: float = 1.0,
        notify_check: float = 0.05,
        time_slice: float = 0.05,
        completer: str = "completer",
        limiter: str = "limiter",
        max_unconfirmed: int = 4,
        stop_grace: float = 10.0,
        permit_timeout: float = 5.0,
        node: str | None = None,
    ) -> None:
        import_handlers(handlers)
        self.queue = queue
        self.batch_size = batch
        self.ttl = heartbeat_ttl
        self.heartbeat_every = heartbeat_ttl / 3.5  # at least three beats per expiry window
        self.poll_interval = poll_interval
        self.notify_check = notify_check
        self.time_slice = time_slice
        self.completer = completer
        self.limiter = limiter
        self.max_unconfirmed = max_unconfirmed
        self.stop_grace = stop_grace
        self.permit_timeout = permit_timeout

        self.database = Database(database).open()
        self.jobs = PgJobStore(self.database)
        self.processes = PgProcessStore(self.database)
        # the process row names the node and the worker: completion events carry it
        self.process = self.processes.register(f"{node}:{self.name}" if node else self.name, self.ttl)
        self.listener = self.database.dedicated()
        self.listener.execute(f"LISTEN {self.jobs.channel}")

        self.claimed: collections.deque[Job] = collections.deque()
        self.outcomes: list[JobOutcome] = []
        self.unconfirmed: dict[int, tuple[JobOutcome, ...]] = {}
        self._batches = itertools.count(1)
        self.waiting_permit: Job | None = None
        #: True when jobs may be waiting: after a full batch, a NOTIFY, or when the poll is due
        self.want_claim = True
        self.paused = False
        self.next_beat = self.clock() + self.heartbeat_every
        self.next_poll = self.clock() + self.poll_interval
        self.counts = {"claimed": 0, "completed": 0, "failed": 0, "deferred": 0, "resent": 0}
        signal.signal(signal.SIGALRM, _alarm)
        self.arm_timer(self.clock())

    # --- the loop ---------------------------------------------------------------------------

    def handle(self, message: Any) -> Any:
        if isinstance(message, Continue):
            self.step()
            return None
        if isinstance(message, WorkerStatus):
            return {
                "process": self.process.id,
                "claimed_now": len(self.claimed),
                "unconfirmed": sum(len(b) for b in self.unconfirmed.values()),
                **self.counts,
            }
        return super().handle(message)

    def on_tick(self, now: float) -> float | None:
        if now >= self.next_beat:
            self.beat(now)
        if self._notified() or now >= self.next_poll:
            self.want_claim = True
        if self.want_claim and self._idle():
            self.step()
        return min(self.next_beat, now + self.notify_check)

    def _idle(self) -> bool:
        return not self.claimed and self.waiting_permit is None and not self.paused

    def beat(self, now: float) -> None:
        if not self.processes.heartbeat(self.process.id, self.ttl):
            raise WorkerPruned(f"process {self.process.id} was pruned as dead; stopping")
        self.next_beat = now + self.heartbeat_every

    def _notified(self) -> bool:
        return any(True for _ in self.listener.notifies(timeout=0))

    def step(self) -> None:
        """Run claimed jobs and claim more, for one time slice at most; then yield (a message to
        itself), so that a stop request gets in between."""
        started = self.clock()
        while True:
            if self.clock() >= self.next_beat:
                self.beat(self.clock())
            while self.claimed and self.waiting_permit is None:
                job = self.claimed.popleft()
                job_type = self._type(job)
                if job_type is not None and job_type.limit_key:
                    self._ask_permit(job, job_type.limit_key)
                    return
                self.run(job)
                if self.claimed and self.clock() - started >= self.time_slice:
                    self.send(self.myAddress, Continue("slice"))
                    return
            if self.waiting_permit is not None:
                return
            self.send_outcomes()
            if len(self.unconfirmed) >= self.max_unconfirmed:
                self.paused = True  # back-pressure: the completer is behind; resume on its answer
                return
            if not self.want_claim:
                self.arm_timer(min(self.next_beat, self.clock() + self.notify_check))
                return
            if self.clock() - started >= self.time_slice:
                self.send(self.myAddress, Continue("slice"))
                return
            if not self.claim():
                self.arm_timer(min(self.next_beat, self.clock() + self.notify_check))
                return

    def claim(self) -> int:
        jobs = self.jobs.claim(self.queue, self.process.id, self.batch_size)
        self.counts["claimed"] += len(jobs)
        self.claimed.extend(jobs)
        self.want_claim = len(jobs) == self.batch_size  # a full batch: more are probably waiting
        self.next_poll = self.clock() + self.poll_interval
        return len(jobs)

    # --- running one job ---------------------------------------------------------------------

    def _type(self, job: Job) -> Any:
        try:
            return lookup(job.kind)
        except UnknownJobKind:
            return None

    def run(self, job: Job) -> None:
        job_type = self._type(job)
        started = time.perf_counter()
        error, discard = None, False
        if job_type is None:
            error = f"no handler for kind {job.kind!r} in worker {self.name}"
        else:
            signal.setitimer(signal.ITIMER_REAL, job_type.timeout)
            try:
                job_type.function(job.payload)
            except JobTimeout:
                error = f"timed out after {job_type.timeout:g} s"
            except DiscardJob as exc:
                error, discard = f"discarded: {exc}", True
            except Exception as exc:  # noqa: BLE001 - a failing handler never kills the worker
                error = f"{type(exc).__name__}: {exc}"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        run_ms = (time.perf_counter() - started) * 1000
        if error is None:
            self.counts["completed"] += 1
            self.outcomes.append(JobOutcome(job.id, self.process.id, job.attempt, "completed", time.time(), run_ms))
            return
        self.counts["failed"] += 1
        retry_in = retry_delay(job.attempt, job_type.retry_min, job_type.retry_max) if job_type else 5.0
        log.info("%s: job %s (%s) attempt %d failed: %s", self.name, job.id, job.kind, job.attempt, error)
        self.outcomes.append(
            JobOutcome(job.id, self.process.id, job.attempt, "failed", time.time(), run_ms, error, retry_in, discard)
        )

    def _ask_permit(self, job: Job, key: str) -> None:
        from actors.limiter import Limiter

        self.waiting_permit = job
        Limiter(self, self.limiter).acquire_then(key, then=lambda answer: self._permitted(job, answer), timeout=self.permit_timeout)

    def _permitted(self, job: Job, answer: Answer) -> None:
        from actors.limiter import Limiter

        self.waiting_permit = None
        if answer.ok:
            try:
                self.run(job)
            finally:
                Limiter(self, self.limiter).release_later(answer.value)
        else:
            self.counts["deferred"] += 1
            self.outcomes.append(JobOutcome(job.id, self.process.id, job.attempt, "deferred", time.time(), retry_in=1.0))
        self.send(self.myAddress, Continue("permit"))

    # --- outcomes -----------------------------------------------------------------------------

    def send_outcomes(self) -> None:
        if not self.outcomes:
            return
        batch = tuple(self.outcomes)
        self.outcomes = []
        number = next(self._batches)
        self.unconfirmed[number] = batch
        self.ask(self.completer, Complete(batch), timeout=30.0, then=lambda answer: self._confirmed(number, answer))

    def _confirmed(self, number: int, answer: Answer) -> None:
        batch = self.unconfirmed.pop(number, None)
        if self.paused and len(self.unconfirmed) < self.max_unconfirmed:
            self.paused = False
            self.send(self.myAddress, Continue("resume"))
        if answer.ok or batch is None:
            return
        log.warning("%s: %d outcomes not confirmed (%s); sending them again", self.name, len(batch), answer.error.message)
        self.counts["resent"] += len(batch)
        self.outcomes.extend(batch)
        self.send_after(0.2, Continue("resend"))

    def terminate(self, reason: str) -> None:
        """Stop claiming; write what this worker still holds itself (fenced, so nothing twice)."""
        now = time.time()
        held = list(self.outcomes)
        for batch in self.unconfirmed.values():
            held.extend(batch)
        if self.waiting_permit is not None:
            self.claimed.appendleft(self.waiting_permit)
        held.extend(JobOutcome(job.id, self.process.id, job.attempt, "deferred", now) for job in self.claimed)
        try:
            if held:
                self.jobs.write_outcomes(held)
            self.processes.deregister(self.process.id)
        except StoreError as exc:
            log.warning("%s: could not write its last %d outcomes at stop (%s); the rescuer will release them", self.name, len(held), exc)
            try:
                self.processes.retire(self.process.id, self.stop_grace)
            except StoreError:
                pass
        finally:
            self.listener.close()
            self.database.close()
