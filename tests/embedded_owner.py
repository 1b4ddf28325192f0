"""A program that uses an embedded server and then waits to be killed (for tests/test_embedded.py).

`python -m tests.embedded_owner DATA_DIR|-`: `-` starts a temporary server. Prints one JSON line
(dsn, data_dir) once the server answers, then sleeps until killed; a `stop` line
on stdin stops the server cleanly and exits.
"""

from __future__ import annotations

import json
import sys

import psycopg

from actors.stores.embedded import EmbeddedPostgres


def main() -> int:
    target = sys.argv[1]
    server = EmbeddedPostgres(None if target == "-" else target, temporary=target == "-")
    dsn = server.start()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT 1")
    print(json.dumps({"dsn": dsn, "data_dir": str(server.data_dir)}), flush=True)
    for line in sys.stdin:
        if line.strip() == "stop":
            server.stop()
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
