"""Our job path side by side with the other PostgreSQL job queues for Python, on the same server.

Every system gets the same footing:
- a database of its own, made fresh for each measurement, on the same server;
- its workers (OS processes) started first and idle, listening for work, outside the clock;
- N no-op jobs enqueued in bulk with the system's own bulk API; the clock runs from the start of
  that enqueue to the moment SQL shows the last job finished;
- interleaved rounds (each round measures every system at every worker count, the order
  rotated from round to round), a CHECKPOINT before each measurement, medians with min-max;
- latency at light load: one job every 10 ms into 2 running workers, enqueue -> claim and
  enqueue -> done taken by row triggers (`clock_timestamp()`) on the system's own job table.

Peers: pgqueuer and procrastinate (install with `pip install -e '.[bench]'`). A peer that is
not installed is skipped and said so. chancy and oban are not measured yet.

Usage: python -m benchmarks.peers [--dsn URL] [--jobs N] [--rounds R] [--workers 1,2,4] [--quick]
(default: an embedded PostgreSQL; writes benchmarks/results/peers.json)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from benchmarks.common import RESULTS, database_url, machine, percentile

ROOT = Path(__file__).resolve().parent.parent
HANDLERS = ["benchmarks.job_handlers"]


# --- one system under test ------------------------------------------------------------------


class System:
    """A job queue in a database of its own: install, start idle workers, enqueue, count done."""

    name = ""
    #: the job table and the SQL that the latency triggers hang on
    table = ""
    claimed_when = ""
    done_event = ""
    done_when = ""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def install(self) -> None:
        raise NotImplementedError

    def start(self, workers: int) -> None:
        raise NotImplementedError

    def enqueue(self, count: int) -> None:
        raise NotImplementedError

    def finished(self, conn: psycopg.Connection) -> int:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def install_triggers(self) -> None:
        """Record, per job, when it was inserted, claimed and finished (server clock)."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE public.bench_latency (job bigint PRIMARY KEY, enqueued timestamptz, claimed timestamptz, done timestamptz)"
            )
            conn.execute(
                "CREATE FUNCTION public.bench_enqueued() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "INSERT INTO public.bench_latency (job, enqueued) VALUES (NEW.id, clock_timestamp()); RETURN NULL; END $$"
            )
            conn.execute(
                "CREATE FUNCTION bench_claimed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "UPDATE public.bench_latency SET claimed = clock_timestamp() WHERE job = NEW.id AND claimed IS NULL; RETURN NULL; END $$"
            )
            conn.execute(
                "CREATE FUNCTION bench_done() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "UPDATE public.bench_latency SET done = clock_timestamp() WHERE job = OLD.id; RETURN NULL; END $$"
            )
            conn.execute(f"CREATE TRIGGER bench_enqueued AFTER INSERT ON {self.table} FOR EACH ROW EXECUTE FUNCTION bench_enqueued()")
            conn.execute(
                f"CREATE TRIGGER bench_claimed AFTER UPDATE ON {self.table} FOR EACH ROW WHEN ({self.claimed_when}) "
                "EXECUTE FUNCTION bench_claimed()"
            )
            when = f" WHEN ({self.done_when})" if self.done_when else ""
            conn.execute(
                f"CREATE TRIGGER bench_done AFTER {self.done_event} ON {self.table} FOR EACH ROW{when} EXECUTE FUNCTION bench_done()"
            )


class Ours(System):
    name = "thespian-otp"
    table = "thespian_otp.jobs"
    claimed_when = "NEW.state = 'running' AND OLD.state <> 'running'"
    done_event = "UPDATE"
    done_when = "NEW.state = 'completed' AND OLD.state <> 'completed'"

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        from actors.stores.config import DatabaseConfig

        self.config = DatabaseConfig(dsn)
        self.runtime: Any = None

    def install(self) -> None:
        from actors.stores.database import Database
        from actors.stores.migrate import Migrator

        with Database(self.config) as database:
            Migrator(database).apply()

    def start(self, workers: int) -> None:
        import benchmarks.job_handlers  # noqa: F401 - registers "noop" here, for enqueue
        from actors.jobs import jobs_tree
        from benchmarks.jobs import _wait_workers
        from supervision import Runtime, SupervisorSpec

        self.runtime = Runtime("multiprocTCPBase", log_level="ERROR").start(
            SupervisorSpec("bench", children=[jobs_tree(self.config, handlers=HANDLERS, workers=workers, batch=100, completer_batch=400)])
        )
        _wait_workers(self.runtime, workers)

    def enqueue(self, count: int) -> None:
        from actors.jobs import new_job

        for start in range(0, count, 20_000):
            self.runtime.enqueue_many([new_job("noop") for _ in range(min(20_000, count - start))], timeout=60)

    def finished(self, conn: psycopg.Connection) -> int:
        return conn.execute("SELECT count(*) FROM thespian_otp.jobs WHERE state = 'completed'").fetchone()[0]

    def stop(self) -> None:
        if self.runtime is not None:
            self.runtime.stop()
            self.runtime = None


