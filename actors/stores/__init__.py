"""PostgreSQL storage for the workloads: the only package that imports psycopg.

- `DatabaseConfig`: where to connect (picklable; handed to actors in their ChildSpec args).
- `open_database(dsn=None, schema=None)`: resolve the DSN (argument > DATABASE_URL > embedded
  server), migrate, and return an open `Database` plus the embedded server, if one was started.
- Stores (`PgJobStore`, `PgProcessStore`, `PgEventStore`, `PgCheckpointStore`), each with a
  Protocol, SQL in `sql/*.sql` with named queries, rows as frozen attrs objects.
"""

from actors.stores.config import DEFAULT_SCHEMA, DatabaseConfig, env_dsn, env_schema, validate_schema
from actors.stores.errors import (
    AuthenticationFailed,
    ConnectionLost,
    DatabaseUnavailable,
    EmbeddedStartFailed,
    InvalidDsn,
    NotFound,
    SchemaNotReady,
    SchemaTooNew,
    StoreError,
)

__all__ = [
    "DEFAULT_SCHEMA",
    "AuthenticationFailed",
    "ConnectionLost",
    "DatabaseConfig",
    "DatabaseUnavailable",
    "EmbeddedStartFailed",
    "InvalidDsn",
    "NotFound",
    "SchemaNotReady",
    "SchemaTooNew",
    "StoreError",
    "env_dsn",
    "env_schema",
    "validate_schema",
]
