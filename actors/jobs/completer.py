"""The completer: batches job outcomes and writes each batch in one transaction (docs/design.md story 4).

Workers send `Complete(outcomes)` as requests; the completer answers once the batch holding them
is written, so a worker resends what a crashed completer never wrote (writes are fenced, so a
resent outcome never completes a job twice). Batches flush when `batch_size` outcomes wait,
when the oldest waits `max_age` seconds, and when the completer stops.

Finished jobs are published to subscribers through bounded buffers (`core.Fanout`): at most
`window` deliveries per subscriber are unacknowledged, older waiting ones are dropped past
`buffer`, and a subscriber that dies is removed. Nothing a subscriber does can block a flush.
"""

from __future__ import annotations

from typing import Any

from actors.jobs.core import Fanout, check_outcome
from actors.jobs.errors import DatabaseWaiting
from actors.jobs.flushing import LatencyAwareBatch
from actors.jobs.messages import Ack, Complete, CompleterStats, FinishedJob, Flush, Subscribe, Unsubscribe, Written
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.jobs import PgJobStore
from actors.stores.outage import WAITING, Outage
from actors.stores.rows import WriteResult
from supervision import BadRequest, Down, Server
from supervision.logs import logger
from supervision.specs import validate_name

log = logger("actors.jobs.completer")


