"""Typed errors of the storage layer (importable without psycopg).

Connection and configuration problems each get one error that names the setting to change.
`ConnectionLost` is deliberately *not* a `Recoverable`: an actor whose database connection
dropped crashes, its supervisor restarts it, and the new actor reconnects.
"""

from __future__ import annotations

from supervision.errors import Recoverable, SupervisionError

DSN_HELP = "set --dsn or the DATABASE_URL environment variable (for example postgresql://user:pass@host:5432/db)"


class StoreError(SupervisionError):
    """Base of every storage error."""


class InvalidDsn(StoreError, ValueError):
    """The connection string does not parse."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"the database URL does not parse: {problem}; {DSN_HELP}", problem=problem)


class DatabaseUnavailable(StoreError):
    """The server cannot be reached (down, wrong host or port, network)."""

    def __init__(self, target: str, problem: str) -> None:
        super().__init__(
            f"cannot reach PostgreSQL at {target}: {problem}; check that the server runs and {DSN_HELP}",
            target=target,
            problem=problem,
        )


class AuthenticationFailed(StoreError):
    """The server refused the user or password."""

    def __init__(self, target: str, problem: str) -> None:
        super().__init__(
            f"PostgreSQL at {target} refused the login: {problem}; fix the user/password in the database URL ({DSN_HELP})",
            target=target,
            problem=problem,
        )


class EmbeddedStartFailed(StoreError):
    """The embedded PostgreSQL could not start (or its data directory was refused)."""

    def __init__(self, data_dir: str, problem: str) -> None:
        super().__init__(
            f"could not start the embedded PostgreSQL in {data_dir}: {problem}; free or choose another "
            f"data directory (--data-dir), or use your own server: {DSN_HELP}",
            data_dir=data_dir,
            problem=problem,
        )


class SchemaTooNew(StoreError):
    """The database schema was migrated by a newer version of thespian-otp."""

    def __init__(self, schema: str, found: int, known: int) -> None:
        super().__init__(
            f"schema {schema!r} is at migration {found}, but this thespian-otp knows migrations up to {known}; "
            "upgrade thespian-otp, or use another schema (--schema / THESPIAN_OTP_SCHEMA)",
            schema=schema,
            found=found,
            known=known,
        )


class SchemaNotReady(StoreError):
    """The schema has not been migrated (run `thespian-otp db init`)."""

    def __init__(self, schema: str, found: int, known: int) -> None:
        super().__init__(
            f"schema {schema!r} is at migration {found} of {known}; run `thespian-otp db init` "
            "(or Database.migrate()) first",
            schema=schema,
            found=found,
            known=known,
        )


class ConnectionLost(StoreError):
    """The database connection dropped (server restart, network). Not recoverable in place:
    the actor crashes, its supervisor restarts it, and the new one reconnects."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"the database connection was lost: {problem}", problem=problem)


class NotFound(Recoverable):
    """No row with that id."""

    def __init__(self, what: str, key: object) -> None:
        super().__init__(f"no {what} with id {key!r}", what=what, key=str(key))


class SchemaMissing(StoreError, Recoverable):
    """A table of the schema does not exist: the schema was never migrated (connections search
    only the configured schema, never `public`)."""

    def __init__(self, schema: str, problem: str) -> None:
        super().__init__(
            f"schema {schema!r} is not set up ({problem}); run `thespian-otp db init` (or Migrator(database).apply()) "
            "with the same database URL and schema",
            schema=schema,
            problem=problem,
        )


class DataRejected(StoreError, Recoverable):
    """PostgreSQL refused a value (invalid text or JSON, out of range): nothing was written."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"PostgreSQL refused the data, nothing was written: {problem}", problem=problem)


class SchemaNotOurs(StoreError):
    """A program that resets its own scratch schema (the demo, the examples) found a schema of
    that name it did not create: it refuses to drop it."""

    def __init__(self, schema: str, owner: str) -> None:
        super().__init__(
            f"schema {schema!r} already exists and was not created by {owner}, so it is left untouched; "
            f"choose another --schema ({owner} only drops a schema it created itself)",
            schema=schema,
            owner=owner,
        )


class PermissionDenied(StoreError):
    """The PostgreSQL user may not do what was asked (typically: create the schema)."""

    def __init__(self, user: str, action: str, problem: str, fix: str) -> None:
        super().__init__(f"PostgreSQL user {user!r} may not {action}: {problem}; {fix}", user=user, action=action, problem=problem)
