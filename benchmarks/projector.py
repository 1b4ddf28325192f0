"""Projector cost: events/s folded by the projector vs folding the same events with raw SQL,
and how long a standby node takes over after the active one is SIGKILLed.

- ours: the JobStats projection under a projector actor (lock checks, batches of 500, the
  checkpoint in each batch's transaction), from an empty read model to lag 0;
- raw SQL: the same read model built by one set-based INSERT ... SELECT ... GROUP BY;
- the same batched fold in a plain loop (no actor, no lock), to show what the actor costs;
- the cost of one wake-up of a projection that wants 1 % of the log, at the start of the log and
  at the end of a long one (it must not grow with the unwanted tail behind its last event).

Usage: python -m benchmarks.projector [--dsn URL] [--quick]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid

from actors.projector import JobStats, Projection, ProjectorStatus, projector_spec
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.events import PgEventStore
from actors.stores.migrate import Migrator
from actors.stores.rows import Checkpoint, NewEvent
from benchmarks.common import Report, database_url, rate
from supervision import Runtime, SupervisorSpec

KINDS = ("email", "resize", "report", "sync", "noop")

RAW_FOLD = """
INSERT INTO job_stats (kind, completed, failed, retried, rescued, latency_count, latency_sum_ms, latency_max_ms)
SELECT data->>'kind',
       count(*) FILTER (WHERE type = 'job.completed'), count(*) FILTER (WHERE type = 'job.failed'),
       count(*) FILTER (WHERE type = 'job.retried'), count(*) FILTER (WHERE type = 'job.rescued'),
       count(*) FILTER (WHERE type <> 'job.retried'),
       coalesce(sum((data->>'latency_ms')::float8) FILTER (WHERE type <> 'job.retried'), 0),
       coalesce(max((data->>'latency_ms')::float8) FILTER (WHERE type <> 'job.retried'), 0)
FROM events WHERE type LIKE 'job.%%' GROUP BY 1;
INSERT INTO job_latency_buckets (kind, bucket, count)
SELECT data->>'kind', greatest(0, floor(log(2, greatest((data->>'latency_ms')::numeric, 1))))::int, count(*)
FROM events WHERE type LIKE 'job.%%' AND type <> 'job.retried' GROUP BY 1, 2;
"""


def make_events(config: DatabaseConfig, count: int) -> None:
    """`count` job events, appended in one transaction (so a projector sees them all at once)."""
    rng = random.Random(7)
    with Database(config) as database:
        store = PgEventStore(database)
        with database.transaction() as conn:
            for start in range(0, count, 5000):
                store.append(
                    [
                        NewEvent(
                            rng.choice(("job.completed",) * 8 + ("job.failed", "job.retried")),
                            {"id": start + i, "kind": rng.choice(KINDS), "latency_ms": rng.expovariate(1 / 40)},
                        )
                        for i in range(min(5000, count - start))
                    ],
                    conn=conn,
                )


class RareTicks(Projection):
    """Counts `rare.tick` events: 1 % of the log in the wake-up measurement."""

    name = "rare_ticks"
    event_types = ("rare.tick",)

    def setup(self, conn):
        conn.execute("CREATE TABLE IF NOT EXISTS rare_ticks (n bigint NOT NULL)")

    def reset(self, conn):
        conn.execute("TRUNCATE rare_ticks")

    def apply(self, conn, events):
        conn.execute("INSERT INTO rare_ticks VALUES (%s)", (len(events),))


def load_log(config: DatabaseConfig, count: int, wanted_every: int = 100) -> None:
    """`count` events, one `rare.tick` in every `wanted_every`, loaded with COPY."""
    with Database(config) as database, database.transaction() as conn, conn.cursor() as cursor:
        with cursor.copy("COPY events (type, data) FROM STDIN") as copy:
            for i in range(count):
                copy.write_row(("rare.tick" if i % wanted_every == 0 else "noise", "{}"))
    with Database(config) as database, database.dedicated() as conn:
        conn.execute("VACUUM ANALYZE events")


def wakeup_cost(dsn: str, log_size: int, rounds: int = 7) -> float:
    """Median seconds from the commit of one wanted event to its fold, with the projector caught
    up at the end of a log of `log_size` events (99 % of them unwanted)."""
    config = fresh(dsn, 0)
    try:
        load_log(config, log_size)
        spec = projector_spec(config, "benchmarks.projector:RareTicks", batch=500, poll_interval=1.0)
        with Runtime("multiprocTCPBase", log_level="ERROR") as rt, Database(config) as database:
            rt.start(SupervisorSpec("bench", children=[spec]))
            head = PgEventStore(database).head()
            while rt.ask("projector-rare_ticks", ProjectorStatus())["position"] < head:
                time.sleep(0.02)
            samples = []
            for _ in range(rounds):
                applied = rt.ask("projector-rare_ticks", ProjectorStatus())["applied"]
                PgEventStore(database).append([NewEvent("noise", {}) for _ in range(99)] + [NewEvent("rare.tick", {})])
                started = time.perf_counter()
                while rt.ask("projector-rare_ticks", ProjectorStatus())["applied"] == applied:
                    time.sleep(0.001)
                samples.append(time.perf_counter() - started)
            return statistics.median(samples)
    finally:
        Database(config).drop_schema()


def fresh(dsn: str, events: int) -> DatabaseConfig:
    config = DatabaseConfig(dsn, f"bench_proj_{uuid.uuid4().hex[:6]}")
    with Database(config) as database:
        Migrator(database).apply()
    if events:
        make_events(config, events)
    return config


def raw_sql(config: DatabaseConfig, events: int) -> float:
    with Database(config) as database, database.connection() as conn:
        JobStats().setup(conn)
        JobStats().reset(conn)
        conn.commit()
        started = time.perf_counter()
        conn.execute(RAW_FOLD)
        conn.commit()
        return rate(events, time.perf_counter() - started)


def plain_loop(config: DatabaseConfig, events: int, batch: int = 500) -> float:
    projection = JobStats()
    with Database(config) as database:
        store = PgEventStore(database)
        with database.transaction() as conn:
            projection.setup(conn)
            projection.reset(conn)
        started = time.perf_counter()
        checkpoint = Checkpoint()
        while True:
            with database.transaction() as conn:
                chunk = store.read_after(checkpoint, batch, projection.event_types, conn=conn)
                if not chunk:
                    break
                projection.apply(conn, chunk)
            checkpoint = chunk[-1].checkpoint
        return rate(events, time.perf_counter() - started)


def ours(dsn: str, events: int) -> float:
    """The projector started and idle (holding its lock, lag 0) on an empty schema; then the
    events arrive in one transaction: the clock runs from its commit to the last event folded."""
    config = fresh(dsn, 0)
    try:
        with Runtime("multiprocTCPBase", log_level="ERROR") as rt:
            rt.start(SupervisorSpec("bench", children=[projector_spec(config, "job_stats", batch=500)]))
            while not rt.ask("projector-job_stats", ProjectorStatus())["holding"]:
                time.sleep(0.01)
            make_events(config, events)
            started = time.perf_counter()
            # asked seldom until the end is near: each ask costs the actor system CPU too
            while (applied := rt.ask("projector-job_stats", ProjectorStatus())["applied"]) < events:
                time.sleep(0.05 if applied < 0.9 * events else 0.005)
            return rate(events, time.perf_counter() - started)
    finally:
        Database(config).drop_schema()


def failover(config: DatabaseConfig, rounds: int) -> list[float]:
    """Two runtimes in this process run the projector; SIGKILL the holder's process, time the takeover."""
    from actors.stores.projections import lock_holder

    samples = []
    with Database(config) as database:
        for _ in range(rounds):
            runtimes = []
            try:
                for node in ("a", "b"):
                    rt = Runtime("multiprocTCPBase", log_level="CRITICAL").start(
                        SupervisorSpec("bench", children=[projector_spec(config, "job_stats", node=f"node-{node}", retry_interval=0.1, lock_check_interval=0.1)])
                    )
                    runtimes.append(rt)
                holder = None
                while holder is None:
                    holder = lock_holder(database, "job_stats")
                    time.sleep(0.01)
                active = next(rt for rt in runtimes if rt.ask("projector-job_stats", ProjectorStatus())["holding"])
                started = time.perf_counter()
                active.kill("projector-job_stats-sup")  # the holder and its supervisor: a node's projector gone
                while True:
                    now = lock_holder(database, "job_stats")
                    if now is not None and now["pid"] != holder["pid"]:
                        break
                    time.sleep(0.002)
                samples.append(time.perf_counter() - started)
            finally:
                for rt in runtimes:
                    rt.stop()
    return samples


