"""Where the database is: a picklable `DatabaseConfig`, and how one is chosen.

Precedence: an explicit DSN (`--dsn`, the API) > the `DATABASE_URL` environment variable >
an embedded PostgreSQL started with `pgserver` (a user data directory for the CLI, a temporary
one for tests). The schema defaults to `thespian_otp` (or `THESPIAN_OTP_SCHEMA`), so several
applications and tests can share one database.
"""

from __future__ import annotations

import os
import re
from typing import Any

import attrs

from actors.stores.errors import InvalidDsn
from supervision.errors import SpecError

DEFAULT_SCHEMA = "thespian_otp"
SCHEMA_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def validate_schema(value: Any) -> str:
    if not isinstance(value, str) or not SCHEMA_PATTERN.match(value):
        raise SpecError(
            "schema",
            f"{value!r} is not a valid schema name: use 1-63 lower-case letters, digits and _, starting with a letter or _",
        )
    return value


def _check_schema(instance: Any, attribute: Any, value: Any) -> None:
    validate_schema(value)


def _check_dsn(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidDsn("it is empty")


@attrs.frozen
class DatabaseConfig:
    """Everything an actor process needs to connect: picklable, passed in ChildSpec args.

    - `pool_min`/`pool_max`: pooled connections per process.
    - `connect_timeout`: seconds to wait for a connection.
    - `keepalive_idle`, `keepalive_interval`, `keepalive_count`, `tcp_user_timeout`: TCP
      keepalives for connections that must notice a vanished server (or host) in bounded time.
    """

    dsn: str = attrs.field(validator=_check_dsn, repr=False)
    schema: str = attrs.field(default=DEFAULT_SCHEMA, validator=_check_schema)
    pool_min: int = 1
    pool_max: int = 4
    connect_timeout: float = 5.0
    application_name: str = "thespian-otp"
    keepalive_idle: int = 5
    keepalive_interval: int = 2
    keepalive_count: int = 3
    tcp_user_timeout_ms: int = 10_000

    @property
    def display(self) -> str:
        """The DSN with any password hidden, for messages."""
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", self.dsn)

    def with_schema(self, schema: str) -> "DatabaseConfig":
        return attrs.evolve(self, schema=schema)


def env_dsn() -> str | None:
    value = os.environ.get("DATABASE_URL", "").strip()
    return value or None


def env_schema() -> str:
    return os.environ.get("THESPIAN_OTP_SCHEMA", "").strip() or DEFAULT_SCHEMA
