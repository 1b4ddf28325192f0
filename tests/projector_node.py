"""One node of a multi-node test: a runtime with a projector, in its own OS process.

Usage: python -m tests.projector_node DSN SCHEMA NODE_NAME
Prints "ready" when started; stops cleanly on SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading

from actors.projector import projector_spec
from actors.stores.config import DatabaseConfig
from supervision import Runtime, SupervisorSpec


def main() -> None:
    dsn, schema, node = sys.argv[1:4]
    projection = sys.argv[4] if len(sys.argv) > 4 else "tests.projections:Audited"
    config = DatabaseConfig(dsn, schema)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Runtime("multiprocTCPBase", log_level="ERROR") as rt:
        rt.start(
            SupervisorSpec(
                "root",
                intensity=100,
                period=10.0,
                children=[
                    projector_spec(
                        config, projection, node=node, intensity=100, period=10.0,
                        batch=50, lock_check_interval=0.1, retry_interval=0.1, poll_interval=0.2,
                    )  # fmt: skip
                ],
            )
        )
        print("ready", rt._group or 0, flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