def run(dsn: str, quick: bool = False) -> Report:
    count = 20_000 if quick else 100_000
    rounds = 1 if quick else 3
    report = Report("projector (JobStats)")
    config = fresh(dsn, count)
    try:
        raws, loops, ourss = [], [], []
        for _ in range(rounds):  # interleaved, so a slow moment of the machine hits each
            raws.append(raw_sql(config, count))
            loops.append(plain_loop(config, count))
            ourss.append(ours(dsn, count))
        measured = statistics.median(ourss)
        report.add("events folded/s: projector vs raw SQL (one GROUP BY)", measured, statistics.median(raws), "events/s", "raw SQL fold", ">= 0.5x")
        report.add("events folded/s: projector vs the same batches in a plain loop", measured, statistics.median(loops), "events/s", "plain loop, no actor/lock")
        small, large = 1_000, (100_000 if quick else 1_000_000)
        starts, ends = [], []
        for _ in range(1 if quick else 2):
            starts.append(wakeup_cost(dsn, small))
            ends.append(wakeup_cost(dsn, large))
        report.add(
            f"one wake-up of a projection of 1 % of the log: after {large:,} events vs after {small:,}",
            statistics.median(ends) * 1000, statistics.median(starts) * 1000, "ms", f"after {small:,} events",
            "<= 1.5x", higher_is_better=False,
        )
        takeovers = failover(config, 3 if quick else 7)
        report.add("failover after SIGKILL of the holder (median)", statistics.median(takeovers) * 1000, None, "ms", higher_is_better=False)
        report.add("failover after SIGKILL of the holder (max)", max(takeovers) * 1000, None, "ms", higher_is_better=False)
        report.notes.append(
            f"{count:,} job events, median of {rounds} interleaved rounds; ours: from the commit of the events to the last "
            "one folded, the projector already running; retry_interval 0.1 s, lock_check_interval 0.1 s for the failover runs"
        )
    finally:
        Database(config).drop_schema()
    return report


def main(argv: list[str] | None = None) -> list[Report]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    with database_url(args.dsn) as dsn:
        report = run(dsn, args.quick)
    report.emit("projector")
    return [report]


if __name__ == "__main__":
    main()
