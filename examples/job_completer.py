"""docs/design.md story 4: a completer must never hang at shutdown because of a subscriber.

Jobs run on four worker processes; the completer writes their outcomes in batches (one
statement per batch) and publishes finished jobs to subscribers. One subscriber stalls for
good, another keeps up. We stop the whole tree in the middle of the load: it stops within its
shutdown budget (the stalled subscriber is killed after its timeout; the completer never waits
for it), and an SQL audit shows every finished job completed exactly once.

Run: python examples/job_completer.py [--schema NAME]   (DATABASE_URL, or an embedded PostgreSQL;
the schema, example_completer by default, is dropped on the next run only if this example made it)
"""

from __future__ import annotations

import time

from rich.console import Console

import _example_jobs  # noqa: F401 - registers the kinds in this process
from _scratch import scratch_database
from actors.jobs import Subscriber, jobs_tree, new_job
from actors.stores.database import Database
from supervision import ChildSpec, Runtime, SupervisorSpec


class Tally(Subscriber):
    def init(self):
        self.finished = 0

    def on_jobs(self, jobs, dropped):
        self.finished += len(jobs)

    def handle(self, message):
        if message == "count":
            return self.finished
        return super().handle(message)


class Stalled(Subscriber):
    """Stops reading forever: never acknowledges, ignores its stop request."""

    def on_jobs(self, jobs, dropped):
        time.sleep(3600)


def main() -> int:
    console = Console()
    handle = scratch_database("examples/job_completer.py", "example_completer")
    database = Database(handle.config)
    spec = SupervisorSpec(
        "app",
        children=[
            ChildSpec("tally", Tally),
            ChildSpec("stalled", Stalled, shutdown=0.5),  # started before the completer: stopped after it
            jobs_tree(handle.config, handlers=["_example_jobs"], workers=4, subscribers=["tally", "stalled"]),
        ],
    )
    rt = Runtime("multiprocTCPBase", log_level="CRITICAL").start(spec)
    rt.enqueue_many([new_job("resize" if i % 2 else "notify", {"n": i}) for i in range(4000)])
    with database:
        while _count(database, "completed") < 1000:
            time.sleep(0.05)
        done, told = _count(database, "completed"), rt.ask("tally", "count")
        console.print(f"of 4,000 jobs, {done:,} had completed; the tally subscriber had been told of {told:,} finished attempts")
        budget = rt.shutdown_budget
        started = time.monotonic()
        rt.stop()  # under load, with a stalled subscriber
        took = time.monotonic() - started
        console.print(
            f"stopped the whole tree under load in {took:.2f} s, within its shutdown budget of {budget:.1f} s, "
            "although one subscriber had stopped reading for good", soft_wrap=False,
        )  # fmt: skip
        with database.connection() as conn:
            audit = conn.execute(
                "SELECT (SELECT count(*) FROM jobs WHERE state = 'completed') AS completed,"
                " (SELECT count(*) FROM jobs WHERE state = 'running') AS running,"
                " (SELECT count(*) FROM (SELECT data->>'id' FROM events WHERE type = 'job.completed'"
                "   GROUP BY 1 HAVING count(*) > 1) d) AS twice"
            ).fetchone()
            conn.commit()
    console.print(
        f"SQL audit: {audit['completed']:,} jobs completed, each exactly once ({audit['twice']} twice); "
        f"{audit['running']} left running; the unfinished ones wait, available, for the next start",
        soft_wrap=False,
    )
    handle.close()
    return 0 if took <= budget and audit["twice"] == 0 and audit["running"] == 0 else 1


def _count(database: Database, state: str) -> int:
    with database.connection() as conn:
        row = conn.execute("SELECT count(*) AS n FROM jobs WHERE state = %s", (state,)).fetchone()
        conn.commit()
    return row["n"]


if __name__ == "__main__":
    raise SystemExit(main())