class WorkerProcesses(System):
    """A peer whose workers run as `python -m benchmarks.peer_worker NAME DSN` processes."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.processes: list[subprocess.Popen] = []

    def start(self, workers: int) -> None:
        for _ in range(workers):
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.peer_worker", self.name, self.dsn],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
            )  # fmt: skip
            self.processes.append(proc)
        for proc in self.processes:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a {self.name} worker did not start (exit {proc.poll()})")
        time.sleep(0.5)  # "ready" is printed just before the worker's loop; let it reach LISTEN

    def stop(self) -> None:
        for proc in self.processes:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
        self.processes.clear()


class PgQueuer(WorkerProcesses):
    name = "pgqueuer"
    table = "pgqueuer"
    claimed_when = "NEW.status = 'picked' AND OLD.status <> 'picked'"
    done_event = "DELETE"  # pgqueuer deletes a finished job from its queue table (and logs it)

    def _run(self, coroutine_factory) -> Any:
        async def main() -> Any:
            from pgqueuer import PsycopgDriver, Queries

            conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
            try:
                return await coroutine_factory(Queries(PsycopgDriver(conn)))
            finally:
                await conn.close()

        return asyncio.run(main())

    def install(self) -> None:
        self._run(lambda queries: queries.install())

    def enqueue(self, count: int) -> None:
        self._run(lambda queries: queries.enqueue(["noop"] * count, [None] * count, [0] * count))

    def finished(self, conn: psycopg.Connection) -> int:
        return conn.execute("SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'").fetchone()[0]


class Procrastinate(WorkerProcesses):
    name = "procrastinate"
    table = "procrastinate_jobs"
    claimed_when = "NEW.status = 'doing' AND OLD.status <> 'doing'"
    done_event = "UPDATE"
    done_when = "NEW.status = 'succeeded' AND OLD.status <> 'succeeded'"

    def install(self) -> None:
        from benchmarks.peer_worker import procrastinate_app

        app, _ = procrastinate_app(self.dsn)
        with app.open():
            app.schema_manager.apply_schema()

    def enqueue(self, count: int) -> None:
        from benchmarks.peer_worker import procrastinate_app

        app, noop = procrastinate_app(self.dsn)
        with app.open():
            noop.batch_defer(*({} for _ in range(count)))

    def finished(self, conn: psycopg.Connection) -> int:
        return conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'").fetchone()[0]


PEERS: dict[str, type[System]] = {"thespian-otp": Ours, "pgqueuer": PgQueuer, "procrastinate": Procrastinate}
PEER_MODULES = {"pgqueuer": "pgqueuer", "procrastinate": "procrastinate"}


def available() -> tuple[list[str], list[str]]:
    import importlib.util

    present, missing = ["thespian-otp"], []
    for name, module in PEER_MODULES.items():
        (present if importlib.util.find_spec(module) else missing).append(name)
    return present, missing


# --- one fresh database per measurement ------------------------------------------------------


class FreshDatabase:
    def __init__(self, admin_dsn: str, label: str) -> None:
        self.admin_dsn = admin_dsn
        self.name = f"bench_{label.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        self.dsn = make_conninfo(admin_dsn, dbname=self.name)

    def __enter__(self) -> "FreshDatabase":
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.name}")
        return self

    def __exit__(self, *exc_info: Any) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def checkpoint(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def wait_finished(system: System, conn: psycopg.Connection, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (done := system.finished(conn)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{system.name}: only {done} of {count} jobs finished within {timeout:g} s")
        time.sleep(0.01)


def throughput(admin_dsn: str, peer: str, workers: int, jobs: int) -> float:
    """Jobs/s from the start of a bulk enqueue to the last job finished, workers already idle."""
    with FreshDatabase(admin_dsn, peer) as db:
        system = PEERS[peer](db.dsn)
        system.install()
        system.start(workers)
        try:
            checkpoint(db.dsn)
            with psycopg.connect(db.dsn, autocommit=True) as conn:
                started = time.perf_counter()
                system.enqueue(jobs)
                wait_finished(system, conn, jobs, timeout=max(120.0, jobs / 50))
                return jobs / (time.perf_counter() - started)
        finally:
            system.stop()


def latency(admin_dsn: str, peer: str, jobs: int, every: float = 0.01, workers: int = 2) -> dict[str, float]:
    """Enqueue one job every `every` seconds into running workers; p50/p99 in ms of
    enqueue -> claim and enqueue -> done, from row triggers on the peer's job table."""
    with FreshDatabase(admin_dsn, peer) as db:
        system = PEERS[peer](db.dsn)
        system.install()
        system.install_triggers()
        system.start(workers)
        try:
            with psycopg.connect(db.dsn, autocommit=True) as conn:
                next_at = time.perf_counter()
                for _ in range(jobs):
                    system.enqueue(1)
                    next_at += every
                    time.sleep(max(0.0, next_at - time.perf_counter()))
                wait_finished(system, conn, jobs, timeout=120)
                rows = conn.execute(
                    "SELECT 1000 * extract(epoch FROM claimed - enqueued), 1000 * extract(epoch FROM done - enqueued) "
                    "FROM bench_latency WHERE done IS NOT NULL"
                ).fetchall()
        finally:
            system.stop()
    claims = [float(r[0]) for r in rows if r[0] is not None]
    dones = [float(r[1]) for r in rows]
    return {
        "claim_p50": percentile(claims, 50), "claim_p99": percentile(claims, 99),
        "done_p50": percentile(dones, 50), "done_p99": percentile(dones, 99), "samples": len(dones),
    }  # fmt: skip


