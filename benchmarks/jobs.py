"""Job throughput: ours end to end vs the raw SQL limit, and its own variants.

In one run, on the same PostgreSQL:
(a) the raw SQL limit: claim 100 with SKIP LOCKED, complete with one UPDATE per batch, no actors
    (and, for reference, the same with the completion event per job that our completer writes);
(b) our end-to-end no-op jobs/s with 1, 2 and 4 worker processes;
(c) other job queues: see `python -m benchmarks.peers` (same footing for every system);
(d) batched completion (one statement per batch) vs row-at-a-time;
(e) (b) with 1,000,000 finished jobs already in the table (claims must not slow down), against
    an empty table in the same rounds.
Each figure is the median of 3 rounds in which ours and its baseline run in turn.

Goals: (b) >= 0.5x (a); batched >= 10x row-at-a-time; (e) >= 0.9x (b).

Usage: python -m benchmarks.jobs [--dsn URL] [--quick] [--history 1000000]
"""

from __future__ import annotations

import argparse
import time
import uuid

import psycopg  # the raw baseline talks to the driver directly, on purpose

from actors.jobs import CompleterStats, jobs_tree
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.jobs import PgJobStore
from actors.stores.migrate import Migrator
from actors.stores.processes import PgProcessStore
from actors.stores.rows import JobOutcome, NewJob
from benchmarks.common import Report, database_url, median, rate, run_threads
from supervision import Runtime, SupervisorSpec

HANDLERS = ["benchmarks.job_handlers"]


def fresh(dsn: str, label: str) -> DatabaseConfig:
    config = DatabaseConfig(dsn, f"bench_{label}_{uuid.uuid4().hex[:6]}", pool_max=8)
    with Database(config) as database:
        Migrator(database).apply()
    return config


def drop(config: DatabaseConfig) -> None:
    Database(config).drop_schema()


def settle(database: Database) -> None:
    """The same footing for every run, ours and raw: statistics taken, dead rows of earlier
    rounds vacuumed, their WAL checkpointed."""
    with database.dedicated() as conn:
        conn.execute("VACUUM ANALYZE jobs")
        conn.execute("CHECKPOINT")


RAW_COMPLETE = "UPDATE jobs SET state = 'completed', finished_at = now() WHERE id = ANY(%s)"
RAW_COMPLETE_WITH_EVENTS = (  # what the issue asks of the completer: an event per job, same transaction
    "WITH done AS (UPDATE jobs SET state = 'completed', finished_at = now() WHERE id = ANY(%s)"
    " RETURNING id, kind, queue, attempt, created_at, claimed_at, finished_at)"
    " INSERT INTO events (type, data) SELECT 'job.completed', jsonb_build_object('id', id, 'kind', kind,"
    " 'queue', queue, 'attempt', attempt, 'wait_ms', 1000 * extract(epoch FROM claimed_at - created_at),"
    " 'latency_ms', 1000 * extract(epoch FROM finished_at - created_at)) FROM done"
)


def raw_sql(config: DatabaseConfig, jobs: int, threads: int, batch: int = 100, events: bool = False) -> float:
    """(a): claim `batch` with SKIP LOCKED, complete with one UPDATE, per connection per thread;
    with `events`, the completing statement also appends a completion event per job."""
    with Database(config) as database:
        settle(database)
        PgJobStore(database).copy_in([NewJob("noop") for _ in range(jobs)])
    claim = (
        "UPDATE jobs SET state = 'running', attempt = attempt + 1, claimed_at = now(), claimed_by = 0 "
        "WHERE id = ANY(ARRAY(SELECT id FROM jobs WHERE state = 'available' AND queue = 'default' "
        "ORDER BY priority DESC, run_at, id LIMIT %s FOR UPDATE SKIP LOCKED)) RETURNING id"
    )
    complete = RAW_COMPLETE_WITH_EVENTS if events else RAW_COMPLETE

    def loop() -> None:
        with psycopg.connect(config.dsn, autocommit=True, options=f"-c search_path={config.schema}") as conn:
            while True:
                with conn.transaction():
                    ids = [row[0] for row in conn.execute(claim, (batch,))]
                if not ids:
                    return
                conn.execute(complete, (ids,))

    return rate(jobs, run_threads(loop, threads))


def load_history(config: DatabaseConfig, history: int) -> str:
    """(e): `history` finished jobs in the table; returns the claim's plan with them in place."""
    with Database(config) as database:
        store = PgJobStore(database)
        step = 200_000
        for start in range(0, history, step):
            store.copy_in([NewJob("noop") for _ in range(min(step, history - start))], state="completed")
        with database.dedicated() as conn:
            conn.execute("VACUUM ANALYZE jobs")
        store.copy_in([NewJob("noop") for _ in range(100)])
        plan = store.explain_claim()
        with database.connection() as conn:
            conn.execute("DELETE FROM jobs WHERE state = 'available'")
            conn.commit()
        return plan


