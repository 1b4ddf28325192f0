"""Versioned schema migrations: `sql/migrations/NNNN_name.sql`, applied in order, each once.

The migrator holds a session advisory lock (key `advisory_key('migrate', schema)`) on a
dedicated connection while it works, so two nodes starting at the same moment migrate once:
the second waits, then finds nothing left to do. Applied versions are recorded in
`schema_migrations`; a database with versions this code does not know is refused
(`SchemaTooNew`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import attrs
import psycopg
from psycopg import sql

from actors.stores.database import Database, advisory_key
from actors.stores.errors import PermissionDenied, SchemaNotReady, SchemaTooNew
from actors.stores.queries import SQL_DIR
from supervision.logs import logger

log = logger("actors.stores.migrate")

MIGRATIONS_DIR = SQL_DIR / "migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
#: tables whose row counts `status()` reports
TABLES = ("jobs", "processes", "events", "projection_checkpoints")


@attrs.frozen
class Migration:
    """One migration file, `sql/migrations/NNNN_name.sql`: its version, name and SQL."""

    version: int
    name: str
    sql: str


@attrs.frozen
class AppliedMigration:
    """A migration recorded in `schema_migrations`, with when it was applied."""

    version: int
    name: str
    applied_at: object


@attrs.frozen
class SchemaStatus:
    """What `Migrator.status()` found: the applied and pending migrations, the newest this code
    knows, and the row counts of the main tables."""

    schema: str
    applied: tuple[AppliedMigration, ...]
    pending: tuple[Migration, ...]
    known: int
    row_counts: dict = attrs.field(factory=dict)

    @property
    def version(self) -> int:
        return max((m.version for m in self.applied), default=0)

    @property
    def up_to_date(self) -> bool:
        return not self.pending and self.version <= self.known


def load_migrations(directory: Path = MIGRATIONS_DIR) -> tuple[Migration, ...]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise ValueError(f"{path.name}: migration files are named NNNN_name.sql")
        migrations.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise ValueError(f"{directory}: two migrations share a version number")
    return tuple(migrations)


class Migrator:
    """Applies the pending migrations of one schema under an advisory lock (nodes starting together
    migrate once), reports its status, and refuses a schema newer than this code
    (`SchemaTooNew`) or not yet migrated (`require_current`, `SchemaNotReady`)."""

    def __init__(self, database: Database, migrations: Iterable[Migration] | None = None) -> None:
        self.database = database
        self.migrations = tuple(migrations) if migrations is not None else load_migrations()
        self.known = max((m.version for m in self.migrations), default=0)

    @property
    def schema(self) -> str:
        return self.database.config.schema

    def apply(self) -> list[Migration]:
        """Apply what is missing; return what this call applied (empty if another node did)."""
        applied_now: list[Migration] = []
        with self.database.dedicated() as conn:
            key = advisory_key("migrate", self.schema)
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                self._create_schema(conn)
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = {row["version"] for row in conn.execute("SELECT version FROM schema_migrations")}
                self._refuse_newer(done)
                for migration in self.migrations:
                    if migration.version in done:
                        continue
                    with conn.transaction():
                        conn.execute(migration.sql)
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                            (migration.version, migration.name),
                        )
                    log.info("schema %s: applied migration %04d_%s", self.schema, migration.version, migration.name)
                    applied_now.append(migration)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        return applied_now

    def _create_schema(self, conn) -> None:
        # a schema an owner made for this user needs no CREATE right on the database, but
        # CREATE SCHEMA IF NOT EXISTS checks that right before it looks: look first
        if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)).fetchone():
            return
        try:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))
        except psycopg.errors.InsufficientPrivilege as exc:
            raise PermissionDenied(
                conn.info.user, f"create schema {self.schema!r}", str(exc).strip().splitlines()[0],
                f"as an owner run `GRANT CREATE ON DATABASE {conn.info.dbname} TO {conn.info.user}`, or create it for "
                f"them (`CREATE SCHEMA {self.schema} AUTHORIZATION {conn.info.user}`)",
            ) from None  # fmt: skip

    def _refuse_newer(self, done: set[int]) -> None:
        newest = max(done, default=0)
        if newest > self.known:
            raise SchemaTooNew(self.schema, newest, self.known)

    def status(self, *, counts: bool = True) -> SchemaStatus:
        with self.database.dedicated() as conn:
            exists = conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL AS ok", (f"{self.schema}.schema_migrations",)
            ).fetchone()["ok"]
            applied: tuple[AppliedMigration, ...] = ()
            if exists:
                rows = conn.execute("SELECT version, name, applied_at FROM schema_migrations ORDER BY version").fetchall()
                applied = tuple(AppliedMigration(r["version"], r["name"], r["applied_at"]) for r in rows)
            done = {m.version for m in applied}
            pending = tuple(m for m in self.migrations if m.version not in done)
            row_counts: dict[str, int | None] = {}
            if counts:
                for table in TABLES:
                    found = conn.execute("SELECT to_regclass(%s) IS NOT NULL AS ok", (f"{self.schema}.{table}",)).fetchone()["ok"]
                    row_counts[table] = (
                        conn.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(table))).fetchone()["n"]
                        if found
                        else None
                    )
        return SchemaStatus(self.schema, applied, pending, self.known, row_counts)

    def require_current(self) -> None:
        """Raise unless the schema is exactly at this code's version (used by actors at start)."""
        status = self.status(counts=False)
        if status.version > self.known:
            raise SchemaTooNew(self.schema, status.version, self.known)
        if status.pending:
            raise SchemaNotReady(self.schema, status.version, self.known)
