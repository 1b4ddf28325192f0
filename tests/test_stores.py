"""The storage layer against real PostgreSQL: migrations, typed connection errors, store contracts."""

from __future__ import annotations

import multiprocessing
import time
import uuid

import psycopg
import pytest

from actors.stores import (
    AuthenticationFailed,
    ConnectionLost,
    DatabaseConfig,
    DatabaseUnavailable,
    EmbeddedStartFailed,
    InvalidDsn,
    NotFound,
    SchemaNotReady,
    SchemaTooNew,
)
from actors.stores.checkpoints import PgCheckpointStore
from actors.stores.database import Database, advisory_key
from actors.stores.embedded import EmbeddedPostgres
from actors.stores.events import PgEventStore
from actors.stores.jobs import PgJobStore
from actors.stores.migrate import Migration, Migrator, load_migrations
from actors.stores.processes import PgProcessStore
from actors.stores.queries import Queries
from actors.stores.rows import Checkpoint, NewEvent, NewJob
from actors.stores.setup import resolve_database
from supervision import SpecError
from tests.support import wait_for

# --- migrations -----------------------------------------------------------------------------------


def test_migrations_apply_once_and_report_status(fresh_schema):
    with Database(fresh_schema) as database:
        migrator = Migrator(database)
        with pytest.raises(SchemaNotReady, match="db init"):
            migrator.require_current()
        assert [m.version for m in migrator.apply()] == [m.version for m in load_migrations()]
        assert migrator.apply() == []
        migrator.require_current()
        status = migrator.status()
        assert status.up_to_date and status.version == migrator.known
        assert status.row_counts == {"jobs": 0, "processes": 0, "events": 0, "projection_checkpoints": 0}


def test_a_schema_newer_than_the_code_is_refused_with_the_setting_to_change(db_config):
    with Database(db_config) as database:
        with database.connection() as conn:
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_the_future')")
            conn.commit()
        with pytest.raises(SchemaTooNew, match="9999.*upgrade thespian-otp.*--schema"):
            Migrator(database).apply()
        with pytest.raises(SchemaTooNew):
            Migrator(database).require_current()


def _migrate_at_the_same_moment(dsn, schema, barrier, results):
    counting = Migration(9000, "count_me", "CREATE TABLE IF NOT EXISTS applied_log (n int); INSERT INTO applied_log VALUES (1);")
    try:
        with Database(DatabaseConfig(dsn, schema)) as database:
            migrator = Migrator(database, load_migrations() + (counting,))
            barrier.wait(timeout=30)
            results.put(len(migrator.apply()))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(repr(exc))


