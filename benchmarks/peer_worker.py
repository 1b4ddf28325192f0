"""One worker process of a peer job queue, for `benchmarks.peers`: no-op jobs, the peer's own
worker loop, in the configuration its documentation gives for throughput.

Usage (started by benchmarks.peers): python -m benchmarks.peer_worker SYSTEM DSN
It prints "ready" once it listens for jobs, and runs until it is killed.
For the rescue measurement (pgqueuer): `PEER_HEARTBEAT_TIMEOUT` (seconds; pgqueuer's default
is 30) and `PEER_PID_DIR`, where its "sleep" job writes the worker's pid to a file named by the
job id, so that the benchmark kills the worker holding it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta

#: pgqueuer: jobs fetched per dequeue (its default is 10; 100 matches our claim batch and was
#: the faster of the two here)
PGQUEUER_BATCH = 100
#: procrastinate: concurrent jobs per worker process (its default is 1)
PROCRASTINATE_CONCURRENCY = 10


def pgqueuer_worker(dsn: str) -> None:
    import psycopg
    from pgqueuer import PsycopgDriver, Queries, QueueManager

    async def main() -> None:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        manager = QueueManager(Queries(PsycopgDriver(conn)))

        @manager.entrypoint("noop")
        async def noop(job) -> None:
            return None

        @manager.entrypoint("sleep")
        async def sleep(job) -> None:
            with open(os.path.join(os.environ["PEER_PID_DIR"], str(job.id)), "w") as handle:
                handle.write(str(os.getpid()))
            await asyncio.sleep(float(job.payload or b"60"))

        options = {}
        if os.environ.get("PEER_HEARTBEAT_TIMEOUT"):
            options["heartbeat_timeout"] = timedelta(seconds=float(os.environ["PEER_HEARTBEAT_TIMEOUT"]))
        print("ready", flush=True)
        await manager.run(batch_size=PGQUEUER_BATCH, dequeue_timeout=timedelta(seconds=1), **options)

    asyncio.run(main())


def procrastinate_app(dsn: str):
    import procrastinate as pc

    app = pc.App(connector=pc.PsycopgConnector(conninfo=dsn))

    @app.task(name="noop", queue="bench")
    def noop() -> None:
        return None

    return app, noop


def procrastinate_worker(dsn: str) -> None:
    app, _ = procrastinate_app(dsn)
    print("ready", flush=True)
    app.run_worker(queues=["bench"], concurrency=PROCRASTINATE_CONCURRENCY, install_signal_handlers=False)


WORKERS = {"pgqueuer": pgqueuer_worker, "procrastinate": procrastinate_worker}

if __name__ == "__main__":
    WORKERS[sys.argv[1]](sys.argv[2])
