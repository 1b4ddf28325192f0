"""What the job operations cost the claim path, next to finished history in the table.

In one run, on the same PostgreSQL, with `--history` finished jobs in the table:
(a) one claim of 100 (rolled back), with the claim that consults job_queue_pauses against the
    same claim without that check (the statement before issue 15), alternating call by call;
    and claim 100 + complete the batch (the store's statements, no actors), in interleaved rounds;
(b) the same claim loop while `JobOps.prune` deletes the history (1000 per transaction) in
    another thread, at full speed and with 0.05 s between batches, against the loop with
    nothing else running;
(c) the prune's rate: finished rows deleted per second.
Each figure is the median of the rounds.

Goals: (a) a claim <= 1.1x the time, the loop >= 0.9x; (b) >= 0.8x at full speed (it shares 2 cores with the claims), >= 0.9x with pauses.

Usage: python -m benchmarks.job_ops [--dsn URL] [--quick] [--history 1000000]
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid

from actors.jobs.ops import JobOps
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.jobs import PgJobStore
from actors.stores.migrate import Migrator
from actors.stores.processes import PgProcessStore
from actors.stores.rows import ClaimedJob, JobOutcome, NewJob
from actors.stores.queries import load
from benchmarks.common import Report, database_url, median, rate

#: the claim statement as it was before the pause check (jobs.sql at bea8f64)
CLAIM_BEFORE = """
WITH picked AS (
    SELECT id FROM jobs
    WHERE state = 'available' AND queue = %(queue)s AND run_at <= now()
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs AS j
SET state = 'running', attempt = j.attempt + 1, claimed_at = now(), claimed_by = %(process)s
FROM picked
WHERE j.id = picked.id
RETURNING j.id, j.queue, j.kind, j.payload, j.priority, j.attempt, j.max_attempts, j.run_at
"""


def claim_loop(database: Database, jobs: int, before: bool) -> float:
    """Enqueue `jobs`, then claim 100 and complete them until none is left: jobs/s."""
    store = PgJobStore(database)
    store.insert([NewJob("noop") for _ in range(jobs)])
    process = PgProcessStore(database).register("bench", ttl=600)
    done = 0
    started = time.perf_counter()
    while True:
        if before:
            with database.transaction() as conn:
                rows = conn.execute(CLAIM_BEFORE, {"queue": "default", "process": process.id, "limit": 100}).fetchall()
            claimed = [ClaimedJob.from_row(r) for r in rows]
        else:
            claimed = store.claim("default", process.id, 100)
        if not claimed:
            break
        now = time.time()
        store.write_outcomes([JobOutcome(j.id, process.id, j.attempt, "completed", now) for j in claimed])
        done += len(claimed)
    elapsed = time.perf_counter() - started
    PgProcessStore(database).deregister(process.id)
    return rate(done, elapsed)


def claim_latencies(database: Database, calls: int) -> tuple[list[float], list[float]]:
    """Seconds per claim of 100 (rolled back, so the table stays as it is), the two claims
    alternating call by call: (with the pause check, without it)."""
    PgJobStore(database).copy_in([NewJob("noop") for _ in range(20_000)])
    with database.dedicated() as conn:
        conn.execute("VACUUM ANALYZE jobs")
    process = PgProcessStore(database).register("bench", ttl=600)
    claim = load("jobs.sql")["claim"]
    with_check, without = [], []
    params = {"queue": "default", "process": process.id, "limit": 100}
    with database.connection() as conn:
        for call in range(calls * 2):
            before = call % 2 == (call // 2) % 2  # ABBA ABBA...: no variant always goes first
            started = time.perf_counter()
            rows = conn.execute(CLAIM_BEFORE if before else claim, params).fetchall()
            (without if before else with_check).append(time.perf_counter() - started)
            assert len(rows) == 100
            conn.rollback()
        conn.execute("DELETE FROM jobs WHERE state = 'available'")
        conn.commit()
    return with_check, without


def load_history(database: Database, history: int) -> None:
    store = PgJobStore(database)
    for start in range(0, history, 100_000):
        store.copy_in([NewJob("old") for _ in range(min(100_000, history - start))], state="completed")
    with database.dedicated() as conn:
        conn.execute("UPDATE jobs SET finished_at = now() - interval '30 days', created_at = now() - interval '30 days'")
        conn.execute("VACUUM ANALYZE jobs")


def run(dsn: str, quick: bool = False, history: int = 1_000_000, parts: str = "ab") -> Report:
    report = Report("job operations on the claim path")
    jobs = 5_000 if quick else 20_000
    rounds = 1 if quick else 3
    history = min(history, 100_000) if quick else history
    config = DatabaseConfig(dsn, f"bench_ops_{uuid.uuid4().hex[:6]}", pool_max=8)
    database = Database(config)
    try:
        Migrator(database).apply()
        load_history(database, history)
        if "a" in parts:
            with_check, without = claim_latencies(database, 100 if quick else 400)
            report.add(
                f"(a) one claim of 100 with the pause check, {history:,} finished rows", median(with_check) * 1000,
                median(without) * 1000, "ms", "the claim without it", "<= 1.1x", higher_is_better=False,
            )  # fmt: skip
            with_loop, without_loop = [], []
            for round_ in range(rounds):  # ABAB..., then BABA: neither always goes first
                for before in (True, False) if round_ % 2 == 0 else (False, True):
                    (without_loop if before else with_loop).append(claim_loop(database, jobs, before=before))
            report.add(
                f"(a) claim + complete with the pause check, {history:,} finished rows", median(with_loop), median(without_loop),
                "jobs/s", "the claim without it", ">= 0.9x",
            )  # fmt: skip
        if "b" not in parts:
            return report
        for pause, goal in ((0.0, ">= 0.8x"), (0.05, ">= 0.9x")):
            idle, pruning, prune_rates = [], [], []
            for round_ in range(rounds):
                deleted: list[float] = []

                def prune() -> None:
                    started = time.perf_counter()
                    with JobOps(config) as ops:
                        count = ops.prune(86400, batch=1000, pause=pause)
                    deleted.append(rate(count, time.perf_counter() - started))

                if round_ % 2 == 1:
                    idle.append(claim_loop(database, jobs, before=False))
                pruner = threading.Thread(target=prune)
                pruner.start()
                pruning.append(claim_loop(database, jobs, before=False))
                pruner.join()
                prune_rates.append(deleted[0])
                load_history(database, history)  # the same footing for the next round
                if round_ % 2 == 0:
                    idle.append(claim_loop(database, jobs, before=False))
            report.add(
                f"(b) claim + complete while a prune deletes the history, {pause:g} s between batches", median(pruning),
                median(idle), "jobs/s", "with nothing else running", goal,
            )  # fmt: skip
            report.add(f"(c) prune, 1000 rows per transaction, {pause:g} s between batches", median(prune_rates), None, "rows/s")
        report.notes.append(f"{jobs:,} jobs per measurement, median of {rounds} interleaved rounds, store level (no actors)")
    finally:
        database.drop_schema()
        database.close()
    return report


def main(argv: list[str] | None = None) -> list[Report]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", help="PostgreSQL URL (default: $DATABASE_URL, else an embedded server)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--history", type=int, default=1_000_000, help="finished jobs in the table")
    parser.add_argument("--parts", default="ab", help="which measurements: a (claim), b (prune), or ab")
    args = parser.parse_args(argv)
    with database_url(args.dsn) as dsn:
        report = run(dsn, args.quick, args.history, args.parts)
    report.emit("job_ops")
    return [report]


if __name__ == "__main__":
    main()
