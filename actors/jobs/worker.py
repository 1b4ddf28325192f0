"""A job worker: one OS process that claims jobs, runs their handlers on its main thread, and
hands the outcomes to the completer.

- Liveness does not depend on the handlers: a heartbeat thread with its own connection extends
  the process's lease (see `heartbeat.py`), so a job within its timeout is never rescued
  however long it runs; a frozen worker (SIGSTOP, a VM pause) loses its jobs to the rescuer and,
  when it resumes, can neither complete them (fencing) nor go on running them (cancelled).
- It claims with FOR UPDATE SKIP LOCKED when woken by NOTIFY, when its polling fallback is
  due, or right after a full claim; a claim is sized to what it will start soon (about
  `claim_ahead` seconds of work at its recent job durations, at most `batch`), and the
  heartbeat thread releases unstarted claims while a job runs long.
- Before each handler starts, one statement records on the rows that the previous job ended
  and this one starts (`mark`): a worker that dies mid-job is rescued knowing which job it was
  running (that job's last error says so, and it alone loses an attempt) and which ones had
  already ended (completed, never run again). Marks are pipelined (`actors/stores/marks.py`):
  written to the socket before the handler starts, their answers read before the outcomes are
  handed on, so a stream of short jobs costs no round trip per job. A job whose ownership is
  in doubt (the lease not recently renewed, or its id came on the cancel channel) is marked
  and answered before it starts, as before.
- Outcomes go to the completer at the end of each time slice, and at once after a job of a
  slice or more (requests; unconfirmed ones are resent, fencing makes that safe); the marks
  make a job that ended durable before the next one starts, whatever happens to the worker.
  On stop the worker writes what it still holds itself.
- A handler past its timeout is interrupted (SIGALRM) and the job retried.
"""

from __future__ import annotations

import itertools
import math
import os
import signal
import time
from typing import Any

from actors.jobs import context as job_context
from actors.jobs.context import JobContext
from actors.jobs.core import exception_message, retry_delay, storable_text, traceback_text
from actors.jobs.errors import DiscardJob, JobCancelled, JobTimeout, UnknownJobKind
from actors.jobs.heartbeat import Heartbeat, WorkerState
from actors.jobs.messages import Complete, CompleterStats, Continue, WorkerStatus, Written
from actors.jobs.overlap import Overlapped
from actors.jobs.registry import import_handlers, lookup
from actors.jobs.wakeup import WakeOnReadable
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.errors import StoreError
from actors.stores.jobs import PgJobStore
from actors.stores.marks import MarkPipeline
from actors.stores.outage import WAITING, Outage, is_outage
from actors.stores.processes import PgProcessStore
from actors.stores.rows import ClaimedJob as Job, JobOutcome, WriteResult
from supervision import Answer, Server
from supervision.logs import logger
from supervision.specs import validate_node

log = logger("actors.jobs.worker")


class WorkerPruned(StoreError):
    """This worker's process row was removed as dead: it must stop (and be restarted)."""


_STATE: WorkerState | None = None


def _alarm(signum: int, frame: Any) -> None:
    """SIGALRM: the handler's timeout (its itimer), or the heartbeat thread interrupting a
    handler whose job is no longer its own. Raised only inside a handler."""
    state = _STATE
    if state is None or not state.in_handler:
        return
    current = state.current
    if state.interrupt == "cancelled" and current is not None:
        raise JobCancelled(current[0].id, current[1].reason or "cancelled")
    raise JobTimeout("the handler ran past its timeout")


