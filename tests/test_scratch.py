"""The demo and the examples drop only a schema they created themselves (issue 14, point 5)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from actors.stores.config import DatabaseConfig
from actors.stores.database import Database
from actors.stores.errors import PermissionDenied, SchemaNotOurs
from actors.stores.migrate import Migrator
from actors.stores.scratch import reset_scratch_schema
from tests.test_cli import cli


def _rows(dsn: str, schema: str, table: str = "precious") -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))).fetchone()[0]


def _users_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE TABLE {}.precious AS SELECT g AS id FROM generate_series(1, 1000) AS g").format(sql.Identifier(schema)))


def test_the_demo_refuses_a_schema_it_did_not_create_and_leaves_its_table_alone(postgres_dsn, fresh_schema, tmp_path):
    _users_schema(postgres_dsn, fresh_schema.schema)
    result = cli("demo", "--jobs", "10", "--dsn", postgres_dsn, "--schema", fresh_schema.schema,
                 env={"THESPIAN_OTP_STATE_DIR": str(tmp_path)})  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    assert repr(fresh_schema.schema) in result.stderr and "was not created by thespian-otp demo" in result.stderr
    assert _rows(postgres_dsn, fresh_schema.schema) == 1000


def test_an_empty_unmarked_schema_is_refused_too(fresh_schema):
    with Database(fresh_schema) as database:
        Migrator(database).apply()  # a real thespian-otp schema, but an application's, not the demo's
        with pytest.raises(SchemaNotOurs):
            reset_scratch_schema(database, "thespian-otp demo")
        assert Migrator(database).status().up_to_date


def test_a_scratch_schema_is_marked_at_creation_and_replaced_on_the_next_run(postgres_dsn, fresh_schema):
    database = Database(fresh_schema)
    assert reset_scratch_schema(database, "an example") is False  # it did not exist
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute(sql.SQL("CREATE TABLE {}.leftover (id int)").format(sql.Identifier(fresh_schema.schema)))
    assert reset_scratch_schema(database, "an example") is True  # its own: dropped and made again
    with psycopg.connect(postgres_dsn) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s", (fresh_schema.schema,)).fetchone()[0]
    assert tables == 0
    with pytest.raises(SchemaNotOurs):  # another program's mark is not this one's
        reset_scratch_schema(database, "thespian-otp demo")


@pytest.fixture
def role_without_create(postgres_dsn):
    role = f"t_role_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    yield role
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_db_init_without_create_rights_is_one_clear_line_and_works_in_a_schema_made_for_the_user(
    postgres_dsn, fresh_schema, role_without_create
):
    dsn = make_conninfo(postgres_dsn, user=role_without_create)
    refused = cli("db", "init", "--dsn", dsn, "--schema", fresh_schema.schema)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert f"may not create schema {fresh_schema.schema!r}" in refused.stderr and "GRANT CREATE ON DATABASE" in refused.stderr
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(sql.Identifier(fresh_schema.schema), sql.Identifier(role_without_create)))
    init = cli("db", "init", "--dsn", dsn, "--schema", fresh_schema.schema)
    assert init.returncode == 0 and "applied 0001_initial" in init.stdout, init.stderr
    with pytest.raises(PermissionDenied):  # the demo's own schema, the same way
        reset_scratch_schema(Database(DatabaseConfig(dsn, fresh_schema.schema + "_x")))
