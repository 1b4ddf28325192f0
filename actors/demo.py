"""`thespian-otp demo`: the whole tree on a real PostgreSQL, with faults, and an audit at the end.

It starts the limiter, an audit subscriber, the job system (worker pool, completer, rescuer) and
the job-statistics projector under supervisors; enqueues jobs with a progress bar; SIGKILLs a
worker process and the limiter on the way; then prints the supervision tree with its restart
counts, the job statistics from the projection, and what an SQL audit found (nothing lost,
nothing completed twice).
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from actors.tables import FittedTable, table

from actors.jobs import Subscriber, jobs_tree, new_job
from actors.limiter import Limit, LimiterServer
from actors.projector import projector_spec, read_job_stats, status
from actors.stores.database import Database
from actors.stores.migrate import Migrator
from actors.stores.scratch import reset_scratch_schema
from actors.stores.setup import DatabaseHandle
from supervision import ChildSpec, Runtime, SupervisorSpec

KINDS = ("demo.thumbnail", "demo.email", "demo.report", "demo.upload")
AUDIT_SQL = """
SELECT
  (SELECT count(*) FROM jobs) AS enqueued,
  (SELECT count(*) FROM jobs WHERE state = 'completed') AS completed,
  (SELECT count(*) FROM jobs WHERE state = 'failed') AS failed,
  (SELECT count(*) FROM jobs WHERE state NOT IN ('completed', 'failed')) AS unfinished,
  (SELECT count(*) FROM (SELECT data->>'id' FROM events WHERE type = 'job.completed'
                         GROUP BY 1 HAVING count(*) > 1) AS d) AS completed_twice,
  (SELECT count(*) FROM jobs j WHERE state = 'completed' AND NOT EXISTS
     (SELECT 1 FROM events e WHERE e.type = 'job.completed' AND (e.data->>'id')::bigint = j.id)) AS no_event,
  (SELECT count(*) FROM jobs WHERE state = 'running' AND claimed_by NOT IN (SELECT id FROM processes)) AS stuck,
  (SELECT coalesce(sum(jsonb_array_length(errors)), 0) FROM jobs WHERE state = 'completed') AS retried_then_completed