class Completer(Server):
    """Batches job outcomes from the workers and writes each batch (with its events) in one
    transaction; flushes on size, age and stop; publishes finished jobs to subscribers through
    bounded buffers, so a slow or dead subscriber never blocks it."""

    def init(
        self,
        database: DatabaseConfig,
        batch_size: int = 200,
        max_age: float = 0.02,
        subscribers: tuple[str, ...] = (),
        buffer: int = 1000,
        window: int = 4,
        idle_gap: float = 0.005,
        probe_interval: float = 2.0,
    ) -> None:
        """`subscribers`: names that always get finished jobs (started before the completer, so
        they stop after it); others can `Subscribe` at run time. `idle_gap`: an outcome that
        arrives after this long without any is written at once (`flushing.py`); `math.inf`
        turns that off (batches by size and age only)."""
        self.database = Database(database)
        self.store = PgJobStore(self.database)
        self.outage = Outage()
        self.retry_at = 0.0
        #: an idle completer checks the database this often, so the tree shows an outage even
        #: while idle workers write their own outcomes and nothing reaches it
        self.probe_interval = probe_interval
        self.next_probe = self.clock() + probe_interval
        self.arm_timer(self.next_probe)
        self.batch = LatencyAwareBatch(batch_size, max_age, idle_gap=idle_gap)
        self.fanout = Fanout()
        for name in subscribers:
            self.fanout.subscribe(name, buffer, window, permanent=True)
            self.watch(name)
        self.totals = {"messages": 0, "batches": 0, "completed": 0, "failed": 0, "retried": 0, "deferred": 0, "fenced": 0}

    def handle(self, message: Any) -> Any:
        if isinstance(message, Complete):
            if not isinstance(message.outcomes, tuple):
                raise BadRequest("Complete.outcomes must be a tuple of JobOutcome")
            outcomes = [check_outcome(o) for o in message.outcomes]
            self.totals["messages"] += 1
            self.batch.add(outcomes, self.clock(), self.defer())
            self._flush_if_due()
            return None
        if isinstance(message, Written):
            if not isinstance(message.result, WriteResult):
                raise BadRequest("Written.result must be a WriteResult")
            self._published(message.result)
            return None
        if isinstance(message, Flush):
            written = self.flush()
            if self.outage.active:
                raise DatabaseWaiting(self.name, self.outage.last_error)
            return written
        if isinstance(message, Subscribe):
            validate_name(message.name, "Subscribe.name")
            self.fanout.subscribe(message.name, message.buffer, message.window)
            self.watch(message.name)
            return None
        if isinstance(message, Unsubscribe):
            validate_name(message.name, "Unsubscribe.name")
            if self.fanout.remove(message.name):
                self.unwatch(message.name)
            return None
        if isinstance(message, Ack):
            if not isinstance(message.subscriber, str) or isinstance(message.seq, bool) or not isinstance(message.seq, int):
                raise BadRequest("Ack needs a subscriber name and an integer seq")
            self._deliver(self.fanout.ack(message.subscriber, message.seq))
            return None
        if isinstance(message, Down):
            if self.fanout.down(message.name):
                log.warning("%s: subscriber %s is gone (%s); no longer publishing to it", self.name, message.name, message.reason)
            return None
        if isinstance(message, CompleterStats):
            return {
                **self.totals, "buffered": len(self.batch.outcomes), "subscribers": self.fanout.stats(),
                "waiting_for_database": self.outage.active,
            }  # fmt: skip
        return super().handle(message)

    def _flush_if_due(self) -> None:
        if self.outage.active:
            self.arm_timer(self.retry_at)  # the retry timer writes them
        elif self.batch.due(self.clock()):
            self.flush()
        else:
            deadline = self.batch.deadline()
            if deadline is not None:
                self.arm_timer(deadline)

    def on_tick(self, now: float) -> float | None:
        if self.outage.active:
            if now < self.retry_at:
                return self.retry_at
            if self.batch.outcomes:
                self.flush()
            else:
                self.probe(now)
            return self.retry_at if self.outage.active else self._next_wakeup()
        if self.batch.due(now):
            self.flush()
        elif now >= self.next_probe and not self.batch.outcomes:
            self.probe(now)
        return self.retry_at if self.outage.active else self._next_wakeup()

    def _next_wakeup(self) -> float:
        deadline = self.batch.deadline()
        return self.next_probe if deadline is None else min(deadline, self.next_probe)

    def probe(self, now: float) -> None:
        """One round trip when there is nothing to write: an outage shows in the tree, and the
        end of one too, without waiting for an outcome to fail or succeed."""
        self.next_probe = now + self.probe_interval
        try:
            if self.outage.active:
                self.database.reopen()
            self.database.ping()
        except Exception as exc:  # noqa: BLE001 - outages are waited out, anything else crashes
            self.retry_at = self.outage.away(now, exc, log, self.name, "")
            self.report_status(WAITING)
            self.arm_timer(self.retry_at)
            return
        if self.outage.active:
            log.warning("%s: the database is back after %.1f s", self.name, self.outage.recovered(now))
            self.report_status(None)

    def flush(self) -> int:
        """Write what is buffered now. While the database is away the outcomes stay buffered
        (the workers' requests unanswered, so they hold back) and the write is retried with
        backoff; nothing crashes, nothing is dropped."""
        outcomes, waiters = self.batch.take()
        if not outcomes:
            return 0
        try:
            if self.outage.active:
                self.database.reopen()
            result = self.store.write_outcomes(outcomes)
        except Exception as exc:  # noqa: BLE001 - outages are waited out, anything else crashes
            now = self.clock()
            self.retry_at = self.outage.away(now, exc, log, self.name, f"holding {len(outcomes)} outcomes")
            self.batch.put_back(outcomes, waiters, now)
            self.report_status(WAITING)
            self.arm_timer(self.retry_at)
            return 0
        if self.outage.active:
            lasted = self.outage.recovered(self.clock())
            log.warning("%s: the database is back after %.1f s", self.name, lasted)
            self.report_status(None)
        for waiter in waiters:
            self.reply(waiter, len(outcomes))
        self._published(result)
        return len(outcomes)

    def _published(self, result: WriteResult) -> None:
        """Count a written batch (ours, or one an idle worker wrote itself) and publish it."""
        self._count(result)
        finished = (
            [FinishedJob(i, "completed") for i in result.completed]
            + [FinishedJob(i, "failed") for i in result.failed]
            + [FinishedJob(i, "retried") for i in result.retried]
        )
        if finished:
            self._deliver(self.fanout.publish(finished))

    def _count(self, result: WriteResult) -> None:
        self.totals["batches"] += 1
        self.totals["completed"] += len(result.completed)
        self.totals["failed"] += len(result.failed)
        self.totals["retried"] += len(result.retried)
        self.totals["deferred"] += len(result.deferred)
        self.totals["fenced"] += result.fenced
        if result.fenced:
            log.info("%s: %d outcomes fenced off (their jobs were rescued from a dead worker)", self.name, result.fenced)

    def _deliver(self, deliveries: list) -> None:
        for name, message in deliveries:
            sub = self.fanout.subscribers.get(name)
            if sub is not None and sub.permanent and name not in self._watched:
                self.watch(name)  # re-arm the one-shot watch of a permanent subscriber
            self.tell(name, message)

    def terminate(self, reason: str) -> None:
        try:
            written = self.flush()
            if written:
                log.info("%s: flushed %d outcomes on stop", self.name, written)
            elif self.batch.outcomes:
                log.warning("%s: %d outcomes not written at stop (the database is away); their workers' rescue redoes them", self.name, len(self.batch.outcomes))
        finally:
            self.database.close()


class Subscriber(Server):
    """Base for actors that receive finished jobs: it acknowledges each delivery for you.

    Override `on_jobs(jobs, dropped)`. List the subscriber in the completer's `subscribers`
    (and start it before the completer), or send the completer `Subscribe(name)`."""

    completer = "completer"

    def handle(self, message: Any) -> Any:
        from actors.jobs.messages import JobsFinished

        if isinstance(message, JobsFinished):
            try:
                self.on_jobs(message.jobs, message.dropped)
            finally:
                self.tell(self.completer, Ack(self.name, message.seq))
            return None
        return super().handle(message)

    def on_jobs(self, jobs: tuple[FinishedJob, ...], dropped: int) -> None:
        pass
