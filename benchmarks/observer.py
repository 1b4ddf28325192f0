"""What the observer costs: job throughput with and without an observer watching, one snapshot, a scrape.

Usage: python -m benchmarks.observer [--quick] [--dsn URL]

Rounds alternate (without, with, without, with, ...) on the same tree and schema, and each
figure is the median of its rounds. Also: the time of one snapshot (tree alone as the
baseline), of one `/metrics` scrape, and from a worker's SIGKILL to its restart on the live feed.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request

from benchmarks.common import Report, database_url, median, rate
from supervision import Runtime


def _jobs_per_second(rt, database, count: int) -> float:
    from actors.jobs import new_job

    with database.connection() as conn:
        conn.execute("TRUNCATE jobs")
        conn.commit()
    started = time.perf_counter()
    rt.enqueue_many([new_job("noop") for _ in range(count)], timeout=60)
    while True:
        with database.connection() as conn:
            done = conn.execute("SELECT count(*) AS n FROM jobs WHERE state = 'completed'").fetchone()["n"]
            conn.commit()
        if done >= count:
            return rate(count, time.perf_counter() - started)
        time.sleep(0.05)


def _restart_on_feed(rt, url: str, victim: str) -> float:
    with urllib.request.urlopen(url + "api/events", timeout=30) as feed:
        started = time.monotonic()
        rt.kill(victim)
        while True:
            line = feed.readline().decode()
            if line.startswith("data: ") and _restarts(json.loads(line[6:])["tree"], victim) >= 1:
                return time.monotonic() - started


def _restarts(nodes, name) -> int:
    for node in nodes:
        if node["name"] == name:
            return node["restarts"]
        found = _restarts(node["children"], name)
        if found:
            return found
    return 0


def run(dsn: str, quick: bool = False) -> Report:
    from actors.observer import serve
    from actors.stores.config import DatabaseConfig
    from actors.stores.database import Database
    from actors.stores.migrate import Migrator
    from tests.observer_support import system_spec, workers

    import tests.job_handlers  # noqa: F401 - registers the kinds

    report = Report("Observer")
    config = DatabaseConfig(dsn, "bench_observer")
    Database(config).drop_schema()
    rounds, count = (2, 2000) if quick else (4, 5000)
    with Database(config) as database, Runtime(log_level="CRITICAL") as rt:
        Migrator(database).apply()
        rt.start(system_spec(config, workers=2))
        _jobs_per_second(rt, database, 200)  # warm up
        without, watched = [], []
        for _ in range(rounds):
            without.append(_jobs_per_second(rt, database, count))
            with serve(rt, config) as observer, urllib.request.urlopen(observer.url + "api/events", timeout=30):
                watched.append(_jobs_per_second(rt, database, count))
        report.add("no-op jobs/s, 2 workers, an observer with a page open", median(watched), median(without), "jobs/s", "no observer", ">= 0.8x")
        with serve(rt, config) as observer:
            collect, tree, scrape = [], [], []
            for _ in range(10 if quick else 30):
                t = time.perf_counter()
                rt.tree()
                tree.append(time.perf_counter() - t)
                t = time.perf_counter()
                observer.collector.refresh()
                collect.append(time.perf_counter() - t)
                t = time.perf_counter()
                urllib.request.urlopen(observer.url + "metrics", timeout=30).read()
                scrape.append(time.perf_counter() - t)
            report.add("one snapshot (tree, limiter, database, memory)", median(collect) * 1000, median(tree) * 1000, "ms", "rt.tree() alone", higher_is_better=False)
            report.add("one /metrics scrape", median(scrape) * 1000, None, "ms", higher_is_better=False)
            seen = [_restart_on_feed(rt, observer.url, victim) for victim in workers(rt.tree())]
            report.add("SIGKILL of a worker -> its restart on the live feed (max)", max(seen) * 1000, None, "ms", higher_is_better=False)
    Database(config).drop_schema()
    report.notes.append(f"{rounds} interleaved rounds of {count:,} no-op jobs; snapshots every 0.5 s, database every 1 s")
    return report


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dsn", help="PostgreSQL URL (default: $DATABASE_URL, else an embedded server)")
    args = parser.parse_args(argv)
    with database_url(args.dsn) as dsn:
        report = run(dsn, args.quick)
    report.emit("observer")
    return report


if __name__ == "__main__":
    main()