def test_two_processes_migrating_at_once_apply_each_migration_exactly_once(fresh_schema):
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_migrate_at_the_same_moment, args=(fresh_schema.dsn, fresh_schema.schema, barrier, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    outcomes = sorted([results.get(timeout=60), results.get(timeout=60)], key=str)
    for worker in workers:
        worker.join(timeout=30)
    assert outcomes == [0, len(load_migrations()) + 1], outcomes  # one did everything, the other nothing
    with Database(fresh_schema) as database, database.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM applied_log").fetchone()["n"] == 1
        versions = [r["version"] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == sorted({m.version for m in load_migrations()} | {9000})


def test_named_queries_parse_and_refuse_duplicates():
    queries = Queries("-- name: one\nSELECT 1;\n-- name: two\nSELECT 2;\n")
    assert queries["two"] == "SELECT 2;" and queries.names == ["one", "two"]
    with pytest.raises(ValueError, match="twice"):
        Queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;")
    with pytest.raises(KeyError, match="no query named 'zzz'"):
        queries["zzz"]


# --- bad settings and faults ------------------------------------------------------------------------


def test_a_dsn_that_does_not_parse_names_the_setting():
    with pytest.raises(InvalidDsn, match="DATABASE_URL"):
        Database(DatabaseConfig("host=localhost port=5432 this is not a dsn"))
    with pytest.raises(InvalidDsn):
        DatabaseConfig("")


def test_an_invalid_schema_name_is_refused():
    with pytest.raises(SpecError, match="schema"):
        DatabaseConfig("postgresql:///x", schema="Robert'); DROP TABLE students;--")


def test_bad_timeouts_are_refused_naming_the_field():
    with pytest.raises(SpecError, match="keepalive_idle"):
        DatabaseConfig("postgresql:///x", keepalive_idle="5 -c work_mem=1TB")
    with pytest.raises(SpecError, match="idle_in_transaction_timeout"):
        DatabaseConfig("postgresql:///x", idle_in_transaction_timeout=-1)


def test_every_session_tells_the_server_to_drop_it_if_its_client_vanishes(database):
    """Server-side keepalives and timeouts on every connection (pooled and dedicated): a client
    host that vanishes mid-transaction must not keep rows locked (tests/test_netns.py)."""
    with database.connection() as conn:
        row = conn.execute(
            "SELECT current_setting('idle_in_transaction_session_timeout') AS idle,"
            " (SELECT setting FROM pg_settings WHERE name = 'tcp_user_timeout') AS user_timeout,"
            " (SELECT source FROM pg_settings WHERE name = 'tcp_keepalives_idle') AS source"
        ).fetchone()
        conn.commit()
    assert row["idle"] == "1min"
    # over a Unix socket the TCP settings read 0; over TCP they are the config's values
    assert row["source"] == "client" and row["user_timeout"] in ("0", "11000")


def test_an_unreachable_server_gives_one_clear_error():
    config = DatabaseConfig("postgresql://nobody@127.0.0.1:9/nodb", connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="cannot reach PostgreSQL at postgresql://nobody@127.0.0.1:9/nodb.*DATABASE_URL"):
        Database(config).open()
    assert time.monotonic() - started < 5


@pytest.fixture(scope="module")
def own_server():
    """An embedded server this module owns (it changes its auth rules and restarts it)."""
    server = EmbeddedPostgres(temporary=True)
    server.start()
    yield server
    server.stop()


def test_a_wrong_password_gives_one_clear_error_without_the_password(own_server):
    with psycopg.connect(own_server.dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS pw_user")
        conn.execute("CREATE ROLE pw_user LOGIN PASSWORD 'right-password'")
        hba = conn.execute("SHOW hba_file").fetchone()[0]
    with open(hba) as handle:
        rules = handle.read()
    if "pw_user" not in rules:
        with open(hba, "w") as handle:
            handle.write("local all pw_user scram-sha-256\n" + rules)
        with psycopg.connect(own_server.dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
    socket_dir = own_server.dsn.split("host=")[1]
    config = DatabaseConfig(f"postgresql://pw_user:wrong-password@/postgres?host={socket_dir}")
    with pytest.raises(AuthenticationFailed) as info:
        Database(config).open()
    assert "password" in str(info.value) and "wrong-password" not in str(info.value)


def test_an_embedded_server_that_cannot_start_says_how_to_use_database_url(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the data directory should be")
    with pytest.raises(EmbeddedStartFailed, match="DATABASE_URL"):
        EmbeddedPostgres(blocker / "data").start()


def test_a_server_restart_does_not_fail_the_next_pooled_queries(own_server):
    """Pooled connections the restart killed are found and replaced at checkout (issue 19: the
    first enqueue after a restart failed with a stale one)."""
    config = DatabaseConfig(own_server.dsn, schema=f"t_{uuid.uuid4().hex[:12]}")
    with Database(config) as database:
        Migrator(database).apply()
        jobs = PgJobStore(database)
        jobs.insert([NewJob("before")])
        own_server.restart()
        for _ in range(config.pool_max + 1):  # every pooled connection is dead now
            jobs.insert([NewJob("during")])
    with Database(config) as reconnected:
        assert PgJobStore(reconnected).counts() == {("default", "available"): config.pool_max + 2}
        reconnected.drop_schema()


def test_resolve_database_prefers_the_explicit_dsn_then_database_url(postgres_dsn, monkeypatch):
    schema = f"t_{uuid.uuid4().hex[:12]}"
    monkeypatch.delenv("DATABASE_URL", raising=False)
    handle = resolve_database(postgres_dsn, schema)
    assert handle.embedded is None and handle.config.schema == schema
    monkeypatch.setenv("DATABASE_URL", postgres_dsn)
    assert resolve_database(schema=schema).config.dsn == postgres_dsn
    handle.database().drop_schema()


# --- store contracts ---------------------------------------------------------------------------------


def test_jobs_are_inserted_in_order_looked_up_and_counted(database):
    store = PgJobStore(database)
    ids = store.insert([NewJob("email", {"to": "a"}), NewJob("email", {"to": "b"}, queue="bulk", priority=3)])
    assert ids == sorted(ids)
    job = store.get(ids[1])
    assert (job.kind, job.payload, job.queue, job.priority, job.state, job.attempt) == ("email", {"to": "b"}, "bulk", 3, "available", 0)
    assert store.counts() == {("bulk", "available"): 1, ("default", "available"): 1}
    with pytest.raises(NotFound):
        store.get(10**9)


def test_inserting_jobs_notifies_listeners(database):
    store = PgJobStore(database)
    with database.dedicated() as listener:
        listener.execute(f"LISTEN {store.channel}")
        store.insert([NewJob("x", queue="q1")])
        notes = list(listener.notifies(timeout=5, stop_after=1))
    assert [n.payload for n in notes] == ["q1"]


def test_processes_heartbeat_until_deregistered(database):
    store = PgProcessStore(database)
    row = store.register("node-a", ttl=30)
    assert store.get(row.id).node == "node-a"
    before = store.get(row.id).expires_at
    assert store.heartbeat(row.id, ttl=60) and store.get(row.id).expires_at > before
    store.deregister(row.id)
    assert not store.heartbeat(row.id, ttl=60)  # pruned or gone: the process must stop
    with pytest.raises(NotFound):
        store.get(row.id)


def test_events_are_read_after_a_checkpoint_in_order_and_filtered_by_type(database):
    store = PgEventStore(database)
    positions = store.append([NewEvent("a", {"n": 1}), NewEvent("b", {"n": 2}), NewEvent("a", {"n": 3})])
    events = store.read_after(Checkpoint(), limit=10)
    assert [e.position for e in events] == positions
    assert [e.data["n"] for e in store.read_after(Checkpoint(), limit=10, types=["a"])] == [1, 3]
    assert [e.data["n"] for e in store.read_after(events[0].checkpoint, limit=1)] == [2]
    assert store.head() == positions[-1]
    assert store.count_after(events[0].checkpoint) == 2


def test_rare_event_types_are_found_across_windows_of_other_events(database):
    store = PgEventStore(database)
    store.append([NewEvent("rare" if n in (2, 17, 18) else "common", {"n": n}) for n in range(25)])
    # events are read in commit-safe order: a transaction another session of this server still
    # has open holds them back (seen once in CI, from a session not identified), so wait for it
    wait_for(lambda: [e.data["n"] for e in store.read_after(Checkpoint(), limit=2, types=["rare"])] == [2, 17], timeout=30, what="the first two rare events")
    assert [e.data["n"] for e in store.read_after(Checkpoint(), limit=5, types=["rare"])] == [2, 17, 18]
    last = store.read_after(Checkpoint(), limit=5, types=["rare"])[-1].checkpoint
    assert store.read_after(last, limit=5, types=["rare"]) == []
    assert len(store.read_after(Checkpoint(), limit=30, types=["common"])) == 22


def test_an_event_committed_late_is_read_after_it_commits_never_skipped(database):
    store = PgEventStore(database)
    slow = database.dedicated(autocommit=False)
    slow.execute("INSERT INTO events (type) VALUES ('slow')")  # takes its txid first, commits last
    store.append([NewEvent("fast")])
    seen = store.read_after(Checkpoint(), limit=10)
    assert seen == []  # 'fast' waits: an older transaction is still running
    slow.commit()
    slow.close()
    assert [e.type for e in store.read_after(Checkpoint(), limit=10)] == ["slow", "fast"]


def test_checkpoints_are_saved_in_the_callers_transaction(database):
    store = PgCheckpointStore(database)
    assert store.load("stats") == Checkpoint()
    with database.transaction() as conn:
        store.save("stats", Checkpoint(7, 42), "node-a", conn)
    assert store.load("stats") == Checkpoint(7, 42)
    try:
        with database.transaction() as conn:
            store.save("stats", Checkpoint(8, 50), "node-a", conn)
            raise RuntimeError("the read model update failed")
    except RuntimeError:
        pass
    assert store.load("stats") == Checkpoint(7, 42)  # rolled back with it
    assert [row.name for row in store.all()] == ["stats"]
    store.reset("stats")
    assert store.load("stats") == Checkpoint()


def test_advisory_keys_are_stable_and_distinct():
    assert advisory_key("migrate", "a") == advisory_key("migrate", "a")
    assert advisory_key("migrate", "a") != advisory_key("migrate", "b")
    assert -(2**63) <= advisory_key("x") < 2**63
