"""Limiter cost: acquire+release pairs through the actor vs the pure core in one process.

The pure core called directly is the limit (no messages); the actor adds two round trips per
pair. Also p50/p99 latency of an acquire through the actor, and the cost of a cluster-wide
limit (each permit also takes and gives back a PostgreSQL advisory-lock slot) against the same
limiter with a per-node limit.

Usage: python -m benchmarks.limiter [--base multiprocTCPBase] [--quick] [--dsn URL]
"""

from __future__ import annotations

import argparse
import threading
import time

from actors.limiter import Limit, Limiter, LimiterCore, LimiterServer, Owner
from actors.stores.config import DatabaseConfig
from benchmarks.common import Report, database_url, percentile, rate, run_threads
from supervision import ChildSpec, Runtime, SupervisorSpec


def core_pairs(n: int) -> float:
    core = LimiterCore({"db": Limit(4)})
    owner = Owner.actor("bench")
    now = time.monotonic
    started = time.perf_counter()
    for i in range(n):
        [granted] = core.acquire(i, "db", owner, now(), timeout=5)
        core.release(granted.lease.id, now())
    return rate(n, time.perf_counter() - started)


def actor_pairs(rt: Runtime, n: int, threads: int, name: str = "limiter") -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        limiter = Limiter(rt, name)
        mine = []
        for _ in range(n // threads):
            started = time.perf_counter()
            lease = limiter.acquire("db", timeout=10)
            mine.append(time.perf_counter() - started)
            limiter.release(lease)
        with lock:
            latencies.extend(mine)

    elapsed = run_threads(client, threads)
    return rate(len(latencies), elapsed), latencies


def run(base: str, quick: bool = False, dsn: str | None = None) -> Report:
    n = 200 if quick else 1000
    report = Report(f"limiter ({base})")
    children = [ChildSpec("limiter", LimiterServer, kwargs={"limits": {"db": Limit(4)}})]
    if dsn is not None:
        config = DatabaseConfig(dsn, "bench_limiter")  # advisory locks only: no tables needed
        cluster_limits = {"db": Limit(4, cluster=True)}
        children.append(ChildSpec("cluster-limiter", LimiterServer, kwargs={"limits": cluster_limits, "database": config}))
    with Runtime(base, log_level="CRITICAL") as rt:
        rt.start(SupervisorSpec("bench", children=children))
        Limiter(rt).release(Limiter(rt).acquire("db"))  # warm up
        core = core_pairs(n * 20)
        for threads in (1, 4):
            pairs, latencies = actor_pairs(rt, n, threads)
            report.add(f"acquire+release pairs/s, {threads} client thread(s)", pairs, core, "pairs/s", "pure core, in process")
            report.add(f"acquire latency p50, {threads} thread(s)", percentile(latencies, 50) * 1000, None, "ms", higher_is_better=False)
            report.add(f"acquire latency p99, {threads} thread(s)", percentile(latencies, 99) * 1000, None, "ms", higher_is_better=False)
            if dsn is not None:
                local = pairs
                pairs, latencies = actor_pairs(rt, n, threads, "cluster-limiter")
                report.add(f"cluster limit: pairs/s, {threads} client thread(s)", pairs, local, "pairs/s", "the same, per-node limit")
                report.add(f"cluster limit: acquire p99, {threads} thread(s)", percentile(latencies, 99) * 1000, None, "ms", higher_is_better=False)
    report.notes.append(f"{n} pairs through the actor per row (Limit(4) on one key); the core row is the in-process limit")
    return report


def main(argv: list[str] | None = None) -> list[Report]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", action="append", help="system base (repeatable); default: multiprocTCPBase")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dsn", help="PostgreSQL URL for the cluster rows (default: $DATABASE_URL, else an embedded server)")
    args = parser.parse_args(argv)
    reports = []
    with database_url(args.dsn) as dsn:
        for base in args.base or ["multiprocTCPBase"]:
            report = run(base, args.quick, dsn)
            report.emit(f"limiter-{base}")
            reports.append(report)
    return reports


if __name__ == "__main__":
    main()
