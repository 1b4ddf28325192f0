"""Our job path side by side with the other PostgreSQL job queues for Python, on the same server.

Every system gets the same footing:
- a database of its own, made fresh for each measurement, on the same server;
- its workers (OS processes) started first and idle, listening for work, outside the clock;
- N no-op jobs enqueued in bulk with the system's own bulk API; the clock runs from the start of
  that enqueue to the moment SQL shows the last job finished;
- interleaved rounds (each round measures every system at every worker count, the order
  rotated from round to round), a CHECKPOINT before each measurement, medians with min-max;
- latency at light load: one job every 10 ms into 2 running workers, enqueue -> claim and
  enqueue -> done taken by row triggers (`clock_timestamp()`) on the system's own job table;
  for ours also enqueue -> handler start (the row's `started_at`, written by the job's mark);
- the raw SQL limit, in the same rounds: N jobs loaded with COPY, then 1/2/4 connections each
  claiming 100 with FOR UPDATE SKIP LOCKED and marking them done with one UPDATE (no actors,
  no events, no enqueue in the clock): the ceiling of this server for a claim-and-complete loop;
- rescue: a worker holding a 60 s job is killed with SIGKILL (2 workers); the seconds until
  another worker holds the job, at the default and at the most aggressive documented settings
  (ours: `heartbeat_ttl` 15 s / its minimum 1 s with `rescue_interval` 0.2 s, the floor of its
  default; pgqueuer: `heartbeat_timeout` 30 s / 1 s).

Slow peers (procrastinate, ~100 jobs/s here) run `--peer-jobs` jobs per throughput measurement
(default 2,000) instead of `--jobs`, so that a full run fits in about 20 minutes; rates (jobs/s)
compare, and the table says which count each row used.

Peers: pgqueuer and procrastinate (install with `pip install -e '.[bench]'`). A peer that is
not installed is skipped and said so. chancy and oban are not measured yet.

Usage: python -m benchmarks.peers [--dsn URL] [--jobs N] [--peer-jobs N] [--rounds R] [--workers 1,2,4]
       [--rescue-rounds R] [--quick]
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
#: peers measured with `--peer-jobs` jobs (too slow for `--jobs` in a run of ~20 minutes)
SLOW_PEERS = ("procrastinate",)
RAW = "raw SQL"


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
        self.jobs: Any = None

    def install(self) -> None:
        from actors.stores.database import Database
        from actors.stores.migrate import Migrator

        with Database(self.config) as database:
            Migrator(database).apply()

    def start(self, workers: int, **options: Any) -> None:
        import benchmarks.job_handlers  # noqa: F401 - registers "noop" here, for enqueue
        from actors.jobs import jobs_tree
        from benchmarks.jobs import _wait_workers
        from supervision import Runtime, SupervisorSpec

        tree = jobs_tree(self.config, handlers=HANDLERS, workers=workers, batch=100, completer_batch=400, **options)
        self.runtime = Runtime("multiprocTCPBase", log_level="ERROR").start(SupervisorSpec("bench", children=[tree]))
        _wait_workers(self.runtime, workers)

    def enqueue(self, count: int) -> None:
        """Straight from this process into the table (`Jobs(database=config)`: validated, kinds
        checked, workers woken by NOTIFY on commit), as a program that has the database config
        does; `rt.enqueue_many` goes through the jobs service (20,000 jobs: 0.45 s against 0.25 s)."""
        from actors.jobs import Jobs, new_job

        if self.jobs is None:
            self.jobs = Jobs(database=self.config)
        for start in range(0, count, 20_000):
            self.jobs.enqueue_many([new_job("noop") for _ in range(min(20_000, count - start))])

    def finished(self, conn: psycopg.Connection) -> int:
        return conn.execute("SELECT count(*) FROM thespian_otp.jobs WHERE state = 'completed'").fetchone()[0]

    def stop(self) -> None:
        if self.jobs is not None:
            self.jobs.close()
            self.jobs = None
        if self.runtime is not None:
            self.runtime.stop()
            self.runtime = None


class WorkerProcesses(System):
    """A peer whose workers run as `python -m benchmarks.peer_worker NAME DSN` processes."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.processes: list[subprocess.Popen] = []

    def start(self, workers: int, **env: str) -> None:
        for _ in range(workers):
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.peer_worker", self.name, self.dsn],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
                env={**os.environ, **env},
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
        time.sleep(0.05)  # a count every 50 ms: polling loads the server we measure


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
                starts = []
                if isinstance(system, Ours):  # the row's started_at: the server's clock at the job's mark
                    starts = [float(r[0]) for r in conn.execute(
                        "SELECT 1000 * extract(epoch FROM j.started_at - b.enqueued) FROM bench_latency AS b "
                        "JOIN thespian_otp.jobs AS j ON j.id = b.job WHERE j.started_at IS NOT NULL"
                    ).fetchall()]  # fmt: skip
        finally:
            system.stop()
    claims = [float(r[0]) for r in rows if r[0] is not None]
    dones = [float(r[1]) for r in rows]
    return {
        "claim_p50": percentile(claims, 50), "claim_p99": percentile(claims, 99),
        "start_p50": percentile(starts, 50) if starts else None, "start_p99": percentile(starts, 99) if starts else None,
        "done_p50": percentile(dones, 50), "done_p99": percentile(dones, 99), "samples": len(dones),
    }  # fmt: skip