class Worker(WakeOnReadable, Server):
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
        claim_ahead: float = 0.5,
        release_after: float = 1.0,
        cancel_grace: float = 5.0,
        kill_grace: float = 5.0,
        flush_pause: float = 0.005,
        write_when_idle: bool = True,
        pipeline_marks: bool = True,
        write_under_load: bool = True,
        tree: str | None = None,
        claim_early: float = 0.5,
        write_behind: bool = True,
        overlap_per_core: float = 0.5,
    ) -> None:
        """`flush_pause`: after a job of a time slice or more, the worker leaves its loop this
        long before the next job, so that thespian sends the outcome (5 ms was enough here; 0
        was not). `claim_ahead`: seconds of work (at recent job durations) claimed at once;
        `release_after`: unstarted claims go back while a job has run this long;
        `cancel_grace`: a handler whose job was cancelled or rescued is interrupted after this,
        and its process ended after twice this; `kill_grace`: a handler that ignores its
        timeout interrupt this long ends its process. `write_when_idle`: a worker with
        nothing left to run writes its last outcomes itself (fenced, with their events, a
        durable commit) and tells the completer, instead of a hop through it: at light load
        that hop was most of a job's latency (42 ms of 74 on a loaded machine).
        `pipeline_marks`: send each job's mark without waiting for its answer (False: one
        round trip per job before its handler starts, issue 19's first design).
        `write_under_load` (with `write_when_idle`): the worker writes every batch of
        outcomes itself, the same way (False: under load they go to the completer, whose answers come back through
        thespian only while this busy loop yields: the worker waited for them after 190 of
        200 claims of 100 no-op jobs, half its time). `tree`: the job tree this worker belongs
        to, recorded on its process row (only that tree's rescuer rescues it).
        `claim_early`: under load (full claims of short jobs) the next claim is sent from a
        thread while this part of a full claim is still unstarted, so that the loop does not
        wait for it (0: claim only when nothing is left). `write_behind` (with
        `write_under_load`): a slice's outcomes are written from a thread while the next
        slice runs (`overlap.py`); idle, long-job and stop writes still wait for their commit.
        Both only while this host runs at most `overlap_per_core` live workers per core: they
        fill idle cores (1 worker on 2 cores: 10.2-10.4k against 8.8-9.8k jobs/s without) and
        cost where the cores are already busy (4 workers on 2 cores: -5 to -15 %; NOTES.md)."""
        global _STATE
        import_handlers(handlers)
        self.tree = tree
        self.queue = queue
        self.batch_size = batch
        self.ttl = heartbeat_ttl
        self.claim_ahead = claim_ahead
        self.flush_pause = flush_pause
        self.avg_run: float | None = None  # seconds, an exponential average of recent jobs
        self.poll_interval = poll_interval
        self.notify_check = notify_check
        self.time_slice = time_slice
        self.completer = completer
        self.limiter = limiter
        self.max_unconfirmed = max_unconfirmed
        self.stop_grace = stop_grace
        self.permit_timeout = permit_timeout

        # losing a worker's last writes to a server crash is safe: claims and marks are redone
        # by the rescuer, outcomes it writes itself only at stop (then they are resent)
        self.database = Database(database, settings={"synchronous_commit": "off"})
        self.jobs = PgJobStore(self.database)
        self.processes = PgProcessStore(self.database)
        self.node = validate_node(node, "Worker.node")
        self.process: Any = None  # its row in `processes`, once registered
        #: its own autocommit connection: LISTEN, claims and marks (one round trip each)
        self.listener: Any = None
        self.outage = Outage()
        self.retry_at = 0.0
        self.release_after, self.cancel_grace, self.kill_grace = release_after, cancel_grace, kill_grace
        self.heartbeat: Heartbeat | None = None
        self.write_when_idle = write_when_idle
        self.write_under_load = write_under_load
        self.config = database
        self.durable: PgJobStore | None = None  # its own connection, synchronous commit (write_idle)
        #: the marks, on a connection of their own in pipeline mode (synchronous_commit off)
        self.marks = MarkPipeline(self.database, application_name=f"thespian-otp marks {self.name}"[:63])
        self.pipeline_marks = pipeline_marks
        self.claim_early, self.write_behind = claim_early, write_behind
        self.early = Overlapped(f"claim-{self.name}")  # the next claim, on `claimer`
        self.behind = Overlapped(f"write-{self.name}")  # a slice's outcomes, on `durable`
        self.claimer: Any = None  # the early claims' connection (used on their thread only)
        self.overlap_per_core = overlap_per_core
        self.overlap_ok, self.overlap_checked = False, -math.inf

        self.state = _STATE = WorkerState()
        self.claimed = self.state.claimed
        #: the job that ran last and whose end is not yet marked on its row (and its error)
        self.ended: tuple[Job, str | None] | None = None
        self.outcomes: list[JobOutcome] = []
        self.unconfirmed: dict[int, tuple[JobOutcome, ...]] = {}
        self._batches = itertools.count(1)
        self.waiting_permit: Job | None = None
        #: True when jobs may be waiting: after a full batch, a NOTIFY, or when the poll is due
        self.want_claim = True
        self.paused = False
        self.next_poll = self.clock() + self.poll_interval
        self.counts = {"claimed": 0, "completed": 0, "failed": 0, "deferred": 0, "resent": 0, "cancelled": 0, "not_ours": 0, "pipelined": 0, "paused": 0, "claimed_early": 0, "written_behind": 0, "flushed_behind": 0}
        signal.signal(signal.SIGALRM, _alarm)
        self.connect()
        # resolve the completer's address now: an outcome sent while the next handler runs must
        # not wait for a name lookup whose answer this busy loop cannot receive
        self.ask(self.completer, CompleterStats(), timeout=30.0, then=lambda answer: None)
        self.arm_timer(self.clock())

    # --- the loop ---------------------------------------------------------------------------

    def handle(self, message: Any) -> Any:
        if isinstance(message, Continue):
            self.step()
            return None
        if isinstance(message, WorkerStatus):
            return {
                "process": self.process.id if self.process else None,
                "waiting_for_database": self.outage.active,
                "claimed_now": len(self.claimed),
                "unconfirmed": sum(len(b) for b in self.unconfirmed.values()),
                "released": self.state.released,
                "running": self.state.current[0].id if self.state.current else None,
                "lease_trusted_for": round(max(0.0, self.state.lease_until - time.monotonic()), 3),
                "beat_failing": self.state.beat_failing,
                **self.counts,
            }
        return super().handle(message)

    # --- the database: connecting, and waiting it out when it is away ---------------------------

    def connect(self) -> bool:
        """Register (once), listen, start the heartbeat thread; False while the database is away."""
        try:
            if self.outage.active or not self.database.is_open:
                self.database.reopen()
            if self.process is None:
                # the process row names the node and the worker: completion events carry it
                self.process = self.processes.register(f"{self.node}:{self.name}" if self.node else self.name, self.ttl, tree=self.tree)
            if self.listener is None:
                self.listener = self.database.dedicated()
                self.jobs.listen(self.listener)
        except Exception as exc:  # noqa: BLE001
            self.away(exc)
            return False
        if self.heartbeat is None:
            self.heartbeat = Heartbeat(
                self.database, self.process.id, self.ttl, self.state,
                release_after=self.release_after, cancel_grace=self.cancel_grace, kill_grace=self.kill_grace,
            )  # fmt: skip
            self.heartbeat.start()
        if self.outage.active:
            log.warning("%s: the database is back after %.1f s", self.name, self.outage.recovered(self.clock()))
            self.want_claim = True
            self.send(self.myAddress, Continue("reconnected"))  # go on with the jobs it holds
        self.report_status(None)
        return True

    def away(self, exc: BaseException) -> None:
        """The database is away: stop claiming and starting jobs, reconnect with backoff. A
        handler already running goes on; its outcome waits in the completer."""
        if not is_outage(exc):
            raise exc
        if not self.outage.active:
            log.warning("%s: the database is away (%s); waiting", self.name, exc)
        if self.listener is not None:
            try:
                self.listener.close()
            except Exception:  # noqa: BLE001
                pass
            self.listener = None
        self.marks.close()  # unanswered marks: their jobs count as still ours (fencing decides)
        self.retry_at = self.outage.failed(self.clock(), exc)
        self.report_status(WAITING)
        self.arm_timer(self.retry_at)

    def on_tick(self, now: float) -> float | None:
        self.check_pruned()
        if self.outage.active or self.process is None or self.listener is None:
            if now < self.retry_at or not self.connect():
                return self.retry_at
        try:
            self.take_overlapped()
            if self._notified() or now >= self.next_poll:
                self.want_claim = True
        except Exception as exc:  # noqa: BLE001
            self.away(exc)
            return self.retry_at
        if self.want_claim and self._idle():
            self.step()
        return now + self.notify_check

    def watched_fileno(self) -> int | None:
        """The LISTEN connection: thespian wakes this worker when a NOTIFY arrives on it (see
        `wakeup.py`), so a job enqueued into an idle worker is claimed at once; the poll every
        `notify_check` stays as the fallback (and the only way on bases without watches)."""
        if self.listener is None or self.outage.active or self.listener.closed or getattr(self.listener, "broken", False):
            return None  # a dead socket stays readable: watching it would spin; the poll notices
        return self.listener.fileno()

    def on_readable(self) -> None:
        if self.listener is None or self.outage.active or getattr(self, "_crashed", None) is not None:
            return
        self.check_pruned()
        try:
            if self._notified():
                self.want_claim = True
        except Exception as exc:  # noqa: BLE001
            self.away(exc)
            return
        if self.want_claim and self._idle():
            if self.unconfirmed:
                # an outcome was just handed to thespian, which sends it only while this loop
                # runs: a long job started now would hold it back (the first outcome of 1 s
                # jobs was not written within 3 s when the NOTIFY of a release woke the worker)
                self.send_after(self.flush_pause, Continue("notified"))
            else:
                self.step()

    def _idle(self) -> bool:
        return not self.claimed and self.waiting_permit is None and not self.paused

    def check_pruned(self) -> None:
        if self.state.pruned:
            raise WorkerPruned(f"process {self.process.id} was pruned as dead; stopping")

    def _notified(self) -> bool:
        return self.jobs.notified(self.listener)

    def step(self) -> None:
        """Run claimed jobs and claim more, for one time slice at most; then yield (a message to
        itself), so that a stop request gets in between."""
        if self.outage.active or self.listener is None:
            return  # on_tick reconnects, then steps
        try:
            self._step()
        except Exception as exc:  # noqa: BLE001 - an outage is waited out; anything else crashes
            self.away(exc)

    def _step(self) -> None:
        started = self.clock()
        while True:
            self.check_pruned()
            while self.waiting_permit is None:
                with self.state.lock:
                    job = self.claimed.popleft() if self.claimed else None
                if job is None:
                    break
                job_type = self._type(job)
                if job_type is not None and job_type.limit_key:
                    self.send_outcomes()
                    self._ask_permit(job, job_type.limit_key)
                    return
                ran = self.run(job)
                self.take_overlapped()
                self.claim_soon()
                if self.claimed and ran >= self.time_slice and self.unconfirmed:
                    # a long job may be followed by another: leave the loop for `flush_pause`
                    # so thespian sends its outcome now (it sends nothing while a handler runs)
                    self.send_after(self.flush_pause, Continue("flush"))
                    return
                if self.claimed and self.clock() - started >= self.time_slice:
                    self.send_outcomes(behind=True)  # one write for the slice's jobs
                    self.send(self.myAddress, Continue("slice"))
                    return
            if self.waiting_permit is not None:
                return
            # under load (a full claim behind, the slice not over) the outcomes wait for the
            # slice's end and the next claim goes first: the marks backend catches up meanwhile
            carry_on = self.write_under_load and self.want_claim and self.clock() - started < self.time_slice
            if not self.write_idle():
                self.mark_ended(wait=not carry_on)
            if not carry_on:
                self.send_outcomes(behind=self.want_claim)
            if len(self.unconfirmed) >= self.max_unconfirmed:
                self.paused = True  # back-pressure: the completer is behind; resume on its answer
                self.counts["paused"] += 1
                return
            if not self.want_claim:
                self.arm_timer(self.clock() + self.notify_check)
                return
            if self.clock() - started >= self.time_slice:
                self.send(self.myAddress, Continue("slice"))
                return
            if not self.claim():
                if self.want_claim:
                    continue  # notified while that claim ran: claim again (the slice bounds it)
                if not self.write_idle():  # the outcomes held back for this claim
                    self.mark_ended()
                    self.send_outcomes()
                self.arm_timer(self.clock() + self.notify_check)
                return

    def claim_size(self) -> int:
        """Claim what this worker will start within about `claim_ahead` seconds."""
        if self.avg_run is None or self.avg_run <= 0:
            return self.batch_size
        return max(1, min(self.batch_size, int(self.claim_ahead / self.avg_run)))

    def claim(self) -> int:
        """Claim now (or take the early claim in flight); the number of jobs claimed."""
        if self.early.busy:
            got = self._claimed(self.early.wait(), self.early.context)
            if got:
                return got
        limit = self.claim_size()
        jobs = self.jobs.claim(self.queue, self.process.id, limit, conn=self.listener)
        with self.state.lock:
            self.claimed.extend(jobs)
        got = self._claimed(len(jobs), limit)
        # a NOTIFY that came while the claim ran arrived with its answer, and psycopg keeps it:
        # the socket is quiet now, so look here, or its job (committed after the claim's
        # snapshot) waits for the next poll
        if not self.want_claim and self._notified():
            self.want_claim = True
        return got

    def _claimed(self, count: int, limit: int) -> int:
        self.counts["claimed"] += count
        self.want_claim = count == limit  # a full claim: more are probably waiting
        self.next_poll = self.clock() + self.poll_interval
        return count

    def claim_soon(self) -> None:
        """Under load (the last claim was full, of short jobs) send the next claim from a
        thread once `claim_early` of a full claim is left, so that it is there when the loop
        needs it: a claim of 100 took 2 ms in which the loop waited (0.42 s of a 1.68 s
        drain of 20,000 no-op jobs, 1 worker)."""
        if (self.claim_early <= 0 or self.early.busy or not self.want_claim or self.waiting_permit is not None
                or self.claim_size() < self.batch_size or len(self.claimed) > self.claim_early * self.batch_size
                or not self.overlap_pays()):
            return  # fmt: skip
        limit = self.batch_size
        self.counts["claimed_early"] += 1
        self.early.start(lambda: self._claim_on_thread(limit), context=limit)

    def overlap_pays(self, every: float = 5.0) -> bool:
        """Whether this host has cores to spare for the overlapped calls: at most
        `overlap_per_core` live workers per core (their rows in `processes`, read every
        `every` seconds). Each loaded worker keeps about two cores busy with its backends
        (per no-op job ~30 us in its loop, ~70 us in the server: the mark, the claim, the
        write), so overlapping its waits only pays while cores are idle."""
        now = self.clock()
        if now - self.overlap_checked >= every:
            self.overlap_checked = now
            here = sum(1 for row in self.processes.all() if row.host == self.process.host)
            self.overlap_ok = max(1, here) <= self.overlap_per_core * (os.cpu_count() or 1)
        return self.overlap_ok

    def _claim_on_thread(self, limit: int) -> int:
        """On the early claim's thread: claim on its own connection, and add the jobs to
        `claimed` at once (where the heartbeat can release them while a job runs long)."""
        conn = self.claimer
        try:
            if conn is None or conn.closed:
                conn = self.claimer = self.database.dedicated(application_name=f"thespian-otp claims {self.name}"[:63])
            jobs = self.jobs.claim(self.queue, self.process.id, limit, conn=conn)
        except BaseException:
            self.claimer = None
            if conn is not None:
                conn.close()
            raise
        with self.state.lock:
            self.claimed.extend(jobs)
        return len(jobs)

    def take_flushed(self) -> None:
        """Take back the writes the heartbeat made of outcomes parked behind a long handler."""
        if not self.state.flushed:
            return
        with self.state.lock:
            flushed, self.state.flushed = self.state.flushed, []
        for batch, result in flushed:
            self.counts["flushed_behind"] += 1
            self._written(batch, result)

    def take_overlapped(self) -> None:
        """Take back what finished off the main thread: an early claim, an outcome write."""
        self.take_flushed()
        done, count = self.early.poll()
        if done:
            self._claimed(count, self.early.context)
        if self.behind.busy:
            batch = self.behind.context
            done, result = self.behind.poll()
            if done:
                self._written(batch, result)

    # --- running one job ---------------------------------------------------------------------

    def _type(self, job: Job) -> Any:
        try:
            return lookup(job.kind)
        except UnknownJobKind:
            return None

    def _writes_itself(self) -> bool:
        """Whether this worker, about to run out of claimed jobs, will write its outcomes
        itself: no full claim just came (under load the completer batches them)."""
        return self.write_when_idle and not self.want_claim

    def write_idle(self) -> bool:
        """Nothing left to run and no claim to make: write the outcomes now, on a connection
        that commits durably (this worker's own connection does not), and tell the completer
        what was written so that it publishes it. While the database is away they go to the
        completer instead, which waits it out."""
        if not self.outcomes or self.claimed or not self._writes_itself():
            return False
        return self.write_own()

    def write_own(self) -> bool:
        """Write the outcomes held now, fenced and with their events, in one durable
        transaction on a connection of its own, and tell the completer (which publishes them).
        False: nothing written (none held, or the database is away: then the completer gets
        them and waits the outage out)."""
        self.finish_write()  # one write at a time, in order
        self.settle_marks()
        if not self.outcomes:
            return False
        batch, self.outcomes = self.outcomes, []
        result = self._write(batch)
        if isinstance(result, Exception):
            self.outcomes = batch + self.outcomes
            if not is_outage(result):
                raise result
            return False
        self._wrote(result)
        return True

    def write_soon(self) -> bool:
        """Start writing the outcomes held from a thread (the same fenced, durable write);
        the loop goes on and takes the result back later (`take_overlapped`). A slice's write
        of ~800 outcomes took 14 ms in which the loop waited (0.38 s of a 1.68 s drain)."""
        self.finish_write()
        self.settle_marks()  # outcomes of jobs that were not this worker's are dropped first
        if not self.outcomes:
            return True
        batch, self.outcomes = self.outcomes, []
        self.counts["written_behind"] += 1
        self.behind.start(lambda: self._write(batch), context=batch)
        return True

    def finish_write(self, timeout: float | None = None) -> None:
        """Wait for the write in flight (if any) and take its result back."""
        if self.behind.busy:
            batch = self.behind.context
            self._written(batch, self.behind.wait(timeout))

    def _write(self, batch: list[JobOutcome]) -> WriteResult | Exception:
        """Write `batch` on the durable connection (from either thread, one at a time); a
        failure is returned, and the connection dropped."""
        try:
            if self.durable is None:
                self.durable = PgJobStore(Database(self.config))
            return self.durable.write_outcomes(batch)
        except Exception as exc:  # noqa: BLE001 - the caller decides (an outage: the completer)
            if self.durable is not None:
                self.durable.database.close()
                self.durable = None
            return exc

    def _written(self, batch: list[JobOutcome], result: WriteResult | Exception) -> None:
        """The result of a write from the thread, told to the completer; a failure puts the
        batch back (an outage: the completer gets it and waits the outage out)."""
        if isinstance(result, Exception):
            self.outcomes = list(batch) + self.outcomes
            if not is_outage(result):
                raise result
            self._to_completer()
            return
        self._wrote(result)

    def _wrote(self, result: WriteResult) -> None:
        if self.ended is not None and not self._unwritten(self.ended[0].id):
            self.ended = None  # written: the rescuer has nothing to learn from a mark
        self.tell(self.completer, Written(result))

    def _unwritten(self, job_id: int) -> bool:
        in_flight = self.behind.context if self.behind.busy else ()
        return any(o.job_id == job_id for o in self.outcomes) or any(
            o.job_id == job_id for batch in (*self.unconfirmed.values(), in_flight) for o in batch
        )

    def mark_ended(self, wait: bool = True) -> None:
        """Record on its row that the last job ended (no next job to mark it with); `wait`:
        and read every mark's answer."""
        if self.ended is not None:
            job, error = self.ended
            self._answers(self.marks.send(self.process.id, None, job, error))
            self.ended = None
        if wait:
            self.settle_marks()

    def settle_marks(self) -> None:
        """Read every pending mark's answer (before outcomes are handed on)."""
        if self.marks.pending:
            self._answers(self.marks.wait())

    def _answers(self, answers: list[tuple[Job, bool]]) -> set[int]:
        """Jobs whose mark found them no longer this worker's: not counted as run, their
        outcomes dropped (the completer would fence them off anyway)."""
        lost = {job.id for job, mine in answers if not mine}
        if lost:
            self.counts["not_ours"] += len(lost)
            ran = [o for o in self.outcomes if o.job_id in lost]
            if ran:
                self.outcomes = [o for o in self.outcomes if o.job_id not in lost]
                log.info("%s: %d jobs ran although they were no longer its own when they started (cancelled or rescued): %s",
                         self.name, len(ran), sorted(o.job_id for o in ran))  # fmt: skip
            if self.ended is not None and self.ended[0].id in lost:
                self.ended = None
        return lost

    def _trusted(self, job: Job) -> bool:
        """Whether `job` may start before its mark is answered: this process's lease was renewed
        recently enough that nobody can have rescued the job, and no cancel came for it."""
        state = self.state
        if job.id in state.cancelled_ids:
            state.cancelled_ids.discard(job.id)
            return False
        return self.pipeline_marks and time.monotonic() < state.lease_until

    def run(self, job: Job) -> float:
        """Run one job; returns the seconds it took."""
        ended, error = self.ended if self.ended is not None else (None, None)
        self.ended = None
        trusted = self._trusted(job)
        try:
            answers = self.marks.send(self.process.id, job, ended, error)
            lost = self._answers(answers if trusted else answers + self.marks.wait())
            self.counts["pipelined"] += trusted
        except Exception:
            with self.state.lock:  # not started: it waits for the database with the others
                self.claimed.appendleft(job)
            self.ended = (ended, error) if ended is not None else None
            raise
        if job.id in lost:
            return 0.0  # cancelled or rescued before it started
        job_type = self._type(job)
        started = time.perf_counter()
        error, discard, cancelled, failure, trace = None, False, False, None, None
        if job_type is None:
            error = f"no handler for kind {job.kind!r} in worker {self.name}"
        else:
            context = JobContext(job.id, job.kind, job.queue, job.attempt, job.max_attempts, job_type.timeout)
            park = bool(self.outcomes) and self._writes_itself()
            with self.state.lock:
                self.state.current = (job, context)
                self.state.interrupt = None
                if park:  # written by the heartbeat if this handler runs long (flush_if_long)
                    self.state.parked, self.outcomes = self.outcomes, []
            job_context._set(context)
            self.state.in_handler = True
            signal.setitimer(signal.ITIMER_REAL, job_type.timeout)
            try:
                job_type.function(job.payload)
            except JobTimeout as exc:  # its traceback shows where the handler was stuck
                error, failure = f"timed out after {job_type.timeout:g} s", exc
            except JobCancelled:
                cancelled = True
            except DiscardJob as exc:
                error, discard, failure = f"discarded: {exc}", True, exc
            except SystemExit as exc:  # sys.exit() in a handler fails its job, not the worker
                error, failure = f"SystemExit: the handler called sys.exit({exc.code!r})", exc
            except Exception as exc:  # noqa: BLE001 - a failing handler never kills the worker
                failure = exc
            finally:
                self.state.in_handler = False
                signal.setitimer(signal.ITIMER_REAL, 0)
                job_context._set(None)
                with self.state.lock:
                    self.state.current = None
                    self.state.interrupt = None
                    back, self.state.parked = self.state.parked, None
                if back:
                    back.extend(self.outcomes)  # none: the main thread added nothing meanwhile
                    self.outcomes = back
            self.take_flushed()
            cancelled = cancelled or context.cancelled
            if failure is not None:
                # described here, with the timer and the cancel interrupt off (SIGALRM raises
                # only inside a handler), and without the worker's own frame (skip=1)
                trace = traceback_text(failure, skip=1)
                error = error or f"{type(failure).__name__}: {exception_message(failure)}"
                failure = None
        run_s = time.perf_counter() - started
        self.avg_run = run_s if self.avg_run is None else 0.7 * self.avg_run + 0.3 * run_s
        if cancelled:
            # no longer this worker's job: write nothing (it would be fenced off anyway)
            self.counts["cancelled"] += 1
            log.info("%s: job %s (%s) attempt %d stopped: no longer its own", self.name, job.id, job.kind, job.attempt)
            return run_s
        error = storable_text(error) if error is not None else None
        self.ended = (job, error)
        run_ms = run_s * 1000
        if error is None:
            self.counts["completed"] += 1
            self.outcomes.append(JobOutcome(job.id, self.process.id, job.attempt, "completed", time.time(), run_ms))
        else:
            self.counts["failed"] += 1
            retry_in = retry_delay(job.attempt, job_type.retry_min, job_type.retry_max) if job_type else 5.0
            log.info("%s: job %s (%s) attempt %d failed: %s", self.name, job.id, job.kind, job.attempt, error)
            self.outcomes.append(
                JobOutcome(job.id, self.process.id, job.attempt, "failed", time.time(), run_ms, error, retry_in, discard, trace)
            )
        if run_s >= self.time_slice or (not self.claimed and not self._writes_itself() and not self.write_under_load):
            # durable soon after the job ends: a long job, or the last one claimed, goes at once;
            # short jobs go together at the end of their time slice (one message for many: a
            # message per job was the bottleneck, 163 jobs/s with 1 worker on a loaded machine)
            self.send_outcomes()
        return run_s

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
                self.send_outcomes()
            finally:
                Limiter(self, self.limiter).release_later(answer.value)
            self.mark_ended()
        else:
            self.counts["deferred"] += 1
            self.outcomes.append(JobOutcome(job.id, self.process.id, job.attempt, "deferred", time.time(), retry_in=1.0))
        self.send(self.myAddress, Continue("permit"))

    # --- outcomes -----------------------------------------------------------------------------

    def send_outcomes(self, behind: bool = False) -> None:
        """Hand the outcomes held on: written by this worker (`behind`: from a thread, while
        the loop goes on), or through the completer."""
        if not self.outcomes:
            return
        if self.write_under_load and self.write_when_idle:
            if behind and self.write_behind and self.overlap_pays() and self.write_soon():
                return
            if self.write_own():
                return
        self._to_completer()

    def _to_completer(self) -> None:
        self.settle_marks()
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
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.process is None:
            self.database.close()
            return
        try:  # an early claim in flight adds its jobs to `claimed` (deferred below)
            self.early.wait(self.stop_grace)
        except Exception:  # noqa: BLE001 - not claimed, or rescued later (the process row goes)
            pass
        batch = self.behind.context if self.behind.busy else None
        try:
            self.finish_write(self.stop_grace)
        except Exception:  # noqa: BLE001 - written again below (fenced: nothing twice)
            if batch is not None and self.behind.busy:
                self.outcomes = list(batch) + self.outcomes
        self.early.close()
        self.behind.close()
        with self.state.lock:  # writes the heartbeat made (it has stopped): failed ones go again
            flushed, self.state.flushed = self.state.flushed, []
            parked, self.state.parked = self.state.parked, None
        self.outcomes = (parked or []) + [o for batch, result in flushed if isinstance(result, Exception) for o in batch] + self.outcomes
        for _batch, result in flushed:
            if not isinstance(result, Exception):
                self._wrote(result)  # the completer publishes them, as for every other write
        try:
            self.mark_ended()  # the answers first: outcomes of jobs that were not ours are dropped
        except Exception:  # noqa: BLE001 - the outcomes are fenced anyway
            pass
        self.marks.close()
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
            if self.listener is not None:
                self.listener.close()
            if self.durable is not None:
                self.durable.database.close()
            if self.claimer is not None:
                self.claimer.close()
            self.database.close()
