"""Projections used by the tests (imported by projector processes by module path)."""

from __future__ import annotations

from collections import Counter

from actors.projector import Projection


class Audited(Projection):
    """Counts ticks per key, and records which session applied which event and when, so a test
    can prove that no event was applied twice, none skipped, and no two nodes applied at once."""

    name = "audited"
    event_types = ("tick",)

    def setup(self, conn):
        conn.execute("CREATE TABLE IF NOT EXISTS audit_counts (key text PRIMARY KEY, n bigint NOT NULL)")
        conn.execute("CREATE TABLE IF NOT EXISTS applied_positions (position bigint NOT NULL, applier text NOT NULL)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS applied_batches (applier text NOT NULL, started timestamptz NOT NULL,"
            " finished timestamptz NOT NULL, first_position bigint, last_position bigint, n int)"
        )

    def reset(self, conn):
        conn.execute("TRUNCATE audit_counts")

    def apply(self, conn, events):
        counts = Counter(str(e.data.get("key")) for e in events)
        conn.execute(
            "INSERT INTO audit_counts AS c (key, n) SELECT * FROM unnest(%s::text[], %s::bigint[]) "
            "ON CONFLICT (key) DO UPDATE SET n = c.n + EXCLUDED.n",
            (list(counts), list(counts.values())),
        )
        if self.audit:
            conn.execute(
                "INSERT INTO applied_positions SELECT p, current_setting('application_name') FROM unnest(%s::bigint[]) p",
                ([e.position for e in events],),
            )
            conn.execute(
                "INSERT INTO applied_batches SELECT current_setting('application_name'), transaction_timestamp(),"
                " clock_timestamp(), %s, %s, %s",
                (events[0].position, events[-1].position, len(events)),
            )

    audit = True


class Poisoned(Projection):
    """Fails on any event whose data says poison."""

    name = "poisoned"
    event_types = ("tick",)

    def setup(self, conn):
        conn.execute("CREATE TABLE IF NOT EXISTS poisoned_seen (position bigint PRIMARY KEY)")

    def reset(self, conn):
        conn.execute("TRUNCATE poisoned_seen")

    def apply(self, conn, events):
        for event in events:
            if event.data.get("poison"):
                raise ValueError(f"cannot fold event {event.position}")
        conn.execute("INSERT INTO poisoned_seen SELECT unnest(%s::bigint[])", ([e.position for e in events],))


class JobAudit(Projection):
    """Records every job event it applies (position and applier), to catch double application."""

    name = "job_audit"
    event_types = ("job.completed", "job.failed", "job.retried", "job.rescued")

    def setup(self, conn):
        conn.execute("CREATE TABLE IF NOT EXISTS job_audit_applied (position bigint NOT NULL, applier text NOT NULL)")

    def reset(self, conn):
        conn.execute("TRUNCATE job_audit_applied")

    def apply(self, conn, events):
        conn.execute(
            "INSERT INTO job_audit_applied SELECT p, current_setting('application_name') FROM unnest(%s::bigint[]) p",
            ([e.position for e in events],),
        )