# --- the run --------------------------------------------------------------------------------


def run(admin_dsn: str, jobs: int, rounds: int, worker_counts: list[int], latency_jobs: int, peers: list[str]) -> dict[str, Any]:
    samples: dict[str, dict[int, list[float]]] = {p: {w: [] for w in worker_counts} for p in peers}
    for round_number in range(rounds):
        for workers in worker_counts:
            shift = round_number % len(peers)
            for peer in peers[shift:] + peers[:shift]:  # each system goes first in turn
                print(f"round {round_number + 1}/{rounds}: {peer}, {workers} worker(s), {jobs:,} jobs ...", end=" ", flush=True)
                value = throughput(admin_dsn, peer, workers, jobs)
                samples[peer][workers].append(value)
                print(f"{value:,.0f} jobs/s", flush=True)
    latencies = {}
    for peer in peers:
        print(f"latency: {peer}, one job every 10 ms into 2 workers, {latency_jobs} jobs ...", end=" ", flush=True)
        latencies[peer] = latency(admin_dsn, peer, latency_jobs)
        print(f"done p50 {latencies[peer]['done_p50']:.1f} ms", flush=True)
    return {"jobs": jobs, "rounds": rounds, "throughput": samples, "latency": latencies}


def table(result: dict[str, Any]) -> str:
    samples, latencies = result["throughput"], result["latency"]
    peers = list(samples)
    counts = list(next(iter(samples.values())))
    lines = [
        f"### Job queues side by side ({result['jobs']:,} no-op jobs; median of {result['rounds']} interleaved rounds, [min-max])",
        "",
        "| jobs/s | " + " | ".join(f"{w} worker{'s' if w > 1 else ''}" for w in counts) + " |",
        "|---|" + "---:|" * len(counts),
    ]
    for peer in peers:
        cells = []
        for w in counts:
            values = samples[peer][w]
            cells.append(f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]")
        lines.append(f"| {peer} | " + " | ".join(cells) + " |")
    ours = samples["thespian-otp"]
    for peer in peers[1:]:
        ratios = [statistics.median(ours[w]) / statistics.median(samples[peer][w]) for w in counts]
        lines.append(f"| ours / {peer} | " + " | ".join(f"{r:.2f}x" for r in ratios) + " |")
    lines += [
        "",
        "| latency at light load (ms), 2 workers | enqueue -> claim p50 | p99 | enqueue -> done p50 | p99 |",
        "|---|---:|---:|---:|---:|",
    ]
    for peer, lat in latencies.items():
        lines.append(f"| {peer} | {lat['claim_p50']:.1f} | {lat['claim_p99']:.1f} | {lat['done_p50']:.1f} | {lat['done_p99']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", help="PostgreSQL server to measure on (default: $DATABASE_URL, else an embedded one)")
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per throughput measurement (default 20000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts (default 1,2,4)")
    parser.add_argument("--latency-jobs", type=int, default=500, help="jobs in the light-load latency run (default 500)")
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, 1 round, 100 latency jobs")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.rounds, args.latency_jobs = 2_000, 1, 100
    peers, missing = available()
    if missing:
        print(f"not installed, skipped: {', '.join(missing)} (pip install -e '.[bench]')")
    worker_counts = [int(w) for w in args.workers.split(",")]
    with database_url(args.dsn) as dsn:
        result = run(dsn, args.jobs, args.rounds, worker_counts, args.latency_jobs, peers)
    text = table(result)
    print()
    print(text)
    RESULTS.mkdir(exist_ok=True)
    data = {"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"), "skipped": missing, **result, "table": text}
    (RESULTS / "peers.json").write_text(json.dumps(data, indent=2, default=str))
    print(f"\n(wrote {RESULTS / 'peers.json'})")
    return data


if __name__ == "__main__":
    main()
