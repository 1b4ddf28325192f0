"""The `thespian-otp` command, run as a user runs it (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from actors.stores.config import DatabaseConfig
from actors.stores.database import Database


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "actors.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "100", **(env or {})},
    )


@pytest.fixture
def cli_schema(postgres_dsn):
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield schema
    Database(DatabaseConfig(postgres_dsn, schema)).drop_schema()


def test_db_init_then_status_show_migrations_and_row_counts(postgres_dsn, cli_schema):
    first = cli("db", "status", "--dsn", postgres_dsn, "--schema", cli_schema)
    assert first.returncode == 0 and "pending" in first.stdout, first.stderr
    init = cli("db", "init", "--dsn", postgres_dsn, "--schema", cli_schema)
    assert init.returncode == 0 and "applied 0001_initial" in init.stdout, init.stderr
    again = cli("db", "init", "--schema", cli_schema, env={"DATABASE_URL": postgres_dsn})
    assert again.returncode == 0 and "already up to date" in again.stdout
    status = cli("db", "status", "--dsn", postgres_dsn, "--schema", cli_schema)
    assert status.returncode == 0
    assert "0001_initial" in status.stdout and "jobs" in status.stdout and "pending" not in status.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["db", "status", "--dsn", "postgresql://nobody@127.0.0.1:9/x"], "cannot reach PostgreSQL"),
        (["db", "status", "--dsn", "this is not a dsn"], "does not parse"),
        (["db", "status", "--dsn", "postgresql:///x", "--schema", "Bad-Schema"], "schema"),
    ],
)
def test_bad_database_settings_print_one_line_and_fail(args, message):
    result = cli(*args)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_command_is_a_usage_error():
    result = cli("frobnicate")
    assert result.returncode == 2 and "invalid choice" in result.stderr and "Traceback" not in result.stderr


def test_jobs_lists_queue_depth_longest_running_and_processes(postgres_dsn, cli_schema):
    from actors.stores.jobs import PgJobStore
    from actors.stores.migrate import Migrator
    from actors.stores.processes import PgProcessStore
    from actors.stores.rows import NewJob

    config = DatabaseConfig(postgres_dsn, cli_schema)
    with Database(config) as database:
        Migrator(database).apply()
        jobs = PgJobStore(database)
        jobs.insert([NewJob("resize", queue="images") for _ in range(3)] + [NewJob("mail")])
        process = PgProcessStore(database).register("worker-7", ttl=60)
        jobs.claim("images", process.id, 2)
    result = cli("jobs", "--dsn", postgres_dsn, "--schema", cli_schema)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "images" in out and "resize" in out and "worker-7" in out
    assert "longest-running" in out


def test_projections_status_and_rebuild(postgres_dsn, cli_schema):
    from actors.stores.events import PgEventStore
    from actors.stores.migrate import Migrator
    from actors.stores.rows import NewEvent

    config = DatabaseConfig(postgres_dsn, cli_schema)
    with Database(config) as database:
        Migrator(database).apply()
        PgEventStore(database).append([NewEvent("job.completed", {"kind": "mail", "latency_ms": 12.0}) for _ in range(30)])
    before = cli("projections", "status", "--dsn", postgres_dsn, "--schema", cli_schema)
    assert before.returncode == 0 and "job_stats" in before.stdout and "30" in before.stdout, before.stderr
    rebuilt = cli("projections", "rebuild", "job_stats", "--dsn", postgres_dsn, "--schema", cli_schema)
    assert rebuilt.returncode == 0 and "replayed 30 events" in rebuilt.stdout, rebuilt.stderr
    after = cli("projections", "status", "--dsn", postgres_dsn, "--schema", cli_schema)
    assert "job_stats" in after.stdout
    unknown = cli("projections", "rebuild", "no_such_projection", "--dsn", postgres_dsn, "--schema", cli_schema)
    assert unknown.returncode == 1 and "no projection named" in unknown.stderr and "Traceback" not in unknown.stderr
