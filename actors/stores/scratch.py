"""Scratch schemas: a schema a program creates for itself, marks, and may drop on its next run.

The demo and the examples start from an empty schema on every run. They only ever drop a schema
that carries their mark (its comment, written when they created it); any other schema of that
name, a user's or an application's, is refused with `SchemaNotOurs` and left untouched.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from actors.stores.database import Database
from actors.stores.errors import PermissionDenied, SchemaNotOurs
from actors.stores.queries import load

Q = load("scratch.sql")
#: every mark starts with this; the rest names the program that made the schema
MARK_PREFIX = "thespian-otp scratch schema"


def mark_of(owner: str) -> str:
    return f"{MARK_PREFIX} of {owner}: dropped and recreated on each run"


def reset_scratch_schema(database: Database, owner: str = "thespian-otp demo") -> bool:
    """Give `database.config.schema` to `owner` empty: drop it if `owner` made it, create and
    mark it. Returns whether an old copy was dropped. Raises `SchemaNotOurs` (nothing changed)
    if a schema of that name exists without the owner's mark."""
    schema = database.config.schema
    ident = sql.Identifier(schema)
    with database.dedicated(autocommit=False) as conn:
        row = conn.execute(Q["schema_comment"], {"schema": schema}).fetchone()
        if row is not None and row["comment"] != mark_of(owner):
            raise SchemaNotOurs(schema, owner)
        try:
            if row is not None:
                conn.execute(sql.SQL(Q["drop_schema"]).format(schema=ident))
            conn.execute(sql.SQL(Q["create_schema"]).format(schema=ident))
            conn.execute(sql.SQL(Q["mark_schema"]).format(schema=ident, comment=sql.Literal(mark_of(owner))))
        except psycopg.errors.InsufficientPrivilege as exc:
            raise PermissionDenied(
                conn.info.user, f"create schema {schema!r}", str(exc).strip().splitlines()[0],
                f"grant it CREATE on database {conn.info.dbname!r}, or use your own --dsn",
            ) from None  # fmt: skip
        conn.commit()
    return row is not None
