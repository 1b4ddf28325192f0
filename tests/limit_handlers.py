"""A limited job kind that records its handler's own start and end in PostgreSQL (imported by
worker processes by module path), so that a test can check in SQL how many ran at once."""

from __future__ import annotations

import time

from actors.jobs import job
from actors.stores.config import DatabaseConfig
from actors.stores.database import Database


@job("limited_span", limit_key="api", timeout=30)
def limited_span(payload):
    """Insert a row into `runs` at start and set its end (both `clock_timestamp()`, one clock
    for every worker) after `seconds`; the span recorded lies inside the handler's run."""
    with Database(DatabaseConfig(payload["dsn"], payload["schema"])) as database, database.connection() as conn:
        insert = "INSERT INTO runs (tree, n, started) VALUES (%s, %s, clock_timestamp()) RETURNING id"
        run_id = conn.execute(insert, (payload["tree"], payload["n"])).fetchone()["id"]
        conn.commit()
        time.sleep(payload["seconds"])
        conn.execute("UPDATE runs SET ended = clock_timestamp() WHERE id = %s", (run_id,))
        conn.commit()
