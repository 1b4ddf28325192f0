"""The jobs service (`Enqueue` -> rows) and the pool manager (keeps N workers running)."""

from __future__ import annotations

import socket
from typing import Any

from actors.jobs.client import check_new_job, resolve_kinds
from actors.jobs.core import MAX_ENQUEUE_BYTES, MAX_PAYLOAD_BYTES
from actors.jobs.errors import BadJob, DatabaseWaiting
from actors.jobs.messages import DatabaseInfo, Enqueue
from actors.jobs.registry import import_handlers, known_kinds, lookup
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.errors import ConnectionLost, DataRejected, StoreError
from actors.stores.job_ops import PgJobOps, insert_jobs, kind_defaults, own_transaction
from actors.stores.outage import WAITING, Outage, is_outage
from actors.stores.jobs import PgJobStore
from actors.stores.rows import NewJob
from supervision import Answer, CountChildren, Server, StartChild
from supervision.logs import logger
from supervision.specs import validate_node

log = logger("actors.jobs.service")

#: The most jobs one `Enqueue` may carry (bigger batches: split them, or COPY).
MAX_BATCH = 50_000


class JobsService(Server):
    """Validates and inserts jobs; registered as "jobs-service" by `jobs_tree`. Validation
    repeats what the client checked: messages may come from anywhere. What PostgreSQL still
    refuses is a `BadJob` too, never a crash."""

    def init(
        self,
        database: DatabaseConfig,
        handlers: tuple[str, ...] = (),
        check_kinds: bool = True,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        max_enqueue_bytes: int = MAX_ENQUEUE_BYTES,
        probe_interval: float = 2.0,
        node: str | None = None,
    ) -> None:
        """`probe_interval`: seconds between checks that the database answers, so the tree
        shows an outage even while nobody enqueues. `node`: recorded with the kinds this
        service handles."""
        self.probe_interval = probe_interval
        self.node = validate_node(node, "JobsService.node") or socket.gethostname()
        self.kinds_recorded = False
        import_handlers(handlers)
        self.check_kinds = check_kinds
        self.max_payload_bytes = max_payload_bytes
        self.max_enqueue_bytes = max_enqueue_bytes
        self.database = Database(database)
        self.store = PgJobStore(self.database)
        self.outage = Outage()
        self.retry_at = 0.0
        self.arm_timer(self.clock())  # connect now (not at the first enqueue), without failing the start

    def on_tick(self, now: float) -> float | None:
        """Connect, and while the database is away probe it with backoff, so the service shows
        its state in the tree and is ready the moment the server is back."""
        try:
            if self.database.is_open and not self.outage.active:
                self.database.ping()
                return now + self.probe_interval
            self.database.reopen()
            self._record_kinds()
        except Exception as exc:  # noqa: BLE001
            self._away(exc)
            return self.retry_at
        self._back()
        return now + self.probe_interval

    def _record_kinds(self) -> None:
        """Record the kinds this service handles, once per start: a process that did not
        import the handler modules checks kinds, and takes their defaults, from there."""
        if self.kinds_recorded:
            return
        types = [lookup(kind) for kind in known_kinds()]
        try:
            PgJobOps(self.database).register_kinds([(t.kind, t.queue, t.max_attempts, t.path) for t in types], self.node)
        except StoreError as exc:
            if is_outage(exc):
                raise
            # an unmigrated schema: every enqueue says so (SchemaMissing); try again next connect
            log.warning("%s: could not record its job kinds: %s", self.name, exc)
            return
        self.kinds_recorded = True

    def _away(self, exc: BaseException) -> None:
        """Note an outage (anything else is raised again) and probe again with backoff."""
        self.retry_at = self.outage.away(self.clock(), exc, log, self.name, "enqueues fail with DatabaseWaiting until it is back")
        self.report_status(WAITING)
        self.arm_timer(self.retry_at)

    def _back(self) -> None:
        if self.outage.active:
            log.warning("%s: the database is back after %.1f s", self.name, self.outage.recovered(self.clock()))
        self.report_status(None)

    def handle(self, message: Any) -> Any:
        if isinstance(message, Enqueue):
            jobs = message.jobs
            if not isinstance(jobs, tuple) or not jobs:
                raise BadJob("Enqueue.jobs must be a non-empty tuple of NewJob")
            if len(jobs) > MAX_BATCH:
                raise BadJob(f"Enqueue takes at most {MAX_BATCH} jobs at once; got {len(jobs)}")
            checked = [self._check(job) for job in jobs]
            size = sum(job.size for job in checked)
            if size > self.max_enqueue_bytes:
                raise BadJob(f"one Enqueue may carry at most {self.max_enqueue_bytes:,} bytes of payloads; got {size:,}")
            if self.outage.active:
                if self.clock() < self.retry_at:
                    raise DatabaseWaiting(self.name, self.outage.last_error)
                self.on_tick(self.clock())
                if self.outage.active:
                    raise DatabaseWaiting(self.name, self.outage.last_error)
            try:
                schema = self.database.config.schema
                with own_transaction(self.database) as cursor:
                    resolved = resolve_kinds(checked, lambda: kind_defaults(cursor, None), self.check_kinds)
                    ids = insert_jobs(cursor, schema, resolved)
            except DataRejected as exc:
                raise BadJob(f"PostgreSQL refused a job of this batch, nothing was stored: {exc.problem}") from None
            except Exception as exc:  # noqa: BLE001 - an outage is a typed, retryable answer
                self._away(exc)
                # a dropped connection may have dropped it before or after the commit
                stored = "unknown" if isinstance(exc, ConnectionLost) else "no"
                raise DatabaseWaiting(self.name, self.outage.last_error, stored=stored) from None
            if self.outage.active:
                self._back()
            return ids
        if isinstance(message, DatabaseInfo):
            return self.database.config
        return super().handle(message)

    def _check(self, job: Any) -> NewJob:
        if not isinstance(job, NewJob):
            raise BadJob(f"Enqueue.jobs holds a {type(job).__name__}, not a NewJob")
        return check_new_job(job, self.max_payload_bytes)

    def terminate(self, reason: str) -> None:
        self.database.close()