def ours(config: DatabaseConfig, jobs: int, workers: int) -> float:
    """(b)/(e): no-op jobs through the whole tree (workers, completer with events)."""
    with Database(config) as database:
        store = PgJobStore(database)
        settle(database)
        with Runtime("multiprocTCPBase", log_level="ERROR") as rt:
            rt.start(SupervisorSpec("bench", children=[jobs_tree(config, handlers=HANDLERS, workers=workers, batch=100, completer_batch=400)]))
            _wait_workers(rt, workers)
            started = time.perf_counter()
            store.copy_in([NewJob("noop") for _ in range(jobs)])
            with database.connection() as conn:
                conn.execute(f"NOTIFY {store.channel}, 'default'")
                conn.commit()
            # the completer's own count (polling the table would load the database we measure),
            # asked seldom until the end is near: each ask costs the actor system CPU too
            while (done := rt.ask("completer", CompleterStats())["completed"]) < jobs:
                time.sleep(0.05 if done < 0.9 * jobs else 0.005)
            elapsed = time.perf_counter() - started
        remaining = store.counts().get(("default", "available"), 0) + store.counts().get(("default", "running"), 0)
        if remaining:
            raise RuntimeError(f"{remaining} jobs were not completed")
        return rate(jobs, elapsed)


def _wait_workers(rt: Runtime, count: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        tree = rt.tree()
        if sum(1 for n in tree.walk() if n.name.startswith("worker-") and n.status == "running") >= count:
            return
        time.sleep(0.05)
    raise RuntimeError("the workers did not start")


def completion(config: DatabaseConfig, jobs: int) -> tuple[float, float]:
    """(d): write `jobs` outcomes in one batch vs one transaction each."""
    with Database(config) as database:
        store, processes = PgJobStore(database), PgProcessStore(database)
        results = []
        for batched in (True, False):
            store.copy_in([NewJob("noop") for _ in range(jobs)])
            process = processes.register("bench", ttl=600)
            claimed = store.claim("default", process.id, jobs)
            now = time.time()
            outcomes = [JobOutcome(j.id, process.id, j.attempt, "completed", now) for j in claimed]
            started = time.perf_counter()
            (store.write_outcomes if batched else store.write_one_by_one)(outcomes)
            results.append(rate(len(outcomes), time.perf_counter() - started))
        return results[0], results[1]


def run(dsn: str, quick: bool = False, history: int = 1_000_000) -> Report:
    report = Report("jobs (no-op handlers)")
    jobs = 4000 if quick else 20_000
    rounds = 1 if quick else 3
    history = min(history, 100_000) if quick else history
    for workers in (1, 2, 4):
        raw_config, ours_config = fresh(dsn, "raw"), fresh(dsn, "ours")
        raw_rates, event_rates, our_rates = [], [], []
        for _ in range(rounds):  # interleaved, so a slow moment of the machine hits each
            raw_rates.append(raw_sql(raw_config, jobs, workers))
            event_rates.append(raw_sql(raw_config, jobs, workers, events=True))
            our_rates.append(ours(ours_config, jobs, workers))
        drop(raw_config)
        drop(ours_config)
        measured = median(our_rates)
        report.add(f"(b) ours vs (a) raw SQL, {workers} worker(s)", measured, median(raw_rates), "jobs/s", "raw claim 100 + complete", ">= 0.5x")
        report.add(f"(b) ours vs raw SQL with completion events, {workers} worker(s)", measured, median(event_rates), "jobs/s", "raw + an event per job")
    config = fresh(dsn, "completion")
    batched, single = completion(config, 2000 if quick else 5000)
    drop(config)
    report.add("(d) batched completion vs row-at-a-time", batched, single, "outcomes/s", "one transaction per outcome", ">= 10x")
    big_config, empty_config = fresh(dsn, "history"), fresh(dsn, "empty")
    plan = load_history(big_config, history)
    big_rates, empty_rates = [], []
    for _ in range(rounds):
        empty_rates.append(ours(empty_config, jobs, 2))
        big_rates.append(ours(big_config, jobs, 2))
    drop(big_config)
    drop(empty_config)
    report.add(
        f"(e) ours with {history:,} finished jobs in the table, 2 workers", median(big_rates), median(empty_rates),
        "jobs/s", "the same with an empty table, same rounds", ">= 0.9x",
    )  # fmt: skip
    report.notes.append("claim plan with the finished jobs in place: " + " / ".join(line.strip() for line in plan.splitlines()))
    report.notes.append("other job queues (pgqueuer, Procrastinate) on equal terms: python -m benchmarks.peers")
    report.notes.append(
        f"{jobs:,} jobs per measurement, median of {rounds} interleaved rounds (ours and its baseline in turn); "
        "ours includes the completion events and the process heartbeats"
    )
    return report


def main(argv: list[str] | None = None) -> list[Report]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", help="PostgreSQL URL (default: $DATABASE_URL, else an embedded server)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--history", type=int, default=1_000_000, help="finished jobs for (e)")
    args = parser.parse_args(argv)
    with database_url(args.dsn) as dsn:
        report = run(dsn, args.quick, args.history)
    report.emit("jobs")
    return [report]


if __name__ == "__main__":
    main()
