"""One node of a cluster test: a named runtime with the job system and the projector.

Usage: python -m tests.cluster_node DSN SCHEMA NODE_NAME     (prints "ready GROUP"; SIGTERM stops it)
Nodes share nothing but the database, as separate hosts would.
"""

from __future__ import annotations

import signal
import sys
import threading

from actors.jobs import jobs_tree
from actors.projector import projector_spec
from actors.stores.config import DatabaseConfig
from supervision import Runtime, SupervisorSpec


def main() -> None:
    dsn, schema, node = sys.argv[1:4]
    config = DatabaseConfig(dsn, schema)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Runtime("multiprocTCPBase", log_level="ERROR", name=node) as rt:
        rt.start(
            SupervisorSpec(
                "node",
                children=[
                    jobs_tree(config, handlers=["tests.job_handlers"], workers=2, heartbeat_ttl=1.5, batch=20, poll_interval=0.3, node=node),
                    projector_spec(config, "job_stats", node=node, retry_interval=0.1, lock_check_interval=0.2),
                ],
            )
        )
        print("ready", rt._group or 0, flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
