"""docs/design.md story 3: exactly one projector applies events, across nodes, through failures.

Two nodes (two runtimes, each its own actor system) run the job-statistics projector against
the same database. Only the holder of the projection's advisory lock applies events; the other
waits. We SIGKILL the active node's projector: the standby takes over within its retry interval,
continues from the checkpoint, and the read model ends equal to a replay from scratch.

Run: python examples/projector_failover.py [--schema NAME]   (DATABASE_URL, or an embedded PostgreSQL;
the schema, example_projector by default, is dropped on the next run only if this example made it)
"""

from __future__ import annotations

import random
import time

from rich.console import Console

from _scratch import scratch_database

from actors.projector import ProjectorStatus, projector_spec, read_job_stats, rebuild, status
from actors.stores.database import Database
from actors.stores.events import PgEventStore
from actors.stores.rows import NewEvent
from supervision import Runtime, SupervisorSpec


def events(count: int) -> list[NewEvent]:
    kinds = ("email", "resize", "report")
    return [NewEvent("job.completed", {"kind": random.choice(kinds), "latency_ms": random.expovariate(1 / 30)}) for _ in range(count)]


def _exact(stats):
    """Everything but the mean, whose float sum depends on the order of additions."""
    return (stats.kind, stats.completed, stats.failed, stats.retried, stats.rescued, stats.p50_ms, stats.p95_ms, stats.p99_ms, stats.max_ms)


def main() -> int:
    console = Console()
    handle = scratch_database("examples/projector_failover.py", "example_projector")
    with Database(handle.config) as database:
        store = PgEventStore(database)
        store.append(events(2000))
        nodes = {}
        for node in ("node-a", "node-b"):
            rt = Runtime("multiprocTCPBase", log_level="CRITICAL")
            nodes[node] = rt.start(SupervisorSpec("app", children=[projector_spec(handle.config, "job_stats", node=node, retry_interval=0.1)]))
        while status(database, ["job_stats"])[0].lag:
            time.sleep(0.05)
        active = status(database, ["job_stats"])[0].holder
        standby = next(n for n in nodes if n != active)
        console.print(f"{active} applies the projection; {standby} waits for the lock")
        store.append(events(1000))
        started = time.monotonic()
        nodes.pop(active).crash()  # every process of that node SIGKILLed at once
        while status(database, ["job_stats"])[0].holder != standby:
            time.sleep(0.002)
        console.print(f"every process of {active} SIGKILLed at once: {standby} took over the projection {(time.monotonic() - started) * 1000:.0f} ms later")
        while status(database, ["job_stats"])[0].lag:
            time.sleep(0.05)
        after = nodes[standby].ask("projector-job_stats", ProjectorStatus())
        console.print(f"{standby} caught up: it applied {after['applied']:,} events and stands at position {after['position']:,}")
        with database.connection() as conn:
            live = read_job_stats(conn)
            conn.commit()
        for rt in nodes.values():
            rt.stop()
        rebuild(database, "job_stats")
        with database.connection() as conn:
            replayed = read_job_stats(conn)
            conn.commit()
        same = [_exact(s) for s in live] == [_exact(s) for s in replayed]
        jobs = sum(s.completed for s in live)
        console.print(
            f"the read model after the failover ({jobs:,} jobs) "
            + ("equals a replay of every event from scratch: no event was applied twice or skipped" if same
               else "DIFFERS FROM a replay of every event from scratch"), soft_wrap=False,
        )  # fmt: skip
    handle.close()
    return 0 if same and jobs == 3000 else 1


if __name__ == "__main__":
    raise SystemExit(main())
