"""The jobs service (`Enqueue` -> rows) and the pool manager (keeps N workers running)."""

from __future__ import annotations

import socket
from typing import Any

from actors.jobs.client import check_new_job, resolve_kinds
from actors.jobs.errors import BadJob
from actors.jobs.messages import DatabaseInfo, Enqueue
from actors.jobs.registry import import_handlers, known_kinds, lookup
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.job_ops import PgJobOps, insert_jobs, kind_defaults, own_transaction
from actors.stores.jobs import PgJobStore
from actors.stores.rows import NewJob
from supervision import Answer, Server, StartChild
from supervision.logs import logger

log = logger("actors.jobs.service")

#: The most jobs one `Enqueue` may carry (bigger batches: split them, or COPY).
MAX_BATCH = 50_000


class JobsService(Server):
    """Validates and inserts jobs; registered as "jobs" by `jobs_tree`. Validation repeats what
    the client checked: messages may come from anywhere."""

    def init(self, database: DatabaseConfig, handlers: tuple[str, ...] = (), check_kinds: bool = True, node: str | None = None) -> None:
        import_handlers(handlers)
        self.check_kinds = check_kinds
        self.database = Database(database).open()
        self.store = PgJobStore(self.database)
        # record the kinds this service handles: a process that did not import the handler
        # modules checks kinds, and takes their defaults, from there (issue 15)
        types = [lookup(kind) for kind in known_kinds()]
        PgJobOps(self.database).register_kinds([(t.kind, t.queue, t.max_attempts, t.path) for t in types], node or socket.gethostname())

    def handle(self, message: Any) -> Any:
        if isinstance(message, Enqueue):
            jobs = message.jobs
            if not isinstance(jobs, tuple) or not jobs:
                raise BadJob("Enqueue.jobs must be a non-empty tuple of NewJob")
            if len(jobs) > MAX_BATCH:
                raise BadJob(f"Enqueue takes at most {MAX_BATCH} jobs at once; got {len(jobs)}")
            checked = [self._check(job) for job in jobs]
            schema = self.database.config.schema
            with own_transaction(self.database) as cursor:
                resolved = resolve_kinds(checked, lambda: kind_defaults(cursor, None), self.check_kinds)
                return insert_jobs(cursor, schema, resolved)
        if isinstance(message, DatabaseInfo):
            return self.database.config
        return super().handle(message)

    def _check(self, job: Any) -> NewJob:
        if not isinstance(job, NewJob):
            raise BadJob(f"Enqueue.jobs holds a {type(job).__name__}, not a NewJob")
        return check_new_job(job)

    def terminate(self, reason: str) -> None:
        self.database.close()


class PoolManager(Server):
    """Starts `size` children of the simple_one_for_one supervisor `pool` (again after it restarts:
    put both under a rest_for_one supervisor, pool first)."""

    def init(self, pool: str = "workers", size: int = 4) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BadJob(f"the pool size must be an integer >= 0; got {size!r}")
        self.pool = pool
        self.size = size
        self.started: list[str] = []
        for _ in range(size):
            self.ask(pool, StartChild(), timeout=60.0, then=self._started)

    def _started(self, answer: Answer) -> None:
        self.started.append(answer.unwrap())

    def handle(self, message: Any) -> Any:
        if message == "workers":
            return tuple(self.started)
        return super().handle(message)
