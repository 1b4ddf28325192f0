"""A node holding a cluster-wide permit: a runtime with a cluster limiter, which acquires
`api` (limit 1) for this process and keeps it.

Usage: python -m tests.limiter_node DSN SCHEMA NODE_NAME   (prints "ready GROUP"; SIGTERM stops it)
"""

from __future__ import annotations

import signal
import sys
import threading

from actors.limiter import Limit, Limiter, LimiterServer
from actors.stores.config import DatabaseConfig
from supervision import ChildSpec, Runtime, SupervisorSpec


def main() -> None:
    dsn, schema, node = sys.argv[1:4]
    config = DatabaseConfig(dsn, schema)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    limits = {"api": Limit(1, cluster=True)}
    with Runtime("multiprocTCPBase", log_level="CRITICAL") as rt:
        rt.start(SupervisorSpec("node", children=[ChildSpec("limiter", LimiterServer, kwargs={"limits": limits, "database": config, "node": node})]))
        Limiter(rt).acquire("api", timeout=30)
        print("ready", rt._group or 0, flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