class PoolManager(Server):
    """Keeps `size` children of the simple_one_for_one supervisor `pool` running (put both under
    a rest_for_one supervisor, pool first).

    It counts what the pool already runs before starting any: a restarted manager (the pool
    kept its workers) starts none, a restarted pool (its workers died with it) gets `size` again.
    A start that fails is retried after `retry_after` seconds instead of crashing the manager
    (a crash would restart it, and its restart would count against the tree's intensity)."""

    def init(self, pool: str = "workers", size: int = 4, retry_after: float = 1.0) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BadJob(f"the pool size must be an integer >= 0; got {size!r}")
        self.pool = pool
        self.size = size
        self.retry_after = retry_after
        self.started: list[str] = []
        self._top_up()

    def _top_up(self) -> None:
        self.ask(self.pool, CountChildren(), timeout=10.0, then=self._counted)

    def _counted(self, answer: Answer) -> None:
        if not answer.ok:
            log.warning("pool manager: cannot count the children of %s: %s; retrying in %g s", self.pool, answer.error.message, self.retry_after)
            self.send_after(self.retry_after, _TopUp())
            return
        # the pool handles our requests in order: a start asked before this count is in "specs"
        missing = self.size - answer.value["specs"]
        for _ in range(max(0, missing)):
            self.ask(self.pool, StartChild(), timeout=60.0, then=self._started)

    def _started(self, answer: Answer) -> None:
        if answer.ok:
            self.started.append(answer.value)
            return
        log.warning("pool manager: starting a worker in %s failed: %s; retrying in %g s", self.pool, answer.error.message, self.retry_after)
        self.send_after(self.retry_after, _TopUp())

    def handle(self, message: Any) -> Any:
        if isinstance(message, _TopUp):
            self._top_up()
            return None
        if message == "workers":
            return tuple(self.started)
        return super().handle(message)


class _TopUp:
    """Timer: count the pool's children again and start the missing ones."""
