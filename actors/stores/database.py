"""Connections to one PostgreSQL schema: a pool for the stores, dedicated connections where a
session must stay put (advisory locks, LISTEN), and one place that turns driver errors into the
typed errors of `actors.stores.errors`.
"""

from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager
from typing import Any, Iterator

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from actors.stores.config import DatabaseConfig
from actors.stores.queries import load
from actors.stores.errors import (
    AuthenticationFailed,
    ConnectionLost,
    DatabaseUnavailable,
    DataRejected,
    InvalidDsn,
    SchemaMissing,
    StoreError,
)
from supervision.logs import logger

log = logger("actors.stores.database")

#: words in a connect error that mean the login was refused (bad password, unknown role)
_AUTH_MARKERS = ("password", "authentication", "role ")


def advisory_key(*parts: str) -> int:
    """A stable signed 64-bit advisory-lock key: blake2b('thespian-otp:' + ':'.join(parts)).

    Session locks are taken with `pg_try_advisory_lock(key)`; in `pg_locks` the key shows as
    classid = key >> 32 and objid = key & 0xffffffff, with objsubid = 1."""
    digest = hashlib.blake2b(("thespian-otp:" + ":".join(parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def check_dsn(dsn: str) -> dict[str, Any]:
    try:
        return conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise InvalidDsn(str(exc).strip()) from None


def translate(exc: BaseException, config: DatabaseConfig, *, connecting: bool = False) -> StoreError:
    """The typed error for a driver error; `connecting` tells a failed connect from a dropped one."""
    if isinstance(exc, StoreError):
        return exc
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, PoolTimeout):
        return DatabaseUnavailable(config.display, f"no connection within {config.connect_timeout:g} s ({text})")
    if connecting:
        lowered = text.lower()
        if any(marker in lowered for marker in _AUTH_MARKERS):
            return AuthenticationFailed(config.display, text)
        return DatabaseUnavailable(config.display, text)
    return ConnectionLost(text)


def is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, (psycopg.OperationalError, psycopg.errors.AdminShutdown, psycopg.InterfaceError))


SESSIONS = load("sessions.sql")


@contextmanager
def session_errors(conn: psycopg.Connection, config: DatabaseConfig) -> Iterator[None]:
    """On a dedicated session: a lost connection becomes `ConnectionLost` (a `StoreError` the
    actors classify: their supervisor restarts them and they connect again)."""
    try:
        yield
    except psycopg.Error as exc:
        if is_connection_error(exc) or conn.closed or conn.broken:
            raise translate(exc, config) from exc
        raise


def lock_session(database: "Database", application_name: str, *, idle_session_timeout: float = 15.0) -> psycopg.Connection:
    """A dedicated autocommit connection for session-level advisory locks. Like every
    connection it asks the server to end it when the client vanishes (the keepalives of
    `DatabaseConfig`: about 11 s by default), so another node can take the locks; it also ends
    when left idle for `idle_session_timeout` (a frozen client). See sessions.sql."""
    conn = database.dedicated(application_name=application_name[:63])
    if conn.info.server_version >= 140000:
        with session_errors(conn, database.config):
            conn.execute(SESSIONS["idle_session_timeout"], {"idle_session_ms": str(int(idle_session_timeout * 1000))})
    return conn


class Database:
    """Connections to `config.schema` on `config.dsn`. Open before use; close when done."""

    def __init__(self, config: DatabaseConfig, settings: dict[str, str] | None = None) -> None:
        """`settings`: server settings for every connection of this object, for example
        {"synchronous_commit": "off"} where losing the last writes to a server crash is safe."""
        check_dsn(config.dsn)
        self.config = config
        self.settings = dict(settings or {})
        self._pool: ConnectionPool | None = None

    # --- connections ---------------------------------------------------------------------------

    def connect_kwargs(self, **overrides: Any) -> dict[str, Any]:
        config = self.config
        kwargs: dict[str, Any] = {
            # the server's side of the keepalives (see DatabaseConfig): a client host that
            # vanishes mid-transaction must not keep its rows locked for the kernel's 2 hours
            "options": " ".join(
                [
                    # the schema alone: an unmigrated schema must fail ("run db init"), not
                    # silently use tables of the same name in `public`
                    f"-c search_path={config.schema}",
                    f"-c tcp_keepalives_idle={config.keepalive_idle}",
                    f"-c tcp_keepalives_interval={config.keepalive_interval}",
                    f"-c tcp_keepalives_count={config.keepalive_count}",
                    f"-c tcp_user_timeout={config.server_timeout_ms}",
                    f"-c idle_in_transaction_session_timeout={int(config.idle_in_transaction_timeout * 1000)}",
                    *(f"-c {name}={value}" for name, value in self.settings.items()),
                ]
            ),
            "application_name": config.application_name,
            "connect_timeout": max(1, math.ceil(config.connect_timeout)),
            "keepalives": 1,
            "keepalives_idle": config.keepalive_idle,
            "keepalives_interval": config.keepalive_interval,
            "keepalives_count": config.keepalive_count,
            "tcp_user_timeout": config.tcp_user_timeout_ms,
        }
        kwargs.update(overrides)
        return kwargs

    def dedicated(self, *, autocommit: bool = True, **overrides: Any) -> psycopg.Connection:
        """A connection of its own (not pooled), for session state such as advisory locks."""
        try:
            return psycopg.connect(
                self.config.dsn, autocommit=autocommit, row_factory=dict_row, **self.connect_kwargs(**overrides)
            )
        except psycopg.Error as exc:
            raise translate(exc, self.config, connecting=True) from None

    def open(self) -> "Database":
        """Check that the server answers (clear errors), then open the pool."""
        if self._pool is not None:
            return self
        with self.dedicated() as probe:
            probe.execute("SELECT 1")
        pool = ConnectionPool(
            self.config.dsn,
            kwargs={**self.connect_kwargs(), "row_factory": dict_row},
            min_size=self.config.pool_min,
            max_size=self.config.pool_max,
            timeout=self.config.connect_timeout,
            # a connection the server dropped (a restart) is found and replaced at checkout,
            # not handed out: the first query after a restart must not fail on a stale one
            check=ConnectionPool.check_connection,
            open=False,
            name=f"thespian-otp:{self.config.schema}",
        )
        try:
            pool.open(wait=True, timeout=self.config.connect_timeout)
        except PoolTimeout as exc:
            pool.close()
            raise translate(exc, self.config) from None
        self._pool = pool
        return self

    def ping(self) -> None:
        """One round trip on a pooled connection (raises the typed error when the server is away)."""
        with self.connection() as conn:
            conn.execute("SELECT 1")
            conn.commit()

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    def reopen(self) -> "Database":
        """After an outage: a new pool (the old one may have given up on its connections)."""
        self.close()
        return self.open()

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> "Database":
        return self.open()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection (autocommit off: commit or use `transaction()`)."""
        if self._pool is None:
            self.open()
        assert self._pool is not None
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            if is_connection_error(exc):
                raise translate(exc, self.config) from exc
            if isinstance(exc, (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName)):
                raise SchemaMissing(self.config.schema, str(exc).strip().splitlines()[0]) from None
            if isinstance(exc, psycopg.DataError):
                raise DataRejected(str(exc).strip().splitlines()[0]) from None
            raise
        except PoolTimeout as exc:
            raise translate(exc, self.config) from None

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """A pooled connection inside one transaction, committed on success."""
        with self.connection() as conn:
            with conn.transaction():
                yield conn

    # --- schema helpers ----------------------------------------------------------------------------

    def schema_identifier(self) -> sql.Identifier:
        return sql.Identifier(self.config.schema)

    def drop_schema(self) -> None:
        """Remove the whole schema (tests, `db reset`)."""
        with self.dedicated() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(self.schema_identifier()))