def raw_limit(admin_dsn: str, connections: int, jobs: int) -> float:
    """The raw SQL limit (`benchmarks.jobs.raw_sql`): our schema, no actors; jobs/s."""
    from actors.stores.config import DatabaseConfig
    from benchmarks.jobs import raw_sql

    with FreshDatabase(admin_dsn, "raw") as db:
        Ours(db.dsn).install()
        return raw_sql(DatabaseConfig(db.dsn), jobs, connections)


#: rescue settings: (label, ours' tree options, pgqueuer's heartbeat_timeout in seconds)
RESCUE_SETTINGS = [
    ("default", {}, 30.0),
    ("aggressive", {"heartbeat_ttl": 1.0, "rescue_interval": 0.2}, 1.0),
]


def rescue(admin_dsn: str, peer: str, setting: str, timeout: float = 120.0) -> float:
    """Seconds from SIGKILL of the worker holding a job until another worker holds it."""
    label, ours_options, heartbeat_timeout = next(s for s in RESCUE_SETTINGS if s[0] == setting)
    with FreshDatabase(admin_dsn, peer) as db:
        system = PEERS[peer](db.dsn)
        system.install()
        if isinstance(system, Ours):
            system.start(2, **ours_options)
            holder_sql = ("SELECT j.claimed_by, p.pid FROM thespian_otp.jobs AS j JOIN thespian_otp.processes AS p "
                          "ON p.id = j.claimed_by WHERE j.id = %s AND j.started_at IS NOT NULL")  # fmt: skip
            owner_sql = "SELECT claimed_by FROM thespian_otp.jobs WHERE id = %s AND state = 'running'"
        else:
            piddir = Path(f"/tmp/peers-rescue-{uuid.uuid4().hex[:8]}")
            piddir.mkdir()
            system.start(2, PEER_PID_DIR=str(piddir), PEER_HEARTBEAT_TIMEOUT=str(heartbeat_timeout))
            owner_sql = "SELECT queue_manager_id FROM pgqueuer WHERE id = %s AND status = 'picked'"
        try:
            with psycopg.connect(db.dsn, autocommit=True) as conn:
                if isinstance(system, Ours):
                    job_id = system.runtime.enqueue("sleep", {"seconds": 60})
                else:
                    job_id = system._run(lambda queries: queries.enqueue("sleep", b"60"))[0]
                deadline = time.monotonic() + 30
                pid = owner = None
                while pid is None:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{peer}: the sleep job never started")
                    if isinstance(system, Ours):
                        row = conn.execute(holder_sql, (job_id,)).fetchone()
                        if row:
                            owner, pid = row
                    elif (piddir / str(job_id)).exists() and (text := (piddir / str(job_id)).read_text()):
                        pid = int(text)
                        owner = conn.execute(owner_sql, (job_id,)).fetchone()[0]
                    time.sleep(0.01)
                os.kill(pid, signal.SIGKILL)
                killed = time.perf_counter()
                while True:
                    row = conn.execute(owner_sql, (job_id,)).fetchone()
                    if row is not None and row[0] is not None and row[0] != owner:
                        return time.perf_counter() - killed
                    if time.perf_counter() - killed > timeout:
                        raise RuntimeError(f"{peer}: the job of the killed worker was not taken within {timeout:g} s")
                    time.sleep(0.005)
        finally:
            system.stop()


# --- the run --------------------------------------------------------------------------------


def run(
    admin_dsn: str, jobs: int, rounds: int, worker_counts: list[int], latency_jobs: int, peers: list[str],
    peer_jobs: int | None = None, rescue_rounds: int = 2, raw: bool = True,
) -> dict[str, Any]:
    peer_jobs = peer_jobs or jobs
    counts = {p: (peer_jobs if p in SLOW_PEERS else jobs) for p in peers}
    measured = peers + ([RAW] if raw else [])
    counts[RAW] = jobs
    samples: dict[str, dict[int, list[float]]] = {p: {w: [] for w in worker_counts} for p in measured}
    for round_number in range(rounds):
        for workers in worker_counts:
            shift = round_number % len(measured)
            for peer in measured[shift:] + measured[:shift]:  # each system goes first in turn
                n = counts[peer]
                what = "connection(s)" if peer == RAW else "worker(s)"
                print(f"round {round_number + 1}/{rounds}: {peer}, {workers} {what}, {n:,} jobs ...", end=" ", flush=True)
                value = raw_limit(admin_dsn, workers, n) if peer == RAW else throughput(admin_dsn, peer, workers, n)
                samples[peer][workers].append(value)
                print(f"{value:,.0f} jobs/s", flush=True)
    latencies = {}
    for peer in peers:
        print(f"latency: {peer}, one job every 10 ms into 2 workers, {latency_jobs} jobs ...", end=" ", flush=True)
        latencies[peer] = latency(admin_dsn, peer, latency_jobs)
        print(f"done p50 {latencies[peer]['done_p50']:.1f} ms", flush=True)
    rescues: dict[str, dict[str, list[float]]] = {}
    for round_number in range(rescue_rounds):
        for setting, _, _ in RESCUE_SETTINGS:
            for peer in [p for p in peers if p in ("thespian-otp", "pgqueuer")]:
                print(f"rescue {round_number + 1}/{rescue_rounds}: {peer}, {setting} settings, SIGKILL of the worker holding a job ...", end=" ", flush=True)
                value = rescue(admin_dsn, peer, setting)
                rescues.setdefault(peer, {}).setdefault(setting, []).append(value)
                print(f"{value:.2f} s", flush=True)
    return {"jobs": jobs, "counts": counts, "rounds": rounds, "throughput": samples, "latency": latencies, "rescue": rescues}


