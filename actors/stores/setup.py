"""Choosing and preparing the database: an explicit DSN, DATABASE_URL, or the embedded server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from actors.stores.config import DatabaseConfig, env_dsn, env_schema
from actors.stores.database import Database, check_dsn
from actors.stores.embedded import EmbeddedPostgres
from actors.stores.migrate import Migrator


@attrs.define
class DatabaseHandle:
    """The database a program uses, and the embedded server behind it if it started one."""

    config: DatabaseConfig
    embedded: EmbeddedPostgres | None = None

    @property
    def source(self) -> str:
        """Where the data is, in words that fit a narrow terminal: a URL with a Unix-socket
        host (`?host=/tmp/...`) is one 75-character token no terminal of 60 columns can show."""
        if self.embedded:
            return f"embedded PostgreSQL in {self.embedded.data_dir}"
        from actors.stores.database import check_dsn

        parts = check_dsn(self.config.dsn)
        host = parts.get("host") or ""
        if host.startswith("/"):
            return f"PostgreSQL database {parts.get('dbname') or parts.get('user') or 'postgres'} on the socket in {host}"
        return self.config.display

    def database(self) -> Database:
        return Database(self.config)

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None

    def __enter__(self) -> "DatabaseHandle":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def resolve_database(
    dsn: str | None = None,
    schema: str | None = None,
    *,
    data_dir: str | Path | None = None,
    temporary: bool = False,
    migrate: bool = True,
) -> DatabaseHandle:
    """`dsn` > `DATABASE_URL` > an embedded server (in `data_dir`, or the user data dir, or a
    temporary one). With `migrate`, the schema is brought up to date (once, even when several
    processes do this at the same moment)."""
    dsn = dsn or env_dsn()
    embedded = None
    if dsn is None:
        embedded = EmbeddedPostgres(data_dir, temporary=temporary)
        dsn = embedded.start()
    check_dsn(dsn)
    handle = DatabaseHandle(DatabaseConfig(dsn, schema or env_schema()), embedded)
    if migrate:
        try:
            with Database(handle.config) as database:
                Migrator(database).apply()
        except BaseException:
            handle.close()
            raise
    return handle
