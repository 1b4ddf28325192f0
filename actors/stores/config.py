"""Where the database is: a picklable `DatabaseConfig`, and how one is chosen.

Precedence: an explicit DSN (`--dsn`, the API) > the `DATABASE_URL` environment variable >
an embedded PostgreSQL (`actors.stores.embedded`: a user data directory for the CLI, a temporary
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
#: used with fullmatch: `$` would accept "schema\n", which then reaches the connection options
SCHEMA_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def validate_schema(value: Any) -> str:
    if not isinstance(value, str) or not SCHEMA_PATTERN.fullmatch(value):
        raise SpecError(
            "schema",
            f"{value!r} is not a valid schema name: use 1-63 lower-case letters, digits and _, starting with a letter or _",
        )
    return value


def _check_schema(instance: Any, attribute: Any, value: Any) -> None:
    validate_schema(value)


def _check_count(instance: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(attribute.name, f"must be an integer >= 1; got {value!r}")


def _check_seconds(instance: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 86_400:
        raise SpecError(attribute.name, f"must be a number of seconds from 0 to 86400; got {value!r}")


def _check_dsn(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidDsn("it is empty")


@attrs.frozen
class DatabaseConfig:
    """Everything an actor process needs to connect: picklable, passed in ChildSpec args.

    - `pool_min`/`pool_max`: pooled connections per process.
    - `connect_timeout`: seconds to wait for a connection.
    - `keepalive_idle`, `keepalive_interval`, `keepalive_count`, `tcp_user_timeout`: TCP
      keepalives, on both ends of every connection, so that each side notices a vanished peer in
      bounded time: the client a vanished server, and the server a vanished client host, whose
      session it then ends (about keepalive_idle + keepalive_interval * keepalive_count
      seconds), releasing the row locks and advisory locks that session held.
    - `idle_in_transaction_timeout`: seconds after which the server ends a session left idle
      inside a transaction (a frozen client holding claimed rows locked); 0 turns it off.
    """

    dsn: str = attrs.field(validator=_check_dsn, repr=False)
    schema: str = attrs.field(default=DEFAULT_SCHEMA, validator=_check_schema)
    pool_min: int = 1
    pool_max: int = 4
    connect_timeout: float = 5.0
    application_name: str = "thespian-otp"
    keepalive_idle: int = attrs.field(default=5, validator=_check_count)
    keepalive_interval: int = attrs.field(default=2, validator=_check_count)
    keepalive_count: int = attrs.field(default=3, validator=_check_count)
    tcp_user_timeout_ms: int = attrs.field(default=10_000, validator=_check_count)
    idle_in_transaction_timeout: float = attrs.field(default=60.0, validator=_check_seconds)

    @property
    def server_timeout_ms(self) -> int:
        """How long the server keeps a session whose client went silent (its keepalive bound)."""
        return (self.keepalive_idle + self.keepalive_interval * self.keepalive_count) * 1000

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
