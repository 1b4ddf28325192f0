"""Shared fixtures: real actor systems (stopped and checked for leftovers after each test)."""

from __future__ import annotations

import os

import pytest

# Test files run in three pytest-xdist workers (setup.cfg), whose environment says COLUMNS=80 and
# LINES=24. A test that gives a child its own terminal size (pexpect) must not have it overridden
# by them: rich reads COLUMNS before the terminal.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)

from supervision import Runtime
from supervision.liveness import group_members


@pytest.fixture
def make_runtime():
    """Create runtimes that are always stopped, and check that no actor process outlives them."""
    created: list[Runtime] = []

    def make(base: str = "multiprocTCPBase", **kwargs) -> Runtime:
        kwargs.setdefault("log_level", os.environ.get("TEST_LOG_LEVEL", "ERROR"))
        if os.environ.get("TEST_LOG_FILE"):
            kwargs.setdefault("log_file", os.environ["TEST_LOG_FILE"])
        runtime = Runtime(base, **kwargs)
        created.append(runtime)
        return runtime

    yield make
    for runtime in created:
        group = runtime._group
        runtime.stop()
        if group is not None:
            assert group_members(group) == [], "actor processes outlived the runtime"


@pytest.fixture
def node_processes():
    """Start nodes (`tests.support.NodeProcess`) that are always stopped after the test, even if
    a later one fails to start."""
    from tests.support import NodeProcess

    started: list = []

    def start(module: str, *args: str, env: dict | None = None, prefix: tuple[str, ...] = ()) -> NodeProcess:
        node = NodeProcess(module, *args, env=env, prefix=prefix)
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()


# --- PostgreSQL ---------------------------------------------------------------------------------

import uuid  # noqa: E402

from actors.stores.config import DatabaseConfig  # noqa: E402
from actors.stores.database import Database  # noqa: E402
from actors.stores.embedded import EmbeddedPostgres  # noqa: E402
from actors.stores.migrate import Migrator  # noqa: E402


@pytest.fixture(scope="session")
def postgres_dsn():
    """DATABASE_URL when set, otherwise one embedded server (actors.stores.embedded) for the whole session."""
    dsn = os.environ.get("DATABASE_URL", "").strip()
    if dsn:
        yield dsn
        return
    server = EmbeddedPostgres(temporary=True)
    yield server.start()
    server.stop()


@pytest.fixture
def own_pg():
    """A PostgreSQL server this test owns (it may restart it): embedded, in a temporary directory."""
    server = EmbeddedPostgres(temporary=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh_schema(postgres_dsn):
    """A schema of its own for one test, dropped afterwards (not migrated)."""
    config = DatabaseConfig(postgres_dsn, schema=f"t_{uuid.uuid4().hex[:12]}")
    yield config
    Database(config).drop_schema()


@pytest.fixture
def db_config(fresh_schema):
    """A migrated schema of its own for one test."""
    with Database(fresh_schema) as database:
        Migrator(database).apply()
    return fresh_schema


@pytest.fixture
def database(db_config):
    with Database(db_config) as database:
        yield database