"""


class Audit(Subscriber):
    """Counts the finished jobs the completer publishes (it is stopped after the completer)."""

    def init(self) -> None:
        self.seen = 0
        self.dropped = 0

    def on_jobs(self, jobs, dropped) -> None:
        self.seen += len(jobs)
        self.dropped += dropped

    def handle(self, message: Any) -> Any:
        if message == "count":
            return {"seen": self.seen, "dropped": self.dropped}
        return super().handle(message)


def demo_tree(handle: DatabaseHandle, workers: int) -> SupervisorSpec:
    config = handle.config
    return SupervisorSpec(
        "demo",
        strategy="one_for_one",
        intensity=10,
        period=10.0,
        children=[
            ChildSpec("limiter", LimiterServer, kwargs={"limits": {"images": Limit(4)}, "default": Limit(50)}),
            ChildSpec("audit", Audit, shutdown=1.0),
            jobs_tree(
                config, handlers=["actors.demo_jobs"], workers=workers, heartbeat_ttl=2.0, poll_interval=0.5, batch=25,
                subscribers=["audit"],
            ),  # fmt: skip
            projector_spec(config, "job_stats", lock_check_interval=0.5, retry_interval=0.5),
        ],
    )


def _jobs(count: int) -> list:
    jobs = []
    for i in range(count):
        kind = KINDS[3] if i % 100 == 99 else KINDS[i % 3]
        payload = {"n": i} if kind != "demo.upload" else {"bucket": f"b{i}"}
        jobs.append(new_job(kind, payload, priority=1 if kind == "demo.email" else 0))
    return jobs


def run_demo(
    console: Console,
    handle: DatabaseHandle,
    *,
    jobs: int = 3000,
    workers: int = 4,
    base: str = "multiprocTCPBase",
    hold: float = 0.0,
    name: str | None = "demo",
    admin_port: int | None = None,
    projection_wait: float = 20.0,
) -> int:
    started = time.monotonic()
    database = Database(handle.config)
    reset_scratch_schema(database, "thespian-otp demo")  # refuses a schema the demo did not make
    with database:
        Migrator(database).apply()
    console.print(f"[bold]database[/]: {handle.source}, schema {handle.config.schema}")
    import actors.demo_jobs  # noqa: F401 - registers the kinds, so enqueue can check them

    tcp = base == "multiprocTCPBase"
    runtime = Runtime(base, log_level="CRITICAL", name=name if tcp else None, admin_port=admin_port if tcp else None)
    with runtime as rt, database:
        rt.start(demo_tree(handle, workers))
        console.print(f"[bold]started[/] {sum(1 for _ in rt.tree().walk())} actors (runtime [cyan]{name}[/]); enqueueing {jobs:,} jobs")
        batch = _jobs(jobs)
        with _progress(console) as bar:
            task = bar.add_task("enqueue", total=jobs)
            for start in range(0, jobs, 500):
                rt.enqueue_many(batch[start : start + 500])
                bar.update(task, completed=min(jobs, start + 500))
            work = bar.add_task("finish", total=jobs)
            # worker-2 is the second of the pool: with --workers 1 the only worker is the victim
            faults = [(0.3, f"worker-{min(2, workers)}"), (0.6, "limiter")]
            while True:
                done = _finished(database)
                bar.update(work, completed=done)
                if faults and done >= faults[0][0] * jobs:
                    _, victim = faults.pop(0)
                    pid = rt.kill(victim)
                    bar.console.print(f"  [red]SIGKILL[/] {victim} (pid {pid}) with {done:,} of {jobs:,} jobs done")
                if done >= jobs:
                    break
                time.sleep(0.05)
        behind = _wait_projection(database, projection_wait)
        console.print(rt.tree().render(show_system=False))
        console.print(_stats_table(database))
        if behind:
            # it reads only below the oldest running transaction of the whole database
            console.print(
                f"[yellow]the projection is still {behind:,} events behind[/]: a long transaction elsewhere in "
                "this database holds back what it may read; the table above is not complete yet"
            )
        audit = _audit(database)
        seen = rt.ask("audit", "count")
        ok = audit["unfinished"] == 0 and audit["completed_twice"] == 0 and audit["no_event"] == 0 and audit["stuck"] == 0
        colour = "green" if ok else "red"
        console.print(
            f"[{colour}]{'nothing lost' if ok else 'PROBLEM'}[/]: {audit['enqueued']:,} jobs enqueued, "
            f"{audit['completed']:,} completed once each, {audit['failed']:,} failed with their "
            f"error; {audit['unfinished']} unfinished, {audit['completed_twice']} completed twice, "
            f"{audit['stuck']} stuck (checked with SQL); the audit subscriber got "
            f"{seen['seen']:,} notices",
            soft_wrap=False,
        )
        if hold > 0:
            console.print(
                f"holding the system for {hold:g} s: try `thespian-otp tree --name {name}` or "
                f"`thespian-otp observer --name {name}` in another terminal"
            )
            _trickle(rt, hold)
    console.print(f"done in {time.monotonic() - started:.1f} s; every actor stopped in order, no process left behind")
    schema = handle.config.schema
    console.print(
        f"the demo's jobs and events stay in schema {schema} until its next run: "
        f"`thespian-otp jobs --schema {schema}`, `thespian-otp projections status --schema {schema}`"
    )
    return 0 if ok else 1


def _trickle(rt: Runtime, hold: float, per_second: int = 20) -> None:
    """While holding, a few jobs a second (the last of each batch, a demo.upload, fails), so live
    views show the jobs and the projection move; 20/s is about 2% of what 4 workers finish."""
    deadline = time.monotonic() + hold
    batch = _jobs(100)[-per_second:]
    while time.monotonic() < deadline:
        rt.enqueue_many(batch)
        time.sleep(max(0.0, min(1.0, deadline - time.monotonic())))


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:>8}"), BarColumn(bar_width=30), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )


def _finished(database: Database) -> int:
    with database.connection() as conn:
        row = conn.execute("SELECT count(*) AS n FROM jobs WHERE state IN ('completed', 'failed')").fetchone()
        conn.commit()
    return row["n"]


def _wait_projection(database: Database, timeout: float = 20.0) -> int:
    """Wait for the projection to apply every event; return how many it still lacks."""
    deadline = time.monotonic() + timeout
    while (lag := status(database, ["job_stats"])[0].lag) > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    return lag


def _audit(database: Database) -> dict:
    with database.connection() as conn:
        row = conn.execute(AUDIT_SQL).fetchone()
        conn.commit()
    return dict(row)


def _stats_table(database: Database) -> FittedTable:
    with database.connection() as conn:
        stats = read_job_stats(conn)
        conn.commit()
    stats_table = table("kind", "done", "failed", "retried", "rescued", "p50 ms", "p99 ms", title="job statistics (projection)")
    for row in stats:
        stats_table.add_row(
            row.kind,
            f"{row.completed:,}",
            f"{row.failed:,}",
            f"{row.retried:,}",
            f"{row.rescued:,}",
            "-" if row.p50_ms is None else f"<={row.p50_ms:,.0f}",
            "-" if row.p99_ms is None else f"<={row.p99_ms:,.0f}",
        )
    return stats_table