def table(result: dict[str, Any]) -> str:
    samples, latencies = result["throughput"], result["latency"]
    peers = list(samples)
    counts = list(next(iter(samples.values())))
    jobs_of = result.get("counts", {})
    lines = [
        f"### Job queues side by side (no-op jobs; median of {result['rounds']} interleaved rounds, [min-max])",
        "",
        "| jobs/s | jobs per run | " + " | ".join(f"{w} worker{'s' if w > 1 else ''}" for w in counts) + " |",
        "|---|---:|" + "---:|" * len(counts),
    ]
    for peer in peers:
        cells = []
        for w in counts:
            values = samples[peer][w]
            cells.append(f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]")
        label = f"{RAW}: claim 100 SKIP LOCKED + one UPDATE (connections)" if peer == RAW else peer
        lines.append(f"| {label} | {jobs_of.get(peer, result['jobs']):,} | " + " | ".join(cells) + " |")
    ours = samples["thespian-otp"]
    for peer in peers[1:]:
        ratios = [statistics.median(ours[w]) / statistics.median(samples[peer][w]) for w in counts]
        lines.append(f"| ours / {peer} | | " + " | ".join(f"{r:.2f}x" for r in ratios) + " |")
    lines += [
        "",
        "| latency at light load (ms), 2 workers | enqueue -> claim p50 | p99 | -> handler start p50 | p99 | enqueue -> done p50 | p99 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for peer, lat in latencies.items():
        start = (f"{lat['start_p50']:.1f} | {lat['start_p99']:.1f}" if lat.get("start_p50") is not None else "- | -")
        lines.append(
            f"| {peer} | {lat['claim_p50']:.1f} | {lat['claim_p99']:.1f} | {start} | {lat['done_p50']:.1f} | {lat['done_p99']:.1f} |"
        )
    rescues = result.get("rescue") or {}
    if rescues:
        lines += [
            "",
            "| rescue after SIGKILL of the worker holding a job (s), median [min-max] | "
            + " | ".join(f"{label} settings" for label, _, _ in RESCUE_SETTINGS) + " |",
            "|---|" + "---:|" * len(RESCUE_SETTINGS),
        ]
        for peer, by_setting in rescues.items():
            cells = []
            for label, _, _ in RESCUE_SETTINGS:
                values = by_setting.get(label, [])
                cells.append(f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]" if values else "-")
            lines.append(f"| {peer} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("(" + "; ".join(
            f"{label}: ours {opts or 'heartbeat_ttl 15 s, rescue_interval 5 s'}, pgqueuer heartbeat_timeout {hb:g} s"
            for label, opts, hb in RESCUE_SETTINGS
        ) + ")")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", help="PostgreSQL server to measure on (default: $DATABASE_URL, else an embedded one)")
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per throughput measurement (default 20000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts (default 1,2,4)")
    parser.add_argument("--latency-jobs", type=int, default=500, help="jobs in the light-load latency run (default 500)")
    parser.add_argument(
        "--peer-jobs", type=int, default=2_000,
        help=f"jobs per throughput measurement for the slow peers ({', '.join(SLOW_PEERS)}; default 2000): rates compare",
    )  # fmt: skip
    parser.add_argument("--rescue-rounds", type=int, default=2, help="kill -9 rescue measurements per system and setting (default 2; 0: none)")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw SQL limit")
    parser.add_argument("--quick", action="store_true", help="2,000 jobs (500 for slow peers), 1 round, 100 latency jobs, 1 rescue round")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.rounds, args.latency_jobs, args.peer_jobs, args.rescue_rounds = 2_000, 1, 100, 500, 1
    peers, missing = available()
    if missing:
        print(f"not installed, skipped: {', '.join(missing)} (pip install -e '.[bench]')")
    worker_counts = [int(w) for w in args.workers.split(",")]
    with database_url(args.dsn) as dsn:
        result = run(dsn, args.jobs, args.rounds, worker_counts, args.latency_jobs, peers,
                     peer_jobs=args.peer_jobs, rescue_rounds=args.rescue_rounds, raw=not args.no_raw)  # fmt: skip
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
