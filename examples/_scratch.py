"""The database of an example: a scratch schema of its own, made afresh on each run.

An example drops its schema only if it created it (`reset_scratch_schema` checks the mark it
wrote then); a schema of that name that someone else made is refused in one line and left as
it was, so pointing DATABASE_URL at a real database never costs anyone a table.
"""

from __future__ import annotations

import argparse

from actors.stores.config import validate_schema
from actors.stores.database import Database
from actors.stores.errors import SchemaNotOurs
from actors.stores.migrate import Migrator
from actors.stores.scratch import reset_scratch_schema
from actors.stores.setup import DatabaseHandle, resolve_database
from supervision.errors import SpecError


def scratch_database(script: str, default_schema: str, argv: list[str] | None = None) -> DatabaseHandle:
    """DATABASE_URL (or a temporary embedded server) with `--schema` (default `default_schema`)
    emptied and migrated for `script`, whose name marks the schema. Exits with one line on
    stderr if that schema exists and `script` did not make it."""
    parser = argparse.ArgumentParser(prog=script)
    parser.add_argument("--schema", default=default_schema, help=f"a schema of this example's own (default {default_schema})")
    schema = parser.parse_args(argv).schema
    try:
        validate_schema(schema)
    except SpecError as exc:
        parser.error(str(exc))
    handle = resolve_database(schema=schema, temporary=True, migrate=False)
    database = Database(handle.config)
    try:
        reset_scratch_schema(database, script)
    except SchemaNotOurs as exc:
        handle.close()
        raise SystemExit(str(exc)) from None
    with database:
        Migrator(database).apply()
    return handle
